"""kiln's quantizer against TensorFlow's on a trained network, and the time
kiln takes to quantize the shared SSD (bench/quant.sh runs it; see
bench/README.md). A benchmark, not a test: it writes figures, it asserts
nothing.

  python bench/quant_anchor.py --kiln BIN --work DIR --ssd FLOAT_SSD.tflite --photos DIR
                               --out QUANT.md [--results RESULTS.md] [--epochs E]
                               [--check N] [--runs R]

Accuracy anchor (Fashion-MNIST from Debian's dataset-fashion-mnist, installed
with apt-get when missing):
  1. trains TensorFlow's classic 2-conv tutorial CNN (fixed seeds) and keeps
     it as a SavedModel and a float .tflite whose output is the 10 logits (no
     softmax: the last FULLY_CONNECTED's range is then calibrated, not fixed
     by the spec); input [1,28,28,1] float32 = pixel / 255. Both are reused
     while the training settings and TensorFlow's version are unchanged;
  2. picks 500 calibration images (and 100 more, held out for kiln's SQNR
     report) from the training set with a fixed seed;
  3. TensorFlow's full-integer converter (representative dataset = those 500
     inputs, TFLITE_BUILTINS_INT8, int8 input and output) and `kiln quantize`
     of the float .tflite on the same 500 inputs as float32 .npy files
     (`--io int8`, each of minmax, percentile, entropy);
  4. test accuracy of every model on the 10,000 test images with LiteRT's
     Interpreter (default resolver), each int8 model fed its own input
     quantization of the same float values, and how many images have a tied
     top logit (a saturated output range shows up there);
  5. runs --check test images through `kiln run` (kiln's default kernels and
     `--ref`) for every kiln model and compares the int8 logits with LiteRT's
     reference kernels (BUILTIN_REF): they should be bit-identical. Where they
     are not, a copy of the model with every op's output exposed names the
     ops whose outputs differ;
  6. tables the activation ranges kiln chose by each method, and each op's
     output scale and zero point and each weight tensor's scales in TF's and
     kiln's minmax model (the first place to look when kiln's accuracy trails
     TensorFlow's).
SSD timing: 100 frames of OpenCV's vtest.avi (scripts/fetch-photos), then
`kiln quantize FLOAT_SSD --calib FRAMES --calib-count 100 --holdout 0` run
--runs times end to end (wall clock); the median is reported.
"""
import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import machine  # noqa: E402  (bench/bench.py, beside this file)

DATASET_PACKAGE = "dataset-fashion-mnist"
SEED = 0
BATCH = 64
CALIB_IMAGES = 500
HOLDOUT_IMAGES = 100
METHODS = ("minmax", "percentile", "entropy")
TARGET_POINTS = 0.2          # kiln int8 accuracy >= TF int8 accuracy - this
SSD_FRAMES = 100
SSD_FRAME_STEP = 7           # every 7th of vtest.avi's 795 frames: 100 spread over the video
SSD_TARGET_S = 60.0
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")


def log(msg):
    print(f"quant: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def atomic_write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- data

def ensure_dataset():
    """Installs the Debian package when missing; returns {name: path} of its
    four IDX files, found with dpkg -L."""
    if subprocess.run(["dpkg", "-s", DATASET_PACKAGE], capture_output=True).returncode != 0:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log(f"installing {DATASET_PACKAGE}")
        install = sudo + ["apt-get", "install", "-y", "-q", DATASET_PACKAGE]
        if subprocess.run(install, env=env).returncode != 0:
            run(sudo + ["apt-get", "update", "-q"], env=env)
            run(install, env=env)
    listing = run(["dpkg", "-L", DATASET_PACKAGE], capture_output=True, text=True).stdout.split()
    files = {}
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        hits = [p for p in listing if os.path.basename(p) in (name, name + ".gz")]
        if not hits:
            sys.exit(f"quant: {DATASET_PACKAGE} has no {name}(.gz)")
        files[name] = hits[0]
    return files


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\0\0" or data[2] != 8:
        sys.exit(f"quant: {path}: not an unsigned-byte IDX file")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(shape)


def load_fashion_mnist(files):
    """Images as float32 [N,28,28,1] = pixel / 255 (the model's input), labels int."""
    def images(name):
        return (read_idx(files[name]).astype(np.float32) / np.float32(255.0))[..., None]
    return (images("train-images-idx3-ubyte"), read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64),
            images("t10k-images-idx3-ubyte"), read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64))


