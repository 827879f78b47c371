"""kiln's COCO box evaluation (kiln_eval_detect) against pycocotools'
COCOeval (pinned in tests/requirements.txt) on random synthetic data.

For several seeds: a few hundred images with several classes, boxes in all
three area ranges (and areas exactly on the 32^2 / 96^2 boundaries, areas
from the annotation that differ from w*h, crowd regions), detections that
jitter the ground truth (some on integer grids so IoUs fall exactly on the
thresholds), duplicates, false positives, scores with many ties, images
with more than 100 detections of one class, a class with detections but
no ground truth and one with neither. tests/tools/eval_coco (argv[1])
evaluates the same boxes with kiln; the 12 summary numbers and the
per-class AP@[.5:.95] and AP@.5 must agree within 1e-4, and the full
precision/recall arrays and PR curves within 1e-9 (they are computed with
the same floating-point steps, so they agree exactly in practice).
"""
import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77
TOL = 1e-4
ARRAY_TOL = 1e-9
SEEDS = (1, 2, 3, 4)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def need_pycocotools():
    try:
        import numpy  # noqa: F401
        import pycocotools  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI", "").lower() == "true":
            print(f"FAIL: pycocotools missing under CI: {e}")
            sys.exit(1)
        print(f"SKIP: pycocotools missing: {e}")
        sys.exit(SKIP)


def random_box(rng, size_class, grid):
    """[x, y, w, h] of a small, medium or large box."""
    lo, hi = {"small": (2, 31), "medium": (33, 95), "large": (97, 300)}[size_class]
    if grid:
        w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        return [int(rng.integers(0, 400)), int(rng.integers(0, 400)), w, h]
    w, h = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return [float(rng.uniform(0, 400)), float(rng.uniform(0, 400)), w, h]


