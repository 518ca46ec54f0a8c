"""pytest setup for the infrastructure tests: the project root on sys.path, a fresh event loop per test, and
no deploy workflow's variables."""

import asyncio
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def fresh_event_loop():
    """Each test gets its own event loop, as in the Pulumi SDK's own tests."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def outside_a_deploy_workflow(monkeypatch):
    """The program runs as a person's `pulumi up` unless a test says otherwise, also when CI runs the tests in
    GitHub Actions (whose GITHUB_ACTIONS=true would make every promoting stack demand a run's digest)."""
    for name in ("GITHUB_ACTIONS", "GANTRY_PROMOTE_DIGEST", "GANTRY_PROMOTE_RUN"):
        monkeypatch.delenv(name, raising=False)
