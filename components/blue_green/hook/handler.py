"""CodeDeploy AfterAllowTestTraffic hook: check green through the test listener, then report the verdict.

CodeDeploy invokes this Lambda function after the test listener points at the replacement (green) task
set and before any production traffic moves. It runs one check against green at TEST_URL and reports
Succeeded or Failed with codedeploy.put_lifecycle_event_hook_execution_status; Failed rolls the
deployment back. Two checks (CHECK):
- "eval": the sample worker's eval gate, the same definitions as app/worker/eval.py without numpy: every
  golden text is embedded by green, then retrieval top-1 (the positive strictly outscores each
  distractor, on unit vectors) and the cosine of each embedding to its packaged fp32 reference (min and
  mean; NaN/inf components count as 0) are held to EVAL_MIN_TOP1 / EVAL_MIN_COSINE / EVAL_MEAN_COSINE.
When TEST_LOAD_BALANCER (the ALB's ARN suffix app/NAME/ID) is set, the check connects to one of the
ALB's private addresses (its network interfaces' description is "ELB app/NAME/ID") on TEST_URL's port:
an internet-facing ALB's DNS name resolves to public addresses, which a function in the VPC reaches
only through NAT, from the NAT's address, so the test listener's security group (which admits only
the hook's group) would refuse it.
Before the check, when PRE_TRAFFIC_COMMAND is set (deployment.preTraffic), it runs that command as a
one-off Fargate task of the task definition this deployment installs (read from the deployment's own
AppSpec) with components/pre_traffic.py (shipped beside this file), and reports Failed with the task's
exit code, stop reason and logs link unless it exited 0. Lambda's 15-minute limit bounds the task: the
function's timeout is the check's 300 s plus the task's timeout, and validation keeps the task at 600 s
or less; CodeDeploy itself waits up to an hour for a hook's verdict.
- "smoke": GET HEALTH_PATH must answer 200, then SMOKE_METHOD SMOKE_PATH (with SMOKE_BODY) must answer
  SMOKE_EXPECT_STATUS: a generic check for a user's own service, meant to be replaced by a real one.
Any exception while checking reports Failed, so a deployment is never left waiting for the hook's
one-hour timeout. Only the standard library is imported at module level; boto3 (present in the Lambda
Python runtime) is imported in `handler`. Security stance: the function reaches green only through the
internal test listener; an API key, when needed, is read from Secrets Manager at run time (never from
an environment variable) and sent only in the Authorization header to TEST_URL; it is never logged.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFERENCE_FILE = Path(__file__).with_name("golden.json")
CHECKS = ("eval", "smoke")
# Same defaults as `python -m worker.eval` (app/worker/eval.py), with the same reasons.
DEFAULT_MIN_TOP1, DEFAULT_MIN_COSINE, DEFAULT_MEAN_COSINE = 0.95, 0.97, 0.985
_MAX_ATTEMPTS = 4


class CheckError(Exception):
    """The check could not be carried out (bad configuration, unreachable green, malformed answer)."""


@dataclass(frozen=True)
class Verdict:
    passed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


# --- eval arithmetic (pure; mirrors app/worker/eval.py) ------------------------------------------


def finite(vector: Sequence[float]) -> list[float]:
    """NaN and infinite components become 0, as eval.py's np.nan_to_num(nan=0, posinf=0, neginf=0)."""
    return [x if math.isfinite(x) else 0.0 for x in vector]


