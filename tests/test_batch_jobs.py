"""The Batch API's pure specs: permissions held to the app's calls and README, scaling maths, alarms, settings.

The permissions are checked from both ends: `components.policies.BATCH_*_ACTIONS` must equal the table
in app/README.md ("AWS permissions") and the IAM actions of exactly the AWS calls each command makes
(found by walking worker/batch_store.py, worker/batch_api.py and worker/consumer.py), so a new call
without its permission, or a permission nothing calls, fails here rather than in AWS. The alarm and
policy specs are checked against botocore's CloudWatch and Application Auto Scaling models.
"""

from __future__ import annotations

import ast
import re

import botocore.session
import pytest

from components import policies
from components.batch.jobs import (
    QueueIdentity,
    backlog_rule,
    bucket_lifecycle_rules,
    from_zero_alarm,
    from_zero_step_policy,
    operations_alarms,
)
from components.settings.queue import QueueSettings
from components.workload.scaling import target_tracking_configuration
from tests.harness import ROOT
from tests.test_aws_shapes import camel, pascal, scaling_shape_errors, shape_errors

WORKER = ROOT / "app" / "worker"
CLIENTS = {"s3": "s3", "sqs": "sqs", "table": "dynamodb"}
# boto3 calls whose IAM action is not their PascalCase name.
S3_ACTIONS = {
    "put_object": ("s3:PutObject",),
    "get_object": ("s3:GetObject",),
    "head_object": ("s3:GetObject",),
    "delete_object": ("s3:DeleteObject",),
    # A managed transfer: CreateMultipartUpload/UploadPart/Complete are s3:PutObject; a failure aborts.
    "upload_fileobj": ("s3:PutObject", "s3:AbortMultipartUpload"),
}
IDENTITY = QueueIdentity(queue_name="q", dead_letter_queue_name="dlq", cluster_name="c", service_name="s")


def _client_call(node: ast.AST) -> tuple[str, str] | None:
    """(client, operation) for `self.s3.put_object(...)`, `store.table.put_item(...)` and the like."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        if isinstance(owner, ast.Attribute) and owner.attr in CLIENTS:
            return owner.attr, node.func.attr
    return None


def _action(client: str, operation: str) -> tuple[str, ...]:
    if client == "s3":
        return S3_ACTIONS[operation]
    return (f"{CLIENTS[client]}:{''.join(part.title() for part in operation.split('_'))}",)


def store_method_actions() -> dict[str, set[str]]:
    """BatchStore method -> the IAM actions of every AWS call it makes, following calls to its own methods."""
    tree = ast.parse((WORKER / "batch_store.py").read_text())
    (store,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BatchStore"]
    direct: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for method in [n for n in store.body if isinstance(n, ast.FunctionDef)]:
        direct[method.name] = {a for node in ast.walk(method) if (c := _client_call(node)) for a in _action(*c)}
        calls[method.name] = {
            node.func.attr
            for node in ast.walk(method)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
        }  # fmt: skip
    # concatenate reads its parts through _ChainReader, which calls store.stream.
    calls["concatenate"].add("stream")
    resolved: dict[str, set[str]] = {}

    def actions(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name not in resolved:
            found = set(direct.get(name, set()))
            for callee in calls.get(name, set()) - seen - {name}:
                found |= actions(callee, seen | {name})
            resolved[name] = found
        return resolved[name]

    return {name: actions(name) for name in direct}


def command_actions(module: str) -> set[str]:
    """The IAM actions of every AWS call a command's module makes through its BatchStore (`self.store`)."""
    tree = ast.parse((WORKER / module).read_text())
    methods = store_method_actions()
    used: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)):
            continue
        if node.value.attr == "store":
            used |= methods.get(node.attr, set())
        # A client method handed to a thread, e.g. asyncio.to_thread(self.store.table.put_item, ...).
        owner = node.value
        if owner.attr in CLIENTS and isinstance(owner.value, ast.Attribute) and owner.value.attr == "store":
            used |= set(_action(owner.attr, node.attr))
    return used


def flatten(actions) -> set[str]:
    return {a for kind in actions.values() for a in kind}


