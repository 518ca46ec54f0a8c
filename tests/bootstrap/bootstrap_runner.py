"""Run bootstrap/__main__.py under the harness's mocks (project gantry-bootstrap), as run_program does for
the main program: config as the CLI passes it, every registration through the capturing monitor."""

from __future__ import annotations

import asyncio
import json
import runpy
from typing import Any

import pulumi

from tests.harness import ACCOUNT, ROOT, CapturingMonitor, GantryMocks, Graph

PROGRAM = ROOT / "bootstrap" / "__main__.py"
# The config of an account running the example in bootstrap/README.md.
CONFIG: dict[str, Any] = {
    "aws:region": "eu-west-1",
    "gantry-bootstrap:githubOwner": "acme-ai",
    "gantry-bootstrap:githubRepo": "gantry",
    "gantry-bootstrap:environments": ["dev", "prod"],
}


class BootstrapMocks(GantryMocks):
    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:index/getPartition:getPartition":
            self.graph.calls.append(args.token)
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        return super().call(args)


def run_bootstrap(config: dict[str, Any] | None = None) -> Graph:
    values = CONFIG if config is None else config
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}, [])
    graph = Graph()
    mocks = BootstrapMocks(graph)
    pulumi.runtime.set_mocks(
        mocks, project="gantry-bootstrap", stack="account", preview=False, monitor=CapturingMonitor(mocks)
    )

    def program():
        runpy.run_path(str(PROGRAM), run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        assert isinstance(root, pulumi.runtime.stack.Stack)
        return pulumi.Output.all(**dict(root.outputs)).apply(graph.exports.update)

    pulumi.runtime.test(program)()
    return graph


def synthesize_bootstrap(config: dict[str, Any] | None = None) -> Graph:
    """`run_bootstrap` on an event loop of its own, closed afterwards: what a test module's fixture needs
    when other tests of the process have already used (and closed) the default loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return run_bootstrap(config)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


__all__ = ["ACCOUNT", "CONFIG", "run_bootstrap", "synthesize_bootstrap"]
