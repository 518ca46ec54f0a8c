"""gantry's sample inference worker: all-MiniLM-L6-v2 embeddings behind an OpenAI-compatible API.

`python -m worker` serves `POST /v1/embeddings`, `GET /v1/models` and `GET /health` with dynamic
batching, per-tenant keys and limits, JSON request logs, CloudWatch EMF metrics and a graceful
drain on SIGTERM. `python -m worker.build_model` makes the model directory it serves. This package
file stays import-free so that `python -m worker.healthcheck` starts in milliseconds.
"""
