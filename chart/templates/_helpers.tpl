{{/* Name of the chart, overridable only through the release name. */}}
{{- define "tiny-http-app.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: the release name if it contains the chart name. */}}
{{- define "tiny-http-app.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tiny-http-app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable for the life of the release. */}}
{{- define "tiny-http-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tiny-http-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of every object except the pod template: the chart version lives here
only, so a chart version bump never rolls the pods.
*/}}
{{- define "tiny-http-app.labels" -}}
helm.sh/chart: {{ include "tiny-http-app.chart" . }}
{{ include "tiny-http-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The ConfigMap's data, rendered once here and used twice: by the ConfigMap and
by the pod template's checksum/config annotation. Hashing the data alone (not
the whole ConfigMap with its labels) means only a changed message rolls pods.
*/}}
{{- define "tiny-http-app.configData" -}}
APP_MESSAGE: {{ .Values.message | toJson }}
{{- end -}}

{{- define "tiny-http-app.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.registry -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Restricted pod and container security contexts (Pod Security "restricted"). */}}
{{- define "tiny-http-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tiny-http-app.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
