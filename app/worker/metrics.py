"""CloudWatch metrics as Embedded Metric Format (EMF) documents in the stdout log stream.

Request handlers record into in-memory aggregates (cheap, event-loop thread only); every
FLUSH_SECONDS the aggregates are swapped out and serialised with the maintained
`aws-embedded-metrics` library's MetricsContext and LogSerializer, then written as log lines that
CloudWatch Logs turns into metrics. We use the serializer directly rather than the library's
`metric_scope`/environment detection: that path looks for a CloudWatch agent over the network,
and on Fargate with the awslogs driver stdout is the right sink. The library's package import
pulls in aiohttp (about 250 ms), so it happens on a helper thread after the worker is ready
rather than on the cold-start path.

Metrics, namespace METRICS_NAMESPACE:
- dimensions {Service}: Requests, Tokens, Latency (ms, every request), InFlight (max concurrent
  requests in the interval: the autoscaling signal), QueuedInputs (max), BatchSize (every batch),
  Throttled (429 and queue-full 503), Errors4xx, Errors5xx.
- dimensions {Service, Tenant}: Requests, Tokens, Throttled (per-tenant usage and alarms).
A service-level document is written every interval, even an idle one, so alarms and scaling see
zeros rather than missing data.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from worker import logs
from worker.background import cancel_and_wait

FLUSH_SECONDS = 10.0


@dataclass
class _TenantTotals:
    requests: int = 0
    tokens: int = 0
    throttled: int = 0


@dataclass
class _Interval:
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    tenants: dict[str, _TenantTotals] = field(default_factory=lambda: defaultdict(_TenantTotals))
    requests: int = 0
    tokens: int = 0
    throttled: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    max_in_flight: int = 0
    max_queued: int = 0


class Metrics:
    def __init__(self, namespace: str, service: str):
        self.namespace = namespace
        self.service = service
        self._current = _Interval()
        self._in_flight = 0
        self._task: asyncio.Task | None = None

    # --- recording (event-loop thread) -------------------------------------------------------

    def request_started(self) -> None:
        self._in_flight += 1
        self._current.max_in_flight = max(self._current.max_in_flight, self._in_flight)

    def request_finished(self, tenant: str | None, status: int, tokens: int, latency_ms: float) -> None:
        self._in_flight -= 1
        interval = self._current
        interval.requests += 1
        interval.tokens += tokens
        interval.latencies_ms.append(round(latency_ms, 2))
        throttled = status == 429 or status == 503
        if throttled:
            interval.throttled += 1
        elif 400 <= status < 500:
            interval.errors_4xx += 1
        elif status >= 500:
            interval.errors_5xx += 1
        if tenant is not None:
            totals = interval.tenants[tenant]
            totals.requests += 1
            totals.tokens += tokens
            totals.throttled += int(throttled)

    def batch_ran(self, size: int) -> None:
        self._current.batch_sizes.append(size)

    def queued(self, outstanding: int) -> None:
        self._current.max_queued = max(self._current.max_queued, outstanding)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # --- flushing ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics")

    async def stop(self) -> None:
        """Stop the periodic flush and write what the last interval collected."""
        await cancel_and_wait(self._task)
        await self.flush()

    async def _run(self) -> None:
        # Import (and warm) the library off the event loop before the first flush needs it.
        await asyncio.to_thread(_serializer)
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        interval, self._current = self._current, _Interval()
        # The in-flight gauge must not read 0 for an interval in which requests were running.
        interval.max_in_flight = max(interval.max_in_flight, self._in_flight)
        self._current.max_in_flight = self._in_flight
        lines = await asyncio.to_thread(self.documents, interval)
        for line in lines:
            logs.write_line(line)

    def documents(self, interval: _Interval) -> list[str]:
        """EMF JSON lines for one interval (runs on a helper thread)."""
        MetricsContext, LogSerializer = _serializer()
        service = MetricsContext(namespace=self.namespace)
        service.set_dimensions([{"Service": self.service}], use_default=False)
        service.put_metric("Requests", interval.requests, "Count")
        service.put_metric("Tokens", interval.tokens, "Count")
        service.put_metric("Throttled", interval.throttled, "Count")
        service.put_metric("Errors4xx", interval.errors_4xx, "Count")
        service.put_metric("Errors5xx", interval.errors_5xx, "Count")
        service.put_metric("InFlight", interval.max_in_flight, "Count")
        service.put_metric("QueuedInputs", interval.max_queued, "Count")
        for latency in interval.latencies_ms:
            service.put_metric("Latency", latency, "Milliseconds")
        for size in interval.batch_sizes:
            service.put_metric("BatchSize", size, "Count")
        lines = LogSerializer.serialize(service)
        for tenant, totals in sorted(interval.tenants.items()):
            context = MetricsContext(namespace=self.namespace)
            context.set_dimensions([{"Service": self.service, "Tenant": tenant}], use_default=False)
            context.put_metric("Requests", totals.requests, "Count")
            context.put_metric("Tokens", totals.tokens, "Count")
            context.put_metric("Throttled", totals.throttled, "Count")
            lines.extend(LogSerializer.serialize(context))
        return lines


def _serializer():
    from aws_embedded_metrics.logger.metrics_context import MetricsContext
    from aws_embedded_metrics.serializers.log_serializer import LogSerializer

    return MetricsContext, LogSerializer
