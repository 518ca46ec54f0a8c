"""The pull-request workflow's previews against the bootstrap's roles: each stack's preview job assumes its
own environment's preview role, and no job of the workflow can become a deploy role.

The oracle is the bootstrap itself, synthesized under mocks (tests/bootstrap/bootstrap_runner.py): every
role's trust policy names one OIDC `sub`, and the test computes the `sub` GitHub gives each job of the
workflow (`repo:OWNER/REPO:environment:NAME` for a job that names an environment, else
`repo:OWNER/REPO:pull_request` for a pull_request run; "Example subject claims",
https://docs.github.com/en/actions/reference/security/oidc). A job reaches exactly the roles whose trust
equals its `sub`. Security stance: a preview of dev must not decrypt prod's secrets (issue 19), and a
pull request, whose workflow file it can edit, must never reach a deploy role; the role variable a job
names is checked too, so a job cannot ask for another environment's role even where trust would refuse it.
Each check is also run on a mutated workflow to prove it fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

# bootstrap_runner lives with the bootstrap's own tests (mypy finds it through mypy_path).
from tests.bootstrap.bootstrap_runner import CONFIG, run_bootstrap
from tests.test_workflows import WORKFLOWS, job_steps, load

PULL_REQUEST = WORKFLOWS / "pull-request.yml"
CREDENTIALS = "aws-actions/configure-aws-credentials@"
SUB = "token.actions.githubusercontent.com:sub"
REPOSITORY = f"{CONFIG['gantry-bootstrap:githubOwner']}/{CONFIG['gantry-bootstrap:githubRepo']}"
ENVIRONMENTS = tuple(CONFIG["gantry-bootstrap:environments"])


@pytest.fixture(scope="module")
def trusted() -> dict[str, str]:
    """Bootstrap role name -> the one `sub` its trust policy accepts."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        graph = run_bootstrap()
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    subjects = {}
    for role in graph.of_type("aws:iam/role:Role"):
        [statement] = role.json("assumeRolePolicy")["Statement"]
        subjects[role.name] = statement["Condition"]["StringEquals"][SUB]
    return subjects


def preview_role(environment: str) -> str:
    """The bootstrap's logical name of an environment's preview role (bootstrap/identity.py)."""
    return "gantry-delivery-preview" if environment == "dev" else f"gantry-delivery-preview-{environment}"


def deploy_role(environment: str) -> str:
    return f"gantry-delivery-deploy-{environment}"


def job_subject(job: dict[str, Any]) -> str:
    """The `sub` of the job's OIDC token in a pull_request run (GitHub's default subject template)."""
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    context = f"environment:{environment}" if environment else "pull_request"
    return f"repo:{REPOSITORY}:{context}"


def previewed_stack(job: dict[str, Any]) -> str | None:
    stacks = [
        s["with"]["stack-name"]
        for s in job_steps(job)
        if s.get("uses", "").startswith("pulumi/actions@") and s.get("with", {}).get("command") == "preview"
    ]
    assert len(stacks) <= 1, stacks
    return stacks[0] if stacks else None


def role_variable(job: dict[str, Any]) -> str | None:
    roles = [s["with"]["role-to-assume"] for s in job_steps(job) if s.get("uses", "").startswith(CREDENTIALS)]
    assert len(roles) <= 1, roles
    return roles[0] if roles else None


def reachable(job: dict[str, Any], trusted: dict[str, str]) -> set[str]:
    """The bootstrap roles whose trust accepts the job's token (none without id-token: write)."""
    if job.get("permissions", {}).get("id-token") != "write":
        return set()
    subject = job_subject(job)
    return {role for role, sub in trusted.items() if sub == subject}


def preview_problems(workflow: dict[str, Any], trusted: dict[str, str]) -> list[str]:
    """Each committed stack has a preview job; it names its own environment's role variable and its token
    is accepted by exactly that environment's preview role."""
    problems = []
    previews = {stack: name for name, job in workflow["jobs"].items() if (stack := previewed_stack(job))}
    if sorted(previews) != sorted(ENVIRONMENTS):
        problems.append(f"previewed stacks {sorted(previews)}, the bootstrap's environments {sorted(ENVIRONMENTS)}")
    for stack, name in sorted(previews.items()):
        job = workflow["jobs"][name]
        expected = f"${{{{ vars.GANTRY_PREVIEW_ROLE_ARN_{stack.upper()} }}}}"
        if role_variable(job) != expected:
            problems.append(f"{name}: previews {stack} as {role_variable(job)}, not {expected}")
        roles = reachable(job, trusted)
        if roles != {preview_role(stack)}:
            problems.append(
                f"{name}: its token ({job_subject(job)}) is trusted by {sorted(roles)}, not {preview_role(stack)}"
            )
    return problems


def deploy_reach_problems(workflow: dict[str, Any], trusted: dict[str, str]) -> list[str]:
    """No job of the pull-request workflow names a deploy role or holds a token a deploy role trusts."""
    problems = []
    deploy_roles = {deploy_role(env) for env in ENVIRONMENTS}
    for name, job in workflow["jobs"].items():
        role = role_variable(job)
        if role is not None and "DEPLOY" in role.upper():
            problems.append(f"{name}: assumes {role}")
        if reached := reachable(job, trusted) & deploy_roles:
            problems.append(f"{name}: its token ({job_subject(job)}) is trusted by {sorted(reached)}")
    return problems


