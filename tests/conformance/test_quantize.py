"""kiln quantize against independent references:

1. The shared float SSD, quantized by kiln with real photos (OpenCV's and
   scikit-image's sample images from Debian, scripts/fetch-photos), is fully
   int8, loads and runs in LiteRT, and kiln's outputs equal LiteRT's
   reference kernels bit for bit; its detections on held-out photos match the
   float model's (float detections as ground truth) with mAP@0.5 >= 0.9
   (pycocotools); `kiln detect` with it still finds the astronaut.
2. --io uint8 / float variants run in LiteRT and kiln identically.
3. Every single-input float op model written by gen_op_models, quantized
   with random calibration tensors, runs bit-identically in LiteRT and kiln.
4. Bad input: empty or unreadable calibration data, an already quantized
   model, an op kiln cannot quantize: clear errors, non-zero exit, no file.
"""
import json
import os
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin, litert, run_kiln, random_input

need_reference()
import numpy as np  # noqa: E402

failures = []
SSD = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
LABELS = os.path.join(models_dir(), "oidv4_labels.txt")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


def photos():
    dest = os.environ.get("KILN_PHOTOS", os.path.join(tempfile.gettempdir(), "kiln-photos"))
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "fetch-photos")
    r = subprocess.run([script, dest], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL: cannot fetch calibration photos: {r.stderr.strip()}")
        sys.exit(1)
    return os.path.join(dest, "calib"), os.path.join(dest, "holdout")


def bit_exact(model, rng, what, inputs=None):
    it = litert(model)
    det = it.get_input_details()
    ins = inputs if inputs is not None else [random_input(d, rng) for d in det]
    for d, x in zip(det, ins):
        it.set_tensor(d["index"], x)
    it.invoke()
    names = [d["name"] for d in it.get_output_details()]
    refs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    outs, err = run_kiln(model, [(d["name"], x) for d, x in zip(det, ins)], names)
    if outs is None:
        check(False, f"{what}: kiln runs it ({err})")
        return
    same = all(r.dtype == o.dtype and np.array_equal(r, o) for r, o in zip(refs, outs))
    ndiff = sum(int(np.count_nonzero(r != o)) for r, o in zip(refs, outs) if r.shape == o.shape)
    check(same, f"{what}: kiln == LiteRT reference kernels bit for bit ({ndiff} differences)")


def detections(model, image, threshold):
    r = kiln("detect", model, image, "--json", "--labels", LABELS, "--threshold", str(threshold), "--max", "100")
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def map50(float_model, int8_model, images):
    """mAP@0.5 of int8 detections against float detections (score >= 0.5) as ground truth."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = {"info": {}, "images": [], "annotations": [], "categories": [{"id": i} for i in range(1, 25)]}
    dt = []
    for k, img in enumerate(images):
        f = detections(float_model, img, 0.5)
        q = detections(int8_model, img, 0.05)
        gt["images"].append({"id": k, "width": f["image"]["width"], "height": f["image"]["height"]})
        for d in f["detections"]:
            b = d["box"]
            w, h = b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k, "category_id": d["class_id"],
                                      "bbox": [b["xmin"], b["ymin"], w, h], "area": w * h, "iscrowd": 0})
        for d in q["detections"]:
            b = d["box"]
            dt.append({"image_id": k, "category_id": d["class_id"], "score": d["score"],
                       "bbox": [b["xmin"], b["ymin"], b["xmax"] - b["xmin"], b["ymax"] - b["ymin"]]})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    res = coco.loadRes(dt) if dt else None
    if res is None:
        return 0.0, len(gt["annotations"])
    ev = COCOeval(coco, res, "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.catIds = sorted({a["category_id"] for a in gt["annotations"]})
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][0, :, :, 0, -1]  # [recall, class] at IoU 0.5, all areas, 100 dets
    aps = [float(np.mean(prec[:, c][prec[:, c] > -1])) for c in range(prec.shape[1]) if (prec[:, c] > -1).any()]
    return float(np.mean(aps)) if aps else 0.0, len(gt["annotations"])


def main():
    rng = np.random.default_rng(11)
    calib, holdout = photos()
    held = sorted(os.path.join(holdout, f) for f in os.listdir(holdout))
    with tempfile.TemporaryDirectory() as tmp:
        # 1. The SSD.
        int8 = os.path.join(tmp, "ssd_int8.tflite")
        report = os.path.join(tmp, "report.json")
        r = kiln("quantize", SSD, "--calib", calib, "--calib-count", "60", "--out", int8, "--report", report)
        check(r.returncode == 0, f"kiln quantize the shared SSD ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''})")
        info = json.loads(kiln("inspect", int8, "--json").stdout)
        check(set(info["ops"]) == {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "RESHAPE", "CONCATENATION"} and
              info["op_count"] == 97, f"int8 SSD keeps the graph: {info['ops']}")
        it = litert(int8)
        dtypes = {str(t["dtype"]) for t in it.get_tensor_details() if t["name"] and t["index"] >= 0}
        check(all(d["dtype"] == np.int8 for d in it.get_input_details() + it.get_output_details()),
              "inputs and outputs are int8")
        floats = [t["name"] for t in it.get_tensor_details() if t["dtype"] == np.float32]
        check(not floats, f"no float tensor left ({floats[:3]})")
        rep = json.load(open(report))
        check(rep["calibration_samples"] == 51 and len(rep["tensors"]) > 90 and not rep["float_ops"],
              f"report: {rep['calibration_samples']} samples, {len(rep['tensors'])} tensors, float ops {rep['float_ops']}")
        bit_exact(int8, rng, "int8 SSD on random input")
        astro = os.path.join(models_dir(), "..", "images", "astronaut.png")
        det = detections(int8, astro, 0.5)["detections"]
        check(any(d["label"] == "Person" for d in det), f"kiln detect with the int8 SSD finds the person: {det}")
        m, n_gt = map50(SSD, int8, held)
        check(m >= 0.9 and n_gt >= 20, f"int8 vs float detections: mAP@0.5 = {m:.3f} over {n_gt} float detections on {len(held)} held-out photos (>= 0.9)")

        # 2. I/O variants on a smaller real model.
        face = os.path.join(models_dir(), "face_detection_short_range.tflite")
        for io, dt in (("uint8", np.uint8), ("float", np.float32)):
            out = os.path.join(tmp, f"face_{io}.tflite")
            r = kiln("quantize", face, "--calib", calib, "--calib-count", "20", "--io", io, "--out", out,
                     "--method", "percentile" if io == "uint8" else "entropy")
            check(r.returncode == 0, f"quantize face detector with --io {io} ({r.stderr.strip()[-200:]})")
            d = litert(out).get_input_details()[0]
            check(d["dtype"] == dt, f"--io {io}: input is {d['dtype'].__name__}")
            bit_exact(out, rng, f"face detector --io {io}")

        # 3. Every single-input float op model, quantized.
        op_dir = os.environ.get("KILN_OP_MODELS")
        if op_dir and os.path.isdir(op_dir):
            cases = [l.split()[0] for l in open(os.path.join(op_dir, "manifest.txt"))
                     if "_f32" in l and "quantize" not in l]
            done = 0
            for name in cases:
                src = os.path.join(op_dir, name + ".tflite")
                fin = litert(src).get_input_details()
                if len(fin) != 1:
                    continue
                cdir = os.path.join(tmp, "calib_" + name)
                os.makedirs(cdir)
                for k in range(6):
                    np.save(os.path.join(cdir, f"{k}.npy"), random_input(fin[0], rng))
                out = os.path.join(tmp, name + "_int8.tflite")
                r = kiln("quantize", src, "--calib", cdir, "--calib-count", "4", "--out", out)
                if r.returncode != 0:
                    check(False, f"quantize op model {name}: {r.stderr.strip()}")
                    continue
                bit_exact(out, rng, f"quantized {name}")
                done += 1
            check(done >= 40, f"{done} quantized op models compared")
        else:
            check(False, "KILN_OP_MODELS (gen_op_models output) is missing")

        # 4. Bad input.
        empty = os.path.join(tmp, "empty")
        os.makedirs(empty)
        bad_out = os.path.join(tmp, "never.tflite")
        r = kiln("quantize", SSD, "--calib", empty, "--out", bad_out)
        check(r.returncode == 1 and "no calibration samples" in r.stderr and not os.path.exists(bad_out),
              f"empty calibration directory refused: {r.stderr.strip()}")
        junk = os.path.join(tmp, "junk")
        os.makedirs(junk)
        with open(os.path.join(junk, "a.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
        r = kiln("quantize", SSD, "--calib", junk, "--out", bad_out)
        check(r.returncode == 1 and "a.jpg" in r.stderr and not os.path.exists(bad_out),
              f"unreadable calibration image named: {r.stderr.strip()}")
        r = kiln("quantize", int8, "--calib", calib, "--out", bad_out)
        check(r.returncode == 1 and "already quantized" in r.stderr, f"quantized model refused: {r.stderr.strip()}")
        selfie = os.path.join(models_dir(), "selfie_segmentation.tflite")
        r = kiln("quantize", selfie, "--calib", calib, "--calib-count", "2", "--out", bad_out)
        check(r.returncode == 1 and "Convolution2DTransposeBias" in r.stderr and "--allow-float" in r.stderr
              and not os.path.exists(bad_out), f"unquantizable op named: {r.stderr.strip()}")
        rep2 = os.path.join(tmp, "selfie.json")
        r = kiln("quantize", selfie, "--calib", calib, "--calib-count", "3", "--out", bad_out,
                 "--allow-float", "--report", rep2)
        check(r.returncode == 0 and len(json.load(open(rep2))["float_ops"]) == 1,
              f"--allow-float keeps the custom op in float ({r.stderr.strip()[-160:]})")

    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


main()
