"""Roles that cannot escape (issue 19): concrete requests evaluated against the delivery roles' documents.

tests/iam_eval.py applies IAM's evaluation logic (an explicit Deny wins, else some Allow must match) to
one request at a time, with its resource tags or request tags as condition context. Each test names the
guarantee it proves; each would pass an escalation the issue describes if its statement were removed.
The documents are evaluated both as pure functions and as the bootstrap program synthesises them.
"""

from __future__ import annotations

from typing import Any

import pytest

from bootstrap import documents
from tests.bootstrap.bootstrap_runner import ACCOUNT, CONFIG, run_bootstrap, synthesize_bootstrap
from tests.iam_eval import allowed, request_tags, resource_tags

SCOPE = documents.Scope(account_id=ACCOUNT, region="eu-west-1")
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key"
BUCKET = "arn:aws:s3:::gantry-state-210987654321-eu-west-1"
STATE_KEY, SHARED_KEY, DEV_KEY, PROD_KEY = (f"{KEY}/{n}" for n in ("state", "shared", "dev", "prod"))
BOOTSTRAP_KEYS = [STATE_KEY, SHARED_KEY, DEV_KEY, PROD_KEY]
PROGRAM = {documents.PROGRAM_KEY_TAG: documents.PROGRAM_KEY_TAG_VALUE}
BOOTSTRAP = {documents.PROGRAM_KEY_TAG: documents.BOOTSTRAP_KEY_TAG_VALUE}
ALERTS_KEY = f"{KEY}/1234abcd-alerts"
FOREIGN_KEY = f"{KEY}/9999-payroll"


def deploy(environment: str = "dev", key: str = DEV_KEY) -> list[dict[str, Any]]:
    """Every policy one deploy role holds: the shared managed parts and its own inline policy."""
    parts = documents.deploy_role_policies(
        SCOPE, state_bucket_arn=BUCKET, state_key_arn=STATE_KEY, bootstrap_key_arns=BOOTSTRAP_KEYS
    )
    own = documents.deploy_environment_policy(
        SCOPE, environment=environment, secrets_key_arn=key, state_bucket_arn=BUCKET
    )
    return [*parts.values(), own]


def preview(key: str = DEV_KEY) -> list[dict[str, Any]]:
    return [documents.preview_role_policy(SCOPE, state_bucket_arn=BUCKET, state_key_arn=STATE_KEY, secrets_key_arn=key)]


BOUNDARY = [documents.workload_boundary_policy(SCOPE)]
KEY_ADMIN = ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion")


# --- KMS: the program's own keys, never the bootstrap's --------------------------------------------------


@pytest.mark.parametrize("action", KEY_ADMIN)
@pytest.mark.parametrize("key", BOOTSTRAP_KEYS)
def test_the_deploy_role_cannot_administer_the_bootstrap_keys(action: str, key: str) -> None:
    """Not as they are (tagged `bootstrap`), not even if they carried the program tag: the explicit deny
    by ARN holds whatever the tags say, and the deny by tag whatever the ARN."""
    for tags in (BOOTSTRAP, PROGRAM, {}):
        assert not allowed(deploy(), action, key, resource_tags(tags)), (action, key, tags)
    # The tag deny alone: a bootstrap key the ARN list does not name (one added later), even beside a
    # broad Allow on every key (a policy added later); a key with no bootstrap tag is then allowed.
    broad = {"Version": documents.VERSION, "Statement": [{"Effect": "Allow", "Action": action, "Resource": f"{KEY}/*"}]}
    assert not allowed([*deploy(), broad], action, f"{KEY}/added-later", resource_tags(BOOTSTRAP))
    assert allowed([*deploy(), broad], action, f"{KEY}/added-later")


@pytest.mark.parametrize("action", KEY_ADMIN)
def test_the_deploy_role_administers_program_keys_only(action: str) -> None:
    assert allowed(deploy(), action, ALERTS_KEY, resource_tags(PROGRAM))
    assert not allowed(deploy(), action, FOREIGN_KEY)  # untagged
    assert not allowed(deploy(), action, FOREIGN_KEY, resource_tags({documents.PROGRAM_KEY_TAG: "payroll"}))
    assert not allowed(deploy(), action, FOREIGN_KEY, resource_tags({"team": "payroll"}))


