"""The images stacks run stay in ECR: the lifecycle policy, checked by a simulation of ECR's documented rule
evaluation; the run tag a promoting stack adds, against moto's ECR; and the wiring on both stacks."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from bootstrap import documents
from components import image_tag, policies
from components.image_tag import (
    RUN_TAG_PREFIX,
    RunningImageTagProvider,
    TagError,
    region_of,
    run_tag,
    tag_image,
)
from components.settings.invocation import ProviderSession
from components.settings.promotion import EVALUATED_TAG_PREFIX
from tests.harness import ACCOUNT, DEV_REPOSITORY, DEV_REPOSITORY_URL, DIGEST, REGION, Graph, run_program, stack_config

DYNAMIC = "pulumi-python:dynamic:Resource"


@dataclass(frozen=True)
class Image:
    digest: str
    pushed_at: int
    tags: tuple[str, ...] = ()


def _selected(selection: dict[str, Any], image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    # "When using tagPrefixList, an image is successfully matched if all of the tags in the
    # tagPrefixList value are matched against any of the image's tags."
    return bool(image.tags) and all(any(t.startswith(p) for t in image.tags) for p in selection["tagPrefixList"])


def expired(policy: dict[str, Any], images: list[Image]) -> set[str]:
    """The digests ECR's lifecycle evaluation expires, by its documented rules (ECR User Guide, "Lifecycle
    policy evaluation rules", https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html):
    rules apply lowest rulePriority first; an image is expired by exactly one or zero rules; "an image that
    matches the tagging requirements of a higher priority rule cannot be expired by a rule with a lower
    priority", though lower rules still count it; with imageCountMoreThan, images are sorted youngest to
    oldest by pushed_at_time and all past the count are expired. (Only imageCountMoreThan is modelled:
    the policy uses nothing else, and the simulation refuses anything else.)"""
    claimed: set[str] = set()
    gone: set[str] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        assert selection["countType"] == "imageCountMoreThan" and rule["action"] == {"type": "expire"}
        matching = sorted((i for i in images if _selected(selection, i)), key=lambda i: -i.pushed_at)
        for image in matching[selection["countNumber"] :]:
            if image.digest not in claimed:
                gone.add(image.digest)
        claimed |= {i.digest for i in matching}
    return gone


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


POLICY = policies.ecr_lifecycle_policy(
    30, keep_run_images=100, run_tag_prefix=RUN_TAG_PREFIX, keep_evaluated_images=30, evaluated_tag_prefix="evaluated-"
)


def history(promoted_at: int, pushes: int) -> list[Image]:
    """dev pushes one untagged image per commit; prod promoted (and tagged) the one pushed at `promoted_at`."""
    return [Image(digest(n), n, (run_tag("prod", digest(n)),) if n == promoted_at else ()) for n in range(pushes)]


@pytest.mark.parametrize("newer_pushes", [31, 50, 500])
def test_prod_s_promoted_image_outlives_any_number_of_newer_dev_pushes(newer_pushes):
    images = history(promoted_at=0, pushes=1 + newer_pushes)
    gone = expired(POLICY, images)
    assert digest(0) not in gone
    # The keep-N rule still prunes dev's own superseded builds: storage stays bounded.
    assert len([i for i in images if i.digest not in gone]) == 30 + 1


def test_the_keep_n_rule_alone_would_expire_prod_s_image():
    """The failure this policy exists to prevent, shown on the same simulation."""
    (keep_n,) = [r for r in POLICY["rules"] if r["selection"]["tagStatus"] == "any"]
    assert digest(0) in expired({"rules": [keep_n]}, history(promoted_at=0, pushes=51))


def test_a_run_tagged_image_ages_out_only_past_keep_run_images_newer_deployed_ones():
    # Every 10th dev push was promoted: 150 promotions over 1500 pushes.
    images = [Image(digest(n), n, (run_tag("prod", digest(n)),) if n % 10 == 0 else ()) for n in range(1500)]
    kept = {i.digest for i in images} - expired(POLICY, images)
    promoted = sorted((i for i in images if i.tags), key=lambda i: -i.pushed_at)
    assert {i.digest for i in promoted[:100]} <= kept  # prod's current image and its last 99 to roll back to
    assert not {i.digest for i in promoted[100:]} & kept
    assert len(kept) == 100 + 30 - 3  # the 3 newest promotions are among dev's newest 30 too


def test_the_policy_is_what_ecr_accepts():
    """ECR User Guide, "Lifecycle policy properties" and "Lifecycle policy evaluation rules"
    (https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html,
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html)."""
    rules = POLICY["rules"]
    priorities = [r["rulePriority"] for r in rules]
    # "you must give them each a unique value for rulePriority"; listed ascending, as ECR returns them.
    assert len(set(priorities)) == len(rules) and priorities == sorted(priorities)
    # "A rule with a tagStatus value of any must have the highest value for rulePriority": one such rule, last.
    assert [r["selection"]["tagStatus"] for r in rules].count("any") == 1
    assert max(rules, key=lambda r: r["rulePriority"])["selection"]["tagStatus"] == "any"
    tagged = [r["selection"] for r in rules if r["selection"]["tagStatus"] == "tagged"]
    # "If you specify tagged, then you must also specify a tagPrefixList value or a tagPatternList value",
    # and "A lifecycle policy rule may specify either tagPatternList or tagPrefixList, but not both".
    assert all(bool(s.get("tagPrefixList")) != bool(s.get("tagPatternList")) for s in tagged)
    # "The set of rules must contain a unique set of tag prefixes."
    prefixes = [frozenset(s["tagPrefixList"]) for s in tagged]
    assert len(set(prefixes)) == len(prefixes)
    # countUnit belongs to sinceImagePushed only; every rule here counts images.
    assert all(r["selection"]["countType"] == "imageCountMoreThan" and "countUnit" not in r["selection"] for r in rules)
    json.dumps(POLICY)


def test_the_evaluated_rule_sits_between_the_run_rule_and_the_any_rule():
    run_rule, evaluated_rule, any_rule = POLICY["rules"]
    assert (run_rule["rulePriority"], evaluated_rule["rulePriority"], any_rule["rulePriority"]) == (1, 2, 3)
    assert run_rule["selection"]["tagPrefixList"] == [RUN_TAG_PREFIX]
    assert evaluated_rule["selection"]["tagPrefixList"] == [EVALUATED_TAG_PREFIX]


def evaluated_history(waiting_at: int, pushes: int, evaluated: set[int]) -> list[Image]:
    """dev pushes one image per commit; those in `evaluated` passed the eval gate and carry their run's
    mark. The run that pushed `waiting_at` waits for prod's approval."""
    marked = evaluated | {waiting_at}
    return [Image(digest(n), n, (f"evaluated-{n}-1",) if n in marked else ()) for n in range(pushes)]


