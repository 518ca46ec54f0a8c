"""gantry: one containerised AI service on ECS Fargate behind an ALB and an edge, per stack config.

Reads like the architecture: config -> settings -> network -> security groups -> VPC endpoints ->
secrets -> image -> load balancer -> edge (CloudFront + WAF, or WAF on the public ALB) -> weighted DNS
cutover (only while moving off a legacy endpoint) -> notifications -> rollback alarms -> cluster -> batch
jobs (queue.enabled: the queue, files, records and the consumer service) -> service -> blue/green
deployment (prod: CodeDeploy; dev: nothing, ECS rolls) -> operations alarms -> dashboard -> budget ->
outputs. Config is read and validated here, once, before any resource is registered (what validation
needs from AWS is looked up first, with
invokes); components receive typed Args and never read config themselves. This file holds no
arithmetic, string building or indexing: a value that needs computing belongs to the box that owns it.
"""

import pulumi

from components.batch.jobs import BatchJobs, BatchJobsArgs
from components.blue_green.component import BlueGreenDeployment, BlueGreenDeploymentArgs
from components.edge.cutover import WeightedCutover, WeightedCutoverArgs
from components.edge.distribution import Edge, EdgeArgs
from components.edge.load_balancer import ServiceLoadBalancer, ServiceLoadBalancerArgs, listener_ports
from components.env import AwsEnv
from components.network.endpoints import VpcEndpoints, VpcEndpointsArgs
from components.network.security_groups import ServiceSecurityGroups, ServiceSecurityGroupsArgs
from components.network.vpc import Network, NetworkArgs
from components.observability.alarms import ServiceMetricIdentity
from components.observability.budget import CostBudget, CostBudgetArgs
from components.observability.notifications import Notifications, NotificationsArgs
from components.observability.operations import (
    Dashboard,
    DashboardArgs,
    OperationsAlarms,
    OperationsAlarmsArgs,
    edge_identity,
    worker_identity,
)
from components.observability.rollback_alarms import RollbackAlarms, RollbackAlarmsArgs
from components.stack_config import PROJECT_DIR, settings_from_stack_config
from components.workload.cluster import Cluster
from components.workload.registry import ImageRepository, ImageRepositoryArgs
from components.workload.scaling import scheduled_bounds, standard_rules
from components.workload.secrets import AppSecrets, AppSecretsArgs
from components.workload.service import FargateService, FargateServiceArgs

settings = settings_from_stack_config()
env = AwsEnv.current(settings)

network = Network("gantry-network", NetworkArgs(env=env, settings=settings.network))

security_groups = ServiceSecurityGroups(
    "gantry-sg",
    ServiceSecurityGroupsArgs(
        vpc_id=network.vpc_id,
        container_port=settings.container.port,
        listener_ports=listener_ports(settings.load_balancer_domain),
        ingress_cidrs=settings.listener_ingress_cidrs,
        https_egress_to_internet=settings.network.has_nat,
        test_listener_port=settings.deployment.test_listener,
        queue_consumer=settings.queue.enabled,
    ),
)

endpoints = VpcEndpoints(
    "gantry-endpoints",
    VpcEndpointsArgs(
        env=env,
        vpc=network,
        settings=settings.endpoints,
        clients=security_groups.endpoint_clients,
    ),
)

secrets = AppSecrets("gantry-secrets", AppSecretsArgs(specs=settings.secrets, values=settings.secret_values))

image = ImageRepository(
    "gantry-image",
    ImageRepositoryArgs(
        settings=settings.image,
        platform=settings.container.platform,
        project_dir=PROJECT_DIR,
        promoted=settings.promoted,
        source=settings.source,
        stack=env.stack,
        provider_session=settings.provider_session,
    ),
)

load_balancer = ServiceLoadBalancer(
    "gantry-lb",
    ServiceLoadBalancerArgs(
        env=env,
        vpc=network,
        security_group_id=security_groups.alb_security_group_id,
        container=settings.container,
        settings=settings.load_balancer,
        domain=settings.load_balancer_domain,
        internal=settings.internal_load_balancer,
        target_group_roles=settings.deployment.target_group_roles,
        test_listener_port=settings.deployment.test_listener,
        alias_record=settings.migration.owns_hostname,
        force_destroy=settings.force_destroy_buckets,
    ),
)
attachment = load_balancer.attachment(settings.deployment.production_role)

edge = Edge(
    "gantry-edge",
    EdgeArgs(
        env=env,
        settings=settings.edge,
        domain=settings.domain,
        load_balancer=load_balancer,
        load_balancer_security_group_id=security_groups.alb_security_group_id,
        vpc_id=network.vpc_id,
        origin_port=load_balancer.production_port,
        waf_max_body_bytes=settings.waf_max_body_bytes,
        provider_tags=settings.provider_tags,
        alias_record=settings.migration.owns_hostname,
        access_logs=settings.edge_access_logs,
        force_destroy=settings.force_destroy_buckets,
    ),
)

