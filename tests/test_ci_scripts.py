"""The scripts the workflows call (scripts/ci): the key and ECR password readers, smoke, the eval runners.

eval_key.py and ecr_password.py run against botocore's Stubber (the APIs as their models define them);
the shell scripts run for real, with a local HTTP server standing in for the worker, moto for Secrets
Manager and ECR, and a recording fake `docker` on PATH, so what they pass to Docker (and what they keep
out of argv and logs) is asserted, not assumed.
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import botocore.session
import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from tests.harness import ROOT

CI = ROOT / "scripts" / "ci"


def _script_module(path: Path) -> ModuleType:
    """A script of scripts/ci (a directory of commands, not a package) imported as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eval_key = _script_module(CI / "eval_key.py")
ecr_password = _script_module(CI / "ecr_password.py")
ARN = "arn:aws:secretsmanager:eu-west-1:210987654321:secret:gantry-secrets-api-keys-Ab12Cd"
KEY = "k-eval-test-0123456789abcdef"


def stubbed(response: dict | None = None, error: str | None = None):
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    if error:
        stubber.add_client_error("get_secret_value", service_error_code=error, expected_params={"SecretId": ARN})
    else:
        stubber.add_response("get_secret_value", response or {}, {"SecretId": ARN})
    stubber.activate()
    return client


def test_eval_key_prints_the_tenants_key_alone(capsys: pytest.CaptureFixture[str]) -> None:
    secret = json.dumps({"tenant-a": "k-other-tenant-key-000", "gantry-eval": KEY})
    client = stubbed({"ARN": ARN, "SecretString": secret})
    assert eval_key.main(["--secret-id", ARN], client=client) == 0
    out = capsys.readouterr()
    assert out.out == KEY + "\n" and out.err == ""


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        ({"ARN": ARN, "SecretString": json.dumps({"tenant-a": KEY})}, None, "has no key for tenant 'gantry-eval'"),
        ({"ARN": ARN, "SecretString": f"not json {KEY}"}, None, "is not JSON"),
        ({"ARN": ARN, "SecretString": json.dumps([KEY])}, None, "is not a JSON object"),
        ({"ARN": ARN, "SecretBinary": b"\x00"}, None, "holds binary data"),
        (None, "AccessDeniedException", "cannot read secret"),
    ],
)
def test_eval_key_errors_name_the_problem_and_never_a_key(
    capsys: pytest.CaptureFixture[str], response: dict | None, error: str | None, message: str
) -> None:
    assert eval_key.main(["--secret-id", ARN], client=stubbed(response, error)) == 1
    out = capsys.readouterr()
    assert out.out == "" and message in out.err and KEY not in out.err


def test_ecr_password_prints_the_password_part_of_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    client = botocore.session.get_session().create_client(
        "ecr", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    token = base64.b64encode(b"AWS:registry-password-123").decode()
    stubber.add_response("get_authorization_token", {"authorizationData": [{"authorizationToken": token}]}, {})
    stubber.add_response("get_authorization_token", {"authorizationData": []}, {})
    stubber.add_client_error("get_authorization_token", service_error_code="AccessDeniedException")
    stubber.activate()
    assert ecr_password.main(client) == 0
    assert capsys.readouterr().out == "registry-password-123\n"
    assert ecr_password.main(client) == 1
    assert "no authorization data" in capsys.readouterr().err
    assert ecr_password.main(client) == 1
    assert "cannot get an ECR authorization token" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------
# Shell scripts


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, type[Health]]]:
    handler = type("H", (Health,), {"status": 200})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], handler
    httpd.shutdown()


def sh(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CI / script), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_smoke_passes_on_health_and_fails_in_time_otherwise(server: tuple[int, type[Health]]) -> None:
    port, handler = server
    ok = sh("smoke.sh", f"http://127.0.0.1:{port}/")
    assert ok.returncode == 0 and "answered 200" in ok.stdout
    handler.status = 503
    failing = sh(
        "smoke.sh", f"http://127.0.0.1:{port}", env={"SMOKE_TIMEOUT_SECONDS": "1", "SMOKE_INTERVAL_SECONDS": "1"}
    )
    assert failing.returncode == 1 and "last status 503" in failing.stderr


def test_smoke_usage_errors() -> None:
    assert sh("smoke.sh").returncode == 2
    bad = sh("smoke.sh", "ftp://example.com")
    assert bad.returncode == 2 and "not an http(s) URL" in bad.stderr


