"""Edge: what faces the internet - a CloudFront distribution (default) or the public load balancer - and its WAF.

`edge.mode: cloudfront` (the default) puts a CloudFront distribution in front of the *internal* load
balancer, reached through a CloudFront VPC origin, so the load balancer has no public address at all.
Viewers get HTTPS on the distribution's own `*.cloudfront.net` name (or on `gantry:domain`, with an ACM
certificate in us-east-1 and an alias record); HTTP viewers are redirected. The API is never cached:
AWS's managed CachingDisabled cache policy with the AllViewerExceptHostHeader origin request policy
forwards every method, header (Authorization included), cookie and query string. The load balancer's
security group admits only the VPC origin's security group, and only on the origin listener's port.
`edge.mode: alb` keeps the public load balancer (its HTTPS listener, certificate and alias record are
the load balancer's own) and only adds the WAF. Either way the web ACL is in front of the edge and the
component hands out what consumers need: `url`, `name`, the Route 53 alias target (`dns_name`,
`zone_id`) and `metrics` (where the edge's CloudWatch metrics are). Security stance: no path from the
internet to the load balancer but CloudFront's in cloudfront mode; TLS only to viewers; the CodeDeploy
test listener stays reachable from inside the VPC only (this component opens nothing on its port).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.load_balancer import PublicLoadBalancer, validated_certificate
from components.settings import DomainSettings
from components.settings.edge import EdgeSettings
from components.waf import Scope, WebFirewall, WebFirewallArgs

# AWS managed policies ("Use managed cache policies", "Use managed origin request policies" in the
# CloudFront Developer Guide). CachingDisabled: every TTL 0, nothing in the cache key.
# AllViewerExceptHostHeader: every viewer header, cookie and query string except Host (the load
# balancer is addressed by its own name). An origin request policy may not list Authorization itself
# (CloudFront answers 400), but "if caching is disabled, you can use the AllViewer and
# AllViewerExceptHostHeader origin request policies to forward an Authorization header"
# (https://repost.aws/knowledge-center/cloudfront-authorization-header).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ALL_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]
# The security group CloudFront creates in a VPC when its first VPC origin there is created; the
# origin's own group must admit it (the Developer Guide's "Restrict access with VPC origins" offers it,
# or the origin-facing prefix list, which weighs 55 of a group's 60 rules and admits every CloudFront
# address rather than this account's VPC origins). It exists only after the VpcOrigin does, so it is
# looked up with the VpcOrigin as a dependency: the first `pulumi up` creates the origin, then finds the
# group, then opens the path (https://github.com/hashicorp/terraform-provider-aws/issues/40683).
VPC_ORIGIN_SECURITY_GROUP = "CloudFront-VPCOrigins-Service-SG"
CLOUDFRONT_METRICS_REGION = "us-east-1"


@dataclass(frozen=True, kw_only=True)
class EdgeMetrics:
    """Where the edge's CloudWatch metrics are: CloudFront publishes only in us-east-1, with Region=Global."""

    namespace: str
    dimensions: Mapping[str, pulumi.Input[str]]
    region: str


@dataclass(frozen=True, kw_only=True)
class EdgeArgs:
    env: AwsEnv
    settings: EdgeSettings
    domain: DomainSettings | None
    """The viewers' hostname (with its certificate and alias record); None: the distribution's own name.
    In alb mode the load balancer owns the domain's certificate and record."""
    load_balancer: PublicLoadBalancer
    """The origin (internal, cloudfront mode) or the edge itself (public, alb mode)."""
    load_balancer_security_group_id: pulumi.Input[str]
    """The load balancer's group: cloudfront mode adds the one ingress from the VPC origin's group."""
    vpc_id: pulumi.Input[str]
    """Where CloudFront creates its VPC-origin security group."""
    origin_port: int
    """The internal load balancer's production listener port (plain HTTP inside the VPC)."""
    waf_max_body_bytes: int | None
    """The WAF's body-size limit (Settings.waf_max_body_bytes)."""
    provider_tags: Mapping[str, str]
    """The stack's aws:defaultTags, which an explicit provider (us-east-1) does not inherit."""
    alias_record: bool = True
    """Default true: the domain's A/AAAA alias records point at the distribution. False while a weighted
    cutover (components.cutover) holds the hostname as CNAMEs, which cannot share a name with them."""