@pytest.mark.parametrize("failed_pushes", [30, 100])
def test_the_image_a_run_waits_to_promote_outlives_newer_pushes_whose_eval_failed(failed_pushes):
    images = evaluated_history(waiting_at=0, pushes=1 + failed_pushes, evaluated=set())
    gone = expired(POLICY, images)
    assert digest(0) not in gone
    # Without the evaluated rule, the keep-N rule alone counts it out.
    without = {"rules": [r for r in POLICY["rules"] if r["selection"].get("tagPrefixList") != [EVALUATED_TAG_PREFIX]]}
    assert digest(0) in expired(without, images)
    # Unevaluated superseded builds are still pruned.
    assert len(images) - len(gone) == 30 + 1


def test_evaluated_images_are_kept_up_to_the_newest_keep_images_of_them():
    # Every other push passed its eval: 100 evaluated among 200.
    images = evaluated_history(waiting_at=0, pushes=200, evaluated=set(range(0, 200, 2)))
    kept = {i.digest for i in images} - expired(POLICY, images)
    marked = sorted((i for i in images if i.tags), key=lambda i: -i.pushed_at)
    assert {i.digest for i in marked[:30]} <= kept  # 30 newer evaluated runs may pass while one waits
    assert not {i.digest for i in marked[30:]} & kept  # and storage stays bounded
    assert len(kept) == 30 + 15  # the newest 30 pushes hold 15 unevaluated ones


