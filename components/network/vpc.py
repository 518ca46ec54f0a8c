"""Network: the VPC every other component lives in.

An `awsx.ec2.Vpc` over two or more AZs with a public subnet (ALB, NAT) and a private subnet (tasks,
endpoints) per AZ, NAT per config, VPC flow logs to CloudWatch, and the VPC's default security group
adopted and stripped of every rule. Security stance: nothing runs in the public subnets but the load
balancer and NAT; the default security group, which AWS creates allowing all traffic between its
members and all egress, can no longer be attached by accident to anything useful.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components import policies
from components.env import AwsEnv, gantry_role
from components.settings import NetworkSettings

NAT_STRATEGY = {
    "none": awsx.ec2.NatGatewayStrategy.NONE,
    "single": awsx.ec2.NatGatewayStrategy.SINGLE,
    "per-az": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ,
}
PUBLIC_SUBNET_MASK = 24  # ALB and NAT only: a /24 leaves ample room for ALB scaling (it needs >= 8 free IPs).
PRIVATE_SUBNET_MASK = 20  # 4,091 task IPs per AZ: every Fargate task takes one.


class VpcHandles(Protocol):
    """What other components take from the network: the VPC, its subnets and private route tables."""

    @property
    def vpc_id(self) -> pulumi.Input[str]: ...
    @property
    def public_subnet_ids(self) -> pulumi.Input[Sequence[str]]: ...
    @property
    def private_subnet_ids(self) -> pulumi.Input[Sequence[str]]: ...
    @property
    def private_route_table_ids(self) -> pulumi.Input[Sequence[str]]: ...


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    env: AwsEnv
    settings: NetworkSettings
    """AZs (default 2), range (default 10.0.0.0/16), NAT strategy (default single: one point of failure
    for egress, fine for dev; per-az for prod; none relies on VPC endpoints alone), flow logs (default on)."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[Sequence[str]]
    private_subnet_ids: pulumi.Output[Sequence[str]]
    private_route_table_ids: pulumi.Output[Sequence[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.settings.cidr_block,
            number_of_availability_zones=args.settings.availability_zones,
            enable_dns_hostnames=True,  # interface endpoints with private DNS need both DNS flags
            enable_dns_support=True,
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=NAT_STRATEGY[args.settings.nat_strategy]),
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=PUBLIC_SUBNET_MASK),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=PRIVATE_SUBNET_MASK),
            ],
            opts=child,
        )
        self.vpc_id = vpc.vpc_id
        self.public_subnet_ids = vpc.public_subnet_ids
        self.private_subnet_ids = vpc.private_subnet_ids

        # Adopt the default security group with no rules at all (an empty rule list revokes AWS's defaults).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.vpc_id,
            ingress=[],
            egress=[],
            tags={"Name": f"{name}-default-sg-no-rules"},
            opts=child,
        )

        # The S3 gateway endpoint attaches to the private route tables. awsx does not expose which of its
        # route tables are private, so look them up by their subnet associations once the VPC exists.
        self.private_route_table_ids = aws.ec2.get_route_tables_output(
            vpc_id=vpc.vpc_id,
            filters=vpc.private_subnet_ids.apply(
                lambda ids: [aws.ec2.GetRouteTablesFilterArgs(name="association.subnet-id", values=list(ids))]
            ),
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[vpc]),
        ).ids

        if args.settings.flow_logs:
            self._flow_logs(name, args, vpc.vpc_id, child)

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    def _flow_logs(self, name: str, args: NetworkArgs, vpc_id: pulumi.Output[str], child: pulumi.ResourceOptions):
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", retention_in_days=args.settings.flow_log_retention_days, opts=child
        )
        role = gantry_role(
            f"{name}-flow-logs-role",
            env=args.env,
            assume_role_policy=json.dumps(policies.flow_logs_trust_policy(args.env)),
            description="VPC Flow Logs write the VPC's traffic log with this",
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            policy=log_group.arn.apply(lambda arn: json.dumps(policies.flow_logs_policy(args.env, log_group_arn=arn))),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