def jitter(rng, box, grid):
    """A detection near a ground-truth box; on integer grids the shifts
    make IoUs such as 1/2, 3/5, 17/20 exactly."""
    x, y, w, h = box
    if grid:
        choice = rng.integers(0, 5)
        if choice == 0:
            return [x, y, w, h]
        if choice == 1 and w % 2 == 0:
            return [x, y, w // 2, h]  # IoU exactly 1/2
        if choice == 2 and w % 4 == 0:
            return [x + w // 4, y, w, h]  # IoU 3/5
        if choice == 3 and w % 20 == 0:
            return [x, y, w * 17 // 20, h]  # IoU 0.85: numpy's threshold is 0.85, not 0.85000000000000009
        return [x + int(rng.integers(-3, 4)), y + int(rng.integers(-3, 4)),
                max(1, w + int(rng.integers(-3, 4))), max(1, h + int(rng.integers(-3, 4)))]
    s = float(rng.uniform(0.0, 0.25))
    return [x + float(rng.normal(0, s * w)), y + float(rng.normal(0, s * h)),
            w * float(rng.uniform(1 - s, 1 + s)), h * float(rng.uniform(1 - s, 1 + s))]


def score(rng):
    """Scores on a coarse grid so that many tie."""
    return float(rng.integers(1, 21)) / 20.0 if rng.random() < 0.7 else float(rng.random())


def make_case(seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    image_ids = sorted(int(i) for i in rng.choice(100000, size=int(rng.integers(200, 400)),
                                                   replace=False))
    cat_ids = sorted(int(c) for c in rng.choice(1000, size=7, replace=False))
    gt_cats, det_only_cat = cat_ids[:5], cat_ids[5]  # cat_ids[6] has nothing
    anns, dets = [], []
    for img in image_ids:
        grid = rng.random() < 0.5
        for _ in range(int(rng.integers(0, 9))):
            cat = gt_cats[int(rng.integers(0, len(gt_cats)))]
            box = random_box(rng, str(rng.choice(["small", "medium", "large"])), grid)
            wh = box[2] * box[3]
            u = rng.random()
            area = wh if u < 0.7 else (wh * float(rng.uniform(0.4, 1.0)) if u < 0.9
                                       else float(rng.choice([32.0 ** 2, 96.0 ** 2])))
            ann = {"id": len(anns) + 1, "image_id": img, "category_id": cat, "bbox": box,
                   "area": area, "iscrowd": int(rng.random() < 0.05)}
            anns.append(ann)
            for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):  # misses and duplicates
                dcat = cat if rng.random() < 0.9 else gt_cats[int(rng.integers(0, len(gt_cats)))]
                dets.append({"image_id": img, "category_id": dcat,
                             "bbox": jitter(rng, box, grid), "score": score(rng)})
        for _ in range(int(rng.integers(0, 4))):  # false positives
            cat = gt_cats[int(rng.integers(0, len(gt_cats)))] if rng.random() < 0.8 else det_only_cat
            dets.append({"image_id": img, "category_id": cat,
                         "bbox": random_box(rng, str(rng.choice(["small", "medium", "large"])), grid),
                         "score": score(rng)})
    for img in rng.choice(image_ids, size=3, replace=False):  # over the 100-per-image cap
        cat = gt_cats[int(rng.integers(0, len(gt_cats)))]
        for _ in range(int(rng.integers(101, 160))):
            dets.append({"image_id": int(img), "category_id": cat,
                         "bbox": random_box(rng, "medium", True), "score": score(rng)})
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    return image_ids, cat_ids, anns, dets


def run_pycocotools(image_ids, cat_ids, anns, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"info": {}, "images": [{"id": i} for i in image_ids],
                      "categories": [{"id": c} for c in cat_ids],
                      "annotations": copy.deepcopy(anns)}
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def run_kiln(tool, cat_ids, anns, dets, rng):
    kiln_anns = []
    for a in anns:
        k = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "iscrowd": a["iscrowd"]}
        # kiln's default area is w * h: leave it out where it is that.
        if a["area"] != a["bbox"][2] * a["bbox"][3] or rng.random() < 0.5:
            k["area"] = a["area"]
        kiln_anns.append(k)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input.json")
        with open(path, "w") as f:
            json.dump({"categories": cat_ids, "annotations": kiln_anns, "detections": dets}, f)
        r = subprocess.run([tool, path], capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"eval_coco failed: {r.stderr.strip()}")
        return None
    return json.loads(r.stdout)


def undef(v):
    return -1.0 if v is None else v


def compare(seed, ev, report, anns):
    import numpy as np
    p = ev.params
    check(report["iou_thresholds"] == [float(t) for t in p.iouThrs],
          f"seed {seed}: IoU thresholds equal numpy.linspace's bit for bit")
    check(report["recall_thresholds"] == [float(r) for r in p.recThrs],
          f"seed {seed}: recall thresholds equal numpy.linspace's bit for bit")
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    kiln_stats = np.array([undef(report["summary"][n]) for n in names])
    diff = np.abs(kiln_stats - ev.stats)
    check(diff.max() <= TOL,
          f"seed {seed}: 12 summary numbers agree (max diff {diff.max():.2e}; "
          f"AP {ev.stats[0]:.4f}, AP50 {ev.stats[1]:.4f}, APs {ev.stats[3]:.4f}, ARl {ev.stats[11]:.4f})")

    prec, rec, scores = ev.eval["precision"], ev.eval["recall"], ev.eval["scores"]
    T, R, K, A, M = prec.shape
    kp = np.array(report["precision"]).reshape(T, R, K, A, M)
    kr = np.array(report["recall"]).reshape(T, K, A, M)
    check(np.abs(kp - prec).max() <= ARRAY_TOL,
          f"seed {seed}: precision[T,R,K,A,M] agrees (max diff {np.abs(kp - prec).max():.2e})")
    check(np.abs(kr - rec).max() <= ARRAY_TOL,
          f"seed {seed}: recall[T,K,A,M] agrees (max diff {np.abs(kr - rec).max():.2e})")

    ap_diff, curve_diff, classes_ok = 0.0, 0.0, True
    for k, cat in enumerate(p.catIds):
        pc = report["per_class"][k]
        s = prec[:, :, k, 0, 2]
        ap = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
        s50 = prec[0, :, k, 0, 2]
        ap50 = float(np.mean(s50[s50 > -1])) if (s50 > -1).any() else -1.0
        ap_diff = max(ap_diff, abs(undef(pc["ap"]) - ap), abs(undef(pc["ap50"]) - ap50))
        n_gt = sum(1 for a in anns if a["category_id"] == cat and not a["iscrowd"])
        classes_ok &= report["category_ids"][k] == cat and pc["ground_truth"] == n_gt
        if ap50 == -1:
            classes_ok &= pc["pr_curve"] is None
        else:
            curve_diff = max(curve_diff,
                             np.abs(np.array(pc["pr_curve"]["precision"]) - s50).max(),
                             np.abs(np.array(pc["pr_curve"]["score"]) - scores[0, :, k, 0, 2]).max())
    check(ap_diff <= TOL, f"seed {seed}: per-class AP@[.5:.95] and AP@.5 agree (max diff {ap_diff:.2e})")
    check(curve_diff <= ARRAY_TOL, f"seed {seed}: per-class PR curves at IoU .5 agree "
                                   f"(max diff {curve_diff:.2e})")
    check(classes_ok, f"seed {seed}: class ids, ground-truth counts, null curves without ground truth")
    undefined = [k for k in range(K) if report["per_class"][k]["ap"] is None]
    check(undefined == [5, 6], f"seed {seed}: classes without ground truth are null ({undefined})")


def main():
    if len(sys.argv) != 2:
        print("usage: test_eval_coco.py EVAL_COCO_TOOL")
        return 2
    need_pycocotools()
    import numpy as np
    for seed in SEEDS:
        image_ids, cat_ids, anns, dets = make_case(seed)
        print(f"seed {seed}: {len(image_ids)} images, {len(anns)} ground truth, {len(dets)} detections")
        ev = run_pycocotools(image_ids, cat_ids, anns, dets)
        report = run_kiln(sys.argv[1], cat_ids, anns, dets, np.random.default_rng(seed + 100))
        if report is not None:
            compare(seed, ev, report, anns)
    if failures:
        print(f"{len(failures)} failed")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
