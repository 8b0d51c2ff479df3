#!/usr/bin/env bash
# A/A of --perf-compare: cnn/ort-opt and cnn/fp32 are one graph at call time (the profiles match
# node for node, by name), so every verdict but "same"/"undecided" is a false one. Each run is a
# fresh pytest process; its report.json row is appended to runs.jsonl as it finishes.
set -euo pipefail
out="$(dirname "$0")"
for i in $(seq -w 1 "${RUNS:-20}"); do
  [ -f "$out/report-$i.json" ] && continue  # resumable
  python -m pytest perf/test_latency.py::test_variant_pair -q -p no:cacheprovider \
    --perf-providers cpu --perf-compare cnn/fp32,cnn/ort-opt --perf-max-time 20 \
    --perf-explain off --perf-report "/tmp/pairs-report-$i" > "/tmp/pairs-$i.log" 2>&1
  cp "/tmp/pairs-report-$i/report.json" "$out/report-$i.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['against'][0]; c=r['comparison']; print(json.dumps({'run': sys.argv[2], 'outcome': r['outcome'], 'ratio': c['ratio'], 'interval': [c['low'], c['high']], 'rounds': c['rounds'], 'other_cores_busy': (r.get('contention') or {}).get('other_cores_busy')}))" "$out/report-$i.json" "$i" >> "$out/runs.jsonl"
done
