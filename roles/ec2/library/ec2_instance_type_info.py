#!/usr/bin/python
# Copyright: Contributors to the kubeadm-helm-rollout project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only: describe EC2 instance types (vCPUs, memory, architectures) in one region.

amazon.aws gains a module of this name in 11.1.0; the project pins 10.x (the
version the `ansible` package bundles), so the role carries this small,
read-only subset of it. It only ever calls DescribeInstanceTypes.
"""

from __future__ import annotations

import contextlib

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

DOCUMENTATION = r"""
---
module: ec2_instance_type_info
short_description: Describe EC2 instance types in a region (read-only)
description:
  - Calls DescribeInstanceTypes for each given instance type and returns what AWS knows about it.
  - An instance type the region does not offer is listed in RV(missing) instead of failing the task.
  - Never changes anything; supports check mode.
options:
  instance_types:
    description: The instance types to describe, for example C(t3.medium).
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Describe the control plane's instance type
  ec2_instance_type_info:
    region: eu-west-1
    instance_types: [t3.medium]
  register: types
"""

RETURN = r"""
instance_types:
  description: The instance types AWS knows in the region, with AWS's fields in snake case.
  returned: always
  type: list
  elements: dict
  sample:
    - instance_type: t3.medium
      v_cpu_info: {default_v_cpus: 2}
      memory_info: {size_in_mi_b: 4096}
      processor_info: {supported_architectures: [x86_64]}
missing:
  description: The requested instance types the region does not offer.
  returned: always
  type: list
  elements: str
"""


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"instance_types": {"type": "list", "elements": "str", "required": True}},
        supports_check_mode=True,
    )
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    found, missing = [], []
    # One call per type: AWS answers InvalidInstanceType for the whole request
    # when any one of the names is unknown.
    for name in dict.fromkeys(module.params["instance_types"]):
        try:
            answer = client.describe_instance_types(aws_retry=True, InstanceTypes=[name])
        except is_boto3_error_code("InvalidInstanceType"):
            missing.append(name)
            continue
        except (BotoCoreError, ClientError) as error:
            module.fail_json_aws(error, msg=f"Unable to describe instance type {name}")
        found += [camel_dict_to_snake_dict(t) for t in answer["InstanceTypes"]]
        if not answer["InstanceTypes"]:
            missing.append(name)
    module.exit_json(changed=False, instance_types=found, missing=missing)


if __name__ == "__main__":
    main()
