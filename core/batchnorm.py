"""Keras's BatchNormalization through TensorFlow's fused kernel.

Keras 3 normalizes with separate ops (moments, then `tf.nn.batch_normalization`,
in float32 around bf16 activations); Keras 2 called TensorFlow's one fused
kernel, `FusedBatchNormV3`, which oneDNN implements for bf16 and float32
(keras-team/keras-core#225, "BatchNorm is slow", records the gap). Here the CNN
recipe's default trained 2.07x as fast with the fused kernel under bf16, 1.39x
in float32 (`python -m benchmarks.throughput --compare-batchnorm`;
docs/benchmarks.md, "Batch norm kernel").

`FusedBatchNormalization` is Keras's layer with the same weights, config and
formula,

    training:  y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta
               moving = momentum * moving + (1 - momentum) * batch statistic
    inference: y = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta

(Ioffe & Szegedy, 2015), where mean_B and var_B (biased) are over the batch
and every axis but the channels. The kernel reports the unbiased variance
n/(n-1) var_B; the moving variance takes var_B, as Keras's does. Where the
kernel does not apply (not 4-D channels-last, a mask, renorm, synchronized
statistics, no scale or centre, or another backend) it is Keras's layer.
It imports TensorFlow, so it lives here, not in layers/.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="core")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` on TensorFlow's fused kernel; same
    arguments, weights and `get_config`."""

    def _fused(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.scale and self.center and not self.renorm
                and not self.synchronized)

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        gamma, beta = tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32")
        if not (training and self.trainable):
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, gamma, beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, is_training=False)
            return tf.cast(outputs, self.compute_dtype)
        outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
        n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
        variance = unbiased * (n - 1.0) / tf.maximum(n, 2.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)