def unit(vector: Sequence[float]) -> list[float]:
    """Divide by the L2 norm; a zero vector stays zero (eval.py divides by 1 where the norm is 0)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return list(vector) if norm == 0 else [x / norm for x in vector]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def top1(
    cases: Sequence[Mapping[str, Any]], row: Mapping[str, int], vectors: Sequence[Sequence[float]]
) -> tuple[int, list[str]]:
    """Cases whose positive (candidates[0]) strictly outscores every distractor, and the ids missed."""
    correct, missed = 0, []
    for case in cases:
        query = vectors[row[case["query"]]]
        scores = [dot(vectors[row[text]], query) for text in case["candidates"]]
        if scores[0] > max(scores[1:]):
            correct += 1
        else:
            missed.append(case["id"])
    return correct, missed


def evaluate(
    reference: Mapping[str, Any],
    served: Sequence[Sequence[float]],
    *,
    min_top1: float,
    min_cosine: float,
    mean_cosine: float,
) -> Verdict:
    """Hold green's embeddings of reference["texts"] (same order) to the three thresholds."""
    texts, references = reference["texts"], reference["embeddings"]
    if len(served) != len(texts):
        raise CheckError(f"green returned {len(served)} embeddings for {len(texts)} texts")
    dims = {len(v) for v in served}
    if dims != {len(references[0])}:
        raise CheckError(
            f"green's embeddings have {sorted(dims)} dimensions, the references {len(references[0])}: another model"
        )
    green = [unit(finite(v)) for v in served]
    cosines = [dot(g, unit(r)) for g, r in zip(green, references, strict=True)]
    row = {text: i for i, text in enumerate(texts)}
    correct, missed = top1(reference["cases"], row, green)
    share = correct / len(reference["cases"])
    lowest, average = min(cosines), math.fsum(cosines) / len(cosines)
    checks = {
        "top1": (share, min_top1, share >= min_top1),
        "min_cosine": (lowest, min_cosine, lowest >= min_cosine),
        "mean_cosine": (average, mean_cosine, average >= mean_cosine),
    }
    passed = all(ok for _, _, ok in checks.values())
    summary = ", ".join(
        f"{name} {value:.4f} {'>=' if ok else '<'} {limit}" for name, (value, limit, ok) in checks.items()
    )
    return Verdict(passed, summary, {"missed_cases": missed, "checks": {k: v[0] for k, v in checks.items()}})


# --- HTTP against green ---------------------------------------------------------------------------


def _base_url(env: Mapping[str, str]) -> str:
    url = env.get("TEST_URL", "").strip()
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CheckError(f"TEST_URL={url!r} is invalid; allowed: the test listener's http(s)://HOST[:PORT]")
    return url.rstrip("/")


