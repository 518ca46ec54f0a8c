"""The Pulumi stack lock in the S3 state backend: release this job's lock after a cancel; wait for a free stack.

`pulumi up` on a DIY backend writes `<prefix>/.pulumi/locks/organization/<project>/<stack>/<id>.json`
(`{"pid", "username", "hostname", "timestamp"}`, pkg/backend/diy/lock.go `lockContent` and `lockPath`,
fully qualified name from store.go `projectReferenceStore`; the legacy layout has no
`organization/<project>/`) and deletes it when it ends. When GitHub cancels a job (a user, or its
timeout-minutes) the runner sends SIGINT, then SIGTERM 7.5 s later, then kills the process tree 2.5 s
after that (https://docs.github.com/en/actions/reference/workflow-cancellation-reference, which
also gives the `cancelled()` steps 5 minutes); Pulumi's first SIGINT only asks the engine to stop
after the operations in flight, and a CodeDeploy wait is in flight for up to deployTimeoutMinutes, so the
CLI is killed with its lock still in the bucket and every later `up` of the stack refuses to start.
`pulumi cancel` does not help: on a DIY backend it deletes *every* lock of the stack
(diyBackend.CancelCurrentUpdate), including one a concurrent operator's `up` holds.

`python scripts/ci/stack_lock.py release --stack STACK` (an `if: cancelled()` step) deletes only the
locks this job wrote: same hostname and username as this runner, written at or after the job began
(`$GANTRY_JOB_STARTED_AT`: the started-at output of .github/actions/deploy-setup), by a pid that is no longer alive
here. It prints each lock it removed and each it left, and succeeds when there is none.
`python scripts/ci/stack_lock.py wait --stack STACK --timeout-seconds N` waits until the stack holds no
lock (the rollback drill, in its own concurrency group, waits for a dev deploy to finish) and fails
naming the holder when N seconds pass. The backend is `$PULUMI_BACKEND_URL` (`s3://bucket[/prefix]`,
optional `?region=`); boto3 (the program's lock) with the job's deploy-role session.
Security stance: reads and deletes only under this one stack's lock prefix, never the state itself;
prints lock metadata (user, host, pid, time), no credential.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ".pulumi/locks"
# DIY backends accept only this organization name (store.go ParseReference).
ORGANIZATION = "organization"


class LockError(Exception):
    """The backend or a lock cannot be read; the message says which."""


@dataclass(frozen=True, kw_only=True)
class Backend:
    bucket: str
    prefix: str
    """Key prefix inside the bucket ('' or 'path/'), from the URL's path."""
    region: str | None


def parse_backend(url: str) -> Backend:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise LockError(f"PULUMI_BACKEND_URL {url!r} is not an s3://bucket[/prefix] URL")
    prefix = parsed.path.strip("/")
    region = parse_qs(parsed.query).get("region", [None])[0]
    return Backend(bucket=parsed.netloc, prefix=f"{prefix}/" if prefix else "", region=region)


def lock_prefixes(backend: Backend, project: str, stack: str) -> tuple[str, ...]:
    """Where this stack's lock files live: the project layout, then the legacy one (one stack dir each)."""
    base = f"{backend.prefix}{LOCKS}"
    return (f"{base}/{ORGANIZATION}/{project}/{stack}/", f"{base}/{stack}/")


@dataclass(frozen=True, kw_only=True)
class Lock:
    key: str
    pid: int
    username: str
    hostname: str
    timestamp: dt.datetime

    def describe(self) -> str:
        return f"{self.key}: {self.username}@{self.hostname} (pid {self.pid}) at {self.timestamp.isoformat()}"


