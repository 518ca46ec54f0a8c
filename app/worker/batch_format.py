"""The OpenAI Batch API's formats, as pure functions: input lines, output lines, objects, checkpoints.

Nothing here does I/O, so everything the batch path promises about bytes is testable alone: which
input lines are accepted (`parse_line`, `validate_input_file`), what an output or error line looks
like (`output_line`, `error_line`: OpenAI's `{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`), how a byte stream splits into lines with the offset after each
(`split_lines`, which is what lets a redelivered message resume at a byte offset), and how progress
advances (`Checkpoint`: every part covers the half-open line range between two recorded ends, so
parts never overlap and assembling them yields each line exactly once). Ids derived from
(batch, line) are deterministic: a line written again after a crash is byte-for-byte the same
line, never a second one. Security stance: lines are tenant data; nothing here logs them, and
errors name the line number and the field, never the content.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from worker.errors import ApiError

ENDPOINT = "/v1/embeddings"
COMPLETION_WINDOW = "24h"
WINDOW_SECONDS = 24 * 3600
# OpenAI's own cap on a custom_id; longer ones are refused at upload with the line number.
MAX_CUSTOM_ID_CHARS = 512
_LINE_FIELDS = frozenset({"custom_id", "method", "url", "body"})
# OpenAI allows at most 16 metadata pairs, keys up to 64 and values up to 512 characters.
MAX_METADATA_PAIRS = 16

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})


class LineError(Exception):
    """An input line that is not a batch request line; `code` and the message name what is wrong."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def new_id(prefix: str) -> str:
    """A fresh OpenAI-style id (`file-…`, `batch_…`): 128 random bits, unguessable across tenants."""
    return f"{prefix}{secrets.token_hex(16)}"


