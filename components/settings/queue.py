"""Settings of the long-jobs service: `queue` (the OpenAI Batch API's queue, files, consumer and scaling).

When `enabled`, the stack runs a second ECS service from the same image (`python -m worker.consumer`)
that takes one SQS message per batch, and the API accepts batches. Scaling is backlog per task, as
Application Auto Scaling documents for SQS workers ("Example: Amazon SQS queue backlog per task",
https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-target-tracking-metric-math.html):

    target batches per task = acceptableQueueLatencySeconds / secondsPerJob

A task works one batch at a time (the consumer receives one message per call), so a task with `target`
batches ahead of it starts the last one after about `acceptableQueueLatencySeconds`. The backlog counts
visible and in-flight messages: a batch being worked on is in flight, and leaving it out would let the
policy scale in the very task that works it. Security stance: nothing here widens access; the queue,
bucket and table are private to this stack, and the consumer has no ingress at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from components.settings.base import Section, Where, between, one_of
from components.settings.workload import (
    DRAIN_MARGIN_SECONDS,
    FARGATE_CPUS,
    AutoscalingSettings,
    CapacityProvider,
    ServiceSettings,
    fargate_memory_options,
)

# SQS MessageRetentionPeriod is 60 s to 14 days ("CreateQueue", SQS API Reference). The dead-letter queue
# always keeps 14 days: a standard queue's message expires by its original enqueue time even in the DLQ,
# so the DLQ must outlive the source queue ("Setting-up dead-letter queue retention in Amazon SQS").
SQS_MAX_RETENTION_DAYS = 14
# The batch files' key prefix in the bucket (the worker's BATCH_PREFIX): IAM grants exactly this prefix.
BATCH_PREFIX = "batches/"


class QueueSettings(Section):
    enabled: bool = False
    """The Batch API and its consumer are opt-in (a queue, a bucket, a table, a second
    service and four alarms a stack that does not run batches should not carry)."""
    max_receives: int = Field(5, ge=2, le=1000)
    """Receives before SQS moves a batch's message to the dead-letter queue (the redrive
    policy's maxReceiveCount, and the consumer's MAX_RECEIVES: on that receive it marks the batch failed
    with the reason, keeping the lines it finished). Five survives a transient outage or two, not a poison
    batch; at least two, because the consumer ends the batch on the last receive instead of running it, so
    one would end every batch before its first attempt."""
    retention_days: int = between(
        4, 1, SQS_MAX_RETENTION_DAYS - 1, "SQS keeps at most 14 days, and the dead-letter queue must keep longer"
    )
    """SQS's own default: how long an unstarted batch's message waits; OpenAI's completion window is
    24 h, so four days covers a weekend outage. The dead-letter queue keeps 14 days."""
    visibility_timeout_seconds: int = Field(30, ge=30, le=43200)
    """The queue's visibility timeout, also the consumer's VISIBILITY_TIMEOUT_SECONDS, renewed
    every third of it (HEARTBEAT_SECONDS) while a task works. Short, because the heartbeat keeps a live
    batch from a second consumer, and a task that dies without a goodbye (SIGKILL, out of memory) has its
    batch resumed by another task after at most this long. Half a minute leaves the heartbeat two missed
    beats before a live batch could be handed on."""
    file_expiry_days: int = Field(30, ge=1, le=3650)
    """Batch input, output and error files expire (an S3 lifecycle rule), as OpenAI keeps batch
    files for a bounded time; set it above how long your team needs to download results."""
    acceptable_queue_latency_seconds: int = Field(600, ge=60, le=86400)
    """How long a batch may wait for a task to start it. With `secondsPerJob` it sets the scaling
    target (batches per task = this / secondsPerJob), and the oldest-message alarm fires above this plus one
    job's time (the oldest message may be one a task is working on)."""
    seconds_per_job: int = Field(120, ge=1, le=43200)
    """The measured time one task takes for a typical batch (see app/README.md "Long jobs" for
    the benchmark that measures texts/s per consumer task; a batch of N texts takes N / that). Must not exceed
    acceptableQueueLatencySeconds: a target below one batch per task would keep idle tasks running."""
    cpu: Annotated[int, one_of(FARGATE_CPUS, "Fargate task CPU units")] = 1024
    """The consumer task's CPU units, one vCPU like the API's tasks: embedding throughput scales with vCPUs."""
    memory: int = Field(2048, ge=512, le=122880)
    """MiB: the model, one part of output lines and the S3 read buffer fit with room."""
    min_capacity: int = Field(0, ge=0, le=1000)
    """Idle, the consumer costs nothing; a queued batch brings the first task back (about a
    minute of Fargate start plus the model load)."""
    max_capacity: int = Field(4, ge=1, le=1000)
    """The most consumer tasks: bounds the cost of a flood of batches."""
    spot_percent: int = Field(100, ge=0, le=100)
    """The share of consumer tasks on Fargate Spot. Batches checkpoint and resume, so a Spot
    interruption (SIGTERM two minutes ahead) costs at most one part's work; 0 runs every task on-demand."""
    stop_timeout_seconds: int = between(
        120, DRAIN_MARGIN_SECONDS + 1, 120, "Fargate's maximum is 120; the consumer needs a drain window of 1 s"
    )
    """Fargate's maximum ("For tasks that use the Fargate launch type, the max stop timeout value
    is 120 seconds", ECS ContainerDefinition.stopTimeout), which is also a Spot interruption's notice: the
    consumer's DRAIN_TIMEOUT_SECONDS is this minus 5, to checkpoint its part and release the message."""
    token_budget_per_minute: int = Field(300_000, ge=1, le=10**12)
    """Tokens per minute one tenant's batches may spend per consumer task (the consumer's
    BATCH_TOKEN_BUDGET_PER_MINUTE); a spent budget makes the batch wait, never fail."""
    scale_in_cooldown_seconds: int = Field(300, ge=0, le=3600)
    """Scale in slowly; a stopped task hands its batch to another (checkpointed, not lost)."""
    scale_out_cooldown_seconds: int = Field(60, ge=0, le=3600)
    """Scale out quickly when batches queue up."""

    @property
    def target_batches_per_task(self) -> float:
        """The backlog-per-task target: acceptable queue latency / seconds per job."""
        return self.acceptable_queue_latency_seconds / self.seconds_per_job

    @property
    def oldest_message_threshold_seconds(self) -> int:
        """The oldest-message alarm's threshold: a batch waited the acceptable latency and ran one job's time."""
        return self.acceptable_queue_latency_seconds + self.seconds_per_job

    @property
    def drain_timeout_seconds(self) -> int:
        return self.stop_timeout_seconds - DRAIN_MARGIN_SECONDS

    @property
    def consumer_variables(self) -> dict[str, str]:
        """What the consumer's environment gets from these settings (the resource names come on top)."""
        return {
            "BATCH_PREFIX": BATCH_PREFIX,
            "MAX_RECEIVES": str(self.max_receives),
            "VISIBILITY_TIMEOUT_SECONDS": str(self.visibility_timeout_seconds),
            "DRAIN_TIMEOUT_SECONDS": str(self.drain_timeout_seconds),
            "BATCH_TOKEN_BUDGET_PER_MINUTE": str(self.token_budget_per_minute),
        }

    @property
    def capacity_providers(self) -> tuple[CapacityProvider, ...]:
        """The consumer's strategy: weights are the Spot and on-demand percentages; no base (it scales to 0)."""
        spot = CapacityProvider(provider="FARGATE_SPOT", base=0, weight=self.spot_percent)
        on_demand = CapacityProvider(provider="FARGATE", base=0, weight=100 - self.spot_percent)
        return tuple(p for p in (spot, on_demand) if p.weight > 0)

    @property
    def consumer_service(self) -> ServiceSettings:
        """The consumer's ECS service settings. A rolling deploy starts new tasks beside the old ones, which
        checkpoint their batch on SIGTERM and release it to the new tasks."""
        return ServiceSettings(
            desired_count=max(1, self.min_capacity),
            health_check_grace_period_seconds=0,
            capacity_providers=self.capacity_providers,
        )

    @property
    def consumer_autoscaling(self) -> AutoscalingSettings:
        """The consumer's bounds and cooldowns (its minimum is 0 through FargateService's scale_to_zero when
        minCapacity is 0; AutoscalingSettings keeps the API's floor of 1)."""
        return AutoscalingSettings(
            min_capacity=max(1, self.min_capacity),
            max_capacity=self.max_capacity,
            scale_in_cooldown_seconds=self.scale_in_cooldown_seconds,
            scale_out_cooldown_seconds=self.scale_out_cooldown_seconds,
        )

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        if self.min_capacity > self.max_capacity:
            yield "minCapacity", f"{self.min_capacity} exceeds maxCapacity ({self.max_capacity})"
        if self.seconds_per_job > self.acceptable_queue_latency_seconds:
            yield (
                "secondsPerJob",
                (
                    f"{self.seconds_per_job} exceeds acceptableQueueLatencySeconds "
                    f"({self.acceptable_queue_latency_seconds}): the target would be under one batch per task, "
                    "which keeps idle tasks running; raise the latency or use bigger tasks"
                ),
            )
        options = fargate_memory_options(self.cpu)
        if self.memory not in options:
            yield (
                "memory",
                (
                    f"{self.memory} MiB is not a valid Fargate size for cpu {self.cpu}: allowed "
                    f"{', '.join(str(m) for m in options)}"
                ),
            )
