"""The AfterAllowTestTraffic hook: eval and smoke checks against a local HTTP server (127.0.0.1 only), the
verdict call through botocore's Stubber, the eval arithmetic against app/worker/eval.py, and the packaged
references against what the model build produces.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import random
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import botocore.session
import numpy as np
import pytest
from botocore.stub import Stubber

from components.blue_green import hook_package
from components.blue_green.hook import handler

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "app"
EVENT = {"DeploymentId": "d-NEW", "LifecycleEventHookExecutionId": "exec-1"}
REFERENCE = handler.load_reference()
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:210987654321:secret:gantry-prod-api-keys-Ab12Cd"
KEY = "k" * 32


@contextmanager
def green_server(embed, health_status: int = 200, seen: list | None = None):
    """Serve /health and /v1/embeddings; `embed(texts)` returns (status, vectors)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(health_status if self.path == "/health" else 404, b"{}")

        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if seen is not None:
                seen.append((self.path, self.headers.get("Authorization"), payload))
            if self.path != "/v1/embeddings":
                self._send(201 if self.path == "/echo" else 404, b"{}")
                return
            status, vectors = embed(payload["input"])
            data = [{"index": i, "embedding": v} for i, v in enumerate(vectors)]
            random.Random(0).shuffle(data)  # the handler must order by index
            self._send(status, json.dumps({"data": data}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


ROW = {text: i for i, text in enumerate(REFERENCE["texts"])}


def references_for(texts):
    return 200, [REFERENCE["embeddings"][ROW[t]] for t in texts]


def noisy(texts):
    rng = np.random.default_rng(1)
    return 200, [list(np.asarray(REFERENCE["embeddings"][ROW[t]]) + rng.normal(0, 0.002, 384)) for t in texts]


def random_vectors(texts):
    rng = np.random.default_rng(2)
    return 200, rng.normal(size=(len(texts), 384)).tolist()


def run(env, expect: str, secret: str | None = None):
    session = botocore.session.get_session()
    make = lambda n: session.create_client(n, region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t")  # noqa: E731
    codedeploy, secrets = make("codedeploy"), make("secretsmanager")
    with Stubber(codedeploy) as cd_stub, Stubber(secrets) as sm_stub:
        if secret is not None:
            sm_stub.add_response("get_secret_value", {"SecretString": secret}, {"SecretId": SECRET_ARN})
        cd_stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": "exec-1"},
            {"deploymentId": "d-NEW", "lifecycleEventHookExecutionId": "exec-1", "status": expect},
        )
        logs: list[str] = []
        result = handler.run(EVENT, env, codedeploy=codedeploy, secrets=secrets, log=logs.append, sleep=lambda s: None)
        cd_stub.assert_no_pending_responses()
        sm_stub.assert_no_pending_responses()
    assert result["status"] == expect
    assert json.loads(logs[-1])["status"] == expect
    return result


def test_eval_passes_for_green_serving_the_reference_model():
    with green_server(noisy) as url:
        result = run({"CHECK": "eval", "TEST_URL": url}, "Succeeded")
    assert "top1 1.0000 >= 0.95" in result["summary"]


def test_eval_fails_for_green_serving_another_model():
    with green_server(random_vectors) as url:
        result = run({"CHECK": "eval", "TEST_URL": url}, "Failed")
    assert "min_cosine" in result["summary"] and "<" in result["summary"]


def test_eval_thresholds_come_from_the_environment():
    with green_server(noisy) as url:
        result = run({"CHECK": "eval", "TEST_URL": url, "EVAL_MIN_COSINE": "1.0"}, "Failed")
    assert "min_cosine" in result["summary"] and "< 1.0" in result["summary"]


def test_eval_sends_the_tenant_key_from_the_secret():
    seen: list = []
    secret = json.dumps({"team-a": KEY, "team-b": "x" * 32})
    env = {"CHECK": "eval", "TEST_URL": "", "API_KEY_SECRET_ARN": SECRET_ARN, "API_KEY_TENANT": "team-a"}
    with green_server(references_for, seen=seen) as url:
        result = run({**env, "TEST_URL": url}, "Succeeded", secret=secret)
    assert {auth for _, auth, _ in seen} == {f"Bearer {KEY}"}
    assert KEY not in json.dumps(result)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CHECK": "eval", "TEST_URL": "http://127.0.0.1:1"}, "cannot reach"),
        ({"CHECK": "eval", "TEST_URL": "ftp://green"}, "TEST_URL"),
        ({"CHECK": "fuzz", "TEST_URL": "http://127.0.0.1:1"}, "CHECK"),
        ({"CHECK": "eval", "TEST_URL": "http://127.0.0.1:1", "EVAL_MIN_TOP1": "2"}, "EVAL_MIN_TOP1"),
    ],
)
def test_any_error_reports_failed(env, needle):
    assert needle in run(env, "Failed")["summary"]


