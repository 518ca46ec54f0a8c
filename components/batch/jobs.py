"""BatchJobs: the OpenAI Batch API's long jobs — an SQS queue, its files and records, and the consumer service.

One SQS message per batch (with a dead-letter queue after `maxReceives`), an S3 bucket for the input,
output and error files, a DynamoDB table of file and batch records (the app's choice over S3
conditional writes is explained in app/worker/batch_store.py), and a second ECS service in the same
cluster, from the same image, running `python -m worker.consumer`. The consumer scales on backlog per
task (target tracking on metric math, `backlog_rule`) and from zero on a step policy (`from_zero_alarm`),
because target tracking never leaves zero ("does not perform scaling when the specified metric has
insufficient data", Amazon ECS developer guide, "Use a target metric to scale Amazon ECS services", and
with no task the per-task metric has no data). Two alarms carry no actions here: the oldest message's
age and a non-empty dead-letter queue (which also rolls back a consumer release during which a batch
dead-letters); their names and ARNs are exposed for the operations topics.
Disabled (`queue.enabled: false`), the component holds nothing and hands out empty handles.

Security stance: the queues and the bucket refuse plain HTTP; the bucket blocks public access, enforces
bucket-owner ownership (no ACLs) and encrypts with SSE-S3; the queues with SSE-SQS and the table with
DynamoDB's default AWS-owned key. Managed keys rather than KMS customer keys: the data never leaves
this stack's two task roles, a customer key would add a key policy and kms:GenerateDataKey/Decrypt to
both roles for no reader that needs keeping out, and SSE-SQS/SSE-S3 cost nothing. The consumer has no
ingress and no load balancer, and its task role holds exactly `policies.BATCH_CONSUMER_ACTIONS` on this
queue, this bucket's batch prefix and this table; the API's role gains `policies.BATCH_API_ACTIONS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.env import AwsEnv
from components.network.vpc import VpcHandles
from components.observability.rollback_alarms import AlarmNotifier
from components.private_bucket import private_bucket
from components.settings import ContainerSettings, LogsSettings
from components.settings.queue import BATCH_PREFIX, SQS_MAX_RETENTION_DAYS, QueueSettings
from components.workload.cluster import Cluster
from components.workload.scaling import MetricQuery, ScalingRule, target_tracking_configuration
from components.workload.service import FargateService, FargateServiceArgs, ImageHandles

DAY_SECONDS = 86400
CONSUMER_COMMAND = ("python", "-m", "worker.consumer")
# Container Insights' service-level task counts (the cluster enables it): DesiredTaskCount is what
# Application Auto Scaling itself calls the current capacity.
INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
# SQS sends its metrics once a minute; one-minute periods are the finest that carry data.
PERIOD_SECONDS = 60
# Each queue alarm's notification kind (components.settings.operations.DEFAULT_SEVERITY).
ALARM_KINDS = {"oldest-batch": "batch-oldest", "dead-letters": "batch-dead-letters"}


@dataclass(frozen=True, kw_only=True)
class QueueIdentity:
    """What names the queue, its dead-letter queue and the consumer service in CloudWatch."""

    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    service_name: pulumi.Input[str]


def _backlog_queries(identity: QueueIdentity) -> tuple[MetricQuery, ...]:
    queue = {"QueueName": identity.queue_name}
    service = {"ClusterName": identity.cluster_name, "ServiceName": identity.service_name}
    return (
        MetricQuery(
            id="visible", namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions=queue,
            stat="Sum", label="batches waiting",
        ),
        MetricQuery(
            id="inflight", namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesNotVisible",
            dimensions=queue, stat="Sum", label="batches being worked on",
        ),
        MetricQuery(
            id="tasks", namespace=INSIGHTS_NAMESPACE, metric_name="DesiredTaskCount", dimensions=service,
            stat="Average", label="consumer tasks",
        ),
    )  # fmt: skip


def backlog_rule(settings: QueueSettings, identity: QueueIdentity) -> ScalingRule:
    """Target tracking on (visible + in-flight batches) / desired tasks, held at latency / seconds per job.

    AWS's example divides by RunningTaskCount; the desired count is used here because target tracking
    computes the new capacity as desired x metric / target, which is exact only when the metric is per
    *desired* task: tasks still starting (a minute or more on Fargate) would otherwise count as missing and
    the policy would overshoot. With no task the quotient has no data and this rule rests; the step
    policy of `from_zero_alarm` takes over."""
    return ScalingRule(
        name="backlog",
        target_value=settings.target_batches_per_task,
        metric_queries=(
            *_backlog_queries(identity),
            MetricQuery(
                id="backlog", expression="(visible + inflight) / tasks", returns=True, label="batches per task"
            ),
        ),
        scale_in_cooldown_seconds=settings.scale_in_cooldown_seconds,
        scale_out_cooldown_seconds=settings.scale_out_cooldown_seconds,
    )


def _metric_query(query: MetricQuery) -> dict[str, Any]:
    """A target-tracking MetricQuery as a CloudWatch alarm's `metric_queries` entry."""
    spec: dict[str, Any] = {"id": query.id, "return_data": query.returns}
    if query.label is not None:
        spec["label"] = query.label
    if query.expression is not None:
        spec["expression"] = query.expression
    else:
        spec["metric"] = {
            "namespace": query.namespace,
            "metric_name": query.metric_name,
            "dimensions": dict(query.dimensions),
            "stat": query.stat,
            "period": PERIOD_SECONDS,
        }
    return spec


