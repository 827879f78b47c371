"""kiln compile end to end, checked with LiteRT and LiteRT's schema:

1. An int8 SSD (the shared float SSD with post-processing appended by
   `kiln convert`, quantized by `kiln quantize` on random .npy inputs) for
   edgetpu-usb3: every op mapped but the two output-edge DEQUANTIZEs and
   TFLite_Detection_PostProcess; on-chip + off-chip == the mapped ops'
   parameters and everything adds up to the model's constants (`kiln
   inspect`); the text report has the Edge TPU compiler's lines; the
   compiled model carries "kiln_compile" metadata (read with LiteRT's
   schema), loads in LiteRT and gives the input model's outputs.
2. --num-segments 3 of the raw-output int8 SSD: each segment loads in LiteRT
   and the segments run in sequence give the whole model's int8 outputs bit
   for bit; --intermediate-tensors cuts where asked.
3. Co-compiling two int8 SSDs in both orders: one caching token, the first
   model cached whole, the second only what is left.
4. --target cpu writes a kiln bundle; --targets-dir / KILN_TARGETS work.
5. Bad input: unknown target, corrupt target JSON, corrupt model, bad
   --num-segments, unknown tensor names, a float model for the Edge TPU:
   clear messages, non-zero exit.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin

need_reference()
import numpy as np  # noqa: E402
from ai_edge_litert import schema_py_generated as S  # noqa: E402
from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: E402

failures = []
SSD = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
TARGETS = os.path.join(os.path.dirname(__file__), "..", "..", "targets")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args, env=None):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True, env=env)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def run_litert(path, feeds):
    """Runs a model on named inputs; returns its outputs by name."""
    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feeds[d["name"]])
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def metadata(path):
    with open(path, "rb") as f:
        buf = f.read()
    m = S.ModelT.InitFromObj(S.Model.GetRootAs(buf, 0))
    return {md.name.decode(): bytes(m.buffers[md.buffer].data) for md in (m.metadata or [])}


def make_int8_ssds(tmp):
    """The post-processed and the raw-output int8 SSD, calibrated on random inputs."""
    calib = os.path.join(tmp, "calib")
    os.makedirs(calib)
    rng = np.random.default_rng(3)
    for i in range(6):
        np.save(os.path.join(calib, f"x{i}.npy"), rng.uniform(-1, 1, size=(1, 300, 300, 3)).astype(np.float32))
    pp_float = os.path.join(tmp, "ssd_pp.tflite")
    r = kiln("convert", SSD, "--add-postprocess", "ssd", "--out", pp_float)
    check(r.returncode == 0, f"kiln convert --add-postprocess ssd ({last_line(r.stderr)})")
    out = {}
    for name, src, extra in (("ssd_pp_int8", pp_float, []), ("ssd_int8", SSD, []), ("ssd_int8_pt", SSD, ["--per-tensor"])):
        out[name] = os.path.join(tmp, name + ".tflite")
        r = kiln("quantize", src, "--calib", calib, "--holdout", "0", "--out", out[name], *extra)
        check(r.returncode == 0, f"kiln quantize {name} ({last_line(r.stderr)})")
    return out


def fmt_bytes(n):
    if n >= 1024 * 1024:
        return f"{n / 1048576:.2f}MiB"
    if n >= 1024:
        return f"{n / 1024:.2f}KiB"
    return f"{n:.2f}B"


def test_ssd(tmp, ssd_pp):
    out = os.path.join(tmp, "usb3")
    r = kiln("compile", ssd_pp, "--target", "edgetpu-usb3", "--out", out, "--json")
    check(r.returncode == 0, f"kiln compile the int8 SSD for edgetpu-usb3 ({last_line(r.stderr)})")
    rep = json.loads(r.stdout)
    check(rep == json.load(open(os.path.join(out, "report.json"))), "--json prints report.json")
    m = rep["models"][0]
    cpu = [(o["type"], o["status"]) for o in m["ops"] if not o["on_device"]]
    check(cpu == [("DEQUANTIZE", "Operation is working on an unsupported data type")] * 2 +
          [("TFLite_Detection_PostProcess", "Operation is working on an unsupported data type")],
          f"only the output-edge DEQUANTIZEs and the post-processing run on the CPU: {cpu}")
    check(m["device_ops"] == m["total_ops"] - 3 == 98 and m["subgraphs"] == 1, f"98 of {m['total_ops']} ops mapped")
    p = m["params"]
    check(p["on_chip_bytes"] + p["off_chip_bytes"] == p["device_bytes"] ==
          sum(o["param_bytes"] for o in m["ops"] if o["on_device"]),
          f"on-chip {p['on_chip_bytes']} + off-chip {p['off_chip_bytes']} == mapped {p['device_bytes']}")
    info = json.loads(kiln("inspect", ssd_pp, "--json").stdout)
    check(p["device_bytes"] + p["cpu_bytes"] + p["unused_bytes"] == p["total_bytes"] == info["parameter_bytes"],
          f"mapped {p['device_bytes']} + CPU {p['cpu_bytes']} + unused {p['unused_bytes']} == "
          f"kiln inspect's {info['parameter_bytes']} parameter bytes")
    check(p["off_chip_bytes"] == 0 and p["on_chip_remaining_bytes"] == 7340032 - p["on_chip_bytes"],
          f"all {p['on_chip_bytes']} bytes cached in the 7 MiB budget")
    est = m["estimate"]
    check(abs(est["latency_ms"] - (est["device_ms"] + est["cpu_ms"] + est["transfer_ms"] + est["overhead_ms"])) < 1e-3
          and est["fps"] > 0, f"estimate {est['latency_ms']:.3f} ms = its parts, {est['fps']:.1f} FPS")

    # The text report: the Edge TPU compiler's lines, in its order.
    log = open(os.path.join(out, "ssd_pp_int8_edgetpu-usb3.log")).read()
    compiled = os.path.join(out, "ssd_pp_int8_edgetpu-usb3.tflite")
    expect = [r"Model compiled successfully in \d+ ms\.", "",
              "Input model: " + re.escape(ssd_pp), "Input size: " + re.escape(fmt_bytes(os.path.getsize(ssd_pp))),
              "Output model: " + re.escape(compiled), "Output size: " + re.escape(fmt_bytes(os.path.getsize(compiled))),
              "On-chip memory used for caching model parameters: " + re.escape(fmt_bytes(p["on_chip_bytes"])),
              "On-chip memory remaining for caching model parameters: " + re.escape(fmt_bytes(p["on_chip_remaining_bytes"])),
              "Off-chip memory used for streaming uncached model parameters: 0.00B",
              "Number of Edge TPU subgraphs: 1", "Total number of operations: 101",
              "Number of operations that will run on Edge TPU: 98", "Number of operations that will run on CPU: 3", "",
              "Operator                       Count      Status", "",
              "CONV_2D                        55         Mapped to Edge TPU"]
    lines = log.splitlines()
    bad = [(i, e, lines[i] if i < len(lines) else None) for i, e in enumerate(expect)
           if i >= len(lines) or not re.fullmatch(e, lines[i])]
    check(not bad, f"the report starts with the Edge TPU compiler's lines ({bad[:2]})")
    check("TFLite_Detection_PostProcess   1          Operation is working on an unsupported data type" in lines,
          "the operator table counts the post-processing op")

    # The compiled model: metadata, and the same outputs in LiteRT.
    md = metadata(compiled)
    rec = json.loads(md.get("kiln_compile", b"{}"))
    check(rec.get("target") == "edgetpu-usb3" and [o["on_device"] for o in rec.get("ops", [])] ==
          [o["on_device"] for o in m["ops"]], "kiln_compile metadata records the target and the partition")
    from PIL import Image
    photo = os.path.join(models_dir(), "..", "images", "astronaut.png")
    x = (np.asarray(Image.open(photo).convert("RGB").resize((300, 300)), np.int16) - 128).astype(np.int8)[None]
    name = Interpreter(model_path=ssd_pp).get_input_details()[0]["name"]
    a, b = run_litert(ssd_pp, {name: x}), run_litert(compiled, {name: x})
    n = int(a["TFLite_Detection_PostProcess:3"][0])
    same = a.keys() == b.keys() and n == int(b["TFLite_Detection_PostProcess:3"][0]) and all(
        np.array_equal(a[k][0, :n], b[k][0, :n]) for k in a if not k.endswith(":3"))
    check(same, f"the compiled model runs in LiteRT with the input model's outputs ({n} detections)")

    # Every Edge TPU target: same mapping, different links.
    lat = {}
    for t in ("edgetpu-usb2", "edgetpu-usb3", "edgetpu-pcie", "cpu"):
        r = kiln("compile", ssd_pp, "--target", t, "--out", os.path.join(tmp, t), "--json")
        mm = json.loads(r.stdout)["models"][0] if r.returncode == 0 else {}
        lat[t] = mm.get("estimate", {}).get("latency_ms", 0)
        print(f"     {t}: on-chip {mm.get('params', {}).get('on_chip_bytes')} B, off-chip "
              f"{mm.get('params', {}).get('off_chip_bytes')} B, {lat[t]:.3f} ms, "
              f"{mm.get('estimate', {}).get('fps', 0):.1f} FPS")
    check(lat["edgetpu-usb2"] > lat["edgetpu-usb3"] > lat["edgetpu-pcie"] > 0, f"USB 2 > USB 3 > PCIe latency: {lat}")
    bundle = os.path.join(tmp, "cpu", "bundle.kbundle")
    check(os.path.exists(bundle) and open(bundle, "rb").read(8) == b"KILNBNDL", "--target cpu writes a kiln bundle")
    # Co-compiled for the CPU: one arena for both, the saving reported.
    twin = os.path.join(tmp, "ssd_twin.tflite")
    shutil.copyfile(ssd_pp, twin)
    r = kiln("compile", ssd_pp, twin, "--target", "cpu", "--out", os.path.join(tmp, "cpu2"), "--json")
    mem = json.loads(r.stdout).get("bundle_memory", {}) if r.returncode == 0 else {}
    check(mem.get("sum_arena_bytes", 0) == 2 * mem.get("shared_arena_bytes", -1) > 0
          and mem.get("saved_bytes") == mem.get("shared_arena_bytes"),
          f"two models in one CPU bundle share one arena and the saving is reported: {mem}")


def test_segments(tmp, ssd_raw):
    out = os.path.join(tmp, "seg")
    r = kiln("compile", ssd_raw, "--target", "edgetpu-usb3", "--out", out, "--num-segments", "3", "--json")
    check(r.returncode == 0, f"--num-segments 3 ({last_line(r.stderr)})")
    if r.returncode != 0:
        return
    rep = json.loads(r.stdout)
    paths = [m["output_model"] for m in rep["models"]]
    check(len(paths) == 3 and all(os.path.exists(p) for p in paths) and rep["segments"] == 3, f"3 segment files: {paths}")
    rng = np.random.default_rng(9)
    name = Interpreter(model_path=ssd_raw).get_input_details()[0]["name"]
    x = rng.integers(-128, 128, size=(1, 300, 300, 3), dtype=np.int8)
    whole = run_litert(ssd_raw, {name: x})
    feeds = {name: x}
    try:
        for p in paths:
            feeds = run_litert(p, feeds)
        ok = feeds.keys() == whole.keys() and all(
            feeds[k].dtype == np.int8 and np.array_equal(feeds[k], whole[k]) for k in whole)
        check(ok, "the segments, run in sequence in LiteRT, give the whole model's int8 outputs bit for bit")
    except Exception as e:  # noqa: BLE001
        check(False, f"the segments load and run in LiteRT ({e})")
    # Cut at a named tensor: after the op computing it.
    it = Interpreter(model_path=ssd_raw)
    ops = it._get_ops_details()
    tname = it.get_tensor_details()[ops[40]["outputs"][0]]["name"]
    r = kiln("compile", ssd_raw, "--target", "edgetpu-usb3", "--out", os.path.join(tmp, "seg_named"),
             "--intermediate-tensors", tname, "--json")
    rep = json.loads(r.stdout) if r.returncode == 0 else {"models": []}
    check([m["total_ops"] for m in rep["models"]] == [41, len(ops) - 41],
          f"--intermediate-tensors cuts after op 40 ({last_line(r.stderr)})")
    if rep["models"]:
        seg0 = Interpreter(model_path=rep["models"][0]["output_model"])
        check([d["name"] for d in seg0.get_output_details()][-1:] == [tname] or
              tname in [d["name"] for d in seg0.get_output_details()], "the named tensor is an output of segment 0")


def test_cocompile(tmp, a, b):
    res = {}
    for order in ((a, b), (b, a)):
        out = os.path.join(tmp, "co_" + os.path.basename(order[0]))
        r = kiln("compile", *order, "--target", "edgetpu-usb3", "--out", out, "--json")
        check(r.returncode == 0, f"co-compile {[os.path.basename(p) for p in order]} ({last_line(r.stderr)})")
        if r.returncode != 0:
            return
        rep = json.loads(r.stdout)
        ms = rep["models"]
        check(rep["co_compiled"] and len({m["caching_token"] for m in ms}) == 1 and
              all(os.path.exists(m["output_model"]) for m in ms), "one caching token, one compiled file per model")
        check(rep["on_chip_used_bytes"] == sum(m["params"]["on_chip_bytes"] for m in ms) <= 7340032,
              f"the shares add up to the on-chip use ({rep['on_chip_used_bytes']})")
        for m in ms:
            res[(m["name"], ms.index(m))] = m["params"]["on_chip_bytes"]
            p = m["params"]
            check(p["on_chip_bytes"] + p["off_chip_bytes"] == p["device_bytes"], f"{m['name']}: on + off == mapped")
        print(f"     order {[m['name'] for m in ms]}: on-chip {[m['params']['on_chip_bytes'] for m in ms]}, "
              f"off-chip {[m['params']['off_chip_bytes'] for m in ms]}, set {rep['set']}")
    na, nb = os.path.basename(a)[:-7], os.path.basename(b)[:-7]
    check(res[(na, 0)] > res[(na, 1)] and res[(nb, 0)] > res[(nb, 1)],
          f"each model gets more cached when it comes first: {res}")


def test_bad_input(tmp, ssd_pp):
    out = os.path.join(tmp, "bad")
    r = kiln("compile", ssd_pp, "--target", "edgetpu-usb4", "--out", out)
    check(r.returncode == 1 and "unknown target 'edgetpu-usb4'" in r.stderr and "edgetpu-usb3" in r.stderr,
          f"unknown target lists the available ones: {last_line(r.stderr)}")
    bad_target = os.path.join(tmp, "broken.json")
    with open(bad_target, "w") as f:
        f.write('{"name": "broken", "macs_per_s": }')
    r = kiln("compile", ssd_pp, "--target", bad_target, "--out", out)
    check(r.returncode == 1 and "broken.json: line 1" in r.stderr, f"corrupt target JSON: {last_line(r.stderr)}")
    t = json.load(open(os.path.join(TARGETS, "edgetpu-usb3.json")))
    t["ops"]["SOFTMAX"]["limits"][0]["limit"] = "input_2d"
    bad_field = os.path.join(tmp, "badfield.json")
    json.dump(t, open(bad_field, "w"))
    shutil.copy(os.path.join(TARGETS, "cpu.json"), tmp)
    r = kiln("compile", ssd_pp, "--target", bad_field, "--out", out)
    check(r.returncode == 1 and "badfield.json: ops.SOFTMAX.limits[0].limit: unknown limit 'input_2d'" in r.stderr,
          f"bad target field named: {last_line(r.stderr)}")
    corrupt = os.path.join(tmp, "corrupt.tflite")
    with open(ssd_pp, "rb") as f:
        data = f.read()
    with open(corrupt, "wb") as f:
        f.write(data[:len(data) // 3])
    r = kiln("compile", corrupt, "--target", "edgetpu-usb3", "--out", out)
    check(r.returncode == 1 and "corrupt.tflite" in r.stderr, f"corrupt model: {last_line(r.stderr)}")
    for args, code, words in ((["--num-segments", "0"], 2, "--num-segments"),
                              (["--num-segments", "1000"], 1, "cannot split 101 ops into 1000 segments"),
                              (["--intermediate-tensors", "no_such_tensor"], 1, "no tensor named 'no_such_tensor'"),
                              ([], 2, "missing --out")):
        extra = [] if "missing --out" in words else ["--out", out]
        r = kiln("compile", ssd_pp, "--target", "edgetpu-usb3", *extra, *args)
        check(r.returncode == code and words in r.stderr, f"{args}: exit {r.returncode}, {last_line(r.stderr)}")
    # A float model compiles, nothing maps, exit 1 with the hint; the log is written.
    fout = os.path.join(tmp, "float")
    r = kiln("compile", SSD, "--target", "edgetpu-usb3", "--out", fout)
    check(r.returncode == 1 and "kiln quantize" in r.stderr and "not quantized" in r.stderr,
          f"float model: exit {r.returncode}, {last_line(r.stderr)}")
    check("Number of operations that will run on Edge TPU: 0" in r.stdout and
          "Operation is working on an unsupported data type" in r.stdout, "float model: every op unsupported dtype")
    files = sorted(os.listdir(fout)) if os.path.isdir(fout) else []
    check(files == ["report.json", "ssd_mobilenet_v2_oidv4_fp16_edgetpu-usb3.log"], f"float model: log, no model: {files}")


def test_targets_dir(tmp, ssd_pp):
    tdir = os.path.join(tmp, "mytargets")
    os.makedirs(tdir)
    shutil.copy(os.path.join(TARGETS, "cpu.json"), tdir)
    t = json.load(open(os.path.join(TARGETS, "edgetpu-usb3.json")))
    t["name"], t["parameter_memory_bytes"] = "tiny-tpu", 1 << 20
    json.dump(t, open(os.path.join(tdir, "tiny-tpu.json"), "w"))
    r = kiln("compile", ssd_pp, "--target", "tiny-tpu", "--targets-dir", tdir, "--out", os.path.join(tmp, "tiny"), "--json")
    ok = r.returncode == 0 and json.loads(r.stdout)["models"][0]["params"]["on_chip_bytes"] <= 1 << 20
    check(ok and json.loads(r.stdout)["models"][0]["params"]["off_chip_bytes"] > 0,
          f"--targets-dir: a 1 MiB target streams the rest ({last_line(r.stderr)})")
    env = dict(os.environ, KILN_TARGETS=tdir)
    r = kiln("compile", ssd_pp, "--target", "tiny-tpu", "--out", os.path.join(tmp, "tiny2"), env=env)
    check(r.returncode == 0 and "On-chip memory remaining" in r.stdout, f"KILN_TARGETS ({last_line(r.stderr)})")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ssds = make_int8_ssds(tmp)
        if failures:
            sys.exit(1)
        test_ssd(tmp, ssds["ssd_pp_int8"])
        test_segments(tmp, ssds["ssd_int8"])
        test_cocompile(tmp, ssds["ssd_int8"], ssds["ssd_int8_pt"])
        test_bad_input(tmp, ssds["ssd_pp_int8"])
        test_targets_dir(tmp, ssds["ssd_pp_int8"])
    if failures:
        print(f"{len(failures)} failed")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
