"""Unit tests for the pure parts of the batch path: lines, offsets, output format, checkpoints, config."""

from __future__ import annotations

import json

import openai.types
import orjson
import pytest

from worker.batch_format import (
    MULTIPART_OVERHEAD_LINES,
    Checkpoint,
    LineError,
    UploadLineCounter,
    batch_object,
    error_line,
    file_object,
    line_ids,
    list_object,
    list_parameters,
    output_line,
    parse_line,
    parse_multipart,
    part_key,
    split_lines,
    validate_input_file,
)
from worker.config import ConfigError, load_batch_settings, load_consumer_settings
from worker.errors import ApiError

LINE = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}


def encode(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def test_parse_line_accepts_a_request_line_and_names_what_is_wrong() -> None:
    assert parse_line(json.dumps(LINE).encode()) == ("a", {"model": "m", "input": "x"})
    cases = {
        b"not json": "invalid_json",
        b"[1]": "invalid_json",
        json.dumps({**LINE, "extra": 1}).encode(): "unknown_parameter",
        json.dumps({**LINE, "custom_id": ""}).encode(): "invalid_custom_id",
        json.dumps({**LINE, "custom_id": "x" * 513}).encode(): "invalid_custom_id",
        json.dumps({**LINE, "method": "GET"}).encode(): "invalid_method",
        json.dumps({**LINE, "url": "/v1/chat/completions"}).encode(): "invalid_url",
        json.dumps({**LINE, "body": "text"}).encode(): "invalid_body",
    }
    for raw, code in cases.items():
        with pytest.raises(LineError) as refused:
            parse_line(raw)
        assert refused.value.code == code, raw


def test_split_lines_yields_file_offsets_that_resume_at_the_next_line() -> None:
    data = b'{"a": 1}\r\n\n{"b": 2}\n{"c": 3}'
    lines = list(split_lines([data[:3], data[3:12], data[12:]]))
    assert [line for line, _ in lines] == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']
    assert [end for _, end in lines] == [10, 20, len(data)]
    # Reading again from any recorded offset continues exactly after that line.
    for index, (_, end) in enumerate(lines):
        rest = list(split_lines([data[end:]], end))
        assert rest == lines[index + 1 :]


def test_validate_input_file_counts_lines_and_refuses_with_the_line_number() -> None:
    assert validate_input_file(encode(LINE, {**LINE, "custom_id": "b"}), max_lines=2, max_line_bytes=1000) == 2
    with pytest.raises(ApiError, match="more than 1 lines"):
        validate_input_file(encode(LINE, {**LINE, "custom_id": "b"}), max_lines=1, max_line_bytes=1000)
    with pytest.raises(ApiError, match="line 2: custom_id is repeated"):
        validate_input_file(encode(LINE, LINE), max_lines=10, max_line_bytes=1000)
    with pytest.raises(ApiError, match="line 2: url must be"):
        validate_input_file(encode(LINE, {**LINE, "custom_id": "b", "url": "/v1/x"}), max_lines=10, max_line_bytes=1000)
    with pytest.raises(ApiError, match="no request lines"):
        validate_input_file(b"\n\n", max_lines=10, max_line_bytes=1000)


def test_a_line_over_the_line_bound_is_refused_naming_it() -> None:
    big = {**LINE, "custom_id": "b", "body": {"model": "m", "input": "x" * 2000}}
    data = encode(LINE, big)
    with pytest.raises(ApiError, match=r"line 2 is \d+ bytes, more than 1000 \(MAX_BATCH_LINE_BYTES\)") as raised:
        validate_input_file(data, max_lines=10, max_line_bytes=1000)
    assert raised.value.status == 400 and raised.value.code == "line_too_large"
    assert validate_input_file(data, max_lines=10, max_line_bytes=len(json.dumps(big))) == 2


class _CountingBytes(bytes):
    """bytes that count how many bytes slicing copies out of them (split_lines' whole cost)."""

    copied = 0

    def __getitem__(self, key):
        part = super().__getitem__(key)
        if isinstance(key, slice):
            _CountingBytes.copied += len(part)
            return _CountingBytes(part)
        return part

    # Joined buffers stay counted, whichever side they are on (a subclass's reflected add goes first).
    def __add__(self, other: bytes) -> _CountingBytes:  # type: ignore[override]
        _CountingBytes.copied += len(self) + len(other)
        return _CountingBytes(bytes(self) + bytes(other))

    def __radd__(self, other: bytes) -> _CountingBytes:
        _CountingBytes.copied += len(self) + len(other)
        return _CountingBytes(bytes(other) + bytes(self))


def test_split_lines_is_linear_in_the_stream() -> None:
    """Issue 22: 10k/20k/40k-line uploads took 0.69/2.98/11.4 s, quadratic. Counting the bytes the
    splitter copies (not timing it) holds the bound: about the file once, never once per line."""
    for count in (1_000, 4_000):
        data = _CountingBytes(encode(*({**LINE, "custom_id": str(index)} for index in range(count))))
        _CountingBytes.copied = 0
        assert sum(1 for _ in split_lines([data])) == count
        assert _CountingBytes.copied <= 3 * len(data), (count, _CountingBytes.copied, len(data))


def test_output_and_error_lines_have_openais_shape_and_stable_ids() -> None:
    ok = orjson.loads(output_line("batch_1", 7, "doc-7", 200, b'{"object":"list"}'))
    assert set(ok) == {"id", "custom_id", "response", "error"}
    assert ok["response"] == {"status_code": 200, "request_id": line_ids("batch_1", 7)[1], "body": {"object": "list"}}
    assert ok["error"] is None and ok["custom_id"] == "doc-7"
    again = orjson.loads(output_line("batch_1", 7, "doc-7", 200, b'{"object":"list"}'))
    assert again == ok, "a line written again after a crash must be the same line"
    assert line_ids("batch_1", 8) != line_ids("batch_1", 7) != line_ids("batch_2", 7)
    failed = orjson.loads(error_line("batch_1", 3, None, "invalid_json", "line is not valid JSON"))
    assert failed["response"] is None and failed["error"] == {
        "code": "invalid_json",
        "message": "line is not valid JSON",
    }


def test_checkpoint_parts_tile_the_lines_without_overlap() -> None:
    checkpoint = Checkpoint()
    checkpoint = checkpoint.advance(3, 300, completed=2, failed=1)
    checkpoint = checkpoint.advance(5, 480, completed=2, failed=0)
    checkpoint = checkpoint.advance(9, 900, completed=1, failed=3)
    assert checkpoint.parts() == [(0, 3), (3, 5), (5, 9)]
    assert (checkpoint.next_line, checkpoint.next_byte, checkpoint.completed, checkpoint.failed) == (9, 900, 5, 4)
    covered = [line for start, end in checkpoint.parts() for line in range(start, end)]
    assert covered == list(range(9))
    with pytest.raises(ValueError):
        checkpoint.advance(12, 1000, completed=1, failed=1)  # 3 lines cannot hold 2 results
    with pytest.raises(ValueError):
        checkpoint.advance(10, 900, completed=1, failed=0)  # the byte offset must move forward
    # Part keys sort in line order and name their range, so a rewrite replaces its own part only.
    keys = [part_key("p/", start, end, "output") for start, end in checkpoint.parts()]
    assert keys == sorted(keys) and len(set(keys)) == 3


def test_parse_multipart_reads_fields_and_refuses_other_bodies() -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"line one\r\nline two\n\r\n"
        b"--XyZ--\r\n"
    )
    fields = parse_multipart("multipart/form-data; boundary=XyZ", body)
    assert fields == {"purpose": (None, b"batch"), "file": ("in.jsonl", b"line one\r\nline two\n")}
    with pytest.raises(ApiError, match="multipart/form-data"):
        parse_multipart("application/json", body)
    with pytest.raises(ApiError, match="truncated"):
        parse_multipart("multipart/form-data; boundary=XyZ", body[:40])


