#!/usr/bin/env python3
"""Writes the dataset fixtures of tests/unit/test_data*.c and
tests/conformance/test_data_cli.py: one tiny dataset per format kiln imports,
with images written by Pillow (independent of kiln's encoders) and the
annotation files written here by hand, plus two archives of them.

Run from this folder: python3 make_fixtures.py  (needs Pillow)
Every image has different pixels (no duplicates by hash). Detection images
are 16x12 (not square, so swapped axes show); classification images 8x8.
The expected values in the C tests follow from the numbers below: keep the
two in step.
"""
import gzip
import io
import os
import shutil
import struct
import tarfile
import zipfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
_counter = [0]


def image(path, w, h, fmt="PNG"):
    """A w x h RGB image whose pixels differ from every other fixture's."""
    _counter[0] += 1
    k = _counter[0]
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 16 + k * 37) & 255, (y * 20 + k * 11) & 255, (k * 53) & 255)
                 for y in range(h) for x in range(w)])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def text(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(content)


def folders(root):
    # train: cat 2, dog 1; val: cat 1, dog 1; test: dog 1
    for rel in ["train/cat/c1.png", "train/cat/c2.png", "train/dog/d1.png",
                "val/cat/c3.png", "val/dog/d2.png", "test/dog/d3.png"]:
        image(os.path.join(root, rel), 8, 8)


VOC_A = """<annotation>
  <folder>voc</folder>
  <filename>a.png</filename>
  <size><width>16</width><height>12</height><depth>3</depth></size>
  <object><name>cat</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax><ymax>7</ymax></bndbox></object>
  <object><name>dog</name><pose>Left</pose>
    <bndbox><xmin>8.5</xmin><ymin>1</ymin><xmax>15</xmax><ymax>11</ymax></bndbox></object>
</annotation>
"""

VOC_B = """<?xml version="1.0"?>
<annotation>
  <filename>b.jpg</filename>
  <size><width>16</width><height>12</height></size>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>0</xmin><ymin>0</ymin><xmax>16</xmax><ymax>12</ymax></bndbox></object>
</annotation>
"""


def voc(root):
    image(os.path.join(root, "JPEGImages/a.png"), 16, 12)
    image(os.path.join(root, "JPEGImages/b.jpg"), 16, 12, "JPEG")
    image(os.path.join(root, "JPEGImages/c.png"), 16, 12)  # no XML: background
    text(os.path.join(root, "Annotations/a.xml"), VOC_A)
    text(os.path.join(root, "Annotations/b.xml"), VOC_B)
    text(os.path.join(root, "ImageSets/Main/train.txt"), "a\nc\n")
    text(os.path.join(root, "ImageSets/Main/val.txt"), "b\n")


COCO_TRAIN = """{
  "info": {"description": "kiln fixture"},
  "images": [
    {"id": 10, "file_name": "a.png", "width": 16, "height": 12},
    {"id": 11, "file_name": "b.png", "width": 16, "height": 12}
  ],
  "annotations": [
    {"id": 1, "image_id": 10, "category_id": 3, "bbox": [1, 2, 4, 5], "area": 20, "iscrowd": 0},
    {"id": 2, "image_id": 10, "category_id": 7, "bbox": [6.5, 0, 9.5, 12], "area": 114, "iscrowd": 1},
    {"id": 3, "image_id": 11, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0}
  ],
  "categories": [
    {"id": 7, "name": "bird", "supercategory": "animal"},
    {"id": 1, "name": "cat", "supercategory": "animal"},
    {"id": 3, "name": "dog", "supercategory": "animal"}
  ]
}
"""

COCO_VAL = """{
  "images": [{"id": 5, "file_name": "c.png", "width": 16, "height": 12}],
  "annotations": [{"id": 9, "image_id": 5, "category_id": 1, "bbox": [0, 0, 16, 12]}],
  "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"}]
}
"""


def coco(root):
    for n in "abc":
        image(os.path.join(root, f"images/{n}.png"), 16, 12)
    text(os.path.join(root, "annotations/instances_train.json"), COCO_TRAIN)
    text(os.path.join(root, "annotations/instances_val.json"), COCO_VAL)


def yolo(root):
    image(os.path.join(root, "images/train/a.png"), 16, 12)
    image(os.path.join(root, "images/train/b.png"), 16, 12)
    image(os.path.join(root, "images/val/c.png"), 16, 12)
    text(os.path.join(root, "data.yaml"),
         "path: .\ntrain: images/train\nval: images/val\nnc: 2\nnames:\n  0: cat\n  1: dog\n")
    text(os.path.join(root, "labels/train/a.txt"), "0 0.5 0.5 0.25 0.5\n1 0.75 0.25 0.5 0.5\n")
    text(os.path.join(root, "labels/train/b.txt"), "")
    text(os.path.join(root, "labels/val/c.txt"), "1 0.25 0.25 0.5 0.5\n")


AUTOML = """TRAIN,images/a.png,cat,0.125,0.25,,,0.5,0.75,,
TRAIN,images/a.png,dog,0.5,0.5,0.75,0.5,0.75,1,0.5,1
VALIDATION,images/b.png,cat,0,0,,,1,1,,
TEST,images/c.png,,,,,,,,,
UNASSIGNED,images/d.png,dog,0.25,0.25,,,0.75,0.75,,
"""


def automl(root):
    for n in "abcd":
        image(os.path.join(root, f"images/{n}.png"), 16, 12)
    text(os.path.join(root, "data.csv"), AUTOML)


def idx_bytes(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def idx(root):
    # train: 5 images of 3 rows x 4 columns, gzipped; t10k: 2 images, raw.
    # pixel (n, r, c) = (n * 50 + r * 4 + c) & 255; labels 0,1,2,0,1 / 2,2
    os.makedirs(root, exist_ok=True)
    def pixels(first, count):
        return [((first + n) * 50 + r * 4 + c) & 255 for n in range(count) for r in range(3) for c in range(4)]
    with gzip.GzipFile(os.path.join(root, "train-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(idx_bytes(0x803, [5, 3, 4], pixels(0, 5)))
    with gzip.GzipFile(os.path.join(root, "train-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(idx_bytes(0x801, [5], [0, 1, 2, 0, 1]))
    with open(os.path.join(root, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(idx_bytes(0x803, [2, 3, 4], pixels(5, 2)))
    with open(os.path.join(root, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(idx_bytes(0x801, [2], [2, 2]))
    text(os.path.join(root, "labels.txt"), "shirt\nshoe\nbag\n")


def add_tree(add, root, top):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            add(full, os.path.join(top, os.path.relpath(full, root)))


def archives():
    with zipfile.ZipFile(os.path.join(HERE, "voc.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        add_tree(lambda full, arc: z.write(full, arc), os.path.join(HERE, "voc"), "voc")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        def add(full, arc):
            info = t.gettarinfo(full, arc)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(full, "rb") as f:
                t.addfile(info, f)
        add_tree(add, os.path.join(HERE, "yolo"), ".")  # no single top folder
    with gzip.GzipFile(os.path.join(HERE, "yolo.tar.gz"), "wb", mtime=0) as f:
        f.write(buf.getvalue())


def main():
    for name, fn in [("folders", folders), ("voc", voc), ("coco", coco), ("yolo", yolo),
                     ("automl", automl), ("idx", idx)]:
        root = os.path.join(HERE, name)
        shutil.rmtree(root, ignore_errors=True)
        fn(root)
    archives()


if __name__ == "__main__":
    main()
