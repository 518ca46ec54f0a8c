"""ImageRepository: the ECR repository and the image `pulumi up` builds from `app/` and pushes to it.

The task definition uses the pushed image by digest, so what runs is exactly what was built and
scanned, whatever happens to tags later. Security stance: immutable tags, scan on push, KMS
encryption at rest, and a lifecycle policy that bounds storage while keeping recent rollbacks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components import policies


def image_digest(image_uri: str) -> str:
    """The sha256 digest of a `repository@sha256:...` URI; refuses a tag-only URI (deploys are by digest)."""
    _, sep, digest = image_uri.partition("@")
    if not sep or not digest.startswith("sha256:"):
        raise ValueError(f"image URI {image_uri!r} does not pin a sha256 digest")
    return digest


def content_tag(context: Path, dockerfile: Path, platform: str) -> str:
    """A tag that changes whenever anything the build can see changes.

    The repository's tags are immutable, so every build that differs must push a new tag; awsx's
    default tag depends only on the paths, which would make the second deploy's push fail.
    """
    digest = hashlib.sha256(f"{platform}\0".encode())
    files = sorted(p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path, name in [(dockerfile, "Dockerfile"), *((p, p.relative_to(context).as_posix()) for p in files)]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"build-{digest.hexdigest()[:32]}"


@dataclass(frozen=True)
class ImageRepositoryArgs:
    context: str
    """Docker build context; default "app"."""
    dockerfile: str
    """Dockerfile path; default "app/Dockerfile"."""
    platform: str
    """linux/arm64 or linux/amd64, derived from the task's cpu architecture so the two cannot disagree."""
    keep_images: int
    """How many images the lifecycle policy keeps; default 30."""
    image_tag: str
    """Content-derived tag (see `content_tag`); the task definition still uses the digest."""
    force_delete: bool = False
    """Let `pulumi destroy` remove the repository with its images; default false."""


class ImageRepository(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    """repository@sha256:digest of the pushed image."""
    image_digest: pulumi.Output[str]

    def __init__(self, name: str, args: ImageRepositoryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:registry:ImageRepository", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        repo = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(policies.ecr_lifecycle_policy(args.keep_images)),
            opts=child,
        )
        image = awsx.ecr.Image(
            f"{name}-image",
            repository_url=repo.repository_url,
            context=args.context,
            dockerfile=args.dockerfile,
            platform=args.platform,
            image_tag=args.image_tag,
            opts=child,
        )

        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.image_uri = image.image_uri
        self.image_digest = image.image_uri.apply(image_digest)
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUri": self.image_uri})
