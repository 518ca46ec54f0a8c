"""RunningImageTag: marks the image a promoting stack deploys with a `run-` tag, so ECR's lifecycle policy keeps it.

The building stack (dev) owns the repository and its lifecycle policy, and every dev commit pushes an
image: a keep-the-newest-N rule alone would expire prod's promoted digest N commits after the promotion,
and prod's next task launch (a scale-out, a replaced task) could not pull it. So a promoting stack tags
the digest it deploys `run-<stack>-<digest>` before anything uses it, and the policy
(`policies.ecr_lifecycle_policy`) has a higher-priority rule for `run-` tags: "an image that matches the
tagging requirements of a higher priority rule cannot be expired by a rule with a lower priority" (ECR
User Guide, "Lifecycle policy evaluation rules"), and that rule keeps the newest `image.keepRunImages`
run-tagged images, counted apart from dev's pushes. The tag is added the way the ECR User Guide's
"Retagging an image" does it: BatchGetImage for the manifest, PutImage of the same manifest with the new
tag (no layer is uploaded and the digest stays the same).

Why one tag per stack and digest, and why it is never removed: the repository's tags are IMMUTABLE, so a
tag cannot move from one image to the next; a tag that names the digest can only ever mean that image,
and a redeploy of the same digest finds its tag in place. Removing a tag is BatchDeleteImage, which
deletes the image itself when that was its last tag ("When you remove the last tag from an image, the
image is deleted from your repository", BatchDeleteImage API reference), so delete here does nothing: an
image a promoting stack stopped running ages out only when `keepRunImages` newer run-tagged images exist
(ordered by push time, as every ECR count rule is, and counted over every promoting stack together: one
rule, because the building stack's policy cannot know which stacks promote from it). The limit this
leaves: a stack still running an image pushed before `keepRunImages` newer deployed ones (a long-idle
staging stack beside a busy prod, or a rollback to a digest older than that) loses it; 100 by default.
The building stack needs no tag: the only pushes to its repository are its own builds, so the image it
runs is its newest push (or, after a failed rollout, one of its newest), which the keep-N rule keeps.

A Pulumi dynamic provider (no pulumi_aws resource tags an existing image); create runs `tag_image`,
which the tests run against moto's ECR. The provider is pickled by reference to this module, so
`components.image_tag.RunningImageTagProvider` is part of every promoting stack's state: do not move it.
Security stance: the deploying credentials need ecr:BatchGetImage, ecr:PutImage and ecr:DescribeImages
on the repository, which the deploy role already holds for the push; nothing is uploaded or deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.provider_runtime import session_for
from components.settings.invocation import ProviderSession
from components.settings.promotion import repository_name

RUN_TAG_PREFIX = "run-"
# Docker's reference grammar (distribution/reference): a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
MAX_TAG_LENGTH = 128
# The digest's first 32 hex digits (128 bits): unique among any repository's images, and room for the
# stack's name within the 128 characters.
DIGEST_CHARS = 32
_STACK = re.compile(r"[A-Za-z0-9_.-]+")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Every manifest kind docker-build pushes (OCI with oci_media_types, Docker v2 otherwise, and their indexes).
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INPUT_KEYS = ("repository_url", "digest", "tag")


def run_tag(stack: str, digest: str) -> str:
    """`run-<stack>-<first 32 hex digits of the digest>`: which stack runs which image, stable per pair."""
    if not _STACK.fullmatch(stack):
        raise ValueError(f"stack name {stack!r} is invalid for an image tag; allowed: letters, digits, _ . -")
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"image digest {digest!r} is not a sha256 digest")
    tag = f"{RUN_TAG_PREFIX}{stack}-{digest.removeprefix('sha256:')[:DIGEST_CHARS]}"
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(
            f"the run tag for stack {stack!r} has {len(tag)} characters; image tags allow {MAX_TAG_LENGTH}: "
            "use a stack name of at most 91 characters"
        )
    return tag


def region_of(repository_url: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<name>` -> `<region>`."""
    if repository_name(repository_url) is None:
        raise ValueError(f"{repository_url!r} is not an ECR repository URL")
    return repository_url.split(".")[3]


class TagError(RuntimeError):
    """The image cannot be tagged; the message says why."""


def tag_image(ecr: Any, *, repository: str, digest: str, tag: str) -> None:
    """Give the image `digest` in `repository` the tag `tag` (idempotent: a tag already on it is success)."""
    found = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageDigest": digest}], acceptedMediaTypes=list(MANIFEST_MEDIA_TYPES)
    )
    if not found.get("images"):
        reasons = "; ".join(f.get("failureReason", "") for f in found.get("failures", []))
        raise TagError(f"{repository} holds no image {digest} to tag {tag}: {reasons or 'not found'}")
    image = found["images"][0]
    request = {"repositoryName": repository, "imageManifest": image["imageManifest"], "imageTag": tag}
    if image.get("imageManifestMediaType"):
        # Without it ECR reads the manifest's own mediaType field, which an OCI index may omit.
        request["imageManifestMediaType"] = image["imageManifestMediaType"]
    try:
        ecr.put_image(imageDigest=digest, **request)
    except ecr.exceptions.ImageAlreadyExistsException:
        return  # this image already carries this tag: a redeploy of the same digest
    except ecr.exceptions.ImageTagAlreadyExistsException:
        # An immutable tag already on some image: fine only if it is this one.
        described = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        digests = {d["imageDigest"] for d in described.get("imageDetails", [])}
        if digests != {digest}:
            raise TagError(f"tag {tag} in {repository} is on {sorted(digests)}, not {digest}") from None


class RunningImageTagProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        url, digest, tag = (str(props[key]) for key in INPUT_KEYS)
        name = repository_name(url)
        assert name is not None  # region_of checked it
        # The stack's aws:profile / aws:assumeRoles principal, as pulumi-aws uses (components.provider_runtime).
        ecr = session_for(region_of(url), ProviderSession.from_props(props)).client("ecr")
        tag_image(ecr, repository=name, digest=digest, tag=tag)
        return pulumi.dynamic.CreateResult(id_=f"{name}:{tag}", outs={key: props[key] for key in INPUT_KEYS})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """Another image or repository is another tag: replace (create the new one; the old stays)."""
        changed = [key for key in INPUT_KEYS if olds.get(key) != news.get(key)]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing: removing the tag could delete the image (see the module docstring); the policy ages it out."""


@dataclass(frozen=True, kw_only=True)
class RunningImageTagArgs:
    repository_url: str
    """The building stack's repository (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`)."""
    digest: str
    """The promoted image's sha256 digest."""
    stack: str
    """The promoting stack's name: the tag is `run-<stack>-<digest>`."""
    session: ProviderSession = ProviderSession()
    """The principal the provider acts as (the stack's aws:profile and assumed role); default boto3's chain."""


class RunningImageTag(pulumi.dynamic.Resource):
    """The promoted image's `run-` tag, added before the task definition uses the image."""

    tag: pulumi.Output[str]

    def __init__(self, name: str, args: RunningImageTagArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        region_of(args.repository_url)  # refuse a malformed URL before anything is registered
        props: dict[str, Any] = {
            "repository_url": args.repository_url,
            "digest": args.digest,
            "tag": run_tag(args.stack, args.digest),
            **args.session.inputs(),
        }
        super().__init__(RunningImageTagProvider(), name, props, opts)
