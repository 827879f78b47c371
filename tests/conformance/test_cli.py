"""The CLI contract: --help on every command, exit codes (0 ok, 1 failure,
2 usage), `kiln inspect --json` facts of the shared SSD, `kiln run` input
checks, and `kiln classify` end to end on a small classifier written here
(global average pool -> fully connected -> softmax) whose answer for the
shared photo is computed independently with numpy.
"""
import json
import os
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin, write_classifier

need_reference()
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def kiln(*args):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True)


def main():
    ssd = os.path.join(models_dir(), "ssd_mobilenet_v2_oidv4_fp16.tflite")
    photo = os.path.join(models_dir(), "..", "images", "astronaut.png")
    for cmd in ("inspect", "run", "classify", "detect", "convert", "quantize", "bench"):
        r = kiln(cmd, "--help")
        check(r.returncode == 0 and r.stdout.startswith(f"usage: kiln {cmd}"), f"kiln {cmd} --help")
        r = kiln(cmd, "--no-such-flag")
        check(r.returncode == 2 and "unknown option" in r.stderr, f"kiln {cmd} refuses an unknown flag")
    r = kiln()
    check(r.returncode == 2 and "usage: kiln COMMAND" in r.stderr, "kiln without a command prints usage")
    r = kiln("frobnicate")
    check(r.returncode == 2 and "unknown command" in r.stderr, "unknown command")

    r = kiln("inspect", ssd, "--json")
    check(r.returncode == 0, "kiln inspect --json exits 0")
    info = json.loads(r.stdout)
    check(info["ops"] == {"CONV_2D": 55, "DEPTHWISE_CONV_2D": 17, "RESHAPE": 13, "ADD": 10, "CONCATENATION": 2},
          f"SSD ops after folding fp16 weights: {info['ops']}")
    check(info["inputs"][0]["name"] == "normalized_input_image_tensor" and
          info["inputs"][0]["shape"] == [1, 300, 300, 3], "SSD input name and shape")
    check([o["shape"] for o in info["outputs"]] == [[1, 1917, 4], [1, 1917, 24]], "SSD output shapes")
    check(info["runnable"] and 0 < info["arena_bytes"] < info["arena_unplanned_bytes"],
          f"arena planned by lifetimes: {info['arena_bytes']} < {info['arena_unplanned_bytes']} bytes")
    check(info["parameters"] > 4_000_000, f"parameter count {info['parameters']}")

    with tempfile.TemporaryDirectory() as tmp:
        bad = os.path.join(tmp, "x.npy")
        np.save(bad, np.zeros((1, 300, 300, 3), np.int32))
        r = kiln("run", ssd, "--input", bad, "--output-dir", tmp)
        check(r.returncode == 1 and "does not match input" in r.stderr, f"run: wrong dtype refused: {r.stderr.strip()}")
        r = kiln("run", ssd, "--input", f"nosuch={bad}", "--output-dir", tmp)
        check(r.returncode == 2 and "no input named 'nosuch'" in r.stderr, "run: unknown input name refused")
        r = kiln("run", ssd, "--output-dir", tmp)
        check(r.returncode == 2 and "no data for input" in r.stderr, "run: missing input refused")
        r = kiln("inspect", os.path.join(tmp, "missing.tflite"))
        check(r.returncode == 1 and "missing.tflite" in r.stderr, "inspect: missing file named")

        # classify: weights pick the red, green and blue channel means.
        model = os.path.join(tmp, "rgb.tflite")
        weights = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 4], [0, 0, 0]], np.float32)
        bias = np.zeros(4, np.float32)
        write_classifier(model, weights, bias)
        labels = os.path.join(tmp, "labels.txt")
        with open(labels, "w") as f:
            f.write("red\ngreen\nblue\nnothing\n")
        r = kiln("classify", model, photo, "--labels", labels, "--top", "4", "--json")
        check(r.returncode == 0, f"kiln classify exits 0 ({r.stderr.strip()})")
        got = json.loads(r.stdout)["classes"] if r.returncode == 0 else []
        img = np.asarray(Image.open(photo).convert("RGB").resize((32, 32), Image.BILINEAR), np.float64)
        mean = (img / 127.5 - 1).reshape(-1, 3).mean(axis=0)
        logits = weights.astype(np.float64) @ mean
        p = np.exp(logits - logits.max())
        p /= p.sum()
        order = list(np.argsort(-p))
        check([c["class_id"] for c in got] == order, f"classify ranking {[c.get('label') for c in got]} "
              f"equals numpy's {[['red', 'green', 'blue', 'nothing'][i] for i in order]}")
        check(all(abs(c["score"] - p[c["class_id"]]) < 0.02 for c in got),
              f"classify scores {[round(c['score'], 3) for c in got]} near numpy's {np.round(p, 3).tolist()}")
        r = kiln("classify", model, photo)
        check(r.returncode == 0 and r.stdout.count("\n") == 4, "classify text output lists the classes")

    print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
    sys.exit(1 if failures else 0)


main()