def test_the_deploy_role_creates_keys_only_with_the_program_tag() -> None:
    assert allowed(deploy(), "kms:CreateKey", "*", request_tags(PROGRAM))
    assert not allowed(deploy(), "kms:CreateKey", "*")
    assert not allowed(deploy(), "kms:CreateKey", "*", request_tags(BOOTSTRAP))
    # Tag-on-create is TagResource over every key of the account and Region (KMS "Controlling access to tags").
    assert allowed(deploy(), "kms:TagResource", f"{KEY}/new", request_tags(PROGRAM))


def test_the_deploy_role_cannot_retag_a_key_into_or_out_of_the_program_set() -> None:
    into = request_tags(PROGRAM)
    # A bootstrap key: by ARN and by tag.
    for key in BOOTSTRAP_KEYS:
        assert not allowed(deploy(), "kms:TagResource", key, {**into, **resource_tags(BOOTSTRAP)})
    assert not allowed(deploy(), "kms:TagResource", f"{KEY}/added-later", {**into, **resource_tags(BOOTSTRAP)})
    # A key tagged for anyone else.
    other = resource_tags({documents.PROGRAM_KEY_TAG: "payroll"})
    assert not allowed(deploy(), "kms:TagResource", FOREIGN_KEY, {**into, **other})
    # A program key cannot leave the set (which would end the deny-free path to re-entering it) ...
    program = resource_tags(PROGRAM)
    out = request_tags({documents.PROGRAM_KEY_TAG: "payroll"})
    assert not allowed(deploy(), "kms:TagResource", ALERTS_KEY, {**out, **program})
    assert not allowed(
        deploy(), "kms:UntagResource", ALERTS_KEY, {"aws:TagKeys": [documents.PROGRAM_KEY_TAG], **program}
    )
    # ... and a bootstrap key cannot lose its tag.
    assert not allowed(
        deploy(),
        "kms:UntagResource",
        STATE_KEY,
        {"aws:TagKeys": [documents.PROGRAM_KEY_TAG], **resource_tags(BOOTSTRAP)},
    )
    # Other tags on a program key stay the program's business.
    assert allowed(deploy(), "kms:TagResource", ALERTS_KEY, {**request_tags({"team": "ai"}), **program})


def test_the_deploy_role_cannot_repoint_or_delete_the_bootstrap_aliases() -> None:
    for alias in ("gantry-state", "gantry-secrets", "gantry-secrets-prod", "gantry-secrets-new"):
        arn = SCOPE.arn("kms", f"alias/{alias}")
        for action in ("kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"):
            assert not allowed(deploy(), action, arn), (action, alias)
    assert allowed(deploy(), "kms:CreateAlias", SCOPE.arn("kms", "alias/gantry-alerts"))


# --- Stack secrets: one key per environment ----------------------------------------------------------------


def test_each_role_decrypts_only_its_own_environments_secrets() -> None:
    assert allowed(preview(DEV_KEY), "kms:Decrypt", DEV_KEY)
    assert not allowed(preview(DEV_KEY), "kms:Decrypt", PROD_KEY)
    assert not allowed(preview(DEV_KEY), "kms:Decrypt", SHARED_KEY)
    assert not allowed(preview(DEV_KEY), "kms:Encrypt", DEV_KEY)
    assert allowed(deploy("prod", PROD_KEY), "kms:Encrypt", PROD_KEY)
    assert not allowed(deploy("dev", DEV_KEY), "kms:Decrypt", PROD_KEY)
    assert not allowed(deploy("prod", PROD_KEY), "kms:Decrypt", DEV_KEY)
    for documents_ in (preview(), deploy()):
        assert not allowed(documents_, "kms:Decrypt", SHARED_KEY)


