"""CostBudget: an AWS Budgets monthly cost budget for this stack, alerting the notification topics.

The budget counts only costs carrying this stack's cost-allocation tag (`operations.budgetTagKey`, by
default `environment`, with the value the stack's aws:defaultTags give it), as a `TagKeyValue` cost
filter in Budgets' `user:<key>$<value>` form: "user:" marks a user-defined tag and "$" separates key
from value (https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-create-filters.html;
the form boto/boto3#4248 shows working). A tag counts only after it is activated as a cost-allocation
tag in the Billing console, once per account. Alerts, each under its own kind so that a severity
setting routes exactly the alert it names: actual spend past 80 % notifies `budget-actual-warning`'s
severity (ticket), forecast past 100 % `budget-forecast`'s (ticket), actual past 100 %
`budget-actual`'s (page in prod).
Security stance: Budgets reads billing data only; it can publish to the topics because their key and
topic policies allow budgets.amazonaws.com for this account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_aws as aws

from components.env import AwsEnv
from components.settings.operations import OperationsSettings

# (kind, notification type, percent of the limit): the alerts every budget carries.
ALERTS = (
    ("budget-actual-warning", "ACTUAL", 80.0),
    ("budget-forecast", "FORECASTED", 100.0),
    ("budget-actual", "ACTUAL", 100.0),
)


class BudgetError(ValueError):
    """The budget cannot be built as configured; the message names what is missing."""


def tag_filter(tag_key: str, tags: Mapping[str, str]) -> aws.budgets.BudgetCostFilterArgsDict:
    """The TagKeyValue cost filter for the stack's tag `tag_key`, from the stack's aws:defaultTags."""
    if tag_key not in tags:
        raise BudgetError(
            f"operations.budgetTagKey is {tag_key!r}, but aws:defaultTags has no such tag (it has: "
            f"{', '.join(sorted(tags)) or 'none'}); the budget filters by the stack's own tag, so add it there"
        )
    return {"name": "TagKeyValue", "values": [f"user:{tag_key}${tags[tag_key]}"]}


class TopicRouter(Protocol):
    def topic_arn(self, kind: str) -> pulumi.Output[str] | None: ...


def budget_notifications(router: TopicRouter) -> list[aws.budgets.BudgetNotificationArgsDict]:
    """One notification per alert whose kind notifies somebody (a severity of none drops it)."""
    notifications: list[aws.budgets.BudgetNotificationArgsDict] = []
    for kind, notification_type, threshold in ALERTS:
        arn = router.topic_arn(kind)
        if arn is None:
            continue
        notifications.append(
            {
                "comparison_operator": "GREATER_THAN",
                "notification_type": notification_type,
                "threshold": threshold,
                "threshold_type": "PERCENTAGE",
                "subscriber_sns_topic_arns": [arn],
            }
        )
    return notifications


@dataclass(frozen=True, kw_only=True)
class CostBudgetArgs:
    env: AwsEnv
    """The account the budget belongs to, and the stack that names it (gantry-<stack>-monthly)."""
    settings: OperationsSettings
    """The monthly limit and the tag key to filter by."""
    tags: Mapping[str, str]
    """The stack's aws:defaultTags (`Settings.provider_tags`): the tag value the budget filters by comes from here."""
    router: TopicRouter
    """Topics per alert kind (`Notifications`)."""


class CostBudget(pulumi.ComponentResource):
    budget: aws.budgets.Budget

    def __init__(self, name: str, args: CostBudgetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:operations:CostBudget", name, None, opts)
        self.budget = aws.budgets.Budget(
            f"{name}-monthly",
            name=f"gantry-{args.env.stack}-monthly",
            account_id=args.env.account_id,
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.settings.monthly_budget_usd:.2f}",
            limit_unit="USD",
            cost_filters=[tag_filter(args.settings.budget_tag_key, args.tags)],
            notifications=budget_notifications(args.router),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"budgetName": self.budget.name})
