#!/usr/bin/env bash
# The eval gate against a freshly built image: `scripts/ci/eval_container.sh IMAGE` runs IMAGE as the
# worker (read-only root filesystem, /tmp as tmpfs, as ECS runs it) with a one-off tenant key, waits for
# /health, then runs `python -m worker.eval` inside the same container, so the gate uses the
# references.npz built into that very image. Exit status: the eval's (0 pass, 1 threshold missed, 2 error).
# Security stance: the key is generated per run, masked in the GitHub log, and passed by environment
# (never in argv); the port ($EVAL_PORT, default 8000) is published on 127.0.0.1 only; the container
# is removed on exit.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: scripts/ci/eval_container.sh IMAGE" >&2
  exit 2
fi
image=$1
name="gantry-eval-$$"
port=${EVAL_PORT:-8000}
API_KEYS_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
echo "::add-mask::$API_KEYS_KEY"
API_KEYS="{\"gantry-eval\": \"$API_KEYS_KEY\"}"
EVAL_API_KEY=$API_KEYS_KEY
export API_KEYS EVAL_API_KEY

trap 'docker rm --force "$name" >/dev/null 2>&1 || true' EXIT
docker run --detach --name "$name" --read-only --tmpfs /tmp --env API_KEYS \
  --publish "127.0.0.1:$port:8000" "$image" >/dev/null
if ! SMOKE_TIMEOUT_SECONDS="${EVAL_START_TIMEOUT_SECONDS:-120}" SMOKE_INTERVAL_SECONDS=2 \
  "$(dirname "$0")/smoke.sh" "http://127.0.0.1:$port"; then
  docker logs "$name" >&2 || true
  exit 1
fi
docker exec --env EVAL_API_KEY "$name" python -m worker.eval --url http://127.0.0.1:8000
