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
internet to the load balancer but CloudFront's in cloudfront mode; TLS only to viewers, with HSTS and the
other security headers set on every answer by a response headers policy; the CodeDeploy test listener
stays reachable from inside the VPC only (this component opens nothing on its port). Access logs
(standard logging v2, production by default) go to a private, SSE-S3, TLS-only bucket that only this
account's CloudFront log delivery can write and that expires them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies
from components.edge.load_balancer import ServiceLoadBalancer, validated_certificate
from components.edge.waf import Scope, WebFirewall, WebFirewallArgs
from components.env import AwsEnv
from components.private_bucket import private_bucket
from components.settings import DomainSettings
from components.settings.edge import EdgeSettings

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
# Two years, the HSTS max-age the preload list asks for (hstspreload.org); AWS's managed
# SecurityHeadersPolicy sends one year without includeSubDomains.
HSTS_MAX_AGE_SECONDS = 63_072_000
# CloudFront standard logging (v2) is set up through CloudWatch Logs' vended-log delivery, whose delivery
# source for a distribution must be created in us-east-1 ("Configure standard logging (v2)",
# https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logging.html); the bucket
# sits there too, with the delivery that writes it.
CLOUDFRONT_LOGGING_REGION = "us-east-1"


def api_security_headers() -> aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgsDict:
    """The security headers every answer gets, for a JSON API that no browser renders. Compared with AWS's
    managed SecurityHeadersPolicy (id 67f7725c-6f97-4210-82d7-5512b31e9d03, "Use managed response headers
    policies", https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-response-
    headers-policies.html: HSTS max-age one year, nosniff, X-Frame-Options SAMEORIGIN, Referrer-Policy
    strict-origin-when-cross-origin, X-XSS-Protection 1; mode=block): HSTS for two years with
    includeSubDomains; frames and referrers refused outright (DENY, no-referrer) because nothing here is
    a page; a Content-Security-Policy that lets a JSON answer load or frame nothing; and X-XSS-Protection
    0, as OWASP's HTTP headers cheat sheet advises (the legacy filter it switches on can itself be abused
    and modern browsers have dropped it). Every header overrides the origin's, so the worker cannot
    weaken them."""
    return {
        "strict_transport_security": {
            "access_control_max_age_sec": HSTS_MAX_AGE_SECONDS,
            "include_subdomains": True,
            "preload": False,  # a preload-list entry is a commitment for the whole domain: the owner's call
            "override": True,
        },
        "content_type_options": {"override": True},
        "frame_options": {"frame_option": "DENY", "override": True},
        "referrer_policy": {"referrer_policy": "no-referrer", "override": True},
        "content_security_policy": {
            "content_security_policy": "default-src 'none'; frame-ancestors 'none'",
            "override": True,
        },
        "xss_protection": {"protection": False, "override": True},
    }


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
    load_balancer: ServiceLoadBalancer
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
    cutover (components.edge.cutover) holds the hostname as CNAMEs, which cannot share a name with them."""
    access_logs: bool = False
    """Default false. True: CloudFront standard logging (v2) into a private, encrypted, TLS-only bucket
    that expires its logs after `settings.access_log_retention_days` (cloudfront mode only)."""
    force_destroy: bool = False
    """Default false: `pulumi destroy` refuses the access-log bucket while it holds logs. The program sets
    it on non-production stacks so `pulumi destroy -s dev` removes it with its logs."""


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
        headers = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-security-headers",
            name=f"gantry-{args.env.stack}-security-headers",
            comment=f"gantry {args.env.stack}: security headers on every answer",
            security_headers_config=api_security_headers(),
            opts=child,
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
                "response_headers_policy_id": headers.id,
                # Compressing would buffer and re-encode every JSON answer for no cache benefit.
                "compress": False,
            },
            restrictions={"geo_restriction": {"restriction_type": "none"}},
            viewer_certificate=viewer_certificate,
            opts=child,
        )
        if args.access_logs:
            self._access_logs(name, args, self.distribution.arn, us_east_1)
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

    def _access_logs(
        self, name: str, args: EdgeArgs, distribution_arn: pulumi.Output[str], us_east_1: aws.Provider
    ) -> None:
        """Standard logging (v2) to S3 rather than legacy standard logging: legacy delivery needs the
        bucket's ACLs enabled and an ACL grant to the awslogsdelivery account, v2 writes through a bucket
        policy to one service principal with ownership left BucketOwnerEnforced (no ACLs at all)."""
        child = pulumi.ResourceOptions(parent=self, provider=us_east_1)
        bucket, bucket_policy = private_bucket(
            f"{name}-access-logs",
            force_destroy=args.force_destroy,
            lifecycle_rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": "AWSLogs/"},
                    "expiration": {"days": args.settings.access_log_retention_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            policy=lambda arn: policies.cloudfront_log_bucket_policy(
                args.env, bucket_arn=arn, delivery_region=CLOUDFRONT_LOGGING_REGION
            ),
            opts=child,
        )
        source = aws.cloudwatch.LogDeliverySource(
            f"{name}-log-source",
            name=f"gantry-{args.env.stack}-cloudfront",
            log_type="ACCESS_LOGS",
            resource_arn=distribution_arn,
            opts=child,
        )
        destination = aws.cloudwatch.LogDeliveryDestination(
            f"{name}-log-destination",
            name=f"gantry-{args.env.stack}-cloudfront-s3",
            output_format="json",
            delivery_destination_configuration={"destination_resource_arn": bucket.arn},
            opts=child,
        )
        aws.cloudwatch.LogDelivery(
            f"{name}-log-delivery",
            delivery_source_name=source.name,
            delivery_destination_arn=destination.arn,
            # The first delivery is checked against the bucket policy: it must exist first.
            opts=pulumi.ResourceOptions(parent=self, provider=us_east_1, depends_on=[bucket_policy]),
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
