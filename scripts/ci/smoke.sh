#!/usr/bin/env bash
# Smoke check of a deployed (or local) worker: `scripts/ci/smoke.sh URL [PATH]` polls URL+PATH (default
# /health) until it answers 2xx, for up to SMOKE_TIMEOUT_SECONDS (default 300: a rolling deploy's new task
# can take a few minutes to pass its health checks). Exit 0 healthy, 1 not healthy in time, 2 usage.
# Security stance: sends no credentials and prints only the status codes it saw.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: scripts/ci/smoke.sh URL [PATH]" >&2
  exit 2
fi
url="${1%/}${2:-/health}"
case "$url" in
  http://* | https://*) ;;
  *) echo "smoke: $1 is not an http(s) URL" >&2; exit 2 ;;
esac
deadline=$((SECONDS + ${SMOKE_TIMEOUT_SECONDS:-300}))
while :; do
  status=$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 "$url" || true)
  case "$status" in
    2??) echo "smoke: $url answered $status"; exit 0 ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "smoke: $url not healthy in time (last status ${status:-none})" >&2
    exit 1
  fi
  echo "smoke: $url answered ${status:-nothing}, retrying"
  sleep "${SMOKE_INTERVAL_SECONDS:-5}"
done
