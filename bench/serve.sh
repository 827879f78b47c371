#!/usr/bin/env bash
# kiln serve under load on loopback, measured with wrk; writes bench/SERVE.md.
#
# Usage: bench/serve.sh [--kiln PATH] [--requests N] [--rounds R] [--connections C]
#
#   --kiln PATH      the kiln binary (default: bench/build/kiln, built as bench/run.sh does)
#   --requests N     the long run makes at least N :detect requests (default 10000)
#   --rounds R       rounds of the throughput comparison (default 3; the best round counts,
#                    so a burst of other work on the machine spoils one round, not the result)
#   --connections C  wrk connections of the throughput runs (default 4)
#
# What it measures, on the int8 SSD that `kiln quantize` makes of the shared
# float SSD (bench/models/quant/ssd_int8.tflite, from bench/quant.sh or made
# here with scripts/fetch-photos' calibration photos) and a real JPEG (the
# shared astronaut re-encoded, 512x512; and the same photo at 300x300, the
# model's input size, which needs no resize):
#   1. `kiln bench --threads 2` (invoke only) against POST /v1/models/ssd:detect
#      throughput at --threads 2, as 2 interpreters x 1 thread (the default)
#      and 1 interpreter x 2 threads, in interleaved rounds;
#   2. a long run of at least --requests requests: throughput, p50/p99 latency,
#      errors (wrk's and the server's /metrics);
#   3. 200 connections against the default queue (32): 503s with Retry-After
#      instead of collapse, the 200s' rate, the server's peak memory, and the
#      server still healthy afterwards.
# A benchmark, not a test: nothing here asserts a speed.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
models_dir=${KILN_MODELS:-$root/../shared/models}
photos=${KILN_PHOTOS:-${TMPDIR:-/tmp}/kiln-photos}
float_ssd=$models_dir/ssd_mobilenet_v2_oidv4_fp16.tflite
labels=$models_dir/oidv4_labels.txt
photo=$models_dir/../images/astronaut.png
model=$bench/models/quant/ssd_int8.tflite
kiln="" requests=10000 rounds=3 conns=4
while (($#)); do
  case $1 in
    --kiln) kiln=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    *) echo "usage: bench/serve.sh [--kiln PATH] [--requests N] [--rounds R] [--connections C]" >&2; exit 2 ;;
  esac
done

for tool in wrk ffmpeg jq curl; do
  if ! command -v $tool >/dev/null; then
    echo "bench: installing $tool" >&2
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get install -y -qq $tool >/dev/null
  fi
done
kiln_kind="kiln from --kiln, $(basename "$(dirname "$kiln")")"
if [[ -z $kiln ]]; then
  # shellcheck source=bench/venv.sh
  source "$bench/venv.sh"
  bench_build_kiln "$bench"
  kiln_kind="Release build in bench/build"
fi
if [[ ! -f $model ]]; then
  echo "bench: making $model (kiln quantize of the shared SSD)" >&2
  "$root/scripts/fetch-photos" "$photos"
  mkdir -p "$(dirname "$model")"
  "$kiln" quantize "$float_ssd" --calib "$photos/calib" --calib-count 100 --out "$model" >&2
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ffmpeg -loglevel error -y -i "$photo" -q:v 2 "$work/astronaut.jpg"
ffmpeg -loglevel error -y -i "$photo" -vf scale=300:300 -q:v 2 "$work/astronaut300.jpg"
cat > "$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/jpeg"
local f = assert(io.open(os.getenv("KILN_BENCH_JPEG"), "rb"))
wrk.body = f:read("*a")
f:close()
EOF
found=$("$kiln" detect "$model" "$work/astronaut.jpg" --labels "$labels" --json | jq -r '[.detections[].label] | join(", ")')
echo "bench: kiln detect on the JPEG finds: $found" >&2

# start_server ARGS...: starts kiln serve on a free port; sets $server_pid, $url.
start_server() {
  rm -f "$work/serve.out"
  "$kiln" serve --model "ssd=$model,labels=$labels" --port 0 "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q listening "$work/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  local port
  port=$(grep -o '[0-9]*$' "$work/serve.out")
  url=http://127.0.0.1:$port
}
stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [[ $rc -eq 0 ]] || { echo "bench: kiln serve exited $rc: $(tail -3 "$work/serve.err")" >&2; exit 1; }
}
cpu_s() { # user + system CPU seconds of process $1 so far
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"
}
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
metric() { # metric NAME_WITH_LABELS: its value in the current /metrics (0 if absent)
  curl -s "$url/metrics" | awk -v k="$1" '$1 == k {v = $2} END {print v + 0}'
}
# wrk_run JPEG SECONDS CONNECTIONS THREADS OUT: wrk with latency percentiles.
wrk_run() {
  KILN_BENCH_JPEG=$1 wrk -t"$4" -c"$3" -d"$2"s --timeout 10s --latency -s "$work/post.lua" \
    "$url/v1/models/ssd:detect" >"$5"
}
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
total() { awk '/requests in/ {print $1}' "$1"; }
pct() { awk -v p="$2%" '$1 == p {print $2}' "$1"; }
errors() { # wrk's non-2xx responses plus socket errors
  awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$1"
}
best() { sort -g | tail -1; }

