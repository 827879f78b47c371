"""Classification dataset from a COCO detection dataset: each box (with a
10% margin, squared up) becomes an image in DEST/{train,test}/CLASS/, keeping
the detection dataset's split, so test crops show held-out objects in held-out
scenes. usage: crops.py DETECTION_DIR DEST"""
import json
import os
import sys

from PIL import Image

src, dest = sys.argv[1], sys.argv[2]
for split in ("train", "test"):
    with open(os.path.join(src, "annotations", f"instances_{split}.json")) as f:
        coco = json.load(f)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    for k, a in enumerate(coco["annotations"]):
        x, y, w, h = a["bbox"]
        side = max(w, h) * 1.2
        cx, cy = x + w / 2, y + h / 2
        img = Image.open(os.path.join(src, split, files[a["image_id"]])).convert("RGB")
        box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        out = os.path.join(dest, split, names[a["category_id"]])
        os.makedirs(out, exist_ok=True)
        img.crop(box).resize((96, 96), Image.BILINEAR).save(os.path.join(out, f"{k:05d}.png"))
print(f"crops: wrote {dest}", file=sys.stderr)
