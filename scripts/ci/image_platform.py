"""Prints the image platform a stack's worker is built for, and whether this runner must emulate it.

The shared setup action (.github/actions/deploy-setup) runs `python scripts/ci/image_platform.py STACK`
before buildx: it reads `gantry:container.architecture` from `Pulumi.<STACK>.yaml` (the settings
model's default, ARM64, when the stack file leaves it out) and compares it with the runner's
architecture (`$RUNNER_ARCH`, which GitHub sets on every runner: X64, ARM64, ...). It writes
`platform=linux/arm64` and `emulate=true|false` to `$GITHUB_OUTPUT` (and to stdout), so QEMU is set up
only when the runner cannot run the image natively: a native build is several times faster and needs
no emulator image. Stdlib plus PyYAML (in the program's lock). Security stance: reads one committed
file, needs no credentials, prints only the two values.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The same mapping as components.settings.workload (ARCHITECTURES, the `architecture` default): this
# script runs before the program's settings are importable on every runner, so tests assert they agree.
ARCHITECTURES = {"ARM64": "linux/arm64", "X86_64": "linux/amd64"}
DEFAULT_ARCHITECTURE = "ARM64"
# runner.arch / $RUNNER_ARCH values (GitHub's `runner` context) -> the Docker platform they run natively.
RUNNER_PLATFORMS = {"X64": "linux/amd64", "ARM64": "linux/arm64"}


class PlatformError(Exception):
    """The stack file or the runner cannot be read as a platform; the message names which."""


def image_platform(stack_file: Path) -> str:
    """The Docker platform of the stack's image (`gantry:container.architecture`)."""
    try:
        document: Any = yaml.safe_load(stack_file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PlatformError(f"cannot read {stack_file.name}: {error}") from None
    config = (document or {}).get("config") or {}
    container = config.get("gantry:container") or {}
    architecture = container.get("architecture", DEFAULT_ARCHITECTURE)
    if architecture not in ARCHITECTURES:
        allowed = ", ".join(ARCHITECTURES)
        raise PlatformError(f"{stack_file.name}: gantry:container.architecture {architecture!r}; allowed: {allowed}")
    return ARCHITECTURES[architecture]


def needs_emulation(platform: str, runner_arch: str) -> bool:
    native = RUNNER_PLATFORMS.get(runner_arch)
    if native is None:
        raise PlatformError(f"runner architecture {runner_arch!r} is not one of {', '.join(RUNNER_PLATFORMS)}")
    return native != platform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci/image_platform.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--runner-arch", default=os.environ.get("RUNNER_ARCH", ""), help="default $RUNNER_ARCH")
    args = parser.parse_args(argv)
    try:
        platform = image_platform(ROOT / f"Pulumi.{args.stack}.yaml")
        emulate = needs_emulation(platform, args.runner_arch)
    except PlatformError as error:
        print(f"image_platform: {error}", file=sys.stderr)
        return 2
    lines = f"platform={platform}\nemulate={str(emulate).lower()}\n"
    sys.stdout.write(lines)
    if output := os.environ.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as file:
            file.write(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