# ---- 1. kiln bench against :detect, interleaved rounds ----
declare -a bench_fps=() bench_cpu=() bench1_fps=() serve21=() serve12=() serve21_300=() serve12_300=()
for r in $(seq "$rounds"); do
  echo "bench: round $r/$rounds" >&2
  /usr/bin/time -f "%U %S" -o "$work/time.txt" "$kiln" bench "$model" --threads 2 --warmup 20 --iters 300 \
    --json >"$work/bench.json"
  bench_fps+=("$(jq .fps "$work/bench.json")")
  bench_cpu+=("$(awk '{printf "%.2f", 1000 * ($1 + $2) / 321}' "$work/time.txt")")
  bench1_fps+=("$("$kiln" bench "$model" --threads 1 --warmup 20 --iters 300 --json | jq .fps)")
  for cfg in 21 12; do
    start_server --threads 2 --interpreters "${cfg:0:1}"
    KILN_BENCH_JPEG=$work/astronaut.jpg wrk -t1 -c"$conns" -d2s -s "$work/post.lua" "$url/v1/models/ssd:detect" >/dev/null
    wrk_run "$work/astronaut.jpg" 10 "$conns" 1 "$work/w.txt"
    wrk_run "$work/astronaut300.jpg" 10 "$conns" 1 "$work/w300.txt"
    stop_server
    eval "serve$cfg+=(\"$(rps "$work/w.txt")\")"
    eval "serve${cfg}_300+=(\"$(rps "$work/w300.txt")\")"
  done
done
fps=$(printf '%s\n' "${bench_fps[@]}" | best)
fps1=$(printf '%s\n' "${bench1_fps[@]}" | best)
s21=$(printf '%s\n' "${serve21[@]}" | best)
s12=$(printf '%s\n' "${serve12[@]}" | best)
s21_300=$(printf '%s\n' "${serve21_300[@]}" | best)
s12_300=$(printf '%s\n' "${serve12_300[@]}" | best)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f%%", 100 * a / b}'; }

# ---- 2. the long run: at least $requests requests, zero errors ----
slowest=$(printf '%s\n' "${serve21[@]}" | sort -g | head -1)
seconds=$(awk -v n="$requests" -v r="$slowest" 'BEGIN {s = int(1.5 * n / r) + 1; print s < 30 ? 30 : s}')
echo "bench: long run, ${seconds}s" >&2
start_server --threads 2
before_ok=$(metric 'kiln_http_requests_total{code="200"}')
before_cpu=$(cpu_s "$server_pid")
wrk_run "$work/astronaut.jpg" "$seconds" "$conns" 1 "$work/long.txt"
after_cpu=$(cpu_s "$server_pid")
after_ok=$(metric 'kiln_http_requests_total{code="200"}')
long_errors_server=$(metric 'kiln_inference_errors_total{model="ssd",endpoint="detect"}')
long_rss=$(peak_rss_mb)
stop_server
long_ok=$((${after_ok%.*} - ${before_ok%.*} - 1))
long_cpu=$(awk -v a="$before_cpu" -v b="$after_cpu" -v n="$long_ok" 'BEGIN {printf "%.2f", 1000 * (b - a) / n}')
bench_cpu_best=$(printf '%s\n' "${bench_cpu[@]}" | sort -g | head -1)

