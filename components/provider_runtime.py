"""What gantry's dynamic providers share: their AWS session and the progress lines `pulumi up` shows.

The deploy resource (components.blue_green.provider), the pre-traffic task
(components.pre_traffic_provider) and a promoted image's run tag (components.image_tag) run in the
dynamic provider process. `session_for` gives them the
principal pulumi-aws uses: the stack's profile, then its one assumed role, passed to them as plain
inputs (components.settings.invocation says which config reaches them and which is refused).

Progress: that process has no engine connection, so `pulumi.log` falls back to `print(..., file=
sys.stderr)` and `pulumi.log.debug` drops the message (pulumi/pulumi#6065, #6066). What the CLI does
show is the process's own output: it streams each line a dynamic provider binary
(`pulumi-resource-pulumi-python`) writes to stdout as an info diagnostic while the call runs
(pulumi/pulumi sdk/go/common/resource/plugin/plugin.go, `newPlugin`'s `runtrace` and
`isDynamicPluginBinary`; "Passthrough unstructured logs from dynamic providers", pulumi/pulumi#18253),
and hides other providers' output. A pipe makes Python's stdout block-buffered, so `progress` flushes
every line, or a deployment's progress would arrive in one lump when it ends. Security stance: the
session holds no secret; assumed-role credentials live only in this process's memory.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from components.settings.invocation import DEFAULT_SESSION_NAME, ProviderSession


def session_for(region: str, session: ProviderSession) -> Any:
    """A boto3 session acting as `session` in `region`: the profile, then the role assumed from it."""
    import boto3  # Only the deploying machine needs boto3; importing it here keeps `import components` light.

    base = boto3.session.Session(profile_name=session.profile, region_name=region)
    if session.role_arn is None:
        return base
    credentials = base.client("sts").assume_role(
        RoleArn=session.role_arn, RoleSessionName=session.session_name or DEFAULT_SESSION_NAME
    )["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=region,
    )


def progress(line: str, stream: IO[str] | None = None) -> None:
    """One progress line the person running `pulumi up` sees as it happens (see the module docstring)."""
    out = stream if stream is not None else sys.stdout
    out.write(f"{line}\n")
    out.flush()