def parse_line(raw: bytes) -> tuple[str, Any]:
    """(custom_id, body) of one input line, or LineError naming the field that is wrong.

    Only the envelope is checked here; the body is an embeddings request, validated by
    `worker.api.parse_embeddings_request` exactly as the HTTP endpoint validates it.
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineError("invalid_json", f"line is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise LineError("invalid_json", "line must be a JSON object")
    unknown = sorted(set(payload) - _LINE_FIELDS)
    if unknown:
        raise LineError(
            "unknown_parameter", f"unrecognized field {unknown[0]!r}; allowed: custom_id, method, url, body"
        )
    custom_id = payload.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise LineError("invalid_custom_id", f"custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters")
    if payload.get("method") != "POST":
        raise LineError("invalid_method", "method must be 'POST'")
    if payload.get("url") != ENDPOINT:
        raise LineError("invalid_url", f"url must be {ENDPOINT!r}: this worker batches embeddings only")
    body = payload.get("body")
    if not isinstance(body, dict):
        raise LineError("invalid_body", "body must be a JSON object (an embeddings request)")
    return custom_id, body


def split_lines(chunks: Iterable[bytes], offset: int = 0) -> Iterator[tuple[bytes, int]]:
    """Split a byte stream into lines; yields (line without its newline, byte offset after it).

    `offset` is where the stream starts in the file, so the offsets are file offsets: reading
    again from any yielded offset (an HTTP Range) continues with the next line. Blank lines are
    skipped (a trailing newline is not a line); a final line without a newline is still a line.
    """
    # Linear in the stream's size: each chunk is scanned once from a moving position, and only the
    # unfinished tail is carried into the next chunk. (Re-slicing the remainder after every line
    # copied it once per line: quadratic, 42 s to refuse a 60,000-line upload held as one chunk.)
    pending = b""
    start = offset
    for chunk in chunks:
        buffer = pending + chunk if pending else chunk
        position = 0
        while (cut := buffer.find(b"\n", position)) >= 0:
            line = buffer[position:cut].rstrip(b"\r")
            start += cut + 1 - position
            position = cut + 1
            if line.strip():
                yield line, start
        pending = buffer[position:]
    if pending.strip():
        yield pending.rstrip(b"\r"), start + len(pending)


# Lines a multipart body may carry besides the file's own: boundaries, part headers, the purpose value.
MULTIPART_OVERHEAD_LINES = 16


class UploadLineCounter:
    """Counts non-blank lines of an upload while its bytes arrive, to refuse an over-long file early.

    `validate_input_file` gives the exact verdict once the body is complete; this only lets the
    API stop receiving a file that already has more than `max_lines` lines (plus the multipart
    envelope's few), instead of reading up to MAX_BATCH_FILE_BYTES first. Linear: each chunk is
    split once, and only whether the unfinished line has content yet is carried over.
    """

    def __init__(self, max_lines: int):
        self.limit = max_lines + MULTIPART_OVERHEAD_LINES
        self.lines = 0
        self._content = False  # the unfinished line has a non-blank byte

    def feed(self, chunk: bytes) -> None:
        """Count the lines `chunk` completes; raises ApiError 400 too_many_lines past the limit."""
        *finished, rest = chunk.split(b"\n")
        for segment in finished:
            if self._content or segment.strip():
                self.lines += 1
            self._content = False
        self._content = self._content or bool(rest.strip())
        if self.lines > self.limit:
            raise ApiError(
                400,
                f"file has more than {self.limit - MULTIPART_OVERHEAD_LINES} lines (MAX_BATCH_LINES); "
                "refused while uploading",
                code="too_many_lines",
                param="file",
            )


def validate_input_file(data: bytes, max_lines: int, max_line_bytes: int) -> int:
    """Check an uploaded batch file line by line, in one linear pass; returns its number of request lines.

    Refuses (ApiError 400, naming the 1-based line) what no later step could recover from: a
    line that is not a request line, a line over `max_line_bytes` (refused here rather than failing
    later in the consumer), a repeated custom_id (output lines are matched by it), more than
    `max_lines` lines (refused at line `max_lines + 1`, without reading on), or no line at all.
    Body contents are checked per line by the consumer.
    """
    seen: set[str] = set()
    count = 0
    for count, (line, _) in enumerate(split_lines([data]), start=1):
        if count > max_lines:
            raise ApiError(
                400, f"file has more than {max_lines} lines (MAX_BATCH_LINES)", code="too_many_lines", param="file"
            )
        if len(line) > max_line_bytes:
            raise ApiError(
                400,
                f"line {count} is {len(line)} bytes, more than {max_line_bytes} (MAX_BATCH_LINE_BYTES); "
                "split its input over several lines",
                code="line_too_large",
                param="file",
            )
        try:
            custom_id, _body = parse_line(line)
        except LineError as error:
            raise ApiError(400, f"line {count}: {error.message}", code=error.code, param="file") from None
        if custom_id in seen:
            raise ApiError(
                400, f"line {count}: custom_id is repeated; each line needs its own", code="duplicate_custom_id"
            )
        seen.add(custom_id)
    if count == 0:
        raise ApiError(400, "file has no request lines", code="empty_file", param="file")
    return count


def line_ids(batch_id: str, line: int) -> tuple[str, str]:
    """(output line id, request id) of input line `line` (0-based): the same on every rerun."""
    digest = hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()
    return f"batch_req_{digest[:32]}", f"req_{digest[32:64]}"


def output_line(batch_id: str, line: int, custom_id: str, status_code: int, body: bytes) -> bytes:
    """An output (status 200) or error-file (4xx/5xx) line carrying the HTTP answer `body` (JSON bytes)."""
    line_id, request_id = line_ids(batch_id, line)
    return orjson.dumps(
        {
            "id": line_id,
            "custom_id": custom_id,
            "response": {"status_code": status_code, "request_id": request_id, "body": orjson.Fragment(body)},
            "error": None,
        }
    )


def error_line(batch_id: str, line: int, custom_id: str | None, code: str, message: str) -> bytes:
    """An error-file line for an input line that never became a request (no HTTP answer)."""
    line_id, _ = line_ids(batch_id, line)
    return orjson.dumps(
        {"id": line_id, "custom_id": custom_id, "response": None, "error": {"code": code, "message": message}}
    )


@dataclass(frozen=True)
class Checkpoint:
    """Durable progress of one batch: lines [0, next_line) are in parts, the input resumes at next_byte.

    `part_ends[i]` is the end line of part i; part i covers [part_ends[i-1], part_ends[i]) (the
    first starts at 0). Parts are named by that range, so a rewritten part replaces, never adds.
    """

    next_line: int = 0
    next_byte: int = 0
    completed: int = 0
    failed: int = 0
    part_ends: tuple[int, ...] = field(default=())

    def advance(self, end_line: int, end_byte: int, completed: int, failed: int) -> Checkpoint:
        """The checkpoint after one more part of `completed + failed` lines ending at `end_line`."""
        if end_line - self.next_line != completed + failed or end_line <= self.next_line or end_byte <= self.next_byte:
            raise ValueError(
                f"a part from line {self.next_line} to {end_line} (byte {self.next_byte} to {end_byte}) "
                f"cannot hold {completed} completed + {failed} failed lines"
            )
        return Checkpoint(
            next_line=end_line,
            next_byte=end_byte,
            completed=self.completed + completed,
            failed=self.failed + failed,
            part_ends=(*self.part_ends, end_line),
        )

    def parts(self) -> list[tuple[int, int]]:
        """The (start, end) line range of every part, in order."""
        starts = (0, *self.part_ends[:-1])
        return list(zip(starts, self.part_ends, strict=True))


def part_key(batch_prefix: str, start: int, end: int, kind: str) -> str:
    """S3 key of one part (`kind` is "output" or "error") under the batch's prefix."""
    return f"{batch_prefix}parts/{start:09d}-{end:09d}.{kind}.jsonl"


def batch_object(item: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Batch object for a stored batch record."""
    reason = item.get("error_reason")
    return {
        "id": item["id"],
        "object": "batch",
        "endpoint": ENDPOINT,
        "errors": (
            {
                "object": "list",
                "data": [{"code": item.get("error_code"), "message": reason, "param": None, "line": None}],
            }
            if reason
            else None
        ),
        "input_file_id": item["input_file_id"],
        "completion_window": COMPLETION_WINDOW,
        "status": item["status"],
        "output_file_id": item.get("output_file_id"),
        "error_file_id": item.get("error_file_id"),
        "created_at": _int(item.get("created_at")),
        "in_progress_at": _int(item.get("in_progress_at")),
        "expires_at": _int(item.get("expires_at")),
        "finalizing_at": _int(item.get("finalizing_at")),
        "completed_at": _int(item.get("completed_at")),
        "failed_at": _int(item.get("failed_at")),
        "expired_at": _int(item.get("expired_at")),
        "cancelling_at": _int(item.get("cancelling_at")),
        "cancelled_at": _int(item.get("cancelled_at")),
        "request_counts": {
            "total": _int(item.get("total")) or 0,
            "completed": _int(item.get("completed")) or 0,
            "failed": _int(item.get("failed")) or 0,
        },
        "metadata": item.get("metadata") or None,
    }


def file_object(item: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI File object for a stored file record."""
    return {
        "id": item["id"],
        "object": "file",
        "bytes": _int(item["bytes"]),
        "created_at": _int(item["created_at"]),
        "filename": item["filename"],
        "purpose": item["purpose"],
        "status": "processed",
        "status_details": None,
    }


def list_parameters(query: str, *, default_limit: int, max_limit: int) -> tuple[str | None, int]:
    """(after, limit) from a list route's query string, as OpenAI's cursor pagination takes them.

    `after` is the id of the last object of the previous page; `limit` is 1 to `max_limit`. Other
    parameters are refused by name (ApiError 400) rather than silently ignored.
    """
    values: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        values[unquote_plus(name)] = unquote_plus(value)
    unknown = sorted(set(values) - {"after", "limit"})
    if unknown:
        raise ApiError(
            400,
            f"unrecognized query parameter: {unknown[0]}; allowed: after, limit",
            code="unknown_parameter",
            param=unknown[0],
        )
    raw_limit = values.get("limit", str(default_limit))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_limit:
        raise ApiError(400, f"limit must be an integer from 1 to {max_limit}", code="invalid_value", param="limit")
    after = values.get("after") or None
    if after is not None and not re.fullmatch(r"(batch_|file-)[0-9a-f]{1,64}", after):
        raise ApiError(400, "after must be an id from a previous page", code="invalid_value", param="after")
    return after, int(raw_limit)


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's list page: `data`, `first_id`, `last_id` (the next page's `after`) and `has_more`."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def validate_metadata(metadata: Any) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 string pairs, keys <= 64 and values <= 512 characters."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_PAIRS:
        raise ApiError(400, "metadata must be an object of at most 16 pairs", code="invalid_value", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise ApiError(
                400,
                "metadata keys must be at most 64 and values at most 512 characters, values strings",
                code="invalid_value",
                param="metadata",
            )
    return dict(metadata)


def _int(value: Any) -> int | None:
    # DynamoDB numbers arrive as Decimal.
    return None if value is None else int(value)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename or None, bytes).

    Enough of RFC 7578 for what HTTP clients send (the `openai` client's httpx among them):
    CRLF-delimited parts with a Content-Disposition naming each field. Raises ApiError 400 otherwise.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/form-data") or match is None:
        raise ApiError(
            400, "upload a file as multipart/form-data with fields 'purpose' and 'file'", code="invalid_content_type"
        )
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    sections = (b"\r\n" + body).split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ApiError(400, "multipart body is truncated or malformed", code="invalid_multipart")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for section in sections[1:-1]:
        head, separator, content = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(
            (line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition:")),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        if not separator or name is None:
            raise ApiError(400, "multipart part without a Content-Disposition name", code="invalid_multipart")
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        fields[name.group(1)] = (filename.group(1) if filename else None, content)
    return fields
