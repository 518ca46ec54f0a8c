#!/usr/bin/env bash
# The pull-request workflow's offline plan: `scripts/ci/offline_plan.sh STACK OUTPUT` runs
# `python -m gantry.plan STACK` (from .venv) against origin/main with the policy config the previews use,
# writes the Markdown to OUTPUT and to the job summary, and reports the policy verdict as the step output
# `policy` (pass | fail) instead of failing, so the comment is posted before the job fails on it.
# When no plan can be made (the plan's exit 2: a config `pulumi preview` would refuse, a broken stack
# file, a git error) OUTPUT says so with the plan's message, as do the job summary and an error
# annotation, `policy` is `error`, and the script exits 2: the comment and the artifact still have a file.
# Exit status: 0 planned (whatever the verdict), otherwise the plan's error status.
# Security stance: the plan needs no credentials and prints no input value (see gantry/plan.py); its
# message reaches the log only as one escaped annotation, so a crafted key cannot start a workflow command.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scripts/ci/offline_plan.sh STACK OUTPUT" >&2
  exit 2
fi
stack=$1
output=$2
python=${PYTHON:-.venv/bin/python}
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
status=0
"$python" -m gantry.plan "$stack" --against "${PLAN_AGAINST:-origin/main}" \
  --policy-config policy/committed-stacks.json --output "$output" >/dev/null 2>"$errors" || status=$?
case "$status" in
  0) verdict=pass ;;
  1) verdict=fail ;;
  *)
    verdict=error
    message=$(cat "$errors")
    {
      printf '## gantry offline plan: `%s`\n\nNo plan (exit %s): `pulumi preview` would stop here too.\n\n' "$stack" "$status"
      printf '~~~text\n%s\n~~~\n' "$message"
    } >"$output"
    ;;
esac
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$output" >>"$GITHUB_STEP_SUMMARY"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "policy=$verdict" >>"$GITHUB_OUTPUT"
fi
if [ "$verdict" = error ]; then
  if [ "${GITHUB_ACTIONS:-}" = true ]; then
    # Workflow-command data escapes %, CR and LF (actions/toolkit packages/core/src/command.ts
    # `escapeData`), so the whole multi-line message is one annotation and no line of it is a command.
    escaped=${message//'%'/'%25'}
    escaped=${escaped//$'\r'/'%0D'}
    escaped=${escaped//$'\n'/'%0A'}
    echo "::error title=offline plan of $stack::$escaped"
  else
    echo "$message" >&2
  fi
  exit "$status"
fi
echo "offline plan of $stack written to $output (policy: $verdict)"
