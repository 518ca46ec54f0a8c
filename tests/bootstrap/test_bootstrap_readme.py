"""bootstrap/README.md, held to the program: the stack file it tells an administrator to write synthesizes
the bootstrap under Pulumi's mocks (bootstrap_runner, as test_bootstrap.py does), with the per-environment
secrets keys, a preview role per environment and the outputs the README's later commands use.

The stack file is the README's ```yaml block that opens with `# bootstrap/Pulumi.<stack>.yaml`; its
`config:` is passed as the CLI passes it (lists JSON-encoded). It runs as written (repository-name
subject) and with its commented repository-id lines uncommented. Every key it names, commented or not,
must be a setting the program reads: bootstrap.settings.parse ignores unknown keys, so a misspelt key
would silently fall back to its default. The README's `pulumi stack init <env> --secrets-provider` and
`change-secrets-provider` values must be the program's `secretsProviders`, its `pulumi login s3://...` the
`backendUrl`, and its template the claims the trust policies expect. Every shell block is marked
`sh aws` (the repository's convention, tests/test_own_service_guide.py): none is run by a test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bootstrap import documents
from bootstrap.settings import KEYS, NAMESPACE, parse
from tests.bootstrap.bootstrap_runner import ACCOUNT, synthesize_bootstrap
from tests.harness import ROOT, Graph

README = ROOT / "bootstrap" / "README.md"
PROJECT = ROOT / "bootstrap" / "Pulumi.yaml"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "zsh"}
STACK_FILE = re.compile(r"\A# bootstrap/Pulumi\.([\w.-]+)\.yaml\n")
COMMENTED_SETTING = re.compile(rf"^(\s*)# ({NAMESPACE}:\w+:.*)$", re.MULTILINE)
SUB = "token.actions.githubusercontent.com:sub"


def blocks(text: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for info, body in FENCE.findall(text)]


def shell_commands(text: str) -> list[str]:
    return [
        line.split("  #")[0].strip()
        for info, body in blocks(text)
        if info.split()[:1] and info.split()[0] in SHELL_LANGUAGES
        for line in body.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def stack_file(text: str) -> tuple[str, str]:
    """(stack name, YAML text) of the README's stack file."""
    found = [(m.group(1), body) for info, body in blocks(text) if info == "yaml" and (m := STACK_FILE.match(body))]
    assert len(found) == 1, f"expected one `# bootstrap/Pulumi.<stack>.yaml` block, found {len(found)}"
    return found[0]


def uncommented(body: str) -> str:
    """The stack file with its commented settings switched on (the repository-id option)."""
    return COMMENTED_SETTING.sub(r"\1\2", body)


def config_of(body: str) -> dict[str, Any]:
    document = yaml.safe_load(body)
    assert set(document) == {"config"}, f"a stack file holds only config here, got {sorted(document)}"
    config: dict[str, Any] = document["config"]
    return config


def setting_keys(config: dict[str, Any]) -> set[str]:
    return {key.split(":", 1)[1] for key in config if key.startswith(f"{NAMESPACE}:")}


