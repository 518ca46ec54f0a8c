"""IAM, S3 and KMS documents of the bootstrap, as pure functions of plain strings.

Who may become a delivery role (GitHub OIDC trust with exact `sub` and `aud`), what each role may do, and
the permissions boundary every role gantry creates must carry. Security stance: the deploy roles can
create and change IAM roles only under gantry's path (`/gantry/`) and only with the boundary attached
(`iam:PermissionsBoundary`), can pass those roles only to the services gantry's roles are for
(`iam:PassedToService`), and are explicitly denied every IAM action on the delivery roles themselves and
every action but reading it on the boundary policy (the program checks it exists before creating a role),
so a deploy can never grant itself more. Trust policies may be written only on roles under `/gantry/`
(IAM cannot read their content; the policy pack's trusted-service-principals rule does). KMS keys are
created and administered only with the program tag (`gantry-key=program`); the bootstrap's own keys
(tagged `bootstrap`) are denied every administrative action by ARN and by tag. Each environment's roles
decrypt only that environment's stack secrets, and a deploy role writes only its own stack's state
objects. Roles under the boundary read only gantry's secrets and parameters. Everything else is scoped to
this account and region and, wherever the service supports it, to names starting with the resource prefix.
The `*` resources are those AWS forces (the action supports no resource-level permission), listed in
STAR_ACTIONS with the reason, and tested to be the only ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The names the program must match, declared once in the contract both projects import (re-exported here
# for the bootstrap's own modules and tests).
from components.contract import BOUNDARY_POLICY_NAME as BOUNDARY_POLICY_NAME
from components.contract import DELIVERY_ROLE_PATH as DELIVERY_ROLE_PATH
from components.contract import PROGRAM_KEY_TAG as PROGRAM_KEY_TAG
from components.contract import PROGRAM_KEY_TAG_VALUE as PROGRAM_KEY_TAG_VALUE
from components.contract import PROGRAM_PREFIX as PROGRAM_PREFIX
from components.contract import WORKLOAD_ROLE_PATH as WORKLOAD_ROLE_PATH
from components.contract import tls_only_bucket_statement

VERSION = "2012-10-17"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The audience aws-actions/configure-aws-credentials requests, as GitHub documents for AWS
# (https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/configuring-openid-connect-in-amazon-web-services).
GITHUB_AUDIENCE = "sts.amazonaws.com"
# The same tag on every key of the bootstrap (state.py): a second, ARN-independent deny. IAM cannot tell
# CreateKey's tagging from a TagResource on an existing key that has no `gantry-key` tag (KMS requires
# kms:TagResource over every key of the account and Region to tag on create, "Controlling access to tags",
# https://docs.aws.amazon.com/kms/latest/developerguide/tag-permissions.html), so a key that must never be
# claimed carries the tag with any value but `program`, as the bootstrap's do.
BOOTSTRAP_KEY_TAG_VALUE = "bootstrap"
# What no delivery role may do to the bootstrap's own keys (state, secrets): change who may use them, stop
# or delete them, re-tag them into the program's scope, or grant them away.
BOOTSTRAP_KEY_GUARDED = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:DeleteAlias",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:PutKeyPolicy",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)

# The services gantry's own roles are for: ECS tasks (execution and task roles), VPC Flow Logs, CodeDeploy
# (blue/green) and Lambda (the validation hook). PassRole to anything else is refused.
WORKLOAD_SERVICES = (
    "codedeploy.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "lambda.amazonaws.com",
    "vpc-flow-logs.amazonaws.com",
)
# What the program reads of the permissions boundary (IAM GetPolicy, in `pulumi preview`): that it exists.
BOUNDARY_READS = ("iam:GetPolicy", "iam:GetPolicyVersion")
# Service-linked roles AWS creates on first use of ECS, ELB and ECS autoscaling in an account.
SERVICE_LINKED = (
    "ecs.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
)

# Actions granted on Resource "*" and why (Service Authorization Reference: no resource types, or a
# resource whose identifier cannot exist before the call). Tests check no other action gets "*".
STAR_ACTIONS: dict[str, str] = {
    "ecr:GetAuthorizationToken": "account-wide registry token; supports no resource",
    "ecs:RegisterTaskDefinition": "the revision's ARN does not exist before the call",
    "ecs:DeregisterTaskDefinition": "listed without resource types",
    "ecs:DescribeTaskDefinition": "listed without resource types",
    "ecs:CreateCluster": "checked on '*' (the cluster does not exist yet); names are not a condition key",
    "ecs:ListClusters": "list call",
    "ecs:ListTaskDefinitions": "list call",
    "ecs:DescribeCapacityProviders": "describe call used for FARGATE/FARGATE_SPOT",
    "ec2:Describe*": "EC2 describe calls support no resource-level permissions",
    "elasticloadbalancing:Describe*": "ELB describe calls support no resource-level permissions",
    "logs:DescribeLogGroups": "list call over the account's log groups",
    "secretsmanager:ListSecrets": "list call",
    "acm:RequestCertificate": "the certificate ARN does not exist before the call",
    "acm:ListCertificates": "list call",
    "route53:ListHostedZones": "list call",
    "route53:GetChange": "change ids are not known in advance",
    "application-autoscaling:Describe*": "describe calls support no resource-level permissions",
    "cloudwatch:DescribeAlarms": "called without alarm names by the provider's refresh",
    "codedeploy:ListApplications": "list call",
    "codedeploy:ListDeploymentConfigs": "list call",
    "lambda:ListFunctions": "list call",
    "iam:ListRoles": "list call",
    "iam:ListPolicies": "list call",
    "kms:ListAliases": "list call",
    "ecr:DescribeRegistry": "registry-wide call",
    "s3:ListAllMyBuckets": "list call",
    "kms:CreateKey": "the key's ARN does not exist before the call",
    "logs:PutResourcePolicy": "account-wide resource policies (the WAF's log delivery) have no ARN",
    "logs:DeleteResourcePolicy": "account-wide resource policies have no ARN",
    "logs:DescribeResourcePolicies": "list call",
    "route53:CreateHealthCheck": "the health check's id does not exist before the call",
    "xray:PutTraceSegments": "X-Ray's write actions support no resource types",
    "xray:PutTelemetryRecords": "X-Ray's write actions support no resource types",
    "xray:GetSamplingRules": "X-Ray's write actions support no resource types",
    "xray:GetSamplingTargets": "X-Ray's write actions support no resource types",
    "xray:GetSamplingStatisticSummaries": "X-Ray's write actions support no resource types",
}


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Where gantry lives: this account and region, names starting with `prefix`."""

    account_id: str
    region: str
    partition: str = "aws"
    prefix: str = PROGRAM_PREFIX

    def arn(self, service: str, resource: str, *, regional: bool = True, account: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id if account else ''}:{resource}"

    @property
    def workload_roles(self) -> str:
        return self.arn("iam", f"role{WORKLOAD_ROLE_PATH}*", regional=False)

    @property
    def boundary_arn(self) -> str:
        return self.arn("iam", f"policy{WORKLOAD_ROLE_PATH}{BOUNDARY_POLICY_NAME}", regional=False)

    @property
    def delivery_roles(self) -> str:
        return self.arn("iam", f"role{DELIVERY_ROLE_PATH}*", regional=False)


