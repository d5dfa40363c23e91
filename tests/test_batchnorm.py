"""core.batchnorm: Keras's BatchNormalization on TensorFlow's fused kernel must
compute what Keras's layer computes, in training and inference, and be what the
CNN recipe trains with."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.batchnorm import FusedBatchNormalization
from recipes import cnn


def pair(shape, **kwargs):
    """Keras's layer and ours, built alike with the same non-trivial weights."""
    layers = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    for layer in layers:
        layer.build(shape)
        channels = shape[-1]
        layer.gamma.assign(np.linspace(0.5, 2.0, channels))
        layer.beta.assign(np.linspace(-1.0, 1.0, channels))
    return layers


def run(layer, x):
    """Training output, gradients of a non-linear loss, then inference output."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * tf.sin(tf.cast(y, "float32")))
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return y, grads, layer(x, training=False)


@pytest.mark.parametrize("shape", [(16, 7, 7, 8), (3, 2, 2, 5)])
def test_fused_matches_keras_in_training_gradients_statistics_and_inference(shape):
    x = np.random.RandomState(0).normal(2.0, 3.0, shape).astype("float32")
    keras_bn, fused = pair(shape, momentum=0.9)
    (y_k, g_k, inf_k), (y_f, g_f, inf_f) = run(keras_bn, x), run(fused, x)
    np.testing.assert_allclose(y_f, y_k, atol=1e-5)
    for a, b in zip(g_f, g_k):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    # The moving variance takes the biased batch variance, as Keras's does.
    np.testing.assert_allclose(fused.moving_mean, keras_bn.moving_mean, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, keras_bn.moving_variance, rtol=1e-6)
    np.testing.assert_allclose(inf_f, inf_k, atol=1e-5)


def test_fused_keeps_the_mixed_precision_dtypes():
    x = np.random.RandomState(1).normal(0.0, 1.0, (8, 4, 4, 6)).astype("float32")
    keras_bn, fused = pair(x.shape, dtype="mixed_bfloat16")
    x = tf.cast(x, "bfloat16")
    y_k, y_f = keras_bn(x, training=True), fused(x, training=True)
    assert y_f.dtype == y_k.dtype == tf.bfloat16
    assert fused.moving_mean.dtype == keras_bn.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y_f, "float32"), tf.cast(y_k, "float32"), atol=0.05)


def test_where_the_kernel_does_not_apply_it_is_keras_layer():
    x = np.random.RandomState(2).normal(1.0, 2.0, (32, 5)).astype("float32")  # 2-D
    keras_bn, fused = pair(x.shape)
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), atol=1e-6)
    assert not fused._fused(tf.constant(x), None)
    assert not FusedBatchNormalization(center=False)._fused(tf.zeros((1, 2, 2, 3)), None)


def test_same_config_and_weights_as_keras_and_a_keras_file_round_trip(tmp_path):
    ours = FusedBatchNormalization(momentum=0.8, epsilon=1e-4)
    assert ours.get_config() == keras.layers.BatchNormalization(
        momentum=0.8, epsilon=1e-4, name=ours.name).get_config()
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, ours(inputs))
    ours.moving_variance.assign([1.0, 2.0, 3.0])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[-1], FusedBatchNormalization)
    np.testing.assert_allclose(loaded.layers[-1].moving_variance, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("architecture", ["plain", "resnet"])
def test_the_cnn_trains_through_the_fused_kernel(architecture):
    model = cnn.build_model((28, 28, 1), 10, architecture=architecture)
    step = tf.function(lambda x: model(x, training=True)).get_concrete_function(
        tf.TensorSpec((2, 28, 28, 1), tf.uint8))
    ops = {op.type for op in step.graph.get_operations()}
    assert "FusedBatchNormV3" in ops
