"""kiln's benchmark driver (bench/run.sh calls it; see bench/README.md).

  python bench/bench.py report --kiln BIN --roofline BIN --models DIR
                               --float-ssd FILE --out RESULTS.md
                               [--threads 1,2] [--warmup W] [--iters I] [--rounds R]
  python bench/bench.py litert MODEL THREADS WARMUP ITERS   (one measurement)
  python bench/bench.py ort MODEL.onnx THREADS WARMUP ITERS (one measurement)
  python bench/bench.py onnx MODEL.tflite OUT.onnx          (tf2onnx, once)

Every measurement runs in its own process, so its peak RSS (VmHWM of
/proc/self/status, else getrusage's ru_maxrss) is its own: `kiln bench --json` for kiln, this file's `litert`
and `ort` workers for the others, which print the same fields as kiln bench
(open_to_ready_ms, first_invoke_ms, latency_ms {min, median, p90, max,
mean}, rss_before_load_bytes, peak_rss_bytes). Statistics use the same
definitions as kiln bench: the median of an even count averages the middle
two, p90 is the nearest-rank percentile. A benchmark, not a test.
"""
import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

INT8_MODELS = ("mobilenet_v2_int8", "ssd_mobilenet_v2_int8")
TITLES = {
    "mobilenet_v2_int8": "int8 MobileNet V2 1.0 224 (TF converter, full-integer)",
    "ssd_mobilenet_v2_int8": "int8 SSD MobileNet V2 300 (TF converter, full-integer, 1917 anchors)",
    "ssd_mobilenet_v2_float": "float SSD MobileNet V2 300 (shared model, fp16 weights)",
}


# ---------------------------------------------------------------- workers

def peak_rss_bytes():
    """As kiln bench: VmHWM (this process image's own peak), else ru_maxrss
    (which on Linux keeps the parent's peak across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stats(ms):
    ms = sorted(ms)
    n = len(ms)
    median = ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])
    return {"min": ms[0], "median": median, "p90": ms[math.ceil(0.9 * n) - 1], "max": ms[-1],
            "mean": sum(ms) / n}


def random_inputs(specs, rng):
    """specs: [(shape, numpy dtype)]; the same kinds of data as kiln bench."""
    import numpy as np
    out = []
    for shape, dtype in specs:
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            out.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        elif dtype.kind in "iu" and dtype.itemsize <= 2:
            info = np.iinfo(dtype)
            out.append(rng.integers(info.min, info.max + 1, size=shape, dtype=dtype))
        else:
            out.append(np.zeros(shape, dtype))
    return out


def time_invokes(invoke, warmup, iters):
    t0 = time.perf_counter()
    invoke()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        invoke()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        invoke()
        ms.append((time.perf_counter() - t0) * 1e3)
    return first, stats(ms)


def worker_litert(model, threads, warmup, iters):
    """LiteRT's Python Interpreter with its default delegate (XNNPACK)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    it = Interpreter(model_path=model, num_threads=threads)
    it.allocate_tensors()
    ready = (time.perf_counter() - t0) * 1e3
    details = it.get_input_details()
    xs = random_inputs([(d["shape"], d["dtype"]) for d in details], np.random.default_rng(0))
    for d, x in zip(details, xs):
        it.set_tensor(d["index"], x)
    first, lat = time_invokes(it.invoke, warmup, iters)
    return {"open_to_ready_ms": ready, "first_invoke_ms": first, "latency_ms": lat,
            "rss_before_load_bytes": before, "peak_rss_bytes": peak_rss_bytes()}


def worker_ort(model, threads, warmup, iters):
    """ONNX Runtime's CPU provider, all graph optimizations, intra-op threads."""
    import numpy as np
    import onnxruntime as ort
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    ready = (time.perf_counter() - t0) * 1e3
    types = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
             "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
    ins = sess.get_inputs()
    xs = random_inputs([(i.shape, types[i.type]) for i in ins], np.random.default_rng(0))
    feeds = {i.name: x for i, x in zip(ins, xs)}
    first, lat = time_invokes(lambda: sess.run(None, feeds), warmup, iters)
    return {"open_to_ready_ms": ready, "first_invoke_ms": first, "latency_ms": lat,
            "rss_before_load_bytes": before, "peak_rss_bytes": peak_rss_bytes()}