# ---- 3. overload: 200 connections against the default queue ----
echo "bench: 200 connections" >&2
start_server --threads 2
wrk_run "$work/astronaut.jpg" 15 200 2 "$work/over.txt"
over_ok=$(metric 'kiln_http_requests_total{code="200"}')
over_503=$(metric 'kiln_http_requests_total{code="503"}')
over_health=$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")
over_rss=$(peak_rss_mb)
stop_server
over_socket=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$work/over.txt")

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
load=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "# kiln serve under load"
  echo
  echo "\`bench/serve.sh --rounds $rounds --requests $requests --connections $conns\` ($kiln_kind) on $(date -u +%Y-%m-%d), commit $commit,"
  echo "$cpu, $(nproc) cores; load average at the end $load (anything else running on a"
  echo "2-core machine shows up here). Model: \`bench/models/quant/ssd_int8.tflite\` (kiln's int8"
  echo "quantization of the shared SSD MobileNet V2; \`kiln detect\` finds: $found). Payload: the"
  echo "shared astronaut as a 512x512 JPEG ($(stat -c %s "$work/astronaut.jpg") bytes) and at 300x300, the model's input"
  echo "size ($(stat -c %s "$work/astronaut300.jpg") bytes). Client: wrk on the same machine, loopback, $conns connections."
  echo
  echo "## Throughput: :detect against kiln bench (best of $rounds interleaved rounds)"
  echo
  echo "| what | inferences/s | vs kiln bench |"
  echo "|---|---:|---:|"
  echo "| \`kiln bench --threads 2\` (invoke only, at the median) | $fps | 100% |"
  echo "| 2 x \`kiln bench --threads 1\` (two 1-thread interpreters' invoke-only ceiling) | $(awk -v f="$fps1" 'BEGIN {printf "%.1f", 2 * f}') | $(ratio "$(awk -v f="$fps1" 'BEGIN {print 2 * f}')" "$fps") |"
  echo "| :detect 512x512 JPEG, 2 interpreters x 1 thread (default) | $s21 | $(ratio "$s21" "$fps") |"
  echo "| :detect 512x512 JPEG, 1 interpreter x 2 threads | $s12 | $(ratio "$s12" "$fps") |"
  echo "| :detect 300x300 JPEG, 2 interpreters x 1 thread (default) | $s21_300 | $(ratio "$s21_300" "$fps") |"
  echo "| :detect 300x300 JPEG, 1 interpreter x 2 threads | $s12_300 | $(ratio "$s12_300" "$fps") |"
  echo
  echo "Every :detect request also decodes the JPEG, resizes and normalizes it into the input,"
  echo "runs NMS and writes JSON on the same two cores, which \`kiln bench\` does not; the"
  echo "300x300 rows leave out most of the image work (see the per-request \`timing_ms\`)."
  echo
  echo "CPU time per inference, which depends much less on what else the machine runs:"
  echo "\`kiln bench --threads 2\` $bench_cpu_best ms (process CPU over its 321 invokes, load included;"
  echo "best round), \`kiln serve\` $long_cpu ms per :detect request of the long run below (server"
  echo "process CPU: HTTP, JPEG decode, resize, invoke, NMS, JSON)."
  echo
  echo "Rounds (kiln bench 2 threads / 1 thread / 2x1 / 1x2 / 2x1 300 / 1x2 300):"
  for i in "${!bench_fps[@]}"; do
    echo "- ${bench_fps[$i]} / ${bench1_fps[$i]} / ${serve21[$i]} / ${serve12[$i]} / ${serve21_300[$i]} / ${serve12_300[$i]}"
  done
  echo
  echo "## Long run"
  echo
  echo "\`wrk -t1 -c$conns -d${seconds}s --latency\` on :detect (512x512 JPEG), \`kiln serve --threads 2\`:"
  echo
  echo "| requests | inferences/s | p50 | p99 | wrk errors | server 200s | server errors | peak RSS |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
  echo "| $(total "$work/long.txt") | $(rps "$work/long.txt") | $(pct "$work/long.txt" 50) | $(pct "$work/long.txt" 99) | $(errors "$work/long.txt") | $long_ok | ${long_errors_server%.*} | $long_rss MB |"
  echo
  echo "## 200 connections"
  echo
  echo "\`wrk -t2 -c200 -d15s\` against \`kiln serve --threads 2\` (default queue 32 per model,"
  echo "so at most 34 requests admitted; the others get 503 with Retry-After, their body read and"
  echo "dropped). wrk's two threads, sending a new request as soon as a 503 comes back, compete for"
  echo "the same two cores, so the 200s' rate is lower than in the long run:"
  echo
  echo "| responses | 200 | 503 | 200s/s | socket errors | p50 | p99 | peak RSS | ready after |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  echo "| $(total "$work/over.txt") | ${over_ok%.*} | ${over_503%.*} | $(awk -v n="${over_ok%.*}" 'BEGIN {printf "%.1f", n / 15}') | ${over_socket:-0} | $(pct "$work/over.txt" 50) | $(pct "$work/over.txt" 99) | $over_rss MB | $over_health |"
  echo
  echo "(p50/p99 here mix the quick 503s with the 200s.)"
} >"$bench/SERVE.md"
echo "bench: wrote $bench/SERVE.md" >&2
cat "$bench/SERVE.md"
