"""Transposed convolution versus upsampling + convolution, measured on Fashion-MNIST.

Practitioners say "use resize-convolution to avoid checkerboard artifacts"
(Odena et al., 2016, https://distill.pub/2016/deconv-checkerboard/). This
recipe shows it with numbers and pictures:

- A convolutional autoencoder: one encoder (two stride-2 convolutions,
  28x28 -> 7x7), and a decoder that upsamples 7 -> 14 -> 28 either with
  transposed convolutions (kernel 3, stride 2: the kernel overlaps unevenly)
  or with resize-convolution (nearest or bilinear UpSampling2D + Conv2D), from
  `layers/upsampling.py`. The two kinds have exactly the same parameter count.
- Per decoder, on the test split: MSE, PSNR and a checkerboard score (below);
  and each decoder *untrained*, fed a constant input, which shows the artifact
  the architecture makes before any learning.

Checkerboard score: the share of an image's non-constant spectral energy that
sits at the stride-2 frequencies, (pi, 0), (0, pi) and (pi, pi):

    S(y) = (|Y(pi,0)|^2 + |Y(0,pi)|^2 + |Y(pi,pi)|^2) / sum_{f != 0} |Y(f)|^2

where Y is the 2-D DFT of y. A pure checkerboard scores 1, a smooth ramp near
0. A stride-2 artifact is exactly a pattern of period 2, so it raises S;
reconstructions are compared with the score of their inputs.

    python -m recipes.upsampling                       # one decoder (resize_nearest)
    python -m recipes.upsampling --decoder transposed
    python -m recipes.upsampling --compare             # all three: table + PNG grid
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from core import data, export, images, recipe
from core.config import ConfigError, field, one_of
from layers.upsampling import KINDS, upsampling_block


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments: every default and its help."""

    decoder: str = field("resize_nearest", f"one of {KINDS}")
    filters: tuple = field((32, 64), "encoder filters per stride-2 stage (the decoder "
                           "mirrors them)")

    def validate(self, input_shape):
        """Refuse what cannot build on images of `input_shape` (height, width, channels)."""
        one_of(self, "decoder", KINDS)
        if not self.filters or min(self.filters) < 1:
            raise ConfigError(f"filters must be positive, got {self.filters}")
        if len(input_shape) != 3:
            raise ConfigError(f"the autoencoder needs images; got shape {input_shape}")
        factor = 2 ** len(self.filters)
        if input_shape[0] % factor or input_shape[1] % factor:
            raise ConfigError(
                f"{len(self.filters)} stride-2 stages need height and width divisible by "
                f"{factor}; got {input_shape[:2]}")

    def latent_shape(self, input_shape):
        """The encoder's output shape for images of `input_shape`."""
        factor = 2 ** len(self.filters)
        return input_shape[0] // factor, input_shape[1] // factor, self.filters[-1]


# --- the checkerboard score ---------------------------------------------------


