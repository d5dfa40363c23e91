"""ResNet's residual block. Copy this file alone into a project: it needs only keras.

    x = ResidualBlock(64)(x)               # (B, H, W, C) -> (B, H, W, 64)
    x = ResidualBlock(128, strides=2)(x)   # (B, H, W, C) -> (B, H/2, W/2, 128)
"""

import keras


@keras.saving.register_keras_serializable(package="recipes")
class ResidualBlock(keras.layers.Layer):
    """Two convolutions with batch normalization, added to a shortcut.

        y = BN(Conv(act(BN(Conv_s(x)))))
        output = act(y + shortcut(x))

    where `Conv_s` has stride `strides`, and `shortcut(x)` is `x` itself when
    the shapes already match (stride 1, as many channels in as out) and
    otherwise a 1x1 convolution with stride `strides` and batch normalization
    (the "projection shortcut", option B of He et al.). The convolutions have
    no bias (the batch normalization that follows has one) and `same`
    padding, so the output is `ceil(H / strides) x ceil(W / strides)`.

    The identity path lets the gradient reach early layers unchanged, which is
    what made networks of a hundred layers trainable.

    Args:
        filters: output channels.
        kernel_size: the two convolutions' kernel size (default 3).
        strides: the first convolution's (and the projection's) stride.
        activation: activation name or callable (default `"relu"`).
        kernel_initializer: the convolutions' initializer (default
            `"he_normal"`, He et al.'s for relu).
        momentum: the batch normalizations' moving-average momentum.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        4D tensor `(batch, rows, cols, channels)` (channels last).

    Output shape:
        `(batch, ceil(rows / strides), ceil(cols / strides), filters)`.

    Reference:
        - [He et al., 2015](https://arxiv.org/abs/1512.03385), "Deep Residual
          Learning for Image Recognition".
    """

    def __init__(self, filters, kernel_size=3, strides=1, activation="relu",
                 kernel_initializer="he_normal", momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("kernel_size", kernel_size),
                            ("strides", strides)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"Argument `{name}` must be a positive integer. Received: {name}={value}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.momentum = momentum

    def _conv(self, kernel_size, strides, name):
        return keras.layers.Conv2D(
            self.filters, kernel_size, strides=strides, padding="same", use_bias=False,
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name=name)

    def _norm(self, name):
        return keras.layers.BatchNormalization(momentum=self.momentum, dtype=self.dtype_policy,
                                               name=name)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "ResidualBlock expects inputs (batch, rows, cols, channels) with a known "
                f"channel count. Received: input_shape={input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        self.conv1 = self._conv(self.kernel_size, self.strides, "conv1")
        self.norm1 = self._norm("norm1")
        self.conv2 = self._conv(self.kernel_size, 1, "conv2")
        self.norm2 = self._norm("norm2")
        self.conv1.build(input_shape)
        middle = self.conv1.compute_output_shape(input_shape)
        self.norm1.build(middle)
        self.conv2.build(middle)
        self.norm2.build(middle)
        self.projection = self.strides != 1 or input_shape[-1] != self.filters
        if self.projection:
            self.shortcut_conv = self._conv(1, self.strides, "shortcut_conv")
            self.shortcut_norm = self._norm("shortcut_norm")
            self.shortcut_conv.build(input_shape)
            self.shortcut_norm.build(middle)

    def call(self, inputs, training=None):
        y = self.activation(self.norm1(self.conv1(inputs), training=training))
        y = self.norm2(self.conv2(y), training=training)
        shortcut = inputs
        if self.projection:
            shortcut = self.shortcut_norm(self.shortcut_conv(inputs), training=training)
        return self.activation(y + shortcut)

    def compute_output_shape(self, input_shape):
        def side(n):
            return None if n is None else -(-n // self.strides)

        return (input_shape[0], side(input_shape[1]), side(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "momentum": self.momentum,
        })
        return config
