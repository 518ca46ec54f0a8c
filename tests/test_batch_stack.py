"""Whole-stack tests of the Batch API's infrastructure (components/batch/jobs.py), on the real program.

Run for the dev stack (which enables `queue`) and for prod with `queue.enabled: true` (prod's other
choices: per-AZ NAT, interface endpoints, blue/green). Each test guards what a real mistake would break:
a consumer reachable from anywhere or behind the load balancer, a role wider than the app's calls, a
scaling policy reading another queue or service, a bucket that is public, unencrypted or plain-HTTP, an
API role that gains more than accepting a batch needs, a consumer environment the worker would refuse.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components import policies
from tests.harness import PRIVATE_SUBNETS, ROOT, TEST_SECRET_VALUE, Graph, run_program, stack_config, with_test_secrets
from worker import config as worker_config

SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
POLICY = "aws:iam/rolePolicy:RolePolicy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
PROD_WITH_QUEUE = "prod-with-queue"
STACKS = ["dev", PROD_WITH_QUEUE]


def config_for(stack: str) -> dict[str, Any]:
    if stack == PROD_WITH_QUEUE:
        config = stack_config("prod")
        config["gantry:queue"] = {"enabled": True, "spotPercent": 50, "minCapacity": 0, "maxCapacity": 6}
        return config
    return stack_config(stack)


def run(stack: str) -> Graph:
    config, secret_keys = with_test_secrets(config_for(stack))
    return run_program("prod" if stack == PROD_WITH_QUEUE else stack, config=config, secret_keys=secret_keys)


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def graph(stack) -> Graph:
    return run(stack)


def queue_settings(stack: str) -> dict[str, Any]:
    from components.settings.queue import QueueSettings

    return QueueSettings.model_validate(config_for(stack)["gantry:queue"], by_alias=True).model_dump(by_alias=True)


def container(graph: Graph, task: str) -> dict[str, Any]:
    (definition,) = graph.one(TASK, task).json("containerDefinitions")
    return definition


def environment(definition: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in definition["environment"]}


def role_policies(graph: Graph, role: str) -> dict[str, dict]:
    role_id = graph.named(role).outputs["id"]
    return {p.name: p.json("policy") for p in graph.of_type(POLICY) if p.inputs["role"] == role_id}


def resource_arns(graph: Graph) -> dict[str, str]:
    return {
        "queue": graph.named("gantry-batch-queue").outputs["arn"],
        "bucket": graph.named("gantry-batch-files").outputs["arn"],
        "table": graph.named("gantry-batch-records").outputs["arn"],
    }


def expected_policy(graph: Graph, actions) -> dict:
    arns = resource_arns(graph)
    return policies.batch_task_policy(
        actions, queue_arn=arns["queue"], bucket_arn=arns["bucket"], prefix="batches/", table_arn=arns["table"]
    )


# ---- the consumer service: no ingress, no load balancer, private subnets ------------------------------


def test_the_consumer_has_no_load_balancer_and_runs_in_private_subnets(graph):
    consumer = graph.one(SERVICE, "gantry-batch-consumer-service").inputs
    assert not consumer.get("loadBalancers")
    assert not consumer.get("healthCheckGracePeriodSeconds")
    network = consumer["networkConfiguration"]
    assert network["assignPublicIp"] is False
    assert sorted(network["subnets"]) == sorted(PRIVATE_SUBNETS[: len(network["subnets"])])
    consumer_sg = graph.named("gantry-sg-consumer").outputs["id"]
    assert network["securityGroups"] == [consumer_sg]
    # Same cluster as the API, a task definition of its own.
    api = graph.one(SERVICE, "gantry-service").inputs
    assert consumer["cluster"] == api["cluster"]
    assert consumer["taskDefinition"] == graph.one(TASK, "gantry-batch-consumer-task").outputs["arn"]


def test_nothing_can_connect_to_the_consumer(graph, stack):
    consumer_sg = graph.named("gantry-sg-consumer").outputs["id"]
    ingress = [r for r in graph.of_type(SG_INGRESS) if consumer_sg in (r.inputs["securityGroupId"],)]
    assert ingress == []
    # ...and nobody's egress names it as a destination (a half path that would invite an ingress later).
    assert [r.name for r in graph.of_type(SG_EGRESS) if r.inputs.get("referencedSecurityGroupId") == consumer_sg] == []
    egress = [r for r in graph.of_type(SG_EGRESS) if r.inputs["securityGroupId"] == consumer_sg]
    assert egress, "the consumer must reach SQS, S3 and DynamoDB"
    assert {(r.inputs["fromPort"], r.inputs["toPort"]) for r in egress} == {(443, 443)}
    # The API's tasks and the consumer send the same way: HTTPS via NAT and, with endpoints, to them.
    api_sg = graph.named("gantry-sg-task").outputs["id"]

    def shape(group):
        return sorted(
            str((r.inputs.get("cidrIpv4"), r.inputs.get("prefixListId"), r.inputs.get("referencedSecurityGroupId")))
            for r in graph.of_type(SG_EGRESS)
            if r.inputs["securityGroupId"] == group
            and r.inputs.get("referencedSecurityGroupId") != consumer_sg
            and not (group == api_sg and r.name == "gantry-sg-alb-to-task")
        )

    assert shape(consumer_sg) == shape(api_sg)


def test_the_consumer_container_is_a_worker_with_the_queue_s_numbers(graph, stack):
    queue = queue_settings(stack)
    definition = container(graph, "gantry-batch-consumer-task")
    assert definition["command"] == ["python", "-m", "worker.consumer"]
    assert "portMappings" not in definition and "healthCheck" not in definition
    assert definition["stopTimeout"] == queue["stopTimeoutSeconds"] <= 120
    assert definition["readonlyRootFilesystem"] is True
    assert definition["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    env = environment(definition)
    assert "PORT" not in env
    assert int(env["DRAIN_TIMEOUT_SECONDS"]) < definition["stopTimeout"]
    main_queue = graph.named("gantry-batch-queue")
    assert env["QUEUE_URL"] == main_queue.outputs["url"]
    assert env["BATCH_BUCKET"] == graph.named("gantry-batch-files").outputs["bucket"]
    assert env["BATCH_TABLE"] == graph.named("gantry-batch-records").outputs["name"]
    assert env["BATCH_PREFIX"] == "batches/"
    # The consumer's MAX_RECEIVES is the redrive policy's maxReceiveCount, its visibility the queue's.
    redrive = json.loads(main_queue.inputs["redrivePolicy"])
    assert int(env["MAX_RECEIVES"]) == redrive["maxReceiveCount"] == queue["maxReceives"]
    assert int(env["VISIBILITY_TIMEOUT_SECONDS"]) == main_queue.inputs["visibilityTimeoutSeconds"]
    # Its own log group, not the API's.
    logs = definition["logConfiguration"]["options"]["awslogs-group"]
    assert logs == graph.named("gantry-batch-consumer-logs").outputs["name"]
    assert logs != container(graph, "gantry-task")["logConfiguration"]["options"]["awslogs-group"]
    td = graph.one(TASK, "gantry-batch-consumer-task").inputs
    assert (int(td["cpu"]), int(td["memory"])) == (queue["cpu"], queue["memory"])


def test_the_worker_s_consumer_accepts_the_environment_the_stack_renders(graph, tmp_path):
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    env = environment(container(graph, "gantry-batch-consumer-task"))
    settings = worker_config.load_consumer_settings({**env, "MODEL_DIR": str(tmp_path)}, cpus=1)
    assert settings.batch.queue_url == graph.named("gantry-batch-queue").outputs["url"]
    assert settings.drain_timeout_seconds < container(graph, "gantry-batch-consumer-task")["stopTimeout"]
    api_env = environment(container(graph, "gantry-task"))
    api = worker_config.load_settings({**api_env, "API_KEYS": TEST_SECRET_VALUE, "MODEL_DIR": str(tmp_path)}, cpus=1)
    assert api.batch == settings.batch  # one queue, bucket, table and prefix for both commands


def test_the_consumer_runs_on_spot_per_config_and_scales_from_zero(graph, stack):
    queue = queue_settings(stack)
    consumer = graph.one(SERVICE, "gantry-batch-consumer-service")
    weights = {p["capacityProvider"]: p["weight"] for p in consumer.inputs["capacityProviderStrategies"]}
    expected = {"FARGATE_SPOT": queue["spotPercent"], "FARGATE": 100 - queue["spotPercent"]}
    assert weights == {k: v for k, v in expected.items() if v}
    assert all(p["base"] == 0 for p in consumer.inputs["capacityProviderStrategies"])
    assert consumer.inputs["desiredCount"] == 0
    assert "desiredCount" in consumer.opts.ignore_changes
    # A consumer release rolls back on its circuit breaker and when a batch dead-letters meanwhile.
    assert consumer.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    dead_letters = graph.named("gantry-batch-dead-letters-alarm").inputs["name"]
    assert consumer.inputs["alarms"] == {"alarmNames": [dead_letters], "enable": True, "rollback": True}
    target = graph.one("aws:appautoscaling/target:Target", "gantry-batch-consumer-scaling").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (0, queue["maxCapacity"])


# ---- IAM: exactly the app's calls ------------------------------------------------------------------


def test_the_consumer_role_holds_exactly_the_consumer_s_actions_on_this_stack_s_resources(graph):
    td = graph.one(TASK, "gantry-batch-consumer-task").inputs
    role = next(r for r in graph.of_type("aws:iam/role:Role") if r.outputs["arn"] == td["taskRoleArn"])
    assert role.name == "gantry-batch-consumer-roles-task"
    assert role_policies(graph, role.name) == {
        "gantry-batch-consumer-roles-task-batch": expected_policy(graph, policies.BATCH_CONSUMER_ACTIONS)
    }
    assert not role.inputs.get("managedPolicyArns")
    assert td["taskRoleArn"] != graph.one(TASK, "gantry-task").inputs["taskRoleArn"]


def test_the_api_role_gains_exactly_what_accepting_a_batch_needs(graph):
    assert role_policies(graph, "gantry-roles-task") == {
        "gantry-roles-task-batch": expected_policy(graph, policies.BATCH_API_ACTIONS)
    }
    env = environment(container(graph, "gantry-task"))
    assert env["QUEUE_URL"] == graph.named("gantry-batch-queue").outputs["url"]
    assert {"BATCH_BUCKET", "BATCH_TABLE", "BATCH_PREFIX"} <= set(env)
    # The API never receives or deletes jobs. (The consumer sends too, but only to hand a drained batch
    # back on its own queue: the next test holds every batch statement to this stack's three resources.)
    assert "sqs:ReceiveMessage" not in json.dumps(role_policies(graph, "gantry-roles-task"))
    assert "sqs:DeleteMessage" not in json.dumps(role_policies(graph, "gantry-roles-task"))


def test_no_batch_statement_names_a_wildcard_or_another_stack_s_resource(graph):
    arns = resource_arns(graph)
    allowed = {arns["queue"], f"{arns['bucket']}/batches/*", arns["table"]}
    for role in ("gantry-roles-task", "gantry-batch-consumer-roles-task"):
        for document in role_policies(graph, role).values():
            for statement in document["Statement"]:
                assert statement["Resource"] in allowed, statement


# ---- scaling: metric math on the right queue and service ---------------------------------------------


def metric_dimensions(queries: list[dict], query_id: str) -> dict[str, str]:
    (query,) = [q for q in queries if q["id"] == query_id]
    metric = query.get("metricStat", {}).get("metric") or query["metric"]
    dims = metric["dimensions"]
    return {d["name"]: d["value"] for d in dims} if isinstance(dims, list) else dims


def test_backlog_per_task_names_this_queue_and_the_consumer_service(graph, stack):
    queue = queue_settings(stack)
    policy = graph.named("gantry-batch-scale-on-backlog").inputs
    target = graph.one("aws:appautoscaling/target:Target", "gantry-batch-consumer-scaling").inputs
    assert policy["resourceId"] == target["resourceId"]
    config = policy["targetTrackingScalingPolicyConfiguration"]
    assert config["targetValue"] == queue["acceptableQueueLatencySeconds"] / queue["secondsPerJob"]
    queries = config["customizedMetricSpecification"]["metrics"]
    queue_name = graph.named("gantry-batch-queue").outputs["name"]
    consumer = graph.one(SERVICE, "gantry-batch-consumer-service").outputs["name"]
    cluster = graph.one("aws:ecs/cluster:Cluster").outputs["name"]
    assert metric_dimensions(queries, "visible") == {"QueueName": queue_name}
    assert metric_dimensions(queries, "inflight") == {"QueueName": queue_name}
    assert metric_dimensions(queries, "tasks") == {"ClusterName": cluster, "ServiceName": consumer}
    (returned,) = [q for q in queries if q["returnData"]]
    assert returned["expression"] == "(visible + inflight) / tasks"
    assert target["resourceId"] == f"service/{cluster}/{consumer}"


def test_a_queued_batch_starts_the_first_task(graph):
    alarm = graph.named("gantry-batch-start-from-zero-alarm").inputs
    policy = graph.named("gantry-batch-start-from-zero")
    assert alarm["alarmActions"] == [policy.outputs["arn"]]
    assert policy.inputs["policyType"] == "StepScaling"
    assert policy.inputs["stepScalingPolicyConfiguration"]["adjustmentType"] == "ExactCapacity"
    queue_name = graph.named("gantry-batch-queue").outputs["name"]
    consumer = graph.one(SERVICE, "gantry-batch-consumer-service").outputs["name"]
    assert metric_dimensions(alarm["metricQueries"], "visible") == {"QueueName": queue_name}
    assert metric_dimensions(alarm["metricQueries"], "tasks")["ServiceName"] == consumer
    assert alarm["treatMissingData"] == "notBreaching"


# ---- the bucket, the queues, the table ---------------------------------------------------------------


def test_the_batch_bucket_is_private_encrypted_tls_only_and_expires_files(graph, stack):
    bucket = graph.named("gantry-batch-files")
    bucket_id = bucket.outputs["id"]
    block = graph.named("gantry-batch-files-public-access").inputs
    assert block["bucket"] == bucket_id
    assert all(
        block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert graph.named("gantry-batch-files-ownership").inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (rule,) = graph.named("gantry-batch-files-encryption").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = graph.named("gantry-batch-files-policy")
    (deny,) = policy.json("policy")["Statement"]
    arn = bucket.outputs["arn"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Resource"] == [arn, f"{arn}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy.depends_on(graph.named("gantry-batch-files-public-access"))
    (lifecycle,) = graph.named("gantry-batch-files-lifecycle").inputs["rules"]
    assert lifecycle["expiration"]["days"] == queue_settings(stack)["fileExpiryDays"]
    assert lifecycle["filter"]["prefix"] == "batches/"


def test_the_queues_are_encrypted_tls_only_and_dead_letter_after_max_receives(graph, stack):
    queue = queue_settings(stack)
    main, dead = graph.named("gantry-batch-queue"), graph.named("gantry-batch-dead-letters")
    for q in (main, dead):
        assert q.inputs["sqsManagedSseEnabled"] is True
    redrive = json.loads(main.inputs["redrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dead.outputs["arn"], "maxReceiveCount": queue["maxReceives"]}
    assert main.inputs["messageRetentionSeconds"] == queue["retentionDays"] * 86400
    assert dead.inputs["messageRetentionSeconds"] > main.inputs["messageRetentionSeconds"]
    allow = json.loads(graph.named("gantry-batch-dead-letters-sources").inputs["redriveAllowPolicy"])
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [main.outputs["arn"]]}
    for role, q in (("queue", main), ("dead-letters", dead)):
        policy = graph.named(f"gantry-batch-{role}-tls-only")
        assert policy.inputs["queueUrl"] == q.outputs["url"]
        (deny,) = policy.json("policy")["Statement"]
        assert deny["Resource"] == [q.outputs["arn"]] and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_the_table_has_the_store_s_key_schema_and_point_in_time_recovery(graph):
    table = graph.named("gantry-batch-records").inputs
    store = (ROOT / "app" / "worker" / "batch_store.py").read_text()
    # The keys batch_store.py addresses every record by.
    assert re.findall(r'Key=\{"(\w+)": tenant, "(\w+)": record_id\}', store)[0] == ("tenant", "id")
    assert (table["hashKey"], table["rangeKey"]) == ("tenant", "id")
    assert sorted((a["name"], a["type"]) for a in table["attributes"]) == [("id", "S"), ("tenant", "S")]
    assert table["billingMode"] == "PAY_PER_REQUEST"
    assert table["pointInTimeRecovery"] == {"enabled": True}


# ---- alarms for the operations topics ------------------------------------------------------------------


def test_the_operations_alarms_watch_this_queue_and_stay_quiet_when_idle(graph, stack):
    queue = queue_settings(stack)
    oldest = graph.named("gantry-batch-oldest-batch-alarm").inputs
    dead = graph.named("gantry-batch-dead-letters-alarm").inputs
    assert oldest["dimensions"] == {"QueueName": graph.named("gantry-batch-queue").outputs["name"]}
    assert oldest["threshold"] == queue["acceptableQueueLatencySeconds"] + queue["secondsPerJob"]
    assert dead["dimensions"] == {"QueueName": graph.named("gantry-batch-dead-letters").outputs["name"]}
    assert (dead["metricName"], dead["comparisonOperator"], dead["threshold"]) == (
        "ApproximateNumberOfMessagesVisible",
        "GreaterThanThreshold",
        0,
    )
    ticket = graph.named("gantry-alerts-ticket").outputs["arn"]
    for alarm in (oldest, dead):
        assert alarm["treatMissingData"] == "notBreaching"
        # Late or dead-lettered batches are not user-facing outages: a ticket, on alarm and on recovery.
        assert alarm["alarmActions"] == alarm["okActions"] == [ticket]
    prefix = "gantry-prod" if stack == PROD_WITH_QUEUE else "gantry-dev"
    assert graph.exports["batchAlarmNames"] == {
        "oldest-batch": f"{prefix}-batch-oldest",
        "dead-letters": f"{prefix}-batch-dead-letters",
    }


def test_without_a_queue_nothing_of_it_exists():
    graph = run_program("prod")
    assert not [r.name for r in graph.resources if r.name.startswith("gantry-batch-") or r.name == "gantry-sg-consumer"]
    env = environment(container(graph, "gantry-task"))
    assert not {"QUEUE_URL", "BATCH_BUCKET", "BATCH_TABLE"} & set(env)
    assert "gantry-roles-task-batch" not in [p.name for p in graph.of_type(POLICY)]
    assert graph.exports["batchAlarmNames"] == {}