def test_server_error_and_wrong_dimensions_report_failed():
    with green_server(lambda texts: (500, [])) as url:
        assert "HTTP 500" in run({"CHECK": "eval", "TEST_URL": url}, "Failed")["summary"]
    with green_server(lambda texts: (200, [[1.0, 0.0]] * len(texts))) as url:
        assert "dimensions" in run({"CHECK": "eval", "TEST_URL": url}, "Failed")["summary"]


def test_missing_event_ids_raise_without_reporting():
    with pytest.raises(handler.CheckError, match="DeploymentId"):
        handler.run({}, {"CHECK": "smoke"}, codedeploy=None)


def test_smoke_check_health_and_one_request():
    seen: list = []
    env = {
        "CHECK": "smoke",
        "SMOKE_PATH": "/echo",
        "SMOKE_METHOD": "POST",
        "SMOKE_BODY": '{"x": 1}',
        "SMOKE_EXPECT_STATUS": "201",
    }
    with green_server(references_for, seen=seen) as url:
        run({**env, "TEST_URL": url}, "Succeeded")
        run({**env, "TEST_URL": url, "SMOKE_EXPECT_STATUS": "200"}, "Failed")
    assert seen[0][0] == "/echo" and seen[0][2] == {"x": 1}
    with green_server(references_for, health_status=503) as url:
        assert "answered 503" in run({"CHECK": "smoke", "TEST_URL": url}, "Failed")["summary"]


def test_eval_arithmetic_agrees_with_the_worker_eval():
    from worker import eval as worker_eval
    from worker.golden import load_golden

    cases = load_golden()
    texts = REFERENCE["texts"]
    rng = np.random.default_rng(3)
    served = np.asarray(REFERENCE["embeddings"]) + rng.normal(0, 0.05, (len(texts), 384))
    served[5, 7] = np.nan  # the worker eval zeroes non-finite components
    served[9] = 0.0  # and keeps a zero vector at zero
    clean = np.nan_to_num(served, nan=0.0, posinf=0.0, neginf=0.0)
    unit = worker_eval._normalize(clean)
    expected_cos = np.einsum("ij,ij->i", unit, worker_eval._normalize(np.asarray(REFERENCE["embeddings"])))
    row = {t: i for i, t in enumerate(texts)}
    expected_correct, expected_missed = worker_eval._top1(cases, row, unit)

    green = [handler.unit(handler.finite(v)) for v in served.tolist()]
    cosines = [handler.dot(g, handler.unit(r)) for g, r in zip(green, REFERENCE["embeddings"], strict=True)]
    assert np.allclose(cosines, expected_cos, atol=1e-12)
    correct, missed = handler.top1(REFERENCE["cases"], row, green)
    assert (correct, missed) == (expected_correct, [m["id"] for m in expected_missed])
    verdict = handler.evaluate(REFERENCE, served.tolist(), min_top1=0.0, min_cosine=0.0, mean_cosine=0.0)
    assert verdict.details["checks"]["min_cosine"] == pytest.approx(float(expected_cos.min()), abs=1e-12)
    assert verdict.details["checks"]["mean_cosine"] == pytest.approx(float(expected_cos.mean()), abs=1e-12)


