"""What `pulumi destroy`, a replacement and time may remove, across both committed stacks and the bootstrap:
every bucket aborts abandoned multipart uploads (their parts are billed and invisible to listings until
aborted), disposable stacks' buckets are emptied by destroy while production's never are, and every ECS
task definition keeps its replaced revisions registered for rollbacks."""

from __future__ import annotations

from typing import Any

import pytest

# The bootstrap is its own project; its runner lives with its tests.
from tests.bootstrap.bootstrap_runner import run_bootstrap
from tests.harness import OWN_SERVICE, Graph, run_program, stack_config, with_test_secrets

BUCKET = "aws:s3/bucket:Bucket"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"


def dev_with_every_bucket() -> Graph:
    """dev with its opt-in bucket too (edge access logs), so every kind of bucket the program makes is seen."""
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:edge"] = {**config["gantry:edge"], "accessLogs": True}
    return run_program("dev", config, secret_keys)


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    import asyncio

    found = {}
    for name, build in {
        "dev": dev_with_every_bucket,
        "prod": lambda: run_program("prod"),
        "bootstrap": run_bootstrap,
    }.items():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            found[name] = build()
        finally:
            loop.close()
            asyncio.set_event_loop(None)
    return found


def abort_rules(g: Graph, bucket_id: str) -> list[dict[str, Any]]:
    """The enabled rules of the bucket's lifecycle configuration that abort incomplete multipart uploads
    for every key (an empty filter) or for the prefix the bucket's writers use."""
    rules = [rule for lc in g.of_type(LIFECYCLE) if lc.inputs["bucket"] == bucket_id for rule in lc.inputs["rules"]]
    return [r for r in rules if r["status"] == "Enabled" and r.get("abortIncompleteMultipartUpload")]


@pytest.mark.parametrize("where", ["dev", "prod", "bootstrap"])
def test_every_bucket_aborts_incomplete_multipart_uploads(graphs, where):
    g = graphs[where]
    buckets = g.of_type(BUCKET)
    assert buckets, f"{where} has no bucket: the check would pass vacuously"
    for bucket in buckets:
        rules = abort_rules(g, bucket.outputs["id"])
        assert rules, f"{bucket.name} has no lifecycle rule aborting incomplete multipart uploads"
        # S3 counts DaysAfterInitiation from the upload's start; a day is far beyond any upload here.
        assert all(r["abortIncompleteMultipartUpload"]["daysAfterInitiation"] <= 7 for r in rules), bucket.name


def test_the_stacks_make_the_three_kinds_of_bucket_the_checks_cover(graphs):
    made = {b.name for where in ("dev", "prod") for b in graphs[where].of_type(BUCKET)}
    assert made == {
        "gantry-lb-access-logs",
        "gantry-edge-access-logs",
        "gantry-batch-files",
    }


def test_destroy_empties_dev_buckets_and_never_production_or_state_buckets(graphs):
    for bucket in graphs["dev"].of_type(BUCKET):
        assert bucket.inputs.get("forceDestroy") is True, bucket.name
    for where in ("prod", "bootstrap"):
        for bucket in graphs[where].of_type(BUCKET):
            assert bucket.inputs.get("forceDestroy") is not True, f"{where}: {bucket.name}"


@pytest.mark.parametrize("stack", ["dev", "prod", OWN_SERVICE])
def test_every_task_definition_keeps_its_old_revisions(stack):
    definitions = run_program(stack).of_type(TASK_DEFINITION)
    assert definitions
    for definition in definitions:
        assert definition.inputs.get("skipDestroy") is True, definition.name


def test_the_bucket_recipe_refuses_a_lifecycle_that_keeps_incomplete_uploads() -> None:
    """Refused before any resource is registered: a caller cannot forget the abort rule."""
    import pulumi

    from components.private_bucket import private_bucket

    with pytest.raises(ValueError, match="'expire' does not abort incomplete uploads"):
        private_bucket(
            "b",
            force_destroy=False,
            lifecycle_rules=[{"id": "expire", "status": "Enabled", "expiration": {"days": 1}}],
            policy=lambda arn: {},
            opts=pulumi.ResourceOptions(),
        )