# ---------------------------------------------------------------- models

def train_float(work, epochs, x_train, y_train):
    """Trains (or reuses) the CNN; returns (SavedModel dir, float .tflite, info)."""
    import tensorflow as tf
    saved = os.path.join(work, "saved_model")
    path = os.path.join(work, "fashion_float.tflite")
    meta_path = os.path.join(work, "float.json")
    key = {"epochs": epochs, "seed": SEED, "batch": BATCH, "tensorflow": tf.__version__,
           "net": "conv32-pool-conv64-pool-dense128-dense10"}
    if os.path.exists(meta_path) and os.path.exists(path) and os.path.isdir(saved):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("key") == key:
            log(f"reusing {path} (trained in {meta['train_s']:.0f} s)")
            return saved, path, meta
    log(f"training the CNN: {epochs} epochs on {len(x_train)} images")
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)])
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, shuffle=True, verbose=2)
    train_s = time.perf_counter() - t0
    shutil.rmtree(saved, ignore_errors=True)
    model.export(saved, input_signature=[tf.TensorSpec([1, 28, 28, 1], tf.float32)], verbose=False)
    atomic_write(path, tf.lite.TFLiteConverter.from_saved_model(saved).convert())
    meta = {"key": key, "train_s": train_s, "train_accuracy": float(hist.history["accuracy"][-1])}
    atomic_write(meta_path, json.dumps(meta, indent=2))
    log(f"wrote {path} (trained in {train_s:.0f} s)")
    return saved, path, meta


def tf_int8(saved, calib, path):
    """TensorFlow's full-integer post-training quantization."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_saved_model(saved)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    atomic_write(path, conv.convert())
    log(f"wrote {path}")


def kiln_int8(kiln, float_path, npy_dir, method, path, report):
    cmd = [kiln, "quantize", float_path, "--calib", npy_dir, "--out", path,
           "--calib-count", str(CALIB_IMAGES), "--holdout", str(HOLDOUT_IMAGES), "--method", method,
           "--io", "int8", "--report", report]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quant: {' '.join(cmd)} failed:\n{r.stderr}")
    log(r.stderr.strip().splitlines()[0])
    return cmd


def write_calibration(npy_dir, samples):
    """Samples as 0000.npy, 0001.npy, ... (kiln reads a folder in path order)."""
    shutil.rmtree(npy_dir, ignore_errors=True)
    os.makedirs(npy_dir)
    for i, x in enumerate(samples):
        np.save(os.path.join(npy_dir, f"{i:04d}.npy"), x[None].astype(np.float32))


# ---------------------------------------------------------------- evaluation

def interpreter(path, ref=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_REF} if ref else {}
    it = Interpreter(model_path=path, num_threads=1, **kw)
    it.allocate_tensors()
    return it


def quantize_input(x, detail):
    """TFLite's QUANTIZE of float input values: round half away from zero."""
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zp = detail["quantization"]
    v = x / np.float32(scale)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp
    info = np.iinfo(detail["dtype"])
    return np.clip(q, info.min, info.max).astype(detail["dtype"])


def outputs(path, xs, ref=False):
    """Raw output tensors [N,10] of the model on float inputs xs [N,28,28,1]."""
    it = interpreter(path, ref)
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    q = quantize_input(xs, din)
    out = np.empty((len(xs), 10), dout["dtype"])
    for i in range(len(xs)):
        it.set_tensor(din["index"], q[i:i + 1])
        it.invoke()
        out[i] = it.get_tensor(dout["index"])[0]
    return out, q


def kiln_run(kiln, model, inputs, scratch, ref):
    """kiln's outputs [N,10] for int8 inputs [N,1,28,28,1] via `kiln run`."""
    os.makedirs(scratch, exist_ok=True)
    x_path, out_dir = os.path.join(scratch, "x.npy"), os.path.join(scratch, "out")
    res = []
    for x in inputs:
        np.save(x_path, x[None])
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [kiln, "run", model, "--input", x_path, "--output-dir", out_dir, "--threads", "1"]
        run(cmd + (["--ref"] if ref else []), capture_output=True)
        (name,) = os.listdir(out_dir)
        res.append(np.load(os.path.join(out_dir, name)).reshape(-1))
    return np.stack(res)


