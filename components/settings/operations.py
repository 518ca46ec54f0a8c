"""Settings of `operations`: who is told when something goes wrong, how loudly, and the monthly budget.

Two severities: `page` (someone is woken: users are affected now) and `ticket` (someone looks during
working hours). Every alarm has a default severity (`DEFAULT_SEVERITY`); `severity` overrides one, and
`paging: false` (dev) sends what would page to the ticket topic instead, so a dev stack never wakes
anyone. Subscribers are email addresses and HTTPS endpoints per severity; an empty list subscribes
nobody (the topics still exist, so a subscriber can be added later without touching the alarms).
The stack's `aws:defaultTags` must carry the budget's tag (`default_tags_problems`), and a production stack
whose alarms would notify nobody is warned (`unwatched_production`): a warning, not a refusal, because the
alarms still roll deployments back, subscribers join without touching them, and a template stack file
cannot hold on-call's real address. Security stance: subscription endpoints are HTTPS only, may not
carry a credential in their URL (it would sit in plain config and state), and placeholder addresses are
refused like every other value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from components.settings.base import Section, Token, Where, between, secret_looking_value

SEVERITIES = ("page", "ticket")
# What a stack's alarms are, by kind (the name suffix after the stack prefix and target-group role).
# Page: users see errors or the service is down now. Ticket: degraded, or heading for trouble.
DEFAULT_SEVERITY: Mapping[str, str] = MappingProxyType(
    {
        "edge-5xx-rate": "page",
        "target-5xx-rate": "page",
        "unhealthy-hosts": "page",
        "tasks-below-desired": "page",
        "worker-5xx-rate": "page",
        "p99-latency": "ticket",
        "cpu-high": "ticket",
        "memory-high": "ticket",
        "worker-throttle-rate": "ticket",
        "tokens-per-minute": "ticket",
        "budget-actual-warning": "ticket",
        "budget-forecast": "ticket",
        "budget-actual": "page",
        "batch-oldest": "ticket",
        "batch-dead-letters": "ticket",
    }
)
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("is not an email address (name@domain.tld)")
    return value


def _credential_in(url: str) -> str | None:
    """What credential a URL carries (reported without the value by `checks`), or None."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "a user or password"
    return secret_looking_value(url)


def _https(value: str) -> str:
    # A URL with a credential is reported by `checks`, which never echoes the value; this error would.
    if _credential_in(value) is None:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL with a host (SNS delivers to HTTPS endpoints only here)")
    return value


Email = Annotated[Token, AfterValidator(_email)]
HttpsUrl = Annotated[Token, AfterValidator(_https)]


class Subscribers(Section):
    """Who receives one severity's notifications."""

    emails: tuple[Email, ...] = ()
    """Default none. Each address gets a confirmation email from SNS and receives nothing until the link
    in it is followed (SNS's rule, so nobody is subscribed without consent)."""
    https: tuple[HttpsUrl, ...] = ()
    """Default none. HTTPS endpoints of a chat or paging tool that accept SNS's JSON (they must confirm
    the subscription by fetching the SubscribeURL SNS posts first)."""

    @property
    def empty(self) -> bool:
        return not self.emails and not self.https


Route = Literal["page", "ticket", "none"]


class Severities(Section):
    """Per alarm kind, where its notifications go; a kind left out keeps its DEFAULT_SEVERITY."""

    edge_5xx_rate: Route | None = Field(None, alias="edge5xxRate")
    """Default page: users get errors the edge generated (no healthy target, timeouts)."""
    target_5xx_rate: Route | None = Field(None, alias="target5xxRate")
    """Default page: the tasks answer 5xx."""
    unhealthy_hosts: Route | None = None
    """Default page: targets fail health checks."""
    tasks_below_desired: Route | None = None
    """Default page: tasks crash or cannot start."""
    worker_5xx_rate: Route | None = Field(None, alias="worker5xxRate")
    """Default page: the worker counts its own 5xx."""
    p99_latency: Route | None = None
    """Default ticket: slow, not broken."""
    cpu_high: Route | None = None
    """Default ticket: saturated; autoscaling should be reacting."""
    memory_high: Route | None = None
    """Default ticket: close to an out-of-memory kill."""
    worker_throttle_rate: Route | None = None
    """Default ticket: clients are refused with 429/503."""
    tokens_per_minute: Route | None = None
    """Default ticket: token spend above tokensPerMinute."""
    budget_actual_warning: Route | None = None
    """Default ticket: actual spend past 80 % of the budget (a warning, not yet over)."""
    budget_forecast: Route | None = None
    """Default ticket: spend forecast past the budget."""
    budget_actual: Route | None = None
    """Default page: spend past the monthly budget."""
    batch_oldest: Route | None = None
    """Default ticket: a queued batch waited longer than queue.acceptableLatencySeconds (late, not lost)."""
    batch_dead_letters: Route | None = None
    """Default ticket: a batch failed queue.maxReceives times and sits in the dead-letter queue."""

    def chosen(self) -> dict[str, str]:
        """Alarm kind -> the route set for it (only the kinds set)."""
        return {name.replace("_", "-"): value for name, value in self if value is not None}


