"""Per-op conformance: every model written by gen_op_models (kiln's writer,
random weights and quantization parameters with edge cases) runs in LiteRT's
reference kernels and in kiln on the same random inputs. int8/uint8 (and
int32) outputs must be bit-identical; float outputs must agree within 1e-5
of the output's range.

usage: test_ops.py MODEL_DIR  (with manifest.txt written by gen_op_models)
"""
import os
import sys

from common import need_reference, random_input, run_kiln, litert

need_reference()
import numpy as np  # noqa: E402


def main():
    model_dir = sys.argv[1]
    with open(os.path.join(model_dir, "manifest.txt")) as f:
        cases = [line.split() for line in f if line.strip()]
    if not cases:
        print("FAIL: the manifest lists no models")
        sys.exit(1)
    rng = np.random.default_rng(7)
    failures = []
    worst_float = 0.0
    exact_cases = 0
    for name, kind in cases:
        path = os.path.join(model_dir, name + ".tflite")
        try:
            it = litert(path)
        except Exception as e:  # LiteRT refusing kiln's model is a failure
            failures.append(f"{name}: LiteRT cannot load it: {e}")
            continue
        ins = [random_input(d, rng) for d in it.get_input_details()]
        for d, x in zip(it.get_input_details(), ins):
            it.set_tensor(d["index"], x)
        it.invoke()
        outs_ref = [it.get_tensor(d["index"]) for d in it.get_output_details()]
        out_names = [d["name"] for d in it.get_output_details()]
        in_names = [d["name"] for d in it.get_input_details()]
        outs, err = run_kiln(path, list(zip(in_names, ins)), out_names)
        if outs is None:
            failures.append(f"{name}: kiln failed: {err}")
            continue
        for ref, got, oname in zip(outs_ref, outs, out_names):
            if ref.shape != got.shape or ref.dtype != got.dtype:
                failures.append(f"{name}: {oname}: kiln {got.dtype}{list(got.shape)} vs LiteRT {ref.dtype}{list(ref.shape)}")
                continue
            if kind == "exact" or ref.dtype != np.float32:
                exact_cases += 1
                # A case whose reference output is (nearly) constant tests
                # little; only the deliberate saturation cases may be.
                if "_sat" not in name and len(np.unique(ref)) < min(3, ref.size):
                    failures.append(f"{name}: {oname}: degenerate reference output "
                                    f"({len(np.unique(ref))} distinct values)")
                diff = np.count_nonzero(ref.astype(np.int64) != got.astype(np.int64)) if ref.dtype != np.float32 else np.count_nonzero(ref != got)
                if diff:
                    idx = np.argwhere(ref != got)[0]
                    failures.append(f"{name}: {oname}: {diff} of {ref.size} values differ "
                                    f"(first at {idx.tolist()}: kiln {got[tuple(idx)]} LiteRT {ref[tuple(idx)]})")
            else:
                rng_ = float(np.max(ref) - np.min(ref)) or 1.0
                rel = float(np.max(np.abs(ref - got))) / rng_
                worst_float = max(worst_float, rel)
                if rel > 1e-5:
                    failures.append(f"{name}: {oname}: max diff {rel:.3g} of range")
    print(f"{len(cases)} op models: {exact_cases} outputs compared bit for bit, "
          f"worst float difference {worst_float:.3g} of range")
    for f in failures:
        print("FAIL", f)
    print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


main()
