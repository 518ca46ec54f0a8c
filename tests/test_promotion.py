"""Build once, promote the same digest: dev builds into the one repository, prod deploys the digest dev
exported, from dev's repository, and refuses one ECR does not hold before anything is registered. The
commit being deployed is on the image (OCI label) and in the deployment's description / service tag."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import pulumi
import pytest

from components.blue_green.provider import DESCRIPTION_LIMIT, deployment_description
from components.settings.invocation import in_workflow, promotion_request
from components.settings.promotion import (
    PromotionFacts,
    PromotionRequest,
    RevisionError,
    SourceRevision,
    evaluated_tag,
    promotion_problems,
    repository_name,
    source_revision,
)
from tests.harness import (
    ACCOUNT,
    CURRENT_RUN,
    DEV_REPOSITORY,
    DEV_REPOSITORY_URL,
    DEV_STACK,
    DIGEST,
    EARLIER_DIGEST,
    EARLIER_RUN,
    REGION,
    Graph,
    run_program,
    stack_config,
    with_test_secrets,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "aws:ecr/repository:Repository"
BUILD = "docker-build:index:Image"
DEV_REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{DEV_REPOSITORY}"


@pytest.fixture(autouse=True)
def commit(monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", SHA)


def image_of(g: Graph) -> str:
    [container] = json.loads(
        g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").inputs["containerDefinitions"]
    )
    return container["image"]


def prod_with(image: dict, graph: Graph | None = None) -> Graph:
    config, secret_keys = with_test_secrets(stack_config("prod"))
    config["gantry:image"] = image
    return run_program("prod", config, secret_keys, graph)


# --- the committed stacks ------------------------------------------------------------------------------


def test_dev_builds_into_the_repository_it_owns_with_the_commit_on_the_image():
    g = run_program("dev")
    repo = g.one(REPO)
    build = g.one(BUILD)
    assert build.inputs["exports"][0]["registry"]["names"] == [repo.outputs["repositoryUrl"]]
    assert build.inputs["labels"]["org.opencontainers.image.revision"] == SHA
    assert "gantry.source-tree" not in build.inputs["labels"]
    assert image_of(g) == f"{repo.outputs['repositoryUrl']}@{DIGEST}"
    # What prod reads back (the harness's DEV_OUTPUTS stands for exactly these).
    assert g.exports["repositoryUrl"] == repo.outputs["repositoryUrl"] == DEV_REPOSITORY_URL
    assert g.exports["imageDigest"] == DIGEST
    # prod's rollback images live here: neither destroy nor a replace deletes the repository.
    assert repo.inputs["forceDelete"] is False and repo.opts.retain_on_delete is True
    # Rolling ECS has no deployment description: the service (and its tasks) carry the commit.
    assert g.one("aws:ecs/service:Service", "gantry-service").inputs["tags"] == {
        "gantry:source-revision": f"commit {SHA}"
    }


def test_prod_promotes_devs_digest_without_building_or_a_repository():
    g = run_program("prod")
    assert g.of_type(BUILD) == []
    assert g.of_type(REPO) == [] and g.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy") == []
    assert image_of(g) == f"{DEV_REPOSITORY_URL}@{DIGEST}"
    assert g.exports["imageDigest"] == DIGEST and g.exports["repositoryUrl"] == DEV_REPOSITORY_URL
    # The execution role pulls from dev's repository, exactly.
    policy = g.named("gantry-roles-execution-policy").json("policy")
    pulls = [s for s in policy["Statement"] if "ecr:BatchGetImage" in s["Action"]]
    assert [s["Resource"] for s in pulls] == [DEV_REPOSITORY_ARN]
    # The digest was checked against ECR, through the source stack's outputs, before anything existed.
    calls = dict(g.call_args)
    assert calls["aws:ecr/getImage:getImage"] == {"repositoryName": DEV_REPOSITORY, "imageDigest": DIGEST}
    assert ("pulumi:pulumi:readStackOutputs", {"name": DEV_STACK}) in g.call_args


def test_one_repository_across_both_stacks():
    assert len(run_program("dev").of_type(REPO)) + len(run_program("prod").of_type(REPO)) == 1


def test_the_codedeploy_deployment_names_the_commit():
    g = run_program("prod")
    [deploy] = [r for r in g.resources if r.name == "gantry-deploy-deploy"]
    task_definition = g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").outputs["arn"]
    assert deploy.inputs["description"] == f"gantry prod from commit {SHA}: {task_definition}"


def test_a_pinned_earlier_digest_is_promoted():
    g = prod_with({"promoteFrom": "dev", "digest": EARLIER_DIGEST})
    assert image_of(g) == f"{DEV_REPOSITORY_URL}@{EARLIER_DIGEST}"


def test_a_fully_qualified_source_stack():
    g = prod_with({"promoteFrom": DEV_STACK})
    assert image_of(g) == f"{DEV_REPOSITORY_URL}@{DIGEST}"


# --- refusals: before any resource ---------------------------------------------------------------------


def refused(image: dict, graph: Graph | None = None) -> str:
    graph = graph if graph is not None else Graph()
    with pytest.raises(pulumi.RunError) as err:
        prod_with(image, graph)
    assert graph.resources == []
    return str(err.value)


def test_a_digest_not_in_the_repository_is_refused():
    unknown = "sha256:" + "ef" * 32
    message = refused({"promoteFrom": "dev", "digest": unknown})
    assert f"gantry:image.digest: {unknown} is not an image in {DEV_REPOSITORY_URL}" in message


def test_devs_digest_gone_from_the_repository_is_refused():
    # The lifecycle policy expired it, or someone deleted it by hand: prod must not deploy a dangling digest.
    graph = Graph(ecr_images=frozenset({(DEV_REPOSITORY, EARLIER_DIGEST)}))
    assert f"gantry:image.promoteFrom: {DIGEST} is not an image in" in refused({"promoteFrom": "dev"}, graph)


def test_a_source_stack_that_never_deployed_is_refused():
    graph = Graph(stack_outputs={DEV_STACK: {}})
    assert "has no repositoryUrl/imageDigest outputs yet: run `pulumi up` on it first" in refused(
        {"promoteFrom": "dev"}, graph
    )


def test_an_unknown_source_stack_is_refused():
    message = refused({"promoteFrom": "staging"})
    assert "gantry:image.promoteFrom: cannot read the outputs of stack organization/gantry/staging" in message


def test_a_bad_github_sha_stops_the_program(monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", "main")
    graph = Graph()
    with pytest.raises(pulumi.RunError, match="GITHUB_SHA='main' is not a 40-digit"):
        run_program("dev", graph=graph)
    assert graph.resources == []


# --- the race: two runs, the second's dev deploy lands while the first waits for approval --------------


def two_runs() -> Graph:
    """Run 1's dev job deployed and marked A (EARLIER_DIGEST); run 2's then deployed and marked B (DIGEST),
    so dev's current imageDigest is B while run 1's prod job waits for approval."""
    graph = Graph()
    assert graph.stack_outputs[DEV_STACK]["imageDigest"] == DIGEST
    assert graph.ecr_tags == {
        (DEV_REPOSITORY, f"evaluated-{EARLIER_RUN}"): EARLIER_DIGEST,
        (DEV_REPOSITORY, f"evaluated-{CURRENT_RUN}"): DIGEST,
    }
    return graph


def prod_job(monkeypatch, digest: str, run: str) -> None:
    """The prod job's `pulumi up` step: GitHub Actions, with its dev job's outputs (deploy.yml)."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GANTRY_PROMOTE_DIGEST", digest)
    monkeypatch.setenv("GANTRY_PROMOTE_RUN", run)


