"""The IAM policy the CLI needs: every AWS call dynoform makes, as data (`platform:policy`).

Each boto3 client method the code calls maps to the IAM actions it needs
(tests/unit/test_aws_policy.py reads the code and fails when a call is missing here, or when
one here is no longer made). The controller's narrower policy, scoped to one platform's
resources, is aws/iam.py's `controller_policy`.

The CLI's policy names `Resource: "*"`: it creates the platform (VPC, load balancer, bucket,
databases) whose ARNs do not exist before, and reads region-wide Describe* calls that take no
resource. Run dynoform with credentials that hold it, and nothing more.
"""

from __future__ import annotations

from typing import Any

VERSION = "2012-10-17"

# boto3 method -> IAM actions. Names shared by services (describe_tags, list_tags_for_resource)
# list the action of each service that dynoform calls them on.
CLI_CALLS: dict[str, tuple[str, ...]] = {
    # EC2: the network, hosts, key pair
    "associate_route_table": ("ec2:AssociateRouteTable",),
    "attach_internet_gateway": ("ec2:AttachInternetGateway",),
    "authorize_security_group_ingress": ("ec2:AuthorizeSecurityGroupIngress",),
    "create_internet_gateway": ("ec2:CreateInternetGateway",),
    "create_route": ("ec2:CreateRoute",),
    "create_route_table": ("ec2:CreateRouteTable",),
    "create_security_group": ("ec2:CreateSecurityGroup",),
    "create_subnet": ("ec2:CreateSubnet",),
    "create_vpc": ("ec2:CreateVpc",),
    "delete_internet_gateway": ("ec2:DeleteInternetGateway",),
    "delete_key_pair": ("ec2:DeleteKeyPair",),
    "delete_route_table": ("ec2:DeleteRouteTable",),
    "delete_security_group": ("ec2:DeleteSecurityGroup",),
    "delete_subnet": ("ec2:DeleteSubnet",),
    "delete_vpc": ("ec2:DeleteVpc",),
    "describe_addresses": ("ec2:DescribeAddresses",),
    "describe_availability_zones": ("ec2:DescribeAvailabilityZones",),
    "describe_images": ("ec2:DescribeImages",),
    "describe_instance_attribute": ("ec2:DescribeInstanceAttribute",),
    "describe_instance_status": ("ec2:DescribeInstanceStatus",),
    "describe_instances": ("ec2:DescribeInstances",),
    "describe_internet_gateways": ("ec2:DescribeInternetGateways",),
    "describe_key_pairs": ("ec2:DescribeKeyPairs",),
    "describe_nat_gateways": ("ec2:DescribeNatGateways",),
    "describe_route_tables": ("ec2:DescribeRouteTables",),
    "describe_security_groups": ("ec2:DescribeSecurityGroups",),
    "describe_snapshots": ("ec2:DescribeSnapshots",),
    "describe_subnets": ("ec2:DescribeSubnets",),
    "describe_volumes": ("ec2:DescribeVolumes",),
    "describe_vpcs": ("ec2:DescribeVpcs",),
    "detach_internet_gateway": ("ec2:DetachInternetGateway",),
    "disassociate_route_table": ("ec2:DisassociateRouteTable",),
    "import_key_pair": ("ec2:ImportKeyPair",),
    "modify_subnet_attribute": ("ec2:ModifySubnetAttribute",),
    "modify_vpc_attribute": ("ec2:ModifyVpcAttribute",),
    "revoke_security_group_ingress": ("ec2:RevokeSecurityGroupIngress",),
    # Tags given in the request (TagSpecifications) need CreateTags on the new resource;
    # the instance profile needs PassRole (below).
    "run_instances": ("ec2:RunInstances", "ec2:CreateTags"),
    "terminate_instances": ("ec2:TerminateInstances",),
    # ELBv2: the load balancer, listeners, rules, target groups
    "add_listener_certificates": ("elasticloadbalancing:AddListenerCertificates",),
    "describe_load_balancer_attributes": ("elasticloadbalancing:DescribeLoadBalancerAttributes",),
    "modify_load_balancer_attributes": ("elasticloadbalancing:ModifyLoadBalancerAttributes",),
    "create_listener": ("elasticloadbalancing:CreateListener", "elasticloadbalancing:AddTags"),
    "create_load_balancer": (
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:AddTags",
    ),
    "create_rule": ("elasticloadbalancing:CreateRule",),
    "create_target_group": (
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:AddTags",
    ),
    "delete_load_balancer": ("elasticloadbalancing:DeleteLoadBalancer",),
    "delete_rule": ("elasticloadbalancing:DeleteRule",),
    "delete_target_group": ("elasticloadbalancing:DeleteTargetGroup",),
    "deregister_targets": ("elasticloadbalancing:DeregisterTargets",),
    "describe_listener_certificates": ("elasticloadbalancing:DescribeListenerCertificates",),
    "describe_listeners": ("elasticloadbalancing:DescribeListeners",),
    "describe_load_balancers": ("elasticloadbalancing:DescribeLoadBalancers",),
    "describe_rules": ("elasticloadbalancing:DescribeRules",),
    "describe_tags": ("elasticloadbalancing:DescribeTags",),
    "describe_target_group_attributes": ("elasticloadbalancing:DescribeTargetGroupAttributes",),
    "describe_target_groups": ("elasticloadbalancing:DescribeTargetGroups",),
    "describe_target_health": ("elasticloadbalancing:DescribeTargetHealth",),
    "modify_listener": ("elasticloadbalancing:ModifyListener",),
    "modify_rule": ("elasticloadbalancing:ModifyRule",),
    "modify_target_group": ("elasticloadbalancing:ModifyTargetGroup",),
    "modify_target_group_attributes": ("elasticloadbalancing:ModifyTargetGroupAttributes",),
    "register_targets": ("elasticloadbalancing:RegisterTargets",),
    "remove_listener_certificates": ("elasticloadbalancing:RemoveListenerCertificates",),
    # S3: the state bucket, slugs, sources, caches (presigned URLs are GetObject/PutObject)
    "copy_object": ("s3:GetObject", "s3:PutObject"),
    "create_bucket": ("s3:CreateBucket",),
    "delete_bucket": ("s3:DeleteBucket",),
    "delete_object": ("s3:DeleteObject",),
    "delete_objects": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "get_bucket_lifecycle_configuration": ("s3:GetLifecycleConfiguration",),
    "get_object": ("s3:GetObject",),
    "head_bucket": ("s3:ListBucket",),
    "head_object": ("s3:GetObject",),
    "list_object_versions": ("s3:ListBucketVersions",),
    "list_objects_v2": ("s3:ListBucket",),
    "get_bucket_policy": ("s3:GetBucketPolicy",),  # drains: the ALB's access-log delivery
    "put_bucket_policy": ("s3:PutBucketPolicy",),
    "put_bucket_encryption": ("s3:PutEncryptionConfiguration",),
    "put_bucket_lifecycle_configuration": ("s3:PutLifecycleConfiguration",),
    "put_bucket_versioning": ("s3:PutBucketVersioning",),
    "put_object": ("s3:PutObject",),
    "put_public_access_block": ("s3:PutBucketPublicAccessBlock",),
    # ACM, Route 53 (DNS validation), the tagging API (finding certificates by tag)
    "add_tags_to_certificate": ("acm:AddTagsToCertificate",),
    "delete_certificate": ("acm:DeleteCertificate",),
    "describe_certificate": ("acm:DescribeCertificate",),
    "get_certificate": ("acm:GetCertificate",),
    "import_certificate": ("acm:ImportCertificate", "acm:AddTagsToCertificate"),
    "request_certificate": ("acm:RequestCertificate", "acm:AddTagsToCertificate"),
    "change_resource_record_sets": ("route53:ChangeResourceRecordSets",),
    "list_hosted_zones": ("route53:ListHostedZones",),
    "get_resources": ("tag:GetResources",),
    # RDS and ElastiCache: managed add-ons and their snapshots
    "create_cache_subnet_group": ("elasticache:CreateCacheSubnetGroup",),
    "create_db_instance": ("rds:CreateDBInstance", "rds:AddTagsToResource"),
    "create_db_snapshot": ("rds:CreateDBSnapshot", "rds:AddTagsToResource"),
    "create_db_subnet_group": ("rds:CreateDBSubnetGroup",),
    "create_replication_group": (
        "elasticache:CreateReplicationGroup",
        "elasticache:AddTagsToResource",
    ),
    "delete_cache_subnet_group": ("elasticache:DeleteCacheSubnetGroup",),
    "delete_db_instance": ("rds:DeleteDBInstance",),
    "delete_db_snapshot": ("rds:DeleteDBSnapshot",),
    "delete_db_subnet_group": ("rds:DeleteDBSubnetGroup",),
    "delete_replication_group": ("elasticache:DeleteReplicationGroup",),
    "describe_cache_subnet_groups": ("elasticache:DescribeCacheSubnetGroups",),
    "describe_db_instances": ("rds:DescribeDBInstances",),
    "describe_db_snapshots": ("rds:DescribeDBSnapshots",),
    "describe_db_subnet_groups": ("rds:DescribeDBSubnetGroups",),
    "describe_replication_groups": ("elasticache:DescribeReplicationGroups",),
    "list_tags_for_resource": ("rds:ListTagsForResource", "elasticache:ListTagsForResource"),
    "modify_db_instance": ("rds:ModifyDBInstance",),
    "restore_db_instance_from_db_snapshot": (
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:AddTagsToResource",
    ),
    # IAM: the controller's role and instance profile
    "add_role_to_instance_profile": ("iam:AddRoleToInstanceProfile",),
    "create_instance_profile": ("iam:CreateInstanceProfile", "iam:TagInstanceProfile"),
    "create_role": ("iam:CreateRole", "iam:TagRole"),
    "delete_instance_profile": ("iam:DeleteInstanceProfile",),
    "delete_role": ("iam:DeleteRole",),
    "delete_role_policy": ("iam:DeleteRolePolicy",),
    "get_instance_profile": ("iam:GetInstanceProfile",),
    "get_role": ("iam:GetRole",),
    "get_role_policy": ("iam:GetRolePolicy",),
    "list_role_policies": ("iam:ListRolePolicies",),
    "put_role_policy": ("iam:PutRolePolicy",),
    "remove_role_from_instance_profile": ("iam:RemoveRoleFromInstanceProfile",),
    "update_assume_role_policy": ("iam:UpdateAssumeRolePolicy",),
    # The rest
    "get_caller_identity": (),  # STS answers it for any credentials
    "get_metric_data": ("cloudwatch:GetMetricData",),
    "list_metrics": ("cloudwatch:ListMetrics",),
    # The controller's calls (its own policy, aws/iam.py, allows them on the runners; the CLI
    # makes them too when the library runs a duty's tick, as tests and benchmarks do)
    "put_metric_data": ("cloudwatch:PutMetricData",),
    "get_parameter": ("ssm:GetParameter",),
}

# Actions no call names: RunInstances hands the runners the controller's role; the first load
# balancer, RDS instance and ElastiCache group of an account make AWS's service-linked roles.
IMPLIED: tuple[str, ...] = (
    "iam:PassRole",
    "iam:CreateServiceLinkedRole",
)


def cli_actions() -> list[str]:
    actions = {a for needed in CLI_CALLS.values() for a in needed}
    return sorted(actions | set(IMPLIED))


def cli_policy() -> dict[str, Any]:
    """The CLI's policy (pure): one statement per service, every action it calls."""
    by_service: dict[str, list[str]] = {}
    for action in cli_actions():
        by_service.setdefault(action.split(":", 1)[0], []).append(action)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "Dynoform" + "".join(p.capitalize() for p in service.split("-")),
                "Effect": "Allow",
                "Action": actions,
                "Resource": "*",
            }
            for service, actions in sorted(by_service.items())
        ],
    }