def test_objects_validate_against_the_openai_client_models() -> None:
    batch = {
        "tenant": "t",
        "id": "batch_1",
        "kind": "batch",
        "status": "failed",
        "input_file_id": "file-1",
        "created_at": 1,
        "expires_at": 2,
        "total": 3,
        "completed": 1,
        "failed": 2,
        "error_code": "batch_failed",
        "error_reason": "input missing",
    }
    parsed = openai.types.Batch.model_validate(batch_object(batch))
    assert parsed.request_counts is not None and parsed.request_counts.failed == 2
    assert parsed.errors is not None and parsed.errors.data and parsed.errors.data[0].message == "input missing"
    record = {"id": "file-1", "bytes": 10, "created_at": 1, "filename": "a.jsonl", "purpose": "batch"}
    assert openai.types.FileObject.model_validate(file_object(record)).bytes == 10


def test_batch_settings_come_together_or_not_at_all(tmp_path) -> None:
    assert load_batch_settings({}, required=False) is None
    with pytest.raises(ConfigError, match="BATCH_BUCKET is required once QUEUE_URL is set"):
        load_batch_settings({"QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q"}, required=False)
    with pytest.raises(ConfigError, match="QUEUE_URL is required by the consumer"):
        load_batch_settings({}, required=True)
    env = {"QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q", "BATCH_BUCKET": "b", "BATCH_TABLE": "t"}
    settings = load_batch_settings(env, required=True)
    assert settings is not None and (settings.prefix, settings.max_lines) == ("batches/", 50_000)
    with pytest.raises(ConfigError, match="BATCH_PREFIX"):
        load_batch_settings({**env, "BATCH_PREFIX": "no-slash"}, required=True)
    with pytest.raises(ConfigError, match="QUEUE_URL"):
        load_batch_settings({**env, "QUEUE_URL": "my-queue"}, required=True)