def test_run_1_s_prod_deploys_run_1_s_digest_although_dev_now_runs_run_2_s(monkeypatch):
    prod_job(monkeypatch, EARLIER_DIGEST, EARLIER_RUN)
    g = run_program("prod", graph=two_runs())
    assert image_of(g) == f"{DEV_REPOSITORY_URL}@{EARLIER_DIGEST}"
    [deploy] = [r for r in g.resources if r.name == "gantry-deploy-deploy"]
    task_definition = g.one("aws:ecs/taskDefinition:TaskDefinition", "gantry-task").outputs["arn"]
    assert (
        json.loads(deploy.inputs["appspec_content"])["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"]
        == task_definition
    )
    [run_tag] = [r for r in g.resources if r.name.endswith("-run-tag")]
    assert run_tag.inputs["digest"] == EARLIER_DIGEST
    assert g.exports["imageDigest"] == EARLIER_DIGEST
    # Checked by digest and by the run's tag, before anything registered.
    assert (
        "aws:ecr/getImage:getImage",
        {"repositoryName": DEV_REPOSITORY, "imageTag": f"evaluated-{EARLIER_RUN}"},
    ) in g.call_args


def test_a_digest_with_another_run_s_mark_is_refused_naming_both(monkeypatch):
    prod_job(monkeypatch, EARLIER_DIGEST, CURRENT_RUN)
    graph = two_runs()
    with pytest.raises(pulumi.RunError) as err:
        run_program("prod", graph=graph)
    assert graph.resources == []
    message = str(err.value)
    assert f"GANTRY_PROMOTE_DIGEST {EARLIER_DIGEST} is not the digest run {CURRENT_RUN} evaluated" in message
    assert f"evaluated-{CURRENT_RUN} is on {DIGEST}" in message


