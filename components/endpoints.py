"""VpcEndpoints: private paths from the tasks to ECR, CloudWatch Logs, Secrets Manager, SSM and S3.

Interface endpoints (private DNS on, in the private subnets) and an S3 gateway endpoint on the private
route tables. Which exist is per-stack config: each interface endpoint costs about $7.3/month per AZ,
so dev relies on NAT and the free S3 gateway, prod keeps image pulls, logs and secret reads on the AWS
network. Security stance: the endpoints' security group admits TCP 443 only from the client security
groups it is given, and each client group gets egress to the endpoints (and to S3's prefix list) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class VpcEndpointsArgs:
    vpc_id: pulumi.Input[str]
    region: str
    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets: one endpoint network interface per AZ."""
    route_table_ids: pulumi.Input[Sequence[str]]
    """Private route tables the S3 gateway endpoint is attached to."""
    interface_services: Sequence[str]
    """Short service names (ecr.api, ecr.dkr, logs, secretsmanager, ssm); default none."""
    s3_gateway: bool
    """Create the (free) S3 gateway endpoint; default true."""
    clients: Mapping[str, pulumi.Input[str]]
    """Security groups allowed to use the endpoints, by a stable role name (e.g. {"service": sg_id})."""


class VpcEndpoints(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str] | None
    endpoints: dict[str, aws.ec2.VpcEndpoint]

    def __init__(self, name: str, args: VpcEndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:network:VpcEndpoints", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.endpoints = {}

        # The endpoints' security group exists only with interface endpoints; the gateway needs none.
        self.security_group_id = None
        if args.interface_services:
            sg = aws.ec2.SecurityGroup(
                f"{name}-sg", vpc_id=args.vpc_id, description="gantry VPC endpoints: HTTPS from tasks only",
                opts=child,
            )
            self.security_group_id = sg.id
            for role, client_sg in args.clients.items():
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-from-{role}",
                    security_group_id=sg.id,
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    referenced_security_group_id=client_sg,
                    description=f"HTTPS from {role}",
                    opts=child,
                )
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{role}-to-endpoints",
                    security_group_id=client_sg,
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    referenced_security_group_id=sg.id,
                    description="HTTPS to the VPC interface endpoints",
                    opts=child,
                )
            for service in args.interface_services:
                self.endpoints[service] = aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=args.vpc_id,
                    service_name=f"com.amazonaws.{args.region}.{service}",
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=args.subnet_ids,
                    security_group_ids=[sg.id],
                    opts=child,
                )

        if args.s3_gateway:
            s3 = aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=args.vpc_id,
                service_name=f"com.amazonaws.{args.region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=args.route_table_ids,
                opts=child,
            )
            self.endpoints["s3"] = s3
            for role, client_sg in args.clients.items():
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{role}-to-s3",
                    security_group_id=client_sg,
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    prefix_list_id=s3.prefix_list_id,
                    description="HTTPS to S3 through the gateway endpoint (ECR image layers)",
                    opts=child,
                )

        self.register_outputs({"interfaceEndpoints": sorted(args.interface_services)})