def _allow(sid: str, actions: Sequence[str], resources: Sequence[str] | str, **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources if isinstance(resources, str) else sorted(resources),
    }
    if condition:
        statement["Condition"] = condition
    return statement


def github_trust_policy(
    *, provider_arn: str, repository: str, subject: str, repository_ids: tuple[str, str] | None = None
) -> dict[str, Any]:
    """Who may assume a delivery role: GitHub's OIDC tokens for exactly one `sub`, issued to the AWS
    audience. StringEquals, not StringLike: the subject is one value, never a pattern. The `sub` is
    `repo:<owner>/<repo>:<subject>` (GitHub's default template), or with `repository_ids` (owner id,
    repository id) `repository_owner_id:<id>:repository_id:<id>:<subject>`, the form a repository gets
    after `gh api` sets its subject template to those claims and `context` (see repository_id_subject)."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "GitHubActionsOfThisRepository",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": GITHUB_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": f"{repository_claim(repository, repository_ids)}:{subject}",
                    }
                },
            }
        ],
    }


# The claims of GitHub's customised subject template that name the repository by its immutable ids
# ("Customizing the token claims", https://docs.github.com/en/actions/reference/security/oidc#customizing-the-subject-claims-for-an-organization-or-repository):
# a renamed, transferred or deleted-and-re-created repository of the same name gets new ids, so it cannot
# reuse the trust. Set on the repository with
#   gh api -X PUT repos/OWNER/REPO/actions/oidc/customization/sub --input - <<< \
#     '{"use_default": false, "include_claim_keys": ["repository_owner_id", "repository_id", "context"]}'
REPOSITORY_ID_CLAIM_KEYS = ("repository_owner_id", "repository_id", "context")


def repository_claim(repository: str, repository_ids: tuple[str, str] | None) -> str:
    """The part of `sub` before the context: by name (default template) or by owner and repository id."""
    if repository_ids is None:
        return f"repo:{repository}"
    owner_id, repository_id = repository_ids
    return f"repository_owner_id:{owner_id}:repository_id:{repository_id}"


def pull_request_subject() -> str:
    """The `sub` of a workflow run for a pull request (GitHub: `repo:ORG/REPO:pull_request`)."""
    return "pull_request"


def environment_subject(environment: str) -> str:
    """The `sub` of a job that references a GitHub environment (`repo:ORG/REPO:environment:NAME`)."""
    return f"environment:{environment}"


def _state_read(state_bucket_arn: str, state_key_arn: str) -> list[dict[str, Any]]:
    return [
        _allow(
            "ListStateBucket", ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetBucketVersioning"], state_bucket_arn
        ),
        _allow("ReadState", ["s3:GetObject", "s3:GetObjectVersion"], f"{state_bucket_arn}/*"),
        _allow("DecryptState", ["kms:Decrypt", "kms:DescribeKey"], state_key_arn),
    ]


def _decrypt_stack_secrets(secrets_key_arn: str) -> dict[str, Any]:
    """One environment's secrets key: the only stack secrets a role of that environment can read."""
    return _allow("DecryptStackSecrets", ["kms:Decrypt", "kms:DescribeKey"], secrets_key_arn)


def gantry_secret_arns(scope: Scope) -> list[str]:
    """The Secrets Manager secrets gantry may read: those it creates (`<prefix>-...`) and those a stack
    references, which components/settings/access.py requires to be named `<prefix>/...` or `<prefix>-...`."""
    p = scope.prefix
    return [scope.arn("secretsmanager", f"secret:{p}-*"), scope.arn("secretsmanager", f"secret:{p}/*")]


def gantry_parameter_arns(scope: Scope) -> list[str]:
    """The SSM parameters gantry may read: `/<prefix>/...` (a hierarchy's ARN drops the leading slash) or
    `<prefix>-...`, the names components/settings/access.py accepts."""
    p = scope.prefix
    return [scope.arn("ssm", f"parameter/{p}/*"), scope.arn("ssm", f"parameter/{p}-*")]