def convert_onnx(tflite, out):
    """tf2onnx's TFLite front end; on failure writes OUT.err with the reason."""
    err = out + ".err"
    r = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", tflite, "--output", out + ".tmp",
                        "--opset", "17"], capture_output=True, text=True)
    if r.returncode == 0 and os.path.exists(out + ".tmp"):
        os.replace(out + ".tmp", out)
        if os.path.exists(err):
            os.remove(err)
        return
    lines = [x for x in (r.stderr + r.stdout).splitlines() if x.strip()]
    reason = next((x for x in reversed(lines) if "Error" in x or "error" in x), lines[-1] if lines else "?")
    with open(err, "w") as f:
        f.write(reason.strip()[:300] + "\n")


# ---------------------------------------------------------------- driver

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(args, what):
    """Runs one measurement process; (its JSON, None) or (None, why not)."""
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        how = f"killed by signal {-r.returncode}" if r.returncode < 0 else f"exit {r.returncode}"
        last = r.stderr.strip().splitlines()[-1:] or ["no message"]
        return None, f"{what} failed ({how}): {last[0][:200]}"
    return json.loads(r.stdout), None


def model_macs(path):
    """MACs of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED from LiteRT's
    view of the file (kiln bench counts the same; its test checks they agree)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    shapes = {t["index"]: list(t["shape"]) for t in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():
        f = shapes[op["inputs"][1]] if len(op["inputs"]) > 1 else None
        out = math.prod(shapes[op["outputs"][0]])
        if op["op_name"] == "CONV_2D":
            total += out * f[1] * f[2] * f[3]
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            total += out * f[1] * f[2]
        elif op["op_name"] == "FULLY_CONNECTED":
            total += out * f[1]
    return total


def measure_all(a, models):
    """{model: {"macs": n, threads: {"kiln": r, "litert": r, "ort": r, "<runtime>_error": why},
    "profile": r, "profile_error": why}}. Each runtime runs in a.rounds
    processes, interleaved with the others; the one with the lowest median
    latency is kept (a burst of other work on the machine spoils a round, not
    the result), and the first failure of any round is kept too."""
    me = [sys.executable, os.path.abspath(__file__)]
    out = {}
    for name, (tflite, onnx) in models.items():
        out[name] = {"macs": model_macs(tflite)}
        for t in a.threads:
            n = [str(t), str(a.warmup), str(a.iters)]
            runners = [("kiln", "kiln", [a.kiln, "bench", tflite, "--threads", n[0], "--warmup", n[1],
                                         "--iters", n[2], "--json"]),
                       ("litert", "LiteRT", me + ["litert", tflite] + n)]
            row = {"ort": None, "ort_error": onnx_failure(onnx)}
            if onnx and os.path.exists(onnx):
                runners.append(("ort", "ONNX Runtime", me + ["ort", onnx] + n))
            for key, _, _ in runners:
                row[key], row[key + "_error"] = None, None
            for rnd in range(a.rounds):
                for key, label, cmd in runners:
                    log(f"{name}, {t} thread(s), round {rnd + 1}/{a.rounds}: {label}")
                    r, err = run_json(cmd, label)
                    row[key + "_error"] = row[key + "_error"] or err
                    if r and (row[key] is None or ms(r) < ms(row[key])):
                        row[key] = r
            out[name][t] = row
        log(f"{name}: kiln profile")
        out[name]["profile"], out[name]["profile_error"] = run_json(
            [a.kiln, "bench", tflite, "--threads", "1", "--warmup", "2", "--iters", str(max(5, a.iters // 5)),
             "--json", "--profile"], "kiln profile")
    return out


def onnx_failure(onnx):
    """Why there is no ONNX model to run, or None when there is one."""
    if onnx and os.path.exists(onnx):
        return None
    if not onnx:
        return "no ONNX model"
    err = onnx + ".err"
    if os.path.exists(err):
        return "tf2onnx could not convert it: " + open(err).read().strip()
    return "tf2onnx is not installed"


def versions(kiln):
    v = {"python": platform.python_version()}
    for mod, key in [("ai_edge_litert", "ai-edge-litert"), ("numpy", "numpy"), ("tensorflow", "tensorflow-cpu"),
                     ("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime")]:
        try:
            from importlib.metadata import version
            v[key] = version(key)
        except Exception:
            v[key] = "not installed"
    v["kiln"] = subprocess.run([kiln, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    g = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"], capture_output=True, text=True)
    v["kiln commit"] = g.stdout.strip() or "unknown"
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True)
    v["cc"] = cc.stdout.splitlines()[0] if cc.stdout else "unknown"
    return v


def machine():
    model, flags = "unknown", []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    return {"cpu": model, "cores": os.cpu_count(), "hypervisor": "hypervisor" in flags,
            "kernel": platform.release(), "load": os.getloadavg()}


def ms(r, key="median"):
    return r["latency_ms"][key] if r else None


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def mib(b):
    return b / (1 << 20)


def model_table(name, rows, threads):
    lines = [f"### {TITLES.get(name, name)}", "",
             "| threads | kiln median / p90 ms | LiteRT median / p90 ms | kiln / LiteRT | ORT median ms | "
             "kiln FPS | LiteRT FPS | ORT FPS |",
             "|---|---|---|---|---|---|---|---|"]
    for t in threads:
        r = rows[t]
        k, lt, o = ms(r["kiln"]), ms(r["litert"]), ms(r["ort"])
        lines.append(f"| {t} | {fmt(k)} / {fmt(ms(r['kiln'], 'p90'))} | {fmt(lt)} / {fmt(ms(r['litert'], 'p90'))} | "
                     f"{fmt(ratio(k, lt))} | {fmt(o)} | {fmt(ratio(1e3, k), 1)} | {fmt(ratio(1e3, lt), 1)} | "
                     f"{fmt(ratio(1e3, o), 1)} |")
    notes = []
    for t in threads:
        for key in ("kiln_error", "litert_error"):
            if rows[t][key]:
                notes.append(f"- {t} thread(s): {rows[t][key]}")
    ort_errs = {rows[t]["ort_error"] for t in threads if rows[t]["ort_error"]}
    notes += [f"- ONNX Runtime: {e}" for e in sorted(ort_errs)]
    return lines + ([""] + notes if notes else []) + [""]


def memory_table(results, threads):
    t = max(threads)
    lines = [f"Open-to-ready is model open until ready to invoke (kiln: `kiln_model_load` + "
             f"`kiln_interp_create`; LiteRT: `Interpreter(...)` + `allocate_tensors()`; ORT: "
             f"`InferenceSession(...)`). RSS is each runtime's own process at {t} threads: peak "
             f"(`VmHWM`, the process image's own high-water mark), and its growth from just before the model is opened (for the Python "
             f"runtimes the interpreter and imported libraries are already resident then).", "",
             "| model | kiln open-to-ready ms (load + create) | LiteRT ms | ORT ms | kiln first invoke ms | "
             "kiln peak RSS MiB (growth) | LiteRT peak RSS MiB (growth) | ORT peak RSS MiB (growth) | kiln arena bytes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        r = rows[t]
        k = r["kiln"]

        def rss(x):
            return "n/a" if not x else f"{mib(x['peak_rss_bytes']):.1f} ({mib(x['peak_rss_bytes'] - x['rss_before_load_bytes']):.1f})"

        def ready(x):
            return "n/a" if not x else f"{x['open_to_ready_ms']:.2f}"
        kr = "n/a" if not k else f"{k['open_to_ready_ms']:.2f} ({k['load_ms']:.2f} + {k['create_ms']:.2f})"
        lines.append(f"| {name} | {kr} | {ready(r['litert'])} | {ready(r['ort'])} | "
                     f"{fmt(k['first_invoke_ms'] if k else None)} | {rss(k)} | {rss(r['litert'])} | {rss(r['ort'])} | "
                     f"{k['arena_bytes'] if k else 'n/a'} |")
    return lines + [""]


def peaks(roof):
    return {(k["name"], k["threads"]): k["gmacs"] for k in roof["kernels"]}


def roofline_section(results, roof, threads):
    if not roof:
        return ["## Roofline", "", "Not measured: bench/roofline.c is for x86-64.", ""]
    p = peaks(roof)
    lines = ["## Roofline", "",
             "Peak multiply-accumulate rate of this CPU (`bench/roofline.c`: independent register-only "
             "chains of one instruction, best of 5 runs, all threads running at once), GMAC/s:", "",
             "| instruction | MACs per instruction (per pair for vpmaddwd + vpaddd) | " + " | ".join(f"{t} thread(s)" for t in threads) + " |",
             "|---|---|" + "---|" * len(threads)]
    for k in roof["kernels"]:
        if k["threads"] != threads[0]:
            continue
        lines.append(f"| {k['name']} ({k['dtype']}) | {k['macs_per_instruction']} | " +
                     " | ".join(fmt(p.get((k["name"], t)), 1) for t in threads) + " |")
    one, top = p.get(("vpdpbusd_zmm", threads[0])), p.get(("vpdpbusd_zmm", threads[-1]))
    if one and top and threads[-1] > threads[0]:
        lines += ["", f"vpdpbusd zmm scales {top / one:.2f}x from {threads[0]} to {threads[-1]} threads (near "
                  f"{threads[-1] / threads[0]:.0f}x when each thread has a core of its own; less when the virtual "
                  "CPUs share physical cores or other work ran)."]
    lines += ["", "Fraction of peak reached (MACs of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED from the "
              "model's shapes, divided by the median latency; int8 against "
              "vpdpbusd zmm, the fastest int8 instruction here, float against vfmadd231ps zmm):", "",
              "| model | threads | GMAC per invoke | kiln GMAC/s | kiln % of peak | LiteRT GMAC/s | LiteRT % of peak |",
              "|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        peak_name = "vpdpbusd_zmm" if name in INT8_MODELS else "vfmadd231ps_zmm"
        for t in threads:
            r = rows[t]
            macs = rows["macs"]
            peak = p.get((peak_name, t))
            kg = ratio(macs / 1e6, ms(r["kiln"]))
            lg = ratio(macs / 1e6, ms(r["litert"]))
            lines.append(f"| {name} | {t} | {macs / 1e9:.3f} | {fmt(kg, 1)} | {fmt(ratio(100 * kg, peak) if kg else None, 1)} | "
                         f"{fmt(lg, 1)} | {fmt(ratio(100 * lg, peak) if lg else None, 1)} |")
    return lines + [""]


def profile_section(results):
    lines = ["## Where kiln's time goes (1 thread, mean ms per invoke)", ""]
    for name, rows in results.items():
        prof = (rows.get("profile") or {}).get("profile")
        if not prof:
            lines += [f"{name}: {rows.get('profile_error')}", ""]
            continue
        lines += [f"{name}:", "", "| op type | count | ms | share | GMAC/s |", "|---|---|---|---|---|"]
        for e in prof["by_type"]:
            g = fmt(e["gmacs_per_s"], 1) if e["macs"] else ""
            lines.append(f"| {e['type']} | {e['count']} | {e['ms']:.3f} | {100 * e['share']:.1f}% | {g} |")
        top = prof["top_ops"][:5]
        lines += ["", "slowest ops: " + "; ".join(f"#{o['op']} {o['type']} {o['shape']} {o['ms']:.3f} ms" for o in top), ""]
    return lines


def targets(results, threads):
    """The Speed issue's targets: (description, measured, pass)."""
    out = []

    def med(name, t, rt):
        r = results.get(name, {}).get(t)
        return ms(r[rt]) if r else None

    def check(desc, value, ok):
        out.append((desc, value, None if ok is None else bool(ok)))

    for name, limit, label in [("mobilenet_v2_int8", 0.8, "int8 MobileNet V2"),
                               ("ssd_mobilenet_v2_int8", 0.8, "int8 SSD"),
                               ("ssd_mobilenet_v2_float", 1.0, "float SSD")]:
        for t in (1, 2):
            q = ratio(med(name, t, "kiln"), med(name, t, "litert"))
            desc = f"{label}: kiln <= {limit}x LiteRT at {t} thread(s)" if limit < 1 else \
                f"{label}: kiln no slower than LiteRT at {t} thread(s)"
            check(desc, f"{fmt(q)}x" if q else "not measured", None if q is None else q <= limit)
        if name == "ssd_mobilenet_v2_int8":
            k = med(name, 2, "kiln")
            fps = ratio(1e3, k)
            check("int8 SSD: >= 100 FPS at 2 threads", f"{fmt(fps, 1)} FPS" if fps else "not measured",
                  None if fps is None else fps >= 100)
    t = max(threads)
    r = results.get("mobilenet_v2_int8", {}).get(t)
    otr = r["kiln"]["open_to_ready_ms"] if r and r["kiln"] else None
    check(f"int8 MobileNet V2: open-to-ready <= 10 ms ({t} threads)", f"{fmt(otr)} ms" if otr else "not measured",
          None if otr is None else otr <= 10)
    for name, rows in results.items():
        r = rows[t]
        if not (r["kiln"] and r["litert"]):
            continue
        kg = r["kiln"]["peak_rss_bytes"] - r["kiln"]["rss_before_load_bytes"]
        lg = r["litert"]["peak_rss_bytes"] - r["litert"]["rss_before_load_bytes"]
        check(f"{name}: peak RSS growth <= LiteRT's ({t} threads)", f"{mib(kg):.1f} vs {mib(lg):.1f} MiB", kg <= lg)
    return out