cutover = WeightedCutover(
    "gantry-cutover",
    WeightedCutoverArgs(
        domain=settings.domain,
        settings=settings.migration.cutover,
        gantry_target=edge.dns_name,
        health_check_path=settings.container.health_check_path,
    ),
)

notifications = Notifications("gantry-alerts", NotificationsArgs(env=env, settings=settings.operations))

alarms = RollbackAlarms(
    "gantry-alarms",
    RollbackAlarmsArgs(
        env=env,
        load_balancer=load_balancer,
        container=settings.container,
        worker_metrics=settings.sample_worker,
        notifier=notifications,
    ),
)

cluster = Cluster("gantry")

batch = BatchJobs(
    "gantry-batch",
    BatchJobsArgs(
        env=env,
        settings=settings.queue,
        cluster=cluster,
        vpc=network,
        security_group_id=security_groups.consumer_security_group_id,
        image=image,
        container=settings.container,
        logs=settings.logs,
        start_after=[endpoints],
        notifier=notifications,
        force_destroy=settings.force_destroy_buckets,
    ),
)

service = FargateService(
    "gantry",
    FargateServiceArgs(
        env=env,
        cluster=cluster,
        vpc=network,
        security_group_id=security_groups.task_security_group_id,
        image=image,
        container=settings.container,
        service=settings.service,
        autoscaling=settings.autoscaling,
        logs=settings.logs,
        secrets=secrets.refs,
        task_statements=settings.task_policy,
        load_balancer=attachment,
        scaling_rules=standard_rules(settings.autoscaling, load_balancer.request_counts, settings.worker_metrics),
        schedules=scheduled_bounds(settings.autoscaling),
        tracing=settings.tracing,
        start_after=[endpoints],
        deployment_controller=settings.deployment.controller,
        rollback_alarm_names=alarms.names,
        source=settings.source,
        environment=batch.api_environment,
        task_policies=batch.api_policies,
        pre_traffic=settings.deployment.pre_traffic,
        provider_session=settings.provider_session,
    ),
)

deployment = BlueGreenDeployment(
    "gantry-deploy",
    BlueGreenDeploymentArgs(
        env=env,
        settings=settings.deployment,
        cluster=cluster,
        service=service,
        load_balancer=load_balancer,
        vpc=network,
        task_security_group_id=security_groups.task_security_group_id,
        hook_security_group_id=security_groups.hook_security_group_id,
        container=settings.container,
        service_settings=settings.service,
        logs=settings.logs,
        rollback_alarm_names=alarms.names,
        eval_check=settings.sample_worker,
        secrets=secrets.refs,
        source=settings.source,
        alarm_override=settings.alarm_override,
        provider_session=settings.provider_session,
    ),
)

service_metrics = ServiceMetricIdentity(cluster_name=cluster.name, service_name=service.service.name)
edge_metrics = edge_identity(edge.metrics)
worker_metrics = worker_identity(settings.container, settings.sample_worker)

operations_alarms = OperationsAlarms(
    "gantry-ops-alarms",
    OperationsAlarmsArgs(
        env=env,
        settings=settings.operations,
        notifier=notifications,
        edge=edge_metrics,
        service=service_metrics,
        worker=worker_metrics,
        edge_provider=edge.alarm_provider,
    ),
)

dashboard = Dashboard(
    "gantry-dashboard",
    DashboardArgs(
        env=env, load_balancer=load_balancer, service=service_metrics, edge=edge_metrics, worker=worker_metrics
    ),
)

budget = CostBudget(
    "gantry-budget",
    CostBudgetArgs(env=env, settings=settings.operations, tags=settings.provider_tags, router=notifications),
)

pulumi.export("serviceUrl", edge.url)
pulumi.export("edgeName", edge.name)
pulumi.export("clusterName", cluster.name)
pulumi.export("serviceName", service.service.name)
pulumi.export("logGroupName", service.log_group.name)
pulumi.export("repositoryUrl", image.repository_url)
pulumi.export("imageDigest", image.image_digest)
pulumi.export("deploymentController", service.deployment_controller)
pulumi.export("dashboardName", dashboard.dashboard.dashboard_name)
pulumi.export("batchAlarmNames", batch.alarm_names)
pulumi.export("migrationCutover", cutover.state)
pulumi.export("deploymentId", deployment.deployment_id)
pulumi.export("deploymentConsoleUrl", deployment.console_url)
