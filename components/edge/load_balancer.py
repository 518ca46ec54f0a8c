"""ServiceLoadBalancer: the ALB in front of the service, its target groups, listeners, TLS and DNS.

One application load balancer with target groups of type `ip` whose port and health-check port are the
container port (they come from one setting, so they cannot disagree). Public (edge.mode alb) it sits
in the public subnets with a domain: an ACM certificate validated through Route 53, an HTTPS listener
on a TLS 1.3 policy, HTTP redirected to HTTPS, and an alias record. Behind CloudFront (the default) it
is internal, in the private subnets with no public address, and its one HTTP listener is CloudFront's
VPC origin (the `Edge` admits only that path to it). It was `PublicLoadBalancer` while the load balancer
was always public; the type token is part of every child's URN, so the component carries its old one,
`gantry:lb:PublicLoadBalancer`, as an alias (as awsx does for its renamed types), and a live stack keeps
every resource (tests/test_urn_snapshot.py). It can own several
target groups and a test listener, which is what a CodeDeploy blue/green deployment needs: then
CodeDeploy owns which group each forwarding listener points at, so Pulumi ignores their actions, and
the first group keeps the identity of the single-group stack's `main` (and back), so a live target
group is never replaced when a stack changes strategy.
Security stance: invalid header fields dropped, desync mitigation on, deletion protection and access
logs per config; the access-log bucket is private, encrypted, TLS-only and expires its objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies
from components.env import AwsEnv
from components.network.vpc import VpcHandles
from components.private_bucket import private_bucket
from components.settings import ContainerSettings, DomainSettings, LoadBalancerSettings
from components.workload.scaling import RequestCounts
from components.workload.service import TargetAttachment

ACCESS_LOG_PREFIX = "alb"
# The production target group's role in each shape: a rolling stack's `main` is a blue/green stack's `blue`.
PRODUCTION_ROLES = ("main", "blue")
# The type token this component had as PublicLoadBalancer: the engine moves the component and, through it,
# every child to the new token without a replacement (Pulumi docs, resource option `aliases`).
RENAMED = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="gantry:lb:PublicLoadBalancer")])


@dataclass(frozen=True, kw_only=True)
class ServiceLoadBalancerArgs:
    env: AwsEnv
    vpc: VpcHandles
    """The load balancer goes into the VPC's public (or, internal, private) subnets; target groups into the VPC."""
    security_group_id: pulumi.Input[str]
    container: ContainerSettings
    """The container's one port is the target and health-check port; its health path is checked."""
    settings: LoadBalancerSettings
    domain: DomainSettings | None
    """Route 53 zone + hostname for HTTPS on the load balancer itself (edge.mode alb); None for the
    internal load balancer behind CloudFront, whose one listener is plain HTTP inside the VPC."""
    internal: bool = False
    """Default false (public). True behind CloudFront: private subnets, no public address."""
    target_group_roles: Sequence[str] = ("main",)
    """One target group per role; the first receives production traffic. Blue/green uses two."""
    test_listener_port: int | None = None
    """A listener forwarding to the second target group, for validating a new version before the shift."""
    alias_record: bool = True
    """Default true: with a domain, an alias record points the hostname at the ALB. False while a weighted
    cutover (components.edge.cutover) holds the hostname as CNAMEs, which cannot coexist with the alias."""
    force_destroy: bool = False
    """Default false: `pulumi destroy` refuses the access-log bucket that still holds objects. The program sets it on
    non-production stacks (Settings.production false) so `pulumi destroy -s dev` empties and removes it."""


def listener_ports(domain: DomainSettings | None) -> tuple[int, ...]:
    """The production listener ports: HTTP always (serving or redirecting), HTTPS with a domain."""
    return (80, 443) if domain else (80,)


def check_listeners(args: ServiceLoadBalancerArgs) -> None:
    """Refuse the listener layouts that cannot be safe, before any resource exists."""
    if args.domain is None and not args.internal:
        raise ValueError("a public load balancer needs a domain: it would serve plain HTTP to the internet")
    if args.test_listener_port is not None and len(args.target_group_roles) < 2:
        raise ValueError("a test listener needs a second target group to forward to")


def listener_url(dns_name: pulumi.Output[str], domain: DomainSettings | None) -> pulumi.Output[str]:
    """https://<hostname> with a domain; http://<internal DNS name> behind CloudFront."""
    if domain is None:
        return dns_name.apply(lambda dns: f"http://{dns}")
    return pulumi.Output.from_input(f"https://{domain.hostname}")


