"""Build once, promote the same digest: dev builds into the one repository, prod deploys the digest dev
exported, from dev's repository, and refuses one ECR does not hold before anything is registered. The
commit being deployed is on the image (OCI label) and in the deployment's description / service tag."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pytest

from components.blue_green.provider import DESCRIPTION_LIMIT, deployment_description
from components.settings.promotion import (
    PromotionFacts,
    RevisionError,
    SourceRevision,
    promotion_problems,
    repository_name,
    source_revision,
)
from harness import (
    ACCOUNT,
    DEV_REPOSITORY,
    DEV_REPOSITORY_URL,
    DEV_STACK,
    DIGEST,
    EARLIER_DIGEST,
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
    import json

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


def test_promotion_problems_in_order():
    base = PromotionFacts(
        stack=DEV_STACK,
        outputs_read=True,
        repository_url=DEV_REPOSITORY_URL,
        repository_arn=DEV_REPOSITORY_ARN,
        digest=DIGEST,
        image_found=True,
    )
    assert promotion_problems(base, pinned=False) is None
    unread = PromotionFacts(stack=DEV_STACK, outputs_read=False)
    assert promotion_problems(unread, pinned=False)[0] == "image.promoteFrom"  # type: ignore[index]
    no_repo = PromotionFacts(stack=DEV_STACK, outputs_read=True, repository_url=DEV_REPOSITORY_URL, digest=DIGEST)
    assert "does not exist" in promotion_problems(no_repo, pinned=False)[1]  # type: ignore[index]
    missing = PromotionFacts(**{**base.__dict__, "image_found": False})
    assert promotion_problems(missing, pinned=True)[0] == "image.digest"  # type: ignore[index]


def test_deployment_description_fits_codedeploy():
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/gantry-prod:7"
    assert deployment_description("prod", arn, None) == f"gantry prod: {arn}"
    long = deployment_description("prod", arn, "x" * 2000)
    assert len(long) == DESCRIPTION_LIMIT and long.endswith("...")
