"""Models exported by the training engine run in LiteRT like in the engine:
runs tests/unit/test_train_export with KILN_TRAIN_EXPORT_DIR (it writes each
exported .tflite with its inputs and the engine's inference-mode outputs)
and checks every model in LiteRT within 1e-4 (bench/train/check_export.py).

usage: test_train_export.py TEST_BINARY
"""
import os
import subprocess
import sys
import tempfile

from common import need_reference

need_reference()

here = os.path.dirname(os.path.abspath(__file__))
checker = os.path.join(here, "..", "..", "bench", "train", "check_export.py")
with tempfile.TemporaryDirectory() as tmp:
    r = subprocess.run([sys.argv[1]], env={**os.environ, "KILN_TRAIN_EXPORT_DIR": tmp},
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
    models = [f for f in os.listdir(tmp) if f.endswith(".tflite")]
    if not models:
        print("FAIL: the engine exported no model")
        sys.exit(1)
    r = subprocess.run([sys.executable, checker, tmp], capture_output=True, text=True)
    print(r.stdout + r.stderr)
    print(f"{1 if r.returncode == 0 else 0} passed, {0 if r.returncode == 0 else 1} failed")
    sys.exit(r.returncode)