# --- State: each deploy writes only its own stack's objects ---------------------------------------------


# What `pulumi up -s <stack>` writes in the DIY backend (pulumi/pulumi pkg/backend/diy/store.go, lock.go).
def _stack_objects(stack: str) -> list[str]:
    return [
        f"{BUCKET}/.pulumi/stacks/gantry/{stack}.json",
        f"{BUCKET}/.pulumi/stacks/gantry/{stack}.json.bak",
        f"{BUCKET}/.pulumi/stacks/gantry/{stack}.json.gz",
        f"{BUCKET}/.pulumi/history/gantry/{stack}/{stack}-1765152000000000000.history.json",
        f"{BUCKET}/.pulumi/history/gantry/{stack}/{stack}-1765152000000000000.checkpoint.json",
        f"{BUCKET}/.pulumi/backups/gantry/{stack}/{stack}.1765152000000000000.json",
        f"{BUCKET}/.pulumi/journal/gantry/{stack}/0001.json",
        f"{BUCKET}/.pulumi/locks/organization/gantry/{stack}/2f5e1c3a-lock.json",
    ]


@pytest.mark.parametrize("action", ["s3:PutObject", "s3:DeleteObject"])
def test_each_deploy_role_writes_only_its_own_stacks_state(action: str) -> None:
    dev, prod = deploy("dev", DEV_KEY), deploy("prod", PROD_KEY)
    for key in _stack_objects("dev"):
        assert allowed(dev, action, key), key
        assert not allowed(prod, action, key), key
    for key in _stack_objects("prod"):
        assert allowed(prod, action, key), key
        assert not allowed(dev, action, key), key
    # Nothing else in the bucket: another project's stack, a look-alike stack name, the backend's metadata.
    for key in (
        f"{BUCKET}/.pulumi/stacks/other/dev.json",
        f"{BUCKET}/.pulumi/stacks/gantry/dev-copy.json",
        f"{BUCKET}/.pulumi/meta.yaml",
        f"{BUCKET}/.pulumi/locks/organization/gantry/prod/x.json",
    ):
        assert not allowed(dev, action, key), key
    # Every state object stays readable (a stack reads its own; previews read all).
    assert allowed(dev, "s3:GetObject", _stack_objects("prod")[0])


def test_the_synthesised_deploy_roles_write_only_their_own_stack(graph) -> None:
    bucket = graph.one("aws:s3/bucket:Bucket").outputs["arn"]
    dev, prod = (
        _role_documents(graph, "gantry-delivery-deploy-dev"),
        _role_documents(graph, "gantry-delivery-deploy-prod"),
    )
    assert allowed(prod, "s3:PutObject", f"{bucket}/.pulumi/stacks/gantry/prod.json")
    assert not allowed(dev, "s3:PutObject", f"{bucket}/.pulumi/stacks/gantry/prod.json")
    assert not allowed(prod, "s3:DeleteObject", f"{bucket}/.pulumi/locks/organization/gantry/dev/1.json")


# --- The boundary: gantry's secrets and parameters only --------------------------------------------------


@pytest.mark.parametrize(
    ("action", "resource", "expected"),
    [
        ("secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:gantry-secrets-api-keys-Ab12Cd"), True),
        ("secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:gantry/tenant-keys-Ab12Cd"), True),
        ("secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:payroll/db-Ab12Cd"), False),
        ("secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:gantryx-Ab12Cd"), False),
        ("ssm:GetParameters", SCOPE.arn("ssm", "parameter/gantry/openai-key"), True),
        ("ssm:GetParameters", SCOPE.arn("ssm", "parameter/gantry-openai-key"), True),
        ("ssm:GetParameters", SCOPE.arn("ssm", "parameter/payroll/db-password"), False),
        ("ssm:GetParameters", SCOPE.arn("ssm", "parameter/gantryx"), False),
    ],
)
def test_a_bounded_role_reads_only_gantrys_secrets_and_parameters(action: str, resource: str, expected: bool) -> None:
    assert allowed(BOUNDARY, action, resource) is expected


