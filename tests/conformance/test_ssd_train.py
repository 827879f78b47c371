"""SSD transfer learning end to end, checked against independent references:

1. scripts/make-detection-dataset builds the "small" dataset (real object
   photos from Debian's tuxpaint-stamps-default pasted on real photos, COCO
   JSON); tests/unit/test_ssd_train in driver mode retrains the shared SSD's
   predictors on its 32 training images (40 epochs, Adam lr 0.01, no
   augmentation, cached features: seconds) and writes the raw,
   post-processed float and int8 models and kiln's COCO metrics.
2. mAP@0.5 on the training images, recomputed with pycocotools from
   LiteRT's detections with the exported float model, is at least 0.5 and
   at least 0.3 above a trivial baseline (every image gets, for every class,
   that class's mean training box with score 1: it knows the classes' usual
   place and size but looks at nothing). 0.5 leaves a wide margin under what
   40 epochs reach here (about 0.9) while no model that has not learned the
   objects gets near it (the baseline scores under 0.01). It equals kiln's
   own figure (kiln_eval_detect on kiln's detections) within 0.02, and
   kiln's int8 model keeps at least 80% of it.
3. LiteRT loads and runs all three exported files: the raw model's outputs
   equal kiln's within 1e-3 relative to their range, the float
   post-processed model's detections scoring >= 0.1 match kiln's (count,
   classes; boxes and scores within 1e-3), and the int8 model runs
   bit-identically in LiteRT's reference kernels and kiln.
4. `kiln detect` with the float model and labels.txt names the right class
   at the right place (IoU >= 0.5) for at least 70% of the boxes of the
   first 16 training images.

usage: test_ssd_train.py TEST_SSD_TRAIN_BINARY
"""
import json
import os
import subprocess
import sys
import tempfile

from common import need_reference, kiln_bin, litert, run_kiln

