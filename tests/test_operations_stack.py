"""Operations on both committed stacks: every alarm notifies the topic of its severity, reads a metric that is
really published, the dashboard is a valid body over metrics in the graph, the budget counts the stack's tag."""

from __future__ import annotations

import fnmatch
import json

import pytest
import yaml

from components.settings.operations import DEFAULT_SEVERITY
from tests.harness import ACCOUNT, REGION, ROOT, Graph, Res, run_program, stack_config, with_test_secrets
from tests.metric_catalog import (
    alarm_metrics,
    dashboard_body_problems,
    dashboard_metrics,
    metric_problem,
    worker_metrics_from_code,
)

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
STACKS = ("dev", "prod")
WORKER_NAMESPACE = "Gantry/Worker"


@pytest.fixture(scope="module", params=STACKS)
def stack(request) -> tuple[str, Graph]:
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    return request.param, run_program(request.param)


def topics(graph: Graph) -> dict[str, Res]:
    """The stack region's topics by severity (CloudFront's edge alarm has its own, in us-east-1)."""
    return {t.inputs["name"].rsplit("-", 1)[1]: t for t in graph.of_type(TOPIC) if t.name.startswith("gantry-alerts-")}


# The distribution's id as the mocks give it (its logical name + "-id"): the edge alarm's dimension.
DISTRIBUTION_ID = "gantry-edge-distribution-id"


def region_of(resource: Res) -> str:
    """The region a resource is created in: us-east-1 through the edge's provider, else the stack's."""
    return "us-east-1" if "us-east-1" in resource.opts.provider else REGION


def kind_of(alarm: Res, stack: str) -> str:
    name = alarm.inputs["name"].removeprefix(f"gantry-{stack}-")
    for role in ("main-", "blue-", "green-"):
        name = name.removeprefix(role)
    return name


def expected_severity(stack: str, kind: str) -> str:
    # prod pages per DEFAULT_SEVERITY; dev has paging off, so everything opens a ticket.
    return DEFAULT_SEVERITY[kind] if stack == "prod" else "ticket"


def test_every_alarm_notifies_the_topic_of_its_severity_on_alarm_and_on_recovery(stack):
    name, graph = stack
    by_severity = {severity: t.outputs["arn"] for severity, t in topics(graph).items()}
    # The batch consumer's start-from-zero alarm acts on its scaling policy, not on people.
    alarms = [a for a in graph.of_type(ALARM) if not a.inputs["name"].endswith("-batch-start-from-zero")]
    assert len(alarms) >= 10
    for alarm in alarms:
        wanted = by_severity[expected_severity(name, kind_of(alarm, name))]
        assert alarm.inputs["alarmActions"] == [wanted], alarm.inputs["name"]
        assert alarm.inputs["okActions"] == [wanted], alarm.inputs["name"]
        assert "insufficientDataActions" not in alarm.inputs


def test_prod_pages_on_a_5xx_storm_and_dev_pages_nobody(stack):
    name, graph = stack
    severities = set(topics(graph))
    alarms = {a.inputs["name"]: a for a in graph.of_type(ALARM)}
    if name == "dev":
        assert severities == {"ticket"}  # no page topic at all
        return
    page = topics(graph)["page"].outputs["arn"]
    for storm in ("gantry-prod-edge-5xx-rate", "gantry-prod-blue-target-5xx-rate", "gantry-prod-green-target-5xx-rate"):
        assert alarms[storm].inputs["alarmActions"] == [page]
    assert alarms["gantry-prod-cpu-high"].inputs["alarmActions"] != [page]


def test_the_rollback_alarms_are_reused_not_duplicated(stack):
    name, graph = stack
    metrics = [
        (m[1], tuple(sorted((k, str(v)) for k, v in m[2].items())))
        for a in graph.of_type(ALARM)
        for m in alarm_metrics(a.inputs)
        if m[1] in ("TargetResponseTime", "UnHealthyHostCount")
    ]
    assert len(metrics) == len(set(metrics)), "two alarms watch the same latency or health metric"
    [rollback] = graph.of_type("gantry:observability:RollbackAlarms")
    assert {a.inputs["name"] for a in graph.children_of(rollback)} >= {
        f"gantry-{name}-{role}-target-5xx-rate" for role in (("main",) if name == "dev" else ("blue", "green"))
    }


