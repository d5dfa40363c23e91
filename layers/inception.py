"""GoogLeNet's Inception module. Copy this file alone into a project: it needs only keras.

    x = InceptionModule(16, (16, 24), (4, 8), 8)(x)   # (B, H, W, C) -> (B, H, W, 56)
"""

import keras


@keras.saving.register_keras_serializable(package="recipes")
class InceptionModule(keras.layers.Layer):
    """Four parallel branches over the same input, concatenated along channels.

        output = concat([conv1x1(x),
                         conv3x3(conv1x1(x)),
                         conv5x5(conv1x1(x)),      # or two 3x3 when factorized
                         conv1x1(maxpool3x3(x))])

    Each convolution is Conv2D (`same` padding, no bias) + BatchNormalization
    + activation; the 1x1 convolutions before the 3x3 and 5x5 ones reduce the
    channels first (the module's "dimension reduction"), and the pooling
    branch has stride 1, so every branch keeps the input's rows and columns.
    `factorize=True` replaces the 5x5 convolution with two 3x3 ones, the first
    keeping the reduction's channels: the same receptive field with
    `9 r (r + out)` weights instead of `25 r out` (Inception v2/v3).

    Args:
        filters_1x1: channels of the 1x1 branch.
        filters_3x3: a pair `(reduce, out)`: the 1x1 reduction's channels, then
            the 3x3 convolution's.
        filters_5x5: a pair `(reduce, out)` likewise for the 5x5 branch.
        filters_pool: channels of the 1x1 convolution after the max pooling.
        factorize: the 5x5 branch as two 3x3 convolutions.
        activation: activation name or callable (default `"relu"`).
        momentum: the batch normalizations' moving-average momentum.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        4D tensor `(batch, rows, cols, channels)` (channels last).

    Output shape:
        `(batch, rows, cols, filters_1x1 + filters_3x3[1] + filters_5x5[1] +
        filters_pool)`.

    Reference:
        - [Szegedy et al., 2014](https://arxiv.org/abs/1409.4842), "Going Deeper
          with Convolutions" (GoogLeNet).
        - [Szegedy et al., 2015](https://arxiv.org/abs/1512.00567), "Rethinking
          the Inception Architecture for Computer Vision" (factorization).
    """

    def __init__(self, filters_1x1, filters_3x3, filters_5x5, filters_pool, factorize=False,
                 activation="relu", momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters_1x1", filters_1x1), ("filters_pool", filters_pool)):
            if not _positive(value):
                raise ValueError(
                    f"Argument `{name}` must be a positive integer. Received: {name}={value}")
        for name, value in (("filters_3x3", filters_3x3), ("filters_5x5", filters_5x5)):
            if not (isinstance(value, (list, tuple)) and len(value) == 2
                    and all(_positive(v) for v in value)):
                raise ValueError(
                    f"Argument `{name}` must be a pair of positive integers (reduce, out). "
                    f"Received: {name}={value}")
        filters_3x3, filters_5x5 = tuple(filters_3x3), tuple(filters_5x5)
        self.filters_1x1 = filters_1x1
        self.filters_3x3 = filters_3x3
        self.filters_5x5 = filters_5x5
        self.filters_pool = filters_pool
        self.factorize = factorize
        self.activation = keras.activations.get(activation)
        self.momentum = momentum

    def _unit(self, filters, kernel_size, name):
        """Conv2D and its BatchNormalization; the activation is applied in `call`."""
        self.convs.append(keras.layers.Conv2D(
            filters, kernel_size, padding="same", use_bias=False, kernel_initializer="he_normal",
            dtype=self.dtype_policy, name=f"{name}_conv"))
        self.norms.append(keras.layers.BatchNormalization(
            momentum=self.momentum, dtype=self.dtype_policy, name=f"{name}_norm"))

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "InceptionModule expects inputs (batch, rows, cols, channels) with a known "
                f"channel count. Received: input_shape={input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        self.convs, self.norms = [], []
        self._unit(self.filters_1x1, 1, "b1_1x1")
        self._unit(self.filters_3x3[0], 1, "b3_reduce")
        self._unit(self.filters_3x3[1], 3, "b3_3x3")
        self._unit(self.filters_5x5[0], 1, "b5_reduce")
        if self.factorize:
            self._unit(self.filters_5x5[0], 3, "b5_3x3a")
            self._unit(self.filters_5x5[1], 3, "b5_3x3b")
        else:
            self._unit(self.filters_5x5[1], 5, "b5_5x5")
        self._unit(self.filters_pool, 1, "pool_1x1")
        # Units per branch: 1x1; reduce, 3x3; reduce, 5x5 (or 3x3, 3x3); pool's 1x1.
        self.branch_sizes = [1, 2, 3 if self.factorize else 2, 1]
        self.pool = keras.layers.MaxPooling2D(3, strides=1, padding="same",
                                              dtype=self.dtype_policy, name="pool")
        unit = 0
        for size in self.branch_sizes:
            shape = input_shape
            for conv, norm in zip(self.convs[unit:unit + size], self.norms[unit:unit + size]):
                conv.build(shape)
                shape = conv.compute_output_shape(shape)
                norm.build(shape)
            unit += size

    def call(self, inputs, training=None):
        outputs, unit = [], 0
        for i, size in enumerate(self.branch_sizes):
            x = self.pool(inputs) if i == len(self.branch_sizes) - 1 else inputs
            for conv, norm in zip(self.convs[unit:unit + size], self.norms[unit:unit + size]):
                x = self.activation(norm(conv(x), training=training))
            outputs.append(x)
            unit += size
        return keras.ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        channels = (self.filters_1x1 + self.filters_3x3[1] + self.filters_5x5[1]
                    + self.filters_pool)
        return (*input_shape[:3], channels)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters_1x1": self.filters_1x1,
            "filters_3x3": list(self.filters_3x3),
            "filters_5x5": list(self.filters_5x5),
            "filters_pool": self.filters_pool,
            "factorize": self.factorize,
            "activation": keras.activations.serialize(self.activation),
            "momentum": self.momentum,
        })
        return config


def _positive(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
