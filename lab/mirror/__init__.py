"""The offline mirror: pinned builds served like pkgs.k8s.io, and a registry.

- commands: `python -m lab mirror`, is_built(), the services on the lab bridge;
- builds: the pinned versions and how each component is built;
- gobuild: Go builds from the module proxy or a source tarball, cached by spec;
- distfiles: the pinned source tarballs the proxy does not serve (CRI-O, Calico);
- debs: .deb packages of the builds, laid out like pkgs.k8s.io's;
- apt: the signed apt repositories (Kubernetes, CRI-O, a Debian subset);
- imagespec: what an image is built from (ImageSpec), shared by every image builder;
- images: the images kubeadm pulls, pushed into the registry storage;
- calico: Calico's images and manifests;
- app_image: the app image, built with podman;
- tools: the pinned client tools (helm, helm-diff) `make setup` installs.

`make setup` imports tools (with gobuild and distfiles) before the virtualenv
exists: those import only the standard library at module level.
"""