def test_a_bounded_role_changes_no_trust_policy() -> None:
    for action in ("iam:UpdateAssumeRolePolicy", "iam:CreateRole", "iam:PutRolePolicy"):
        assert not allowed(BOUNDARY, action, SCOPE.arn("iam", "role/gantry/gantry-roles-task-1", regional=False))


# --- The preview: parameter metadata and versions, never a plaintext value --------------------------------


def test_the_preview_reads_versions_of_gantrys_parameters_and_no_values() -> None:
    """The plan needs each referenced SSM parameter's version (components/workload/secrets.py: GetParameter with
    WithDecryption false, which stamps the task definition), so GetParameter stays, on gantry's parameters
    only; a SecureString's value then comes back encrypted, and no delivery role may decrypt through SSM.
    No bulk reads (GetParameters, GetParametersByPath) and no history."""
    gantry, other = SCOPE.arn("ssm", "parameter/gantry/openai-key"), SCOPE.arn("ssm", "parameter/payroll/db")
    assert allowed(preview(), "ssm:GetParameter", gantry)
    assert not allowed(preview(), "ssm:GetParameter", other)
    for action in ("ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"):
        assert not allowed(preview(), action, gantry), action
    via_ssm = {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"}
    assert not allowed(preview(), "kms:Decrypt", f"{KEY}/any-parameter-key", via_ssm)
    assert not allowed(preview(), "kms:Decrypt", SCOPE.arn("kms", "alias/aws/ssm"), via_ssm)
    # Secrets: metadata and version ids (get_secret_versions), never a value.
    secret = SCOPE.arn("secretsmanager", "secret:gantry/tenant-keys-Ab12Cd")
    assert allowed(preview(), "secretsmanager:ListSecretVersionIds", secret)
    assert not allowed(preview(), "secretsmanager:GetSecretValue", secret)


# --- Trust changes stay on gantry's roles ----------------------------------------------------------------


def test_trust_is_written_only_on_gantry_roles_whatever_else_allows_it() -> None:
    """IAM cannot read the trust document a request sets (no condition key does), so the deploy role's
    policy confines where one may be written: under /gantry/, even with a broad Allow added later."""
    broad = {
        "Version": documents.VERSION,
        "Statement": [{"Effect": "Allow", "Action": ["iam:CreateRole", "iam:UpdateAssumeRolePolicy"], "Resource": "*"}],
    }
    gantry = SCOPE.arn("iam", "role/gantry/gantry-roles-task-1", regional=False)
    for action in ("iam:CreateRole", "iam:UpdateAssumeRolePolicy"):
        for role in ("role/admin", "role/service-role/payroll", "role/gantry-delivery/gantry-delivery-deploy-prod"):
            assert not allowed([*deploy(), broad], action, SCOPE.arn("iam", role, regional=False)), (action, role)
    assert allowed(deploy(), "iam:UpdateAssumeRolePolicy", gantry)
    assert allowed(deploy(), "iam:CreateRole", gantry, {"iam:PermissionsBoundary": SCOPE.boundary_arn})
    assert not allowed(deploy(), "iam:CreateRole", gantry)


# --- The repository-id subject -----------------------------------------------------------------------------


def test_the_subject_names_the_repository_by_name_or_by_its_ids() -> None:
    """GitHub's default `sub` is `repo:<owner>/<repo>:<context>`; with the repository's subject template set
    to repository_owner_id, repository_id and context, each claim is `<key>:<value>` in template order,
    then the context (`environment:<name>`, `pull_request`) ("OpenID Connect reference", customizing the
    subject claims, https://docs.github.com/actions/reference/openid-connect-reference)."""
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"

    def sub(**kwargs: Any) -> str:
        [statement] = documents.github_trust_policy(provider_arn=provider, repository="acme-ai/gantry", **kwargs)[
            "Statement"
        ]
        return statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]

    assert sub(subject="environment:prod") == "repo:acme-ai/gantry:environment:prod"
    assert (
        sub(subject="environment:prod", repository_ids=("1234567", "89012345"))
        == "repository_owner_id:1234567:repository_id:89012345:environment:prod"
    )
    assert (
        sub(subject="pull_request", repository_ids=("1", "2")) == "repository_owner_id:1:repository_id:2:pull_request"
    )
    assert documents.REPOSITORY_ID_CLAIM_KEYS == ("repository_owner_id", "repository_id", "context")


