"""On-device learning end to end (kiln imprint, kiln retrain-last), checked in
LiteRT on held-out images made from real pictures:

1. A 10-class dataset: ten photo stamps of Debian's tuxpaint-stamps-default
   (fetched and cached as scripts/make-detection-dataset does) pasted on
   real photos (scripts/fetch-photos), 20 training and 5 test images of
   300x300 per class. Each image draws its own background crop (blurred,
   as behind an object photographed up close), stamp size (50-85% of the
   side), position, mirror, rotation (+-15 degrees) and brightness; test
   images use the held-out photos (fetch-photos' holdout/) as backgrounds,
   so no test image shares a background with training. (Sharp backgrounds
   dominate the globally pooled features: nearest-centroid accuracy of the
   float embeddings is then about 0.3, with blur about 0.8.)
2. `kiln convert --embedding-extractor` cuts the shared SSD's MobileNet V2
   at its last feature map (+ MEAN + L2_NORMALIZATION); `kiln quantize`
   makes it int8 (calibrated on the training images).
3. `kiln imprint` and `kiln retrain-last` on it: both outputs load in LiteRT,
   are full integer (int8 input and scores), carry the labels, and classify
   the 50 held-out images with accuracy >= 0.6 in LiteRT (the default
   resolver): chance is 0.1, and 0.6 means 30 of 50 right, far out of
   chance's reach (P(>= 30 | p = 0.1) < 1e-15) while leaving room under
   what the features give here (about 0.8). kiln's own test-split figure
   (its report) agrees with LiteRT's within 2 images.
4. Bit for bit: for 3 held-out images both models' scores (and the
   extractor's embedding) in LiteRT's reference kernels equal kiln's.
5. --keep-classes: imprinting 5 classes, then the other 5 with
   --keep-classes, gives a 10-class model whose first 5 weight rows are the
   5-class model's and that classifies all 50 held-out images >= 0.6.
6. A float extractor works too (float new layers), >= 0.6 in LiteRT.
7. Bad inputs fail with a message and a non-zero exit, writing nothing: a
   model without L2_NORMALIZATION, an empty class folder, an unreadable
   image, --out in a missing directory, --keep-classes on an extractor.
"""
import importlib.machinery
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

from common import need_reference, kiln_bin, litert, models_dir, run_kiln

need_reference()
import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance, ImageFilter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
FEATURE = "FeatureExtractor/MobilenetV2/Conv_1/Relu6"
STAMPS = ["crow", "ostrich", "pink_flamingo", "owl", "clownfish", "lobster", "banana",
          "pineapple", "elephant", "giraffe"]
TRAIN, TEST, SIDE = 20, 5, 300
BAR = 0.6
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


def make_images(root):
    """DIR/train/<stamp>/*.png and DIR/test/<stamp>/*.png."""
    tmp = tempfile.gettempdir()
    mdd = importlib.machinery.SourceFileLoader(
        "make_detection_dataset", os.path.join(SCRIPTS, "make-detection-dataset")).load_module()
    stamps = mdd.fetch_stamps(os.environ.get("KILN_STAMPS", os.path.join(tmp, "kiln-stamps")))
    photos = mdd.fetch_photos(os.environ.get("KILN_PHOTOS", os.path.join(tmp, "kiln-photos")))
    paths = {os.path.splitext(os.path.basename(p))[0]: p for files in stamps.values() for p in files}
    missing = [s for s in STAMPS if s not in paths]
    if missing:
        print(f"FAIL: stamps not found: {missing}")
        sys.exit(1)
    rng = random.Random(0)
    for split, n in (("train", TRAIN), ("test", TEST)):
        stills, frames = photos["train" if split == "train" else "test"]
        for name in STAMPS:
            stamp = Image.open(paths[name]).convert("RGBA")
            os.makedirs(os.path.join(root, split, name))
            for i in range(n):
                bg = mdd.background(rng, stills, frames, SIDE, SIDE).filter(ImageFilter.GaussianBlur(6))
                side = rng.uniform(0.5, 0.85) * SIDE
                s = stamp.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=True)
                k = side / max(s.size)
                s = s.resize((max(1, round(s.width * k)), max(1, round(s.height * k))),
                             Image.BILINEAR)
                if rng.random() < 0.5:
                    s = s.transpose(Image.FLIP_LEFT_RIGHT)
                bg.paste(s, (rng.randint(0, SIDE - s.width), rng.randint(0, SIDE - s.height)), s)
                bg = ImageEnhance.Brightness(bg).enhance(rng.uniform(0.75, 1.25))
                bg.save(os.path.join(root, split, name, f"{i:02d}.png"), compress_level=1)


