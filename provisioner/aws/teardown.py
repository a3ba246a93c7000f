"""platform:destroy: every resource of the platform, hosts first, found by its tags.

Its own module because it reaches everything the platform holds, add-ons included
(aws/managed.py), while the platform's build imports none of them."""

from __future__ import annotations

from botocore.exceptions import ClientError

from provisioner.aws.iam import remove_controller_access
from provisioner.aws.listeners import platform_load_balancers
from provisioner.aws.managed import destroy_managed
from provisioner.aws.session import Aws, retry_in_use
from provisioner.aws.state import Documents, bucket_name
from provisioner.aws.tags import PLATFORM_TAG, key_name, tag_filters, tagged
from provisioner.targets import Target


def destroy_platform(aws: Aws, target: Target, delete_state: bool = False) -> list[str]:
    """Delete every resource of the platform (hosts first); returns what was deleted."""
    name = target.platform
    done = _hosts(aws, name)
    done += _load_balancers(aws, name)
    done += _certificates(aws, name)
    done += destroy_managed(aws, name)
    done += _target_groups(aws, name)
    done += _network(aws, name)
    done += remove_controller_access(aws.client("iam"), name)  # no host uses it any more
    if delete_state:
        done += _bucket(aws, name)
    return done


def _hosts(aws: Aws, name: str) -> list[str]:
    ec2 = aws.ec2
    live = ["pending", "running", "stopping", "stopped"]
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[*tag_filters(name), {"Name": "instance-state-name", "Values": live}]
    )
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    if not ids:
        return []
    ec2.terminate_instances(InstanceIds=ids)
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
    )
    return [f"{len(ids)} hosts"]


def _load_balancers(aws: Aws, name: str) -> list[str]:
    """The platform's load balancers: the first and every shard, gaps and all."""
    done = []
    for lb in platform_load_balancers(aws, name):
        aws.elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        done.append(f"load balancer {lb['LoadBalancerName']}")
    return done


def _certificates(aws: Aws, name: str) -> list[str]:
    """The platform's ACM certificates (the load balancer that used them is gone)."""
    acm = aws.client("acm")
    done = []
    for arn in tagged(aws, "acm", **{PLATFORM_TAG: name}):
        retry_in_use("certificate", acm.delete_certificate, CertificateArn=arn)
        done.append(f"certificate {arn.rsplit('/', 1)[-1]}")
    return done


def _target_groups(aws: Aws, name: str) -> list[str]:
    elbv2 = aws.elbv2
    done = []
    groups = [
        group
        for page in elbv2.get_paginator("describe_target_groups").paginate()
        for group in page.get("TargetGroups", [])
    ]
    for start in range(0, len(groups), 20):  # DescribeTags takes 20 ARNs at a time
        chunk = {g["TargetGroupArn"]: g for g in groups[start : start + 20]}
        described = elbv2.describe_tags(ResourceArns=list(chunk))["TagDescriptions"]
        for d in described:
            if {"Key": PLATFORM_TAG, "Value": name} not in d["Tags"]:
                continue
            arn = d["ResourceArn"]
            retry_in_use("target group", elbv2.delete_target_group, TargetGroupArn=arn)
            done.append(f"target group {chunk[arn]['TargetGroupName']}")
    return done


def _network(aws: Aws, name: str) -> list[str]:
    """Security groups, subnets, routes, gateway, VPC and key pair, in that order."""
    ec2 = aws.ec2
    done = []
    groups = ec2.describe_security_groups(Filters=tag_filters(name))["SecurityGroups"]
    for group in groups:  # rules first: the groups refer to each other
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=group["IpPermissions"]
            )
    for group in groups:
        retry_in_use("security group", ec2.delete_security_group, GroupId=group["GroupId"])
        done.append(f"security group {group['GroupId']}")
    for subnet in ec2.describe_subnets(Filters=tag_filters(name))["Subnets"]:
        retry_in_use("subnet", ec2.delete_subnet, SubnetId=subnet["SubnetId"])
        done.append(f"subnet {subnet['SubnetId']}")
    for table in ec2.describe_route_tables(Filters=tag_filters(name))["RouteTables"]:
        for assoc in table.get("Associations", []):
            if not assoc.get("Main"):
                ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
        retry_in_use("route table", ec2.delete_route_table, RouteTableId=table["RouteTableId"])
        done.append(f"route table {table['RouteTableId']}")
    for igw in ec2.describe_internet_gateways(Filters=tag_filters(name))["InternetGateways"]:
        for attachment in igw.get("Attachments", []):
            retry_in_use(
                "internet gateway",
                ec2.detach_internet_gateway,
                InternetGatewayId=igw["InternetGatewayId"],
                VpcId=attachment["VpcId"],
            )
        ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
        done.append(f"internet gateway {igw['InternetGatewayId']}")
    for vpc in ec2.describe_vpcs(Filters=tag_filters(name))["Vpcs"]:
        retry_in_use("VPC", ec2.delete_vpc, VpcId=vpc["VpcId"])
        done.append(f"vpc {vpc['VpcId']}")
    try:
        ec2.delete_key_pair(KeyName=key_name(name))
        done.append(f"key pair {key_name(name)}")
    except ClientError:
        pass
    return done


def _bucket(aws: Aws, name: str) -> list[str]:
    bucket = bucket_name(name, aws.account_id())
    try:
        Documents(aws.s3, bucket).delete_prefix("")
        aws.s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        return []
    return [f"bucket {bucket}"]