def test_every_alarm_reads_a_metric_that_is_published(stack):
    name, graph = stack
    worker = worker_metrics_from_code()
    suffixes = {r.outputs["arnSuffix"] for r in graph.resources if "arnSuffix" in r.outputs}
    cluster = graph.one("aws:ecs/cluster:Cluster").outputs["name"]
    service = graph.one("aws:ecs/service:Service", "gantry-service").outputs["name"]
    # The batch consumer's service and queues, when the stack runs the Batch API (dev does).
    consumer = next(
        (s.outputs["name"] for s in graph.of_type("aws:ecs/service:Service") if s.name != "gantry-service"), None
    )
    queues = {q.outputs["name"] for q in graph.of_type("aws:sqs/queue:Queue")}
    for alarm in graph.of_type(ALARM):
        for namespace, metric, dimensions in alarm_metrics(alarm.inputs):
            assert metric_problem(namespace, metric, dimensions, WORKER_NAMESPACE, worker) is None, alarm.inputs["name"]
            for key, value in dimensions.items():
                wanted = {
                    "LoadBalancer": suffixes,
                    "TargetGroup": suffixes,
                    "ClusterName": {cluster},
                    "ServiceName": {service, consumer},
                    "DistributionId": {DISTRIBUTION_ID},
                    "Region": {"Global"},
                    "QueueName": queues,
                    "Service": {"gantry-worker"},
                }[key]
                assert value in wanted, (alarm.inputs["name"], key, value)


def test_alarms_are_quiet_on_an_idle_stack_and_each_carries_a_runbook(stack):
    _, graph = stack
    for alarm in graph.of_type(ALARM):
        kind = alarm.inputs["name"]
        # No task reporting at all is an outage; for everything else no data means no traffic.
        expected = "breaching" if kind.endswith("tasks-below-desired") else "notBreaching"
        assert alarm.inputs["treatMissingData"] == expected, kind
        description = alarm.inputs["alarmDescription"]
        assert all(f"{n})" in description for n in (1, 2, 3)) and "Check first" in description, kind
        assert len(description) <= 1024


def test_container_insights_is_on_for_the_tasks_alarm(stack):
    _, graph = stack
    assert {"name": "containerInsights", "value": "enabled"} in graph.one("aws:ecs/cluster:Cluster").inputs["settings"]