# --- the synthesised bootstrap ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return synthesize_bootstrap()


def _role_documents(graph, role_name: str) -> list[dict[str, Any]]:
    role = graph.named(role_name)
    arns = {
        a.inputs["policyArn"]
        for a in graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.depends_on(role)
    }
    managed = [p.json("policy") for p in graph.of_type("aws:iam/policy:Policy") if p.outputs["arn"] in arns]
    inline = [p.json("policy") for p in graph.of_type("aws:iam/rolePolicy:RolePolicy") if p.depends_on(role)]
    return [*managed, *inline]


def test_the_synthesised_roles_cannot_touch_the_bootstrap_keys(graph) -> None:
    keys = {k.name: k for k in graph.of_type("aws:kms/key:Key")}
    assert all(k.inputs["tags"] == BOOTSTRAP for k in keys.values())
    for env in ("dev", "prod"):
        held = _role_documents(graph, f"gantry-delivery-deploy-{env}")
        for key in keys.values():
            arn = key.outputs["arn"]
            for action in KEY_ADMIN:
                # Even if the tag were the program's: the ARN deny holds.
                assert not allowed(held, action, arn, resource_tags(PROGRAM)), (env, key.name, action)
        own, other = (
            keys[f"gantry-state-secrets-key-{env}"],
            keys[f"gantry-state-secrets-key-{'prod' if env == 'dev' else 'dev'}"],
        )
        assert allowed(held, "kms:Decrypt", own.outputs["arn"])
        assert not allowed(held, "kms:Decrypt", other.outputs["arn"])


def test_the_synthesised_dev_preview_cannot_decrypt_prods_secrets(graph) -> None:
    keys = {k.name: k.outputs["arn"] for k in graph.of_type("aws:kms/key:Key")}
    dev = [graph.named("gantry-delivery-preview-policy").json("policy")]
    prod = [graph.named("gantry-delivery-preview-prod-policy").json("policy")]
    assert allowed(dev, "kms:Decrypt", keys["gantry-state-secrets-key-dev"])
    assert not allowed(dev, "kms:Decrypt", keys["gantry-state-secrets-key-prod"])
    assert not allowed(dev, "kms:Decrypt", keys["gantry-state-secrets-key"])
    assert allowed(prod, "kms:Decrypt", keys["gantry-state-secrets-key-prod"])
    assert not allowed(prod, "kms:Decrypt", keys["gantry-state-secrets-key-dev"])


def test_the_synthesised_boundary_confines_secrets_and_parameters(graph) -> None:
    boundary = [graph.named("gantry-delivery-boundary").json("policy")]
    assert not allowed(boundary, "secretsmanager:GetSecretValue", SCOPE.arn("secretsmanager", "secret:payroll-Ab12Cd"))
    assert not allowed(boundary, "ssm:GetParameters", SCOPE.arn("ssm", "parameter/payroll/db"))
    assert allowed(boundary, "ssm:GetParameters", SCOPE.arn("ssm", "parameter/gantry/openai-key"))


def test_the_repository_id_subject_reaches_every_role() -> None:
    import asyncio

    asyncio.set_event_loop(asyncio.new_event_loop())
    graph = run_bootstrap(
        {
            **CONFIG,
            "gantry-bootstrap:oidcSubject": "repository-id",
            "gantry-bootstrap:githubOwnerId": "1234567",
            "gantry-bootstrap:githubRepositoryId": "89012345",
        }
    )
    subjects = {
        role.name: role.json("assumeRolePolicy")["Statement"][0]["Condition"]["StringEquals"][
            "token.actions.githubusercontent.com:sub"
        ]
        for role in graph.of_type("aws:iam/role:Role")
    }
    ids = "repository_owner_id:1234567:repository_id:89012345"
    assert subjects == {
        "gantry-delivery-preview": f"{ids}:pull_request",
        "gantry-delivery-preview-prod": f"{ids}:environment:prod-preview",
        "gantry-delivery-deploy-dev": f"{ids}:environment:dev",
        "gantry-delivery-deploy-prod": f"{ids}:environment:prod",
    }


