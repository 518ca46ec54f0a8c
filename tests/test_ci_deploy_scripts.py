"""The deploy jobs' own scripts (scripts/ci): the stack-lock release and wait, the page, the image platform,
the evaluated mark.

stack_lock.py and mark_evaluated.py run as the workflow runs them, subprocesses of the .venv's Python.
stack_lock.py runs against moto's S3 over HTTP holding lock files in the layout and format Pulumi's DIY
backend writes (pkg/backend/diy/lock.go: `.pulumi/locks/organization/<project>/<stack>/<id>.json` with
pid, username, hostname and an RFC 3339 timestamp), so what it deletes and what it leaves is asserted on
the bucket. page.py publishes through moto's SNS to an SQS subscriber, so the message that reaches on-call
is read back. mark_evaluated.py tags an image in moto's ECR (an IMMUTABLE repository, as dev's is), and
the tags and step outputs it leaves are read back.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.harness import ROOT

CI = ROOT / "scripts" / "ci"
BUCKET = "gantry-state-210987654321"
BACKEND = f"s3://{BUCKET}/gantry?region=eu-west-1"
DEV_LOCKS = "gantry/.pulumi/locks/organization/gantry/dev"


def _script_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules[cls.__module__].
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack_lock = _script_module(CI / "stack_lock.py")
page = _script_module(CI / "page.py")
mark_evaluated = _script_module(CI / "mark_evaluated.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def moto() -> Iterator[dict[str, str]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's backends live in this process and outlive one server: start every test from nothing.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    finally:
        server.stop()


def client(service: str, aws: dict[str, str]) -> Any:
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def go_time(moment: dt.datetime) -> str:
    """A timestamp as Go's time.Time marshals it: RFC 3339 with nanoseconds and the local offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123+00:00"


