"""IAM, S3 and ECR policy documents as pure functions of plain strings.

Components call these inside `Output.all(...).apply(...)` and json-encode the result, so every
document can be tested on its own, and the tests see exactly what AWS will see. Security stance:
every Allow names exact resource ARNs; the single `*` is `ecr:GetAuthorizationToken`, which accepts
nothing else. Trust policies pin the calling service to this account's resources against the
confused-deputy problem wherever AWS documents that the service sends that context (the task role,
flow logs), and use AWS's documented trust where it does not (the execution role). No AWS managed
policies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from components.contract import deny_insecure_transport as deny_insecure_transport
from components.contract import tls_only_bucket_statement as tls_only_bucket_statement
from components.settings import PolicyStatement

if TYPE_CHECKING:
    from components.env import AwsEnv

VERSION = "2012-10-17"

# Elastic Load Balancing's log-delivery account per region, for regions opened before August 2022
# (AWS "Enable access logs for your Application Load Balancer"). Newer regions deliver as the
# logdelivery.elasticloadbalancing.amazonaws.com service principal instead.
ELB_LOG_DELIVERY_ACCOUNTS: Mapping[str, str] = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580",
    "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-south-1": "635631232127",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584",
    "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993",
    "cn-northwest-1": "037604701340",
}

ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def _dns_suffix(partition: str) -> str:
    return "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"


def service_trust_policy(*, sid: str, service: str, account_id: str, source_arn: str | None = None) -> dict[str, Any]:
    """Let one AWS service assume a role, only on behalf of this account (and, with `source_arn`, only
    for this account's resources matching it), against the confused-deputy problem."""
    condition: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": account_id}}
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": condition,
            }
        ],
    }


def ecs_task_role_trust_policy(env: AwsEnv) -> dict[str, Any]:
    """Who may assume the task role: ECS tasks of this account, in this region.

    AWS documents the confused-deputy conditions for the task role: "Task IAM role", trust policy with
    `aws:SourceArn` arn:aws:ecs:<region>:<account>:* and `aws:SourceAccount`
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html)."""
    return service_trust_policy(
        sid="EcsTasksOfThisAccount",
        service="ecs-tasks.amazonaws.com",
        source_arn=env.arn("ecs", "*"),
        account_id=env.account_id,
    )


def ecs_execution_role_trust_policy() -> dict[str, Any]:
    """Who may assume the execution role: the ECS and Fargate agents, with the trust AWS documents.

    "Amazon ECS task execution IAM role" shows only the ecs-tasks.amazonaws.com principal, no
    SourceArn/SourceAccount conditions
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html): the
    agent does not promise that context when it assumes this role, and a condition it does not send
    would stop every task from starting. The role is safe unconditioned because only this account's
    task definitions can name it, and it can do nothing but pull one image, write one log group and
    read the declared secrets."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "EcsAgentStartsTasks",
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def log_stream_resources(log_group_arn: str) -> list[str]:
    """The log group and its streams: CreateLogStream is checked on the group, PutLogEvents on a stream."""
    return [log_group_arn, f"{log_group_arn}:log-stream:*"]


def execution_role_policy(
    env: AwsEnv,
    *,
    repository_arn: str,
    log_group_arn: str,
    secret_arns: Sequence[str],
    ssm_parameter_arns: Sequence[str],
    kms_key_arns: Sequence[str],
) -> dict[str, Any]:
    """What ECS needs to start the task: pull one image, write one log group, read the declared secrets."""
    statements: list[dict[str, Any]] = [
        {
            # GetAuthorizationToken is account-wide by design: it supports no resource-level scoping.
            "Sid": "EcrAuthorizationToken",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {"Sid": "PullServiceImage", "Effect": "Allow", "Action": list(ECR_PULL_ACTIONS), "Resource": repository_arn},
        {
            "Sid": "WriteServiceLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_stream_resources(log_group_arn),
        },
    ]
    if secret_arns:
        statements.append(
            {
                "Sid": "ReadDeclaredSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": sorted(secret_arns),
            }
        )
    if ssm_parameter_arns:
        statements.append(
            {
                "Sid": "ReadDeclaredParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": sorted(ssm_parameter_arns),
            }
        )
    if kms_key_arns:
        suffix, region = _dns_suffix(env.partition), env.region
        statements.append(
            {
                "Sid": "DecryptDeclaredSecrets",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": sorted(set(kms_key_arns)),
                # Only on behalf of the secret stores: the role cannot decrypt arbitrary ciphertext.
                "Condition": {
                    "StringEquals": {"kms:ViaService": [f"secretsmanager.{region}.{suffix}", f"ssm.{region}.{suffix}"]}
                },
            }
        )
    return {"Version": VERSION, "Statement": statements}


def task_role_policy(statements: Sequence[PolicyStatement]) -> dict[str, Any] | None:
    """The application's own AWS permissions, exactly as declared in config; None when it declares none."""
    if not statements:
        return None
    return {
        "Version": VERSION,
        "Statement": [
            {"Sid": s.sid, "Effect": "Allow", "Action": list(s.actions), "Resource": list(s.resources)}
            for s in statements
        ],
    }