def _read_only(scope: Scope) -> list[dict[str, Any]]:
    """What `pulumi preview` (and a refresh) reads of what gantry manages."""
    p = scope.prefix
    return [
        _allow(
            "DescribeAccountWide",
            [
                "ec2:Describe*",
                "elasticloadbalancing:Describe*",
                "application-autoscaling:Describe*",
                "ecs:DescribeTaskDefinition",
                "ecs:ListClusters",
                "ecs:ListTaskDefinitions",
                "ecs:DescribeCapacityProviders",
                "logs:DescribeLogGroups",
                "cloudwatch:DescribeAlarms",
                "acm:ListCertificates",
                "route53:ListHostedZones",
                "route53:GetChange",
                "codedeploy:ListApplications",
                "codedeploy:ListDeploymentConfigs",
                "lambda:ListFunctions",
                "ecr:GetAuthorizationToken",
                "ecr:DescribeRegistry",
            ],
            "*",
        ),
        _allow(
            "ReadGantryEcs",
            ["ecs:DescribeClusters", "ecs:DescribeServices", "ecs:ListTagsForResource", "ecs:DescribeTaskSets"],
            [
                scope.arn("ecs", f"cluster/{p}-*"),
                scope.arn("ecs", f"service/{p}-*/*"),
                scope.arn("ecs", f"task-set/{p}-*/*/*"),
                scope.arn("ecs", f"task-definition/{p}-*:*"),
            ],
        ),
        _allow(
            "ReadGantryImages",
            [
                "ecr:DescribeRepositories",
                "ecr:DescribeImages",
                "ecr:GetLifecyclePolicy",
                "ecr:ListTagsForResource",
                "ecr:GetRepositoryPolicy",
            ],
            scope.arn("ecr", f"repository/{p}-*"),
        ),
        _allow(
            "ReadGantryLogs",
            ["logs:ListTagsForResource", "logs:ListTagsLogGroup", "logs:DescribeLogStreams"],
            [scope.arn("logs", f"log-group:{p}-*"), scope.arn("logs", f"log-group:/aws/lambda/{p}-*")],
        ),
        # Metadata and version ids only (what the program's get_secret_versions reads): never a value.
        _allow(
            "ReadSecretMetadata",
            [
                "secretsmanager:DescribeSecret",
                "secretsmanager:ListSecretVersionIds",
                "secretsmanager:GetResourcePolicy",
            ],
            gantry_secret_arns(scope),
        ),
        # The program's get_parameter (components/workload/secrets.py) is SSM GetParameter with WithDecryption false:
        # the version it needs comes with the value, which for a SecureString stays ciphertext, since no
        # delivery role may decrypt through SSM. Only gantry's parameters.
        _allow("ReadParameterVersions", ["ssm:GetParameter"], gantry_parameter_arns(scope)),
        _allow(
            "ReadGantryRoles",
            [
                "iam:GetRole",
                "iam:GetRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:ListRoleTags",
            ],
            scope.workload_roles,
        ),
        _allow("ReadTheBoundary", list(BOUNDARY_READS), scope.boundary_arn),
        _allow(
            "ReadGantryBuckets",
            [
                "s3:GetBucket*",
                "s3:GetLifecycleConfiguration",
                "s3:GetEncryptionConfiguration",
                "s3:ListBucket",
                "s3:GetAccelerateConfiguration",
                "s3:GetReplicationConfiguration",
            ],
            scope.arn("s3", f"{p}-*", regional=False, account=False),
        ),
        _allow(
            "ReadGantryCertificates",
            ["acm:DescribeCertificate", "acm:ListTagsForCertificate"],
            scope.arn("acm", "certificate/*"),
        ),
        _allow(
            "ReadHostedZones",
            ["route53:GetHostedZone", "route53:ListResourceRecordSets", "route53:ListTagsForResource"],
            scope.arn("route53", "hostedzone/*", regional=False, account=False),
        ),
        _allow(
            "ReadGantryDeploys",
            [
                "codedeploy:GetApplication",
                "codedeploy:GetDeploymentGroup",
                "codedeploy:GetDeploymentConfig",
                "codedeploy:ListTagsForResource",
                "codedeploy:GetDeployment",
                "codedeploy:ListDeployments",
            ],
            [
                scope.arn("codedeploy", f"application:{p}-*"),
                scope.arn("codedeploy", f"deploymentgroup:{p}-*/*"),
                scope.arn("codedeploy", f"deploymentconfig:{p}-*"),
            ],
        ),
        _allow(
            "ReadGantryFunctions",
            [
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:ListTags",
                "lambda:GetPolicy",
                "lambda:GetFunctionCodeSigningConfig",
            ],
            scope.arn("lambda", f"function:{p}-*"),
        ),
        _allow("ReadGantryAlarms", ["cloudwatch:ListTagsForResource"], scope.arn("cloudwatch", f"alarm:{p}-*")),
    ]


def preview_role_policy(
    scope: Scope, *, state_bucket_arn: str, state_key_arn: str, secrets_key_arn: str
) -> dict[str, Any]:
    """Pull requests: read gantry's resources, read the state, decrypt the secrets of one environment's
    stacks (`secrets_key_arn`, that environment's key). No writes, except the DIY backend's lock files
    (`pulumi preview` takes a stack lock under `.pulumi/locks/`)."""
    return {
        "Version": VERSION,
        "Statement": [
            *_read_only(scope),
            *_state_read(state_bucket_arn, state_key_arn),
            _decrypt_stack_secrets(secrets_key_arn),
            _allow("StackLocks", ["s3:PutObject", "s3:DeleteObject"], f"{state_bucket_arn}/.pulumi/locks/*"),
            _allow("EncryptStackLocks", ["kms:GenerateDataKey"], state_key_arn),
        ],
    }


# What IAM enforces when `pulumi up` of the bootstrap creates these documents ("IAM and AWS STS quotas",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html, characters counted without
# whitespace): a role's inline policies together at most 10,240 characters, a managed policy at most
# 6,144, a trust policy at most 2,048 (the default, raise-able to 4,096), at most 10 managed policies
# attached to a role (the default, raise-able to 20). One inline deploy policy of about 18,400 characters
# is refused by PutRolePolicy, so the deploy permissions are customer-managed policies, one per area
# below, each well under 6,144 so a few more hosted zones or statements still fit; components/quotas.py
# checks every document the bootstrap and the program create against these limits.
DEPLOY_POLICY_AREAS: dict[str, str] = {
    "read-and-state": "read what gantry manages (preview, refresh) and read and write the stack state",
    "iam-ecs-ecr": "gantry's roles (under the path, with the boundary), ECS and ECR; denies on the delivery side",
    "network": "the VPC, its subnets, routes, gateways, endpoints and security groups, and the load balancer",
    "services": "logs, alarms, secrets, service autoscaling, certificates, CodeDeploy and the hook function",
    "operations-and-jobs": "alert topics and keys, dashboards, budgets, scheduled scaling, the Batch API's stores",
    "edge": "CloudFront, its VPC origin, the web ACL, health checks and the configured DNS zones",
}


def deploy_policy_name(scope: Scope, area: str) -> str:
    """The managed policy of one DEPLOY_POLICY_AREAS entry: `<prefix>-deploy-<area>` under /gantry/."""
    if area not in DEPLOY_POLICY_AREAS:
        raise ValueError(f"deploy policy area {area!r} is unknown; allowed: {sorted(DEPLOY_POLICY_AREAS)}")
    return f"{scope.prefix}-deploy-{area}"


