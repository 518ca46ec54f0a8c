"""ImageRepository: the ECR repository and the image `pulumi up` builds from `app/` and pushes to it, or,
on a promoting stack (`image.promoteFrom`), the image another stack built, by digest.

Build once, promote the same digest: the building stack (dev) owns the one repository; a promoting stack
(prod) creates no repository and builds nothing, and deploys the digest dev validated, which the program
checked ECR holds before registering anything (`components.settings.promotion`). The build records the
commit on the image as the OCI label `org.opencontainers.image.revision` (a dirty tree is marked too);
a new commit is therefore a new image even when the files the build sees are the same, with its layers
from the build cache.

The task definition uses the pushed image by digest, so what runs is exactly what was built and
scanned. The image is pushed by digest, with no tag: the repository's tags are immutable and ECR
refuses to push an existing tag again even for the identical image (aws/containers-roadmap#2179), so
a tagged push would fail the `up` that redeploys an earlier build (a `git revert`, a second stack on
the same repository). The image resource has one stable logical name and is registered with
`retain_on_delete`: a changed build updates it in place, and neither an update, a replace nor a
`pulumi destroy` deletes a pushed image, so every earlier digest stays there to roll back to.
Pruning is the ECR lifecycle policy's job alone. (awsx's `ecr.Image` named its build child after the
tag, so each new tag replaced the child and the delete removed the previous image from ECR.) What the
build sees is hashed into a label, so an edit the build ignores never rebuilds.
The lifecycle policy keeps what stacks run: a promoting stack tags the digest it deploys
`run-<stack>-<digest>` (`components.image_tag`, which explains why per stack and digest, and why never
removed), and run-tagged images are counted apart from the keep-N rule, so dev's pushes cannot expire
prod's image; the building stack's own running image is its newest push. The images a deploy run's eval
gate passed (tagged `evaluated-<run>` by scripts/ci/mark_evaluated.py) are counted apart too, so the
image a run's prod job waits to promote is not pushed out by newer pushes whose eval failed.
Security stance: immutable tags, scan on push, KMS encryption at rest, a lifecycle policy that bounds
storage while keeping recent rollbacks and every running image, and a short-lived ECR token as the only
push credential.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from components import policies
from components.image_tag import RUN_TAG_PREFIX, RunningImageTag, RunningImageTagArgs
from components.settings import ImageSettings
from components.settings.invocation import ProviderSession
from components.settings.promotion import EVALUATED_TAG_PREFIX, PromotedImage, SourceRevision
from components.workload.dockerignore import context_files


def pinned_uri(repository_url: str, digest: str) -> str:
    """`repository@sha256:...`; refuses anything but a sha256 digest (deploys are by digest, never tag)."""
    if not digest.startswith("sha256:") or len(digest) != len("sha256:") + 64:
        raise ValueError(f"image digest {digest!r} is not a sha256 digest")
    return f"{repository_url}@{digest}"


def content_tag(context: Path, dockerfile: Path, platform: str) -> str:
    """A name that changes exactly when something the build sees changes: the platform, the
    Dockerfile and the files the context sends after `.dockerignore`."""
    digest = hashlib.sha256(f"{platform}\0".encode())
    for name, path in [("Dockerfile", dockerfile), *context_files(context)]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"build-{digest.hexdigest()[:32]}"


BUILD_CONTEXT_LABEL = "gantry.build-context"


def image_resource_options(parent: pulumi.Resource) -> pulumi.ResourceOptions:
    """Pushed images are never deleted by Pulumi: rollbacks need them, the lifecycle policy prunes them."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=True)


def repository_resource_options(parent: pulumi.Resource, force_delete: bool) -> pulumi.ResourceOptions:
    """The repository outlives its stack unless `forceDelete` says otherwise: the building stack's repository
    holds the promoting stack's images too, so `pulumi destroy -s dev` (or a stack that stops building and
    starts promoting) leaves it and its images in place instead of failing on, or deleting, them."""
    return pulumi.ResourceOptions(parent=parent, retain_on_delete=not force_delete)


@dataclass(frozen=True, kw_only=True)
class ImageRepositoryArgs:
    settings: ImageSettings
    """Build context and Dockerfile (default app/, app/Dockerfile), images kept (default 30), whether
    destroy may delete the repository with its images (default no)."""
    platform: str
    """linux/arm64 or linux/amd64, derived from the task's cpu architecture so the two cannot disagree."""
    project_dir: Path
    """The directory `settings.context` and `settings.dockerfile` are relative to."""
    promoted: PromotedImage | None = None
    """The image to deploy when `settings.promote_from` is set (required then; checked by the program)."""
    source: SourceRevision | None = None
    """The commit being built, labelled on the image; default none (no revision label)."""
    stack: str | None = None
    """This stack's name: a promoting stack tags the image it deploys `run-<stack>-<digest>` so the
    building stack's lifecycle policy keeps it (required then; default none, unused when building)."""
    provider_session: ProviderSession = ProviderSession()
    """The principal the tagging provider acts as (the stack's aws:profile and assumed role); default
    boto3's chain."""