def drift_problems(workflow: dict[str, Any]) -> list[str]:
    """The preview jobs are one job per stack: the same steps but for the stack and its role."""
    previews = {stack: job for job in workflow["jobs"].values() if (stack := previewed_stack(job))}

    def normalised(stack: str) -> str:
        job = copy.deepcopy(previews[stack])
        job.pop("environment", None)
        return repr(job).replace(stack.upper(), "<STACK>").replace(stack, "<stack>")

    shapes = {stack: normalised(stack) for stack in sorted(previews)}
    if not shapes:
        return []
    first = min(shapes)
    return [f"preview of {s} differs from {first}'s" for s in sorted(shapes) if shapes[s] != shapes[first]]


# --- on the committed workflow ------------------------------------------------------------------------


def test_each_previewed_stack_uses_its_own_environments_preview_role(trusted: dict[str, str]) -> None:
    workflow = load(PULL_REQUEST)
    assert preview_problems(workflow, trusted) == []
    # What that means today: dev's preview role trusts pull requests, prod's the prod-preview environment.
    assert trusted[preview_role("dev")] == f"repo:{REPOSITORY}:pull_request"
    assert trusted[preview_role("prod")] == f"repo:{REPOSITORY}:environment:prod-preview"
    assert "environment" not in workflow["jobs"]["preview-dev"]
    assert workflow["jobs"]["preview-prod"]["environment"] == "prod-preview"


def test_no_job_of_the_pull_request_workflow_can_reach_a_deploy_role(trusted: dict[str, str]) -> None:
    workflow = load(PULL_REQUEST)
    assert deploy_reach_problems(workflow, trusted) == []
    # The check sees every job with a token: the two previews (the offline plan asks for none).
    assert {n for n, j in workflow["jobs"].items() if j.get("permissions", {}).get("id-token")} == {
        "preview-dev",
        "preview-prod",
    }


def test_the_preview_jobs_differ_only_in_their_stack_and_role() -> None:
    assert drift_problems(load(PULL_REQUEST)) == []


# --- the checks fail on mutated workflows ----------------------------------------------------------------


def _mutant(change: Any) -> dict[str, Any]:
    workflow = copy.deepcopy(load(PULL_REQUEST))
    change(workflow)
    return workflow


def _credentials(workflow: dict[str, Any], job: str) -> dict[str, Any]:
    step = next(s for s in workflow["jobs"][job]["steps"] if s.get("uses", "").startswith(CREDENTIALS))
    given: dict[str, Any] = step["with"]
    return given


def test_a_preview_with_another_environments_role_fails(trusted: dict[str, str]) -> None:
    def swap(w: dict[str, Any]) -> None:
        _credentials(w, "preview-prod")["role-to-assume"] = "${{ vars.GANTRY_PREVIEW_ROLE_ARN_DEV }}"

    assert preview_problems(_mutant(swap), trusted) == [
        "preview-prod: previews prod as ${{ vars.GANTRY_PREVIEW_ROLE_ARN_DEV }}, "
        "not ${{ vars.GANTRY_PREVIEW_ROLE_ARN_PROD }}"
    ]


def test_a_prod_preview_outside_its_environment_or_dev_inside_one_fails(trusted: dict[str, str]) -> None:
    # Without prod-preview the prod job's token is a pull request's: dev's preview role's, not prod's.
    unguarded = _mutant(lambda w: w["jobs"]["preview-prod"].pop("environment"))
    assert preview_problems(unguarded, trusted) == [
        f"preview-prod: its token (repo:{REPOSITORY}:pull_request) is trusted by "
        "['gantry-delivery-preview'], not gantry-delivery-preview-prod"
    ]
    # A dev preview in an environment loses the pull_request subject its role trusts.
    enclosed = _mutant(lambda w: w["jobs"]["preview-dev"].update(environment="dev-preview"))
    assert preview_problems(enclosed, trusted) == [
        f"preview-dev: its token (repo:{REPOSITORY}:environment:dev-preview) is trusted by [], "
        "not gantry-delivery-preview"
    ]


def test_a_missing_stack_preview_fails(trusted: dict[str, str]) -> None:
    workflow = _mutant(lambda w: w["jobs"].pop("preview-prod"))
    assert preview_problems(workflow, trusted) == [
        "previewed stacks ['dev'], the bootstrap's environments ['dev', 'prod']"
    ]


def test_a_pull_request_job_in_a_deploy_environment_or_with_a_deploy_role_fails(trusted: dict[str, str]) -> None:
    in_prod = _mutant(lambda w: w["jobs"]["preview-prod"].update(environment="prod"))
    assert deploy_reach_problems(in_prod, trusted) == [
        f"preview-prod: its token (repo:{REPOSITORY}:environment:prod) is trusted by ['gantry-delivery-deploy-prod']"
    ]
    in_dev = _mutant(lambda w: w["jobs"]["preview-dev"].update(environment={"name": "dev"}))
    assert deploy_reach_problems(in_dev, trusted) == [
        f"preview-dev: its token (repo:{REPOSITORY}:environment:dev) is trusted by ['gantry-delivery-deploy-dev']"
    ]

    def deploy_role_variable(w: dict[str, Any]) -> None:
        _credentials(w, "preview-dev")["role-to-assume"] = "${{ vars.GANTRY_DEPLOY_ROLE_ARN_DEV }}"

    assert deploy_reach_problems(_mutant(deploy_role_variable), trusted) == [
        "preview-dev: assumes ${{ vars.GANTRY_DEPLOY_ROLE_ARN_DEV }}"
    ]


def test_a_drifted_preview_job_fails() -> None:
    def drift(w: dict[str, Any]) -> None:
        _credentials(w, "preview-prod")["role-duration-seconds"] = 7200

    assert drift_problems(_mutant(drift)) == ["preview of prod differs from dev's"]