def test_topics_are_encrypted_with_the_stacks_own_key_whose_policy_lets_alarms_and_budgets_publish(stack):
    name, graph = stack
    key = graph.named("gantry-alerts-key")
    assert key.inputs["enableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key.json("policy")["Statement"]}
    for sid, service, source in (
        ("CloudWatchAlarmsPublish", "cloudwatch", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:gantry-{name}-*"),
        ("BudgetsPublish", "budgets", f"arn:aws:budgets::{ACCOUNT}:*"),
    ):
        statement = statements[sid]
        assert statement["Principal"] == {"Service": f"{service}.amazonaws.com"}
        assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": source},
        }
    for topic in topics(graph).values():
        assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
        assert topic.inputs["kmsMasterKeyId"] != "alias/aws/sns"
    # The CloudFront edge alarm's topics, in us-east-1, have their own key there for that region's alarms.
    east_key = graph.named("gantry-ops-alarms-edge-alerts-key")
    assert "us-east-1" in east_key.opts.provider
    east_alarms = {s["Sid"]: s for s in east_key.json("policy")["Statement"]}["CloudWatchAlarmsPublish"]
    assert east_alarms["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:gantry-{name}-*"
    }


def test_topic_policies_allow_only_this_accounts_alarms_and_budgets_to_publish(stack):
    name, graph = stack
    policies = graph.of_type("aws:sns/topicPolicy:TopicPolicy")
    assert {p.inputs["arn"] for p in policies} == {t.outputs["arn"] for t in graph.of_type(TOPIC)}
    regions: set[str] = set()
    checked = 0
    for policy in policies:
        statements = policy.json("policy")["Statement"]
        allowed = [s for s in statements if s["Effect"] == "Allow"]
        assert sorted(s["Principal"]["Service"] for s in allowed) == [
            "budgets.amazonaws.com",
            "cloudwatch.amazonaws.com",
        ]
        assert all(s["Action"] == "sns:Publish" and s["Resource"] == policy.inputs["arn"] for s in allowed)
        # Each publisher only with both source conditions: without ArnLike any alarm (or budget) of the
        # account could page; without aws:SourceAccount the ARN pattern alone would be the only fence
        # (the SNS confused-deputy guidance asks for both:
        # https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html).
        region = region_of(policy)
        sources = {
            "cloudwatch.amazonaws.com": f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:gantry-{name}-*",
            "budgets.amazonaws.com": f"arn:aws:budgets::{ACCOUNT}:*",
        }
        for s in allowed:
            assert s["Condition"] == {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": sources[s["Principal"]["Service"]]},
            }, (policy.name, s["Sid"])
        regions.add(region)
        # The pattern admits every alarm that notifies this topic (else its notifications are refused).
        notifying = [
            a
            for a in graph.of_type(ALARM)
            if region_of(a) == region and policy.inputs["arn"] in a.inputs.get("alarmActions", [])
        ]
        checked += len(notifying)
        for alarm in notifying:
            arn = f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{alarm.inputs['name']}"
            assert fnmatch.fnmatchcase(arn, sources["cloudwatch.amazonaws.com"]), (arn, policy.name)
        denies = {s["Sid"]: s for s in statements if s["Effect"] == "Deny"}
        assert denies["OnlyAwsServicesPublish"]["Condition"] == {
            "Bool": {"aws:PrincipalIsAWSService": "false"},
            # The deploy role pages through its stack's topic (scripts/ci/page.py); see tests/bootstrap/test_escape.py.
            "ArnNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/gantry-delivery/*"},
        }
        assert denies["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert regions == {REGION, "us-east-1"}  # the CloudFront edge alarm's topics are held to the same rules
    # Every alarm that notifies people was matched against its own region's topic pattern.
    arns = {p.inputs["arn"] for p in policies}
    assert checked == sum(1 for a in graph.of_type(ALARM) if set(a.inputs.get("alarmActions", [])) & arns) >= 10


def test_committed_stacks_subscribe_nobody(stack):
    _, graph = stack
    assert graph.of_type(SUBSCRIPTION) == []


def test_subscriptions_from_config_reach_their_severitys_topic():
    config, secret_keys = with_test_secrets(stack_config("prod"))
    config["gantry:operations"] = {
        **config["gantry:operations"],
        "page": {"emails": ["oncall@acme.io"], "https": ["https://events.pagerduty.com/integration/abc123/enqueue"]},
        "ticket": {"emails": ["platform@acme.io"]},
    }
    graph = run_program("prod", config, secret_keys)
    arns = {severity: t.outputs["arn"] for severity, t in topics(graph).items()}
    home = [s for s in graph.of_type(SUBSCRIPTION) if s.name.startswith("gantry-alerts-")]
    found = sorted((s.inputs["topic"], s.inputs["protocol"], s.inputs["endpoint"]) for s in home)
    assert found == sorted(
        [
            (arns["page"], "email", "oncall@acme.io"),
            (arns["page"], "https", "https://events.pagerduty.com/integration/abc123/enqueue"),
            (arns["ticket"], "email", "platform@acme.io"),
        ]
    )
    # The same people hear the CloudFront edge alarm, through its us-east-1 topics.
    assert len(graph.of_type(SUBSCRIPTION)) == 2 * len(home)
    # A subscriber's logical name does not carry the address.
    assert all("acme" not in s.name for s in graph.of_type(SUBSCRIPTION))


def test_the_dashboard_is_a_valid_body_over_metrics_in_the_graph_or_the_worker(stack):
    name, graph = stack
    dashboard = graph.one("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == f"gantry-{name}"
    body = dashboard.json("dashboardBody")
    assert dashboard_body_problems(body) == []
    worker = worker_metrics_from_code()
    groups = {g.outputs["arnSuffix"] for g in graph.of_type("aws:lb/targetGroup:TargetGroup")}
    values = {
        "LoadBalancer": {graph.one("aws:lb/loadBalancer:LoadBalancer").outputs["arnSuffix"]},
        "TargetGroup": groups,
        "ClusterName": {graph.one("aws:ecs/cluster:Cluster").outputs["name"]},
        "ServiceName": {graph.one("aws:ecs/service:Service", "gantry-service").outputs["name"]},
        "Service": {"gantry-worker"},
        "DistributionId": {DISTRIBUTION_ID},
        "Region": {"Global"},
    }
    rows = dashboard_metrics(body)
    for namespace, metric, dimensions in rows:
        assert metric_problem(namespace, metric, dimensions, WORKER_NAMESPACE, worker) is None
        assert all(value in values[key] for key, value in dimensions.items()), (metric, dimensions)
    # Every target group the deploys use is graphed (blue and green swap roles).
    assert {d["TargetGroup"] for _, m, d in rows if m == "HealthyHostCount"} == groups
    titles = [w["properties"]["title"] for w in body["widgets"]]
    for wanted in (
        "Requests", "5xx", "Latency p50 / p99 (s)", "Healthy hosts", "Running tasks", "CPU and memory (%)",
        "Tokens per minute per tenant", "Throttled (429 / 503)", "Batch size", "In flight and queued", "Deployments",
    ):  # fmt: skip
        assert wanted in titles
    expressions = [
        row[0]["expression"] for w in body["widgets"] for row in w["properties"]["metrics"] if isinstance(row[0], dict)
    ]
    assert (
        "SEARCH('{Gantry/Worker,Service,Tenant} MetricName=\"Tokens\" Service=\"gantry-worker\"', 'Sum', 60)"
        in expressions
    )
    assert "Tokens" in worker[frozenset({"Service", "Tenant"})]


def test_the_budget_counts_the_stacks_environment_tag_and_alerts_the_topics(stack):
    name, graph = stack
    tags = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"]["aws:defaultTags"]["tags"]
    budget = graph.one("aws:budgets/budget:Budget")
    assert budget.inputs["costFilters"] == [
        {"name": "TagKeyValue", "values": [f"user:environment${tags['environment']}"]}
    ]
    assert (budget.inputs["budgetType"], budget.inputs["timeUnit"], budget.inputs["limitUnit"]) == (
        "COST",
        "MONTHLY",
        "USD",
    )
    assert budget.inputs["accountId"] == ACCOUNT
    arns = {severity: t.outputs["arn"] for severity, t in topics(graph).items()}
    alerts = sorted(
        (n["notificationType"], n["threshold"], n["subscriberSnsTopicArns"][0]) for n in budget.inputs["notifications"]
    )
    actual_100 = arns["page"] if name == "prod" else arns["ticket"]
    assert alerts == sorted(
        [("ACTUAL", 80.0, arns["ticket"]), ("FORECASTED", 100.0, arns["ticket"]), ("ACTUAL", 100.0, actual_100)]
    )


def test_each_budget_severity_routes_only_the_alert_it_names():
    config, secret_keys = with_test_secrets(stack_config("prod"))
    config["gantry:operations"] = {
        **config["gantry:operations"],
        "severity": {"budgetForecast": "none", "budgetActualWarning": "page"},
    }
    graph = run_program("prod", config, secret_keys)
    arns = {severity: t.outputs["arn"] for severity, t in topics(graph).items()}
    alerts = sorted(
        (n["notificationType"], n["threshold"], n["subscriberSnsTopicArns"][0])
        for n in graph.one("aws:budgets/budget:Budget").inputs["notifications"]
    )
    # Silencing the forecast keeps the 80 % actual warning, which its own kind moved to the page topic.
    assert alerts == sorted([("ACTUAL", 80.0, arns["page"]), ("ACTUAL", 100.0, arns["page"])])


def test_the_budget_refuses_a_tag_the_stack_does_not_carry():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:operations"] = {**config["gantry:operations"], "budgetTagKey": "team"}
    with pytest.raises(Exception, match="budgetTagKey is 'team', but aws:defaultTags has no such tag"):
        run_program("dev", config, secret_keys)


def test_the_dashboard_name_is_a_stack_output(stack):
    name, graph = stack
    assert graph.exports["dashboardName"] == f"gantry-{name}"
    assert json.dumps(graph.exports)  # every export resolves to plain values