class ServiceLoadBalancer(pulumi.ComponentResource):
    load_balancer: aws.lb.LoadBalancer
    target_groups: dict[str, aws.lb.TargetGroup]
    production_listener: aws.lb.Listener
    test_listener: aws.lb.Listener | None
    url: pulumi.Output[str]
    """The load balancer's own URL: https://<domain> when public; http://<internal DNS name> behind CloudFront."""
    production_port: int
    """The production listener's port: 443 with a domain, 80 behind CloudFront."""
    dns_name: pulumi.Output[str]
    """The ALB's DNS name: the target of the hostname's alias (or of a cutover's `gantry` record)."""
    arn_suffix: pulumi.Output[str]
    """The `LoadBalancer` dimension of its CloudWatch metrics."""
    request_counts: RequestCounts
    """Where requests-per-target scaling counts: the load balancer and every target group (blue and
    green with CodeDeploy, which moves production between them on each deploy)."""

    def __init__(self, name: str, args: ServiceLoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:lb:ServiceLoadBalancer", name, None, pulumi.ResourceOptions.merge(opts, RENAMED))
        check_listeners(args)
        self.load_balancer = self._load_balancer(name, args)
        self.target_groups = self._target_groups(name, args)
        # CodeDeploy re-points the forwarding listeners on every deployment (blue and green swap roles);
        # Pulumi resetting them would send production traffic to whichever group is idle.
        forwarding = pulumi.ResourceOptions(
            parent=self, ignore_changes=["defaultActions"] if args.test_listener_port is not None else None
        )
        if args.domain is None:
            self.production_listener = self._http_listener(name, args, forwarding)
        else:
            self.production_listener = self._https_listener(name, args, args.domain, forwarding)
        self.url = listener_url(self.load_balancer.dns_name, args.domain)
        self.test_listener = self._test_listener(name, args, forwarding)
        self.production_port = 443 if args.domain else 80
        self._container_port = args.container.port
        self.arn_suffix = self.load_balancer.arn_suffix
        self.request_counts = RequestCounts(
            load_balancer=self.load_balancer.arn_suffix,
            target_groups=tuple(group.arn_suffix for group in self.target_groups.values()),
        )
        self.dns_name = self.load_balancer.dns_name
        self.register_outputs({"url": self.url, "dnsName": self.load_balancer.dns_name})

    def _load_balancer(self, name: str, args: ServiceLoadBalancerArgs) -> aws.lb.LoadBalancer:
        s = args.settings
        access_logs: aws.lb.LoadBalancerAccessLogsArgsDict | None = None
        lb_depends: list[pulumi.Resource] = []
        if s.access_logs:
            bucket, bucket_policy = self._access_log_bucket(name, args, pulumi.ResourceOptions(parent=self))
            access_logs = {"bucket": bucket.bucket, "prefix": ACCESS_LOG_PREFIX, "enabled": True}
            lb_depends.append(bucket_policy)  # ELB test-writes the bucket when logging is enabled
        return aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=args.internal,
            ip_address_type="ipv4",
            subnets=args.vpc.private_subnet_ids if args.internal else args.vpc.public_subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode=s.desync_mitigation_mode,
            enable_deletion_protection=s.deletion_protection,
            idle_timeout=s.idle_timeout_seconds,
            access_logs=access_logs,
            opts=pulumi.ResourceOptions(parent=self, depends_on=lb_depends),
        )

    def _target_groups(self, name: str, args: ServiceLoadBalancerArgs) -> dict[str, aws.lb.TargetGroup]:
        """One target group per role; the first keeps the identity of the other production role (`main` /
        `blue`) through an alias, so a stack changing strategy never replaces its live group."""
        s = args.settings
        hc = s.health_check
        primary_role = args.target_group_roles[0]
        return {
            role: aws.lb.TargetGroup(
                f"{name}-{role}",
                vpc_id=args.vpc.vpc_id,
                target_type="ip",
                protocol="HTTP",
                port=args.container.port,
                deregistration_delay=s.deregistration_delay_seconds,
                # Inference requests vary widely in cost; send each to the task with the fewest in flight.
                load_balancing_algorithm_type="least_outstanding_requests",
                health_check={
                    "enabled": True,
                    "protocol": "HTTP",
                    "path": args.container.health_check_path,
                    "port": str(args.container.port),
                    "matcher": "200",
                    "interval": hc.interval_seconds,
                    "timeout": hc.timeout_seconds,
                    "healthy_threshold": hc.healthy_threshold,
                    "unhealthy_threshold": hc.unhealthy_threshold,
                },
                opts=pulumi.ResourceOptions(
                    parent=self,
                    aliases=[pulumi.Alias(name=f"{name}-{other}") for other in PRODUCTION_ROLES if other != role]
                    if role == primary_role and role in PRODUCTION_ROLES
                    else None,
                ),
            )
            for role in args.target_group_roles
        }

    def _forward(self, role: str) -> list[aws.lb.ListenerDefaultActionArgsDict]:
        return [{"type": "forward", "target_group_arn": self.target_groups[role].arn}]

    def _http_listener(
        self, name: str, args: ServiceLoadBalancerArgs, forwarding: pulumi.ResourceOptions
    ) -> aws.lb.Listener:
        """Behind CloudFront: one plain-HTTP listener inside the VPC, CloudFront's VPC origin."""
        return aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=self._forward(args.target_group_roles[0]),
            opts=forwarding,
        )

    def _https_listener(
        self, name: str, args: ServiceLoadBalancerArgs, domain: DomainSettings, forwarding: pulumi.ResourceOptions
    ) -> aws.lb.Listener:
        """Public with a domain: HTTP redirected to HTTPS, the HTTPS listener, and (unless a cutover holds
        the hostname) the alias record."""
        child = pulumi.ResourceOptions(parent=self)
        certificate_arn = validated_certificate(name, domain, self)
        aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.load_balancer.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}
            ],
            opts=child,
        )
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=self.load_balancer.arn,
            port=443,
            protocol="HTTPS",
            ssl_policy=args.settings.tls_policy,
            certificate_arn=certificate_arn,
            default_actions=self._forward(args.target_group_roles[0]),
            opts=forwarding,
        )
        if args.alias_record:
            aws.route53.Record(
                f"{name}-alias",
                zone_id=domain.hosted_zone_id,
                name=domain.hostname,
                type="A",
                aliases=[
                    {
                        "name": self.load_balancer.dns_name,
                        "zone_id": self.load_balancer.zone_id,
                        "evaluate_target_health": True,
                    }
                ],
                opts=child,
            )
        return listener

    def _test_listener(
        self, name: str, args: ServiceLoadBalancerArgs, forwarding: pulumi.ResourceOptions
    ) -> aws.lb.Listener | None:
        """A listener forwarding to the second target group, where a new version is validated before the shift."""
        if args.test_listener_port is None:
            return None
        return aws.lb.Listener(
            f"{name}-test",
            load_balancer_arn=self.load_balancer.arn,
            port=args.test_listener_port,
            protocol="HTTP",
            default_actions=self._forward(args.target_group_roles[1]),
            opts=forwarding,
        )

    def attachment(self, role: str) -> TargetAttachment:
        """The target group of `role` as a service attaches to it (the production listener for the
        first role, the test listener for the second)."""
        group = self.target_groups[role]
        roles = list(self.target_groups)
        listener = self.production_listener if role == roles[0] or self.test_listener is None else self.test_listener
        return TargetAttachment(
            target_group_arn=group.arn,
            container_port=self._container_port,
            listener=listener,
        )

    def _access_log_bucket(self, name: str, args: ServiceLoadBalancerArgs, child: pulumi.ResourceOptions):
        return private_bucket(
            f"{name}-access-logs",
            force_destroy=args.force_destroy,
            lifecycle_rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": f"{ACCESS_LOG_PREFIX}/"},
                    "expiration": {"days": args.settings.access_log_retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            policy=lambda arn: policies.alb_access_log_bucket_policy(
                args.env, bucket_arn=arn, prefix=ACCESS_LOG_PREFIX
            ),
            opts=child,
        )


def validated_certificate(
    name: str, domain: DomainSettings, parent: pulumi.Resource, provider: aws.Provider | None = None
) -> pulumi.Output[str]:
    """An ACM certificate for `domain.hostname`, validated through a Route 53 record in its zone; the ARN
    resolves once ACM has issued it, so whatever uses it waits for a valid certificate. `provider` puts
    the certificate in another region (CloudFront's come from us-east-1); Route 53 is global."""
    in_region = pulumi.ResourceOptions(parent=parent, provider=provider)
    certificate = aws.acm.Certificate(
        f"{name}-certificate", domain_name=domain.hostname, validation_method="DNS", opts=in_region
    )
    # One hostname, so exactly one validation record.
    option = certificate.domain_validation_options.apply(lambda options: options[0])
    record = aws.route53.Record(
        f"{name}-certificate-validation",
        zone_id=domain.hosted_zone_id,
        name=option.apply(lambda o: o.resource_record_name or ""),
        type=option.apply(lambda o: o.resource_record_type or ""),
        records=[option.apply(lambda o: o.resource_record_value or "")],
        ttl=300,
        allow_overwrite=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    validation = aws.acm.CertificateValidation(
        f"{name}-certificate-validated",
        certificate_arn=certificate.arn,
        validation_record_fqdns=[record.fqdn],
        opts=in_region,
    )
    return validation.certificate_arn
