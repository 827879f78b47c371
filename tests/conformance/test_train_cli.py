"""`kiln train` and `kiln eval` end to end, on a small synthetic dataset made
here (3 classes of 300x300 textured PNGs in train/ and test/ folders, so no
resizing blurs the comparison with LiteRT):

- the transfer-learning run writes model_float.tflite, model_int8.tflite
  (labels embedded as the "kiln_labels" metadata), labels.txt, report.json
  and checkpoints/; every --progress-json line parses and the events come
  in order;
- LiteRT loads and runs both models: its accuracy on the test images is the
  report's to one image (LiteRT's default kernels; kiln's int8 kernels are
  checked bit for bit against LiteRT's reference ones elsewhere), and the
  int8 accuracy is close to the float one;
- SIGTERM in the middle of training leaves a checkpoint and exit status 143;
  the same command resumes, and the models equal the uninterrupted run's
  byte for byte;
- `kiln eval` prints the report's numbers (accuracy, per-class precision and
  recall, confusion matrix) for both models;
- `kiln eval` of the shared SSD on a one-image VOC dataset matches model
  classes to dataset labels by name (AP@.5 of Person is 1).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from common import kiln_bin, litert, models_dir, need_reference

passed, failures = 0, []
CLASSES = ["blue", "green", "red"]
EPOCHS = 60  # batch 4 over 36 images: 540 steps, enough to stop one mid-run


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)


def make_dataset(root):
    """Textured images: a colour per class, stripes, noise."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(3)
    colours = {"red": (190, 50, 40), "green": (40, 170, 70), "blue": (40, 70, 190)}
    yy, xx = np.mgrid[0:300, 0:300]
    for split, count in (("train", 12), ("test", 6)):
        for name, c in colours.items():
            os.makedirs(os.path.join(root, split, name))
            for i in range(count):
                f = rng.uniform(0.02, 0.2)
                stripes = 40 * np.sin(f * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)))
                img = np.array(c, np.float32)[None, None, :] + stripes[..., None]
                img += rng.normal(0, 12, (300, 300, 3))
                img = np.clip(img, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(root, split, name, f"{i}.png"))


def train_args(data, out):
    return [kiln_bin(), "train", "--task", "classify", "--data", data, "--out", out,
            "--epochs", str(EPOCHS), "--batch", "4", "--threads", "2", "--seed", "5",
            "--calib-images", "24", "--progress-json"]


def parse_lines(text):
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append(None)
    return events


def litert_accuracy(model, data):
    """Accuracy of a model in LiteRT on data/test."""
    import numpy as np
    from PIL import Image
    it = litert(model, ref=False)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    correct = total = 0
    for k, name in enumerate(CLASSES):
        folder = os.path.join(data, "test", name)
        for f in sorted(os.listdir(folder)):
            x = (np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"), np.float32) - 127.5) / 127.5
            if inp["dtype"] != np.float32:
                scale, zp = inp["quantization"]
                v = x / scale  # TFLite's QUANTIZE rounds halves away from zero
                x = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) + zp, -128, 127).astype(inp["dtype"])
            it.set_tensor(inp["index"], x[None])
            it.invoke()
            y = it.get_tensor(out["index"])[0]
            correct += int(np.argmax(y) == k)
            total += 1
    return correct / total


