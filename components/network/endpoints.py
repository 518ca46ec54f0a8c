"""VpcEndpoints: private paths from the tasks to ECR, CloudWatch Logs, Secrets Manager, SSM and S3.

Interface endpoints (private DNS on, in the private subnets) and an S3 gateway endpoint on the private
route tables. Which exist is per-stack config: each interface endpoint costs about $7.3/month per AZ,
so dev relies on NAT and the free S3 gateway, prod keeps image pulls, logs and secret reads on the AWS
network. Security stance: the endpoints' security group admits TCP 443 only from the client security
groups it is given, and each client group gets egress to the endpoints (and to S3's prefix list) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.network.security_groups import allow
from components.network.vpc import VpcHandles
from components.settings import EndpointSettings


@dataclass(frozen=True, kw_only=True)
class VpcEndpointsArgs:
    env: AwsEnv
    vpc: VpcHandles
    """The VPC: interface endpoints get one network interface per private subnet (AZ); the S3 gateway
    attaches to the private route tables."""
    settings: EndpointSettings
    """Which interface endpoints (default none) and whether the free S3 gateway exists (default yes)."""
    clients: Mapping[str, pulumi.Input[str]]
    """Security groups allowed to use the endpoints, by a stable role name (e.g. {"service": sg_id})."""


class VpcEndpoints(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str] | None
    endpoints: dict[str, aws.ec2.VpcEndpoint]

    def __init__(self, name: str, args: VpcEndpointsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:network:VpcEndpoints", name, None, opts)
        self.endpoints = {}
        # The endpoints' security group exists only with interface endpoints; the gateway needs none.
        self.security_group_id = self._interface_endpoints(name, args) if args.settings.interface else None
        if args.settings.s3_gateway:
            self._s3_gateway(name, args)
        self.register_outputs({"interfaceEndpoints": sorted(args.settings.interface)})

    def _interface_endpoints(self, name: str, args: VpcEndpointsArgs) -> pulumi.Output[str]:
        """The interface endpoints in the private subnets, behind one group that admits HTTPS from the clients."""
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc.vpc_id,
            description="gantry VPC endpoints: HTTPS from tasks only",
            opts=child,
        )
        for role, client_sg in args.clients.items():
            allow(
                source=client_sg,
                target=sg.id,
                port=443,
                egress_name=f"{name}-{role}-to-endpoints",
                ingress_name=f"{name}-from-{role}",
                source_label=role,
                target_label="the VPC interface endpoints",
                opts=child,
            )
        for service in args.settings.interface:
            self.endpoints[service] = aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=args.vpc.vpc_id,
                service_name=f"com.amazonaws.{args.env.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=args.vpc.private_subnet_ids,
                security_group_ids=[sg.id],
                opts=child,
            )
        return sg.id

    def _s3_gateway(self, name: str, args: VpcEndpointsArgs) -> None:
        """S3's gateway endpoint on the private route tables, and each client's egress to its prefix list."""
        child = pulumi.ResourceOptions(parent=self)
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=args.vpc.vpc_id,
            service_name=f"com.amazonaws.{args.env.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=args.vpc.private_route_table_ids,
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