need_reference()
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def make_dataset(dest):
    tmp = tempfile.gettempdir()
    photos = os.environ.get("KILN_PHOTOS", os.path.join(tmp, "kiln-photos"))
    stamps = os.environ.get("KILN_STAMPS", os.path.join(tmp, "kiln-stamps"))
    r = subprocess.run([sys.executable, os.path.join(SCRIPTS, "make-detection-dataset"), "small",
                        dest, "--seed", "0", "--photos", photos, "--cache", stamps],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL: make-detection-dataset: {r.stderr.strip()}")
        sys.exit(1)


def coco_split(data, split):
    with open(os.path.join(data, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def coco_map(gt, dets):
    """pycocotools' (mAP@[.5:.95], mAP@.5) of dets on ground truth gt."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io
    coco = COCO()
    coco.dataset = {"info": {}, **gt}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        if not dets:
            return 0.0, 0.0
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def mean_box_baseline(gt):
    """Each class's mean box (relative to the image) on every image, score 1."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    sums = {}
    for a in gt["annotations"]:
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        s = sums.setdefault(a["category_id"], np.zeros(5))
        s += [x / w, y / h, bw / w, bh / h, 1]
    dets = []
    for im in gt["images"]:
        for c, s in sums.items():
            x, y, bw, bh = s[:4] / s[4]
            w, h = im["width"], im["height"]
            dets.append({"image_id": im["id"], "category_id": c, "score": 1.0,
                         "bbox": [x * w, y * h, bw * w, bh * h]})
    return dets


def pixels(path, size=300):
    """The model input as kiln makes it: bilinear half-pixel resize (Pillow's
    BILINEAR on upscaling is the same filter), values (x - 127.5) / 127.5."""
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)[None] / 127.5 - 1.0


def litert_detections(model, gt, folder):
    """COCO detections of a post-processed model in LiteRT (score >= 0.01)."""
    it = litert(model, ref=False)
    inp = it.get_input_details()[0]
    outs = it.get_output_details()
    dets = []
    for im in gt["images"]:
        it.set_tensor(inp["index"], pixels(os.path.join(folder, im["file_name"])))
        it.invoke()
        boxes, classes, scores, count = (it.get_tensor(o["index"]) for o in outs)
        w, h = im["width"], im["height"]
        for k in range(int(count[0])):
            if scores[0, k] < 0.01:
                continue
            y0, x0, y1, x1 = np.clip(boxes[0, k], 0, 1) * [h, w, h, w]
            if x1 <= x0 or y1 <= y0:
                continue
            dets.append({"image_id": im["id"], "category_id": int(classes[0, k]) + 1,
                         "score": float(scores[0, k]),
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return dets


def compare_runs(model, x, what, exact):
    it = litert(model, ref=exact)
    d = it.get_input_details()[0]
    if d["dtype"] == np.int8:
        scale, zero = d["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    it.set_tensor(d["index"], x)
    it.invoke()
    names = [o["name"] for o in it.get_output_details()]
    ref = [it.get_tensor(o["index"]) for o in it.get_output_details()]
    got, err = run_kiln(model, [(d["name"], x)], names)
    if got is None:
        check(False, f"{what}: kiln runs it ({err})")
        return
    if exact:
        same = all(np.array_equal(r, g) for r, g in zip(ref, got))
        check(same, f"{what}: kiln == LiteRT reference kernels bit for bit")
    else:
        worst = max(float(np.max(np.abs(r - g)) / max(1.0, float(np.ptp(r))))
                    for r, g in zip(ref, got))
        check(worst <= 1e-3,
              f"{what}: kiln vs LiteRT largest difference {worst:.2e} of the range (<= 1e-3)")


def pp_match(model, x, what):
    """Float post-processed outputs: same count, classes and (within 1e-3) boxes and scores."""
    it = litert(model, ref=False)
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x)
    it.invoke()
    names = [o["name"] for o in it.get_output_details()]
    ref = [it.get_tensor(o["index"]) for o in it.get_output_details()]
    got, err = run_kiln(model, [(d["name"], x)], names)
    if got is None:
        check(False, f"{what}: kiln runs it ({err})")
        return
    n = int(ref[3][0])
    # Compare the detections scoring >= 0.1: lower ones may swap places on near-ties.
    keep = int(np.sum(ref[2][0, :n] >= 0.1))
    ok = int(got[3][0]) == n and np.array_equal(ref[1][0, :keep], got[1][0, :keep]) and \
        np.allclose(ref[0][0, :keep], got[0][0, :keep], atol=1e-3) and \
        np.allclose(ref[2][0, :keep], got[2][0, :keep], atol=1e-3)
    check(ok, f"{what}: kiln and LiteRT agree on the {keep} detections scoring >= 0.1 of {n}")


def kiln_detect_hits(model, labels, gt, folder):
    names = {c["id"]: c["name"] for c in gt["categories"]}
    hit = total = 0
    for im in gt["images"][:16]:
        r = subprocess.run([kiln_bin(), "detect", model, os.path.join(folder, im["file_name"]),
                            "--json", "--labels", labels, "--threshold", "0.3"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            check(False, f"kiln detect runs: {r.stderr.strip()}")
            return 0, 1
        dets = json.loads(r.stdout)["detections"]
        for a in gt["annotations"]:
            if a["image_id"] != im["id"]:
                continue
            total += 1
            x, y, w, h = a["bbox"]
            for d in dets:
                b = d["box"]
                iw = min(x + w, b["xmax"]) - max(x, b["xmin"])
                ih = min(y + h, b["ymax"]) - max(y, b["ymin"])
                inter = max(iw, 0) * max(ih, 0)
                union = w * h + (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"]) - inter
                if d.get("label") == names[a["category_id"]] and inter / union >= 0.5:
                    hit += 1
                    break
    return hit, total


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        data, out = os.path.join(tmp, "data"), os.path.join(tmp, "out")
        os.makedirs(out)
        make_dataset(data)
        env = {**os.environ, "KILN_SSD_TRAIN_DATA": data, "KILN_SSD_TRAIN_OUT": out,
               "KILN_SSD_TRAIN_EPOCHS": "40", "KILN_SSD_TRAIN_LR": "0.01",
               "KILN_SSD_TRAIN_AUGMENT": "0"}
        r = subprocess.run([binary], env=env, capture_output=True, text=True)
        last = r.stderr.strip().splitlines()[-1:]
        check(r.returncode == 0, f"training on the small dataset ({last})")
        if r.returncode != 0:
            return
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        print(f"     kiln: {metrics}")
        train_gt = coco_split(data, "train")
        folder = os.path.join(data, "train")

        raw, flt, q8 = (os.path.join(out, f"model_{k}.tflite") for k in ("raw", "float", "int8"))
        dets = litert_detections(flt, train_gt, folder)
        ap, ap50 = coco_map(train_gt, dets)
        _, base50 = coco_map(train_gt, mean_box_baseline(train_gt))
        check(ap50 >= 0.5 and ap50 >= base50 + 0.3,
              f"LiteRT + pycocotools: mAP@.5 {ap50:.3f} (mAP@[.5:.95] {ap:.3f}) on the training "
              "images; "
              f"threshold 0.5 and baseline {base50:.3f} + 0.3")
        kiln50 = metrics["float"]["train"]["map50"]
        check(abs(kiln50 - ap50) <= 0.02, f"kiln's mAP@.5 {kiln50:.3f} equals pycocotools' on "
              f"LiteRT's detections {ap50:.3f} (+-0.02)")
        int8_50 = metrics["int8"]["train"]["map50"]
        check(int8_50 >= 0.8 * kiln50,
              f"int8 keeps most of it: mAP@.5 {int8_50:.3f} vs float {kiln50:.3f} (>= 80%)")

        for im in train_gt["images"][:3]:
            x = pixels(os.path.join(folder, im["file_name"]))
            name = im["file_name"]
            compare_runs(raw, x, f"{name}: raw float model", exact=False)
            pp_match(flt, x, f"{name}: post-processed float model")
            compare_runs(q8, x, f"{name}: int8 model", exact=True)
        hit, total = kiln_detect_hits(flt, os.path.join(out, "labels.txt"), train_gt, folder)
        check(hit >= 0.7 * total, f"kiln detect finds {hit} of {total} boxes on 16 training "
              "images (class and IoU >= 0.5; >= 70%)")

        # The same through `kiln train --task detect` and `kiln eval`.
        cli_out = os.path.join(tmp, "cli")
        r = subprocess.run([kiln_bin(), "train", "--task", "detect", "--data", data, "--out", cli_out,
                            "--preset", "fast", "--epochs", "20", "--threads", "2"],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"kiln train --task detect exits 0 ({r.stderr.strip()[-300:]})")
        if r.returncode == 0:
            rep = json.load(open(os.path.join(cli_out, "report.json")))
            ev = rep["evaluation"]
            for kind in ("float", "int8"):
                model = os.path.join(cli_out, f"model_{kind}.tflite")
                it = litert(model)
                check(len(it.get_output_details()) == 4, f"{kind}: LiteRT loads the post-processed model")
                r2 = subprocess.run([kiln_bin(), "eval", model, "--data", data, "--split", "test", "--json"],
                                    capture_output=True, text=True)
                got = json.loads(r2.stdout) if r2.returncode == 0 else {}
                want = ev[kind]["summary"]["AP50"]
                have = got.get("summary", {}).get("AP50", got.get("evaluation", {}).get("summary", {}).get("AP50"))
                check(have is not None and abs(have - want) < 1e-9,
                      f"{kind}: kiln eval's test mAP@.5 {have} equals the training report's {want:.4f}")
            check(ev["float"]["summary"]["AP50"] > 0.05,
                  f"test mAP@.5 {ev['float']['summary']['AP50']:.3f} is above chance after 20 epochs")
    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