def check_outputs(out, data, events):
    for f in ("model_float.tflite", "model_int8.tflite", "labels.txt", "report.json",
              "checkpoints/last.ckpt"):
        check(os.path.isfile(os.path.join(out, f)), f"{f} written")
    check(all(e is not None for e in events), "every --progress-json line is JSON")
    kinds = [e["event"] for e in events if e]
    for kind in ("phase", "progress", "step", "epoch", "checkpoint", "done"):
        check(kind in kinds, f"--progress-json has '{kind}' events")
    steps = [e for e in events if e and e["event"] == "step"]
    check(len(steps) == EPOCHS * 9, f"one step line per step ({len(steps)})")
    check(all({"loss", "accuracy", "images_per_second", "eta_seconds", "epoch", "lr"} <= set(e)
              for e in steps), "step lines carry loss, accuracy, images/s, ETA, epoch, lr")
    phases = [e["phase"] for e in events if e and e["event"] == "phase"]
    check(phases == ["prepare", "train", "export", "quantize", "evaluate", "done"],
          f"phases in order: {phases}")
    with open(os.path.join(out, "labels.txt")) as f:
        labels = f.read()
    check(labels == "blue\ngreen\nred\n", "labels.txt lists the classes")
    for m in ("model_float.tflite", "model_int8.tflite"):
        with open(os.path.join(out, m), "rb") as f:
            blob = f.read()
        check(b"kiln_labels" in blob and labels.encode() in blob, f"{m} embeds the labels")
    with open(os.path.join(out, "report.json")) as f:
        r = json.load(f)
    check(r["data"]["images"]["train"] == 36 and r["data"]["images"]["test"] == 18,
          "report: dataset summary")
    check(r["config"]["epochs"] == EPOCHS and r["config"]["batch"] == 4 and
          r["config"]["mode"] == "transfer" and r["config"]["seed"] == 5, "report: config")
    check(len(r["history"]) == EPOCHS and r["history"][-1]["train_loss"] < r["history"][0]["train_loss"],
          "report: per-epoch history, loss falls")
    ev = r["evaluation"]
    fa, qa = ev["float"]["accuracy"], ev["int8"]["accuracy"]
    check(ev["float"]["samples"] == 18 and len(ev["float"]["confusion_matrix"]) == 3,
          "report: float metrics on the 18 test images")
    check(fa >= 0.9, f"float accuracy {fa:.3f} on an easy dataset")
    check(qa >= fa - 2 / 18, f"int8 accuracy {qa:.3f} close to float {fa:.3f}")
    check(all(k in r["timings"] for k in ("train_seconds", "quantize_seconds", "evaluate_seconds")),
          "report: timings")
    la_f = litert_accuracy(os.path.join(out, "model_float.tflite"), data)
    la_q = litert_accuracy(os.path.join(out, "model_int8.tflite"), data)
    check(abs(la_f - fa) <= 1 / 18 + 1e-9, f"LiteRT runs the float model: {la_f:.3f} vs {fa:.3f}")
    check(abs(la_q - qa) <= 1 / 18 + 1e-9, f"LiteRT runs the int8 model: {la_q:.3f} vs {qa:.3f}")
    return r


def check_eval(out, data, report):
    for kind in ("float", "int8"):
        p = subprocess.run([kiln_bin(), "eval", os.path.join(out, f"model_{kind}.tflite"), "--data",
                            data, "--json", "--threads", "2"], capture_output=True, text=True)
        check(p.returncode == 0, f"kiln eval {kind} exits 0 ({p.stderr.strip()[-200:]})")
        if p.returncode:
            continue
        got, want = json.loads(p.stdout)["evaluation"], report["evaluation"][kind]
        check(got["accuracy"] == want["accuracy"] and got["confusion_matrix"] == want["confusion_matrix"],
              f"kiln eval {kind}: accuracy and confusion matrix equal the report's")
        check([(c["name"], c["precision"], c["recall"]) for c in got["classes"]] ==
              [(c["name"], c["precision"], c["recall"]) for c in want["classes"]],
              f"kiln eval {kind}: per-class precision and recall equal the report's")
    p = subprocess.run([kiln_bin(), "eval", os.path.join(out, "model_int8.tflite"), "--data", data],
                       capture_output=True, text=True)
    check(p.returncode == 0 and "accuracy:" in p.stdout and "confusion matrix" in p.stdout,
          "kiln eval prints a text report")
    # kiln classify names the classes from the embedded labels (no --labels)
    # and agrees with kiln eval's accuracy.
    right = total = 0
    for c in CLASSES:
        folder = os.path.join(data, "test", c)
        for name in sorted(os.listdir(folder)):
            p = subprocess.run([kiln_bin(), "classify", os.path.join(out, "model_int8.tflite"),
                                os.path.join(folder, name), "--json"], capture_output=True, text=True)
            top = json.loads(p.stdout)["classes"][0] if p.returncode == 0 else {}
            right += top.get("label") == c
            total += 1
    qa = report["evaluation"]["int8"]["accuracy"]
    check(abs(right / total - qa) <= 1 / total + 1e-9,
          f"kiln classify names classes from the model's labels: {right}/{total} vs eval {qa:.3f}")


