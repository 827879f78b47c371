#!/usr/bin/env bash
# Benchmarks kiln against LiteRT (XNNPACK) and ONNX Runtime on this machine
# and writes bench/RESULTS.md. See bench/README.md.
#
# Usage: bench/run.sh [--warmup W] [--iters I] [--rounds R] [--threads 1,2]
#
# Once: creates bench/.venv from bench/requirements.txt (again when that file
# changes) and makes the models in bench/models/ (the int8 MobileNet V2 and
# SSD with TensorFlow's converter, ONNX conversions of all three with
# tf2onnx). Every run: builds kiln (Release) into bench/build/ if its sources
# changed, builds bench/roofline.c, then measures. Needs kiln's build
# dependencies (scripts/setup) and python3 with venv; the shared float SSD is
# read from $KILN_MODELS (default ../shared/models).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
models_dir=${KILN_MODELS:-$root/../shared/models}
float_ssd=$models_dir/ssd_mobilenet_v2_oidv4_fp16.tflite
# shellcheck source=bench/venv.sh
source "$bench/venv.sh"

if [[ ! -f $float_ssd ]]; then
  echo "bench: $float_ssd: missing (set KILN_MODELS to the shared models folder)" >&2
  exit 1
fi

bench_venv "$bench"
bench_build_kiln "$bench"
build=$bench/build
rm -f "$build/roofline"
if [[ $(uname -m) == x86_64 ]]; then  # the roofline measures x86 instructions only
  cc -O2 -pthread "$bench/roofline.c" -o "$build/roofline"
fi

mkdir -p "$bench/models"
"$py" "$bench/models.py" "$bench/models"
for pair in "mobilenet_v2_int8:$bench/models/mobilenet_v2_int8.tflite" \
            "ssd_mobilenet_v2_int8:$bench/models/ssd_mobilenet_v2_int8.tflite" \
            "ssd_mobilenet_v2_float:$float_ssd"; do
  name=${pair%%:*}
  onnx=$bench/models/$name.onnx
  if [[ ! -f $onnx && ! -f $onnx.err ]]; then
    echo "bench: converting $name to ONNX" >&2
    "$py" "$bench/bench.py" onnx "${pair#*:}" "$onnx"
  fi
done

"$py" "$bench/bench.py" report --kiln "$build/kiln" --roofline "$build/roofline" \
  --models "$bench/models" --float-ssd "$float_ssd" --out "$bench/RESULTS.md" "$@"
