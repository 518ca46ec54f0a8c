"""Bearer-key authentication: maps `Authorization: Bearer <key>` to a tenant name.

Keys come from the API_KEYS secret. Lookup compares a SHA-256 of the presented key against a
SHA-256 of every configured key with `hmac.compare_digest`, always visiting all of them, so the
time taken reveals neither a key's prefix nor which tenant matched. Keys are held only inside
this object and never logged or echoed; with AUTH_DISABLED=true every caller is the single
tenant "anonymous", a mode meant only for local development.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

ANONYMOUS = "anonymous"


class Authenticator:
    def __init__(self, api_keys: Mapping[str, str], disabled: bool):
        self._disabled = disabled
        self._digests = [(tenant, hashlib.sha256(key.encode()).digest()) for tenant, key in api_keys.items()]

    @property
    def tenants(self) -> list[str]:
        return [ANONYMOUS] if self._disabled else [tenant for tenant, _ in self._digests]

    def tenant_for(self, authorization: bytes | None) -> str | None:
        """The tenant owning the bearer key in an Authorization header value, or None."""
        if self._disabled:
            return ANONYMOUS
        if not authorization:
            return None
        scheme, _, credential = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            return None
        presented = hashlib.sha256(credential.strip()).digest()
        found = None
        for tenant, digest in self._digests:
            if hmac.compare_digest(presented, digest):
                found = tenant
        return found
