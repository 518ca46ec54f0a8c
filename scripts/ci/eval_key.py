"""Prints one tenant's API key from a Secrets Manager secret holding the worker's `API_KEYS` JSON.

The deploy workflow runs the eval gate against a deployed stack as a real tenant (deployment.evalTenant,
default `gantry-eval`): `python scripts/ci/eval_key.py --secret-id ARN [--tenant NAME]` reads the secret
with the job's credentials (the environment's deploy role), through botocore, which the program's lock
has, and prints the key alone on stdout, so the caller can mask it (`::add-mask::`) before anything
else could print it. Security stance: the key is written only to stdout, never to stderr or in an error
message (an error names the secret and the tenant, and lists no other tenant's name or key); the secret
is read, never written.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_TENANT = "gantry-eval"


class EvalKeyError(Exception):
    """The key could not be read: the message says why without any secret in it."""


def tenant_key(secret_string: str, tenant: str, secret_id: str) -> str:
    """The key of `tenant` in an API_KEYS document (`{"tenant": "key", ...}`)."""
    try:
        keys: Any = json.loads(secret_string)
    except ValueError:
        raise EvalKeyError(f"secret {secret_id} is not JSON: expected an object tenant -> key") from None
    if not isinstance(keys, dict):
        raise EvalKeyError(f"secret {secret_id} is not a JSON object tenant -> key")
    key = keys.get(tenant)
    if not isinstance(key, str) or not key:
        raise EvalKeyError(f"secret {secret_id} has no key for tenant {tenant!r} (set deployment.evalTenant's key)")
    return key


def read_key(client: Any, secret_id: str, tenant: str) -> str:
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as error:
        raise EvalKeyError(f"cannot read secret {secret_id}: {error}") from None
    if "SecretString" not in response:
        raise EvalKeyError(f"secret {secret_id} holds binary data, not the API_KEYS JSON")
    return tenant_key(response["SecretString"], tenant, secret_id)


def main(argv: list[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/ci/eval_key.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret-id", required=True, help="ARN or name of the secret holding API_KEYS")
    parser.add_argument(
        "--tenant", default=DEFAULT_TENANT, help=f"tenant whose key to print (default {DEFAULT_TENANT})"
    )
    args = parser.parse_args(argv)
    try:
        key = read_key(
            client or botocore.session.get_session().create_client("secretsmanager"), args.secret_id, args.tenant
        )
    except EvalKeyError as error:
        print(f"eval_key: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(key + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
