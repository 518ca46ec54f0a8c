"""What a deploy is made of, beyond config: the image a promoting stack deploys, and the commit being deployed.

Build once, promote the same digest: the building stack (dev) owns the one ECR repository and builds
into it; a promoting stack (prod, `image.promoteFrom: dev`) creates no repository and builds nothing, and
deploys `<repository>@<digest>` with the digest dev last validated (its `imageDigest` output, read like a
`pulumi.StackReference` reads it) or one pinned in config. Why dev owns the repository rather than the
bootstrap: a developer's `pulumi up -s dev` then works in an account nobody bootstrapped, and the stack
that builds is the stack that prunes (its lifecycle policy). The program looks the source stack's outputs
and the image up with invokes before registering anything (`components.stack_config`), and these pure
functions turn the answers into a `PromotedImage` or a refusal. The commit (`SourceRevision`) comes from
`GITHUB_SHA` in a workflow or `git rev-parse HEAD` locally, validated as 40 hex digits, with a dirty tree
marked, and goes on the image (OCI label) and into the deployment's description.

Evaluated, not merely built: the deploy workflow's dev job tags the digest it deployed `evaluated-<run>`
(`scripts/ci/mark_evaluated.py`, run `<run id>-<attempt>`) only after its eval gate passed, and hands
digest and run to the prod job (`needs.dev.outputs`), which passes them to `pulumi up` as
GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN (`components.settings.invocation`). Prod then deploys that
digest and no other: it must be in the repository and `evaluated-<run>` must name it, so a later push, a
re-run or a dev deploy whose eval failed cannot put its image into a run that waited for approval
meanwhile. An `up` in a GitHub workflow without them is refused rather than falling back to dev's
current output. The building stack's lifecycle policy keeps the newest image.keepImages evaluated
images apart from its other pushes (`policies.ecr_lifecycle_policy`), so a waiting run's image stays.
Elsewhere (a person's `pulumi up -s prod`, any preview) the digest is image.digest or dev's output,
and it must carry some `evaluated-*` tag: a digest no eval gate passed is never promoted.
Security stance: only a digest ECR reports in that repository, and marked evaluated there, is deployed,
never a tag, and nothing is created before the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# The OCI image-spec's annotation for "source control revision identifier for the packaged software"
# (https://github.com/opencontainers/image-spec/blob/main/annotations.md); Docker labels use the same keys.
REVISION_LABEL = "org.opencontainers.image.revision"
DIRTY_LABEL = "gantry.source-tree"
_SHA = re.compile(r"[0-9a-f]{40}")
# The building stack's outputs a promoting stack reads (see __main__.py's exports).
REPOSITORY_OUTPUT, DIGEST_OUTPUT = "repositoryUrl", "imageDigest"
# The tag the dev job's mark step puts on the digest its eval gate passed (scripts/ci/mark_evaluated.py).
EVALUATED_TAG_PREFIX = "evaluated-"
# A run is `<github.run_id>-<github.run_attempt>`: a re-run of the dev job (a new attempt) may build
# another digest, and the repository's tags are immutable, so each attempt marks under its own tag.
RUN = re.compile(r"[0-9]{1,20}-[0-9]{1,5}")


class RevisionError(ValueError):
    """The commit being deployed cannot be determined; the message says how to provide it."""


@dataclass(frozen=True, kw_only=True)
class SourceRevision:
    """The git commit a deploy is built from, and whether the working tree had uncommitted changes."""

    sha: str
    dirty: bool = False

    @property
    def labels(self) -> dict[str, str]:
        """Image labels: the OCI revision, plus a marker when the tree was dirty (the SHA alone would lie)."""
        return {REVISION_LABEL: self.sha, **({DIRTY_LABEL: "dirty"} if self.dirty else {})}

    @property
    def description(self) -> str:
        return f"commit {self.sha}" + (" with uncommitted changes" if self.dirty else "")


def source_revision(environ: Mapping[str, str], git: Callable[[Sequence[str]], str | None]) -> SourceRevision:
    """GITHUB_SHA when a workflow sets it (a workflow checks out exactly that commit), else the checkout's
    HEAD and `git status`. `git(args)` returns git's stdout, or None when git or the repository is missing."""
    if "GITHUB_SHA" in environ:
        sha = environ["GITHUB_SHA"].strip()
        if not _SHA.fullmatch(sha):
            raise RevisionError(f"GITHUB_SHA={sha!r} is not a 40-digit lower-case hex commit SHA")
        return SourceRevision(sha=sha, dirty=False)
    head = git(["rev-parse", "HEAD"])
    if head is None or not _SHA.fullmatch(head.strip()):
        raise RevisionError(
            "cannot tell which commit is being deployed: run from a git checkout (git rev-parse HEAD) or set "
            "GITHUB_SHA to the 40-digit commit SHA; gantry records it on the image and in the deployment"
        )
    status = git(["status", "--porcelain", "--untracked-files=no"])
    return SourceRevision(sha=head.strip(), dirty=bool(status and status.strip()))


def evaluated_tag(run: str) -> str:
    """The tag the dev job of run `run` (`<run id>-<attempt>`) put on the digest its eval gate passed."""
    if not RUN.fullmatch(run):
        raise ValueError(f"run {run!r} is not <github.run_id>-<github.run_attempt>")
    return f"{EVALUATED_TAG_PREFIX}{run}"


@dataclass(frozen=True, kw_only=True)
class PromotionRequest:
    """What the deploy workflow's prod job asks for: the digest its dev job deployed and the run that marked it."""

    digest: str
    run: str

    @property
    def tag(self) -> str:
        return evaluated_tag(self.run)