def parse_lock(key: str, body: bytes) -> Lock:
    try:
        content: Any = json.loads(body)
        return Lock(
            key=key,
            pid=int(content["pid"]),
            username=str(content["username"]),
            hostname=str(content["hostname"]),
            # Go's time.Time marshals as RFC 3339 with nanoseconds; Python 3.11 reads it (to microseconds).
            timestamp=dt.datetime.fromisoformat(str(content["timestamp"])),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise LockError(f"{key} is not a Pulumi lock file: {error}") from None


@dataclass(frozen=True, kw_only=True)
class Job:
    """Who this job is, as a lock file written by its `pulumi` would record it."""

    hostname: str
    username: str
    started_at: dt.datetime
    alive: Callable[[int], bool]


def written_by(lock: Lock, job: Job) -> bool:
    """The lock was written by this job's (now dead) pulumi: this host and user, since the job began."""
    return (
        lock.hostname == job.hostname
        and lock.username == job.username
        and lock.timestamp >= job.started_at
        and not job.alive(lock.pid)
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_locks(client: Any, backend: Backend, project: str, stack: str) -> Iterator[Lock]:
    for prefix in lock_prefixes(backend, project, stack):
        try:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    # Only files directly in this stack's directory: a deeper key is another stack's.
                    if "/" in key[len(prefix) :] or not key.endswith(".json"):
                        continue
                    body = client.get_object(Bucket=backend.bucket, Key=key)["Body"].read()
                    yield parse_lock(key, body)
        except (ClientError, BotoCoreError) as error:
            raise LockError(f"cannot read locks under s3://{backend.bucket}/{prefix}: {error}") from None


def release(client: Any, backend: Backend, project: str, stack: str, job: Job, out: Callable[[str], None]) -> int:
    """Delete this job's locks of the stack; returns how many were removed."""
    removed = 0
    for lock in list(list_locks(client, backend, project, stack)):
        if not written_by(lock, job):
            out(f"left {lock.describe()}: not written by this job")
            continue
        try:
            client.delete_object(Bucket=backend.bucket, Key=lock.key)
        except (ClientError, BotoCoreError) as error:
            raise LockError(f"cannot delete {lock.key}: {error}") from None
        out(f"removed {lock.describe()}")
        removed += 1
    if removed == 0:
        out(f"no lock of {stack} written by this job")
    return removed


def wait_free(
    client: Any,
    backend: Backend,
    project: str,
    stack: str,
    timeout_seconds: float,
    out: Callable[[str], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_seconds: float = 30,
) -> None:
    deadline = clock() + timeout_seconds
    while True:
        locks = list(list_locks(client, backend, project, stack))
        if not locks:
            out(f"{stack} holds no lock")
            return
        holders = "; ".join(lock.describe() for lock in locks)
        if clock() >= deadline:
            raise LockError(f"{stack} is still locked after {timeout_seconds:g} s by {holders}")
        out(f"{stack} is locked by {holders}; waiting")
        sleep(poll_seconds)


def project_name(root: Path = ROOT) -> str:
    return str(yaml.safe_load((root / "Pulumi.yaml").read_text())["name"])


def this_job(started_at: str | None) -> Job:
    if not started_at:
        raise LockError("GANTRY_JOB_STARTED_AT is not set: pass the started-at output of .github/actions/deploy-setup")
    try:
        started = dt.datetime.fromisoformat(started_at)
    except ValueError:
        raise LockError(f"GANTRY_JOB_STARTED_AT {started_at!r} is not an ISO 8601 time") from None
    return Job(hostname=socket.gethostname(), username=getpass.getuser(), started_at=started, alive=pid_alive)


def main(argv: Sequence[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci/stack_lock.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("release", "wait"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--timeout-seconds", type=float, default=1800, help="wait: give up after (default 1800)")
    parser.add_argument("--poll-seconds", type=float, default=30, help="wait: between looks (default 30)")
    args = parser.parse_args(argv)
    try:
        backend = parse_backend(os.environ.get("PULUMI_BACKEND_URL", ""))
        s3 = client or boto3.client("s3", region_name=backend.region or os.environ.get("AWS_REGION"))
        project = project_name()
        if args.command == "release":
            release(s3, backend, project, args.stack, this_job(os.environ.get("GANTRY_JOB_STARTED_AT")), print)
        else:
            wait_free(s3, backend, project, args.stack, args.timeout_seconds, print, poll_seconds=args.poll_seconds)
    except LockError as error:
        print(f"stack_lock: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