def _request(
    method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CheckError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _embed(
    url: str, texts: list[str], model: str, api_key: str | None, timeout: float, sleep: Callable[[float], None]
) -> list[list[float]]:
    payload = json.dumps({"input": texts, "model": model, "encoding_format": "float"}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        status, body = _request("POST", url, payload, headers, timeout)
        # A freshly started task can be momentarily full; retry throttling, as eval.py does, a few times.
        if status in (429, 503) and attempt < _MAX_ATTEMPTS:
            sleep(0.5 * 2**attempt)
            continue
        if status != 200:
            raise CheckError(f"{url} answered HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        try:
            data = sorted(json.loads(body)["data"], key=lambda item: item["index"])
            return [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckError(f"{url} returned a body that is not an embeddings response: {exc!r}") from None
    raise CheckError(f"{url} stayed throttled after {_MAX_ATTEMPTS} attempts")


def _unit_interval(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CheckError(f"{name}={raw!r} is not a number; allowed: 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise CheckError(f"{name}={raw!r} is out of range; allowed: 0 to 1")
    return value


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise CheckError(f"{name}={raw!r} is not a number; allowed: a number > 0") from None
    if not value > 0:
        raise CheckError(f"{name}={raw!r} is invalid; allowed: a number > 0")
    return value


def private_test_url(env: Mapping[str, str], ec2: Any) -> str:
    """TEST_URL with its host replaced by a private address of the TEST_LOAD_BALANCER's interfaces."""
    base = _base_url(env)
    suffix = env.get("TEST_LOAD_BALANCER", "").strip()
    if not suffix:
        return base
    answer = ec2.describe_network_interfaces(Filters=[{"Name": "description", "Values": [f"ELB {suffix}"]}])
    addresses = sorted(i["PrivateIpAddress"] for i in answer.get("NetworkInterfaces", []) if i.get("PrivateIpAddress"))
    if not addresses:
        raise CheckError(f"no network interface of load balancer {suffix} found; is TEST_LOAD_BALANCER right?")
    parsed = urllib.parse.urlsplit(base)
    port = f":{parsed.port}" if parsed.port else ""
    return urllib.parse.urlunsplit((parsed.scheme, f"{addresses[0]}{port}", parsed.path, "", ""))


def load_reference(path: Path = REFERENCE_FILE) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckError(f"cannot read the packaged references {path.name}: {exc}") from None


def api_key(env: Mapping[str, str], secrets: Any) -> str | None:
    """The tenant key from the API_KEY_SECRET_ARN secret (a JSON object tenant -> key, as the worker's
    API_KEYS), for tenant API_KEY_TENANT; None when no secret is configured."""
    arn = env.get("API_KEY_SECRET_ARN", "").strip()
    if not arn:
        return None
    tenant = env.get("API_KEY_TENANT", "").strip()
    if not tenant:
        raise CheckError(
            "API_KEY_SECRET_ARN is set but API_KEY_TENANT is not; name the tenant whose key the check uses"
        )
    keys = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    if not isinstance(keys, dict) or not isinstance(keys.get(tenant), str):
        # Never echo the secret: name only what is missing.
        raise CheckError(f"the API key secret has no string entry for tenant {tenant!r}")
    return keys[tenant]


def eval_check(env: Mapping[str, str], key: str | None, sleep: Callable[[float], None] = time.sleep) -> Verdict:
    base = _base_url(env)
    reference = load_reference(Path(env["REFERENCE_FILE"]) if env.get("REFERENCE_FILE") else REFERENCE_FILE)
    timeout = _positive(env, "REQUEST_TIMEOUT_SECONDS", 30.0)
    batch = int(_positive(env, "EVAL_BATCH_SIZE", 32))
    model = env.get("EVAL_MODEL", "").strip() or reference.get("model_id", "all-MiniLM-L6-v2")
    thresholds = {
        "min_top1": _unit_interval(env, "EVAL_MIN_TOP1", DEFAULT_MIN_TOP1),
        "min_cosine": _unit_interval(env, "EVAL_MIN_COSINE", DEFAULT_MIN_COSINE),
        "mean_cosine": _unit_interval(env, "EVAL_MEAN_COSINE", DEFAULT_MEAN_COSINE),
    }
    texts = reference["texts"]
    served: list[list[float]] = []
    for start in range(0, len(texts), batch):
        served.extend(_embed(f"{base}/v1/embeddings", texts[start : start + batch], model, key, timeout, sleep))
    return evaluate(reference, served, **thresholds)


def smoke_check(env: Mapping[str, str], key: str | None) -> Verdict:
    base = _base_url(env)
    timeout = _positive(env, "REQUEST_TIMEOUT_SECONDS", 30.0)
    health = env.get("HEALTH_PATH", "/health").strip() or "/health"
    status, _ = _request("GET", base + health, None, {}, timeout)
    if status != 200:
        return Verdict(False, f"GET {health} answered {status}, expected 200")
    path = env.get("SMOKE_PATH", "").strip()
    if not path:
        return Verdict(True, f"GET {health} answered 200 (no SMOKE_PATH configured)")
    method = env.get("SMOKE_METHOD", "GET").strip().upper()
    if method not in ("GET", "POST"):
        raise CheckError(f"SMOKE_METHOD={method!r} is invalid; allowed: GET, POST")
    raw_expected = env.get("SMOKE_EXPECT_STATUS", "200").strip()
    if not raw_expected.isdigit() or not 100 <= int(raw_expected) <= 599:
        raise CheckError(f"SMOKE_EXPECT_STATUS={raw_expected!r} is invalid; allowed: an HTTP status 100-599")
    body = env.get("SMOKE_BODY", "").encode() or None
    headers = {"Content-Type": "application/json"} if body else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    status, _ = _request(method, base + path, body, headers, timeout)
    passed = status == int(raw_expected)
    return Verdict(passed, f"GET {health} 200; {method} {path} answered {status}, expected {raw_expected}")


# --- the one-off task before the check (deployment.preTraffic) -------------------------------------


def _pre_traffic_module() -> Any:
    """The runner: the archive's copy in Lambda, the repository's module in tests (one source file)."""
    try:
        import pre_traffic  # type: ignore[import-not-found]
    except ImportError:
        from components import pre_traffic
    return pre_traffic


def deployed_task_definition(codedeploy: Any, deployment_id: str) -> str:
    """The task definition this deployment installs on green, read from its own AppSpec (gantry writes
    JSON, components.blue_green.appspec), so the one-off task runs exactly the revision being deployed."""
    info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    content = ((info.get("revision") or {}).get("appSpecContent") or {}).get("content")
    if not content:
        raise CheckError(f"deployment {deployment_id} carries no AppSpec content to read the task definition from")
    for resource in json.loads(content).get("Resources", []):
        for target in resource.values():
            if target.get("Type") == "AWS::ECS::Service":
                return str(target["Properties"]["TaskDefinition"])
    raise CheckError(f"deployment {deployment_id}'s AppSpec names no AWS::ECS::Service task definition")


def pre_traffic_task(env: Mapping[str, str], task_definition_arn: str) -> Any:
    """The one-off task from the PRE_TRAFFIC_* variables the component sets."""
    module = _pre_traffic_module()
    try:
        command = json.loads(env["PRE_TRAFFIC_COMMAND"])
        return module.OneOffTask(
            region=env["AWS_REGION"],
            cluster=env["PRE_TRAFFIC_CLUSTER"],
            task_definition_arn=task_definition_arn,
            container_name=env["PRE_TRAFFIC_CONTAINER"],
            command=tuple(str(a) for a in command),
            subnets=tuple(s for s in env["PRE_TRAFFIC_SUBNETS"].split(",") if s),
            security_groups=tuple(s for s in env["PRE_TRAFFIC_SECURITY_GROUPS"].split(",") if s),
            log_group=env["PRE_TRAFFIC_LOG_GROUP"],
            log_stream_prefix=env["PRE_TRAFFIC_LOG_STREAM_PREFIX"],
            timeout_seconds=int(env["PRE_TRAFFIC_TIMEOUT_SECONDS"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckError(f"the pre-traffic task is misconfigured: {type(exc).__name__}: {exc}") from None


def run_pre_traffic(
    deployment_id: str, env: Mapping[str, str], *, codedeploy: Any, ecs: Any, log: Callable[[str], None], sleep: Any
) -> Verdict:
    """Run the one-off task of the deployment's revision; a failure is the hook's verdict."""
    task = pre_traffic_task(env, deployed_task_definition(codedeploy, deployment_id))
    module = _pre_traffic_module()
    try:
        module.OneOffTaskRunner(ecs, log=log, sleep=sleep).run(task)
    except module.OneOffTaskFailed as failed:
        return Verdict(False, str(failed))
    return Verdict(True, "pre-traffic task exited 0")


def run(
    event: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    codedeploy: Any,
    secrets: Any = None,
    ec2: Any = None,
    ecs: Any = None,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Run the pre-traffic task (when configured), then check green, and report; every failure to run or
    check is reported as Failed."""
    deployment_id = event.get("DeploymentId")
    execution_id = event.get("LifecycleEventHookExecutionId")
    if not deployment_id or not execution_id:
        # Without both ids there is no deployment to report to; a direct (test) invocation lands here.
        raise CheckError("event lacks DeploymentId or LifecycleEventHookExecutionId: invoke through CodeDeploy")
    try:
        check = env.get("CHECK", "").strip()
        if check not in CHECKS:
            raise CheckError(f"CHECK={check!r} is invalid; allowed: {', '.join(CHECKS)}")
        verdict = Verdict(True, "")
        if env.get("PRE_TRAFFIC_COMMAND", "").strip():
            verdict = run_pre_traffic(deployment_id, env, codedeploy=codedeploy, ecs=ecs, log=log, sleep=sleep)
        if verdict.passed:
            key = api_key(env, secrets)
            if env.get("TEST_LOAD_BALANCER", "").strip():
                env = {**env, "TEST_URL": private_test_url(env, ec2)}
            verdict = eval_check(env, key, sleep) if check == "eval" else smoke_check(env, key)
    except Exception as exc:  # noqa: BLE001 — whatever went wrong, the deployment must hear Failed.
        verdict = Verdict(False, f"check could not run: {type(exc).__name__}: {exc}")
    status = "Succeeded" if verdict.passed else "Failed"
    log(
        json.dumps(
            {
                "event": "hook_verdict",
                "deployment_id": deployment_id,
                "status": status,
                "summary": verdict.summary,
                **verdict.details,
            }
        )
    )
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
    )
    return {"status": status, "summary": verdict.summary}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, str]:
    """Lambda entry point (handler.handler)."""
    import boto3  # Provided by the Lambda Python runtime.

    secrets = boto3.client("secretsmanager") if os.environ.get("API_KEY_SECRET_ARN") else None
    ec2 = boto3.client("ec2") if os.environ.get("TEST_LOAD_BALANCER") else None
    ecs = boto3.client("ecs") if os.environ.get("PRE_TRAFFIC_COMMAND") else None
    return run(event, os.environ, codedeploy=boto3.client("codedeploy"), secrets=secrets, ec2=ec2, ecs=ecs)
