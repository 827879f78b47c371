#!/usr/bin/env python3
"""Runs models exported by kiln's training engine in LiteRT and compares
them with the engine's own inference-mode outputs.

    check_export.py DIR

DIR holds NAME.tflite, NAME.inputs.bin and NAME.expected.bin (float32,
batch-major) as written by tests/unit/test_train_export with
KILN_TRAIN_EXPORT_DIR=DIR, or by bench/train/fmnist --export DIR. Exits 1
when any output differs by more than 1e-4 (relative to max(1, |expected|)).
Needs ai_edge_litert and numpy (tests/requirements.txt)."""
import glob
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def check(model_path):
    stem = model_path[: -len(".tflite")]
    interp = Interpreter(model_path=model_path)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    in_size = int(np.prod(inp["shape"]))
    out_size = int(np.prod(out["shape"]))
    inputs = np.fromfile(stem + ".inputs.bin", dtype=np.float32).reshape(-1, in_size)
    expected = np.fromfile(stem + ".expected.bin", dtype=np.float32).reshape(-1, out_size)
    worst = 0.0
    for x, e in zip(inputs, expected):
        interp.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interp.invoke()
        got = interp.get_tensor(out["index"]).reshape(-1)
        worst = max(worst, float(np.max(np.abs(got - e) / np.maximum(1.0, np.abs(e)))))
    print(f"{os.path.basename(model_path)}: {len(inputs)} inputs, LiteRT vs engine max difference {worst:.3g}")
    return worst <= 1e-4


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    models = sorted(glob.glob(os.path.join(sys.argv[1], "*.tflite")))
    if not models:
        print(f"{sys.argv[1]}: no .tflite files")
        return 1
    ok = all([check(m) for m in models])
    print("all equal within 1e-4" if ok else "DIFFERENCES over 1e-4")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