def report(a):
    t_start = time.time()
    models = {
        "mobilenet_v2_int8": (os.path.join(a.models, "mobilenet_v2_int8.tflite"),
                              os.path.join(a.models, "mobilenet_v2_int8.onnx")),
        "ssd_mobilenet_v2_int8": (os.path.join(a.models, "ssd_mobilenet_v2_int8.tflite"),
                                  os.path.join(a.models, "ssd_mobilenet_v2_int8.onnx")),
        "ssd_mobilenet_v2_float": (a.float_ssd, os.path.join(a.models, "ssd_mobilenet_v2_float.onnx")),
    }
    for name, (tflite, _) in models.items():
        if not os.path.exists(tflite):
            sys.exit(f"bench: {tflite}: missing (run bench/run.sh, which makes it)")
    mach = machine()
    roof = None
    if os.path.exists(a.roofline):
        log("roofline")
        r = subprocess.run([a.roofline, "0.2", ",".join(map(str, a.threads))], capture_output=True, text=True,
                           check=True)
        roof = json.loads(r.stdout)
    results = measure_all(a, models)
    first = next((rows[t]["kiln"] for rows in results.values() for t in a.threads if rows[t]["kiln"]), None)
    v = versions(a.kiln)
    lines = ["# kiln benchmark results", "",
             "Generated by `bench/run.sh` (do not edit by hand; rerun it). Each runtime runs in its own "
             f"process on the same files: {a.warmup} warm-up invokes after the first, then {a.iters} timed "
             "invokes; latency is the median (p90 beside it) of those. Every runtime and thread count is "
             f"measured in {a.rounds} processes, interleaved with the other runtimes, and the process with "
             "the lowest median is reported (its load time and RSS too). LiteRT is its Python `Interpreter` "
             "with `num_threads` and its default XNNPACK delegate; ONNX Runtime runs the tf2onnx "
             "conversion of the same .tflite with its CPU provider. Inputs are fixed pseudo-random data.", "",
             "## Machine", "",
             f"- CPU: {mach['cpu']}, {mach['cores']} cores{' (virtual machine)' if mach['hypervisor'] else ''}, "
             f"Linux {mach['kernel']}",
             f"- ISA kiln uses (`kiln bench`): {first['isa'] if first else 'unknown'}",
             f"- load average at start: {' '.join(f'{x:.2f}' for x in mach['load'])} "
             "(above ~0.5 means other work shared the cores and the figures are noisy)",
             f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
             "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items()), "",
             "## Latency", ""]
    for name, rows in results.items():
        lines += model_table(name, rows, a.threads)
    lines += ["## Load time and memory", ""] + memory_table(results, a.threads)
    lines += ["## Targets (the Speed issue)", "", "| target | measured | result |", "|---|---|---|"]
    for desc, value, ok in targets(results, a.threads):
        lines.append(f"| {desc} | {value} | {'n/a' if ok is None else ('pass' if ok else 'FAIL')} |")
    lines += ["", "RSS is judged on growth from model open (see above), since the Python runtimes' baseline "
              "includes the Python interpreter.", ""]
    lines += roofline_section(results, roof, a.threads)
    lines += profile_section(results)
    lines += [f"Benchmark wall time: {time.time() - t_start:.0f} s.", ""]
    lines += ["## Quantizer", "", "Accuracy against TensorFlow's quantizer and the time to quantize the SSD: "
              "`bench/quant.sh` writes [QUANT.md](QUANT.md).", ""]
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, a.out)
    log(f"wrote {a.out}")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] in ("litert", "ort"):
        if len(sys.argv) != 6:
            sys.exit(f"usage: bench.py {sys.argv[1]} MODEL THREADS WARMUP ITERS")
        fn = worker_litert if sys.argv[1] == "litert" else worker_ort
        print(json.dumps(fn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "onnx":
        if len(sys.argv) != 4:
            sys.exit("usage: bench.py onnx MODEL.tflite OUT.onnx")
        convert_onnx(sys.argv[2], sys.argv[3])
        return
    p = argparse.ArgumentParser(description="kiln vs LiteRT vs ONNX Runtime; writes RESULTS.md")
    p.add_argument("command", choices=["report"])
    p.add_argument("--kiln", required=True)
    p.add_argument("--roofline", required=True, help="the built bench/roofline.c (skipped if missing)")
    p.add_argument("--models", required=True, help="folder with the generated models")
    p.add_argument("--float-ssd", required=True, help="the shared float SSD .tflite")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3, help="processes per runtime and setting; the fastest is kept")
    a = p.parse_args()
    a.threads = sorted({int(x) for x in a.threads.split(",")})
    report(a)


if __name__ == "__main__":
    main()
