"""`kiln data check|import`: every fixture of tests/data/datasets is imported
into kiln's form, and the boxes, labels, splits and hashes in the written
dataset.json are compared with an independent reading of the original
annotation files done here (xml.etree for VOC, json for COCO, csv for
AutoML, the YOLO label files, gzip+struct for IDX, hashlib for the content
store); then the exit statuses (0 usable, 1 not, 2 usage), the text and
--json reports, and a broken dataset's exact message.
"""
import csv
import glob
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

from common import kiln_bin

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "datasets")
passed, failures = 0, []


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


def expected_voc(root):
    """{source: [(xmin, ymin, xmax, ymax, name)]} and the label names."""
    out, names = {}, set()
    for xml in sorted(glob.glob(os.path.join(root, "Annotations", "*.xml"))):
        ann = ET.parse(xml).getroot()
        boxes = []
        for obj in ann.findall("object"):
            b = obj.find("bndbox")
            boxes.append(tuple(float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")) +
                         (obj.find("name").text,))
            names.add(obj.find("name").text)
        out["JPEGImages/" + ann.find("filename").text] = boxes
    out["JPEGImages/c.png"] = []  # no XML: a background image
    return out, sorted(names)


def expected_coco(root):
    out, cats = {}, {}
    for path in sorted(glob.glob(os.path.join(root, "annotations", "*.json"))):
        d = json.load(open(path))
        cats.update({c["id"]: c["name"] for c in d["categories"]})
        files = {im["id"]: "images/" + im["file_name"] for im in d["images"]}
        for f in files.values():
            out.setdefault(f, [])
        for a in d["annotations"]:
            x, y, w, h = a["bbox"]
            out[files[a["image_id"]]].append((x, y, x + w, y + h, cats[a["category_id"]]))
    return out, [cats[k] for k in sorted(cats)]


def expected_yolo(root):
    names = ["cat", "dog"]  # data.yaml's names: {0: cat, 1: dog}
    out = {}
    for img in sorted(glob.glob(os.path.join(root, "images", "*", "*.png"))):
        rel = os.path.relpath(img, root)
        W, H = png_size(img)
        boxes = []
        with open(os.path.join(root, rel.replace("images/", "labels/", 1)[:-4] + ".txt")) as f:
            for line in f:
                if line.strip():
                    c, cx, cy, w, h = line.split()
                    cx, cy, w, h = float(cx), float(cy), float(w), float(h)
                    boxes.append(((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H,
                                  names[int(c)]))
        out[rel] = boxes
    return out, names


def expected_automl(root):
    out, names = {}, set()
    with open(os.path.join(root, "data.csv"), newline="") as f:
        for row in csv.reader(f):
            rel = row[1]
            W, H = png_size(os.path.join(root, rel))
            boxes = out.setdefault(rel, [])
            if not row[2]:
                continue
            names.add(row[2])
            v = [float(x) if x else None for x in row[3:11]]
            xs = [x for x in v[0::2] if x is not None]
            ys = [y for y in v[1::2] if y is not None]
            boxes.append((min(xs) * W, min(ys) * H, max(xs) * W, max(ys) * H, row[2]))
    return out, sorted(names)


def close(a, b):
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


def check_store(name, out):
    """The written store: every image named by its content's SHA-256."""
    m = json.load(open(os.path.join(out, "dataset.json")))
    ok = True
    for im in m["images"]:
        data = open(os.path.join(out, "images", im["hash"] + "." + im["ext"]), "rb").read()
        ok &= hashlib.sha256(data).hexdigest() == im["hash"]
    check(ok and len(m["images"]) > 0, f"{name}: every images/<sha256> file hashes to its name")
    return m


def check_detection(name, expected, labels):
    out = os.path.join(TMP, name)
    r = kiln("data", "import", os.path.join(FIX, name), "--out", out)
    check(r.returncode == 0, f"{name}: kiln data import exits 0" + (f" ({r.stderr.strip()[:300]})" if r.returncode else ""))
    if r.returncode:
        return
    m = check_store(name, out)
    check(m["labels"] == labels, f"{name}: labels {m['labels']} == {labels}")
    got = {im["source"]: [tuple(b[:4]) + (m["labels"][b[4]],) for b in im["boxes"]] for im in m["images"]}
    check(sorted(got) == sorted(expected), f"{name}: images {sorted(got)}")
    same = all(len(got.get(k, [])) == len(v) and
               all(all(close(a, b) for a, b in zip(g[:4], e[:4])) and g[4] == e[4]
                   for g, e in zip(got.get(k, []), v))
               for k, v in expected.items())
    check(same, f"{name}: boxes in pixels match the annotation files read here")


def check_idx():
    out = os.path.join(TMP, "idx")
    r = kiln("data", "import", os.path.join(FIX, "idx"), "--out", out)
    check(r.returncode == 0, "idx: kiln data import exits 0")
    if r.returncode:
        return
    m = check_store("idx", out)
    expect = {}
    for prefix, opener in (("train", gzip.open), ("t10k", open)):
        ext = ".gz" if prefix == "train" else ""
        raw = opener(os.path.join(FIX, "idx", f"{prefix}-images-idx3-ubyte{ext}"), "rb").read()
        lab = opener(os.path.join(FIX, "idx", f"{prefix}-labels-idx1-ubyte{ext}"), "rb").read()
        n, rows, cols = struct.unpack(">III", raw[4:16])
        for k in range(n):
            px = raw[16 + k * rows * cols:16 + (k + 1) * rows * cols]
            h = hashlib.sha256(b"P5\n%d %d\n255\n" % (cols, rows) + px).hexdigest()
            expect[h] = (lab[8 + k], "train" if prefix == "train" else "test")
    got = {im["hash"]: (im["label"], im["split"]) for im in m["images"]}
    check(got == expect, "idx: hashes (PGM form), labels and splits match the files read here")
    check(m["labels"] == ["shirt", "shoe", "bag"], "idx: names from labels.txt")


def check_reports():
    r = kiln("data", "check", os.path.join(FIX, "yolo"))
    check(r.returncode == 0 and "yolo (data.yaml), detection, 2 labels" in r.stdout and
          "result: usable" in r.stdout, "check: text report of a usable dataset, exit 0")
    r = kiln("data", "check", os.path.join(FIX, "voc.zip"), "--json")
    rep = json.loads(r.stdout) if r.returncode == 0 else {}
    check(rep.get("format") == "voc" and rep.get("usable") is True and rep.get("images", {}).get("total") == 3 and
          rep.get("boxes", {}).get("total") == 3 and rep.get("issues", {}).get("unannotated") == 1,
          "check --json: an archive's report")
    bad = os.path.join(TMP, "badcoco")
    shutil.copytree(os.path.join(FIX, "coco"), bad)
    path = os.path.join(bad, "annotations", "instances_train.json")
    text = open(path).read().replace('"bbox": [1, 2, 4, 5]', '"bbox": [1, 2, 4]')
    open(path, "w").write(text)
    msg = ("annotations/instances_train.json: annotations[0]: bbox [1,2,4] is not 4 numbers "
           "[x, y, width, height]")
    r = kiln("data", "check", bad)
    check(r.returncode == 1 and ("  error: " + msg) in r.stdout and "result: not usable" in r.stdout,
          "check: a broken COCO file exits 1 with the exact message")
    r = kiln("data", "check", bad, "--json")
    rep = json.loads(r.stdout) if r.stdout else {}
    check(r.returncode == 1 and rep.get("usable") is False and
          {"severity": "error", "issue": "bad_annotation", "message": msg} in rep.get("problems", []),
          "check --json: the error as {severity, issue, message}")
    r = kiln("data", "import", bad, "--out", os.path.join(TMP, "never"))
    check(r.returncode == 1 and msg in r.stderr and not os.path.exists(os.path.join(TMP, "never")),
          "import: errors write nothing and exit 1")
    r = kiln("data", "check", "/nonexistent/kiln-data")
    check(r.returncode == 1 and "/nonexistent/kiln-data: no such file or directory" in r.stdout,
          "check: a missing path exits 1")
    for args in (["data"], ["data", "frobnicate", "x"], ["data", "import", FIX], ["data", "check", FIX, "--format", "nope"],
                 ["data", "check", FIX, "--split", "1/2"]):
        r = kiln(*args)
        check(r.returncode == 2, f"usage error exits 2: kiln {' '.join(args[:3])}")
    r = kiln("data", "--help")
    check(r.returncode == 0 and "Errors (the dataset is not usable)" in r.stdout and "Warnings" in r.stdout,
          "data --help documents errors and warnings")
    r = kiln("--help")
    check("data" in r.stdout, "kiln --help lists data")


def check_split():
    out = os.path.join(TMP, "automl-split")
    r = kiln("data", "import", os.path.join(FIX, "automl"), "--out", out, "--split", "0/0/1", "--seed", "3")
    m = json.load(open(os.path.join(out, "dataset.json"))) if r.returncode == 0 else {"images": []}
    splits = {im["source"]: im["split"] for im in m["images"]}
    check(splits == {"images/a.png": "train", "images/b.png": "val", "images/c.png": "test", "images/d.png": "test"},
          "import --split: only the UNASSIGNED image is given one")


def check_fashion_mnist():
    d = "/usr/share/datasets/fashion-mnist"
    if not os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
        print("skip fashion-mnist: not installed")
        return
    r = kiln("data", "check", d, "--json")
    rep = json.loads(r.stdout) if r.returncode == 0 else {}
    check(rep.get("images") == {"train": 60000, "val": 0, "test": 10000, "unassigned": 0, "total": 70000} and
          rep.get("errors") == 0, "check: Fashion-MNIST, 60000 + 10000 images")


TMP = tempfile.mkdtemp(prefix="kiln-data-cli-")
try:
    check_detection("voc", *expected_voc(os.path.join(FIX, "voc")))
    check_detection("coco", *expected_coco(os.path.join(FIX, "coco")))
    check_detection("yolo", *expected_yolo(os.path.join(FIX, "yolo")))
    check_detection("automl", *expected_automl(os.path.join(FIX, "automl")))
    check_idx()
    check_reports()
    check_split()
    check_fashion_mnist()
finally:
    shutil.rmtree(TMP, ignore_errors=True)

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
