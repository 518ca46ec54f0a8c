"""Pure tests of components/policies.py with concrete ARNs.

The tests walk each document's statements and assert properties (which actions reach which
resources, which principal, which conditions), not whole-document equality, so a harmless reordering
passes and a widened grant fails. Wildcard patterns in ARNs are checked the way IAM evaluates them
(fnmatch: `*` matches any run of characters), against ARNs that must and must not match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

import pytest

from components import policies
from components.env import AwsEnv
from components.settings import PolicyStatement

ACCOUNT = "210987654321"
OTHER_ACCOUNT = "999988887777"
REGION = "eu-west-1"
REPO = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/gantry-image-repo"
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/gantry-dev"
SECRET_A = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry-api-keys-Ab12Cd"
SECRET_B = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gantry/upstream-token-Zy98Xw"
PARAM = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/gantry/model-endpoint"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "arn:aws:s3:::gantry-lb-access-logs-bucket"


def aws_env(region: str = REGION, partition: str = "aws") -> AwsEnv:
    return AwsEnv(account_id=ACCOUNT, region=region, partition=partition, stack="dev")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(document: dict[str, Any], effect: str = "Allow") -> list[tuple[frozenset[str], tuple[str, ...]]]:
    """(actions, resources) of each statement with `effect`; refuses the Not* forms outright."""
    out = []
    for statement in document["Statement"]:
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement
        if statement["Effect"] == effect:
            out.append((frozenset(as_list(statement["Action"])), tuple(as_list(statement["Resource"]))))
    return out


def resources_for(document: dict[str, Any], action: str) -> set[str]:
    """Every resource the document allows `action` on."""
    return {r for actions, resources in grants(document) if action in actions for r in resources}


def statements_with(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if action in as_list(s["Action"])]


def all_actions(document: dict[str, Any]) -> set[str]:
    return {a for actions, _ in grants(document) for a in actions}


def assert_well_formed(document: dict[str, Any]) -> None:
    """What IAM itself would refuse or what a json-encoding component would choke on."""
    assert document["Version"] == "2012-10-17"
    assert document["Statement"]
    sids = [s.get("Sid") for s in document["Statement"] if "Sid" in s]
    assert len(sids) == len(set(sids)), f"duplicate Sid in {sids}"
    json.dumps(document)


def execution(
    *,
    secret_arns: Iterable[str] = (),
    ssm_parameter_arns: Iterable[str] = (),
    kms_key_arns: Iterable[str] = (),
    region: str = REGION,
    partition: str = "aws",
) -> dict[str, Any]:
    document = policies.execution_role_policy(
        aws_env(region, partition),
        repository_arn=REPO,
        log_group_arn=LOG_GROUP,
        secret_arns=list(secret_arns),
        ssm_parameter_arns=list(ssm_parameter_arns),
        kms_key_arns=list(kms_key_arns),
    )
    assert_well_formed(document)
    return document


FULL: dict[str, Any] = dict(
    secret_arns=[SECRET_B, SECRET_A], ssm_parameter_arns=[PARAM], kms_key_arns=[KMS_KEY, KMS_KEY]
)


# --------------------------------------------------------------------------------------------------
# Execution role.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [{}, FULL], ids=["minimal", "secrets-params-kms"])
def test_execution_policy_single_star_is_only_get_authorization_token(variant):
    document = execution(**variant)
    starred = [(actions, resources) for actions, resources in grants(document) if "*" in resources]
    assert starred == [(frozenset({"ecr:GetAuthorizationToken"}), ("*",))]
    assert resources_for(document, "ecr:GetAuthorizationToken") == {"*"}
    # No wildcard actions anywhere, and every other resource is a concrete ARN in this account.
    assert not any("*" in a for a in all_actions(document))
    others = {r for actions, resources in grants(document) if "*" not in resources for r in resources}
    assert all(r.startswith("arn:aws:") and f":{ACCOUNT}:" in r for r in others), others
    assert grants(document, "Deny") == []


def test_execution_policy_pulls_only_the_one_repository():
    document = execution(**FULL)
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert resources_for(document, action) == {REPO}, action
    ecr_actions = {a for a in all_actions(document) if a.startswith("ecr:")}
    # Pull only: nothing that could push, delete or retag images.
    assert ecr_actions == {
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }


def test_execution_policy_writes_only_its_log_group_and_streams():
    document = execution(**FULL)
    expected = {LOG_GROUP, f"{LOG_GROUP}:log-stream:*"}
    assert resources_for(document, "logs:CreateLogStream") == expected
    assert resources_for(document, "logs:PutLogEvents") == expected
    assert {a for a in all_actions(document) if a.startswith("logs:")} == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_log_stream_resources_match_this_groups_streams_only():
    patterns = policies.log_stream_resources(LOG_GROUP)
    assert LOG_GROUP in patterns

    def allowed(arn: str) -> bool:
        return any(fnmatchcase(arn, p) for p in patterns)

    assert allowed(f"{LOG_GROUP}:log-stream:gantry/app/0f1e2d3c4b5a")
    # A sibling group whose name merely starts with ours must not be writable.
    assert not allowed(f"{LOG_GROUP}-other:log-stream:x")
    assert not allowed(f"{LOG_GROUP}-other")
    assert not allowed(LOG_GROUP.replace(ACCOUNT, OTHER_ACCOUNT) + ":log-stream:x")


def test_execution_policy_reads_exactly_the_declared_secrets():
    document = execution(**FULL)
    assert resources_for(document, "secretsmanager:GetSecretValue") == {SECRET_A, SECRET_B}
    assert resources_for(document, "ssm:GetParameters") == {PARAM}
    secret_actions = {a for a in all_actions(document) if a.split(":")[0] in ("secretsmanager", "ssm")}
    assert secret_actions == {"secretsmanager:GetSecretValue", "ssm:GetParameters"}


def test_execution_policy_has_no_secret_statements_without_secrets():
    document = execution()
    assert not {a for a in all_actions(document) if a.split(":")[0] in ("secretsmanager", "ssm", "kms")}
    assert len(document["Statement"]) == 3


def test_execution_policy_secrets_only_or_params_only():
    only_secrets = execution(secret_arns=[SECRET_A])
    assert resources_for(only_secrets, "secretsmanager:GetSecretValue") == {SECRET_A}
    assert not statements_with(only_secrets, "ssm:GetParameters")
    only_params = execution(ssm_parameter_arns=[PARAM])
    assert resources_for(only_params, "ssm:GetParameters") == {PARAM}
    assert not statements_with(only_params, "secretsmanager:GetSecretValue")


def test_kms_decrypt_only_with_a_customer_key():
    assert not statements_with(execution(secret_arns=[SECRET_A]), "kms:Decrypt")
    document = execution(**FULL)
    (statement,) = statements_with(document, "kms:Decrypt")
    assert as_list(statement["Resource"]) == [KMS_KEY]  # deduplicated, never "*"
    assert as_list(statement["Action"]) == ["kms:Decrypt"]


@pytest.mark.parametrize(
    "region, partition, suffix",
    [
        ("eu-west-1", "aws", "amazonaws.com"),
        ("us-east-2", "aws", "amazonaws.com"),
        ("us-gov-west-1", "aws-us-gov", "amazonaws.com"),
        ("cn-north-1", "aws-cn", "amazonaws.com.cn"),
    ],
)
def test_kms_decrypt_only_via_the_secret_stores_of_this_region(region, partition, suffix):
    document = execution(secret_arns=[SECRET_A], kms_key_arns=[KMS_KEY], region=region, partition=partition)
    (statement,) = statements_with(document, "kms:Decrypt")
    via = set(as_list(statement["Condition"]["StringEquals"]["kms:ViaService"]))
    assert via == {f"secretsmanager.{region}.{suffix}", f"ssm.{region}.{suffix}"}


# --------------------------------------------------------------------------------------------------
# Trust policies.
# --------------------------------------------------------------------------------------------------

TRUST_CASES = [
    ("eu-west-1", "aws"),
    ("us-gov-west-1", "aws-us-gov"),
]


def _only_trust_statement(document: dict[str, Any]) -> dict[str, Any]:
    assert_well_formed(document)
    (statement,) = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    return statement


@pytest.mark.parametrize("region, partition", TRUST_CASES)
def test_task_role_trust_is_pinned_to_this_account_and_region(region, partition):
    statement = _only_trust_statement(policies.ecs_task_role_trust_policy(aws_env(region, partition)))
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    source_arn = condition["ArnLike"]["aws:SourceArn"]
    assert fnmatchcase(f"arn:{partition}:ecs:{region}:{ACCOUNT}:task/gantry-dev/0f1e2d3c4b5a", source_arn)
    # The confused deputy: another account's (or region's, or service's) tasks must not match.
    assert not fnmatchcase(f"arn:{partition}:ecs:{region}:{OTHER_ACCOUNT}:task/gantry-dev/0f1e", source_arn)
    assert not fnmatchcase(f"arn:{partition}:ecs:ap-south-1:{ACCOUNT}:task/gantry-dev/0f1e", source_arn)
    assert not fnmatchcase(f"arn:{partition}:ec2:{region}:{ACCOUNT}:instance/i-0f1e", source_arn)


def test_execution_role_trust_is_the_one_aws_documents():
    # No SourceArn/SourceAccount: AWS documents none for the execution role, and a condition the
    # agent does not satisfy would keep every task from starting.
    statement = _only_trust_statement(policies.ecs_execution_role_trust_policy())
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert "Condition" not in statement


@pytest.mark.parametrize("region, partition", TRUST_CASES)
def test_flow_logs_trust_is_pinned_to_this_accounts_flow_logs(region, partition):
    statement = _only_trust_statement(policies.flow_logs_trust_policy(aws_env(region, partition)))
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == ACCOUNT
    source_arn = condition["ArnLike"]["aws:SourceArn"]
    assert fnmatchcase(f"arn:{partition}:ec2:{region}:{ACCOUNT}:vpc-flow-log/fl-0123456789abcdef0", source_arn)
    assert not fnmatchcase(f"arn:{partition}:ec2:{region}:{OTHER_ACCOUNT}:vpc-flow-log/fl-0123", source_arn)
    assert not fnmatchcase(f"arn:{partition}:ec2:{region}:{ACCOUNT}:instance/i-0123", source_arn)


def test_flow_logs_policy_writes_only_its_log_group():
    document = policies.flow_logs_policy(aws_env(), log_group_arn=LOG_GROUP)
    assert_well_formed(document)
    expected = {LOG_GROUP, f"{LOG_GROUP}:log-stream:*"}
    for action in all_actions(document) - {"logs:DescribeLogGroups"}:
        assert action.startswith("logs:") and "*" not in action
        assert resources_for(document, action) == expected
    assert {"logs:CreateLogStream", "logs:PutLogEvents"} <= all_actions(document)
    # The one list call is confined to this account's log groups in this region.
    assert resources_for(document, "logs:DescribeLogGroups") == {f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}


# --------------------------------------------------------------------------------------------------
# Task role.
# --------------------------------------------------------------------------------------------------


def test_task_role_policy_is_none_without_statements():
    assert policies.task_role_policy([]) is None
    assert policies.task_role_policy(()) is None


def test_task_role_policy_grants_exactly_what_config_declares():
    models = "arn:aws:s3:::gantry-models/*"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:gantry-jobs"
    document = policies.task_role_policy(
        [
            PolicyStatement(sid="ReadModels", actions=("s3:GetObject",), resources=(models,)),
            PolicyStatement(sid="Jobs", actions=("sqs:ReceiveMessage", "sqs:DeleteMessage"), resources=(queue,)),
        ]
    )
    assert document is not None
    assert_well_formed(document)
    assert sorted(s["Sid"] for s in document["Statement"]) == ["Jobs", "ReadModels"]
    assert all(s["Effect"] == "Allow" for s in document["Statement"])
    assert resources_for(document, "s3:GetObject") == {models}
    assert resources_for(document, "sqs:ReceiveMessage") == {queue}
    assert resources_for(document, "sqs:DeleteMessage") == {queue}
    # Nothing added on the side (no logs, no ECR, no wildcard).
    assert all_actions(document) == {"s3:GetObject", "sqs:ReceiveMessage", "sqs:DeleteMessage"}


# --------------------------------------------------------------------------------------------------
# ALB access-log bucket.
# --------------------------------------------------------------------------------------------------


def bucket_policy(region: str, partition: str = "aws", bucket: str = BUCKET) -> dict[str, Any]:
    document = policies.alb_access_log_bucket_policy(aws_env(region, partition), bucket_arn=bucket, prefix="alb")
    assert_well_formed(document)
    return document


def _delivery_statement(document: dict[str, Any]) -> dict[str, Any]:
    (statement,) = [s for s in document["Statement"] if s["Effect"] == "Allow"]
    return statement


@pytest.mark.parametrize(
    "region, partition, elb_account",
    [
        ("us-east-1", "aws", "127311923021"),
        ("eu-west-1", "aws", "156460612806"),
        ("us-gov-west-1", "aws-us-gov", "048591011584"),
    ],
)
def test_alb_logs_from_the_regional_elb_account_in_older_regions(region, partition, elb_account):
    statement = _delivery_statement(bucket_policy(region, partition))
    assert statement["Principal"] == {"AWS": f"arn:{partition}:iam::{elb_account}:root"}


@pytest.mark.parametrize("region", ["eu-central-2", "ap-south-2", "me-central-1"])
def test_alb_logs_from_the_log_delivery_service_in_newer_regions(region):
    statement = _delivery_statement(bucket_policy(region))
    assert statement["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}


def test_elb_log_delivery_accounts_are_distinct_account_ids():
    accounts = list(policies.ELB_LOG_DELIVERY_ACCOUNTS.values())
    assert all(len(a) == 12 and a.isdigit() for a in accounts)
    assert len(set(accounts)) == len(accounts)


@pytest.mark.parametrize("region", ["eu-west-1", "eu-central-2"])
def test_alb_log_delivery_may_only_put_objects_under_this_accounts_prefix(region):
    document = bucket_policy(region)
    assert grants(document) == [(frozenset({"s3:PutObject"}), (f"{BUCKET}/alb/AWSLogs/{ACCOUNT}/*",))]
    (_, (pattern,)) = grants(document)[0]
    assert fnmatchcase(f"{BUCKET}/alb/AWSLogs/{ACCOUNT}/elasticloadbalancing/{region}/2025/01/01/x.log.gz", pattern)
    assert not fnmatchcase(f"{BUCKET}/alb/AWSLogs/{OTHER_ACCOUNT}/elasticloadbalancing/x.log.gz", pattern)
    assert not fnmatchcase(f"{BUCKET}/other/AWSLogs/{ACCOUNT}/x.log.gz", pattern)


@pytest.mark.parametrize("region", ["eu-west-1", "eu-central-2"])
def test_alb_log_bucket_denies_plain_http_for_everything(region):
    document = bucket_policy(region)
    (deny,) = [s for s in document["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*"
    assert as_list(deny["Action"]) == ["s3:*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resources = as_list(deny["Resource"])
    # The bucket itself and every object in it, including the delivery prefix.
    assert BUCKET in resources
    assert any(fnmatchcase(f"{BUCKET}/alb/AWSLogs/{ACCOUNT}/x.log.gz", r) for r in resources)
    assert any(fnmatchcase(f"{BUCKET}/top-level-object", r) for r in resources)


# --------------------------------------------------------------------------------------------------
# ECR lifecycle.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 20, 50])
def test_ecr_lifecycle_expires_all_but_the_newest_n(keep: int):
    document = policies.ecr_lifecycle_policy(
        keep, keep_run_images=100, run_tag_prefix="run-", keep_evaluated_images=40, evaluated_tag_prefix="evaluated-"
    )
    json.dumps(document)
    run_rule, evaluated_rule, rule = document["rules"]
    # Images stacks run, then images an eval passed, are selected first, so the keep-N rule cannot expire
    # them (tests/test_image_retention.py).
    assert run_rule["rulePriority"] < evaluated_rule["rulePriority"] < rule["rulePriority"]
    assert run_rule["selection"]["tagPrefixList"] == ["run-"] and run_rule["selection"]["countNumber"] == 100
    assert evaluated_rule["selection"]["tagPrefixList"] == ["evaluated-"]
    assert evaluated_rule["selection"]["countNumber"] == 40
    assert rule["selection"]["countType"] == "imageCountMoreThan"
    assert rule["selection"]["countNumber"] == keep
    # "any": untagged layers from superseded builds are expired too, not kept forever.
    assert rule["selection"]["tagStatus"] == "any"
    assert rule["action"] == {"type": "expire"}


# --------------------------------------------------------------------------------------------------
# CloudFront standard logging (v2) bucket.
# --------------------------------------------------------------------------------------------------


def test_cloudfront_log_bucket_admits_only_this_account_s_us_east_1_log_delivery():
    bucket = "arn:aws:s3:::gantry-edge-access-logs-1234"
    document = policies.cloudfront_log_bucket_policy(aws_env(), bucket_arn=bucket, delivery_region="us-east-1")
    write, deny = document["Statement"]
    assert write["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    # Where vended-log delivery writes CloudFront's logs: AWSLogs/<account>/CloudFront/... (the prefix
    # AWS prepends to any suffix path), and nowhere else in the bucket.
    assert fnmatchcase(f"{bucket}/AWSLogs/{ACCOUNT}/CloudFront/E123/2026/12/07/log.gz", write["Resource"])
    assert not fnmatchcase(f"{bucket}/AWSLogs/111122223333/CloudFront/x.gz", write["Resource"])
    assert not fnmatchcase(f"{bucket}/other.txt", write["Resource"])
    condition = write["Condition"]
    assert condition["StringEquals"] == {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": ACCOUNT}
    assert condition["ArnLike"] == {"aws:SourceArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:delivery-source:*"}
    assert deny == policies.deny_insecure_transport(resources=[bucket, f"{bucket}/*"], action="s3:*")