def deploy_role_policies(
    scope: Scope,
    *,
    state_bucket_arn: str,
    state_key_arn: str,
    bootstrap_key_arns: Sequence[str],
    hosted_zone_ids: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """What every environment's `pulumi up` may do, as one managed policy document per DEPLOY_POLICY_AREAS
    entry: everything gantry's program creates, scoped to the prefix, plus IAM guarded against escalation
    (see the module docstring). No stack secrets: each deploy role decrypts only its own environment's
    (deploy_environment_policy). `bootstrap_key_arns` (the state key and every secrets key) are denied
    every administrative KMS action. The explicit denies sit in the IAM and operations areas; a Deny in any
    policy of a role holds for the whole role, whichever policy holds the Allow."""
    return {
        "read-and-state": _document(
            [
                *_read_only(scope),
                *_state_read(state_bucket_arn, state_key_arn),
                _allow("EncryptState", ["kms:GenerateDataKey", "kms:Encrypt"], state_key_arn),
            ]
        ),
        "iam-ecs-ecr": _document([*_deploy_iam(scope), *_deploy_ecs_ecr(scope)]),
        "network": _document(_deploy_network(scope)),
        "services": _document(_deploy_services(scope)),
        "operations-and-jobs": _document(_operations_and_jobs(scope, bootstrap_key_arns)),
        "edge": _document(
            [
                *_edge(scope),
                *(
                    [
                        _allow(
                            "WriteGantryRecords",
                            ["route53:ChangeResourceRecordSets"],
                            [
                                scope.arn("route53", f"hostedzone/{z}", regional=False, account=False)
                                for z in hosted_zone_ids
                            ],
                        )
                    ]
                    if hosted_zone_ids
                    else []
                ),
            ]
        ),
    }


# The program's Pulumi project (`name` in the repository's Pulumi.yaml): its stacks' state objects are
# under `.pulumi/<area>/gantry/<stack>...` in the state bucket.
PULUMI_PROJECT = "gantry"


def stack_state_objects(state_bucket_arn: str, stack: str, project: str = PULUMI_PROJECT) -> list[str]:
    """Every object the DIY backend writes for one stack (pulumi/pulumi pkg/backend/diy/store.go
    projectReferenceStore and lock.go): the checkpoint `.pulumi/stacks/<project>/<stack>.json` (with its
    `.bak`, and `.gz`/`.zst` when compressed), the `history/`, `backups/` and `journal/` directories
    `<area>/<project>/<stack>/`, and the locks `.pulumi/locks/organization/<project>/<stack>/<id>.json`
    (a DIY backend's organization is always `organization`). `<stack>.json*` matches no other stack's
    checkpoint: that stack's name would have to begin with `<stack>.json`."""
    root = f"{state_bucket_arn}/.pulumi"
    return [
        f"{root}/stacks/{project}/{stack}.json*",
        *(f"{root}/{area}/{project}/{stack}/*" for area in ("history", "backups", "journal")),
        f"{root}/locks/organization/{project}/{stack}/*",
    ]


def deploy_environment_policy(
    scope: Scope, *, environment: str, secrets_key_arn: str, state_bucket_arn: str
) -> dict[str, Any]:
    """Inline on one environment's deploy role: the state of that environment's stack only (the stack of
    the same name: another environment's checkpoint, history and locks stay out of reach), its stack
    secrets (encrypted and decrypted with its own key) and its own alert topics
    (`<prefix>-<stack>-<severity>`, components/observability/notifications.py), which the prod workflow's post-deploy
    eval pages through. Its locks included: a cancelled job's release step (scripts/ci/stack_lock.py)
    deletes its own stack's lock."""
    p = scope.prefix
    stack = environment.lower()
    return _document(
        [
            _allow(
                "WriteOwnStackState", ["s3:PutObject", "s3:DeleteObject"], stack_state_objects(state_bucket_arn, stack)
            ),
            _decrypt_stack_secrets(secrets_key_arn),
            _allow("EncryptStackSecrets", ["kms:Encrypt", "kms:GenerateDataKey"], secrets_key_arn),
            _allow(
                "PageThroughOwnTopics",
                ["sns:Publish"],
                [s.arn("sns", f"{p}-{stack}-*") for s in (scope, _us_east_1(scope))],
            ),
            # The topics are encrypted with a program key (components/observability/notifications.py): publishing needs
            # a data key, through SNS only ("Configure KMS permissions for AWS services",
            # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
            _allow(
                "EncryptOwnTopicMessages",
                ["kms:GenerateDataKey", "kms:Decrypt"],
                [s.arn("kms", "key/*") for s in (scope, _us_east_1(scope))],
                StringEquals={
                    f"aws:ResourceTag/{PROGRAM_KEY_TAG}": PROGRAM_KEY_TAG_VALUE,
                    "kms:ViaService": [f"sns.{s.region}.amazonaws.com" for s in (scope, _us_east_1(scope))],
                },
            ),
        ]
    )


def deploy_role_policy(
    scope: Scope,
    *,
    state_bucket_arn: str,
    state_key_arn: str,
    secrets_key_arn: str,
    environment: str = "dev",
    bootstrap_key_arns: Sequence[str] | None = None,
    hosted_zone_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Every statement one environment's deploy role holds (the shared managed policies, then its own
    inline policy) in one document, for the coverage tests (IAM evaluates a role's policies together).
    Never attached as one policy: it is about three times the 6,144 characters IAM allows a managed
    policy. `bootstrap_key_arns` defaults to the state key and this secrets key."""
    parts = deploy_role_policies(
        scope,
        state_bucket_arn=state_bucket_arn,
        state_key_arn=state_key_arn,
        bootstrap_key_arns=(state_key_arn, secrets_key_arn) if bootstrap_key_arns is None else bootstrap_key_arns,
        hosted_zone_ids=hosted_zone_ids,
    )
    own = deploy_environment_policy(
        scope, environment=environment, secrets_key_arn=secrets_key_arn, state_bucket_arn=state_bucket_arn
    )
    return _document([s for document in [*parts.values(), own] for s in document["Statement"]])


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": statements}


def deploy_policy_arn_pattern(scope: Scope) -> str:
    """Every deploy managed policy (`policy/gantry/<prefix>-deploy-*`): the deploy roles may not touch them."""
    return scope.arn("iam", f"policy{WORKLOAD_ROLE_PATH}{scope.prefix}-deploy-*", regional=False)


def _deploy_iam(scope: Scope) -> list[dict[str, Any]]:
    """Roles under gantry's path, born with the boundary, passed only to gantry's services; never the
    delivery roles, their policies or the boundary."""
    bounded = {"StringEquals": {"iam:PermissionsBoundary": scope.boundary_arn}}
    return [
        _allow(
            "CreateBoundedRoles",
            ["iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"],
            scope.workload_roles,
            **bounded,
        ),
        _allow(
            "ManageGantryRoles",
            [
                "iam:DeleteRole",
                "iam:DeleteRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
            ],
            scope.workload_roles,
        ),
        _allow(
            "PassGantryRoles",
            ["iam:PassRole"],
            scope.workload_roles,
            StringEquals={"iam:PassedToService": list(WORKLOAD_SERVICES)},
        ),
        _allow(
            "CreateServiceLinkedRoles",
            ["iam:CreateServiceLinkedRole"],
            scope.arn("iam", "role/aws-service-role/*", regional=False),
            StringEquals={"iam:AWSServiceName": list(SERVICE_LINKED)},
        ),
        # Who may assume a role is its trust policy, and IAM has no condition key on the content of the
        # document CreateRole or UpdateAssumeRolePolicy sets (its keys are iam:PermissionsBoundary,
        # iam:PassedToService, iam:AWSServiceName, iam:PolicyARN, ..., "IAM and AWS STS condition context
        # keys", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html;
        # the Service Authorization Reference lists UpdateAssumeRolePolicy on the role resource with no
        # action-specific key). So IAM confines where trust may be written: only on roles under /gantry/,
        # whatever Allow exists elsewhere; which principals it names is policy/rules.py's
        # trusted-service-principals rule, run on every preview and up.
        {
            "Sid": "TrustOnlyOnGantryRoles",
            "Effect": "Deny",
            "Action": ["iam:CreateRole", "iam:UpdateAssumeRolePolicy"],
            "NotResource": scope.workload_roles,
        },
        # Explicit, so no Allow (here, in another area, or added later) can let a deploy rewrite its own
        # limits: the delivery roles and the managed policies that grant the deploy roles their rights.
        {
            "Sid": "NeverTouchDeliveryRoles",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [scope.delivery_roles, deploy_policy_arn_pattern(scope)],
        },
        # Everything but reading it: the program checks the boundary exists before it creates a role.
        {
            "Sid": "NeverChangeTheBoundary",
            "Effect": "Deny",
            "NotAction": list(BOUNDARY_READS),
            "Resource": scope.boundary_arn,
        },
    ]


def _deploy_ecs_ecr(scope: Scope) -> list[dict[str, Any]]:
    """The cluster, services and task definitions; the repository and the image push."""
    p = scope.prefix
    return [
        # --- ECS
        _allow(
            "RegisterTaskDefinitions",
            ["ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:CreateCluster"],
            "*",
        ),
        _allow(
            "ManageGantryEcs",
            [
                "ecs:DeleteCluster",
                "ecs:UpdateCluster",
                "ecs:UpdateClusterSettings",
                "ecs:PutClusterCapacityProviders",
                "ecs:CreateService",
                "ecs:UpdateService",
                "ecs:DeleteService",
                "ecs:TagResource",
                "ecs:UntagResource",
            ],
            [
                scope.arn("ecs", f"cluster/{p}-*"),
                scope.arn("ecs", f"service/{p}-*/*"),
                scope.arn("ecs", f"task-definition/{p}-*:*"),
            ],
        ),
        # --- ECR: the repository and the image push (docker-build during `up`).
        _allow(
            "ManageGantryImages",
            [
                "ecr:CreateRepository",
                "ecr:DeleteRepository",
                "ecr:PutLifecyclePolicy",
                "ecr:DeleteLifecyclePolicy",
                "ecr:PutImageTagMutability",
                "ecr:PutImageScanningConfiguration",
                "ecr:TagResource",
                "ecr:UntagResource",
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchDeleteImage",
            ],
            scope.arn("ecr", f"repository/{p}-*"),
        ),
        # ECR encrypts with the account's aws/ecr key through a grant it creates on the caller's behalf.
        _allow(
            "EcrKmsGrants",
            ["kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"],
            scope.arn("kms", "key/*"),
            StringEquals={"kms:ViaService": f"ecr.{scope.region}.amazonaws.com"},
        ),
    ]


def _deploy_network(scope: Scope) -> list[dict[str, Any]]:
    """The VPC and everything in it, and the load balancer with its listeners and target groups."""
    p = scope.prefix
    return [
        # --- EC2: the VPC and everything in it. Create calls are authorised on resources that do not exist
        # yet, so they are scoped by region/account ARN pattern; changes are limited to gantry-tagged VPC
        # resources (awsx and aws:defaultTags tag everything with project=<prefix>).
        _allow(
            "CreateNetwork",
            [
                "ec2:CreateVpc",
                "ec2:CreateSubnet",
                "ec2:CreateRouteTable",
                "ec2:CreateInternetGateway",
                "ec2:CreateNatGateway",
                "ec2:AllocateAddress",
                "ec2:CreateSecurityGroup",
                "ec2:CreateVpcEndpoint",
                "ec2:CreateFlowLogs",
                "ec2:CreateTags",
            ],
            scope.arn("ec2", "*"),
            StringEquals={"aws:RequestTag/project": p},
        ),
        _allow(
            "ChangeGantryNetwork",
            [
                "ec2:DeleteVpc",
                "ec2:ModifyVpcAttribute",
                "ec2:DeleteSubnet",
                "ec2:ModifySubnetAttribute",
                "ec2:AssociateRouteTable",
                "ec2:DisassociateRouteTable",
                "ec2:DeleteRouteTable",
                "ec2:CreateRoute",
                "ec2:DeleteRoute",
                "ec2:ReplaceRoute",
                "ec2:AttachInternetGateway",
                "ec2:DetachInternetGateway",
                "ec2:DeleteInternetGateway",
                "ec2:DeleteNatGateway",
                "ec2:ReleaseAddress",
                "ec2:DisassociateAddress",
                "ec2:DeleteSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:ModifySecurityGroupRules",
                "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
                "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
                "ec2:DeleteVpcEndpoints",
                "ec2:ModifyVpcEndpoint",
                "ec2:DeleteFlowLogs",
                "ec2:DeleteTags",
                "ec2:CreateTags",
            ],
            scope.arn("ec2", "*"),
            StringEquals={"aws:ResourceTag/project": p},
        ),
        # --- Load balancing: ELB names are at most 32 characters, so Pulumi's auto-names keep the prefix.
        _allow(
            "ManageGantryLoadBalancing",
            [
                "elasticloadbalancing:CreateLoadBalancer",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:SetSecurityGroups",
                "elasticloadbalancing:SetSubnets",
                "elasticloadbalancing:CreateTargetGroup",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:ModifyListenerAttributes",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:RemoveTags",
                "elasticloadbalancing:AddListenerCertificates",
                "elasticloadbalancing:RemoveListenerCertificates",
            ],
            [
                scope.arn("elasticloadbalancing", f"loadbalancer/app/{p}-*/*"),
                scope.arn("elasticloadbalancing", f"targetgroup/{p}-*/*"),
                scope.arn("elasticloadbalancing", f"listener/app/{p}-*/*/*"),
                scope.arn("elasticloadbalancing", f"listener-rule/app/{p}-*/*/*/*"),
            ],
        ),
        # ModifyRule is authorised on the rule, not its listener (Service Authorization Reference, Elastic
        # Load Balancing V2: ModifyRule's resource types are listener-rule/app and listener-rule/net,
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html).
        _allow(
            "ModifyGantryListenerRules",
            ["elasticloadbalancing:ModifyRule"],
            scope.arn("elasticloadbalancing", f"listener-rule/app/{p}-*/*/*/*"),
        ),
    ]


def _deploy_services(scope: Scope) -> list[dict[str, Any]]:
    """Logs, alarms, secrets, autoscaling, TLS, blue/green and the hook function."""
    p = scope.prefix
    return [
        _allow(
            "ManageGantryLogs",
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:TagLogGroup",
                "logs:UntagLogGroup",
            ],
            [scope.arn("logs", f"log-group:{p}-*"), scope.arn("logs", f"log-group:/aws/lambda/{p}-*")],
        ),
        _allow(
            "ManageGantryAlarms",
            [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
            ],
            # us-east-1 too: CloudFront's 5xx alarm lives beside its metrics.
            [scope.arn("cloudwatch", f"alarm:{p}-*"), _us_east_1(scope).arn("cloudwatch", f"alarm:{p}-*")],
        ),
        _allow(
            "ManageGantrySecrets",
            [
                "secretsmanager:CreateSecret",
                "secretsmanager:DeleteSecret",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:TagResource",
                "secretsmanager:UntagResource",
                "secretsmanager:UpdateSecretVersionStage",
            ],
            scope.arn("secretsmanager", f"secret:{p}-*"),
        ),
        # Scalable targets are named by a random id: the pattern is this account's ECS targets in this region.
        _allow(
            "ManageServiceAutoscaling",
            [
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
                "application-autoscaling:PutScalingPolicy",
                "application-autoscaling:DeleteScalingPolicy",
                "application-autoscaling:TagResource",
                "application-autoscaling:UntagResource",
            ],
            scope.arn("application-autoscaling", "scalable-target/*"),
            StringEquals={"application-autoscaling:service-namespace": "ecs"},
        ),
        _allow("RequestCertificates", ["acm:RequestCertificate"], "*"),
        _allow(
            "ManageCertificates",
            ["acm:DeleteCertificate", "acm:AddTagsToCertificate", "acm:RemoveTagsFromCertificate"],
            scope.arn("acm", "certificate/*"),
        ),
        _allow(
            "ManageGantryDeploys",
            [
                "codedeploy:CreateApplication",
                "codedeploy:DeleteApplication",
                "codedeploy:CreateDeploymentGroup",
                "codedeploy:UpdateDeploymentGroup",
                "codedeploy:DeleteDeploymentGroup",
                "codedeploy:CreateDeploymentConfig",
                "codedeploy:DeleteDeploymentConfig",
                "codedeploy:CreateDeployment",
                "codedeploy:StopDeployment",
                "codedeploy:ListDeploymentTargets",
                "codedeploy:GetDeploymentTarget",
                "codedeploy:TagResource",
                "codedeploy:UntagResource",
                "codedeploy:RegisterApplicationRevision",
                "codedeploy:GetApplicationRevision",
            ],
            [
                scope.arn("codedeploy", f"application:{p}-*"),
                scope.arn("codedeploy", f"deploymentgroup:{p}-*/*"),
                scope.arn("codedeploy", f"deploymentconfig:{p}-*"),
            ],
        ),
        _allow(
            "ManageGantryFunctions",
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
            ],
            scope.arn("lambda", f"function:{p}-*"),
        ),
    ]


def _us_east_1(scope: Scope) -> Scope:
    """The same account and prefix in us-east-1: CloudFront's certificate, web ACL, logs and metrics."""
    return Scope(account_id=scope.account_id, region="us-east-1", partition=scope.partition, prefix=scope.prefix)


def _program_keys(scope: Scope, bootstrap_key_arns: Sequence[str]) -> list[dict[str, Any]]:
    """The program's own KMS keys (the alert topics' key, here and in us-east-1), by tag; never the
    bootstrap's. CreateKey only with the program tag (aws:RequestTag); administration only of keys that
    carry it (aws:ResourceTag); the tag itself can be neither added to a key that lacks it after creation
    nor removed or changed (aws:TagKeys), so TagResource/UntagResource cannot move a key into or out of
    scope. Adding tags in CreateKey is authorised as kms:TagResource on every key of the account and region
    ("To add tags when creating a KMS key, the caller must have kms:TagResource permission in an IAM
    policy. At a minimum, the permission must cover all KMS keys in the account and Region",
    https://docs.aws.amazon.com/kms/latest/developerguide/manage-tags-api.html): that statement requires
    the program tag in the request and none on the key. The bootstrap's keys and aliases are denied by ARN
    (BOOTSTRAP_KEY_GUARDED), whatever tags they carry."""
    p = scope.prefix
    east = _us_east_1(scope)
    keys = [s.arn("kms", "key/*") for s in (scope, east)]
    tag = f"aws:ResourceTag/{PROGRAM_KEY_TAG}"
    request_tag = f"aws:RequestTag/{PROGRAM_KEY_TAG}"
    return [
        _allow("CreateProgramKeys", ["kms:CreateKey"], "*", StringEquals={request_tag: PROGRAM_KEY_TAG_VALUE}),
        _allow(
            "TagNewProgramKeys",
            ["kms:TagResource"],
            keys,
            StringEquals={request_tag: PROGRAM_KEY_TAG_VALUE},
            Null={tag: "true"},
        ),
        _allow(
            "ManageProgramKeys",
            [
                "kms:DescribeKey",
                "kms:GetKeyPolicy",
                "kms:PutKeyPolicy",
                "kms:GetKeyRotationStatus",
                "kms:EnableKeyRotation",
                "kms:ScheduleKeyDeletion",
                "kms:TagResource",
                "kms:UntagResource",
                "kms:ListResourceTags",
                "kms:CreateAlias",
                "kms:DeleteAlias",
            ],
            keys,
            StringEquals={tag: PROGRAM_KEY_TAG_VALUE},
        ),
        # CreateAlias and DeleteAlias are authorised on the alias and on its key: the key half is above.
        _allow(
            "ManageProgramAliases",
            ["kms:CreateAlias", "kms:DeleteAlias"],
            [s.arn("kms", f"alias/{p}-*") for s in (scope, east)],
        ),
        # The tag in a TagResource/UntagResource request: refused unless it sets the program value, so an
        # untag (no aws:RequestTag, hence IfExists) or a changed value cannot take a key out of scope.
        {
            "Sid": "ProgramKeyTagIsFixed",
            "Effect": "Deny",
            "Action": ["kms:TagResource", "kms:UntagResource"],
            "Resource": keys,
            "Condition": {
                "ForAnyValue:StringEquals": {"aws:TagKeys": [PROGRAM_KEY_TAG]},
                "StringNotEqualsIfExists": {request_tag: PROGRAM_KEY_TAG_VALUE},
            },
        },
        {
            "Sid": "NeverTouchBootstrapKeys",
            "Effect": "Deny",
            "Action": list(BOOTSTRAP_KEY_GUARDED),
            "Resource": sorted({*bootstrap_key_arns, *bootstrap_alias_patterns(scope)}),
        },
        # The same by tag: holds for a bootstrap key whatever its ARN (one added later, another Region).
        {
            "Sid": "NeverTouchBootstrapTaggedKeys",
            "Effect": "Deny",
            "Action": list(BOOTSTRAP_KEY_GUARDED),
            "Resource": keys,
            "Condition": {"StringEquals": {tag: BOOTSTRAP_KEY_TAG_VALUE}},
        },
    ]


def bootstrap_alias_patterns(scope: Scope) -> list[str]:
    """The bootstrap's aliases (`alias/<prefix>-state`, `alias/<prefix>-secrets`, `-secrets-<env>`): a
    deploy may neither delete nor repoint them (that would point a stack's secrets provider at its key)."""
    p = scope.prefix
    return [scope.arn("kms", f"alias/{p}-state"), scope.arn("kms", f"alias/{p}-secrets*")]


def _operations_and_jobs(scope: Scope, bootstrap_key_arns: Sequence[str]) -> list[dict[str, Any]]:
    """The alert topics and their key, dashboards, budgets, scheduled scaling and the Batch API's queue,
    table and bucket (components/observability/notifications.py, operations.py, budget.py, batch_jobs.py). The topics
    and key exist in us-east-1 too, beside CloudFront's 5xx alarm."""
    p = scope.prefix
    east = _us_east_1(scope)
    return [
        _allow(
            "ManageGantryTopics",
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:Unsubscribe",
                "sns:GetSubscriptionAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:TagResource",
                "sns:UntagResource",
                "sns:ListTagsForResource",
            ],
            [scope.arn("sns", f"{p}-*"), east.arn("sns", f"{p}-*")],
        ),
        *_program_keys(scope, bootstrap_key_arns),
        _allow(
            "ManageGantryDashboards",
            ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
            scope.arn("cloudwatch", f"dashboard/{p}-*", regional=False),
        ),
        _allow(
            "ManageGantryBudgets",
            ["budgets:ModifyBudget", "budgets:ViewBudget"],
            scope.arn("budgets", f"budget/{p}-*", regional=False),
        ),
        _allow(
            "ScheduleServiceScaling",
            ["application-autoscaling:PutScheduledAction", "application-autoscaling:DeleteScheduledAction"],
            scope.arn("application-autoscaling", "scalable-target/*"),
            StringEquals={"application-autoscaling:service-namespace": "ecs"},
        ),
        # The access-log bucket (prod) and the Batch API's files bucket: names start with the prefix.
        _allow(
            "ManageGantryBuckets",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:PutBucketPolicy",
                "s3:DeleteBucketPolicy",
                "s3:PutBucketPublicAccessBlock",
                "s3:PutBucketOwnershipControls",
                "s3:PutEncryptionConfiguration",
                "s3:PutLifecycleConfiguration",
                "s3:PutBucketTagging",
            ],
            f"arn:{scope.partition}:s3:::{p}-*",
        ),
        _allow(
            "ManageGantryQueues",
            [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:TagQueue",
                "sqs:UntagQueue",
                "sqs:ListQueueTags",
            ],
            scope.arn("sqs", f"{p}-*"),
        ),
        _allow(
            "ManageGantryTables",
            [
                "dynamodb:CreateTable",
                "dynamodb:DeleteTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateTable",
                "dynamodb:DescribeContinuousBackups",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:DescribeTimeToLive",
                "dynamodb:TagResource",
                "dynamodb:UntagResource",
                "dynamodb:ListTagsOfResource",
            ],
            scope.arn("dynamodb", f"table/{p}-*"),
        ),
    ]