def readme_permissions() -> dict[str, set[str]]:
    text = (ROOT / "app" / "README.md").read_text()
    section = text.split("### AWS permissions (task roles)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")][1:]
    table: dict[str, set[str]] = {}
    for row in rows:
        command, *cells = [c.strip() for c in row.strip("|").split("|")]
        table[command.split()[0]] = {a for cell in cells for a in re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", cell)}
    return table


def test_each_command_is_granted_exactly_the_aws_calls_it_makes():
    assert command_actions("batch_api.py") == flatten(policies.BATCH_API_ACTIONS)
    assert command_actions("consumer.py") == flatten(policies.BATCH_CONSUMER_ACTIONS)


def test_the_readme_lists_exactly_the_granted_permissions():
    assert readme_permissions() == {
        "API": flatten(policies.BATCH_API_ACTIONS),
        "consumer": flatten(policies.BATCH_CONSUMER_ACTIONS),
    }


def test_the_call_walk_sees_a_new_call():
    source = "class BatchStore:\n    def purge(self):\n        self.sqs.purge_queue(QueueUrl='q')\n"
    tree = ast.parse(source)
    assert {c for n in ast.walk(tree) if (c := _client_call(n))} == {("sqs", "purge_queue")}
    assert _action("sqs", "purge_queue") == ("sqs:PurgeQueue",)


def test_the_batch_task_policy_names_only_the_three_resources():
    document = policies.batch_task_policy(
        policies.BATCH_CONSUMER_ACTIONS,
        queue_arn="arn:aws:sqs:eu-west-1:210987654321:q",
        bucket_arn="arn:aws:s3:::b",
        prefix="batches/",
        table_arn="arn:aws:dynamodb:eu-west-1:210987654321:table/t",
    )
    assert {s["Sid"]: s["Resource"] for s in document["Statement"]} == {
        "BatchQueue": "arn:aws:sqs:eu-west-1:210987654321:q",
        "BatchFiles": "arn:aws:s3:::b/batches/*",
        "BatchRecords": "arn:aws:dynamodb:eu-west-1:210987654321:table/t",
    }
    assert all(s["Effect"] == "Allow" and "*" not in "".join(s["Action"]) for s in document["Statement"])


def test_tls_only_policies_deny_plain_http_to_everyone():
    queue = "arn:aws:sqs:eu-west-1:210987654321:q"
    for document, resources in (
        (policies.batch_bucket_policy("arn:aws:s3:::b"), ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]),
        (policies.tls_only_queue_policy(queue), [queue]),
    ):
        (deny,) = document["Statement"]
        assert (deny["Effect"], deny["Principal"], deny["Resource"]) == ("Deny", "*", resources)
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ---- scaling ----------------------------------------------------------------------------------------


def test_the_backlog_target_is_acceptable_latency_over_seconds_per_job():
    rule = backlog_rule(QueueSettings(acceptable_queue_latency_seconds=900, seconds_per_job=60), IDENTITY)
    assert rule.target_value == 15
    (returned,) = [q for q in rule.metric_queries if q.returns]
    assert returned.expression == "(visible + inflight) / tasks"
    by_id = {q.id: q for q in rule.metric_queries}
    assert by_id["visible"].metric_name == "ApproximateNumberOfMessagesVisible"
    assert by_id["inflight"].metric_name == "ApproximateNumberOfMessagesNotVisible"
    assert (by_id["tasks"].namespace, by_id["tasks"].metric_name) == ("ECS/ContainerInsights", "DesiredTaskCount")
    assert dict(by_id["tasks"].dimensions) == {"ClusterName": "c", "ServiceName": "s"}
    assert scaling_shape_errors(camel(target_tracking_configuration(rule))) == []


def test_the_from_zero_alarm_fires_only_with_work_and_no_task():
    alarm = from_zero_alarm(IDENTITY)
    (returned,) = [q for q in alarm["metric_queries"] if q["return_data"]]
    expression = returned["expression"]

    # Evaluate the expression's logic the way CloudWatch would, for each case.
    def value(visible, inflight, tasks):
        filled = 0 if tasks is None else tasks
        return 1 if (visible + inflight) > 0 and filled == 0 else 0

    assert "FILL(tasks, 0) == 0" in expression and "(visible + inflight) > 0" in expression
    assert [value(1, 0, None), value(0, 1, 0), value(0, 0, None), value(3, 2, 1)] == [1, 1, 0, 0]
    assert (alarm["comparison_operator"], alarm["threshold"], alarm["treat_missing_data"]) == (
        "GreaterThanOrEqualToThreshold",
        1,
        "notBreaching",
    )
    step = from_zero_step_policy()
    assert step["adjustment_type"] == "ExactCapacity"
    assert step["step_adjustments"] == [{"metric_interval_lower_bound": "0", "scaling_adjustment": 1}]