def check_resume(data, tmp, straight):
    out = os.path.join(tmp, "resumed")
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen(train_args(data, out), stdout=subprocess.PIPE, stderr=errf, text=True)
        # The pipe fills while we wait, so the run is still training when the
        # signal comes: it saves and stops before its next step.
        lines = []
        for line in p.stdout:
            lines.append(line)
            e = json.loads(line)
            if e["event"] == "step" and e["epoch"] >= 2:
                p.send_signal(signal.SIGTERM)
                break
        lines += p.stdout.readlines()
        p.wait()
        errf.seek(0)
        err = errf.read()
    events = parse_lines("".join(lines))
    check(p.returncode == 128 + signal.SIGTERM, f"SIGTERM: exit status 143 ({p.returncode})")
    check(any(e and e["event"] == "interrupted" for e in events), "SIGTERM: an 'interrupted' line")
    steps = [e for e in events if e and e["event"] == "step"]
    check(steps and steps[-1]["done"] < steps[-1]["total"], "SIGTERM came in the middle of training")
    check("resume" in err, "SIGTERM: the message says how to resume")
    check(os.path.isfile(os.path.join(out, "checkpoints", "last.ckpt")) and
          not os.path.exists(os.path.join(out, "model_float.tflite")), "SIGTERM: checkpoint, no model")
    r = subprocess.run(train_args(data, out), capture_output=True, text=True)
    check(r.returncode == 0, f"the same command resumes ({r.stderr.strip()[-200:]})")
    if r.returncode:
        return
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    check(rep["resumed"] and len(rep["history"]) == EPOCHS, "report: resumed, whole history")
    for m in ("model_float.tflite", "model_int8.tflite"):
        with open(os.path.join(out, m), "rb") as a, open(os.path.join(straight, m), "rb") as b:
            check(a.read() == b.read(), f"resumed {m} equals the uninterrupted run's, byte for byte")


def check_detection_eval(tmp):
    ssd = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
    photo = os.path.join(models_dir(), "..", "images", "astronaut.png")
    root = os.path.join(tmp, "voc")
    os.makedirs(os.path.join(root, "Annotations"))
    os.makedirs(os.path.join(root, "JPEGImages"))
    shutil.copy(photo, os.path.join(root, "JPEGImages", "astronaut.png"))
    with open(os.path.join(root, "Annotations", "astronaut.xml"), "w") as f:
        f.write("<annotation><filename>astronaut.png</filename><size><width>512</width>"
                "<height>512</height><depth>3</depth></size><object><name>Person</name><bndbox>"
                "<xmin>16</xmin><ymin>15</ymin><xmax>364</xmax><ymax>510</ymax></bndbox></object>"
                "</annotation>")
    p = subprocess.run([kiln_bin(), "eval", ssd, "--data", root, "--split", "all", "--labels",
                        os.path.join(models_dir(), "oidv4_labels.txt"), "--json"],
                       capture_output=True, text=True)
    check(p.returncode == 0, f"kiln eval of the SSD exits 0 ({p.stderr.strip()[-200:]})")
    check("label 'Person' has 1 image" in p.stderr, "kiln eval shows the dataset's warnings")
    if p.returncode:
        return
    ev = json.loads(p.stdout)["evaluation"]
    person = [c for c in ev["per_class"] if c.get("name") == "Person"]
    check(ev["task"] == "detection" and person and person[0]["ap50"] == 1.0,
          "SSD on its own detection: Person AP@.5 1")


def main():
    need_reference()
    tmp = tempfile.mkdtemp(prefix="kiln_train_cli_")
    try:
        data = os.path.join(tmp, "data")
        make_dataset(data)
        out = os.path.join(tmp, "straight")
        p = subprocess.run(train_args(data, out), capture_output=True, text=True)
        if p.returncode != 0:
            check(False, f"kiln train exits 0 ({p.stderr.strip()[-300:]})")
            sys.exit(1)
        report = check_outputs(out, data, parse_lines(p.stdout))
        check_eval(out, data, report)
        check_resume(data, tmp, out)
        check_detection_eval(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
