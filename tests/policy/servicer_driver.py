"""Drive the policy pack the way the Pulumi engine does, from inside policy/venv (not the dev venv).

Run as `policy/venv/bin/python servicer_driver.py < cases.json`. It starts the pack exactly as the CLI's
Python analyzer shim does (`python -u -m pulumi.policy <engine> <pack dir>` from the pack's directory,
sdk/python/dist/pulumi-analyzer-policy-python), reads the port pulumi_policy's PolicyPack prints, and
speaks the Analyzer gRPC protocol to it: GetAnalyzerInfo, Configure (each policy at its own level with
its config schema's defaults, as the engine's ReconcilePolicyPackConfig does), then per case one
`Analyze` per resource with its inputs and one `AnalyzeStack` with every resource's outputs and property
dependencies (the engine's step generator sends outputs to AnalyzeStack). Properties travel as
google.protobuf.Struct, so numbers arrive as floats and lists as pulumi_policy's proxies, as in a real
run. Prints {case: {"analyze": [...], "stack": [...]}} as JSON; a failed RPC is recorded, not raised.
The server listens on 127.0.0.1 only and is stopped before the driver exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # runs in policy/venv; the dev venv has no stubs
from google.protobuf import empty_pb2, json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

PACK = Path(__file__).resolve().parents[2] / "policy"
LEVELS = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def diagnostics(response: Any) -> list[dict[str, str]]:
    return [
        {
            "policy": d.policyName,
            "urn": d.urn,
            "message": d.message,
            "level": LEVELS.get(d.enforcementLevel, str(d.enforcementLevel)),
        }
        for d in response.diagnostics
    ]


def configure(stub: Any) -> None:
    info = stub.GetAnalyzerInfo(empty_pb2.Empty())
    config = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}
        defaults = {key: spec["default"] for key, spec in schema.items() if "default" in spec}
        config[policy.name] = analyzer_pb2.PolicyConfig(
            enforcementLevel=policy.enforcementLevel, properties=struct(defaults)
        )
    stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=config))


def run_case(stub: Any, resources: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {"analyze": [], "stack": []}
    for r in resources:
        request = analyzer_pb2.AnalyzeRequest(
            type=r["type"], properties=struct(r["inputs"]), urn=r["urn"], name=r["name"]
        )
        try:
            # The engine files an Analyze diagnostic without a URN under the resource analyzed.
            found = diagnostics(stub.Analyze(request))
            result["analyze"].extend({**d, "urn": d["urn"] or r["urn"]} for d in found)
        except grpc.RpcError as error:
            result["analyze"].append({"error": f"{r['urn']}: {error.details()}"})
    stack = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r["type"],
                properties=struct(r["outputs"]),
                urn=r["urn"],
                name=r["name"],
                propertyDependencies={
                    prop: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                    for prop, urns in r["propertyDependencies"].items()
                },
            )
            for r in resources
        ]
    )
    try:
        result["stack"] = diagnostics(stub.AnalyzeStack(stack))
    except grpc.RpcError as error:
        result["stack"] = [{"error": str(error.details())}]
    return result


def main() -> None:
    cases: dict[str, list[dict[str, Any]]] = json.load(sys.stdin)
    # The engine address is only dialled to log a failure of the pack's program; nothing listens there.
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK)],
        cwd=PACK,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port.isdigit():
            raise SystemExit(f"the policy pack did not start (printed {port!r}, exit {server.poll()})")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            configure(stub)
            json.dump({name: run_case(stub, resources) for name, resources in cases.items()}, sys.stdout)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