@dataclass(frozen=True, kw_only=True)
class PromotionFacts:
    """What the program found before validating: the source stack's outputs and whether ECR holds the image."""

    stack: str
    """The fully qualified source stack (organization/project/stack)."""
    outputs_read: bool
    """False when the source stack's outputs could not be read at all (no such stack, no access)."""
    repository_url: str | None = None
    repository_arn: str | None = None
    digest: str | None = None
    """The digest to deploy: image.digest when set, else the source stack's imageDigest output."""
    image_found: bool = False
    """True when ECR reported the digest in the repository (ecr:DescribeImages through get_image)."""
    image_tags: tuple[str, ...] = ()
    """The tags ECR reported on that digest (where a local promotion looks for an `evaluated-*` mark)."""
    output_digest: str | None = None
    """The source stack's current imageDigest output, named in refusals; default none (not exported)."""
    request: PromotionRequest | None = None
    """The digest and run a deploy workflow's prod job passes; default none (a local `pulumi up`)."""
    marked_digest: str | None = None
    """The digest `evaluated-<request.run>` names in the repository; none when no image carries it."""
    in_workflow: bool = False
    """True for an `up` (not a preview) in a GitHub workflow: then only a request may be deployed."""


@dataclass(frozen=True, kw_only=True)
class PromotedImage:
    """A validated image to deploy: in this repository, by this digest."""

    repository_url: str
    repository_arn: str
    digest: str

    @property
    def uri(self) -> str:
        return f"{self.repository_url}@{self.digest}"


def repository_name(repository_url: str) -> str | None:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>` -> `<name>`; None for anything else."""
    host, _, name = repository_url.partition("/")
    return name if re.fullmatch(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?", host) and name else None


def promotion_problems(facts: PromotionFacts, *, pinned: str | None) -> tuple[str, str] | None:
    """(config key, problem) when the promotion cannot go ahead, else None. `pinned`: image.digest, if set."""
    source = facts.stack
    if not facts.outputs_read:
        return (
            "image.promoteFrom",
            f"cannot read the outputs of stack {source} (it does not exist in this backend, or these credentials "
            "cannot read its state)",
        )
    if facts.repository_url is None or (facts.digest is None and pinned is None and facts.request is None):
        return (
            "image.promoteFrom",
            f"stack {source} has no {REPOSITORY_OUTPUT}/{DIGEST_OUTPUT} outputs yet: run `pulumi up` on it first "
            "(it builds and pushes the image this stack promotes)",
        )
    if facts.repository_arn is None:
        return "image.promoteFrom", f"the repository {facts.repository_url} of stack {source} does not exist"
    request = facts.request
    if request is None and facts.in_workflow:
        return (
            "image.promoteFrom",
            "a GitHub workflow's `pulumi up` of a promoting stack deploys only the digest its dev job evaluated, and "
            "none was given: set GANTRY_PROMOTE_DIGEST and GANTRY_PROMOTE_RUN from the dev job's outputs "
            f"(needs.dev.outputs.digest and .run); {source}'s current {DIGEST_OUTPUT} ({facts.output_digest}) is "
            "never deployed from a workflow; nothing was changed",
        )
    if request is not None and pinned is not None and pinned != request.digest:
        return (
            "image.digest",
            f"pins {pinned}, but GANTRY_PROMOTE_DIGEST asks for {request.digest} (run {request.run}): one deploy, one "
            "digest; remove image.digest to deploy what the run evaluated, or unset the variables to roll back to "
            "the pin; nothing was changed",
        )
    name = repository_name(facts.repository_url)
    if not facts.image_found:
        key = "image.digest" if pinned is not None and request is None else "image.promoteFrom"
        return (
            key,
            f"{facts.digest} is not an image in {facts.repository_url} (stack {source}'s repository): promote a "
            f"digest that stack pushed (`aws ecr describe-images --repository-name {name}`); nothing was changed",
        )
    if request is not None and facts.marked_digest != request.digest:
        found = (
            f"{request.tag} is on {facts.marked_digest}"
            if facts.marked_digest is not None
            else f"no image carries {request.tag} (that run's eval gate did not pass, or the run is not <id>-<attempt>)"
        )
        return (
            "image.promoteFrom",
            f"GANTRY_PROMOTE_DIGEST {request.digest} is not the digest run {request.run} evaluated: {found}; "
            f"{source}'s current {DIGEST_OUTPUT} is {facts.output_digest}. Nothing was changed: deploy a digest "
            "with the run that marked it (the prod job of that run, or its dev job's outputs)",
        )
    if request is None and not any(tag.startswith(EVALUATED_TAG_PREFIX) for tag in facts.image_tags):
        key = "image.digest" if pinned is not None else "image.promoteFrom"
        return (
            key,
            f"{facts.digest} carries no {EVALUATED_TAG_PREFIX}* tag in {facts.repository_url}: no deploy run's eval "
            f"gate passed on it, so it is not promoted (stack {source}'s current {DIGEST_OUTPUT} is "
            f"{facts.output_digest}). Pin (image.digest) an evaluated one (`aws ecr describe-images --repository-name "
            f"{name}` lists the tags), or push to main and let the workflow evaluate it; nothing was changed",
        )
    return None


def promoted_image(facts: PromotionFacts) -> PromotedImage:
    """The image of facts that passed `promotion_problems`."""
    assert facts.repository_url and facts.repository_arn and facts.digest and facts.image_found
    return PromotedImage(repository_url=facts.repository_url, repository_arn=facts.repository_arn, digest=facts.digest)