# ---- the run tag ----------------------------------------------------------------------------------


def test_the_run_tag_names_the_stack_and_the_digest_and_fits_a_docker_tag():
    tag = run_tag("prod", DIGEST)
    assert tag == f"run-prod-{DIGEST.removeprefix('sha256:')[:32]}"
    assert run_tag("prod", DIGEST) != run_tag("staging", DIGEST) != run_tag("prod", digest(1))
    assert len(run_tag("s" * 91, DIGEST)) == 128
    with pytest.raises(ValueError, match="at most 91"):
        run_tag("s" * 92, DIGEST)
    with pytest.raises(ValueError, match="sha256"):
        run_tag("prod", "latest")
    with pytest.raises(ValueError, match="stack name"):
        run_tag("org/prod", DIGEST)
    assert region_of(DEV_REPOSITORY_URL) == DEV_REPOSITORY_URL.split(".")[3]


@pytest.fixture
def ecr(monkeypatch):
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        client = boto3.client("ecr", region_name="eu-west-1")
        client.create_repository(repositoryName="gantry-image-repo", imageTagMutability="IMMUTABLE")
        yield client


def push(ecr) -> str:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": digest(7)},
            "layers": [],
        }
    )
    pushed = ecr.put_image(
        repositoryName="gantry-image-repo",
        imageManifest=manifest,
        imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
        imageTag="pushed",
    )
    return pushed["image"]["imageId"]["imageDigest"]


def tags_of(ecr, image_digest: str) -> set[str]:
    (detail,) = ecr.describe_images(repositoryName="gantry-image-repo", imageIds=[{"imageDigest": image_digest}])[
        "imageDetails"
    ]
    return set(detail.get("imageTags", []))


def test_tagging_adds_the_run_tag_to_the_same_image_and_is_idempotent(ecr):
    pushed = push(ecr)
    tag = run_tag("prod", pushed)
    tag_image(ecr, repository="gantry-image-repo", digest=pushed, tag=tag)
    assert tags_of(ecr, pushed) == {"pushed", tag}
    # A redeploy of the same digest (or a retried `up`) finds the tag in place: success, no change.
    tag_image(ecr, repository="gantry-image-repo", digest=pushed, tag=tag)
    assert tags_of(ecr, pushed) == {"pushed", tag}
    assert len(ecr.describe_images(repositoryName="gantry-image-repo")["imageDetails"]) == 1


@pytest.mark.parametrize("holder", ["another", "this"])
def test_an_immutable_run_tag_already_in_the_repository_must_be_on_this_image(holder):
    """ECR refuses an existing tag in an IMMUTABLE repository (ImageTagAlreadyExistsException, PutImage API
    reference). On this image it is a redeploy; on another it is refused, never silently accepted. With
    botocore's Stubber: moto gives these test manifests one digest, so it cannot tell the two apart."""
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    wanted, tag = digest(1), run_tag("prod", digest(1))
    manifest = '{"schemaVersion": 2}'
    with Stubber(client) as stub:
        stub.add_response(
            "batch_get_image",
            {"images": [{"imageId": {"imageDigest": wanted}, "imageManifest": manifest}], "failures": []},
        )
        stub.add_client_error("put_image", service_error_code="ImageTagAlreadyExistsException")
        on = wanted if holder == "this" else digest(2)
        stub.add_response("describe_images", {"imageDetails": [{"imageDigest": on, "imageTags": [tag]}]})
        if holder == "this":
            tag_image(client, repository="gantry-image-repo", digest=wanted, tag=tag)
        else:
            with pytest.raises(TagError, match=f"is on \\['{digest(2)}'\\], not {wanted}"):
                tag_image(client, repository="gantry-image-repo", digest=wanted, tag=tag)
        stub.assert_no_pending_responses()


def test_tagging_an_image_the_repository_lacks_fails_the_up(ecr):
    push(ecr)
    with pytest.raises(TagError, match="holds no image"):
        tag_image(ecr, repository="gantry-image-repo", digest=digest(99), tag=run_tag("prod", digest(99)))