def test_images(root, classes):
    return [(os.path.join(root, "test", c, f), c) for c in classes
            for f in sorted(os.listdir(os.path.join(root, "test", c)))]


def model_input(it, path):
    """The input kiln feeds (kiln_image_to_tensor): images are already the
    model's size; real = (x - mean) / std with the convention of
    kiln_image_norm_for_input (int8: mean zp + 128, std 1 / scale), or the
    float extractor's (127.5, 127.5), then quantized as TFLite's QUANTIZE."""
    d = it.get_input_details()[0]
    x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)[None]
    if d["dtype"] == np.float32:
        return (x - np.float32(127.5)) / np.float32(127.5)
    scale, zp = d["quantization"]
    real = (x - np.float32(zp + 128)) / np.float32(1.0 / np.float32(scale))
    q = np.round(real / np.float32(scale)) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def litert_accuracy(model, images):
    it = litert(model, ref=False)
    with open(os.path.join(os.path.dirname(model), "labels.txt")) as f:
        labels = f.read().split("\n")[:-1]
    out = it.get_output_details()[0]
    right = 0
    for path, cls in images:
        it.set_tensor(it.get_input_details()[0]["index"], model_input(it, path))
        it.invoke()
        right += labels[int(np.argmax(it.get_tensor(out["index"])[0]))] == cls
    return right / len(images), labels, out["dtype"]


def bit_exact(model, images, what):
    it = litert(model, ref=True)
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    same = True
    for path, _ in images:
        x = model_input(it, path)
        it.set_tensor(ind["index"], x)
        it.invoke()
        ref = it.get_tensor(outd["index"])
        got, err = run_kiln(model, [(ind["name"], x)], [outd["name"]])
        if got is None:
            check(False, f"{what}: kiln run failed: {err}")
            return
        same &= ref.dtype == got[0].dtype and np.array_equal(ref, got[0])
    check(same, f"{what}: kiln's outputs equal LiteRT's reference kernels bit for bit "
                f"({len(images)} held-out images)")


def learn(cmd, model, data, out, *extra):
    r = kiln(cmd, "--model", model, "--data", data, "--out", out, "--json", *extra)
    if r.returncode != 0:
        check(False, f"kiln {cmd}: {r.stderr.strip()}")
        return None
    rep = json.loads(r.stdout)
    t = rep["timing_seconds"]
    print(f"     kiln {cmd}: {rep['train_images']} images, {rep['classes']} classes, "
          f"extraction {t['extraction']:.3f} s, learning {t['learning']:.4f} s, "
          f"kiln test accuracy {rep['test_accuracy']}")
    return rep


def subset(root, dest, classes):
    for split in ("train", "test"):
        for c in classes:
            shutil.copytree(os.path.join(root, split, c), os.path.join(dest, split, c))


