#!/usr/bin/env bash
# Parity of every CPU variant on onnxruntime's own AVX2 kernels (QEMU user mode, -cpu Haswell),
# one JSON per group, skipped when present: rerun to resume. Needs qemu-x86_64 >= 7.2.
# An emulated call takes minutes (hours in all); float-heavy graphs are the slowest.
set -u
cd "$(dirname "$0")/../../.."
out=baselines/examples/parity-on-avx2
run() {  # name, variants...
    local name=$1; shift
    [ -s "$out/$name.json" ] && return
    python -m export parity --cpu avx2 --json "$out/$name.json.part" "$@" \
        && mv "$out/$name.json.part" "$out/$name.json"
}
run w2v2-base-int8 w2v2-base/int8 w2v2-base/int8-conv w2v2-base/int8-full
run int8-full-smaller distilhubert/int8-full w2v2-small/int8-full
run cnn-all cnn/int8-full cnn/int8 cnn/int8-conv cnn/fp32 cnn/ort-opt
run distilhubert-int8 distilhubert/int8 distilhubert/int8-conv
run w2v2-small-int8 w2v2-small/int8 w2v2-small/int8-conv
python "$out/old_recipes.py"