# --- Paging: the prod deploy role publishes to its own page topic (scripts/ci/page.py) ----------------------


def _topic_policy(stack: str) -> tuple[str, list[dict[str, Any]]]:
    from components.observability.notifications import Publishers, topic_policy

    arn = SCOPE.arn("sns", f"gantry-{stack}-page")
    publishers = Publishers(account_id=ACCOUNT, partition="aws", region="eu-west-1", alarm_prefix=f"gantry-{stack}")
    return arn, [topic_policy(arn, publishers)]


def _as(role: str) -> dict[str, str]:
    """The request context of an assumed role's session over TLS (aws:PrincipalArn is the role's ARN)."""
    return {
        "aws:PrincipalArn": SCOPE.arn("iam", role, regional=False),
        "aws:PrincipalIsAWSService": "false",
        "aws:SecureTransport": "true",
    }


def test_the_prod_deploy_role_pages_through_its_own_topic_and_nobody_else_does() -> None:
    """Same account: the role's identity policy grants, the topic policy's Deny may refuse ("Policy
    evaluation logic"); both are evaluated together."""
    topic, policy = _topic_policy("prod")
    prod_role = "role/gantry-delivery/gantry-delivery-deploy-prod-1a2b3c4"
    assert allowed([*deploy("prod", PROD_KEY), *policy], "sns:Publish", topic, _as(prod_role))
    # dev's deploy role: its identity policy covers gantry-dev-* only.
    dev_role = "role/gantry-delivery/gantry-delivery-deploy-dev-5d6e7f8"
    assert not allowed([*deploy("dev", DEV_KEY), *policy], "sns:Publish", topic, _as(dev_role))
    # A preview role sits under the same path but holds no sns:Publish.
    assert not allowed(
        [*preview(PROD_KEY), *policy],
        "sns:Publish",
        topic,
        _as("role/gantry-delivery/gantry-delivery-preview-prod-9a8b7c6"),
    )
    # An administrator with sns:* everywhere is still refused by the topic.
    admin = {"Version": documents.VERSION, "Statement": [{"Effect": "Allow", "Action": "sns:*", "Resource": "*"}]}
    assert not allowed([admin, *policy], "sns:Publish", topic, _as("role/Admin"))
    # A role elsewhere with a copy of the deploy policies is refused too: the exception is the path.
    assert not allowed([*deploy("prod", PROD_KEY), *policy], "sns:Publish", topic, _as("role/gantry-deploy-prod"))
    # Plain HTTP stays refused for everyone.
    plain = {**_as(prod_role), "aws:SecureTransport": "false"}
    assert not allowed([*deploy("prod", PROD_KEY), *policy], "sns:Publish", topic, plain)


def test_the_deploy_role_encrypts_page_messages_with_program_keys_through_sns_only() -> None:
    via_sns = {"kms:ViaService": "sns.eu-west-1.amazonaws.com", **resource_tags(PROGRAM)}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert allowed(deploy("prod", PROD_KEY), action, ALERTS_KEY, via_sns), action
        assert not allowed(deploy("prod", PROD_KEY), action, ALERTS_KEY, resource_tags(PROGRAM)), action
        assert not allowed(
            deploy("prod", PROD_KEY), action, FOREIGN_KEY, {"kms:ViaService": "sns.eu-west-1.amazonaws.com"}
        )
        assert not allowed(deploy("prod", PROD_KEY), action, SHARED_KEY, {**via_sns, **resource_tags(BOOTSTRAP)})
