"""`python -m worker.consumer`: runs OpenAI-format embedding batches from an SQS queue.

One message names one batch (tenant, batch id; see worker/batch_api.py). The consumer long-polls
for one message at a time, streams the batch's input JSONL from S3 (an HTTP Range read from the
checkpointed byte offset), validates every line with the HTTP API's own validator
(`worker.api.parse_embeddings_request` and `check_input_lengths`: a line is accepted exactly when
POST /v1/embeddings would accept its body), embeds through the same model and `Batcher` —
calibrated at start as the API's is, and handed a whole part at once, so its runs are the cost
model's cut of the part sorted by length — and writes each CHECKPOINT_LINES lines as one output
part and one error part in S3 — named by their line range — before recording the checkpoint in
DynamoDB with a conditional write; a part's writes run while the next part is embedded. The guarantees:
- Nothing doubled: a part is recorded only if the batch is still at the part's first line, and
  a redelivered message resumes at the recorded line and byte, rewriting (not adding) any part
  written after the last checkpoint; output ids are derived from (batch, line), so a rewritten
  line is identical. The output file is assembled from the recorded parts only.
- Nothing lost: the message is deleted only after the final files and status are written; until
  then a heartbeat extends its visibility (ChangeMessageVisibility to VISIBILITY_TIMEOUT_SECONDS,
  default 30, every HEARTBEAT_SECONDS, default 10), so after a crash another consumer resumes the
  batch at most VISIBILITY_TIMEOUT_SECONDS after the last beat (30 s by default, not minutes).
- Never stranded: a failed attempt records its reason and releases the message for a retry after
  RETRY_DELAY_SECONDS. The MAX_RECEIVES-th receive (ApproximateReceiveCount plus the receives an
  earlier message of the batch carried over a drain; the queue's redrive maxReceiveCount must
  equal MAX_RECEIVES) does not run the batch again — every earlier attempt failed or
  crashed, and a crash (a line that kills the process) leaves no handler to fail it — but ends it
  `failed` (`expired` past its window) with the finished lines' files and the reason, then releases
  the message for the queue to move to the dead-letter queue. The 24 h window is also checked at
  every checkpoint, so a batch kept alive by its heartbeat still ends `expired` one part after it,
  and the heartbeat stops renewing past the window, so work stuck inside a part (a hung call) lets
  the message go and the next receive ends the batch `expired`.
- SIGTERM (an ECS stop or a Spot interruption): no further receive; the current part finishes and
  is checkpointed, the batch goes back to the queue as a fresh message for another task (and the
  old one is deleted, so a drain never spends one of MAX_RECEIVES), and the process exits 0.
  If that takes longer than DRAIN_TIMEOUT_SECONDS the part is abandoned (its lines are redone).
- Cancel: the API sets `cancelling`; the next checkpoint write fails its condition, and the
  consumer assembles what is done and marks the batch `cancelled`.
- Tenant budget: each line's tokens are spent from the tenant's BATCH_TOKEN_BUDGET_PER_MINUTE
  bucket before it is embedded; an empty bucket makes the batch wait (it is never refused), so one
  tenant's corpus drains at a bounded rate and cannot crowd out everything else.
Security stance: configuration comes from the environment only and is validated at start; logs carry
tenant, batch id, counts and timings — never an input text or an embedding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from worker import logs
from worker.api import check_input_lengths, embeddings_response, parse_embeddings_request
from worker.background import cancel_and_wait
from worker.batch_format import (
    COMPLETION_WINDOW,
    TERMINAL_STATUSES,
    Checkpoint,
    LineError,
    error_line,
    output_line,
    parse_line,
    part_key,
    split_lines,
)
from worker.batch_size import calibrate_runs
from worker.batch_store import BatchStore, ConditionFailed, part_keys
from worker.batcher import Batcher
from worker.config import ConfigError, ConsumerSettings, load_consumer_settings
from worker.errors import ApiError
from worker.limits import TenantLimits
from worker.model import DIMENSIONS, Embedder

_INLINE_TOKENIZE_CHARS = 8192
# Reasons stored in a batch record (and shown by batches.retrieve) are cut to this length.
_MAX_REASON_CHARS = 500
# A batch in one of these may still be failed; the rest are terminal.
_OPEN_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")


class Released(Exception):
    """Processing stopped for a SIGTERM after a checkpoint; the message goes back to the queue."""


class Abandoned(Exception):
    """Another consumer advanced this batch (a redelivery raced us); leave the message to it."""


def checkpoint_of(item: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        next_line=int(item.get("next_line", 0)),
        next_byte=int(item.get("next_byte", 0)),
        completed=int(item.get("completed", 0)),
        failed=int(item.get("failed", 0)),
        part_ends=tuple(int(end) for end in item.get("part_ends", [])),
    )


def result_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: derived, so a finalisation that runs twice writes one file."""
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:32]