def test_a_run_whose_eval_failed_marked_nothing_and_is_refused(monkeypatch):
    prod_job(monkeypatch, DIGEST, "3-1")
    graph = Graph()
    with pytest.raises(pulumi.RunError, match="no image carries evaluated-3-1"):
        run_program("prod", graph=graph)
    assert graph.resources == []


def test_a_workflow_up_without_the_run_s_digest_is_refused(monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    graph = Graph()
    with pytest.raises(pulumi.RunError, match="set GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN"):
        run_program("prod", graph=graph)
    assert graph.resources == []


def test_a_malformed_request_is_refused_naming_the_variable(monkeypatch):
    prod_job(monkeypatch, "latest", EARLIER_RUN)
    graph = Graph()
    with pytest.raises(pulumi.RunError, match="GANTRY_PROMOTE_DIGEST: allowed: the sha256 digest"):
        run_program("prod", graph=graph)
    # Refused before any lookup of the promotion: the program read only its own stack's last outputs
    # (which every run reads first), not dev's stack nor ECR, and registered nothing.
    assert graph.resources == []
    assert graph.call_args == [("pulumi:pulumi:readStackOutputs", {"name": "organization/gantry/prod"})]


def test_locally_devs_output_is_promoted_only_with_an_evaluated_mark():
    # Dev's last deploy failed its eval: its output names an image no mark step tagged.
    graph = Graph(ecr_tags={(DEV_REPOSITORY, f"evaluated-{EARLIER_RUN}"): EARLIER_DIGEST})
    message = refused({"promoteFrom": "dev"}, graph)
    assert f"gantry:image.promoteFrom: {DIGEST} carries no evaluated-* tag" in message
    # A person rolls back to the earlier, evaluated digest by pinning it.
    graph = Graph(ecr_tags={(DEV_REPOSITORY, f"evaluated-{EARLIER_RUN}"): EARLIER_DIGEST})
    assert image_of(prod_with({"promoteFrom": "dev", "digest": EARLIER_DIGEST}, graph)).endswith(EARLIER_DIGEST)


# --- the pure parts --------------------------------------------------------------------------------------


def git_answers(answers: dict[str, str | None]):
    def git(args: Sequence[str]) -> str | None:
        return answers[args[0]]

    return git


def test_source_revision_from_github_or_git():
    assert source_revision({"GITHUB_SHA": SHA}, git_answers({})) == SourceRevision(sha=SHA)
    clean = source_revision({}, git_answers({"rev-parse": SHA + "\n", "status": ""}))
    assert clean == SourceRevision(sha=SHA, dirty=False)
    dirty = source_revision({}, git_answers({"rev-parse": SHA + "\n", "status": " M app/worker/api.py\n"}))
    assert dirty.dirty and dirty.labels == {"org.opencontainers.image.revision": SHA, "gantry.source-tree": "dirty"}
    assert dirty.description == f"commit {SHA} with uncommitted changes"


@pytest.mark.parametrize(
    ("environ", "answers", "message"),
    [
        ({"GITHUB_SHA": SHA.upper()}, {}, "is not a 40-digit"),
        ({"GITHUB_SHA": SHA[:7]}, {}, "is not a 40-digit"),
        ({}, {"rev-parse": None}, "run from a git checkout"),
        ({}, {"rev-parse": "HEAD\n"}, "run from a git checkout"),
    ],
)
def test_source_revision_refuses_what_is_not_a_commit(environ, answers, message):
    with pytest.raises(RevisionError, match=message):
        source_revision(environ, git_answers(answers))


def test_repository_name_from_url():
    assert repository_name(DEV_REPOSITORY_URL) == DEV_REPOSITORY
    assert repository_name(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/svc") == "team/svc"
    assert repository_name("docker.io/library/python") is None
    assert repository_name(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/") is None


BASE = PromotionFacts(
    stack=DEV_STACK,
    outputs_read=True,
    repository_url=DEV_REPOSITORY_URL,
    repository_arn=DEV_REPOSITORY_ARN,
    digest=DIGEST,
    output_digest=DIGEST,
    image_found=True,
    image_tags=(f"evaluated-{CURRENT_RUN}",),
)


def problem(facts: PromotionFacts, pinned: str | None = None) -> tuple[str, str]:
    found = promotion_problems(facts, pinned=pinned)
    assert found is not None
    return found


def test_promotion_problems_in_order():
    assert promotion_problems(BASE, pinned=None) is None
    unread = PromotionFacts(stack=DEV_STACK, outputs_read=False)
    assert problem(unread)[0] == "image.promoteFrom"
    no_repo = PromotionFacts(stack=DEV_STACK, outputs_read=True, repository_url=DEV_REPOSITORY_URL, digest=DIGEST)
    assert "does not exist" in problem(no_repo)[1]
    missing = dataclasses.replace(BASE, image_found=False)
    assert problem(missing, pinned=DIGEST)[0] == "image.digest"


def test_locally_only_a_digest_some_eval_marked_is_promoted():
    # A dev deploy whose eval failed leaves dev's output on an image no mark step tagged.
    unmarked = dataclasses.replace(BASE, image_tags=(f"run-prod-{'ab' * 16}",))
    key, message = problem(unmarked)
    assert key == "image.promoteFrom" and f"{DIGEST} carries no evaluated-* tag in {DEV_REPOSITORY_URL}" in message
    assert problem(dataclasses.replace(unmarked, digest=EARLIER_DIGEST), pinned=EARLIER_DIGEST)[0] == "image.digest"
    # Any run's mark will do for a person's `up` (a rollback to an earlier evaluated digest).
    assert promotion_problems(dataclasses.replace(BASE, image_tags=("evaluated-7-2",)), pinned=None) is None


def request(digest: str, run: str) -> PromotionRequest:
    return PromotionRequest(digest=digest, run=run)


def test_a_request_deploys_only_the_digest_its_run_marked():
    asked = dataclasses.replace(
        BASE,
        digest=EARLIER_DIGEST,
        request=request(EARLIER_DIGEST, EARLIER_RUN),
        marked_digest=EARLIER_DIGEST,
        in_workflow=True,
        image_tags=(),  # the run's own tag is what counts, looked up by tag
    )
    assert promotion_problems(asked, pinned=None) is None
    # The race: run 1 asks for A, but the tag it names is on B (or the request names run 2's tag).
    swapped = dataclasses.replace(asked, marked_digest=DIGEST)
    key, message = problem(swapped)
    assert key == "image.promoteFrom"
    assert f"GANTRY_PROMOTE_DIGEST {EARLIER_DIGEST} is not the digest run {EARLIER_RUN} evaluated" in message
    assert f"evaluated-{EARLIER_RUN} is on {DIGEST}" in message
    unmarked = dataclasses.replace(asked, marked_digest=None)
    assert f"no image carries evaluated-{EARLIER_RUN}" in problem(unmarked)[1]
    gone = dataclasses.replace(asked, image_found=False)
    assert f"{EARLIER_DIGEST} is not an image in {DEV_REPOSITORY_URL}" in problem(gone)[1]
    # A committed pin and a run's digest disagree: refused, not silently one of them.
    key, message = problem(asked, pinned=DIGEST)
    assert key == "image.digest" and DIGEST in message and EARLIER_DIGEST in message
    assert promotion_problems(asked, pinned=EARLIER_DIGEST) is None


def test_a_workflow_up_without_a_request_never_falls_back_to_devs_output():
    key, message = problem(dataclasses.replace(BASE, in_workflow=True))
    assert key == "image.promoteFrom"
    assert "set GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN" in message and f"({DIGEST}) is never deployed" in message
    assert problem(dataclasses.replace(BASE, in_workflow=True), pinned=EARLIER_DIGEST)[0] == "image.promoteFrom"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"GANTRY_PROMOTE_DIGEST": "", "GANTRY_PROMOTE_RUN": " "}, None),
        ({"GANTRY_PROMOTE_DIGEST": f" {DIGEST}\n", "GANTRY_PROMOTE_RUN": "123-2"}, request(DIGEST, "123-2")),
    ],
)
def test_promotion_request_from_the_environment(environ, expected):
    assert promotion_request(environ) == (expected, [])