def _alarm_request(spec: dict) -> dict:
    """An alarm spec (provider arguments) as CloudWatch PutMetricAlarm's request members."""
    request = pascal(camel(spec))
    rename = {"Statistic": "Statistic", "MetricName": "MetricName", "MetricQueries": "Metrics"}
    request = {rename.get(k, k): v for k, v in request.items()}
    if "Dimensions" in request:
        request["Dimensions"] = [{"Name": k, "Value": v} for k, v in request["Dimensions"].items()]
    for query in request.get("Metrics", []):
        if "Metric" in query:
            metric = query.pop("Metric")
            query["MetricStat"] = {
                "Metric": {
                    "Namespace": metric["Namespace"],
                    "MetricName": metric["MetricName"],
                    "Dimensions": [{"Name": k, "Value": v} for k, v in metric["Dimensions"].items()],
                },
                "Period": metric["Period"],
                "Stat": metric["Stat"],
            }
    return {"AlarmName": "a", **request}


@pytest.mark.parametrize(
    "spec",
    [
        from_zero_alarm(IDENTITY),
        *operations_alarms(QueueSettings(), queue_name="q", dead_letter_queue_name="dlq").values(),
    ],
    ids=["from-zero", "oldest-batch", "dead-letters"],
)
def test_every_batch_alarm_fits_cloudwatch_s_model(spec):
    shape = botocore.session.get_session().get_service_model("cloudwatch").operation_model("PutMetricAlarm")
    assert shape_errors(_alarm_request(spec), shape.input_shape, "alarm") == []


def test_the_step_policy_fits_the_application_auto_scaling_model():
    model = botocore.session.get_session().get_service_model("application-autoscaling")
    step = pascal(camel(from_zero_step_policy()))
    assert shape_errors(step, model.shape_for("StepScalingPolicyConfiguration"), "step") == []


def test_operations_alarms_derive_from_the_settings():
    settings = QueueSettings(acceptable_queue_latency_seconds=300, seconds_per_job=60)
    alarms = operations_alarms(settings, queue_name="q", dead_letter_queue_name="dlq")
    assert alarms["oldest-batch"]["threshold"] == 360
    assert alarms["oldest-batch"]["dimensions"] == {"QueueName": "q"}
    assert alarms["dead-letters"]["dimensions"] == {"QueueName": "dlq"}
    assert {a["treat_missing_data"] for a in alarms.values()} == {"notBreaching"}


def test_files_expire_after_the_configured_days_and_abandoned_uploads_after_one():
    (rule,) = bucket_lifecycle_rules(QueueSettings(file_expiry_days=9))
    assert rule["expiration"] == {"days": 9}
    assert rule["filter"] == {"prefix": "batches/"}
    assert rule["abort_incomplete_multipart_upload"] == {"days_after_initiation": 1}


# ---- settings -----------------------------------------------------------------------------------------


def test_spot_share_becomes_the_capacity_provider_weights():
    assert [(p.provider, p.weight, p.base) for p in QueueSettings(spot_percent=70).capacity_providers] == [
        ("FARGATE_SPOT", 70, 0),
        ("FARGATE", 30, 0),
    ]
    assert [p.provider for p in QueueSettings(spot_percent=0).capacity_providers] == ["FARGATE"]
    assert [p.provider for p in QueueSettings(spot_percent=100).capacity_providers] == ["FARGATE_SPOT"]


def test_the_consumer_drains_inside_its_stop_timeout():
    settings = QueueSettings(stop_timeout_seconds=120)
    assert settings.drain_timeout_seconds == 115
    assert settings.consumer_variables["DRAIN_TIMEOUT_SECONDS"] == "115"
    assert settings.consumer_variables["MAX_RECEIVES"] == str(settings.max_receives)


def test_cross_field_checks_name_the_field():
    problems = dict(QueueSettings(min_capacity=5, max_capacity=2).checks(None))  # type: ignore[arg-type]
    assert "minCapacity" in problems
    problems = dict(QueueSettings(acceptable_queue_latency_seconds=60, seconds_per_job=120).checks(None))  # type: ignore[arg-type]
    assert "secondsPerJob" in problems
    problems = dict(QueueSettings(cpu=256, memory=4096).checks(None))  # type: ignore[arg-type]
    assert "memory" in problems
    assert dict(QueueSettings().checks(None)) == {}  # type: ignore[arg-type]
