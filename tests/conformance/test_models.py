"""Whole-model conformance: every shared real model runs in kiln and in
LiteRT's reference kernels on the same seeded inputs; float outputs must
agree within 1e-4 of each output's range. LiteRT cannot run the selfie
model's MediaPipe custom op Convolution2DTransposeBias, so the reference
runs a copy where that op is replaced by the builtin TRANSPOSE_CONV with the
same weights, bias, strides and padding (kiln runs the original).

usage: test_models.py   (KILN_MODELS, KILN_BIN in the environment)
"""
import os
import struct
import sys
import tempfile

from common import need_reference, models_dir, run_kiln, litert

need_reference()
import numpy as np  # noqa: E402

MODELS = [
    "ssd_mobilenet_v2_oidv4_fp16.tflite",
    "face_detection_short_range.tflite",
    "face_detection_full_range.tflite",
    "palm_detection_lite.tflite",
    "hand_landmark_lite.tflite",
    "selfie_segmentation.tflite",
]
TOLERANCE = 1e-4


def replace_transpose_conv_bias(src, dst):
    """Writes a copy of src where each Convolution2DTransposeBias custom op
    becomes TRANSPOSE_CONV(output_shape, weights, input, bias)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    with open(src, "rb") as f:
        model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(f.read(), 0))
    tc_index = None
    for i, oc in enumerate(model.operatorCodes):
        if oc.customCode == b"Convolution2DTransposeBias":
            oc.builtinCode = S.BuiltinOperator.TRANSPOSE_CONV
            oc.deprecatedBuiltinCode = S.BuiltinOperator.TRANSPOSE_CONV
            oc.customCode = None
            oc.version = 3
            tc_index = i
    assert tc_index is not None
    sg = model.subgraphs[0]
    for op in sg.operators:
        if op.opcodeIndex != tc_index:
            continue
        padding, stride_w, stride_h = struct.unpack("<iii", bytes(op.customOptions)[:12])
        opts = S.TransposeConvOptionsT()
        opts.padding = S.Padding.SAME if padding == 1 else S.Padding.VALID
        opts.strideW, opts.strideH = stride_w, stride_h
        op.builtinOptionsType = S.BuiltinOptions.TransposeConvOptions
        op.builtinOptions = opts
        op.customOptions = None
        inp, weights, bias = list(op.inputs)
        out_shape = list(sg.tensors[op.outputs[0]].shape)
        buf = S.BufferT()
        buf.data = np.array(out_shape, dtype=np.int32).tobytes()
        model.buffers.append(buf)
        t = S.TensorT()
        t.shape = [4]
        t.type = S.TensorType.INT32
        t.buffer = len(model.buffers) - 1
        t.name = b"transpose_conv_output_shape"
        sg.tensors.append(t)
        op.inputs = [len(sg.tensors) - 1, weights, inp, bias]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with open(dst, "wb") as f:
        f.write(b.Output())


def main():
    rng = np.random.default_rng(2026)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            path = os.path.join(models_dir(), name)
            ref_path = path
            if name == "selfie_segmentation.tflite":
                ref_path = os.path.join(tmp, "selfie_transpose_conv.tflite")
                replace_transpose_conv_bias(path, ref_path)
            it = litert(ref_path)
            ins = [rng.uniform(-1, 1, size=d["shape"]).astype(np.float32)
                   for d in it.get_input_details()]
            for d, x in zip(it.get_input_details(), ins):
                it.set_tensor(d["index"], x)
            it.invoke()
            refs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
            out_names = [d["name"] for d in it.get_output_details()]
            in_names = [d["name"] for d in it.get_input_details()]
            outs, err = run_kiln(path, list(zip(in_names, ins)), out_names)
            if outs is None:
                failures.append(f"{name}: kiln failed: {err}")
                print(f"FAIL {name}: {err}")
                continue
            for ref, got, oname in zip(refs, outs, out_names):
                span = float(ref.max() - ref.min()) or 1.0
                rel = float(np.abs(ref - got).max()) / span
                status = "ok" if rel <= TOLERANCE and ref.shape == got.shape else "FAIL"
                print(f"{status} {name} {oname} {list(ref.shape)}: max |kiln - LiteRT| = "
                      f"{float(np.abs(ref - got).max()):.3g} = {rel:.3g} of range {span:.3g}")
                if status != "ok":
                    failures.append(f"{name}: {oname}")
    print(f"{len(MODELS) - len({f.split(':')[0] for f in failures})} passed, "
          f"{len({f.split(':')[0] for f in failures})} failed")
    sys.exit(1 if failures else 0)


main()