def differing_ops(kiln, model, inputs, scratch):
    """Where kiln run --ref and LiteRT BUILTIN_REF part: every op's output
    becomes a model output (a copy of the model), then each input's tensors
    are compared. Returns {"OP_NAME #index": images where it differs}."""
    from ai_edge_litert.tools import flatbuffer_utils
    m = flatbuffer_utils.read_model(model)
    sg = m.subgraphs[0]
    sg.outputs = np.array([op.outputs[0] for op in sg.operators], np.int32)
    exposed = os.path.join(scratch, "all_outputs.tflite")
    os.makedirs(scratch, exist_ok=True)
    flatbuffer_utils.write_model(m, exposed)
    it = interpreter(exposed, ref=True)
    din = it.get_input_details()[0]
    label = {op["outputs"][0]: f"{op['op_name']} #{op['index']}" for op in it._get_ops_details()}
    x_path, out_dir = os.path.join(scratch, "x.npy"), os.path.join(scratch, "out")
    where = {}
    for x in inputs:
        it.set_tensor(din["index"], x[None])
        it.invoke()
        np.save(x_path, x[None])
        shutil.rmtree(out_dir, ignore_errors=True)
        run([kiln, "run", exposed, "--input", x_path, "--output-dir", out_dir, "--ref"], capture_output=True)
        for d in it.get_output_details():
            got = np.load(os.path.join(out_dir, d["name"].replace("/", "_") + ".npy"))
            if not np.array_equal(got.reshape(-1), it.get_tensor(d["index"]).reshape(-1)):
                key = label.get(d["index"], d["name"])
                where[key] = where.get(key, 0) + 1
    return where


# ---------------------------------------------------------------- parameters

def op_table(path):
    """[(op name, output tensor detail, weight tensor detail or None)] in execution order."""
    it = interpreter(path, ref=True)  # no delegate: every op listed
    details = {d["index"]: d for d in it.get_tensor_details()}
    rows = []
    for op in it._get_ops_details():
        w = op["inputs"][1] if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else None
        rows.append((op["op_name"], details[op["outputs"][0]], details.get(w) if w is not None else None))
    inp = it.get_input_details()[0]
    return [("input", inp, None)] + rows


def qparams(d):
    qp = d["quantization_parameters"]
    return np.asarray(qp["scales"], np.float64), np.asarray(qp["zero_points"], np.int64)


def fmt_scale(scales, zps):
    if len(scales) == 0:
        return "float"
    if len(scales) == 1:
        return f"{scales[0]:.6g} / {zps[0]}"
    return f"{len(scales)} ch, {scales.min():.3g}..{scales.max():.3g}"