def flow_logs_trust_policy(env: AwsEnv) -> dict[str, Any]:
    """Who may assume the flow-log role: VPC Flow Logs, for this account's flow logs in this region
    (conditions as AWS documents them in "IAM role for publishing flow logs to CloudWatch Logs")."""
    return service_trust_policy(
        sid="VpcFlowLogsOfThisAccount",
        service="vpc-flow-logs.amazonaws.com",
        source_arn=env.arn("ec2", "vpc-flow-log/*"),
        account_id=env.account_id,
    )


def flow_logs_policy(env: AwsEnv, *, log_group_arn: str) -> dict[str, Any]:
    """Write one log group; DescribeLogGroups, which the delivery service also calls, lists and so takes
    the account's log-group pattern (it reads names, never log data)."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "DeliverFlowLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": log_stream_resources(log_group_arn),
            },
            {
                "Sid": "FindFlowLogGroup",
                "Effect": "Allow",
                "Action": "logs:DescribeLogGroups",
                "Resource": env.arn("logs", "log-group:*"),
            },
        ],
    }


def alb_access_log_bucket_policy(env: AwsEnv, *, bucket_arn: str, prefix: str) -> dict[str, Any]:
    """Lets this account's load balancers write access logs under `prefix`, and refuses plain HTTP."""
    region, partition, account_id = env.region, env.partition, env.account_id
    if region in ELB_LOG_DELIVERY_ACCOUNTS:
        principal: dict[str, str] = {"AWS": f"arn:{partition}:iam::{ELB_LOG_DELIVERY_ACCOUNTS[region]}:root"}
    else:
        principal = {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AlbAccessLogDelivery",
                "Effect": "Allow",
                "Principal": principal,
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/{prefix}/AWSLogs/{account_id}/*",
            },
            tls_only_bucket_statement(bucket_arn),
        ],
    }


def cloudfront_log_bucket_policy(env: AwsEnv, *, bucket_arn: str, delivery_region: str) -> dict[str, Any]:
    """Lets CloudWatch Logs' vended-log delivery (CloudFront standard logging v2) write this account's
    CloudFront access logs, and refuses plain HTTP. The form the CloudWatch Logs User Guide gives for
    logs sent to Amazon S3 ("Enable logging from AWS services", https://docs.aws.amazon.com/AmazonCloudWatch/
    latest/logs/AWS-logs-and-resource-policy.html#AWS-logs-infrastructure-V2-S3): the service principal
    delivery.logs.amazonaws.com, s3:PutObject under AWSLogs/<account>/ with the bucket-owner-full-control
    ACL, conditioned on this account and on its delivery sources in the region that delivers (us-east-1
    for CloudFront), so no other account's or service's delivery can write here. No ACL is granted or
    needed (unlike legacy standard logging's awslogsdelivery account): ownership stays BucketOwnerEnforced."""
    source_arn = f"arn:{env.partition}:logs:{delivery_region}:{env.account_id}:delivery-source:*"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "AWSLogDeliveryWrite",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/AWSLogs/{env.account_id}/*",
                "Condition": {
                    "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": env.account_id},
                    "ArnLike": {"aws:SourceArn": source_arn},
                },
            },
            tls_only_bucket_statement(bucket_arn),
        ],
    }


def ecr_lifecycle_policy(
    keep_images: int,
    *,
    keep_run_images: int,
    run_tag_prefix: str,
    keep_evaluated_images: int,
    evaluated_tag_prefix: str,
) -> dict[str, Any]:
    """Keep the images stacks run, the images an eval gate passed, and the newest `keep_images` of the rest.

    Rule 1 selects the images a promoting stack tagged when it deployed them (`components.image_tag`)
    and expires them only past the newest `keep_run_images` of them. Rule 2 selects the images a deploy
    run's dev job marked evaluated (`scripts/ci/mark_evaluated.py`), which that run's prod job may still
    promote while it waits for approval or is re-run, and expires them only past the newest
    `keep_evaluated_images` of them: without it, pushes whose eval failed (or a burst of commits) would
    count a waiting run's image out of the keep-N rule. Rule 3 counts every image and expires all but the
    newest `keep_images`, but none that rule 1 or 2 selects. The ECR User Guide's rules this relies on
    ("Lifecycle policy evaluation rules" and "Lifecycle policy properties",
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html and
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html): "An image
    that matches the tagging requirements of a higher priority rule cannot be expired by a rule with a
    lower priority"; each rule has a unique rulePriority and a rule with tagStatus any "must have the
    highest value for rulePriority and be evaluated last" (so the any rule moved from 2 to 3 when the
    evaluated rule came in between: priorities are integers, and none lies between 1 and 2); a tagged
    rule needs a tagPrefixList or a tagPatternList, not both, and the rules' tag prefixes must be
    unique. A tagPrefixList matches an image when every listed prefix matches one of its tags. Rules are
    listed in ascending priority, the order ECR returns them in (pulumi-aws's LifecyclePolicy notes that
    another order shows a change on every `up`). A count, not an age: an age rule would also expire dev's
    running image (its newest evaluated push) in a repository that sees no push for that long."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"Keep the newest {keep_run_images} images a stack deployed ({run_tag_prefix}*)",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [run_tag_prefix],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_run_images,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": (
                    f"Keep the newest {keep_evaluated_images} images an eval gate passed ({evaluated_tag_prefix}*)"
                ),
                "selection": {
                    "tagStatus": "tagged",
                    "tagPrefixList": [evaluated_tag_prefix],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_evaluated_images,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 3,
                "description": f"Keep the newest {keep_images} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
                "action": {"type": "expire"},
            },
        ]
    }


# The Batch API's AWS calls, per command, as IAM actions on its three resources: the single source of
# truth for both task roles and app/README.md's "AWS permissions" table (a test holds them equal, and
# holds every call worker/batch_store.py makes to one of them). Multipart uploads (the consumer
# assembles output files with upload_fileobj) are authorised as s3:PutObject, except their abort.
BATCH_API_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "queue": ("sqs:SendMessage",),
    # Delete: `DELETE /v1/files/{id}`; Query: the tenant-scoped `GET /v1/files` and `GET /v1/batches` pages
    # (one Query on the tenant's partition, never a Scan of the table).
    "objects": ("s3:DeleteObject", "s3:GetObject", "s3:PutObject"),
    "table": ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
}
BATCH_CONSUMER_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "queue": ("sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage", "sqs:SendMessage"),
    "objects": ("s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"),
    "table": ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
}


def batch_task_policy(
    actions: Mapping[str, Sequence[str]], *, queue_arn: str, bucket_arn: str, prefix: str, table_arn: str
) -> dict[str, Any]:
    """A Batch API command's task-role policy: its actions on this stack's queue, the batch prefix of its
    bucket and its table, and nothing else (no wildcard resource, no other queue, bucket or table)."""
    resources = {"queue": queue_arn, "objects": f"{bucket_arn}/{prefix}*", "table": table_arn}
    sids = {"queue": "BatchQueue", "objects": "BatchFiles", "table": "BatchRecords"}
    return {
        "Version": VERSION,
        "Statement": [
            {"Sid": sids[kind], "Effect": "Allow", "Action": sorted(actions[kind]), "Resource": resources[kind]}
            for kind in ("queue", "objects", "table")
        ],
    }


def batch_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    """The batch bucket admits TLS only; access itself is granted by the task roles, never by the bucket."""
    return {
        "Version": VERSION,
        "Statement": [tls_only_bucket_statement(bucket_arn)],
    }


def tls_only_queue_policy(queue_arn: str) -> dict[str, Any]:
    """A queue admits TLS only (SQS honours aws:SecureTransport in queue policies like S3 does)."""
    return {"Version": VERSION, "Statement": [deny_insecure_transport(resources=[queue_arn], action="sqs:*")]}
