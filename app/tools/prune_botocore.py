"""Remove the AWS service models the worker never loads from a virtualenv's botocore and boto3.

botocore ships a model for every AWS service (18 MB of files, botocore 1.44 + boto3);
the worker talks to three services. Only these models stay: sqs, s3 and dynamodb (the Batch API's
calls, and boto3's dynamodb resource model), and sts, sso and sso-oidc (credential providers that
load a client: web identity / assume-role profiles and SSO profiles when run outside ECS; inside ECS
the task role's container credentials need none). Every top-level file of botocore's data directory
stays: endpoints.json, partitions.json, sdk-default-configuration.json and _retry.json are what
endpoint and retry resolution read for any service. Run by app/Dockerfile's builder stage on
/opt/venv, and by app/tests/test_image_prune.py on a copy of a venv, as the same command:

    python tools/prune_botocore.py <venv or site-packages directory>

It prints the bytes removed. Security stance: it only deletes below botocore/data and boto3/data of
the directory it is given, and refuses a directory without them (a mistyped path deletes nothing).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = frozenset({"sqs", "s3", "dynamodb", "sts", "sso", "sso-oidc"})


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prune(root: Path) -> int:
    """Delete every service model directory not in KEEP under `root`; returns the bytes removed."""
    data_dirs = sorted(root.rglob("site-packages/botocore/data")) + sorted(root.rglob("site-packages/boto3/data"))
    if not any(d.parent.name == "botocore" for d in data_dirs):
        # A site-packages directory given directly.
        data_dirs = [d for d in (root / "botocore" / "data", root / "boto3" / "data") if d.is_dir()]
    if not data_dirs:
        raise SystemExit(f"{root}: no botocore/data below it; give a virtualenv or site-packages directory")
    removed = 0
    for data in data_dirs:
        for service in sorted(p for p in data.iterdir() if p.is_dir() and p.name not in KEEP):
            removed += _size(service)
            shutil.rmtree(service)
    return removed


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/prune_botocore.py <venv or site-packages directory>", file=sys.stderr)
        return 2
    removed = prune(Path(argv[0]))
    print(f"pruned {removed} bytes of unused AWS service models")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