def param_section(tf_path, kiln_path, kiln_report):
    """Markdown comparing TF's and kiln's quantization parameters op by op."""
    a, b = op_table(tf_path), op_table(kiln_path)
    if [r[0] for r in a] != [r[0] for r in b]:
        return ["The two int8 models have different op sequences (TF: " + ", ".join(r[0] for r in a) +
                "; kiln: " + ", ".join(r[0] for r in b) + "), so their parameters are not tabled op by op.", ""]
    by_name = {t["name"]: t for t in kiln_report["tensors"]}
    lines = ["| op | TF output scale / zp | kiln output scale / zp | kiln / TF scale | kiln observed range | "
             "kiln chosen range | TF weight scales | kiln weight scales | kiln / TF weight scale (min..max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (op, ta, wa), (_, tb, wb) in zip(a, b):
        sa, za = qparams(ta)
        sb, zb = qparams(tb)
        ratio = f"{sb[0] / sa[0]:.4f}" if len(sa) == 1 and len(sb) == 1 else "n/a"
        r = by_name.get(tb["name"])
        obs = f"[{r['observed_min']:.4g}, {r['observed_max']:.4g}]" if r else ""
        chosen = f"[{r['range_min']:.4g}, {r['range_max']:.4g}]" + (" fixed" if r and r["fixed"] else "") if r else ""
        wcols = ["", "", ""]
        if wa is not None and wb is not None:
            swa, zwa = qparams(wa)
            swb, zwb = qparams(wb)
            wcols = [fmt_scale(swa, zwa), fmt_scale(swb, zwb), ""]
            if len(swa) == len(swb):
                q = swb / swa
                wcols[2] = f"{q.min():.4f}..{q.max():.4f}"
            else:
                wcols[2] = f"per-{'channel' if len(swa) > 1 else 'tensor'} (TF) vs per-" \
                           f"{'channel' if len(swb) > 1 else 'tensor'} (kiln)"
        lines.append(f"| {op} | {fmt_scale(sa, za)} | {fmt_scale(sb, zb)} | {ratio} | {obs} | {chosen} | "
                     + " | ".join(wcols) + " |")
    return lines + [""]


def ranges_section(reports):
    lines = ["| tensor | observed | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for i, t in enumerate(reports[METHODS[0]]["tensors"]):
        cells = []
        for m in METHODS:
            r = reports[m]["tensors"][i]
            span = t["observed_max"] - t["observed_min"]
            kept = (r["range_max"] - r["range_min"]) / span if span > 0 else 1.0
            cells.append(f"[{r['range_min']:.4g}, {r['range_max']:.4g}] ({100 * kept:.0f}%)")
        name = t["name"] if len(t["name"]) <= 48 else t["name"][:45] + "..."
        lines.append(f"| `{name}` | [{t['observed_min']:.4g}, {t['observed_max']:.4g}] | " + " | ".join(cells) + " |")
    return lines + [""]


# ---------------------------------------------------------------- SSD timing

def ssd_frames(photos, work, root):
    """100 frames of vtest.avi as JPEG; returns (folder, commands)."""
    fetch = [os.path.join(root, "scripts", "fetch-photos"), photos]
    run(fetch, stdout=sys.stderr)
    frames = os.path.join(work, "frames")
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-y", "-i", os.path.join(photos, "vtest.avi"), "-vf",
              f"select=not(mod(n\\,{SSD_FRAME_STEP}))", "-vsync", "vfr", "-frames:v", str(SSD_FRAMES), "-q:v", "3",
              os.path.join(frames, "vtest_%03d.jpg")]
    if not os.path.isdir(frames) or len(os.listdir(frames)) != SSD_FRAMES:
        shutil.rmtree(frames, ignore_errors=True)
        os.makedirs(frames)
        run(ffmpeg)
        if len(os.listdir(frames)) != SSD_FRAMES:
            sys.exit(f"quant: ffmpeg made {len(os.listdir(frames))} frames in {frames}, not {SSD_FRAMES}")
    return frames, [fetch, ffmpeg]


def time_ssd(kiln, ssd, frames, work, runs):
    out = os.path.join(work, "ssd_int8.tflite")
    cmd = [kiln, "quantize", ssd, "--calib", frames, "--calib-count", str(SSD_FRAMES), "--holdout", "0",
           "--out", out]
    walls, lines = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"quant: {' '.join(cmd)} failed:\n{r.stderr}")
        lines.append(r.stderr.strip().splitlines()[0])
        log(f"SSD quantize run {i + 1}/{runs}: {walls[-1]:.1f} s")
    return cmd, walls, lines


# ---------------------------------------------------------------- report

def versions(kiln):
    from importlib.metadata import version
    v = {"python": platform.python_version()}
    for key in ("tensorflow-cpu", "keras", "ai-edge-litert", "numpy"):
        try:
            v[key] = version(key)
        except Exception:
            v[key] = "not installed"
    v["kiln"] = subprocess.run([kiln, "--version"], capture_output=True, text=True).stdout.strip().split()[-1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read-only: no index refresh
    head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          env=env).stdout.strip()
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, env=env).stdout.strip()
    v["kiln commit"] = (head + ("-dirty" if dirty else "")) or "unknown"
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True)
    v["cc"] = cc.stdout.splitlines()[0] if cc.stdout else "unknown"
    v[DATASET_PACKAGE] = run(["dpkg-query", "-W", "-f", "${Version}", DATASET_PACKAGE], capture_output=True,
                             text=True).stdout
    return v


def shell(cmd):
    return " ".join(c if c and all(ch.isalnum() or ch in "-_./=:,+" for ch in c) else f"'{c}'" for c in cmd)