def test_consumer_settings_defaults_and_limits(tmp_path) -> None:
    for name in ("model.onnx", "tokenizer.json", "manifest.json"):
        (tmp_path / name).write_text("{}")
    env = {
        "MODEL_DIR": str(tmp_path),
        "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
        "BATCH_BUCKET": "b",
        "BATCH_TABLE": "t",
    }
    settings = load_consumer_settings(env, cpus=2)
    assert (settings.visibility_timeout_seconds, settings.max_receives, settings.checkpoint_lines) == (30, 5, 100)
    assert settings.inference_threads == 2 and settings.drain_timeout_seconds == 90.0
    # Issue 22: a crashed consumer's batch is resumed by another within one short visibility timeout.
    assert settings.heartbeat_seconds == 10 and settings.heartbeat_seconds * 3 <= settings.visibility_timeout_seconds
    assert load_consumer_settings({**env, "VISIBILITY_TIMEOUT_SECONDS": "4"}, cpus=1).heartbeat_seconds == 1
    with pytest.raises(ConfigError, match="HEARTBEAT_SECONDS=11 is more than a third of VISIBILITY_TIMEOUT_SECONDS=30"):
        load_consumer_settings({**env, "HEARTBEAT_SECONDS": "11"}, cpus=1)
    with pytest.raises(ConfigError, match="MAX_RECEIVES=1 is out of range"):
        load_consumer_settings({**env, "MAX_RECEIVES": "1"}, cpus=1)
    with pytest.raises(ConfigError, match="WAIT_TIME_SECONDS=21 is out of range"):
        load_consumer_settings({**env, "WAIT_TIME_SECONDS": "21"}, cpus=1)
    with pytest.raises(ConfigError, match="MODEL_DIR"):
        load_consumer_settings({**env, "MODEL_DIR": ""}, cpus=1)


def test_list_parameters_take_openais_cursor_and_refuse_the_rest_by_name() -> None:
    assert list_parameters("", default_limit=20, max_limit=100) == (None, 20)
    assert list_parameters("limit=2&after=batch_ab12", default_limit=20, max_limit=100) == ("batch_ab12", 2)
    for query, message in {
        "limit=0": "limit must be an integer from 1 to 100",
        "limit=101": "limit must be an integer from 1 to 100",
        "limit=x": "limit must be an integer from 1 to 100",
        "after=nope": "after must be an id",
        "order=desc": "unrecognized query parameter: order",
    }.items():
        with pytest.raises(ApiError, match=message):
            list_parameters(query, default_limit=20, max_limit=100)


def test_list_object_is_openais_page_shape() -> None:
    page = list_object([{"id": "batch_1"}, {"id": "batch_2"}], has_more=True)
    assert page == {
        "object": "list",
        "data": [{"id": "batch_1"}, {"id": "batch_2"}],
        "first_id": "batch_1",
        "last_id": "batch_2",
        "has_more": True,
    }
    assert list_object([], has_more=False)["last_id"] is None


def test_the_upload_counter_counts_like_split_lines_and_refuses_on_the_chunk_past_the_limit() -> None:
    data = encode(*({**LINE, "custom_id": str(index)} for index in range(40))).replace(b"\n", b"\n\n \r\n", 5)
    for size in (1, 7, 64, len(data)):
        counter = UploadLineCounter(max_lines=1000)
        for start in range(0, len(data), size):
            counter.feed(data[start : start + size])
        counter.feed(b"")
        assert counter.lines == sum(1 for _ in split_lines([data])) == 40
    # 40 lines against a limit of 40 - MULTIPART_OVERHEAD_LINES - 1 (+ the envelope's allowance): refused
    # while feeding, at the chunk that completes the first line past it, not after the whole body.
    counter = UploadLineCounter(max_lines=40 - MULTIPART_OVERHEAD_LINES - 1 - 5)
    lines = data.split(b"\n")
    fed = 0
    with pytest.raises(ApiError, match="more than 18 lines .*refused while uploading") as refused:
        for line in lines:
            counter.feed(line + b"\n")
            fed += 1
    assert refused.value.code == "too_many_lines" and fed < len(lines) - 1