@pytest.fixture(scope="module")
def built_model() -> Path:
    """The model build's output, shared with app/tests (same directory and cache key as its model_dir).

    app/tests is no package: under pytest its directory is on the path, here its conftest and the
    `worker_harness` it imports are loaded by file, the helper first under the name the conftest imports."""

    def load(name: str, file: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, APP_DIR / "tests" / file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    if "worker_harness" not in sys.modules:
        load("worker_harness", "worker_harness.py")
    return Path(load("app_tests_conftest", "conftest.py").ensure_model())


def test_packaged_references_match_the_model_build(built_model):
    rebuilt = hook_package.reference_document(built_model / "references.npz")
    assert REFERENCE["texts"] == rebuilt["texts"]
    assert REFERENCE["cases"] == rebuilt["cases"]
    assert REFERENCE["golden_sha256"] == rebuilt["golden_sha256"]
    # Within float32 tolerance, not bit for bit: the build's fp32 kernels round differently on each CPU
    # (an AVX-512 build differs from the AVX2 one that wrote golden.json by 1.6e-7), see REFERENCE_ATOL.
    assert hook_package.reference_drift(REFERENCE["embeddings"], rebuilt["embeddings"]) == []
    with np.load(built_model / "references.npz") as npz:
        fp32 = {str(t): v for t, v in zip(npz["texts"], npz["embeddings"], strict=True)}
    assert hook_package.reference_drift(REFERENCE["embeddings"], [fp32[t] for t in REFERENCE["texts"]]) == []


def test_reference_drift_tolerates_another_cpus_rounding_and_nothing_more():
    committed = np.asarray(REFERENCE["embeddings"])
    rng = np.random.default_rng(5)
    # Another CPU's fp32 build: every component off by up to 2e-7 (an AVX-512 build measured 1.6e-7
    # from the AVX2 one), in a random direction or all in one.
    for other_cpu in (committed + rng.uniform(-2e-7, 2e-7, committed.shape), committed + 2e-7, committed - 2e-7):
        assert hook_package.reference_drift(committed, other_cpu) == []
    assert hook_package.reference_drift(committed, np.float32(committed)) == []
    # What a stale golden.json looks like: one component moved as a model or tokenizer change moves it,
    # references rounded to 3 decimals, a text's vector swapped with another's, a lost row, a NaN.
    moved = committed.copy()
    moved[7, 100] += 1e-4
    assert "text 7 component 100" in hook_package.reference_drift(committed, moved)[0]
    assert hook_package.reference_drift(committed, np.round(committed, 3))
    swapped = committed.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert any("below cosine" in p for p in hook_package.reference_drift(committed, swapped))
    assert "shape" in hook_package.reference_drift(committed, committed[:-1])[0]
    broken = committed.copy()
    broken[3, 3] = np.nan
    assert hook_package.reference_drift(committed, broken)


def test_archive_files():
    eval_files = hook_package.archive_files("eval")
    assert [name for _, name in eval_files] == ["handler.py", "golden.json"]
    assert [name for _, name in hook_package.archive_files("smoke")] == ["handler.py"]
    assert all(path.is_file() for path, _ in eval_files)
    assert hook_package.LAMBDA_HANDLER == "handler.handler" and callable(handler.handler)
    with pytest.raises(ValueError, match="eval, smoke"):
        hook_package.archive_files("canary")


def test_handler_imports_only_the_standard_library_at_module_level():
    tree = ast.parse(Path(handler.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_the_test_url_goes_to_a_private_address_of_the_load_balancer():
    ec2 = botocore.session.get_session().create_client(
        "ec2", region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    env = {"TEST_URL": "http://gantry-lb-alb-123.eu-west-1.elb.amazonaws.com:9000", "TEST_LOAD_BALANCER": "app/lb/50dc"}
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_network_interfaces",
            {"NetworkInterfaces": [{"PrivateIpAddress": "10.30.2.17"}, {"PrivateIpAddress": "10.30.1.9"}]},
            {"Filters": [{"Name": "description", "Values": ["ELB app/lb/50dc"]}]},
        )
        assert handler.private_test_url(env, ec2) == "http://10.30.1.9:9000"
        stub.add_response("describe_network_interfaces", {"NetworkInterfaces": []})
        with pytest.raises(handler.CheckError, match="no network interface of load balancer app/lb/50dc"):
            handler.private_test_url(env, ec2)
    # Without TEST_LOAD_BALANCER the URL is used as given (a local run, or an internal ALB).
    assert handler.private_test_url({"TEST_URL": "http://127.0.0.1:8000/"}, None) == "http://127.0.0.1:8000"


def test_the_check_runs_against_the_load_balancers_private_address():
    session = botocore.session.get_session()
    make = lambda n: session.create_client(n, region_name="eu-west-1", aws_access_key_id="t", aws_secret_access_key="t")  # noqa: E731
    codedeploy, ec2 = make("codedeploy"), make("ec2")
    with green_server(references_for) as url, Stubber(codedeploy) as cd_stub, Stubber(ec2) as ec2_stub:
        port = url.rsplit(":", 1)[1]
        # The public name does not resolve here: only the private address found for the ALB can pass.
        env = {"CHECK": "smoke", "TEST_URL": f"http://alb.invalid:{port}", "TEST_LOAD_BALANCER": "app/lb/50dc"}
        ec2_stub.add_response("describe_network_interfaces", {"NetworkInterfaces": [{"PrivateIpAddress": "127.0.0.1"}]})
        cd_stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": "exec-1"},
            {"deploymentId": "d-NEW", "lifecycleEventHookExecutionId": "exec-1", "status": "Succeeded"},
        )
        result = handler.run(EVENT, env, codedeploy=codedeploy, ec2=ec2, log=lambda line: None)
    assert result["status"] == "Succeeded", result