def _edge(scope: Scope) -> list[dict[str, Any]]:
    """CloudFront, its VPC origin and the web ACL (components/edge/distribution.py, waf.py). CloudFront is global and a
    CLOUDFRONT-scope web ACL, its log group and its certificate live in us-east-1, beside this region."""
    p = scope.prefix
    east = _us_east_1(scope)
    web_acls = [
        s.arn("wafv2", f"{kind}/{what}/*")
        for s, kind in ((scope, "regional"), (east, "global"))
        for what in ("webacl", "managedruleset", "ipset", "regexpatternset")
    ]
    return [
        _allow(
            "ManageDistributions",
            [
                "cloudfront:CreateDistribution",
                "cloudfront:CreateDistributionWithTags",
                "cloudfront:UpdateDistribution",
                "cloudfront:DeleteDistribution",
                "cloudfront:GetDistribution",
                "cloudfront:GetDistributionConfig",
                "cloudfront:TagResource",
                "cloudfront:UntagResource",
                "cloudfront:ListTagsForResource",
                "cloudfront:CreateVpcOrigin",
                "cloudfront:UpdateVpcOrigin",
                "cloudfront:DeleteVpcOrigin",
                "cloudfront:GetVpcOrigin",
            ],
            [
                scope.arn("cloudfront", "distribution/*", regional=False),
                scope.arn("cloudfront", "vpcorigin/*", regional=False),
            ],
        ),
        _allow(
            "ManageGantryWebAcls",
            [
                "wafv2:CreateWebACL",
                "wafv2:UpdateWebACL",
                "wafv2:DeleteWebACL",
                "wafv2:GetWebACL",
                "wafv2:AssociateWebACL",
                "wafv2:DisassociateWebACL",
                "wafv2:PutLoggingConfiguration",
                "wafv2:DeleteLoggingConfiguration",
                "wafv2:GetLoggingConfiguration",
                "wafv2:TagResource",
                "wafv2:UntagResource",
                "wafv2:ListTagsForResource",
            ],
            web_acls,
        ),
        _allow(
            "ManageEdgeLogs",
            ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy", "logs:TagResource"],
            [s.arn("logs", f"log-group:aws-waf-logs-{p}-*") for s in (scope, east)],
        ),
        _allow(
            "EdgeLogDelivery",
            ["logs:PutResourcePolicy", "logs:DeleteResourcePolicy", "logs:DescribeResourcePolicies"],
            "*",
        ),
        # The security-headers policy and CloudFront standard logging (v2): a delivery source for the
        # distribution (which CloudFront authorises through AllowVendedLogDeliveryForResource), an S3
        # delivery destination and the delivery between them, all in us-east-1.
        _allow(
            "EdgeHeadersAndLogging",
            [
                "cloudfront:CreateResponseHeadersPolicy",
                "cloudfront:UpdateResponseHeadersPolicy",
                "cloudfront:DeleteResponseHeadersPolicy",
                "cloudfront:GetResponseHeadersPolicy",
                "cloudfront:AllowVendedLogDeliveryForResource",
                "logs:PutDeliverySource",
                "logs:GetDeliverySource",
                "logs:DeleteDeliverySource",
                "logs:PutDeliveryDestination",
                "logs:GetDeliveryDestination",
                "logs:DeleteDeliveryDestination",
                "logs:CreateDelivery",
                "logs:GetDelivery",
                "logs:DeleteDelivery",
                "logs:TagResource",
                "logs:ListTagsForResource",
            ],
            [
                scope.arn("cloudfront", "response-headers-policy/*", regional=False),
                scope.arn("cloudfront", "distribution/*", regional=False),
                east.arn("logs", f"delivery-source:{p}-*"),
                east.arn("logs", f"delivery-destination:{p}-*"),
                east.arn("logs", "delivery:*"),
            ],
        ),
        _allow(
            "EdgeCertificates",
            ["acm:DeleteCertificate", "acm:AddTagsToCertificate", "acm:DescribeCertificate"],
            east.arn("acm", "certificate/*"),
        ),
        _allow("CreateHealthChecks", ["route53:CreateHealthCheck"], "*"),
        _allow(
            "ManageHealthChecks",
            ["route53:GetHealthCheck", "route53:UpdateHealthCheck", "route53:DeleteHealthCheck"],
            scope.arn("route53", "healthcheck/*", regional=False, account=False),
        ),
    ]


