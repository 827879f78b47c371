"""Makes the benchmark's int8 models with TensorFlow's own converter.

  python bench/models.py OUT_DIR

writes OUT_DIR/mobilenet_v2_int8.tflite (Keras MobileNetV2 1.0 224) and
OUT_DIR/ssd_mobilenet_v2_int8.tflite (an SSD MobileNetV2 300 with the same
layer shapes as the shared float SSD: 1917 anchors, 24 classes), both with
random weights (speed does not depend on them; batch norm statistics are set
from random images so activations keep a realistic scale) and full-integer
quantization calibrated on random images, int8 inputs and outputs. A file
that already exists is kept. Fixed seeds.
"""
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

CALIBRATION_IMAGES = 8
NUM_CLASSES = 24


def mobilenet_v2():
    return tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None)


def conv(x, filters, kernel, stride, name, relu6=True):
    x = tf.keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", name=name)(x)
    return tf.keras.layers.ReLU(6.0, name=name + "_relu6")(x) if relu6 else x


def ssd_mobilenet_v2():
    """The shared SSD's layout: MobileNetV2 300x300 backbone; feature maps
    block_13_expand_relu (19x19x576) and out_relu (10x10x1280); extra layers
    1x1 conv then 3x3 stride-2 conv down to 5, 3, 2, 1; 1x1 box and class
    predictors with 3 anchors per cell on the first map and 6 elsewhere."""
    backbone = tf.keras.applications.MobileNetV2(input_shape=(300, 300, 3), alpha=1.0,
                                                 include_top=False, weights=None)
    maps = [backbone.get_layer("block_13_expand_relu").output, backbone.get_layer("out_relu").output]
    x = maps[-1]
    for i, (squeeze, depth) in enumerate([(256, 512), (128, 256), (128, 256), (64, 128)]):
        x = conv(x, squeeze, 1, 1, f"extra_{i}_1x1_{squeeze}")
        x = conv(x, depth, 3, 2, f"extra_{i}_3x3_s2_{depth}")
        maps.append(x)
    boxes, classes = [], []
    for i, fmap in enumerate(maps):
        anchors = 3 if i == 0 else 6
        b = conv(fmap, anchors * 4, 1, 1, f"box_{i}", relu6=False)
        c = conv(fmap, anchors * NUM_CLASSES, 1, 1, f"class_{i}", relu6=False)
        boxes.append(tf.keras.layers.Reshape((-1, 4), name=f"box_{i}_reshape")(b))
        classes.append(tf.keras.layers.Reshape((-1, NUM_CLASSES), name=f"class_{i}_reshape")(c))
    box_out = tf.keras.layers.Concatenate(axis=1, name="box_encodings")(boxes)
    class_out = tf.keras.layers.Concatenate(axis=1, name="class_predictions")(classes)
    model = tf.keras.Model(backbone.input, [box_out, class_out], name="ssd_mobilenet_v2")
    assert model.outputs[0].shape[1] == 1917, model.outputs[0].shape
    return model


def normalize_batchnorms(model, size):
    """Sets every batch norm's moving statistics to those of its input on
    random images, in graph order, so activations keep a trained network's
    scale instead of vanishing through random layers (the quantized model's
    scales then look like a real one's)."""
    rng = np.random.default_rng(1)
    images = rng.uniform(-1.0, 1.0, size=(4, size, size, 3)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            x = tf.keras.Model(model.input, layer.input)(images, training=False)
            layer.moving_mean.assign(tf.reduce_mean(x, axis=[0, 1, 2]))
            layer.moving_variance.assign(tf.math.reduce_variance(x, axis=[0, 1, 2]))


def quantize_int8(model, size, path):
    """Full-integer quantization (int8 weights, activations, input, output)."""
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(CALIBRATION_IMAGES):
            yield [rng.uniform(-1.0, 1.0, size=(1, size, size, 3)).astype(np.float32)]

    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)],
                     verbose=False)
        data = convert(tf.lite.TFLiteConverter.from_saved_model(saved), representative)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(data)} bytes)")


def convert(converter, representative):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python bench/models.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, build, size in [("mobilenet_v2_int8.tflite", mobilenet_v2, 224),
                              ("ssd_mobilenet_v2_int8.tflite", ssd_mobilenet_v2, 300)]:
        path = os.path.join(out, name)
        if os.path.exists(path):
            print(f"kept {path}")
            continue
        tf.keras.utils.set_random_seed(0)
        model = build()
        normalize_batchnorms(model, size)
        quantize_int8(model, size, path)


if __name__ == "__main__":
    main()