def pct(x):
    return f"{100 * x:.2f}%"


def link_results(results):
    """Adds the link to QUANT.md to a RESULTS.md written before bench.py made it."""
    if not os.path.exists(results):
        return
    with open(results) as f:
        text = f.read()
    if "QUANT.md" not in text:
        atomic_write(results, text.rstrip("\n") + "\n\n" + "\n".join(QUANT_LINK) + "\n")
        log(f"linked QUANT.md from {results}")


# Kept identical to the section bench.py writes at the end of RESULTS.md.
QUANT_LINK = ["## Quantizer", "",
              "Accuracy against TensorFlow's quantizer and the time to quantize the SSD: `bench/quant.sh` "
              "writes [QUANT.md](QUANT.md)."]


def main():
    p = argparse.ArgumentParser(description="kiln quantize vs TensorFlow's quantizer; writes QUANT.md")
    p.add_argument("--kiln", required=True)
    p.add_argument("--work", required=True, help="scratch folder for models, samples and frames")
    p.add_argument("--ssd", required=True, help="the shared float SSD .tflite")
    p.add_argument("--photos", required=True, help="scripts/fetch-photos destination (holds vtest.avi)")
    p.add_argument("--out", required=True)
    p.add_argument("--results", help="RESULTS.md to link QUANT.md from")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--check", type=int, default=300, help="test images run through `kiln run` per kiln model")
    p.add_argument("--runs", type=int, default=3, help="timed SSD quantizations (median reported)")
    a = p.parse_args()
    t_start = time.time()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = os.path.join(a.work, "fashion")
    os.makedirs(work, exist_ok=True)
    mach = machine()

    files = ensure_dataset()
    x_train, y_train, x_test, y_test = load_fashion_mnist(files)
    saved, float_path, meta = train_float(work, a.epochs, x_train, y_train)

    pick = np.random.default_rng(SEED).permutation(len(x_train))[:CALIB_IMAGES + HOLDOUT_IMAGES]
    samples = x_train[pick]
    npy_dir = os.path.join(work, "calib")
    write_calibration(npy_dir, samples)
    tf_path = os.path.join(work, "fashion_tf_int8.tflite")
    tf_int8(saved, samples[:CALIB_IMAGES], tf_path)
    kiln_models, kiln_cmds, kiln_reports = {}, {}, {}
    for m in METHODS:
        kiln_models[m] = os.path.join(work, f"fashion_kiln_{m}.tflite")
        rep = os.path.join(work, f"fashion_kiln_{m}.json")
        kiln_cmds[m] = kiln_int8(a.kiln, float_path, npy_dir, m, kiln_models[m], rep)
        with open(rep) as f:
            kiln_reports[m] = json.load(f)

    log(f"evaluating on {len(x_test)} test images")
    models = {"float": float_path, "TF int8": tf_path, **{f"kiln int8 {m}": kiln_models[m] for m in METHODS}}
    preds, ties = {}, {}
    for name, path in models.items():
        out, _ = outputs(path, x_test)
        preds[name] = out.argmax(1)
        ties[name] = int(((out == out.max(1, keepdims=True)).sum(1) > 1).sum())
    acc = {n: float((p == y_test).mean()) for n, p in preds.items()}

    log(f"checking {a.check} test images through kiln run per kiln model")
    check = {}
    for m in METHODS:
        ref, q = outputs(kiln_models[m], x_test[:a.check], ref=True)
        xnn, _ = outputs(kiln_models[m], x_test[:a.check])
        scratch = os.path.join(work, "run")
        fast = kiln_run(a.kiln, kiln_models[m], q, scratch, ref=False)
        slow = kiln_run(a.kiln, kiln_models[m], q, scratch, ref=True)
        bad = [i for i in range(len(q)) if not (slow[i] == ref[i]).all()]
        where = differing_ops(a.kiln, kiln_models[m], q[bad[:20]], scratch) if bad else {}
        check[m] = {
            "where": where,
            "fast_exact": int((fast == ref).all(1).sum()), "ref_exact": int((slow == ref).all(1).sum()),
            "xnn_exact": int((xnn == ref).all(1).sum()),
            "fast_max_diff": int(np.abs(fast.astype(np.int32) - ref.astype(np.int32)).max()),
            "ref_max_diff": int(np.abs(slow.astype(np.int32) - ref.astype(np.int32)).max()),
            "top1": int((fast.argmax(1) == preds[f"kiln int8 {m}"][:a.check]).sum()),
        }

    frames, frame_cmds = ssd_frames(a.photos, a.work, root)
    load_before = os.getloadavg()
    ssd_cmd, walls, ssd_lines = time_ssd(a.kiln, a.ssd, frames, a.work, a.runs)
    median = statistics.median(walls)

    # ------------------------------------------------------------ QUANT.md
    v = versions(a.kiln)
    tf_acc = acc["TF int8"]
    L = ["# kiln quantizer: accuracy anchor and speed", "",
         "Generated by `bench/quant.sh` (do not edit by hand; rerun it). A benchmark, not a test.", "",
         "## Machine", "",
         f"- CPU: {mach['cpu']}, {mach['cores']} cores{' (virtual machine)' if mach['hypervisor'] else ''}, "
         f"Linux {mach['kernel']}",
         f"- load average at start: {' '.join(f'{x:.2f}' for x in mach['load'])}; before the SSD timing: "
         f"{' '.join(f'{x:.2f}' for x in load_before)} (above ~0.5 means other work shared the cores)",
         f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
         "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items()), "",
         "## Accuracy anchor: Fashion-MNIST", "",
         f"TensorFlow's 2-conv tutorial CNN (Conv 32 3x3 ReLU, MaxPool 2, Conv 64 3x3 ReLU, MaxPool 2, Flatten, "
         f"Dense 128 ReLU, Dense 10) trained by Keras from seed {SEED} for {a.epochs} epochs (batch {BATCH}, Adam, "
         f"{meta['train_s']:.0f} s, final training accuracy {pct(meta['train_accuracy'])}) on the 60,000 training "
         f"images of Debian's `{DATASET_PACKAGE}` (`{os.path.dirname(files['t10k-images-idx3-ubyte'])}`). "
         "Input [1,28,28,1] float32 = pixel / 255; output the 10 logits (no softmax), so the last layer's "
         "output range is calibrated rather than fixed by the spec. The float .tflite and TensorFlow's int8 model "
         "both come from one SavedModel of the trained network; kiln quantizes the float .tflite.", "",
         f"Both quantizers calibrate on the same {CALIB_IMAGES} training images (a seed-{SEED} permutation's "
         f"first {CALIB_IMAGES}), given to kiln as float32 .npy files holding exactly the values of TensorFlow's "
         f"representative dataset; {HOLDOUT_IMAGES} further training images follow them in the folder for kiln's "
         "held-out SQNR. Accuracy is top-1 on all 10,000 test images with LiteRT's `Interpreter` (default "
         "resolver); an int8 model gets its own input quantization of the same float values.", "",
         "| model | test accuracy | minus TF int8 (points) | minus float (points) | top-1 agrees with float | "
         "test images whose top logit is tied | kiln held-out SQNR (dB) | target (>= TF int8 - 0.2 points) |",
         "|---|---|---|---|---|---|---|---|"]
    for name in models:
        d_tf, d_f = 100 * (acc[name] - tf_acc), 100 * (acc[name] - acc["float"])
        agree = pct(float((preds[name] == preds["float"]).mean())) if name != "float" else ""
        sq, verdict = "", ""
        if name.startswith("kiln"):
            m = name.split()[-1]
            sq = f"{kiln_reports[m]['outputs'][0]['sqnr_db']:.2f}" if kiln_reports[m]["outputs"] else "n/a"
            verdict = "pass" if acc[name] >= tf_acc - TARGET_POINTS / 100 - 1e-12 else "FAIL"
        L.append(f"| {name} | {pct(acc[name])} | {d_tf:+.2f} | {d_f:+.2f} | {agree} | {ties[name]} | {sq} | "
                 f"{verdict} |")
    L += ["", f"kiln's int8 models are also run through `kiln run` on the first {a.check} test images (kiln's "
          "default kernels, then `--ref`) and compared with LiteRT's reference kernels "
          "(`experimental_op_resolver_type=BUILTIN_REF`) on the same int8 inputs:", "",
          "| kiln model | kiln run = LiteRT BUILTIN_REF (bit-identical logits) | kiln run --ref = BUILTIN_REF | "
          "LiteRT default (XNNPACK) = BUILTIN_REF | kiln run top-1 = LiteRT's | ops whose output differs "
          "(kiln --ref vs BUILTIN_REF, in how many of the first 20 differing images) |",
          "|---|---|---|---|---|---|"]
    for m in METHODS:
        c = check[m]
        extra = lambda k: "" if c[k] == 0 else f" (max diff {c[k]})"  # noqa: E731
        where = "; ".join(f"{k} in {v}" for k, v in c["where"].items()) or "-"
        L.append(f"| {m} | {c['fast_exact']}/{a.check}{extra('fast_max_diff')} | "
                 f"{c['ref_exact']}/{a.check}{extra('ref_max_diff')} | {c['xnn_exact']}/{a.check} | "
                 f"{c['top1']}/{a.check} | {where} |")
    L += ["", "Activation ranges kiln chose by method (from `--report`; observed = min/max over the "
          f"{CALIB_IMAGES} calibration inputs; pooling and reshape share their input's parameters, so a group "
          "takes the union of its members' ranges):", ""] + ranges_section(kiln_reports)
    L += ["Quantization parameters op by op (TF int8 vs kiln minmax; scale / zero point; weight scales per "
          "output channel where there are several):", ""]
    L += param_section(tf_path, kiln_models["minmax"], kiln_reports["minmax"])
    L += ["Commands (paths relative to the repository; `bench/models/quant/` is git-ignored scratch):", "",
          "```sh"]
    rel = lambda c: shell(c).replace(root + "/", "")  # noqa: E731
    L += [rel(kiln_cmds[m]) for m in METHODS]
    L += ["```", "",
          "TensorFlow: `TFLiteConverter.from_saved_model`, `optimizations = [Optimize.DEFAULT]`, "
          "`representative_dataset` = the same 500 inputs, `supported_ops = [TFLITE_BUILTINS_INT8]`, "
          "`inference_input_type = inference_output_type = tf.int8`.", "",
          "## Quantization time: shared SSD MobileNet V2", "",
          f"`kiln quantize` of `{os.path.basename(a.ssd)}` calibrated on {SSD_FRAMES} frames of OpenCV's "
          f"pedestrian video (every {SSD_FRAME_STEP}th frame of vtest.avi, 768x576 JPEG), no held-out evaluation, "
          f"default threads (all {mach['cores']} cores); wall clock of the whole process, {a.runs} runs.", "",
          "```sh"] + [rel(c) for c in frame_cmds] + [rel(ssd_cmd), "```", "",
          f"Runs: {', '.join(f'{w:.1f} s' for w in walls)}; median **{median:.1f} s**. kiln's own account of "
          f"each: " + "; ".join(f"`{line.replace(root + '/', '')}`" for line in ssd_lines) + ".", "",
          "## Targets", "", "| target | measured | result |", "|---|---|---|"]
    mm = acc["kiln int8 minmax"]
    L.append(f"| kiln int8 accuracy (default minmax) >= TF int8 - {TARGET_POINTS} points | "
             f"{pct(mm)} vs {pct(tf_acc)} ({100 * (mm - tf_acc):+.2f}) | "
             f"{'pass' if mm >= tf_acc - TARGET_POINTS / 100 - 1e-12 else 'FAIL'} |")
    for m in METHODS[1:]:
        am = acc[f"kiln int8 {m}"]
        L.append(f"| kiln int8 accuracy ({m}) >= TF int8 - {TARGET_POINTS} points | {pct(am)} vs {pct(tf_acc)} "
                 f"({100 * (am - tf_acc):+.2f}) | {'pass' if am >= tf_acc - TARGET_POINTS / 100 - 1e-12 else 'FAIL'} |")
    L.append(f"| SSD quantization ({SSD_FRAMES} frames) < {SSD_TARGET_S:.0f} s | {median:.1f} s | "
             f"{'pass' if median < SSD_TARGET_S else 'FAIL'} |")
    L += ["", f"Benchmark wall time: {time.time() - t_start:.0f} s.", ""]
    atomic_write(a.out, "\n".join(L))
    log(f"wrote {a.out}")
    if a.results:
        link_results(a.results)


if __name__ == "__main__":
    main()
