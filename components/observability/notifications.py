"""Notifications: the encrypted SNS topics alarms and budgets notify, one per severity, and who is subscribed.

Two topics, `gantry-<stack>-page` and `gantry-<stack>-ticket` (no page topic when `operations.paging` is
false: then page-severity alarms notify the ticket topic), encrypted with a customer-managed KMS key.
Not the AWS-managed `alias/aws/sns` key: its key policy cannot be edited, so CloudWatch (and Budgets)
cannot be granted kms:GenerateDataKey / kms:Decrypt on it and their notifications are dropped ("Enable
compatibility between event sources from AWS services and encrypted topics",
https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
Alarm actions are looked up by alarm kind through `actions(kind)`, which applies the severity routing
of the settings. A second instance in another region (a us-east-1 provider in `opts`, `region` set to
match) serves alarms that must live there, such as CloudFront's: an alarm can only notify a topic in
its own region. Security stance: only cloudwatch.amazonaws.com (for this account's alarms, by
aws:SourceAccount and aws:SourceArn) and budgets.amazonaws.com (this account's budgets) may publish;
every other principal is denied sns:Publish, even an administrator of the account (test a route with
`aws cloudwatch set-alarm-state`, which goes through CloudWatch), except the bootstrap's delivery roles
(`aws:PrincipalArn` under /gantry-delivery/), of which only a stack's deploy role holds sns:Publish on its
own topics (bootstrap.documents.deploy_environment_policy): the prod workflow pages through it when the
post-deploy eval fails (scripts/ci/page.py). Plain-HTTP access is denied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.contract import DELIVERY_ROLE_PATH, PROGRAM_KEY_TAG, PROGRAM_KEY_TAG_VALUE
from components.env import AwsEnv
from components.settings.operations import SEVERITIES, OperationsSettings

# What a publisher needs on the topic's key: SNS generates a data key per message batch and reads it back.
PUBLISH_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


@dataclass(frozen=True, kw_only=True)
class Publishers:
    """Who may publish, as the exact conditions the key and topic policies use."""

    account_id: str
    partition: str
    region: str
    alarm_prefix: str
    """Alarm-name prefix of this stack, gantry-<stack>: only alarms named so may publish."""

    @property
    def alarm_arns(self) -> str:
        return f"arn:{self.partition}:cloudwatch:{self.region}:{self.account_id}:alarm:{self.alarm_prefix}-*"

    @property
    def budget_arns(self) -> str:
        # The form AWS documents for the Budgets topic policy
        # (https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-sns-policy.html).
        return f"arn:{self.partition}:budgets::{self.account_id}:*"

    @property
    def delivery_roles(self) -> str:
        """The bootstrap's delivery roles (an assumed role's aws:PrincipalArn is its role ARN, path included)."""
        return f"arn:{self.partition}:iam::{self.account_id}:role{DELIVERY_ROLE_PATH}*"

    def conditions(self, service: str) -> dict[str, Any]:
        arns = self.alarm_arns if service == "cloudwatch" else self.budget_arns
        return {"StringEquals": {"aws:SourceAccount": self.account_id}, "ArnLike": {"aws:SourceArn": arns}}


def key_policy(publishers: Publishers) -> dict[str, Any]:
    """The topics' KMS key policy: the account administers it (as every key's default policy); CloudWatch
    alarms and Budgets of this account may generate and read data keys to publish."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{publishers.partition}:iam::{publishers.account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            *(
                {
                    "Sid": f"{label}Publish",
                    "Effect": "Allow",
                    "Principal": {"Service": f"{service}.amazonaws.com"},
                    "Action": PUBLISH_KEY_ACTIONS,
                    "Resource": "*",
                    "Condition": publishers.conditions(service),
                }
                for label, service in (("CloudWatchAlarms", "cloudwatch"), ("Budgets", "budgets"))
            ),
        ],
    }


