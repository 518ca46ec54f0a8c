"""The HTTP refusal type and JSON body decoding shared by the API, the Batch API and the consumer.

Its own module so that the modules that raise refusals (worker/api.py, worker/batch_api.py,
worker/batch_format.py, worker/consumer.py) import it from below instead of from each other: the
worker's import graph stays acyclic (held by tests/test_worker_imports.py). It imports nothing of
the worker. Security stance: an error body carries only the message its raiser wrote (the API logs
an unexpected exception by type and place, and answers a fixed 500 instead).
"""

from __future__ import annotations

from typing import Any

import orjson


class ApiError(Exception):
    """A refusal with an HTTP status and an OpenAI-shaped error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


def decode_json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
