"""gantry: one containerised AI service on ECS Fargate behind an ALB, per stack config.

Reads like the architecture: config -> settings -> network -> security groups -> VPC endpoints ->
secrets -> image -> load balancer -> service -> outputs. Config is read and validated here, once,
before any resource is registered; components receive typed Args and never read config themselves.
"""

from pathlib import Path

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.endpoints import VpcEndpoints, VpcEndpointsArgs
from components.load_balancer import PublicLoadBalancer, PublicLoadBalancerArgs, listener_ports
from components.network import Network, NetworkArgs
from components.registry import ImageRepository, ImageRepositoryArgs, content_tag
from components.secrets import AppSecrets, AppSecretsArgs
from components.security_groups import ServiceSecurityGroups, ServiceSecurityGroupsArgs
from components.service import FargateService, FargateServiceArgs
from components.settings import ARCHITECTURES, NAMESPACE, ConfigError, load_settings


def raw_config() -> tuple[dict, list[str]]:
    """Every `gantry:*` key the CLI passed in (however it passed them), and which keys are secret."""
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values = {k: v for k, v in merged.items() if k.startswith(f"{NAMESPACE}:")}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys.update(k for k in values if runtime_config.is_config_secret(k))
    return values, sorted(secret_keys)


values, secret_keys = raw_config()
try:
    settings = load_settings(values, region=pulumi.Config("aws").get("region"), secret_keys=secret_keys)
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

account_id = aws.get_caller_identity_output().account_id
stack = pulumi.get_stack()

network = Network(
    "gantry-network",
    NetworkArgs(
        cidr_block=settings.network.cidr_block,
        availability_zones=settings.network.availability_zones,
        nat_strategy=settings.network.nat_strategy,
        flow_logs=settings.network.flow_logs,
        flow_log_retention_days=settings.network.flow_log_retention_days,
        account_id=account_id,
        region=settings.region,
        partition=settings.partition,
    ),
)

security_groups = ServiceSecurityGroups(
    "gantry-sg",
    ServiceSecurityGroupsArgs(
        vpc_id=network.vpc_id,
        container_port=settings.container.port,
        listener_ports=listener_ports(settings.domain),
        ingress_cidrs=settings.load_balancer.ingress_cidrs,
        https_egress_to_internet=settings.network.nat_strategy != "none",
    ),
)

endpoints = VpcEndpoints(
    "gantry-endpoints",
    VpcEndpointsArgs(
        vpc_id=network.vpc_id,
        region=settings.region,
        subnet_ids=network.private_subnet_ids,
        route_table_ids=network.private_route_table_ids,
        interface_services=settings.endpoints.interface,
        s3_gateway=settings.endpoints.s3_gateway,
        clients={"service": security_groups.task_security_group_id},
    ),
)

secrets = AppSecrets("gantry-secrets", AppSecretsArgs(specs=settings.secrets, values=settings.secret_values))

project_dir = Path(__file__).resolve().parent
platform = ARCHITECTURES[settings.container.architecture]
image = ImageRepository(
    "gantry-image",
    ImageRepositoryArgs(
        context=settings.image.context,
        dockerfile=settings.image.dockerfile,
        platform=platform,
        keep_images=settings.image.keep_images,
        image_tag=content_tag(project_dir / settings.image.context, project_dir / settings.image.dockerfile, platform),
        force_delete=settings.image.force_delete,
    ),
)

load_balancer = PublicLoadBalancer(
    "gantry-lb",
    PublicLoadBalancerArgs(
        vpc_id=network.vpc_id,
        public_subnet_ids=network.public_subnet_ids,
        security_group_id=security_groups.alb_security_group_id,
        container_port=settings.container.port,
        health_check_path=settings.container.health_check_path,
        settings=settings.load_balancer,
        domain=settings.domain,
        account_id=account_id,
        region=settings.region,
        partition=settings.partition,
    ),
)
target_group = load_balancer.target_groups["main"]

service = FargateService(
    "gantry",
    FargateServiceArgs(
        family=f"gantry-{stack}",
        account_id=account_id,
        region=settings.region,
        partition=settings.partition,
        subnet_ids=network.private_subnet_ids,
        security_group_id=security_groups.task_security_group_id,
        image_uri=image.image_uri,
        repository_arn=image.repository_arn,
        container=settings.container,
        service=settings.service,
        autoscaling=settings.autoscaling,
        log_retention_days=settings.log_retention_days,
        target_group_arn=target_group.arn,
        request_count_resource_label=pulumi.Output.concat(
            load_balancer.load_balancer.arn_suffix, "/", target_group.arn_suffix
        ),
        secrets=secrets.env_arns,
        secrets_manager_arns=secrets.secrets_manager_arns,
        ssm_parameter_arns=secrets.ssm_parameter_arns,
        kms_key_arns=secrets.kms_key_arns,
        task_statements=settings.task_policy,
        service_dependencies=[load_balancer.production_listener, endpoints],
    ),
)

pulumi.export("serviceUrl", load_balancer.url)
pulumi.export("clusterName", service.cluster.name)
pulumi.export("serviceName", service.service.name)
pulumi.export("logGroupName", service.log_group.name)
pulumi.export("repositoryUrl", image.repository_url)
pulumi.export("imageDigest", image.image_digest)