def topic_policy(topic_arn: str, publishers: Publishers) -> dict[str, Any]:
    """Only this account's alarms and budgets publish; nobody else does, and nothing over plain HTTP."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *(
                {
                    "Sid": f"{label}Publish",
                    "Effect": "Allow",
                    "Principal": {"Service": f"{service}.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": publishers.conditions(service),
                }
                for label, service in (("CloudWatchAlarms", "cloudwatch"), ("Budgets", "budgets"))
            ),
            {
                "Sid": "OnlyAwsServicesPublish",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic_arn,
                # Both must hold to deny: a delivery role is exempt here, and may publish only where its own
                # identity policy allows (a deploy role: its stack's topics; a preview role: nowhere).
                "Condition": {
                    "Bool": {"aws:PrincipalIsAWSService": "false"},
                    "ArnNotLike": {"aws:PrincipalArn": publishers.delivery_roles},
                },
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:*",
                "Resource": topic_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def route(settings: OperationsSettings, kind: str) -> str | None:
    """The topic (severity) an alarm kind notifies, or None when it notifies nobody."""
    severity = settings.severity_of(kind)
    return None if severity == "none" else severity


@dataclass(frozen=True, kw_only=True)
class NotificationsArgs:
    env: AwsEnv
    """Account, partition and stack (the alarm-name prefix gantry-<stack>)."""
    settings: OperationsSettings
    """Severity routing, paging on or off, and the subscribers."""
    region: str | None = None
    """Default: the stack's region. Set it (with a provider for that region in `opts`) for a second set of
    topics in another region, e.g. us-east-1 for CloudFront's alarms."""


class Notifications(pulumi.ComponentResource):
    topics: dict[str, aws.sns.Topic]
    """Severity -> topic (no "page" when paging is off)."""
    key: aws.kms.Key

    def __init__(self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:operations:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, settings = args.env, args.settings
        self._settings = settings
        prefix = f"gantry-{env.stack}"
        publishers = Publishers(
            account_id=env.account_id, partition=env.partition, region=args.region or env.region, alarm_prefix=prefix
        )
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Encrypts {prefix}'s alarm and budget notification topics",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.json_dumps(key_policy(publishers)),
            # The tag that makes it a program key: the only kind of key the deploy roles may create and
            # administer (bootstrap.documents.PROGRAM_KEY_TAG), never the bootstrap's state or secrets keys.
            tags={PROGRAM_KEY_TAG: PROGRAM_KEY_TAG_VALUE},
            opts=child,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{prefix}-alerts", target_key_id=self.key.key_id, opts=child)
        self.topics = {}
        for severity in SEVERITIES:
            if severity == "page" and not settings.paging:
                continue
            topic = aws.sns.Topic(
                f"{name}-{severity}", name=f"{prefix}-{severity}", kms_master_key_id=self.key.arn, opts=child
            )
            aws.sns.TopicPolicy(
                f"{name}-{severity}-policy",
                arn=topic.arn,
                policy=topic.arn.apply(lambda arn: json.dumps(topic_policy(arn, publishers))),
                opts=child,
            )
            subscribers = getattr(settings, severity)
            for protocol, endpoints in (("email", subscribers.emails), ("https", subscribers.https)):
                for endpoint in endpoints:
                    aws.sns.TopicSubscription(
                        f"{name}-{severity}-{protocol}-{_short_hash(endpoint)}",
                        topic=topic.arn,
                        protocol=protocol,
                        endpoint=endpoint,
                        opts=child,
                    )
            self.topics[severity] = topic
        self.register_outputs({severity: topic.arn for severity, topic in self.topics.items()})

    def actions(self, kind: str) -> Mapping[str, Any]:
        """MetricAlarm arguments that notify the topic of this alarm kind's severity, on alarm and on
        recovery (so a page resolves itself); {} for severity none."""
        severity = route(self._settings, kind)
        if severity is None:
            return {}
        arn = self.topics[severity].arn
        return {"alarm_actions": [arn], "ok_actions": [arn]}

    def topic_arn(self, kind: str) -> pulumi.Output[str] | None:
        """The topic ARN of a notification kind (budgets), or None for severity none."""
        severity = route(self._settings, kind)
        return None if severity is None else self.topics[severity].arn


def _short_hash(endpoint: str) -> str:
    # The logical name is the subscription's identity; a hash keeps addresses out of resource URNs.
    return hashlib.sha256(endpoint.encode()).hexdigest()[:10]