def workload_boundary_policy(scope: Scope) -> dict[str, Any]:
    """The ceiling of every role gantry creates: the union of what its execution, task, flow-log,
    CodeDeploy and hook roles need (components/policies.py, components/blue_green/policies.py), on
    gantry's resources. A role's own policy narrows this to exact ARNs; the boundary makes sure a role a
    deploy creates can never do more, whatever policy the deploy gives it."""
    p = scope.prefix
    log_groups = [scope.arn("logs", f"log-group:{p}-*"), scope.arn("logs", f"log-group:/aws/lambda/{p}-*")]
    ec2 = scope.arn("ec2", "")
    return {
        "Version": VERSION,
        "Statement": [
            _allow("RegistryToken", ["ecr:GetAuthorizationToken"], "*"),
            _allow(
                "PullGantryImages",
                ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                scope.arn("ecr", f"repository/{p}-*"),
            ),
            _allow(
                "WriteGantryLogs",
                ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                [*log_groups, *(f"{g}:log-stream:*" for g in log_groups)],
            ),
            _allow("FindLogGroups", ["logs:DescribeLogGroups"], scope.arn("logs", "log-group:*")),
            # Gantry's secrets and parameters only (created ones and references, which settings require to
            # carry the prefix); the execution role's own policy names them exactly.
            _allow("ReadSecrets", ["secretsmanager:GetSecretValue"], gantry_secret_arns(scope)),
            _allow("ReadParameters", ["ssm:GetParameters"], gantry_parameter_arns(scope)),
            _allow(
                "DecryptViaSecretStores",
                ["kms:Decrypt"],
                scope.arn("kms", "key/*"),
                StringEquals={
                    "kms:ViaService": [
                        f"secretsmanager.{scope.region}.amazonaws.com",
                        f"ssm.{scope.region}.amazonaws.com",
                    ]
                },
            ),
            # CodeDeploy's blue/green calls.
            _allow(
                "BlueGreenEcs",
                ["ecs:DescribeServices", "ecs:CreateTaskSet", "ecs:DeleteTaskSet", "ecs:UpdateServicePrimaryTaskSet"],
                [scope.arn("ecs", f"service/{p}-*/*"), scope.arn("ecs", f"task-set/{p}-*/*/*")],
            ),
            _allow(
                "DescribeLoadBalancing",
                [
                    "elasticloadbalancing:DescribeListeners",
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                ],
                "*",
            ),
            # ModifyListener on listeners, ModifyRule on their rules: the resource each is authorised on.
            _allow(
                "SwapGantryListeners",
                ["elasticloadbalancing:ModifyListener"],
                scope.arn("elasticloadbalancing", f"listener/app/{p}-*/*/*"),
            ),
            _allow(
                "SwapGantryListenerRules",
                ["elasticloadbalancing:ModifyRule"],
                scope.arn("elasticloadbalancing", f"listener-rule/app/{p}-*/*/*/*"),
            ),
            _allow("ReadGantryAlarms", ["cloudwatch:DescribeAlarms"], scope.arn("cloudwatch", f"alarm:{p}-*")),
            _allow(
                "InvokeGantryHooks",
                ["lambda:InvokeFunction"],
                [scope.arn("lambda", f"function:{p}-*"), scope.arn("lambda", f"function:{p}-*:*")],
            ),
            _allow(
                "PassTaskRoles",
                ["iam:PassRole"],
                scope.workload_roles,
                StringEquals={"iam:PassedToService": "ecs-tasks.amazonaws.com"},
            ),
            # The hook function's VPC interfaces (Lambda's documented set) and its verdict.
            _allow(
                "HookEnis",
                [
                    "ec2:CreateNetworkInterface",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                [f"{ec2}network-interface/*", f"{ec2}subnet/*", f"{ec2}security-group/*"],
            ),
            _allow("DescribeEnis", ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], "*"),
            _allow(
                "ReportHookVerdict",
                ["codedeploy:PutLifecycleEventHookExecutionStatus"],
                scope.arn("codedeploy", f"deploymentgroup:{p}-*/*"),
            ),
            # The Batch API (components/policies.py BATCH_API_ACTIONS, BATCH_CONSUMER_ACTIONS) on gantry's
            # queue, table and bucket; each role's own policy names the exact ARNs and prefix.
            _allow(
                "BatchQueue",
                ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"],
                scope.arn("sqs", f"{p}-*"),
            ),
            _allow(
                "BatchRecords",
                # Query: a tenant's list pages; DeleteItem: DELETE /v1/files/{id}.
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:Query",
                    "dynamodb:DeleteItem",
                ],
                scope.arn("dynamodb", f"table/{p}-*"),
            ),
            _allow(
                "BatchFiles",
                ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                f"arn:{scope.partition}:s3:::{p}-*/*",
            ),
            # Tracing on: X-Ray's write actions, which take no resource (AWSXrayWriteOnlyAccess).
            _allow(
                "TraceWrites",
                [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "*",
            ),
        ],
    }


def state_bucket_policy(*, bucket_arn: str) -> dict[str, Any]:
    """Refuse every request that is not over TLS (aws:SecureTransport), for everyone: the contract's statement."""
    return {"Version": VERSION, "Statement": [tls_only_bucket_statement(bucket_arn)]}
