"""ServiceSecurityGroups: the load balancer's and the tasks' security groups, and the one path between them.

Security stance: the ALB accepts only its listener ports, only from the configured CIDRs, and may
send only to the task group on the container port; tasks accept only the ALB on the container port.
Task egress is HTTPS to the internet through NAT (an AI service calls model APIs) or nothing at all
when the VPC has no NAT; the VpcEndpoints component adds the egress its endpoints need. With a
blue/green test listener, a third group for the validation hook: the ALB admits it, and only it, on
the test port (never a CIDR, so the test listener is unreachable from the internet), and it may send
only there and HTTPS to AWS APIs. The batch consumer's group (with a queue) admits nothing at all and
sends what the tasks send. Every rule is
its own resource, so components can add rules to a group without fighting over an inline rule list,
and every group-to-group path is written by `allow`, so its two halves cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


def allow(
    *,
    source: pulumi.Input[str],
    target: pulumi.Input[str],
    port: int,
    egress_name: str,
    ingress_name: str,
    source_label: str,
    target_label: str,
    opts: pulumi.ResourceOptions,
) -> tuple[aws.vpc.SecurityGroupEgressRule, aws.vpc.SecurityGroupIngressRule]:
    """Both halves of one TCP path between two security groups: egress on the source, ingress on the
    target. A path needs both (security groups are stateful per group, not per path), and a half
    written alone is either dead or an opening nobody uses."""
    egress = aws.vpc.SecurityGroupEgressRule(
        egress_name,
        security_group_id=source,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=target,
        description=f"to {target_label} on port {port}",
        opts=opts,
    )
    ingress = aws.vpc.SecurityGroupIngressRule(
        ingress_name,
        security_group_id=target,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        referenced_security_group_id=source,
        description=f"from {source_label} on port {port}",
        opts=opts,
    )
    return egress, ingress


def https_out(
    name: str, group: pulumi.Input[str], description: str, opts: pulumi.ResourceOptions
) -> aws.vpc.SecurityGroupEgressRule:
    """HTTPS (and only HTTPS) from a group to anywhere: the one internet egress gantry opens, via NAT."""
    return aws.vpc.SecurityGroupEgressRule(
        name,
        security_group_id=group,
        ip_protocol="tcp",
        from_port=443,
        to_port=443,
        cidr_ipv4="0.0.0.0/0",
        description=description,
        opts=opts,
    )


@dataclass(frozen=True, kw_only=True)
class ServiceSecurityGroupsArgs:
    vpc_id: pulumi.Input[str]
    container_port: int
    """The single port the container, target group and health check use."""
    listener_ports: Sequence[int]
    """Ports the ALB listens on (80, plus 443 when a domain is configured)."""
    ingress_cidrs: Sequence[str]
    """IPv4 ranges allowed to reach the listeners; default the internet, since it is a public endpoint."""
    https_egress_to_internet: bool
    """Let tasks open HTTPS connections to the internet (true when the VPC has NAT)."""
    test_listener_port: int | None = None
    """The blue/green test listener's port: adds the hook's group and its one path to the ALB. Default
    none (rolling deploys have no test traffic)."""
    queue_consumer: bool = False
    """Add the batch consumer's group: no ingress at all, egress as the tasks'. Default false (no queue)."""


class ServiceSecurityGroups(pulumi.ComponentResource):
    alb_security_group_id: pulumi.Output[str]
    task_security_group_id: pulumi.Output[str]
    hook_security_group_id: pulumi.Output[str] | None
    """The blue/green validation hook's group; None without a test listener."""
    consumer_security_group_id: pulumi.Output[str] | None
    """The batch consumer's group (no ingress); None without a queue."""

    def __init__(self, name: str, args: ServiceSecurityGroupsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:network:ServiceSecurityGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        alb = aws.ec2.SecurityGroup(
            f"{name}-alb", vpc_id=args.vpc_id, description="gantry load balancer: listeners only", opts=child
        )
        task = aws.ec2.SecurityGroup(
            f"{name}-task", vpc_id=args.vpc_id, description="gantry tasks: reachable from the ALB only", opts=child
        )
        self._listener_ingress(name, args, alb)
        allow(
            source=alb.id,
            target=task.id,
            port=args.container_port,
            egress_name=f"{name}-alb-to-task",
            ingress_name=f"{name}-task-from-alb",
            source_label="the ALB",
            target_label="the tasks",
            opts=child,
        )
        if args.https_egress_to_internet:
            https_out(f"{name}-task-https-out", task.id, "HTTPS to AWS APIs and model providers through NAT", child)
        self.hook_security_group_id = self._hook(name, args, alb) if args.test_listener_port is not None else None
        self.consumer_security_group_id = self._consumer(name, args) if args.queue_consumer else None
        self.alb_security_group_id = alb.id
        self.task_security_group_id = task.id
        self.register_outputs(
            {"albSecurityGroupId": self.alb_security_group_id, "taskSecurityGroupId": self.task_security_group_id}
        )

    def _listener_ingress(self, name: str, args: ServiceSecurityGroupsArgs, alb: aws.ec2.SecurityGroup) -> None:
        child = pulumi.ResourceOptions(parent=self)
        for port in args.listener_ports:
            for cidr in args.ingress_cidrs:
                # The rule is its (port, range): a changed range is a new rule, so the name carries both.
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-in-{port}-{cidr.replace('/', '_')}",
                    security_group_id=alb.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=cidr,
                    description=f"listener {port}",
                    opts=child,
                )

    def _hook(self, name: str, args: ServiceSecurityGroupsArgs, alb: aws.ec2.SecurityGroup) -> pulumi.Output[str]:
        """The blue/green hook's group: out to the test listener (and AWS APIs), nothing in."""
        assert args.test_listener_port is not None  # the constructor builds the hook's group only then
        child = pulumi.ResourceOptions(parent=self)
        hook = aws.ec2.SecurityGroup(
            f"{name}-hook",
            vpc_id=args.vpc_id,
            description="gantry blue/green hook: the test listener and AWS APIs only",
            opts=child,
        )
        allow(
            source=hook.id,
            target=alb.id,
            port=args.test_listener_port,
            egress_name=f"{name}-hook-to-test-listener",
            ingress_name=f"{name}-alb-test-from-hook",
            source_label="the blue/green hook",
            target_label="the test listener",
            opts=child,
        )
        if args.https_egress_to_internet:
            # CodeDeploy and EC2 have no endpoint in the stack: the verdict goes out through NAT.
            https_out(
                f"{name}-hook-https-out",
                hook.id,
                "HTTPS to the CodeDeploy, EC2 and Secrets Manager APIs through NAT",
                child,
            )
        return hook.id

    def _consumer(self, name: str, args: ServiceSecurityGroupsArgs) -> pulumi.Output[str]:
        # Nothing connects to a queue worker: it only calls out (SQS, S3, DynamoDB, logs, ECR).
        child = pulumi.ResourceOptions(parent=self)
        consumer = aws.ec2.SecurityGroup(
            f"{name}-consumer",
            vpc_id=args.vpc_id,
            description="gantry batch consumer: no ingress, AWS APIs only",
            opts=child,
        )
        if args.https_egress_to_internet:
            https_out(f"{name}-consumer-https-out", consumer.id, "HTTPS to SQS, S3, DynamoDB through NAT", child)
        return consumer.id

    @property
    def endpoint_clients(self) -> Mapping[str, pulumi.Input[str]]:
        """The groups that reach AWS through the VPC endpoints: the tasks, and the hook when there is one."""
        clients: dict[str, pulumi.Input[str]] = {"service": self.task_security_group_id}
        if self.hook_security_group_id is not None:
            clients["hook"] = self.hook_security_group_id
        if self.consumer_security_group_id is not None:
            clients["consumer"] = self.consumer_security_group_id
        return clients