def bad_inputs(tmp, data, ext8):
    def fails(args, words, what):
        out = args[args.index("--out") + 1]
        r = kiln(*args)
        msg = r.stderr.strip()
        ok = r.returncode not in (0, None) and r.returncode < 128 and all(w in msg for w in words)
        check(ok and not os.path.exists(out), f"{what}: exit {r.returncode}, '{msg}'")

    small = os.path.join(tmp, "small")
    for c in STAMPS[:2]:
        os.makedirs(os.path.join(small, c))
        for f in sorted(os.listdir(os.path.join(data, "train", c)))[:3]:
            shutil.copy(os.path.join(data, "train", c, f), os.path.join(small, c))
    out = os.path.join(tmp, "bad", "m.tflite")
    os.makedirs(os.path.dirname(out))
    ssd = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
    fails(["imprint", "--model", ssd, "--data", small, "--out", out],
          ["L2_NORMALIZATION", "embedding extractor"], "a model without an L2-normalized embedding")
    empty = os.path.join(tmp, "empty")
    shutil.copytree(small, empty)
    os.makedirs(os.path.join(empty, "zebra"))
    fails(["retrain-last", "--model", ext8, "--data", empty, "--out", out],
          ["zebra", "no training images"], "an empty class folder")
    broken = os.path.join(tmp, "broken")
    shutil.copytree(small, broken)
    with open(os.path.join(broken, STAMPS[1], "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nnot really a png")
    fails(["imprint", "--model", ext8, "--data", broken, "--out", out],
          ["corrupt.png"], "a class with an unreadable image")
    fails(["imprint", "--model", ext8, "--data", small, "--out", os.path.join(tmp, "nowhere", "m.tflite")],
          ["nowhere", "does not exist"], "--out in a missing directory")
    fails(["imprint", "--model", ext8, "--data", small, "--out", out, "--keep-classes"],
          ["--keep-classes", "imprinting classifier"], "--keep-classes on an extractor")


def main():
    tmp = tempfile.mkdtemp(prefix="kiln-ondevice-")
    try:
        data = os.path.join(tmp, "data")
        make_images(data)
        ssd = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
        ext_f = os.path.join(tmp, "extractor_float.tflite")
        ext8 = os.path.join(tmp, "extractor_int8.tflite")
        r = kiln("convert", ssd, "--embedding-extractor", "--feature-tensor", FEATURE, "--out", ext_f)
        check(r.returncode == 0, f"kiln convert --embedding-extractor {r.stderr.strip()}")
        r = kiln("quantize", ext_f, "--calib", os.path.join(data, "train"), "--calib-count", "60",
                 "--holdout", "5", "--out", ext8)
        check(r.returncode == 0, f"kiln quantize of the extractor {r.stderr.strip()[-300:]}")
        if failures:
            return
        held = test_images(data, STAMPS)
        for cmd in ("imprint", "retrain-last"):
            out = os.path.join(tmp, cmd, "model.tflite")
            os.makedirs(os.path.dirname(out))
            rep = learn(cmd, ext8, data, out)
            if not rep:
                continue
            acc, labels, dtype = litert_accuracy(out, held)
            check(labels == sorted(STAMPS), f"{cmd}: labels.txt lists the 10 classes")
            check(dtype == np.int8, f"{cmd}: int8 scores")
            check(acc >= BAR, f"{cmd}: LiteRT held-out accuracy {acc:.2f} >= {BAR} (chance 0.1)")
            check(abs(acc - rep["test_accuracy"]) <= 2 / len(held) + 1e-9,
                  f"{cmd}: kiln's test accuracy {rep['test_accuracy']:.2f} agrees with LiteRT's")
            check(rep["train_images"] == 10 * TRAIN and rep["test_images"] == 10 * TEST
                  and rep["classes"] == 10, f"{cmd}: report counts")
            bit_exact(out, held[::17][:3], cmd)
        bit_exact(ext8, held[:2], "int8 extractor")

        # --keep-classes: 5, then 5 more
        first, second = os.path.join(tmp, "first"), os.path.join(tmp, "second")
        subset(data, first, STAMPS[:5])
        subset(data, second, STAMPS[5:])
        m5, m10 = os.path.join(tmp, "k5", "model.tflite"), os.path.join(tmp, "k10", "model.tflite")
        os.makedirs(os.path.dirname(m5))
        os.makedirs(os.path.dirname(m10))
        rep5 = learn("imprint", ext8, first, m5)
        rep10 = learn("imprint", m5, second, m10, "--keep-classes")
        if rep5 and rep10:
            check(rep10["kept_classes"] == 5 and rep10["new_classes"] == 5 and rep10["classes"] == 10,
                  "--keep-classes: 5 kept + 5 new")
            acc, labels, _ = litert_accuracy(m10, held)
            check(labels == sorted(STAMPS[:5]) + sorted(STAMPS[5:]),
                  "--keep-classes: labels are the old 5 then the new 5")
            check(acc >= BAR, f"--keep-classes: LiteRT accuracy on all 10 classes {acc:.2f} >= {BAR}")

            def rows(path):
                it = litert(path, ref=False)
                d = [t for t in it.get_tensor_details() if t["name"] == "classifier/weights"][0]
                return it.get_tensor(d["index"])
            check(np.array_equal(rows(m10)[:5], rows(m5)), "--keep-classes: the kept rows are unchanged")
            bit_exact(m10, held[::23][:2], "--keep-classes model")

        # a float extractor gives a float classifier
        outf = os.path.join(tmp, "float", "model.tflite")
        os.makedirs(os.path.dirname(outf))
        if learn("imprint", ext_f, data, outf):
            acc, _, dtype = litert_accuracy(outf, held)
            check(dtype == np.float32 and acc >= BAR,
                  f"imprint on the float extractor: float scores, LiteRT accuracy {acc:.2f} >= {BAR}")
        bad_inputs(tmp, data, ext8)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed")


main()
sys.exit(1 if failures else 0)