class _Recording(dict[str, str]):
    """Config values that remember every key parse() asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def real_settings() -> set[str]:
    """The keys bootstrap.settings.parse reads (its namespace stripped)."""
    values = _Recording({f"{NAMESPACE}:githubOwner": "acme-ai", f"{NAMESPACE}:githubRepo": "gantry"})
    parse(values, account_id=ACCOUNT, region="eu-west-1")
    return {key.split(":", 1)[1] for key in values.asked}


def _allows(document: dict[str, Any], action: str) -> Iterator[str]:
    """Resources an Allow statement grants `action` on."""
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow" and action in statement.get("Action", []):
            resources = statement["Resource"]
            yield from [resources] if isinstance(resources, str) else resources


TEXT = README.read_text()
STACK, BODY = stack_file(TEXT)
CONFIG = config_of(BODY)
ENVIRONMENTS: list[str] = CONFIG[f"{NAMESPACE}:environments"]
REGION: str = CONFIG["aws:region"]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return synthesize_bootstrap(CONFIG)


# --- the README's text --------------------------------------------------------------------------------


def test_every_shell_block_is_marked_as_needing_aws() -> None:
    shell = [(info, body) for info, body in blocks(TEXT) if info.split()[:1] and info.split()[0] in SHELL_LANGUAGES]
    assert shell, "the README shows no commands"
    for info, body in shell:
        assert info == "sh aws", f"unmarked shell block ({info!r}): {body[:80]}"


def test_the_stack_file_is_the_one_the_commands_create() -> None:
    assert yaml.safe_load(PROJECT.read_text())["name"] == NAMESPACE
    commands = shell_commands(TEXT)
    assert f"pulumi stack init {STACK}" in commands
    assert commands.index("cd bootstrap") < commands.index(f"pulumi stack init {STACK}")


def test_every_key_of_the_stack_file_is_a_real_setting() -> None:
    real = real_settings()
    # parse reads exactly the keys the settings model declares (bootstrap.settings.KEYS, one field each).
    assert real == set(KEYS)
    written = setting_keys(config_of(uncommented(BODY)))
    assert written - real == set(), f"not settings: {sorted(written - real)}"
    assert set(config_of(uncommented(BODY))) - {f"{NAMESPACE}:{k}" for k in written} == {"aws:region"}
    # The README's table documents every setting, and the project file declares none that is not one.
    for key in real:
        assert f"`{key}`" in TEXT, f"{key} is not documented in the README"
    assert set(yaml.safe_load(PROJECT.read_text())["config"]) <= real


# --- the stack file, synthesized ----------------------------------------------------------------------


def test_the_stack_file_creates_one_secrets_key_per_environment(graph: Graph) -> None:
    keys = {k.name: k for k in graph.of_type("aws:kms/key:Key")}
    aliases = {a.inputs["name"]: a for a in graph.of_type("aws:kms/alias:Alias")}
    prefix = CONFIG[f"{NAMESPACE}:resourcePrefix"]
    for env in ENVIRONMENTS:
        key = keys[f"gantry-state-secrets-key-{env}"]
        assert key.opts.protect and key.inputs["enableKeyRotation"] is True
        assert aliases[f"alias/{prefix}-secrets-{env}"].inputs["targetKeyId"] == key.outputs["id"]
    # One per environment, the state key and the shared key kept for re-keying: no other.
    assert len(keys) == len(ENVIRONMENTS) + 2
    assert graph.exports["secretsProviders"] == {
        env: f"awskms://alias/{prefix}-secrets-{env}?region={REGION}" for env in ENVIRONMENTS
    }


def test_the_stack_file_creates_a_preview_role_per_environment_decrypting_only_its_key(graph: Graph) -> None:
    repository = f"{CONFIG[f'{NAMESPACE}:githubOwner']}/{CONFIG[f'{NAMESPACE}:githubRepo']}"
    pr_env = CONFIG[f"{NAMESPACE}:pullRequestEnvironment"]
    keys = {env: graph.named(f"gantry-state-secrets-key-{env}").outputs["arn"] for env in ENVIRONMENTS}
    roles = {}
    for env in ENVIRONMENTS:
        name = "gantry-delivery-preview" if env == pr_env else f"gantry-delivery-preview-{env}"
        role = roles[env] = graph.named(name)
        [statement] = role.json("assumeRolePolicy")["Statement"]
        context = "pull_request" if env == pr_env else f"environment:{env}-preview"
        assert statement["Condition"]["StringEquals"][SUB] == f"repo:{repository}:{context}"
        assert role.inputs["maxSessionDuration"] == 3600
        decrypts = set(_allows(graph.named(f"{name}-policy").json("policy"), "kms:Decrypt"))
        assert keys[env] in decrypts
        assert not decrypts & {arn for other, arn in keys.items() if other != env}, f"{env} preview reads another's"
    assert graph.exports["previewRoleArns"] == {env: role.outputs["arn"] for env, role in roles.items()}


def test_the_stack_file_exports_what_the_readme_uses(graph: Graph) -> None:
    assert {
        "backendUrl",
        "secretsProviders",
        "previewRoleArn",
        "previewRoleArns",
        "deployRoleArns",
        "permissionsBoundaryArn",
        "workloadRolePath",
    } <= set(graph.exports)
    for output in ("backendUrl", "secretsProviders", "previewRoleArns", "deployRoleArns", "permissionsBoundaryArn"):
        assert f"`{output}`" in TEXT, output
    assert set(graph.exports["deployRoleArns"]) == set(ENVIRONMENTS)
    commands = shell_commands(TEXT)
    # The mocks echo no bucket name back, so the README's login is checked against the name requested.
    bucket = graph.one("aws:s3/bucket:Bucket")
    assert graph.exports["backendUrl"] == f"s3://{bucket.outputs['bucket']}"
    assert f"pulumi login s3://{bucket.inputs['bucket']}" in commands
    providers = graph.exports["secretsProviders"]
    for env in ENVIRONMENTS:
        assert f'pulumi stack init {env} --secrets-provider "{providers[env]}"' in commands
        assert f'pulumi stack change-secrets-provider -s {env} "{providers[env]}"' in commands
    # The migration leaves the shared key's provider, which no role may use any more.
    assert f"awskms://alias/{CONFIG[f'{NAMESPACE}:resourcePrefix']}-secrets?region={REGION}" in TEXT


def test_the_repository_id_option_synthesizes_with_id_subjects() -> None:
    config = config_of(uncommented(BODY))
    assert config[f"{NAMESPACE}:oidcSubject"] == "repository-id"
    owner_id, repository_id = config[f"{NAMESPACE}:githubOwnerId"], config[f"{NAMESPACE}:githubRepositoryId"]
    graph = synthesize_bootstrap(config)
    roles = graph.of_type("aws:iam/role:Role")
    assert len(roles) == 2 * len(ENVIRONMENTS)
    prefix = f"repository_owner_id:{owner_id}:repository_id:{repository_id}:"
    for role in roles:
        [statement] = role.json("assumeRolePolicy")["Statement"]
        assert statement["Condition"]["StringEquals"][SUB].startswith(prefix), role.name
    # The template the README sets is the one those subjects come from.
    [put] = [c for c in shell_commands(TEXT) if "customization/sub --input -" in c]
    template = json.loads(re.search(r"echo '(\{.*\})'", put).group(1))  # type: ignore[union-attr]
    assert template == {"use_default": False, "include_claim_keys": list(documents.REPOSITORY_ID_CLAIM_KEYS)}
