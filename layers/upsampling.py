"""Two ways to upsample by 2 in a decoder: transposed convolution, or resize + conv.

Copy this file alone into a project: it needs only keras.

    up = upsampling_block("resize_nearest", filters=32)   # or "transposed", "resize_bilinear"
    x = up(x)                                            # (B, H, W, C) -> (B, 2H, 2W, 32)

Both kinds have the same output shape and the same number of parameters
(`k * k * C * filters + filters`), so a comparison between them is fair.
"""

import keras
from keras import ops

KINDS = ("transposed", "resize_nearest", "resize_bilinear")
INTERPOLATIONS = ("nearest", "bilinear")


@keras.saving.register_keras_serializable(package="recipes")
class ResizeConv2D(keras.layers.Conv2D):
    """Resize-convolution: upsample the image, then a Conv2D ("resize-conv").

        output = Conv2D(UpSampling2D(inputs, size, interpolation))

    An alternative to `Conv2DTranspose` that, with `padding="same"`, cannot
    produce the checkerboard pattern of a transposed convolution whose kernel
    size is not divisible by its stride: every output pixel sees the same
    number of input pixels.

    Args:
        filters: number of output channels.
        kernel_size: size of the convolution kernel, an int or a pair.
        size: upsampling factor, a positive int or a pair.
        interpolation: `"nearest"` or `"bilinear"`.
        **kwargs: any other `keras.layers.Conv2D` argument (padding defaults
            to `"same"` here), and base layer arguments.

    Input shape:
        4D tensor `(batch, rows, cols, channels)` (channels last).

    Output shape:
        `(batch, rows * size[0], cols * size[1], filters)` with `padding="same"`.

    Reference:
        - [Odena et al., 2016](https://distill.pub/2016/deconv-checkerboard/),
          "Deconvolution and Checkerboard Artifacts", Distill.
    """

    def __init__(
        self, filters, kernel_size=3, size=2, interpolation="nearest", padding="same", **kwargs
    ):
        if kwargs.get("data_format") == "channels_first":
            raise ValueError("ResizeConv2D supports `data_format='channels_last'` only.")
        super().__init__(filters, kernel_size, padding=padding, **kwargs)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(
                f"Argument `size` must be a positive integer or a pair of them. Received: size={size}"
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Argument `interpolation` must be one of {INTERPOLATIONS}. "
                f"Received: interpolation={interpolation!r}"
            )
        self.size = size
        self.interpolation = interpolation

    def _upsampled_shape(self, input_shape):
        rows, cols = input_shape[1], input_shape[2]
        return (
            input_shape[0],
            None if rows is None else rows * self.size[0],
            None if cols is None else cols * self.size[1],
            input_shape[3],
        )

    def build(self, input_shape):
        super().build(self._upsampled_shape(input_shape))

    def call(self, inputs):
        if self.interpolation == "nearest":
            upsampled = ops.repeat(ops.repeat(inputs, self.size[0], axis=1), self.size[1], axis=2)
            if None not in inputs.shape[1:]:
                # Spell out the static shape: LiteRT's converter loses the
                # height through `repeat` and then cannot lower the Conv2D.
                upsampled = ops.reshape(upsampled, (-1, *self._upsampled_shape(inputs.shape)[1:]))
        else:
            shape = ops.shape(inputs)
            upsampled = ops.image.resize(
                inputs,
                (shape[1] * self.size[0], shape[2] * self.size[1]),
                interpolation="bilinear",
            )
        return super().call(upsampled)

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(self._upsampled_shape(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "interpolation": self.interpolation})
        return config


def upsampling_block(kind, filters, kernel_size=3, size=2, **kwargs):
    """A layer that upsamples by `size` and convolves to `filters` channels.

    Args:
        kind: `"transposed"` for `Conv2DTranspose(filters, kernel_size,
            strides=size, padding="same")` (with kernel 3 and stride 2 the
            kernel overlaps unevenly: the checkerboard-prone setting), or
            `"resize_nearest"` / `"resize_bilinear"` for `ResizeConv2D`.
        filters: number of output channels.
        kernel_size: convolution kernel size.
        size: upsampling factor.
        **kwargs: passed to the layer (activation, name, initializers, ...).

    Both kinds give the same output shape and parameter count.
    """
    if kind == "transposed":
        kwargs.setdefault("padding", "same")
        return keras.layers.Conv2DTranspose(filters, kernel_size, strides=size, **kwargs)
    if kind in ("resize_nearest", "resize_bilinear"):
        return ResizeConv2D(
            filters, kernel_size, size=size, interpolation=kind.split("_")[1], **kwargs
        )
    raise ValueError(f"Argument `kind` must be one of {KINDS}. Received: kind={kind!r}")