def from_zero_alarm(identity: QueueIdentity) -> dict[str, Any]:
    """The alarm that starts the first task: some batch is queued or in flight while no task is desired.

    It is 1 only while the service has no task, so its step policy (exact capacity 1, re-applied while
    the alarm stays in ALARM) can never fight target tracking once a task runs. FILL treats the task count
    Container Insights may not publish for an empty service as 0. Missing data is not breaching: an idle
    queue stops sending metrics, and idle must stay quiet."""
    queries = [_metric_query(q) for q in _backlog_queries(identity)]
    queries.append(
        _metric_query(
            MetricQuery(
                id="starved",
                expression="IF((visible + inflight) > 0 AND FILL(tasks, 0) == 0, 1, 0)",
                returns=True,
                label="batches queued with no consumer task",
            )
        )
    )
    return {
        "comparison_operator": "GreaterThanOrEqualToThreshold",
        "threshold": 1,
        "evaluation_periods": 1,
        "datapoints_to_alarm": 1,
        "treat_missing_data": "notBreaching",
        "metric_queries": queries,
    }


def from_zero_step_policy() -> aws.appautoscaling.PolicyStepScalingPolicyConfigurationArgsDict:
    """The step policy the from-zero alarm invokes: exactly one task (target tracking grows it from there)."""
    return {
        "adjustment_type": "ExactCapacity",
        "metric_aggregation_type": "Maximum",
        "cooldown": PERIOD_SECONDS,
        "step_adjustments": [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}],
    }


