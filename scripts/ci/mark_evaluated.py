"""Marks the digest the deploy workflow's dev job deployed as evaluated by this run, after its eval gate passed.

`python scripts/ci/mark_evaluated.py --repository-url URL --digest sha256:...` tags that image
`evaluated-<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>` in dev's repository, with the same call a promoting
stack's run tag uses (`components.image_tag.tag_image`: BatchGetImage for the manifest, PutImage of it
under the new tag, so the digest stays the same and nothing is uploaded). It then writes `digest` and
`run` to $GITHUB_OUTPUT, which the dev job exports (`needs.dev.outputs`) and the prod job hands to
`pulumi up` as GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN. Prod's `up` deploys that digest only if the
run's tag names it (`components.settings.promotion`), so the workflow runs this step after the eval
gate and only when it passed: a digest no eval passed carries no mark. The repository URL is not an
output: it holds the account id, which GitHub masks, and a job output holding a masked value is not
passed on; prod reads the repository from dev's stack outputs instead.

One tag per run attempt: the repository's tags are immutable, and a re-run of the dev job may deploy
another digest. Exit 0 marked (also when this attempt's mark is already on this digest), 1 not marked
(the digest is not in the repository, the tag is on another image, or AWS refused; the message says
which), 2 bad input. Security stance: the dev deploy role's own ecr:BatchGetImage, ecr:PutImage and
ecr:DescribeImages on dev's repository (what its push already needs); nothing is uploaded or deleted.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# Run as `.venv/bin/python scripts/ci/mark_evaluated.py`: the program's modules come from the
# repository's editable install in .venv (`pip install -e .`).
from components.image_tag import TagError, region_of, tag_image
from components.settings.promotion import evaluated_tag, repository_name

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class MarkError(ValueError):
    """The input cannot be marked; the message names what is wrong and what is allowed."""


def this_run(environ: Mapping[str, str]) -> str:
    """`<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>`, which GitHub sets in every job of the run."""
    run_id, attempt = (environ.get(name, "").strip() for name in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"))
    if not run_id or not attempt:
        raise MarkError("GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT must be set (GitHub Actions sets both in every job)")
    run = f"{run_id}-{attempt}"
    try:
        evaluated_tag(run)
    except ValueError:
        raise MarkError(f"GITHUB_RUN_ID/GITHUB_RUN_ATTEMPT {run!r}: allowed: digits-digits") from None
    return run


def check_inputs(repository_url: str, digest: str) -> str:
    """The repository's name, or MarkError naming the empty or malformed input."""
    if not digest:
        raise MarkError(
            "--digest is empty: the dev job's `pulumi up` exported no imageDigest, so there is no deployed image "
            "to mark; nothing was tagged"
        )
    if not _DIGEST.fullmatch(digest):
        raise MarkError(f"--digest {digest[:80]!r}: allowed: sha256:<64 lower-case hex> (dev's imageDigest output)")
    name = repository_name(repository_url) if repository_url else None
    if name is None:
        raise MarkError(
            f"--repository-url {repository_url[:120]!r}: allowed: <account>.dkr.ecr.<region>.amazonaws.com/<name> "
            "(dev's repositoryUrl output)"
        )
    return name


def write_outputs(path: str | None, values: Mapping[str, str]) -> None:
    """Step outputs, as GitHub reads them: `name=value` lines appended to the file $GITHUB_OUTPUT names."""
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.writelines(f"{name}={value}\n" for name, value in values.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci/mark_evaluated.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository-url", required=True, help="dev's repositoryUrl output")
    parser.add_argument("--digest", required=True, help="dev's imageDigest output: the image the eval gate passed")
    args = parser.parse_args(argv)
    repository_url, digest = args.repository_url.strip(), args.digest.strip()
    try:
        name = check_inputs(repository_url, digest)
        run = this_run(os.environ)
    except MarkError as error:
        print(f"mark_evaluated: {error}", file=sys.stderr)
        return 2
    tag = evaluated_tag(run)
    try:
        client = boto3.session.Session(region_name=region_of(repository_url)).client("ecr")
        tag_image(client, repository=name, digest=digest, tag=tag)
    except TagError as error:
        print(f"mark_evaluated: not marked: {error}; prod will refuse to promote it", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as error:
        print(f"mark_evaluated: not marked: tagging {digest} {tag} in {name} failed: {error}", file=sys.stderr)
        return 1
    write_outputs(os.environ.get("GITHUB_OUTPUT"), {"digest": digest, "run": run})
    print(f"mark_evaluated: {name}@{digest} is {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
