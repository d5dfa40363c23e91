"""Maxout activation layer. Copy this file alone into a project: it needs only keras."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="recipes")
class Maxout(keras.layers.Layer):
    """Maxout: the maximum over groups of channels.

    The last axis of `C` channels is split into `num_units` consecutive groups
    of `k = C / num_units` channels, and each output channel is the maximum
    within its group:

        output[..., i] = max_{j < k} inputs[..., i * k + j]

    Placed after a layer with `num_units * k` output channels, this is the
    maxout unit of Goodfellow et al.: each output is the max over `k` affine
    pieces of the input. For the "k affine pieces" form, write

        x = keras.layers.Dense(num_units * k)(x)   # or Conv2D(num_units * k, ...)
        x = Maxout(num_units)(x)

    It works after Dense (inputs `(batch, C)`) and after Conv2D (inputs
    `(batch, H, W, C)`, channels last) alike.

    Args:
        num_units: number of output channels; must divide the input's
            channel count.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        Any rank >= 2, channels on the last axis.

    Output shape:
        The input shape with the last axis replaced by `num_units`.

    Reference:
        - [Goodfellow et al., 2013](https://arxiv.org/abs/1302.4389),
          "Maxout Networks".
    """

    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_units, int) or isinstance(num_units, bool) or num_units < 1:
            raise ValueError(
                f"Argument `num_units` must be a positive integer. Received: num_units={num_units}"
            )
        self.num_units = num_units
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.num_units:
            raise ValueError(
                f"The input's channel count must be a multiple of `num_units`. "
                f"Received: channels={channels}, num_units={self.num_units}"
            )
        self.pieces = channels // self.num_units
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: channels})

    def call(self, inputs):
        shape = ops.shape(inputs)
        grouped = ops.reshape(inputs, (*shape[:-1], self.num_units, self.pieces))
        return ops.max(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_units)

    def get_config(self):
        config = super().get_config()
        config.update({"num_units": self.num_units})
        return config
