#!/usr/bin/env bash
# The pull-request workflow's offline plan: `scripts/ci/offline_plan.sh STACK OUTPUT` runs
# `python -m gantry.plan STACK` (from .venv) against origin/main with the policy config the previews use,
# writes the Markdown to OUTPUT and to the job summary, and reports the policy verdict as the step output
# `policy` (pass | fail) instead of failing, so the comment is posted before the job fails on it.
# Exit status: 0 planned (whatever the verdict), otherwise the plan's error status.
# Security stance: the plan needs no credentials and prints no input value (see gantry/plan.py).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scripts/ci/offline_plan.sh STACK OUTPUT" >&2
  exit 2
fi
stack=$1
output=$2
python=${PYTHON:-.venv/bin/python}
status=0
"$python" -m gantry.plan "$stack" --against "${PLAN_AGAINST:-origin/main}" \
  --policy-config policy/committed-stacks.json --output "$output" >/dev/null || status=$?
case "$status" in
  0) verdict=pass ;;
  1) verdict=fail ;;
  *) exit "$status" ;;
esac
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$output" >>"$GITHUB_STEP_SUMMARY"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "policy=$verdict" >>"$GITHUB_OUTPUT"
fi
echo "offline plan of $stack written to $output (policy: $verdict)"
