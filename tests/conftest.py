"""pytest setup for the infrastructure tests: a fresh event loop per test, and no deploy workflow's variables.

The program's packages (`components`, `gantry`, `bootstrap`, `policy`, `worker`) come from the repository's
editable install (`pip install -e .`); `tests` is a package imported from the root, which pytest's rootdir
(and `python -m pytest`'s working directory) puts on the path."""

import asyncio

import pytest


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
