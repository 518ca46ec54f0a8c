"""Prints the registry password `docker login` needs for ECR, from the job's AWS credentials.

`python scripts/ci/ecr_password.py | docker login --username AWS --password-stdin REGISTRY` is
`aws ecr get-login-password` without needing the AWS CLI on the runner: botocore (in the program's lock)
calls ecr:GetAuthorizationToken and the token's password part is printed. Security stance: the password
goes only to stdout, which the caller pipes into `docker login`; errors name the problem, never a token.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError


class RegistryError(Exception):
    """No password could be obtained; the message holds no token."""


def password(client: Any) -> str:
    try:
        response = client.get_authorization_token()
    except (ClientError, BotoCoreError) as error:
        raise RegistryError(f"cannot get an ECR authorization token: {error}") from None
    data = response.get("authorizationData") or []
    if not data:
        raise RegistryError("ECR returned no authorization data")
    user, _, secret = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not secret:
        raise RegistryError("ECR's authorization token is not of the form AWS:<password>")
    return secret


def main(client: Any = None) -> int:
    try:
        secret = password(client or botocore.session.get_session().create_client("ecr"))
    except RegistryError as error:
        print(f"ecr_password: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(secret + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