def operations_alarms(
    settings: QueueSettings, *, queue_name: pulumi.Input[str], dead_letter_queue_name: pulumi.Input[str]
) -> dict[str, dict[str, Any]]:
    """role -> alarm arguments: the oldest batch waited too long; a batch reached the dead-letter queue.

    Missing data is not breaching in both: SQS stops sending metrics for a queue idle for six hours."""
    return {
        "oldest-batch": {
            "namespace": "AWS/SQS",
            "metric_name": "ApproximateAgeOfOldestMessage",
            "dimensions": {"QueueName": queue_name},
            "statistic": "Maximum",
            "period": PERIOD_SECONDS,
            "evaluation_periods": 5,
            "datapoints_to_alarm": 5,
            "comparison_operator": "GreaterThanThreshold",
            "threshold": settings.oldest_message_threshold_seconds,
            "treat_missing_data": "notBreaching",
            "alarm_description": (
                f"A batch has been queued over {settings.oldest_message_threshold_seconds} s (acceptable latency "
                "plus one job) for 5 minutes: batches are late, not lost. Check first: 1) the consumer service's "
                "running tasks and its log group (crash loop, model load failure); 2) whether it sits at "
                "queue.maxCapacity (raise it, or accept the wait); 3) the consumer's texts/s against "
                "queue.secondsPerJob (a larger batch or slower CPU than measured)."
            ),
        },
        "dead-letters": {
            "namespace": "AWS/SQS",
            "metric_name": "ApproximateNumberOfMessagesVisible",
            "dimensions": {"QueueName": dead_letter_queue_name},
            "statistic": "Maximum",
            "period": PERIOD_SECONDS,
            "evaluation_periods": 1,
            "datapoints_to_alarm": 1,
            "comparison_operator": "GreaterThanThreshold",
            "threshold": 0,
            "treat_missing_data": "notBreaching",
            "alarm_description": (
                f"A batch's message reached the dead-letter queue after {settings.max_receives} receives. The "
                "consumer has already ended the batch (failed, or expired past its 24 h window; the lines it "
                "finished are in its output and error files): nothing is still running. Check first: 1) GET "
                "/v1/batches/<batch_id in the message body>: errors[0].message says why: the last caught failure "
                '(e.g. NoSuchKey, AccessDenied), or "stopped without a trace on lines A-B" (a crash: an '
                "out-of-memory stop, a model fault on those lines, a kill; see the consumer log group and the ECS "
                "stopped reason). 2) Fix the cause. 3) The tenant resubmits the unfinished lines as a new batch: "
                "redriving the message does not restart an ended batch. Then delete the message."
            ),
        },
    }


