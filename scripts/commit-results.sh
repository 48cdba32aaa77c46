#!/usr/bin/env bash
# Commit the finished runs of entropic reproduce's suites (metrics.jsonl and heldout.json of every run
# that has its held-out scores), so that a clone can rewrite the reports or finish the missing runs.
#   bash scripts/commit-results.sh "message"
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
files=()
for heldout in runs/reproduction/*/*/heldout.json runs/gains-matrix/*/*/heldout.json; do
  [ -f "$(dirname "$heldout")/metrics.jsonl" ] && files+=("$heldout" "$(dirname "$heldout")/metrics.jsonl")
done
[ ${#files[@]} -gt 0 ] || { echo "no finished runs"; exit 0; }
git add -- "${files[@]}"
git diff --cached --quiet -- "${files[@]}" && { echo "nothing new"; exit 0; }
git commit -q -m "${1:-results: finished runs of entropic reproduce}" -- "${files[@]}" && git log --oneline -1