def _take(lines: Iterator[tuple[bytes, int]], count: int) -> list[tuple[bytes, int]]:
    return [line for _, line in zip(range(count), lines, strict=False)]


class _Progress:
    """A running batch's `batch_progress` log lines: lines done and the rate since this attempt began."""

    def __init__(self, tenant: str, batch_id: str, total: int):
        self.tenant, self.batch_id, self.total = tenant, batch_id, total
        self.started = time.monotonic()
        self.done_here = 0

    def log(self, checkpoint: Checkpoint, lines: int) -> None:
        self.done_here += lines
        elapsed = time.monotonic() - self.started
        logs.event(
            "batch_progress",
            tenant=self.tenant,
            batch_id=self.batch_id,
            lines_done=checkpoint.next_line,
            total=self.total,
            completed=checkpoint.completed,
            failed=checkpoint.failed,
            lines_per_second=round(self.done_here / elapsed, 2) if elapsed > 0 else None,
        )


class Consumer:
    def __init__(self, settings: ConsumerSettings, store: BatchStore, embedder: Embedder, batcher: Batcher):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.batcher = batcher
        # Requests are not limited here (one line is one request the API never saw); tokens are.
        self.limits = TenantLimits(10**9, settings.token_budget_per_minute)
        self.stop = asyncio.Event()
        # The running batch's window end (epoch seconds): the heartbeat stops renewing past it.
        self.window_ends: float | None = None

    # --- the receive loop ----------------------------------------------------------------------

    async def run(self) -> None:
        settings = self.settings
        while not self.stop.is_set():
            receive = asyncio.ensure_future(
                asyncio.to_thread(self.store.receive, settings.wait_time_seconds, settings.visibility_timeout_seconds)
            )
            stopping = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            try:
                # A receive already on the wire may still deliver after SIGTERM: such a message is released below.
                messages = await receive
                for message in messages:
                    if self.stop.is_set():
                        await self._hand_back(message, "stopping")
                        continue
                    await self._supervise(message)
            except Exception as exc:
                # SQS or S3 unreachable for longer than the SDK's retries: the message (if any) comes
                # back after its visibility timeout; pause so an outage is not a busy loop.
                logs.event("queue_error", error=f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS])
                await asyncio.sleep(1)

    async def _supervise(self, message: dict[str, Any]) -> None:
        """Handle one message; after a SIGTERM, give it DRAIN_TIMEOUT_SECONDS to reach a checkpoint."""
        work = asyncio.ensure_future(self.handle(message))
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            done, _ = await asyncio.wait({work}, timeout=self.settings.drain_timeout_seconds)
            if not done:
                logs.event("drain_timeout", seconds=self.settings.drain_timeout_seconds)
                await cancel_and_wait(work)
        if work.done() and not work.cancelled():
            work.result()

    async def _heartbeat(self, receipt: str) -> None:
        visibility = self.settings.visibility_timeout_seconds
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            if self.window_ends is not None and time.time() > self.window_ends:
                # Past the window, work that has not reached a checkpoint (which would have ended the
                # batch `expired`) is stuck, e.g. a hung model call: let the message go, so that the
                # next receive ends the batch `expired` instead of this task holding it forever.
                logs.event("heartbeat_stopped", reason="window_passed")
                return
            try:
                await asyncio.to_thread(self.store.set_visibility, receipt, visibility)
            except Exception as exc:  # a missed beat is retried at the next; the work goes on
                logs.event("heartbeat_failed", error=type(exc).__name__)

    async def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        attempts = self._attempts(message)
        self.window_ends = None
        heartbeat = asyncio.ensure_future(self._heartbeat(receipt))
        reference: tuple[str, str] | None = None
        outcome = "retry"
        reason = ""
        try:
            reference = self._reference(message.get("Body", ""))
            if attempts >= self.settings.max_receives:
                # The last receive before the dead-letter queue: earlier attempts ended without
                # finishing (a caught failure, or a crash no handler saw), so running again could
                # only repeat it and strand the batch. End it instead, with what is done.
                outcome = await self._give_up(*reference, attempts)
            else:
                await self.process(*reference)
                outcome = "done"
        except Released:
            outcome = "release"
        except Abandoned:
            outcome = "abandon"
        except asyncio.CancelledError:
            await cancel_and_wait(heartbeat)
            await self._hand_back(message, "drain_timeout")
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
        finally:
            await cancel_and_wait(heartbeat)

        if outcome == "done":
            await asyncio.to_thread(self.store.delete, receipt)
        elif outcome == "gave_up":
            # Released, not deleted: the next receive makes the queue move it to the dead-letter
            # queue, whose alarm tells an operator (the batch record already says why).
            await asyncio.to_thread(self.store.set_visibility, receipt, 0)
        elif outcome == "release":
            await self._hand_back(message, "stopping")
        elif outcome == "retry":
            await self._failed(receipt, attempts, reference, reason)

    def _attempts(self, message: dict[str, Any]) -> int:
        """Receives that count toward MAX_RECEIVES: this message's, plus those carried by a drain's fresh message."""
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            carried = orjson.loads(message.get("Body", "")).get("attempts", 0)
        except (orjson.JSONDecodeError, AttributeError):
            carried = 0
        return receives + (carried if isinstance(carried, int) and carried > 0 else 0)

    async def _hand_back(self, message: dict[str, Any], reason: str) -> None:
        """Give a drained batch (SIGTERM: a deploy, a Spot interruption) back to the queue without
        spending a receive on it.

        SQS counts every receive toward the redrive's maxReceiveCount, a released message's too, so
        a batch drained MAX_RECEIVES - 1 times used to end `failed` with nothing wrong with it. The
        batch therefore goes back as a fresh message that carries the receives that did count (the
        earlier failed or crashed attempts; its checkpoint is in the table), and the old message is
        deleted: drains never count, crashes still do (`_attempts` adds the two). Sent before the
        delete: should the delete fail, the batch has two messages, which the conditional
        checkpoints make harmless (whoever is second to a part abandons it). Should the send fail,
        the message is released as before, spending this receive.
        """
        receipt = message["ReceiptHandle"]
        try:
            reference = self._reference(message.get("Body", ""))
        except ValueError:
            reference = None  # not a batch message: released, it fails on its own receives
        if reference is not None:
            try:
                await asyncio.to_thread(self.store.send, *reference, self._attempts(message) - 1)
            except Exception as exc:
                logs.event("resend_failed", batch_id=reference[1], error=f"{type(exc).__name__}: {exc}"[:200])
            else:
                try:
                    await asyncio.to_thread(self.store.delete, receipt)
                except Exception as exc:  # the old message comes back after its visibility timeout
                    logs.event("delete_failed", batch_id=reference[1], error=type(exc).__name__)
                logs.event("message_released", reason=reason, batch_id=reference[1], resent=True)
                return
            # This receive is spent after all: if the last one gives up, its reason should say why.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.store.note_error,
                    *reference,
                    "the consumer was stopped (SIGTERM) and could not hand the batch back without using a receive",
                    _OPEN_STATUSES,
                )
        await asyncio.to_thread(self.store.set_visibility, receipt, 0)
        logs.event("message_released", reason=reason, batch_id=reference and reference[1], resent=False)

    async def _failed(self, receipt: str, receives: int, reference: tuple[str, str] | None, reason: str) -> None:
        batch_id = reference[1] if reference else None
        if receives < self.settings.max_receives:
            logs.event("batch_retry", batch_id=batch_id, receives=receives, error=reason)
            if reference is not None:
                # Kept on the record so that the attempt that gives up can say why the others failed.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.store.note_error, *reference, reason, _OPEN_STATUSES)
            await asyncio.to_thread(self.store.set_visibility, receipt, self.settings.retry_delay_seconds)
            return
        if reference is not None:
            with contextlib.suppress(ConditionFailed):
                await asyncio.to_thread(
                    self.store.transition,
                    *reference,
                    _OPEN_STATUSES,
                    "failed",
                    error_code="batch_failed",
                    error_reason=f"failed after {receives} attempts: {reason}",
                )
        logs.event("batch_failed", batch_id=batch_id, receives=receives, error=reason)
        # Released, not deleted: the next receive makes the queue move it to the dead-letter queue.
        await asyncio.to_thread(self.store.set_visibility, receipt, 0)

    async def _give_up(self, tenant: str, batch_id: str, receives: int) -> str:
        """End a batch whose attempts all failed: `failed` (or `expired`, past its window), files kept.

        Returns the message's outcome: "gave_up" (release it to the dead-letter queue) or "done"
        (the batch had already ended; delete the message).
        """
        item = await self._batch(tenant, batch_id)
        status = item["status"]
        if status in ("failed", "expired"):
            # Ended by an earlier give-up on a message that carried its attempts over a drain: that
            # message's own receive count is below the redrive's, so release it again until the
            # queue moves it to the dead-letter queue, whose alarm tells an operator.
            logs.event("batch_already_done", batch_id=batch_id, status=status)
            return "gave_up"
        if status in TERMINAL_STATUSES:
            logs.event("batch_already_done", batch_id=batch_id, status=status)
            return "done"
        if status == "finalizing":
            # Every line was done and only the assembly was interrupted: it is short, and finishing it is the answer.
            await self._finish(item, "finalizing", "completed")
            return "done"
        checkpoint = checkpoint_of(item)
        if item.get("last_error"):
            cause = str(item["last_error"])
        else:
            last = min(checkpoint.next_line + self.settings.checkpoint_lines, int(item["total"]))
            cause = (
                f"the consumer stopped without a trace on lines {checkpoint.next_line + 1}-{last} "
                "(a crash: out of memory, a fault in the model, or the task killed)"
            )
        expired = time.time() > int(item["expires_at"])
        final = "cancelled" if status == "cancelling" else "expired" if expired else "failed"
        done = f"{checkpoint.next_line} of {item['total']} lines were done (results in the output and error files)"
        values = {
            "error_code": "batch_expired" if final == "expired" else "batch_failed",
            # The cause first: the reason is cut to _MAX_REASON_CHARS.
            "error_reason": f"failed after {receives} attempts: {cause[:300]}; {done}"[:_MAX_REASON_CHARS],
        }
        if status == "validating":
            await asyncio.to_thread(self.store.transition, tenant, batch_id, ("validating",), final, **values)
        else:
            await self._finish(item, status, final, **(values if final != "cancelled" else {}))
        logs.event("batch_failed", batch_id=batch_id, receives=receives, status=final, error=cause[:_MAX_REASON_CHARS])
        return "gave_up"

    @staticmethod
    def _reference(body: str) -> tuple[str, str]:
        try:
            payload = orjson.loads(body)
            tenant, batch_id = payload["tenant"], payload["batch_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ValueError("message body is not {'tenant', 'batch_id'}") from None
        if not isinstance(tenant, str) or not isinstance(batch_id, str):
            raise ValueError("message tenant and batch_id must be strings")
        return tenant, batch_id

    # --- one batch -----------------------------------------------------------------------------

    async def _batch(self, tenant: str, batch_id: str) -> dict[str, Any]:
        item = await asyncio.to_thread(self.store.get, tenant, batch_id)
        if item is None or item.get("kind") != "batch":
            raise LookupError(f"no batch {batch_id} for tenant {tenant}")
        return item

    async def process(self, tenant: str, batch_id: str) -> None:
        item = await self._batch(tenant, batch_id)
        self.window_ends = float(item["expires_at"])
        if item["status"] == "validating":
            try:
                item = await asyncio.to_thread(self.store.transition, tenant, batch_id, ("validating",), "in_progress")
            except ConditionFailed:
                item = await self._batch(tenant, batch_id)
        status = item["status"]
        if status in TERMINAL_STATUSES:
            logs.event("batch_already_done", batch_id=batch_id, status=status)
            return
        if status == "in_progress" and time.time() > int(item["expires_at"]):
            await self._expire(item)
            return
        if status == "in_progress":
            item, finished = await self._run(item)
            if item["status"] == "cancelling":
                await self._finish(item, "cancelling", "cancelled")
                return
            if not finished:
                await self._expire(item)
                return
            item = await asyncio.to_thread(self.store.transition, tenant, batch_id, ("in_progress",), "finalizing")
            status = "finalizing"
        if status == "finalizing":
            await self._finish(item, "finalizing", "completed")
        elif status == "cancelling":
            await self._finish(item, "cancelling", "cancelled")

    async def _expire(self, item: dict[str, Any]) -> None:
        """The 24 h window passed with lines left: end as `expired`, keeping what is done (OpenAI's state)."""
        checkpoint = checkpoint_of(item)
        reason = (
            f"the {COMPLETION_WINDOW} completion window ended with {checkpoint.next_line} of {item['total']} "
            "lines done; their results are in the output and error files"
        )
        await self._finish(item, "in_progress", "expired", error_code="batch_expired", error_reason=reason)

    async def _run(self, item: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Embed from the checkpoint on; returns the record (in_progress, or cancelling) and whether
        every line is done (False: the completion window passed first, checked at every checkpoint,
        so a batch slowed by its token budget still ends at most one part after its window).

        A part's writes (its two S3 objects, then its checkpoint) run while the next part is
        embedded, so the inference thread does not wait on S3 and DynamoDB between parts (issue
        22: those waits kept the batch path below the online one). Checkpoints stay in order — a
        part is recorded only after the one before it — and before anything returns, stops or
        fails over, the write in flight is finished (or, on a cancel or a lost race, the part
        being embedded is dropped, as it would have been redone).
        """
        tenant, batch_id = item["tenant"], item["id"]
        checkpoint = checkpoint_of(item)
        total = int(item["total"])
        logs.event(
            "batch_started" if checkpoint.next_line == 0 else "batch_resumed",
            tenant=tenant,
            batch_id=batch_id,
            next_line=checkpoint.next_line,
            total=total,
        )
        input_key = self.store.file_key(tenant, item["input_file_id"])
        lines = split_lines(self.store.stream(input_key, checkpoint.next_byte), checkpoint.next_byte)
        progress = _Progress(tenant, batch_id, total)
        writing: asyncio.Task[tuple[dict[str, Any], bool]] | None = None
        embedding: asyncio.Task[tuple[list[bytes], list[bytes]]] | None = None
        try:
            while True:
                if self.stop.is_set() or time.time() > int(item["expires_at"]):
                    if writing is not None:
                        task, writing = writing, None
                        item, cancelled = await task
                        if cancelled:
                            return item, False
                    if self.stop.is_set():
                        raise Released
                    return item, False
                chunk = await asyncio.to_thread(_take, lines, self.settings.checkpoint_lines)
                if chunk:
                    embedding = asyncio.create_task(self._embed_lines(tenant, batch_id, checkpoint.next_line, chunk))
                if writing is not None:
                    task, writing = writing, None
                    item, cancelled = await task
                    if cancelled:
                        return item, False
                if embedding is None:
                    return item, True
                running, embedding = embedding, None
                outputs, errors = await running
                after = checkpoint.advance(checkpoint.next_line + len(chunk), chunk[-1][1], len(outputs), len(errors))
                part = self._write_part(tenant, batch_id, checkpoint, after, outputs, errors, progress)
                writing = asyncio.create_task(part)
                checkpoint = after
        finally:
            # Left only by a return that drops the next part (a cancel seen) or by an exception (a lost
            # race, a failure, a drain timeout's cancel): what was not recorded is redone on redelivery.
            await cancel_and_wait(embedding)
            await cancel_and_wait(writing)

    async def _write_part(
        self,
        tenant: str,
        batch_id: str,
        before: Checkpoint,
        after: Checkpoint,
        outputs: list[bytes],
        errors: list[bytes],
        progress: _Progress,
    ) -> tuple[dict[str, Any], bool]:
        """Write one part's files, then record its checkpoint; returns the record and whether a cancel was seen."""
        prefix = self.store.batch_prefix(tenant, batch_id)
        start, end = before.next_line, after.next_line
        for kind, rows in (("output", outputs), ("error", errors)):
            data = b"".join(row + b"\n" for row in rows)
            await asyncio.to_thread(self.store.put_object, part_key(prefix, start, end, kind), data)
        try:
            item = await asyncio.to_thread(self.store.save_checkpoint, tenant, batch_id, before, after)
        except ConditionFailed:
            current = await asyncio.to_thread(self.store.get, tenant, batch_id)
            if current is not None and current["status"] == "cancelling":
                logs.event("batch_cancel_seen", batch_id=batch_id, next_line=before.next_line)
                return current, True
            logs.event("checkpoint_conflict", batch_id=batch_id, next_line=before.next_line)
            raise Abandoned from None
        progress.log(after, end - start)
        return item, False

    async def _embed_lines(
        self, tenant: str, batch_id: str, first: int, chunk: list[tuple[bytes, int]]
    ) -> tuple[list[bytes], list[bytes]]:
        """Output lines and error lines for one part, each in input order."""
        settings = self.settings
        slots: list[tuple[bool, bytes] | None] = []
        pending: list[tuple[int, int, str, asyncio.Future, str, int]] = []
        for offset, (raw, _) in enumerate(chunk):
            line = first + offset
            custom_id: str | None = None
            try:
                custom_id, body = parse_line(raw)
                request = parse_embeddings_request(body, settings.max_inputs_per_request)
                texts = request["input"]
                if sum(map(len, texts)) <= _INLINE_TOKENIZE_CHARS:
                    token_ids = self.embedder.token_ids(texts)
                else:
                    token_ids = await asyncio.to_thread(self.embedder.token_ids, texts)
                check_input_lengths(token_ids, settings.max_input_tokens)
                tokens = sum(map(len, token_ids))
                if tokens > self.limits.tokens_per_minute:
                    raise ApiError(
                        400,
                        f"line needs {tokens} tokens, more than the per-minute batch token budget "
                        f"({self.limits.tokens_per_minute}); split it into smaller requests",
                        code="token_budget_exceeded",
                        param="input",
                    )
                while wait := self.limits.admit_tokens(tenant, tokens):
                    await asyncio.sleep(wait)
                while not self.batcher.has_room(len(token_ids)):
                    await asyncio.wait([entry[3] for entry in pending], return_when=asyncio.FIRST_COMPLETED)
                future = self.batcher.submit(token_ids)
            except LineError as error:
                slots.append((False, error_line(batch_id, line, custom_id, error.code, error.message)))
                continue
            except ApiError as error:
                slots.append((False, output_line(batch_id, line, custom_id or "", error.status, error.body())))
                continue
            pending.append((len(slots), line, custom_id, future, request["encoding_format"], tokens))
            slots.append(None)
        for slot, line, custom_id, future, encoding_format, tokens in pending:
            try:
                embeddings, _ = await future
            except Exception as exc:
                logs.event("embedding_failed", batch_id=batch_id, line=line, error=type(exc).__name__)
                failure = ApiError(500, "internal error while embedding", type="server_error", code="internal_error")
                slots[slot] = (False, output_line(batch_id, line, custom_id, 500, failure.body()))
                continue
            body = embeddings_response(embeddings, encoding_format, tokens)
            slots[slot] = (True, output_line(batch_id, line, custom_id, 200, body))
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for entry in slots:
            if entry is not None:
                (outputs if entry[0] else errors).append(entry[1])
        return outputs, errors

    async def _finish(self, item: dict[str, Any], current: str, final: str, **values: str) -> None:
        """Assemble the recorded parts into the output and error files, then record the final status."""
        tenant, batch_id = item["tenant"], item["id"]
        checkpoint = checkpoint_of(item)
        files: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for kind, count in (("output", checkpoint.completed), ("error", checkpoint.failed)):
            if not count:
                continue
            file_id = result_file_id(batch_id, kind)
            key = self.store.file_key(tenant, file_id)
            keys = part_keys(self.store, tenant, batch_id, checkpoint, kind)
            size = await asyncio.to_thread(self.store.concatenate, keys, key)
            record = {
                "tenant": tenant,
                "id": file_id,
                "kind": "file",
                "bytes": size,
                "created_at": int(time.time()),
                "filename": f"{batch_id}_{kind}.jsonl",
                "purpose": "batch_output",
            }
            await asyncio.to_thread(self.store.table.put_item, Item=record)
            files[f"{kind}_file_id"] = file_id
        try:
            await asyncio.to_thread(self.store.transition, tenant, batch_id, (current,), final, **files, **values)
        except ConditionFailed:
            now = await asyncio.to_thread(self.store.get, tenant, batch_id)
            if now is None or now["status"] not in TERMINAL_STATUSES:
                raise
        logs.event(
            "batch_finished",
            tenant=tenant,
            batch_id=batch_id,
            status=final,
            total=int(item["total"]),
            completed=checkpoint.completed,
            failed=checkpoint.failed,
        )


async def serve(settings: ConsumerSettings) -> int:
    loop = asyncio.get_running_loop()
    store = await asyncio.to_thread(BatchStore, settings.batch)
    embedder = await asyncio.to_thread(Embedder, settings.model_dir, settings.inference_threads)
    batcher = Batcher(
        embedder.embed_ids,
        DIMENSIONS,
        settings.max_batch_size,
        settings.max_batch_wait_ms,
        settings.max_queued_inputs,
    )
    batcher.start()
    consumer = Consumer(settings, store, embedder, batcher)

    def on_signal(number: int) -> None:
        if not consumer.stop.is_set():
            logs.event("draining", signal=number)
        consumer.stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    try:
        # Before the first receive, so no batch runs under the uncalibrated caps (a SIGTERM meanwhile
        # only stops the loop before it starts). With one inference thread ORT runs on the calling
        # thread, whose CPU time is then the model's cost alone.
        clock = time.thread_time if settings.inference_threads == 1 else time.perf_counter
        await calibrate_runs(batcher, embedder.embed_ids, settings.max_batch_size, clock)
        logs.event("consumer_ready", queue_url=settings.batch.queue_url, inference_threads=settings.inference_threads)
        await consumer.run()
    finally:
        await batcher.stop()
    logs.event("stopped")
    return 0


def main() -> int:
    try:
        settings = load_consumer_settings()
    except ConfigError as error:
        logs.event("config_error", error=str(error))
        print(f"worker.consumer: configuration error: {error}", file=sys.stderr)
        return 2
    logs.event(
        "starting",
        settings={name: str(value) if name == "model_dir" else value for name, value in vars(settings).items()}
        | {"batch": vars(settings.batch)},
    )
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