@pytest.mark.parametrize(
    ("environ", "variables"),
    [
        ({"GANTRY_PROMOTE_DIGEST": DIGEST}, ["GANTRY_PROMOTE_RUN"]),
        ({"GANTRY_PROMOTE_RUN": "123-1"}, ["GANTRY_PROMOTE_DIGEST"]),
        (
            {"GANTRY_PROMOTE_DIGEST": "latest", "GANTRY_PROMOTE_RUN": "123"},
            ["GANTRY_PROMOTE_DIGEST", "GANTRY_PROMOTE_RUN"],
        ),
        ({"GANTRY_PROMOTE_DIGEST": DIGEST.upper(), "GANTRY_PROMOTE_RUN": "123-1"}, ["GANTRY_PROMOTE_DIGEST"]),
        ({"GANTRY_PROMOTE_DIGEST": DIGEST, "GANTRY_PROMOTE_RUN": "1-1;x"}, ["GANTRY_PROMOTE_RUN"]),
    ],
)
def test_promotion_request_names_each_bad_variable(environ, variables):
    found, problems = promotion_request(environ)
    assert found is None and [p.split(":", 1)[0] for p in problems] == variables


def test_only_a_workflow_up_must_name_its_digest():
    assert in_workflow({"GITHUB_ACTIONS": "true"}, dry_run=False)
    assert not in_workflow({"GITHUB_ACTIONS": "true"}, dry_run=True)  # a pull request's `pulumi preview -s prod`
    assert not in_workflow({}, dry_run=False) and not in_workflow({"GITHUB_ACTIONS": "false"}, dry_run=False)


def test_the_evaluated_tag_is_per_run_attempt():
    assert evaluated_tag("123-1") == "evaluated-123-1" != evaluated_tag("123-2")
    with pytest.raises(ValueError, match="run_attempt"):
        evaluated_tag("123")


def test_deployment_description_fits_codedeploy():
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-prod:7"
    assert deployment_description("prod", arn, None) == f"gantry prod: {arn}"
    long = deployment_description("prod", arn, "x" * 2000)
    assert len(long) == DESCRIPTION_LIMIT and long.endswith("...")