def lock_body(*, pid: int, hostname: str, username: str, at: dt.datetime) -> bytes:
    return json.dumps({"pid": pid, "username": username, "hostname": hostname, "timestamp": go_time(at)}).encode()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def run(command: str, aws: dict[str, str], started: dt.datetime, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **aws,
        "PULUMI_BACKEND_URL": BACKEND,
        "GANTRY_JOB_STARTED_AT": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return subprocess.run(
        [sys.executable, str(CI / "stack_lock.py"), command, "--stack", "dev", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def keys(s3: Any) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_the_lock_paths_are_pulumis() -> None:
    backend = stack_lock.parse_backend(BACKEND)
    assert (backend.bucket, backend.prefix, backend.region) == (BUCKET, "gantry/", "eu-west-1")
    # lock.go stackLockDir(FullyQualifiedName) under BookkeepingDir/LockDir; store.go: organization/<project>/<stack>.
    assert stack_lock.lock_prefixes(backend, "gantry", "dev") == (
        f"{DEV_LOCKS}/",
        "gantry/.pulumi/locks/dev/",
    )
    assert stack_lock.parse_backend("s3://b").prefix == ""
    with pytest.raises(stack_lock.LockError, match="is not an s3://bucket"):
        stack_lock.parse_backend("file:///tmp/state")
    assert stack_lock.project_name() == "gantry"


def test_release_removes_only_this_jobs_lock(moto: dict[str, str]) -> None:
    s3 = client("s3", moto)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    me, host = getpass.getuser(), socket.gethostname()
    started = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    after = started + dt.timedelta(minutes=2)
    locks = {
        f"{DEV_LOCKS}/mine.json": lock_body(pid=dead_pid(), hostname=host, username=me, at=after),
        "gantry/.pulumi/locks/dev/mine-legacy.json": lock_body(pid=dead_pid(), hostname=host, username=me, at=after),
        f"{DEV_LOCKS}/other-job.json": lock_body(pid=dead_pid(), hostname="fv-az812-7", username=me, at=after),
        f"{DEV_LOCKS}/before-this-job.json": lock_body(
            pid=dead_pid(), hostname=host, username=me, at=started - dt.timedelta(seconds=1)
        ),
        f"{DEV_LOCKS}/still-running.json": lock_body(pid=os.getpid(), hostname=host, username=me, at=after),
        "gantry/.pulumi/locks/organization/gantry/prod/mine-prod.json": lock_body(
            pid=dead_pid(), hostname=host, username=me, at=after
        ),
        # Not a lock file of dev: Pulumi writes locks directly in the stack's directory (lock.go lockPath).
        f"{DEV_LOCKS}/nested/mine.json": lock_body(pid=dead_pid(), hostname=host, username=me, at=after),
        "gantry/.pulumi/stacks/gantry/dev.json": b"{}",
    }
    for key, body in locks.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    result = run("release", moto, started)

    assert result.returncode == 0, result.stderr
    assert keys(s3) == set(locks) - {f"{DEV_LOCKS}/mine.json", "gantry/.pulumi/locks/dev/mine-legacy.json"}
    removed = [line for line in result.stdout.splitlines() if line.startswith("removed ")]
    assert len(removed) == 2 and all(f"{me}@{host}" in line for line in removed)
    left = [line for line in result.stdout.splitlines() if line.startswith("left ")]
    assert len(left) == 3 and any("fv-az812-7" in line for line in left)


def test_release_with_no_lock_succeeds_and_an_unreadable_backend_fails(moto: dict[str, str]) -> None:
    s3 = client("s3", moto)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    started = dt.datetime.now(dt.UTC)
    none = run("release", moto, started)
    assert none.returncode == 0 and "no lock of dev written by this job" in none.stdout
    s3.delete_bucket(Bucket=BUCKET)
    missing = run("release", moto, started)
    assert missing.returncode == 1 and f"cannot read locks under s3://{BUCKET}/" in missing.stderr


def test_release_needs_the_job_start_and_refuses_a_non_lock() -> None:
    with pytest.raises(stack_lock.LockError, match="GANTRY_JOB_STARTED_AT is not set"):
        stack_lock.this_job(None)
    with pytest.raises(stack_lock.LockError, match="is not a Pulumi lock file"):
        stack_lock.parse_lock("k.json", b'{"pid": 1}')


def test_wait_returns_once_the_stack_is_free_and_fails_naming_the_holder(moto: dict[str, str]) -> None:
    s3 = client("s3", moto)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    started = dt.datetime.now(dt.UTC)
    assert run("wait", moto, started, "--timeout-seconds", "0").returncode == 0
    body = lock_body(pid=4242, hostname="fv-az812-7", username="runner", at=started)
    s3.put_object(Bucket=BUCKET, Key=f"{DEV_LOCKS}/deploy.json", Body=body)
    held = run("wait", moto, started, "--timeout-seconds", "0")
    assert held.returncode == 1 and "still locked" in held.stderr and "runner@fv-az812-7 (pid 4242)" in held.stderr
    assert keys(s3) == {f"{DEV_LOCKS}/deploy.json"}


def test_wait_polls_until_the_lock_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = stack_lock.parse_backend(BACKEND)
    lock = stack_lock.Lock(
        key=f"{DEV_LOCKS}/x.json", pid=1, username="runner", hostname="h", timestamp=dt.datetime.now(dt.UTC)
    )
    answers = [[lock], [lock], []]
    seen: list[str] = []
    monkeypatch.setattr(stack_lock, "list_locks", lambda *_: iter(answers.pop(0)))
    stack_lock.wait_free(None, backend, "gantry", "dev", 600, seen.append, sleep=lambda _: None, clock=lambda: 0.0)
    assert answers == [] and seen[-1] == "dev holds no lock" and len(seen) == 3


def test_page_publishes_to_the_stacks_page_topic(moto: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto.items():
        monkeypatch.setenv(name, value)
    sns, sqs = client("sns", moto), client("sqs", moto)
    topic = sns.create_topic(Name="gantry-prod-page")["TopicArn"]
    queue = sqs.create_queue(QueueName="on-call")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    status = page.main(["--stack", "prod", "--subject", "gantry prod: post-deploy eval failed", "--message", "m1"])

    assert status == 0
    message = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert (message["TopicArn"], message["Subject"], message["Message"]) == (
        topic,
        "gantry prod: post-deploy eval failed",
        "m1",
    )


def test_page_fails_when_the_topic_is_missing(
    moto: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in moto.items():
        monkeypatch.setenv(name, value)
    assert page.main(["--stack", "prod", "--subject", "s", "--message", "m"]) == 1
    assert "could not publish to gantry-prod-page" in capsys.readouterr().err


def test_page_topic_arn_and_subject() -> None:
    caller = "arn:aws-us-gov:sts::210987654321:assumed-role/gantry-deploy-prod/gantry-deploy-prod-1"
    assert page.topic_arn(caller, "us-gov-west-1", "prod", "page") == (
        "arn:aws-us-gov:sns:us-gov-west-1:210987654321:gantry-prod-page"
    )
    with pytest.raises(ValueError, match="is not an ARN"):
        page.topic_arn("nope", "eu-west-1", "prod", "page")
    assert page.subject_line("é\n" + "x" * 200) == "  " + "x" * 98


# ---- mark_evaluated.py: the dev job's mark after its eval gate ---------------------------------------

REPOSITORY = "gantry-image-repo"


def push_image(ecr: Any, n: int) -> str:
    """Push an OCI manifest with its own layer (moto derives the image digest from the layer digests), with
    a tag only so moto accepts the push (docker-build pushes by digest)."""
    layer = "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": layer},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 2, "digest": layer}],
        }
    )
    pushed = ecr.put_image(
        repositoryName=REPOSITORY,
        imageManifest=manifest,
        imageManifestMediaType="application/vnd.oci.image.manifest.v1+json",
        imageTag=f"pushed-{n}",
    )
    return str(pushed["image"]["imageId"]["imageDigest"])


@pytest.fixture
def dev_repository(moto: dict[str, str]) -> tuple[Any, str]:
    ecr = client("ecr", moto)
    url = ecr.create_repository(repositoryName=REPOSITORY, imageTagMutability="IMMUTABLE")["repository"][
        "repositoryUri"
    ]
    return ecr, url


