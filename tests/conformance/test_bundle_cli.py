"""CPU bundles through the CLI: `kiln compile --target cpu` co-compiles a
shared float model and two int8 op models into one bundle; `kiln run` on
each of its models gives byte for byte the outputs of `kiln run` on the
.tflite; `kiln inspect --json` reports one shared arena (the largest of the
models' own arenas, each equal to what `kiln inspect` plans for the .tflite)
and the bytes saved; `kiln bench` opens it (no timing asserts); and damaged
bundles, another CPU (KILN_ISA_MASK) and bad --model-index values are
refused with a message and the documented exit status.
"""
import json
import os
import subprocess
import sys
import tempfile

from common import need_reference, models_dir, kiln_bin, out_file_name

need_reference()
import numpy as np  # noqa: E402

FLOAT = os.path.join(models_dir(), "face_detection_short_range.tflite")
OPS = os.environ.get("KILN_OP_MODELS", "")
INT8 = [os.path.join(OPS, "conv2d_s8_1.tflite"), os.path.join(OPS, "depthwise_s8_1.tflite")]

passed, failures = 0, []


def check(cond, what):
    global passed
    print(("ok   " if cond else "FAIL ") + what)
    if cond:
        passed += 1
    else:
        failures.append(what)


def kiln(*args, env=None):
    return subprocess.run([kiln_bin(), *args], capture_output=True, text=True, env=env)


def inspect(path):
    r = kiln("inspect", path, "--json")
    if r.returncode != 0:
        sys.exit(f"FAIL: kiln inspect {path}: {r.stderr}")
    return json.loads(r.stdout)


def random_inputs(info, rng, tmp, tag):
    """.npy files for a model's inputs (from `kiln inspect --json`)."""
    args = []
    for i, t in enumerate(info["inputs"]):
        shape = t["shape"]
        if t["dtype"] == "int8":
            x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        else:
            x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
        p = os.path.join(tmp, f"{tag}_in{i}.npy")
        np.save(p, x)
        args += ["--input", f"{t['name']}={p}"]
    return args


def run_outputs(path, inputs, info, out_dir, *extra, env=None):
    r = kiln("run", path, *inputs, "--output-dir", out_dir, *extra, env=env)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return [np.load(os.path.join(out_dir, out_file_name(t["name"]))) for t in info["outputs"]], ""


def same(a, b):
    return a is not None and b is not None and len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def main():
    models = [FLOAT, *INT8]
    for m in models:
        if not os.path.isfile(m):
            sys.exit(f"FAIL: {m} missing (KILN_MODELS, KILN_OP_MODELS)")
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        r = kiln("compile", *models, "--target", "cpu", "--out", os.path.join(tmp, "c"))
        bundle = os.path.join(tmp, "c", "bundle.kbundle")
        check(r.returncode == 0 and os.path.isfile(bundle), f"compile --target cpu writes a bundle ({r.stderr.strip()[-300:]})")
        if not os.path.isfile(bundle):
            return
        b = inspect(bundle)
        check(b["runnable"] and len(b["models"]) == 3 and b["file_bytes"] == os.path.getsize(bundle),
              f"inspect: runnable, 3 models, file size {b['file_bytes']}")
        own = [inspect(m)["arena_bytes"] for m in models]
        check([m["arena_bytes"] for m in b["models"]] == own, f"own arenas {own} as planned for the .tflite")
        check(b["shared_arena_bytes"] == max(own) and b["separate_arena_bytes"] == sum(own)
              and b["saved_bytes"] == sum(own) - max(own) > 0,
              f"shared {b['shared_arena_bytes']}, separate {b['separate_arena_bytes']}, saved {b['saved_bytes']}")
        check(all(m["packed_bytes"] > 0 for m in b["models"]), "every model has packed weights stored")
        text = kiln("inspect", bundle)
        check(text.returncode == 0 and "this CPU: ready" in text.stdout and "saves" in text.stdout,
              "inspect text says it runs here and what it saves")

        for i, m in enumerate(models):
            info = inspect(m)
            inputs = random_inputs(info, rng, tmp, f"m{i}")
            want, err = run_outputs(m, inputs, info, os.path.join(tmp, f"want{i}"))
            got, err2 = run_outputs(bundle, inputs, info, os.path.join(tmp, f"got{i}"), "--model-index", str(i),
                                    "--threads", "2")
            check(same(want, got), f"run model {i} from the bundle: same bytes as the .tflite ({err}{err2})")
        # The reference kernels leave the packed weights unused; int8 is exact either way.
        info = inspect(INT8[0])
        inputs = random_inputs(info, rng, tmp, "ref")
        want, _ = run_outputs(INT8[0], inputs, info, os.path.join(tmp, "want_ref"))
        got, err = run_outputs(bundle, inputs, info, os.path.join(tmp, "got_ref"), "--model-index", "1", "--ref")
        check(same(want, got), f"--ref on the bundle: same int8 bytes ({err})")

        r = kiln("bench", bundle, "--model-index", "1", "--iters", "2", "--warmup", "0", "--json")
        j = json.loads(r.stdout) if r.returncode == 0 else {}
        check(j.get("bundle") is True and j.get("model_index") == 1 and j.get("create_ms") == 0
              and j.get("open_to_ready_ms") == j.get("load_ms") > 0 and j.get("arena_bytes") == own[1],
              f"bench --json on the bundle: bundle, model_index, open time, arena ({r.stderr.strip()})")
        r = kiln("bench", bundle, "--iters", "2", "--warmup", "0")
        check(r.returncode == 0 and "(bundle open)" in r.stdout, "bench text on the bundle")

        r = kiln("bench", bundle, "--model-index", "3")
        check(r.returncode == 2 and "holds 3 models" in r.stderr, f"--model-index 3 refused: {r.stderr.strip()}")
        r = kiln("run", FLOAT, "--model-index", "0", "--output-dir", tmp)
        check(r.returncode == 2 and "needs a bundle" in r.stderr, f"--model-index on a .tflite: {r.stderr.strip()}")

        data = bytearray(open(bundle, "rb").read())
        flipped = os.path.join(tmp, "flipped.kbundle")
        data[len(data) // 2] ^= 0x10
        open(flipped, "wb").write(data)
        data[len(data) // 2] ^= 0x10
        for cmd in (["inspect", flipped], ["bench", flipped], ["run", flipped, "--output-dir", tmp]):
            r = kiln(*cmd)
            check(r.returncode == 1 and "checksum" in r.stderr and flipped in r.stderr,
                  f"{cmd[0]} on a flipped byte: {r.stderr.strip()}")
        cut = os.path.join(tmp, "cut.kbundle")
        open(cut, "wb").write(data[: len(data) - 100])
        r = kiln("inspect", cut)
        check(r.returncode == 1 and "truncated" in r.stderr, f"truncated: {r.stderr.strip()}")

        env = dict(os.environ, KILN_ISA_MASK="0")
        r = kiln("run", bundle, "--output-dir", tmp, env=env)
        check(r.returncode == 1 and "lacks" in r.stderr, f"a CPU without the kernels: {r.stderr.strip()}")
        r = kiln("inspect", bundle, "--json", env=env)
        j = json.loads(r.stdout) if r.returncode == 0 else {}
        check(j.get("runnable") is False and "lacks" in j.get("not_runnable_reason", ""),
              f"inspect on such a CPU says why: {j.get('not_runnable_reason')}")

    print(f"{passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
