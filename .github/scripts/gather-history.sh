#!/usr/bin/env bash
# Gathers this workflow run's run records (artifacts downloaded under ./artifacts) onto the
# perf-history branch, in a scratch repository ./perf-history-branch (created as an orphan the
# first time). The branch only ever gains new record files with unique names, so a push raced
# by another job is retried after a rebase that cannot conflict. The token (GITHUB_TOKEN) is
# passed per git command, never stored in a config file. Used by ci.yml and gpu-perf.yml.
set -euo pipefail
auth="AUTHORIZATION: basic $(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 -w0)"
remote() { git -C perf-history-branch -c "http.extraheader=$auth" "$@"; }
git init -q perf-history-branch
git -C perf-history-branch remote add origin "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY"
found=0
remote ls-remote --exit-code --heads origin perf-history > /dev/null || found=$?
if [ "$found" -eq 0 ]; then
  remote fetch -q --depth=1 origin perf-history
  git -C perf-history-branch checkout -q -b perf-history FETCH_HEAD
elif [ "$found" -eq 2 ]; then  # no such branch yet
  git -C perf-history-branch checkout -q --orphan perf-history
else
  exit "$found"
fi
shopt -s nullglob
stores=(artifacts/*/perf-history)
if [ "${#stores[@]}" -eq 0 ]; then
  echo "No run records in this run's artifacts." >> "$GITHUB_STEP_SUMMARY"
  exit 0
fi
python -m perf.history gather "${stores[@]}" --into perf-history-branch
# Past 500 loose records, fold them into packs (lossless; a one-benchmark query then reads no
# JSON). History jobs share one concurrency group, so no other job compacts meanwhile.
if [ "$(find perf-history-branch -path '*/.git' -prune -o -name '*.json' -print | wc -l)" -gt 500 ]; then
  python -m perf.history compact perf-history-branch
fi
git -C perf-history-branch add -A
if git -C perf-history-branch diff --cached --quiet; then
  exit 0
fi
git -C perf-history-branch -c user.name="github-actions[bot]" \
  -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
  commit -q -m "Run records of $GITHUB_SHA (run $GITHUB_RUN_ID)"
for attempt in 1 2 3 4 5; do
  if remote push -q origin HEAD:perf-history; then
    exit 0
  fi
  sleep "$((attempt * 5))"
  remote pull -q --rebase origin perf-history  # new files only: never conflicts
done
echo "::error::could not push the run records to perf-history after 5 tries"
exit 1