def mark(
    aws: dict[str, str], url: str, digest: str, outputs: Path, *, run_id: str = "4242", attempt: str = "1"
) -> subprocess.CompletedProcess[str]:
    """The workflow's mark step: the .venv's Python from the repository root, in a job of run `run_id`."""
    env = {**os.environ, **aws, "GITHUB_RUN_ID": run_id, "GITHUB_RUN_ATTEMPT": attempt, "GITHUB_OUTPUT": str(outputs)}
    return subprocess.run(
        [sys.executable, str(CI / "mark_evaluated.py"), "--repository-url", url, "--digest", digest],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


def tags_on(ecr: Any, digest: str) -> set[str]:
    (detail,) = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageDigest": digest}])["imageDetails"]
    return set(detail.get("imageTags", []))


def step_outputs(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_mark_tags_the_deployed_digest_with_this_run_and_outputs_it(
    moto: dict[str, str], dev_repository: tuple[Any, str], tmp_path: Path
) -> None:
    ecr, url = dev_repository
    earlier, deployed = push_image(ecr, 1), push_image(ecr, 2)
    outputs = tmp_path / "github_output"

    result = mark(moto, url, deployed, outputs)

    assert result.returncode == 0, result.stderr
    assert tags_on(ecr, deployed) == {"pushed-2", "evaluated-4242-1"} and tags_on(ecr, earlier) == {"pushed-1"}
    # The tag names this digest, which is what prod's `up` looks up (get_image by tag, components.stack_config).
    (by_tag,) = ecr.describe_images(repositoryName=REPOSITORY, imageIds=[{"imageTag": "evaluated-4242-1"}])[
        "imageDetails"
    ]
    assert by_tag["imageDigest"] == deployed
    assert len(ecr.describe_images(repositoryName=REPOSITORY)["imageDetails"]) == 2  # retagged, not re-pushed
    # What the dev job exports as needs.dev.outputs.digest / .run (and prod passes to GANTRY_PROMOTE_*).
    assert step_outputs(outputs) == {"digest": deployed, "run": "4242-1"}


def test_a_re_run_marks_under_its_own_attempt_and_a_retried_step_is_idempotent(
    moto: dict[str, str], dev_repository: tuple[Any, str], tmp_path: Path
) -> None:
    ecr, url = dev_repository
    deployed = push_image(ecr, 1)
    assert mark(moto, url, deployed, tmp_path / "a1").returncode == 0
    assert mark(moto, url, deployed, tmp_path / "a1-again").returncode == 0
    assert mark(moto, url, deployed, tmp_path / "a2", attempt="2").returncode == 0
    assert tags_on(ecr, deployed) == {"pushed-1", "evaluated-4242-1", "evaluated-4242-2"}
    assert step_outputs(tmp_path / "a2")["run"] == "4242-2"


# This run's tag already on another image (ECR's ImageTagAlreadyExistsException in an IMMUTABLE repository)
# is refused by the same tag_image, tested with botocore's Stubber in tests/test_image_retention.py: moto's
# PutImage does not enforce immutability.


def test_mark_fails_naming_the_digest_the_repository_lacks(
    moto: dict[str, str], dev_repository: tuple[Any, str], tmp_path: Path
) -> None:
    ecr, url = dev_repository
    pushed = push_image(ecr, 1)
    absent = "sha256:" + "ef" * 32
    outputs = tmp_path / "github_output"

    result = mark(moto, url, absent, outputs)

    assert result.returncode == 1
    assert f"not marked: {REPOSITORY} holds no image {absent} to tag evaluated-4242-1" in result.stderr
    assert "prod will refuse to promote it" in result.stderr
    assert step_outputs(outputs) == {}  # prod gets no digest to ask for
    assert tags_on(ecr, pushed) == {"pushed-1"}


def test_mark_fails_without_a_digest_or_a_run(moto: dict[str, str], tmp_path: Path) -> None:
    url = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/gantry-image-repo"
    empty = mark(moto, url, "", tmp_path / "out")
    assert empty.returncode == 2 and "--digest is empty: the dev job's `pulumi up` exported no imageDigest" in (
        empty.stderr
    )
    assert mark(moto, url, "latest", tmp_path / "out").returncode == 2
    assert mark(moto, "", "sha256:" + "ab" * 32, tmp_path / "out").returncode == 2
    no_run = mark(moto, url, "sha256:" + "ab" * 32, tmp_path / "out", run_id="")
    assert no_run.returncode == 2 and "GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT must be set" in no_run.stderr
    assert not (tmp_path / "out").exists()


def test_mark_s_run_is_the_one_prod_checks() -> None:
    assert mark_evaluated.this_run({"GITHUB_RUN_ID": "123", "GITHUB_RUN_ATTEMPT": "2"}) == "123-2"
    with pytest.raises(mark_evaluated.MarkError, match="allowed: digits-digits"):
        mark_evaluated.this_run({"GITHUB_RUN_ID": "12a", "GITHUB_RUN_ATTEMPT": "1"})
