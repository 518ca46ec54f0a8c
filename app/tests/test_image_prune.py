"""The image's botocore pruning, run as the Dockerfile runs it, on a copy of this venv's botocore and boto3.

app/Dockerfile runs `python tools/prune_botocore.py /opt/venv` in its builder stage; this runs the same
command as a process on a copy laid out like a venv, then imports boto3 from the copy in a fresh
interpreter and builds what the worker builds (the sqs, s3 and dynamodb clients and the dynamodb
resource, plus sts) — so a model the worker needs cannot be pruned away unnoticed — and checks that a
model it does not need is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import botocore

from worker_harness import APP_DIR

PRUNE = APP_DIR / "tools" / "prune_botocore.py"


def _venv_copy(root: Path) -> Path:
    site = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True)
    for package in (botocore, boto3):
        shutil.copytree(Path(package.__file__).parent, site / package.__name__)
    return site


def test_the_dockerfile_runs_the_pruning_command():
    text = (APP_DIR / "Dockerfile").read_text()
    assert "python tools/prune_botocore.py /opt/venv" in text
    assert "COPY tools/prune_botocore.py tools/" in text


def test_pruned_botocore_still_builds_every_client_the_worker_uses(tmp_path):
    site = _venv_copy(tmp_path / "venv")
    result = subprocess.run(
        [sys.executable, str(PRUNE), str(tmp_path / "venv")], capture_output=True, text=True, timeout=120, check=True
    )
    removed = int(re.search(r"pruned (\d+) bytes", result.stdout).group(1))
    assert removed > 15_000_000  # botocore 1.44 + boto3: 18.0 MB of models removed, 0.5 MB kept
    kept = sorted(p.name for p in (site / "botocore" / "data").iterdir() if p.is_dir())
    assert kept == ["dynamodb", "s3", "sqs", "sso", "sso-oidc", "sts"]
    assert (site / "botocore" / "data" / "endpoints.json").is_file()

    script = textwrap.dedent(
        """
        import boto3, botocore.exceptions
        assert boto3.__file__.startswith(SITE), boto3.__file__
        session = boto3.session.Session(region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
        for name in ("sqs", "s3", "dynamodb", "sts"):
            session.client(name)
        session.resource("dynamodb").Table("records")
        try:
            session.client("ec2")
        except botocore.exceptions.UnknownServiceError:
            print("ok")
        """
    ).replace("SITE", repr(str(site)))
    check = subprocess.run(
        # The pruned directory first on the path (PYTHONPATH precedes site-packages; the script asserts boto3
        # comes from it); -s and -P keep the user site and the working directory out, as -I did.
        [sys.executable, "-s", "-P", "-c", script],
        env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "ok"


def test_a_path_without_botocore_is_refused_and_nothing_is_deleted(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = subprocess.run([sys.executable, str(PRUNE), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no botocore/data" in result.stderr
    assert (tmp_path / "keep.txt").exists()