def test_a_new_digest_is_a_new_tag_and_the_old_one_is_never_removed(monkeypatch):
    provider = RunningImageTagProvider()
    old = {"repository_url": DEV_REPOSITORY_URL, "digest": DIGEST, "tag": run_tag("prod", DIGEST)}
    new = {**old, "digest": digest(1), "tag": run_tag("prod", digest(1))}
    diff = provider.diff("id", old, new)
    assert diff.changes and set(diff.replaces or ()) == {"digest", "tag"} and not diff.delete_before_replace
    assert not provider.diff("id", old, dict(old)).changes

    # Delete calls nothing in AWS (untagging an image's last tag deletes the image): no client is made.
    def no_aws(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("delete must not call AWS")

    monkeypatch.setattr(boto3.session, "Session", no_aws)
    provider.delete("id", old)


# ---- the wiring -------------------------------------------------------------------------------------


def run_tags(g: Graph) -> list[Any]:
    return [r for r in g.of_type(DYNAMIC) if r.name.endswith("-run-tag")]


def test_prod_tags_the_promoted_digest_before_its_task_definition_uses_it():
    g = run_program("prod")
    (tag,) = run_tags(g)
    assert tag.inputs["repository_url"] == DEV_REPOSITORY_URL and tag.inputs["digest"] == DIGEST
    assert tag.inputs["tag"] == run_tag("prod", DIGEST)
    for definition in g.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        assert definition.depends_on(tag), definition.name


def test_dev_builds_tags_nothing_and_prunes_with_the_run_rule_first():
    g = run_program("dev")
    assert not run_tags(g)
    image = stack_config("dev")["gantry:image"]
    policy = g.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").json("policy")
    assert policy == policies.ecr_lifecycle_policy(
        image["keepImages"],
        keep_run_images=image.get("keepRunImages", 100),
        run_tag_prefix="run-",
        keep_evaluated_images=image["keepImages"],
        evaluated_tag_prefix="evaluated-",
    )


@pytest.mark.parametrize("action", ["ecr:BatchGetImage", "ecr:PutImage", "ecr:DescribeImages"])
def test_the_deploy_role_may_tag_an_image_in_the_building_stack_s_repository(action):
    """What `tag_image` calls, on dev's repository, from the role every stack (prod too) deploys with."""
    policy = documents.deploy_role_policy(
        documents.Scope(account_id=ACCOUNT, region=REGION),
        state_bucket_arn="arn:aws:s3:::gantry-state",
        state_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/state",
        secrets_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/secrets",
    )
    repository_arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{DEV_REPOSITORY}"

    def listed(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    assert any(
        s["Effect"] == "Allow"
        and "Condition" not in s
        and any(fnmatch.fnmatchcase(action, a) for a in listed(s["Action"]))
        and any(fnmatch.fnmatchcase(repository_arn, r) for r in listed(s["Resource"]))
        for s in policy["Statement"]
    )


def test_the_provider_tags_as_the_stack_s_profile_and_role(monkeypatch, ecr):
    """aws:profile / aws:assumeRoles reach this provider as they reach the deploy resource (provider_runtime)."""
    pushed = push(ecr)
    seen: list[tuple[str, ProviderSession]] = []

    def session_for(region: str, session: ProviderSession) -> Any:
        seen.append((region, session))
        return boto3.session.Session(region_name=region)

    monkeypatch.setattr(image_tag, "session_for", session_for)
    props = {
        "repository_url": DEV_REPOSITORY_URL,
        "digest": pushed,
        "tag": run_tag("prod", pushed),
        **ProviderSession(profile="prod-admin", role_arn=f"arn:aws:iam::{ACCOUNT}:role/deploy").inputs(),
    }
    RunningImageTagProvider().create(props)
    assert seen == [(REGION, ProviderSession(profile="prod-admin", role_arn=f"arn:aws:iam::{ACCOUNT}:role/deploy"))]
    # A new principal is not a new tag: the diff reads the image's inputs only.
    assert not RunningImageTagProvider().diff("id", props, {**props, "aws_profile": "other"}).changes
