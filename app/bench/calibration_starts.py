"""How stable the worker's start-up calibration is: the run size and fixed run cost of N starts.

Run from `app/` after building the model (see app/README.md, "Benchmark"). Each start runs
`python -m worker` pinned with taskset to one CPU with INFERENCE_THREADS=1 and MAX_BATCH_SIZE
unset, as the benchmark does, waits for its `batch_calibrated` log event (the calibration runs
in idle time, so no request is sent), records the chosen `max_cells` and `overhead_cells`, and
stops it. With --compare-app (another version's app/, e.g. an export of an older commit) the
starts alternate between the two, so both see the same host load. It prints one line per start
and a summary (distinct run sizes, overhead range) as Markdown, and JSON with --json FILE. A
measuring tool, not a test: it asserts nothing. Listens on 127.0.0.1 only, with a throwaway key.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent


def calibrated(app_dir: Path, model_dir: Path, cpu: int, port: int, timeout: float) -> dict:
    """Start the worker in `app_dir`, return its `batch_calibrated` event, stop it."""
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "API_KEYS": json.dumps({"bench": secrets.token_urlsafe(32)}),
        "INFERENCE_THREADS": "1",
    }
    for name in ("MAX_BATCH_SIZE", "AUTH_DISABLED"):
        env.pop(name, None)
    process = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "worker"],
        cwd=app_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    try:
        for raw in process.stdout:
            if time.monotonic() > deadline:
                break
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "batch_calibrated":
                return line
        raise SystemExit(f"calibration_starts: no batch_calibrated event from {app_dir} within {timeout:.0f} s")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def summary(name: str, events: list[dict]) -> str:
    cells = sorted({event["max_cells"] for event in events})
    overheads = [event["overhead_cells"] for event in events]
    return (
        f"| {name} | {len(events)} | {', '.join(map(str, cells))} | "
        f"{min(overheads):.1f}-{max(overheads):.1f} | {', '.join(str(event['max_cells']) for event in events)} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("MODEL_DIR"), help="default: $MODEL_DIR")
    parser.add_argument("--starts", type=int, default=10, help="starts per version (default %(default)s)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU the worker is pinned to (default %(default)s)")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one calibration")
    parser.add_argument("--compare-app", type=Path, default=None, help="another version's app/ directory")
    parser.add_argument("--compare-model-dir", type=Path, default=None, help="its model (default: --model-dir)")
    parser.add_argument("--compare-name", default="before")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.model_dir is None or not (Path(args.model_dir) / "model.onnx").is_file():
        parser.error("--model-dir (or $MODEL_DIR) must be a directory built by python -m worker.build_model")
    if args.starts < 1:
        parser.error("--starts must be at least 1")
    versions = [("gantry", APP_DIR, Path(args.model_dir).resolve())]
    if args.compare_app is not None:
        other_model = (args.compare_model_dir or args.model_dir).resolve()
        versions.append((args.compare_name, args.compare_app.resolve(), other_model))

    load_start = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    results: dict[str, list[dict]] = {name: [] for name, _, _ in versions}
    for start in range(args.starts):
        for name, app_dir, model_dir in versions:
            event = calibrated(app_dir, model_dir, args.cpu, args.port, args.timeout)
            results[name].append(event)
            print(
                f"start {start + 1} {name}: max_cells={event['max_cells']} overhead_cells={event['overhead_cells']}",
                file=sys.stderr,
                flush=True,
            )
    load_end = " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [
        f"Load average (1/5/15 min) at start {load_start}, at end {load_end}; worker pinned to CPU {args.cpu}.",
        "",
        "| Version | starts | run sizes chosen (cells) | fixed run cost (cells) | per start |",
        "|---|---:|---|---|---|",
        *(summary(name, events) for name, events in results.items()),
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