def checkerboard_score(images):
    """S(y) per image (see the module docstring); `images` is (..., H, W) or (..., H, W, 1)."""
    images = np.asarray(images, np.float64)
    if images.shape[-1] == 1:
        images = images[..., 0]
    spectrum = np.abs(np.fft.fft2(images)) ** 2
    h, w = images.shape[-2:]
    total = spectrum.sum(axis=(-2, -1)) - spectrum[..., 0, 0]
    stride = np.zeros_like(total)
    if h % 2 == 0:
        stride += spectrum[..., h // 2, 0]
    if w % 2 == 0:
        stride += spectrum[..., 0, w // 2]
    if h % 2 == 0 and w % 2 == 0:
        stride += spectrum[..., h // 2, w // 2]
    return np.divide(stride, total, out=np.zeros_like(total), where=total > 1e-12)


def psnr(images, reconstructions):
    """Peak signal-to-noise ratio in dB per image, for values in [0, 1]."""
    mse = np.mean((np.asarray(images) - np.asarray(reconstructions)) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


# --- model -------------------------------------------------------------------


def build_decoder(latent_shape, channels, decoder, filters):
    """Latent (h, w, filters[-1]) -> image (h * 2^n, w * 2^n, channels) in [0, 1]."""
    latent = keras.Input(latent_shape, name="latent")
    x = latent
    for stage_filters in reversed(filters):
        x = upsampling_block(decoder, stage_filters, activation="relu")(x)
    x = keras.layers.Conv2D(channels, 3, padding="same")(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model(latent, outputs, name=f"decoder_{decoder}")


def build_model(input_shape, **options):
    """uint8 image -> reconstruction in [0, 1]: encoder, then the chosen decoder.

    `options` are `ModelConfig`'s fields (its defaults for those not given)."""
    config = ModelConfig(**options)
    decoder, filters = config.decoder, config.filters
    inputs = keras.Input(input_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for stage_filters in filters:
        x = keras.layers.Conv2D(stage_filters, 3, strides=2, padding="same",
                                activation="relu")(x)
    outputs = build_decoder(tuple(x.shape[1:]), input_shape[-1], decoder, filters)(x)
    return keras.Model(inputs, outputs, name=f"autoencoder_{decoder}")


def untrained_artifact(latent_shape, channels, decoder, filters, seeds=(0, 1, 2, 3, 4)):
    """Mean checkerboard score of freshly initialised decoders fed a constant latent,
    and one such output to look at."""
    scores, example = [], None
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = build_decoder(latent_shape, channels, decoder, filters)
        output = np.asarray(model(np.ones((1, *latent_shape), "float32")))
        scores.append(float(checkerboard_score(output)[0]))
        example = output[0] if example is None else example
    return float(np.mean(scores)), example


# --- data, training, evaluation ------------------------------------------------


def as_reconstruction_target(image, label):
    """(image, label) -> (uint8 image, the same image scaled to [0, 1])."""
    return image, tf.cast(image, tf.float32) / 255.0


def evaluate_reconstructions(model, test_ds):
    """MSE, PSNR and checkerboard scores of the test split's reconstructions."""
    targets, outputs = [], []
    for batch, target in test_ds:
        targets.append(target.numpy())
        outputs.append(np.asarray(model(batch, training=False)))
    targets, outputs = np.concatenate(targets), np.concatenate(outputs)
    input_score = float(np.mean(checkerboard_score(targets)))
    output_score = float(np.mean(checkerboard_score(outputs)))
    return {
        "test_mse": float(np.mean((targets - outputs) ** 2)),
        "test_psnr": float(np.mean(psnr(targets, outputs))),
        "checkerboard_input": input_score,
        "checkerboard_output": output_score,
        "checkerboard_ratio": output_score / max(input_score, 1e-12),
    }


def export_model(model, shape, train):
    """Export raw uint8 images -> reconstructions (and ONNX/LiteRT if asked)."""
    def serving_function(model):
        return lambda image: {"reconstruction": model(image, training=False)}

    inputs = {"image": tf.TensorSpec((None, *shape), tf.uint8)}
    pictures = images.sample(train, 16)
    return export.export_savedmodel(
        model, "upsampling", inputs, serving_function(model),
        root=train.export_dir, sample={"image": pictures},
        predictions={"reconstruction": model(pictures, training=False).numpy()},
        formats=train.export_format,
        portable=lambda: export.float32_portable(model, inputs, serving_function,
                                                 {"image": pictures}))


class Upsampling(recipe.Recipe):
    name, doc, Config = "upsampling", __doc__, ModelConfig
    train_defaults = dict(epochs=8, patience=2)
    presets = {"default": {"doc": "the defaults above"}}
    comparisons = {"--compare": ("decoder", KINDS)}
    compare_curve = "val_loss"
    loss, metrics = "mse", ()
    evaluate = staticmethod(evaluate_reconstructions)

    def facts(self, model_config, train):
        shape, _ = images.facts(train, classifier=False)
        model_config.validate(shape)
        return shape

    def data(self, shape, model_config, train):
        return recipe.Data(*data.splits(train, map_example=as_reconstruction_target))

    def build(self, shape, splits, model_config):
        return build_model(shape, **dataclasses.asdict(model_config))

    def measure(self, model, shape, model_config):
        score, _ = untrained_artifact(model_config.latent_shape(shape), shape[-1],
                                      model_config.decoder, model_config.filters)
        return {"checkerboard_untrained": score}

    def export(self, model, shape, splits, train):
        return export_model(model, shape, train)

    def report(self, m):
        return (f"test MSE {m['test_mse']:.5f}, PSNR {m['test_psnr']:.2f} dB, checkerboard "
                f"{m['checkerboard_output']:.4f} (inputs {m['checkerboard_input']:.4f}), "
                f"untrained on a constant {m['checkerboard_untrained']:.4f}")

    def compare_columns(self):
        return [("parameters", lambda r: f"{r['parameters']:,}"),
                ("test MSE", lambda r: f"{r['test_mse']:.5f}"),
                ("PSNR (dB)", lambda r: f"{r['test_psnr']:.2f}"),
                ("checkerboard (output / input)",
                 lambda r: f"{r['checkerboard_output']:.4f} / {r['checkerboard_input']:.4f}"),
                ("untrained, constant input (mean of 5)",
                 lambda r: f"{r['checkerboard_untrained']:.4f}"),
                ("training seconds", lambda r: f"{r['training_seconds']:.0f}")]

    def compare_figures(self, results, configs, train):
        """Eight test images and each decoder's reconstructions; below, what each
        decoder makes of a constant input before any training."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pictures = images.sample(train, 8)
        shape = pictures.shape[1:]
        rows = [("input", pictures[..., 0] / 255.0)] + [
            (kind, np.asarray(r["model"](pictures))[..., 0]) for kind, r in results.items()]
        fig, axes = plt.subplots(len(rows) + 1, 8, figsize=(10, 1.35 * (len(rows) + 1)))
        for row, (label, row_images) in enumerate(rows):
            for col in range(8):
                axes[row, col].imshow(row_images[col], cmap="gray", vmin=0, vmax=1)
            axes[row, 0].set_title(label, loc="left", fontsize=9)
        for n, (kind, r) in enumerate(results.items()):
            config = configs[kind]
            _, untrained = untrained_artifact(config.latent_shape(shape), shape[-1], kind,
                                              config.filters)
            ax = axes[-1, 3 * n]  # spaced out so the titles fit
            ax.imshow(untrained[..., 0], cmap="gray")  # own contrast: the pattern is faint
            ax.set_title(f"untrained {kind},\nconstant input", loc="left", fontsize=8)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        return {"reconstructions": fig}


RECIPE = Upsampling()
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
