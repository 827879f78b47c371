"""End-to-end detection checks against independent implementations:

1. `kiln detect --json` (built-in defaults: the shared SSD on the shared
   photo) finds the person, and its detections match a numpy
   reimplementation of the SSD box coding (from ../shared/models/README.md:
   anchors, box coder, sigmoid scores, IoU NMS) applied to LiteRT's raw
   outputs on the same image (decoded with Pillow).
2. `kiln convert --add-postprocess ssd` writes a model that LiteRT loads and
   runs; LiteRT's TFLite_Detection_PostProcess outputs on it agree with
   kiln's on the same input, and with the numpy decoding; `kiln detect` on
   the converted model reports the same person.
3. Bad input gets a clear error and a non-zero exit.
"""
import json
import os
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin, run_kiln, litert

need_reference()
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SSD = "ssd_mobilenet_v2_oidv4_fp16.tflite"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def anchors_300():
    """TF Object Detection API create_ssd_anchors for the shared SSD."""
    n, min_s, max_s = 6, 0.2, 0.95
    ratios = [1.0, 2.0, 0.5, 3.0, 0.3333]
    maps = [19, 10, 5, 3, 2, 1]
    scales = [min_s + (max_s - min_s) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer in range(n):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], a) for a in ratios]
            specs.append((np.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        fm = maps[layer]
        for y in range(fm):
            for x in range(fm):
                for scale, aspect in specs:
                    out.append(((y + 0.5) / fm, (x + 0.5) / fm,
                                scale / np.sqrt(aspect), scale * np.sqrt(aspect)))
    return np.array(out, dtype=np.float64)


def decode(enc, logits, anchors, thr=0.5, iou_thr=0.4):
    yc = enc[:, 0] / 10 * anchors[:, 2] + anchors[:, 0]
    xc = enc[:, 1] / 10 * anchors[:, 3] + anchors[:, 1]
    h = np.exp(enc[:, 2] / 5) * anchors[:, 2]
    w = np.exp(enc[:, 3] / 5) * anchors[:, 3]
    boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    scores = 1 / (1 + np.exp(-logits[:, 1:].astype(np.float64)))
    cls = scores.argmax(axis=1)
    best = scores.max(axis=1)
    order = [i for i in np.argsort(-best, kind="stable") if best[i] >= thr]
    keep = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            ih = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            iw = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = ih * iw
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union > iou_thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return [(int(cls[i]) + 1, float(best[i]), boxes[i]) for i in keep]


def preprocess(path, size=300):
    """Pillow decode, half-pixel-centre bilinear resize to uint8, [-1, 1]."""
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    H, W, _ = img.shape

    def coords(n_out, n_in):
        c = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        c = np.clip(c, 0, n_in - 1)
        lo = np.floor(c).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, c - lo

    y0, y1, fy = coords(size, H)
    x0, x1, fx = coords(size, W)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bot = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    out = np.clip(np.floor(out + 0.5), 0, 255)
    return (out / 127.5 - 1.0).astype(np.float32)[None], W, H


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


def main():
    model = os.path.join(models_dir(), SSD)
    photo = os.path.join(models_dir(), "..", "images", "astronaut.png")

    # 1. Built-in default run against the numpy decoding of LiteRT's outputs.
    r = kiln("detect", "--json")
    check(r.returncode == 0, f"kiln detect (defaults) exits 0 ({r.stderr.strip()})")
    got = json.loads(r.stdout) if r.returncode == 0 else {"detections": [], "image": {}}
    check(got["image"] == {"width": 512, "height": 512}, "image size reported as 512x512")
    people = [d for d in got["detections"] if d["label"] == "Person"]
    check(len(people) >= 1, "kiln detect finds the person in astronaut.png")

    x, W, H = preprocess(photo)
    enc, logits = [o[0] for o in run_litert_raw(model, x)]
    ref = decode(enc, logits, anchors_300())
    check(len(ref) == len(got["detections"]),
          f"same number of detections as the numpy reference ({len(ref)} vs {len(got['detections'])})")
    for (cls, score, box), d in zip(ref, got["detections"]):
        px = [box[1] * W, box[0] * H, box[3] * W, box[2] * H]
        kb = [d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")]
        check(d["class_id"] == cls and abs(d["score"] - score) < 0.01 and
              max(abs(a - b) for a, b in zip(px, kb)) < 2.0,
              f"detection {d['label']} {d['score']:.3f} {np.round(kb, 1).tolist()} matches numpy "
              f"class {cls} {score:.3f} {np.round(px, 1).tolist()}")

    # 2. Post-processed model: LiteRT runs it; kiln and LiteRT agree.
    with tempfile.TemporaryDirectory() as tmp:
        pp = os.path.join(tmp, "ssd_pp.tflite")
        r = kiln("convert", model, "--add-postprocess", "ssd", "--out", pp)
        check(r.returncode == 0, f"kiln convert --add-postprocess ssd ({r.stderr.strip()})")
        it = litert(pp, ref=False)
        det = it.get_input_details()[0]
        it.set_tensor(det["index"], x)
        it.invoke()
        outs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
        names = [d["name"] for d in it.get_output_details()]
        check(len(outs) == 4, f"post-processed model has 4 outputs {names}")
        kouts, err = run_kiln(pp, [(det["name"], x)], names)
        check(kouts is not None, f"kiln runs the post-processed model ({err})")
        if kouts is not None:
            n = int(outs[3][0])
            check(int(kouts[3][0]) == n, f"count equal ({int(kouts[3][0])} vs LiteRT {n})")
            check(np.array_equal(kouts[1][0, :n], outs[1][0, :n]), "classes equal")
            check(np.allclose(kouts[2][0, :n], outs[2][0, :n], atol=1e-6), "scores equal")
            check(np.allclose(kouts[0][0, :n], outs[0][0, :n], atol=1e-5), "boxes equal")
            for i, (cls, score, box) in enumerate(ref[:n]):
                check(int(outs[1][0, i]) + 1 == cls and abs(outs[2][0, i] - score) < 1e-3 and
                      np.abs(outs[0][0, i] - box).max() < 1e-3,
                      f"LiteRT post-process detection {i} matches the numpy decoding")
        r = kiln("detect", pp, photo, "--json", "--labels", os.path.join(models_dir(), "oidv4_labels.txt"))
        check(r.returncode == 0, f"kiln detect on the post-processed model ({r.stderr.strip()})")
        if r.returncode == 0:
            pdets = json.loads(r.stdout)["detections"]
            check([d["label"] for d in pdets] == [d["label"] for d in got["detections"]] and
                  all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(pdets, got["detections"])),
                  "post-processed model gives the raw model's detections")

        # 3. Bad input: clear errors, non-zero exit, no crash.
        junk = os.path.join(tmp, "junk.png")
        with open(junk, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
        r = kiln("detect", model, junk)
        check(r.returncode == 1 and "junk.png" in r.stderr, f"corrupt image refused: {r.stderr.strip()}")
        trunc = os.path.join(tmp, "trunc.tflite")
        with open(model, "rb") as f:
            data = f.read()
        with open(trunc, "wb") as f:
            f.write(data[: len(data) // 3])
        r = kiln("detect", trunc, photo)
        check(r.returncode == 1 and "trunc.tflite" in r.stderr, f"truncated model refused: {r.stderr.strip()}")
        r = kiln("detect", model, photo, "--max-pixels", "1000")
        check(r.returncode == 1 and "1000" in r.stderr, f"pixel limit enforced: {r.stderr.strip()}")
        r = kiln("detect", model, photo, "--threshold", "abc")
        check(r.returncode == 2, f"bad flag value is a usage error: {r.stderr.strip()}")
        face = os.path.join(models_dir(), "hand_landmark_lite.tflite")
        r = kiln("detect", face, photo)
        check(r.returncode == 1 and "not a detection model" in r.stderr,
              f"non-detection model refused: {r.stderr.strip()}")

    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


def run_litert_raw(model, x):
    it = litert(model)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    d = {o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()}
    return [d["raw_outputs/box_encodings"], d["raw_outputs/class_predictions"]]


main()