class Edge(pulumi.ComponentResource):
    url: pulumi.Output[str]
    """The HTTPS URL clients use."""
    name: pulumi.Output[str]
    """The distribution id (cloudfront) or the load balancer's DNS name (alb)."""
    dns_name: pulumi.Output[str]
    """Route 53 alias target: the distribution's or the load balancer's DNS name."""
    zone_id: pulumi.Output[str]
    """Route 53 alias target: the hosted zone id that goes with `dns_name`."""
    metrics: EdgeMetrics
    distribution: aws.cloudfront.Distribution | None
    firewall: WebFirewall | None
    alarm_provider: pulumi.ProviderResource | None
    """The provider of the region the edge's metrics live in when it is not the stack's (CloudFront:
    us-east-1), for alarms on them; None when they are in the stack's region (alb mode)."""

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:edge:Edge", name, None, opts)
        s, lb = args.settings, args.load_balancer.load_balancer
        self.distribution = None
        self.alarm_provider = None
        if s.mode == "alb":
            self.firewall = self._firewall(name, args, "REGIONAL", None)
            if self.firewall is not None:
                aws.wafv2.WebAclAssociation(
                    f"{name}-waf-association",
                    resource_arn=lb.arn,
                    web_acl_arn=self.firewall.arn,
                    opts=pulumi.ResourceOptions(parent=self),
                )
            self.url = args.load_balancer.url
            self.name = lb.dns_name
            self.dns_name, self.zone_id = lb.dns_name, lb.zone_id
            self.metrics = EdgeMetrics(
                namespace="AWS/ApplicationELB",
                dimensions={"LoadBalancer": args.load_balancer.arn_suffix},
                region=args.env.region,
            )
        else:
            self._cloudfront(name, args)
        self.register_outputs({"url": self.url, "name": self.name, "dnsName": self.dns_name})

    def _cloudfront(self, name: str, args: EdgeArgs) -> None:
        s, lb = args.settings, args.load_balancer.load_balancer
        child = pulumi.ResourceOptions(parent=self)
        us_east_1 = aws.Provider(
            f"{name}-us-east-1",
            region=CLOUDFRONT_METRICS_REGION,
            default_tags={"tags": dict(args.provider_tags)},
            opts=child,
        )
        self.alarm_provider = us_east_1
        origin = aws.cloudfront.VpcOrigin(
            f"{name}-vpc-origin",
            vpc_origin_endpoint_config={
                "name": f"gantry-{args.env.stack}",
                "arn": lb.arn,
                "http_port": args.origin_port,
                "https_port": 443,
                "origin_protocol_policy": "http-only",
                # Required by the API even for http-only; never used.
                "origin_ssl_protocols": {"items": ["TLSv1.2"], "quantity": 1},
            },
            opts=child,
        )
        origin_group = aws.ec2.get_security_group_output(
            vpc_id=args.vpc_id,
            filters=[{"name": "group-name", "values": [VPC_ORIGIN_SECURITY_GROUP]}],
            opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[origin]),
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-alb-from-cloudfront",
            security_group_id=args.load_balancer_security_group_id,
            ip_protocol="tcp",
            from_port=args.origin_port,
            to_port=args.origin_port,
            referenced_security_group_id=origin_group.id,
            description=f"CloudFront VPC origin on port {args.origin_port}",
            opts=child,
        )

        certificate = validated_certificate(name, args.domain, self, us_east_1) if args.domain else None
        self.firewall = self._firewall(name, args, "CLOUDFRONT", us_east_1)
        viewer_certificate: aws.cloudfront.DistributionViewerCertificateArgsDict = (
            {
                "acm_certificate_arn": certificate,
                "ssl_support_method": "sni-only",
                "minimum_protocol_version": s.minimum_protocol_version,
            }
            if certificate is not None
            # The default *.cloudfront.net certificate: CloudFront fixes its security policy itself.
            else {"cloudfront_default_certificate": True}
        )
        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution",
            enabled=True,
            comment=f"gantry {args.env.stack}",
            aliases=[args.domain.hostname] if args.domain else None,
            http_version="http2and3",
            is_ipv6_enabled=True,
            price_class=s.price_class,
            web_acl_id=self.firewall.arn if self.firewall is not None else None,
            origins=[
                {
                    "origin_id": "load-balancer",
                    "domain_name": lb.dns_name,
                    "vpc_origin_config": {
                        "vpc_origin_id": origin.id,
                        "origin_read_timeout": s.origin_read_timeout_seconds,
                        "origin_keepalive_timeout": s.origin_keepalive_timeout_seconds,
                    },
                }
            ],
            default_cache_behavior={
                "target_origin_id": "load-balancer",
                "viewer_protocol_policy": "redirect-to-https",
                "allowed_methods": ALL_METHODS,
                "cached_methods": ["GET", "HEAD"],
                "cache_policy_id": CACHING_DISABLED,
                "origin_request_policy_id": ALL_VIEWER_EXCEPT_HOST_HEADER,
                # Compressing would buffer and re-encode every JSON answer for no cache benefit.
                "compress": False,
            },
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate=viewer_certificate,
            opts=child,
        )
        if args.domain is not None and args.alias_record:
            for record_type in ("A", "AAAA"):
                aws.route53.Record(
                    f"{name}-alias-{record_type.lower()}",
                    zone_id=args.domain.hosted_zone_id,
                    name=args.domain.hostname,
                    type=record_type,
                    aliases=[
                        {
                            "name": self.distribution.domain_name,
                            "zone_id": self.distribution.hosted_zone_id,
                            "evaluate_target_health": False,
                        }
                    ],
                    opts=child,
                )
            self.url = pulumi.Output.from_input(f"https://{args.domain.hostname}")
        else:
            self.url = self.distribution.domain_name.apply(lambda dns: f"https://{dns}")
        self.name = self.distribution.id
        self.dns_name, self.zone_id = self.distribution.domain_name, self.distribution.hosted_zone_id
        self.metrics = EdgeMetrics(
            namespace="AWS/CloudFront",
            dimensions={"DistributionId": self.distribution.id, "Region": "Global"},
            region=CLOUDFRONT_METRICS_REGION,
        )

    def _firewall(self, name: str, args: EdgeArgs, scope: Scope, provider: aws.Provider | None) -> WebFirewall | None:
        if not args.settings.waf.enabled:
            return None
        return WebFirewall(
            f"{name}-waf",
            WebFirewallArgs(
                env=args.env,
                settings=args.settings.waf,
                scope=scope,
                max_body_bytes=args.waf_max_body_bytes,
                provider=provider,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