def fake_tools(tmp_path: Path) -> Path:
    """A `docker` that logs its argv and whether the key variables (or a password on stdin) reached it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "docker $* | EVAL_API_KEY=${{EVAL_API_KEY:+set}} API_KEYS=${{API_KEYS:+set}}" >> {log}\n'
        # `docker login --password-stdin` reads the password: record only that one arrived.
        'case "$*" in *--password-stdin*) [ -n "$(cat)" ] && echo "  password on stdin" >> '
        f"{log} ;; esac\n"
    )
    docker.chmod(0o755)
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_eval_container_runs_the_eval_in_the_container_with_a_masked_key_outside_argv(
    tmp_path: Path, server: tuple[int, type[Health]]
) -> None:
    port, _ = server
    bin_dir = fake_tools(tmp_path)
    result = sh(
        "eval_container.sh", "gantry-worker:ci", env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "EVAL_PORT": str(port)}
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    mask = next(line for line in result.stdout.splitlines() if line.startswith("::add-mask::"))
    key = mask.removeprefix("::add-mask::")
    assert len(key) >= 32 and result.stdout.count(key) == 1
    assert not any(key in c for c in calls)
    run, exec_, rm = calls
    assert run.startswith("docker run --detach") and "--read-only --tmpfs /tmp --env API_KEYS" in run
    assert f"--publish 127.0.0.1:{port}:8000 gantry-worker:ci" in run and "API_KEYS=set" in run
    assert "exec --env EVAL_API_KEY" in exec_ and "python -m worker.eval --url http://127.0.0.1:8000" in exec_
    assert rm.startswith("docker rm --force")


def test_eval_deployed_refuses_what_is_not_a_digest_pinned_ecr_image(tmp_path: Path) -> None:
    env = {"PATH": f"{fake_tools(tmp_path)}:{os.environ['PATH']}", "EVAL_KEY_SECRET_ARN": ARN}
    assert sh("eval_deployed.sh", "https://x").returncode == 2
    tag = sh("eval_deployed.sh", "https://x", "210987654321.dkr.ecr.eu-west-1.amazonaws.com/repo:latest", env=env)
    assert tag.returncode == 2 and "not an ECR image pinned by digest" in tag.stderr
    no_secret = {k: v for k, v in os.environ.items() if k != "EVAL_KEY_SECRET_ARN"}
    missing = subprocess.run(
        [str(CI / "eval_deployed.sh"), "https://x", "r.dkr.ecr.eu-west-1.amazonaws.com/repo@sha256:" + "a" * 64],
        capture_output=True,
        text=True,
        env=no_secret,
    )
    assert missing.returncode != 0 and "set EVAL_KEY_SECRET_ARN" in missing.stderr
    assert not (tmp_path / "calls.log").exists()


def test_eval_deployed_reads_the_key_logs_in_and_runs_the_image_eval_against_the_url(tmp_path: Path) -> None:
    """Against moto's Secrets Manager and ECR over HTTP: the key read with the job's credentials, masked
    first and kept out of argv; the password piped to `docker login`; the pinned image run against URL."""
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    try:
        client = botocore.session.get_session().create_client(
            "secretsmanager",
            region_name="eu-west-1",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        arn = client.create_secret(Name="gantry-secrets-api-keys", SecretString=json.dumps({"gantry-eval": KEY}))["ARN"]
        image = "210987654321.dkr.ecr.eu-west-1.amazonaws.com/gantry-image-repo@sha256:" + "ab" * 32
        env = {"PATH": f"{fake_tools(tmp_path)}:{os.environ['PATH']}", "EVAL_KEY_SECRET_ARN": arn, **aws}
        result = sh("eval_deployed.sh", "http://gantry-lb.example", image, env=env)
    finally:
        moto.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"::add-mask::{KEY}" and result.stdout.count(KEY) == 1
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert not any(KEY in c for c in calls)
    login, password, run = calls
    assert password == "  password on stdin"
    assert login.startswith("docker login --username AWS --password-stdin 210987654321.dkr.ecr.eu-west-1.amazonaws.com")
    assert run.startswith(f"docker run --rm --read-only --tmpfs /tmp --env EVAL_API_KEY {image} python -m worker.eval")
    assert "--url http://gantry-lb.example" in run and "EVAL_API_KEY=set" in run