def bucket_lifecycle_rules(settings: QueueSettings) -> list[aws.s3.BucketLifecycleConfigurationRuleArgsDict]:
    """Batch files expire after `fileExpiryDays`; a multipart upload a crash abandoned after one day."""
    return [
        {
            "id": "expire-batch-files",
            "status": "Enabled",
            "filter": {"prefix": BATCH_PREFIX},
            "expiration": {"days": settings.file_expiry_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
        }
    ]


@dataclass(frozen=True, kw_only=True)
class BatchJobsArgs:
    env: AwsEnv
    settings: QueueSettings
    """`queue` from config; disabled, nothing is created."""
    cluster: Cluster
    """The consumer runs in the API's cluster."""
    vpc: VpcHandles
    security_group_id: pulumi.Input[str] | None
    """The consumer's group (no ingress): `ServiceSecurityGroups.consumer_security_group_id`."""
    image: ImageHandles
    """The API's image: the consumer is its second command."""
    container: ContainerSettings
    """The API's container: its environment (the limits a batch line is validated against), user and
    architecture; cpu, memory and stop timeout come from `settings`."""
    logs: LogsSettings
    """Retention of the consumer's own log group."""
    start_after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """What tasks need before they start (the VPC endpoints); default nothing."""
    notifier: AlarmNotifier | None = None
    """Who the queue alarms notify (`Notifications`, severities batch-oldest and batch-dead-letters);
    default nobody."""
    force_destroy: bool = False
    """Default false: `pulumi destroy` refuses the batch files bucket that still holds objects. The program sets it on
    non-production stacks (Settings.production false) so `pulumi destroy -s dev` empties and removes it."""


def batch_policy(resources: pulumi.Output[dict[str, str]], actions: Mapping[str, Sequence[str]]) -> pulumi.Output[str]:
    """A task role's batch policy: `actions` on this stack's queue, bucket prefix and table."""
    return resources.apply(
        lambda v: json.dumps(
            policies.batch_task_policy(
                actions, queue_arn=v["queue"], bucket_arn=v["bucket"], prefix=BATCH_PREFIX, table_arn=v["table"]
            )
        )
    )


class BatchJobs(pulumi.ComponentResource):
    api_environment: Mapping[str, pulumi.Input[str]]
    """QUEUE_URL, BATCH_BUCKET, BATCH_TABLE, BATCH_PREFIX for the API's container; empty when disabled."""
    api_policies: Mapping[str, pulumi.Input[str]]
    """The API role's one extra policy (`batch` -> document); empty when disabled."""
    alarm_names: Mapping[str, pulumi.Output[str]]
    """role (oldest-batch, dead-letters) -> alarm name, for the operations topics; empty when disabled."""
    alarm_arns: Mapping[str, pulumi.Output[str]]
    consumer: FargateService | None

    def __init__(self, name: str, args: BatchJobsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:batch:BatchJobs", name, None, opts)
        self.api_environment, self.api_policies, self.alarm_names, self.alarm_arns = {}, {}, {}, {}
        self.consumer = None
        settings = args.settings
        if not settings.enabled:
            self.register_outputs({})
            return
        if args.security_group_id is None:
            raise ValueError(
                "an enabled queue needs the consumer's security group (ServiceSecurityGroups.queue_consumer)"
            )
        child = pulumi.ResourceOptions(parent=self)
        queue, dead_letters = self._queues(name, settings)
        bucket = self._bucket(name, settings, args.force_destroy, child)
        table = self._table(name)
        resources = pulumi.Output.all(queue=queue.arn, bucket=bucket.arn, table=table.arn)
        self.api_environment = {
            "QUEUE_URL": queue.url,
            "BATCH_BUCKET": bucket.bucket,
            "BATCH_TABLE": table.name,
            "BATCH_PREFIX": BATCH_PREFIX,
        }
        self.api_policies = {"batch": batch_policy(resources, policies.BATCH_API_ACTIONS)}
        alarms = self._alarms(name, args, queue, dead_letters)
        self.alarm_names = {role: alarm.name for role, alarm in alarms.items()}
        self.alarm_arns = {role: alarm.arn for role, alarm in alarms.items()}
        self.consumer = self._consumer(name, args, args.security_group_id, resources, alarms["dead-letters"])
        self._consumer_scaling(name, args, queue, dead_letters, self.consumer)
        self.register_outputs(
            {
                "queueUrl": queue.url,
                "bucketName": bucket.bucket,
                "tableName": table.name,
                "alarmNames": self.alarm_names,
            }
        )

    def _queues(self, name: str, settings: QueueSettings) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        """The batch queue and its dead-letter queue, each TLS-only; only this queue may dead-letter there."""
        child = pulumi.ResourceOptions(parent=self)
        dead_letters = aws.sqs.Queue(
            f"{name}-dead-letters",
            message_retention_seconds=SQS_MAX_RETENTION_DAYS * DAY_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue = aws.sqs.Queue(
            f"{name}-queue",
            visibility_timeout_seconds=settings.visibility_timeout_seconds,
            message_retention_seconds=settings.retention_days * DAY_SECONDS,
            # Long polling by default too: the consumer asks for 20 s itself, this covers any other reader.
            receive_wait_time_seconds=20,
            sqs_managed_sse_enabled=True,
            redrive_policy=dead_letters.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": settings.max_receives})
            ),
            opts=child,
        )
        # Only this queue may dead-letter into the DLQ.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dead-letters-sources",
            queue_url=dead_letters.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        for role, q in (("queue", queue), ("dead-letters", dead_letters)):
            aws.sqs.QueuePolicy(
                f"{name}-{role}-tls-only",
                queue_url=q.url,
                policy=q.arn.apply(lambda arn: json.dumps(policies.tls_only_queue_policy(arn))),
                opts=child,
            )
        return queue, dead_letters

    def _table(self, name: str) -> aws.dynamodb.Table:
        child = pulumi.ResourceOptions(parent=self)
        return aws.dynamodb.Table(
            f"{name}-records",
            billing_mode="PAY_PER_REQUEST",
            hash_key="tenant",
            range_key="id",
            attributes=[{"name": "tenant", "type": "S"}, {"name": "id", "type": "S"}],
            # A table of checkpoints is cheap to keep restorable (35 days of per-second restore points).
            point_in_time_recovery={"enabled": True},
            opts=child,
        )

    def _alarms(
        self, name: str, args: BatchJobsArgs, queue: aws.sqs.Queue, dead_letters: aws.sqs.Queue
    ) -> dict[str, aws.cloudwatch.MetricAlarm]:
        """The oldest batch's age and a non-empty dead-letter queue, notifying the operations topics."""
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        return {
            role: aws.cloudwatch.MetricAlarm(
                f"{name}-{role}-alarm",
                name=f"gantry-{args.env.stack}-{ALARM_KINDS[role]}",
                **spec,
                **(args.notifier.actions(ALARM_KINDS[role]) if args.notifier else {}),
                opts=child,
            )
            for role, spec in operations_alarms(
                settings, queue_name=queue.name, dead_letter_queue_name=dead_letters.name
            ).items()
        }

    def _consumer(
        self,
        name: str,
        args: BatchJobsArgs,
        security_group_id: pulumi.Input[str],
        resources: pulumi.Output[dict[str, str]],
        dead_letters_alarm: aws.cloudwatch.MetricAlarm,
    ) -> FargateService:
        """The second service: the same image running the queue consumer, sized by the queue's settings."""
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        consumer_container = args.container.model_copy(
            update={
                "cpu": settings.cpu,
                "memory": settings.memory,
                "stop_timeout_seconds": settings.stop_timeout_seconds,
            }
        )
        return FargateService(
            f"{name}-consumer",
            FargateServiceArgs(
                env=args.env,
                cluster=args.cluster,
                vpc=args.vpc,
                security_group_id=security_group_id,
                image=args.image,
                container=consumer_container,
                service=settings.consumer_service,
                autoscaling=settings.consumer_autoscaling,
                logs=args.logs,
                start_after=args.start_after,
                environment={**settings.consumer_variables, **self.api_environment},
                command=CONSUMER_COMMAND,
                task_policies={"batch": batch_policy(resources, policies.BATCH_CONSUMER_ACTIONS)},
                scale_to_zero=settings.min_capacity == 0,
                # A release during which a batch exhausts its receives is rolled back (ECS rolls back
                # when a deployment alarm enters ALARM; the circuit breaker covers tasks that never start).
                rollback_alarm_names=pulumi.Output.all(dead_letters_alarm.name),
            ),
            opts=child,
        )

    def _consumer_scaling(
        self,
        name: str,
        args: BatchJobsArgs,
        queue: aws.sqs.Queue,
        dead_letters: aws.sqs.Queue,
        consumer: FargateService,
    ) -> None:
        """Target tracking on backlog per task, and the step policy with its alarm that starts from zero."""
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        identity = QueueIdentity(
            queue_name=queue.name,
            dead_letter_queue_name=dead_letters.name,
            cluster_name=args.cluster.name,
            service_name=consumer.service.name,
        )
        target = consumer.scaling_target
        aws.appautoscaling.Policy(
            f"{name}-scale-on-backlog",
            policy_type="TargetTrackingScaling",
            target_tracking_scaling_policy_configuration=target_tracking_configuration(
                backlog_rule(settings, identity)
            ),
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace,
            opts=child,
        )
        start = aws.appautoscaling.Policy(
            f"{name}-start-from-zero",
            policy_type="StepScaling",
            step_scaling_policy_configuration=from_zero_step_policy(),
            resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace,
            opts=child,
        )
        aws.cloudwatch.MetricAlarm(
            f"{name}-start-from-zero-alarm",
            name=f"gantry-{args.env.stack}-batch-start-from-zero",
            alarm_description=(
                "Batches are queued and the consumer has no task: this alarm starts one (its action is the "
                "start-from-zero scaling policy, it notifies nobody). Check first, if it stays in ALARM: 1) the "
                "consumer service's events (a task that cannot start: image pull, subnet capacity); 2) its "
                "scalable target's maxCapacity (above 0); 3) Container Insights on the cluster (the task count "
                "it reads)."
            ),
            alarm_actions=[start.arn],
            **from_zero_alarm(identity),
            opts=child,
        )

    def _bucket(
        self, name: str, settings: QueueSettings, force_destroy: bool, child: pulumi.ResourceOptions
    ) -> aws.s3.Bucket:
        bucket, _ = private_bucket(
            f"{name}-files",
            force_destroy=force_destroy,
            lifecycle_rules=bucket_lifecycle_rules(settings),
            policy=policies.batch_bucket_policy,
            opts=child,
        )
        return bucket
