#!/usr/bin/env bash
# The eval gate against a deployed stack: `scripts/ci/eval_deployed.sh URL IMAGE_REF` reads the eval
# tenant's key from Secrets Manager ($EVAL_KEY_SECRET_ARN, tenant $EVAL_TENANT, default gantry-eval) with
# the job's deploy-role credentials, pulls IMAGE_REF (repository@digest, the image the stack runs) from
# ECR and runs its `python -m worker.eval --url URL`, so the references match the model being served.
# Exit status: the eval's (0 pass, 1 threshold missed, 2 error).
# Security stance: the key is masked before anything can print it and reaches the container by
# environment, never argv; the ECR password (scripts/ci/ecr_password.py) goes to `docker login` on stdin.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scripts/ci/eval_deployed.sh URL IMAGE_REF" >&2
  exit 2
fi
url=$1
image=$2
: "${EVAL_KEY_SECRET_ARN:?set EVAL_KEY_SECRET_ARN: the secret holding the API_KEYS JSON}"
case "$image" in
  *.dkr.ecr.*.amazonaws.com/*@sha256:*) ;;
  *) echo "eval_deployed: $image is not an ECR image pinned by digest (REGISTRY/REPO@sha256:...)" >&2; exit 2 ;;
esac

EVAL_API_KEY=$(python3 "$(dirname "$0")/eval_key.py" --secret-id "$EVAL_KEY_SECRET_ARN" --tenant "${EVAL_TENANT:-gantry-eval}")
echo "::add-mask::$EVAL_API_KEY"
export EVAL_API_KEY

registry=${image%%/*}
python3 "$(dirname "$0")/ecr_password.py" | docker login --username AWS --password-stdin "$registry" >/dev/null
docker run --rm --read-only --tmpfs /tmp --env EVAL_API_KEY "$image" python -m worker.eval --url "$url"
