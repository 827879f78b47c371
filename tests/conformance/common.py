"""Shared helpers of kiln's conformance tests (Python is used only here, in
tests and benchmarks; the product has none).

The reference is LiteRT (ai-edge-litert) with its reference kernels
(OpResolverType.BUILTIN_REF). Without it a test is skipped (exit 77) unless
CI=true, where a missing reference is a failure.
"""
import os
import subprocess
import sys
import tempfile

SKIP = 77


def need_reference():
    """Imports LiteRT and numpy or exits (skip, or failure under CI)."""
    try:
        import numpy  # noqa: F401
        from ai_edge_litert import interpreter  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI", "").lower() == "true":
            print(f"FAIL: reference interpreter missing under CI: {e}")
            sys.exit(1)
        print(f"SKIP: reference interpreter missing: {e}")
        sys.exit(SKIP)


def kiln_bin():
    return os.environ.get("KILN_BIN", "kiln")


def models_dir():
    return os.environ.get("KILN_MODELS", os.path.join("..", "shared", "models"))


def litert(model_path, ref=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kind = OpResolverType.BUILTIN_REF if ref else OpResolverType.BUILTIN
    it = Interpreter(model_path=model_path, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it


def run_litert(model_path, inputs, ref=True):
    """inputs: list of arrays in model input order; returns outputs in order."""
    it = litert(model_path, ref)
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def out_file_name(name):
    return name.replace("/", "_") + ".npy"


def run_kiln(model_path, named_inputs, output_names, extra=()):
    """Runs `kiln run`; returns (outputs in the given order, stderr)."""
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        args = [kiln_bin(), "run", model_path, "--output-dir", tmp, *extra]
        for i, (name, x) in enumerate(named_inputs):
            p = os.path.join(tmp, f"in{i}.npy")
            np.save(p, x)
            args += ["--input", f"{name}={p}"]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            return None, r.stderr.strip()
        outs = [np.load(os.path.join(tmp, out_file_name(n))) for n in output_names]
        return outs, r.stderr


def random_input(detail, rng):
    """Random data covering a tensor's whole range (quantized) or [-3, 3]."""
    import numpy as np
    dt = detail["dtype"]
    shape = detail["shape"]
    if dt == np.int8:
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    if dt == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    if dt == np.float32:
        return rng.uniform(-3.0, 3.0, size=shape).astype(np.float32)
    raise ValueError(f"no random data for {dt}")


def write_classifier(path, weights, bias):
    """Writes a small float image classifier with LiteRT's schema classes:
    image [1,32,32,3] -> MEAN(1,2) -> FULLY_CONNECTED(weights [C,3], bias [C])
    -> SOFTMAX -> probs [1,C]. Its answer is easy to compute with numpy."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT()
    model.version = 3
    model.buffers = [S.BufferT()]
    sg = S.SubGraphT()
    sg.tensors, sg.operators = [], []
    model.subgraphs = [sg]

    def tensor(name, shape, ttype, data=None):
        buf = S.BufferT()
        if data is not None:
            buf.data = np.ascontiguousarray(data).tobytes()
        model.buffers.append(buf)
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), ttype, len(model.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def op(index, ins, outs, opt_type, opt):
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, ins, outs
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        sg.operators.append(o)

    codes = []
    for code in (S.BuiltinOperator.MEAN, S.BuiltinOperator.FULLY_CONNECTED, S.BuiltinOperator.SOFTMAX):
        oc = S.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = code
        oc.version = 1
        codes.append(oc)
    model.operatorCodes = codes
    F32, I32 = S.TensorType.FLOAT32, S.TensorType.INT32
    x = tensor("image", [1, 32, 32, 3], F32)
    axes = tensor("axes", [2], I32, np.array([1, 2], np.int32))
    pooled = tensor("pooled", [1, 3], F32)
    w = tensor("w", list(weights.shape), F32, weights.astype(np.float32))
    b = tensor("b", [len(bias)], F32, bias.astype(np.float32))
    logits = tensor("logits", [1, len(bias)], F32)
    probs = tensor("probs", [1, len(bias)], F32)
    red = S.ReducerOptionsT()
    red.keepDims = False
    op(0, [x, axes], [pooled], S.BuiltinOptions.ReducerOptions, red)
    op(1, [pooled, w, b], [logits], S.BuiltinOptions.FullyConnectedOptions, S.FullyConnectedOptionsT())
    sm = S.SoftmaxOptionsT()
    sm.beta = 1.0
    op(2, [logits], [probs], S.BuiltinOptions.SoftmaxOptions, sm)
    sg.inputs, sg.outputs = [x], [probs]
    bld = flatbuffers.Builder(1024)
    bld.Finish(model.Pack(bld), file_identifier=b"TFL3")
    with open(path, "wb") as f:
        f.write(bld.Output())