class ImageRepository(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    """repository@sha256:digest of the pushed image."""
    image_digest: pulumi.Output[str]
    content_hash: str | None
    """`content_tag` of the build: the image's `gantry.build-context` label; None on a promoting stack."""

    def __init__(self, name: str, args: ImageRepositoryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:registry:ImageRepository", name, None, opts)
        s = args.settings
        if s.promote_from is not None:
            self._promote(name, s.promote_from, args.promoted, args.stack, args.provider_session)
            return

        repo = self._repository(name, s)
        image = self._image(name, args, repo)

        self.repository_url = repo.repository_url
        self.repository_arn = repo.arn
        self.image_digest = image.digest
        self.image_uri = pulumi.Output.all(repo.repository_url, image.digest).apply(lambda v: pinned_uri(*v))
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUri": self.image_uri})

    def _repository(self, name: str, s: ImageSettings) -> aws.ecr.Repository:
        """The stack's one repository (immutable tags, scanned, KMS) and its lifecycle policy."""
        child = pulumi.ResourceOptions(parent=self)
        repo = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=s.force_delete,
            opts=repository_resource_options(self, s.force_delete),
        )
        # A changed policy replaces this resource (terraform-provider-aws makes `policy` ForceNew), and
        # pulumi-aws maps it DeleteBeforeReplace (provider/resources.go), so the old policy is deleted
        # before the new one is put: a moment without pruning, never a repository left without a policy.
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(
                policies.ecr_lifecycle_policy(
                    s.keep_images,
                    keep_run_images=s.keep_run_images,
                    run_tag_prefix=RUN_TAG_PREFIX,
                    # keepImages is sized as a month of daily deploys, and a month is how long a deploy
                    # run's prod job may still promote its evaluated image: GitHub cancels a job not
                    # approved within 30 days ("Reviewing deployments") and re-runs a job up to 30 days
                    # after the run ("Re-running workflows and jobs").
                    keep_evaluated_images=s.keep_images,
                    evaluated_tag_prefix=EVALUATED_TAG_PREFIX,
                )
            ),
            opts=child,
        )
        return repo

    def _image(self, name: str, args: ImageRepositoryArgs, repo: aws.ecr.Repository) -> docker_build.Image:
        """The worker image built for the task's platform and pushed by digest, labelled with its context."""
        s = args.settings
        context = args.project_dir / s.context
        self.content_hash = content_tag(context, args.project_dir / s.dockerfile, args.platform)
        token = aws.ecr.get_authorization_token_output(
            registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker_build.Image(
            f"{name}-image",
            push=False,
            exports=[{"registry": {"names": [repo.repository_url], "push_by_digest": True, "oci_media_types": True}}],
            labels={BUILD_CONTEXT_LABEL: self.content_hash, **(args.source.labels if args.source else {})},
            # Relative to the project directory, which is the program's working directory: an absolute
            # path would differ per checkout (each CI run's workspace) and so rebuild and push every time.
            context={"location": s.context},
            dockerfile={"location": s.dockerfile},
            platforms=[docker_build.Platform(args.platform)],
            registries=[{"address": repo.repository_url, "username": token.user_name, "password": token.password}],
            # The build runs during `pulumi up` only: a preview never spends ten minutes exporting a model.
            build_on_preview=False,
            opts=image_resource_options(self),
        )
        return image

    def _promote(
        self, name: str, source: str, promoted: PromotedImage | None, stack: str | None, session: ProviderSession
    ) -> None:
        """No repository and no build: the image another stack built and validated, by digest, tagged as
        this stack's running image before anything uses it (the URI resolves only once it is tagged)."""
        if promoted is None:
            raise ValueError(f"promoting from {source} needs the checked image (Settings.promoted); none was given")
        if stack is None:
            raise ValueError(f"promoting from {source} needs this stack's name (ImageRepositoryArgs.stack) to tag it")
        tag = RunningImageTag(
            f"{name}-run-tag",
            RunningImageTagArgs(
                repository_url=promoted.repository_url, digest=promoted.digest, stack=stack, session=session
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.content_hash = None
        self.repository_url = pulumi.Output.from_input(promoted.repository_url)
        self.repository_arn = pulumi.Output.from_input(promoted.repository_arn)
        self.image_digest = pulumi.Output.from_input(promoted.digest)
        self.image_uri = tag.tag.apply(lambda _: pinned_uri(promoted.repository_url, promoted.digest))
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUri": self.image_uri})
