"""`kiln bench`: its documented --json fields and their consistency on a
shared model (no timing asserts: a benchmark is not a test), the
multiply-accumulate count against one computed here from LiteRT's view of the
same file, the --profile tables against `kiln inspect --json`, the text
output, and its errors (missing or unreadable model, bad flags).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin

need_reference()
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

MODEL = os.path.join(models_dir(), "face_detection_short_range.tflite")
FIELDS = ["model", "kernels", "isa", "cpus", "threads", "warmup", "iters", "load_ms", "create_ms",
          "open_to_ready_ms", "first_invoke_ms", "latency_ms", "fps", "macs", "gmacs_per_s",
          "rss_before_load_bytes", "peak_rss_bytes", "arena_bytes", "scratch_bytes", "prepared_params_bytes"]

passed, failures = 0, []


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)


def kiln(*args, env=None):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True, env=env)


def close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-9)


def litert_macs(path):
    """MACs of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED from LiteRT's
    op and tensor details."""
    it = Interpreter(model_path=path)
    shapes = {t["index"]: list(t["shape"]) for t in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        out = math.prod(shapes[op["outputs"][0]])
        f = shapes[op["inputs"][1]]
        total += out * (f[1] * f[2] * f[3] if name == "CONV_2D" else f[1] * f[2] if name == "DEPTHWISE_CONV_2D" else f[1])
    return total


def check_json_run():
    r = kiln("bench", MODEL, "--threads", "1", "--warmup", "1", "--iters", "7", "--json")
    check(r.returncode == 0, f"bench --json exits 0 ({r.stderr.strip()})")
    if r.returncode != 0:
        return
    b = json.loads(r.stdout)
    check(all(k in b for k in FIELDS), f"all documented fields present (missing {[k for k in FIELDS if k not in b]})")
    check("profile" not in b, "no profile without --profile")
    check(b["model"] == MODEL and b["kernels"] == "optimized" and isinstance(b["isa"], str) and b["isa"],
          f"model, kernels, isa: {b['model']}, {b['kernels']}, {b['isa']}")
    check(b["cpus"] >= 1 and b["threads"] == 1 and b["warmup"] == 1 and b["iters"] == 7,
          f"cpus {b['cpus']}, threads {b['threads']}, warmup {b['warmup']}, iters {b['iters']}")
    check(b["load_ms"] > 0 and b["create_ms"] > 0 and close(b["open_to_ready_ms"], b["load_ms"] + b["create_ms"]),
          f"open_to_ready {b['open_to_ready_ms']:.3f} = load {b['load_ms']:.3f} + create {b['create_ms']:.3f}")
    lat = b["latency_ms"]
    check(set(lat) == {"min", "median", "p90", "max", "mean"}, "latency_ms has min, median, p90, max, mean")
    check(0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["max"] and lat["min"] <= lat["mean"] <= lat["max"],
          f"0 < min <= median <= p90 <= max, min <= mean <= max: {lat}")
    check(b["first_invoke_ms"] > 0, "first invoke timed")
    check(close(b["fps"], 1e3 / lat["median"]), f"fps {b['fps']:.1f} = 1000 / median")
    want = litert_macs(MODEL)
    check(b["macs"] == want, f"macs {b['macs']} equal LiteRT's shapes' count {want}")
    check(close(b["gmacs_per_s"], b["macs"] / (lat["median"] * 1e6)), "gmacs_per_s = macs / median")
    check(0 < b["rss_before_load_bytes"] < b["peak_rss_bytes"],
          f"RSS grows from {b['rss_before_load_bytes']} to peak {b['peak_rss_bytes']}")
    ins = json.loads(kiln("inspect", MODEL, "--json").stdout)
    check(b["arena_bytes"] > 0 and b["arena_bytes"] == ins["arena_bytes"]
          and b["prepared_params_bytes"] == ins["prepared_params_bytes"],
          f"arena {b['arena_bytes']} and prepared params equal kiln inspect's")
    check(b["peak_rss_bytes"] > b["arena_bytes"], "peak RSS exceeds the arena")


def check_profile():
    r = kiln("bench", MODEL, "--threads", "2", "--warmup", "0", "--iters", "3", "--json", "--profile")
    check(r.returncode == 0, f"bench --profile exits 0 ({r.stderr.strip()})")
    if r.returncode != 0:
        return
    b = json.loads(r.stdout)
    p = b.get("profile", {})
    ins = json.loads(kiln("inspect", MODEL, "--json").stdout)
    by_type = p.get("by_type", [])
    check(b["threads"] == 2 and b["warmup"] == 0 and b["iters"] == 3, "threads 2, warmup 0, iters 3")
    check({e["type"]: e["count"] for e in by_type} == ins["ops"],
          f"profile op types and counts equal kiln inspect's {ins['ops']}")
    check(all(e["ms"] >= 0 for e in by_type) and close(sum(e["share"] for e in by_type), 1.0, 1e-6),
          "type times are non-negative and shares sum to 1")
    check([e["ms"] for e in by_type] == sorted((e["ms"] for e in by_type), reverse=True), "types by time, slowest first")
    check(sum(e["macs"] for e in by_type) == b["macs"], "per-type MACs sum to the model's")
    top = p.get("top_ops", [])
    check(len(top) == min(10, ins["op_count"]), f"{len(top)} top ops")
    check([o["ms"] for o in top] == sorted((o["ms"] for o in top), reverse=True)
          and len({o["op"] for o in top}) == len(top), "top ops distinct, slowest first")
    conv = next((o for o in top if o["type"] == "CONV_2D"), None)
    check(conv is None or ("->" in conv["shape"] and "filter" in conv["shape"] and conv["macs"] > 0),
          f"a conv's shape and MACs: {conv}")
    total = sum(e["ms"] for e in by_type)
    check(total <= b["latency_ms"]["max"] * 1.05 + 0.05, f"profiled op time {total:.3f} ms within an invoke's")


def check_text_and_env():
    r = kiln("bench", MODEL, "--iters", "2", "--warmup", "0", "--profile")
    check(r.returncode == 0 and "open to ready:" in r.stdout and "median" in r.stdout and "slowest ops" in r.stdout,
          "text output with profile")
    r = kiln("bench", MODEL, "--iters", "1", "--warmup", "0", "--json", "--ref")
    check(r.returncode == 0 and json.loads(r.stdout)["kernels"] == "ref", "--ref reported")
    env = dict(os.environ, KILN_KERNELS="ref")
    r = kiln("bench", MODEL, "--iters", "1", "--warmup", "0", "--json", env=env)
    check(r.returncode == 0 and json.loads(r.stdout)["kernels"] == "ref", "KILN_KERNELS=ref reported")


def check_errors():
    r = kiln("bench", "--help")
    check(r.returncode == 0 and r.stdout.startswith("usage: kiln bench") and "--iters" in r.stdout, "--help")
    r = kiln("bench")
    check(r.returncode == 2 and "missing MODEL" in r.stderr, "no model: usage error")
    r = kiln("bench", "/nonexistent/missing.tflite")
    check(r.returncode == 1 and "missing.tflite" in r.stderr, f"missing file named: {r.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "bad.tflite")
        with open(bad, "wb") as f:
            f.write(b"not a flatbuffer at all")
        r = kiln("bench", bad)
        check(r.returncode == 1 and "bad.tflite" in r.stderr, f"unreadable model refused: {r.stderr.strip()}")
    for args, what in [(["--iters", "0"], "--iters 0"), (["--iters", "x"], "--iters x"),
                       (["--warmup", "-1"], "--warmup -1"), (["--threads", "0"], "--threads 0"),
                       (["--iters"], "--iters without a value"), (["--bogus"], "unknown flag"),
                       (["extra.tflite"], "a second model")]:
        r = kiln("bench", MODEL, *args)
        check(r.returncode == 2 and "kiln bench:" in r.stderr and r.stdout == "", f"{what}: usage error")


def main():
    if not os.path.exists(MODEL):
        print(f"FAIL: {MODEL} missing")
        sys.exit(1)
    check_errors()
    check_json_run()
    check_profile()
    check_text_and_env()
    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