class OperationsSettings(Section):
    paging: bool = True
    """Default true: page-severity alarms go to the page topic. false (dev): they go to the ticket topic
    and no page topic is created, so nothing on the stack can wake anyone."""
    page: Subscribers = Subscribers()
    """Default nobody. Subscribers woken by page-severity alarms (prod: on-call)."""
    ticket: Subscribers = Subscribers()
    """Default nobody. Subscribers of ticket-severity alarms and budget forecasts (the team's queue)."""
    severity: Severities = Severities()
    """Default {} (every alarm at DEFAULT_SEVERITY). Overrides per alarm kind (page, ticket or none);
    none keeps the alarm (rollbacks still read it) but sends nothing."""
    cpu_high_percent: int = between(85, 10, 100, "a percentage of the task's CPU")
    """Default 85: sustained above this for 5 minutes, autoscaling (CPU target 60) is not keeping up."""
    memory_high_percent: int = between(85, 10, 100, "a percentage of the task's memory")
    """Default 85: the busiest task's memory above this for 5 minutes is close to an out-of-memory kill."""
    throttle_percent: int = between(5, 1, 100, "a percentage of requests")
    """Default 5: more than 1 in 20 requests refused with 429/503 means clients are being turned away."""
    tokens_per_minute: int | None = Field(None, ge=1, le=10**12)
    """Default none (no token-spend alarm). The service-wide tokens a minute you budget for (the seeds'
    token-spend guardrail); the alarm fires after 5 minutes above it. Per-tenant limits are the worker's
    TOKEN_BUDGET_PER_MINUTE; this is the sum the team pays for. Read from the sample worker's Tokens
    metric, so a stack running its own image gets no token alarm."""
    monthly_budget_usd: int = between(100, 1, 1_000_000, "whole US dollars a month")
    """Default 100: a little above the dev stack's fixed cost (python -m gantry.cost dev). AWS Budgets
    alerts at 80 % actual, 100 % forecast (ticket) and 100 % actual (budget-actual's severity)."""
    budget_tag_key: Token = "environment"
    """Default environment: the budget counts costs whose cost-allocation tag `environment` has this
    stack's value (aws:defaultTags). The tag must be activated once in Billing before it counts."""

    def checks(self, where: Where) -> Iterator[tuple[str, str]]:
        for severity in SEVERITIES:
            for i, url in enumerate(getattr(self, severity).https):
                if kind := _credential_in(url):
                    yield (
                        f"{severity}.https[{i}]",
                        f"holds what looks like {kind} (value not shown): the URL would sit in plain config and "
                        "state; use an endpoint that authenticates SNS by its signed messages instead",
                    )
        if not self.paging:
            if not self.page.empty:
                yield (
                    "page",
                    "has subscribers but paging is false, so nothing is sent to them; remove them or set paging: true",
                )
            for name, severity in self.severity:
                if severity == "page":
                    alias = Severities.model_fields[name].alias or name
                    yield f"severity.{alias}", "is page but paging is false; set ticket, or set paging: true"

    def severity_of(self, kind: str) -> str:
        """page, ticket or none for an alarm kind, after overrides and `paging`."""
        chosen = self.severity.chosen().get(kind, DEFAULT_SEVERITY[kind])
        return "ticket" if chosen == "page" and not self.paging else chosen


def default_tags_problems(default_tags: Any, tag_key: str | None) -> list[tuple[str, str]]:
    """(config key, problem) for a stack's `aws:defaultTags` (the decoded object, None when unset).

    Every resource carries these tags, and the monthly budget counts only costs tagged with
    `operations.budgetTagKey` (`tag_key`, default environment; None when operations itself is invalid)."""
    key = tag_key or "environment"
    command = f"`pulumi config set --path 'aws:defaultTags.tags.{key}' <stack name>`"
    why = (
        f"the monthly budget counts only costs tagged {key}=<value> (operations.budgetTagKey), and every resource "
        "carries aws:defaultTags"
    )
    if default_tags is None:
        return [(f"aws:defaultTags.tags.{key}", f"is not set (the stack has no aws:defaultTags): {why}; run {command}")]
    tags = default_tags.get("tags") if isinstance(default_tags, Mapping) else None
    if not isinstance(tags, Mapping):
        return [("aws:defaultTags.tags", f"must be an object of tag names to string values, such as {{{key}: dev}}")]
    problems = [
        (f"aws:defaultTags.tags.{name}", f"{json.dumps(value)} is not allowed: a tag value must be a string")
        for name, value in tags.items()
        if not isinstance(value, str)
    ]
    if tag_key is None:
        return problems
    if tag_key not in tags:
        problems.append(
            (
                f"aws:defaultTags.tags.{tag_key}",
                f"is missing: operations.budgetTagKey is {tag_key!r}, but aws:defaultTags has no such tag (it has: "
                f"{', '.join(sorted(map(str, tags))) or 'none'}); {why}; run {command}",
            )
        )
    elif isinstance(tags[tag_key], str) and not tags[tag_key].strip():
        problems.append((f"aws:defaultTags.tags.{tag_key}", f"must not be blank: {why}"))
    return problems


def unwatched_production(operations: OperationsSettings, *, production: bool) -> str | None:
    """A warning when a production stack's most urgent alarms would notify nobody, naming the key to set."""
    severity = "page" if operations.paging else "ticket"
    if not production or not getattr(operations, severity).empty:
        return None
    return (
        f"gantry:operations.{severity}.emails: nobody is subscribed, and this is a production stack (named prod or "
        "production, or with loadBalancer.deletionProtection on): its alarms still roll deployments back, but an "
        f"outage notifies no one. Set operations.{severity}.emails (or operations.{severity}.https) to on-call's "
        "address; SNS sends each one a confirmation first"
    )
