"""Eval gate: does a running embedding server still retrieve and embed like the fp32 model?

``python -m worker.eval --url URL`` sends every text of the golden dataset
(worker/golden.jsonl) to the server's OpenAI-compatible ``/v1/embeddings``
endpoint and checks two things: retrieval top-1 (each query must rank its
relevant passage above every distractor) and cosine agreement of each served
embedding with the fp32 torch reference embedding written at build time
(``references.npz``). CI runs it against a freshly started worker and the
deploy pipeline against a new task, so it needs only numpy and the standard
library. Exit status: 0 all thresholds met, 1 a threshold missed, 2 usage,
connection or protocol error. Security stance: the API key is sent only in the
Authorization header of requests to --url, is never printed, and should come
from $EVAL_API_KEY rather than argv, which other users can see in process lists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from worker.golden import GoldenCase, GoldenDataError, load_golden, reference_texts

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

# Retrying 429/503 lets the gate run against a live task whose tenant budget or
# queue is momentarily full, without letting a stuck server hang a pipeline.
_MAX_ATTEMPTS = 6
_MAX_RETRY_WAIT_S = 30.0


class EvalError(Exception):
    """A usage, connection or protocol problem: the gate could not be evaluated (exit 2)."""


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool


@dataclass
class Report:
    url: str
    model: str
    cases: int
    texts: int
    requests: int
    seconds: float
    top1_correct: int
    reference_top1_correct: int
    checks: list[Check]
    missed_cases: list[dict] = field(default_factory=list)
    lowest_cosine: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> str:
        data = asdict(self)
        data["passed"] = self.passed
        return json.dumps(data, indent=2)

    def to_text(self) -> str:
        lines = [
            f"Eval gate against {self.url} (model {self.model!r})",
            f"golden set: {self.cases} cases, {self.texts} texts, {self.requests} requests in {self.seconds:.2f} s",
            "",
            f"  {'check':<28}{'value':>10}   {'threshold':<12}result",
        ]
        for check in self.checks:
            verdict = "PASS" if check.passed else "FAIL"
            lines.append(f"  {check.name:<28}{check.value:>10.4f}   >= {check.threshold:<9g}{verdict}")
        lines.append("")
        lines.append(
            f"retrieval top-1: served {self.top1_correct}/{self.cases}, "
            f"fp32 references {self.reference_top1_correct}/{self.cases}"
        )
        for miss in self.missed_cases:
            lines.append(
                f"  missed {miss['id']}: positive {miss['positive_score']:.3f} "
                f"< best distractor {miss['best_distractor_score']:.3f}  ({miss['query']})"
            )
        lines.append("lowest cosine vs fp32:")
        for low in self.lowest_cosine:
            lines.append(f"  {low['cosine']:.4f}  {low['text']}")
        lines.append("")
        lines.append("RESULT: " + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)


def _number(value: str, kind: type):
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None


def _unit_interval(value: str) -> float:
    number = _number(value, float)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = _number(value, int)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _positive_float(value: str) -> float:
    number = _number(value, float)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker.eval",
        description=(
            "Check a running embedding server against the golden retrieval set and the "
            "fp32 reference embeddings. Exit 0 if every threshold is met, 1 if one is "
            "missed, 2 on usage, connection or protocol errors."
        ),
    )
    parser.add_argument(
        "--url",
        required=True,
        help="base URL of the server, e.g. http://127.0.0.1:8000; "
        "requests go to URL/v1/embeddings (a trailing /v1 is accepted too)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("EVAL_API_KEY"),
        help="bearer key of a tenant; defaults to $EVAL_API_KEY, which is preferable "
        "because command lines are visible to other processes",
    )
    parser.add_argument(
        "--references",
        type=Path,
        default=Path(os.environ["MODEL_DIR"]) / "references.npz" if os.environ.get("MODEL_DIR") else None,
        help="references.npz written by `python -m worker.build_model` (default: $MODEL_DIR/references.npz)",
    )
    parser.add_argument("--golden", type=Path, default=None, help="golden dataset (default: the packaged golden.jsonl)")
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="value of the request's `model` field, default %(default)s"
    )
    parser.add_argument(
        "--min-top1",
        type=_unit_interval,
        default=0.95,
        help="minimum share of cases whose positive passage ranks first. fp32 and the "
        "per-channel int8 worker rank all 67 cases right; 0.95 tolerates a few near-ties "
        "flipped by quantisation. It is the coarse, task-level check: even per-tensor int8 "
        "keeps 66/67, which only the cosine thresholds catch; default %(default)s",
    )
    parser.add_argument(
        "--min-cosine",
        type=_unit_interval,
        default=0.97,
        help="minimum cosine between any served embedding and its fp32 reference: the shipped "
        "int8 model (per-channel weights, calibrated and per-token activations) measures 0.990 on "
        "the golden texts, per-channel int8 with per-tensor dynamic activations 0.987, default "
        "per-tensor int8 0.93 (all on an AVX2 build host); default %(default)s",
    )
    parser.add_argument(
        "--mean-cosine",
        type=_unit_interval,
        default=0.985,
        help="minimum mean cosine to the fp32 references over all texts: catches a drift "
        "spread over every text that the minimum alone would let through (shipped int8: "
        "0.994, per-tensor int8: 0.966); default %(default)s",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        help="texts per request, default %(default)s; keep it within the server's limit on inputs per request",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="seconds to wait for each response, default %(default)s"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _endpoint(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise EvalError(f"--url must be an http(s) URL such as http://127.0.0.1:8000, got {url!r}")
    base = url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return base + "/v1/embeddings"


def _error_message(body: bytes) -> str:
    """The message of an OpenAI-shaped error body, or the start of the raw body."""
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace") or "(empty body)"


def _retry_delay(headers, attempt: int) -> float:
    try:
        delay = float(headers.get("Retry-After", ""))
    except ValueError:
        delay = 2.0**attempt * 0.5
    return min(max(delay, 0.0), _MAX_RETRY_WAIT_S)


def embed(endpoint: str, texts: list[str], model: str, api_key: str | None, timeout: float) -> np.ndarray:
    """POST one batch and return its embeddings in input order, shape (len(texts), dim)."""
    payload = json.dumps({"input": texts, "model": model, "encoding_format": "float"}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    attempt = 0
    while True:
        request = urllib.request.Request(endpoint, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
            break
        except urllib.error.HTTPError as exc:
            detail = _error_message(exc.read())
            attempt += 1
            if exc.code in (429, 503) and attempt < _MAX_ATTEMPTS:
                time.sleep(_retry_delay(exc.headers, attempt))
                continue
            if exc.code == 401:
                raise EvalError(
                    f"{endpoint} rejected the API key (401: {detail}); "
                    "pass a tenant key with --api-key or $EVAL_API_KEY"
                ) from None
            raise EvalError(f"{endpoint} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EvalError(f"cannot reach {endpoint}: {reason}") from None

    try:
        data = json.loads(body)["data"]
        ordered = sorted(data, key=lambda item: item["index"])
        vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{endpoint} returned a body that is not an embeddings response: {exc!r}") from None
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise EvalError(
            f"{endpoint} returned {len(data)} embeddings of shape {vectors.shape[1:]} for {len(texts)} inputs"
        )
    return vectors


def load_references(path: Path | None, texts: list[str]) -> np.ndarray:
    """Reference embeddings for ``texts`` in that order, from references.npz."""
    if path is None:
        raise EvalError("no reference embeddings: pass --references PATH or set MODEL_DIR")
    try:
        with np.load(path, allow_pickle=False) as npz:
            ref_texts = [str(text) for text in npz["texts"]]
            ref_vectors = np.asarray(npz["embeddings"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise EvalError(f"cannot read reference embeddings from {path}: {exc}") from None
    if ref_vectors.ndim != 2 or len(ref_vectors) != len(ref_texts):
        raise EvalError(f"{path}: 'embeddings' shape {ref_vectors.shape} does not match {len(ref_texts)} texts")
    index = {text: row for row, text in enumerate(ref_texts)}
    missing = [text for text in texts if text not in index]
    if missing:
        raise EvalError(
            f"{path} lacks {len(missing)} golden text(s), e.g. {missing[0][:60]!r}: "
            "the references were built from another golden set; rebuild the model"
        )
    return ref_vectors[[index[text] for text in texts]]


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _top1(cases: list[GoldenCase], row: dict[str, int], unit: np.ndarray) -> tuple[int, list[dict]]:
    """Cases whose positive strictly outscores every distractor, and the misses."""
    correct, missed = 0, []
    for case in cases:
        query = unit[row[case.query]]
        scores = unit[[row[text] for text in case.candidates]] @ query
        best_distractor = float(scores[1:].max())
        if scores[0] > best_distractor:
            correct += 1
        else:
            missed.append(
                {
                    "id": case.id,
                    "query": case.query,
                    "positive_score": float(scores[0]),
                    "best_distractor_score": best_distractor,
                }
            )
    return correct, missed


def evaluate(args: argparse.Namespace) -> Report:
    endpoint = _endpoint(args.url)
    try:
        cases = load_golden(args.golden)
    except GoldenDataError as exc:
        raise EvalError(str(exc)) from None
    texts = reference_texts(cases)
    references = load_references(args.references, texts)

    started = time.perf_counter()
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    served = np.concatenate([embed(endpoint, batch, args.model, args.api_key, args.timeout) for batch in batches])
    seconds = time.perf_counter() - started

    if served.shape[1] != references.shape[1]:
        raise EvalError(
            f"served embeddings have {served.shape[1]} dimensions, the references {references.shape[1]}: "
            "the server runs a different model"
        )
    # A NaN or infinite embedding is a model fault, not a protocol error: zeroing it
    # makes that text score cosine 0 and lose its ranking, so the gate fails with exit 1.
    served = np.nan_to_num(served, nan=0.0, posinf=0.0, neginf=0.0)
    unit = _normalize(served)
    cosines = np.einsum("ij,ij->i", unit, _normalize(references))

    row = {text: i for i, text in enumerate(texts)}
    top1_correct, missed = _top1(cases, row, unit)
    reference_correct, _ = _top1(cases, row, _normalize(references))
    top1 = top1_correct / len(cases)
    min_cos, mean_cos = float(cosines.min()), float(cosines.mean())
    checks = [
        Check("retrieval top-1", top1, args.min_top1, top1 >= args.min_top1),
        Check("cosine vs fp32 (min)", min_cos, args.min_cosine, min_cos >= args.min_cosine),
        Check("cosine vs fp32 (mean)", mean_cos, args.mean_cosine, mean_cos >= args.mean_cosine),
    ]
    lowest = [
        {"cosine": float(cosines[i]), "text": texts[i] if len(texts[i]) <= 70 else texts[i][:67] + "..."}
        for i in np.argsort(cosines, kind="stable")[:3]
    ]
    return Report(
        url=args.url,
        model=args.model,
        cases=len(cases),
        texts=len(texts),
        requests=len(batches),
        seconds=seconds,
        top1_correct=top1_correct,
        reference_top1_correct=reference_correct,
        checks=checks,
        missed_cases=missed,
        lowest_cosine=lowest,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args)
    except EvalError as exc:
        print(f"eval: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(report.to_json() if args.json else report.to_text())
    return EXIT_PASS if report.passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
