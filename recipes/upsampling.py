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
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from core import data, export, training
from layers.upsampling import KINDS, upsampling_block


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments and their defaults."""

    decoder: str = "resize_nearest"
    filters: tuple = (32, 64)

    HELP = {
        "decoder": f"one of {KINDS}",
        "filters": "encoder filters per stride-2 stage (the decoder mirrors them)",
    }


def validate(config, input_shape):
    if config.decoder not in KINDS:
        raise training.ConfigError(f"decoder must be one of {KINDS}, got {config.decoder!r}")
    if not config.filters or min(config.filters) < 1:
        raise training.ConfigError(f"filters must be positive, got {config.filters}")
    if len(input_shape) != 3:
        raise training.ConfigError(f"the autoencoder needs images; got shape {input_shape}")
    factor = 2 ** len(config.filters)
    if input_shape[0] % factor or input_shape[1] % factor:
        raise training.ConfigError(
            f"{len(config.filters)} stride-2 stages need height and width divisible by "
            f"{factor}; got {input_shape[:2]}")


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


def build_decoder(latent_shape, channels, decoder="resize_nearest", filters=(32, 64)):
    """Latent (h, w, filters[-1]) -> image (h * 2^n, w * 2^n, channels) in [0, 1]."""
    latent = keras.Input(latent_shape, name="latent")
    x = latent
    for stage_filters in reversed(filters):
        x = upsampling_block(decoder, stage_filters, activation="relu")(x)
    x = keras.layers.Conv2D(channels, 3, padding="same")(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model(latent, outputs, name=f"decoder_{decoder}")


def build_model(input_shape, decoder="resize_nearest", filters=(32, 64)):
    """uint8 image -> reconstruction in [0, 1]: encoder, then the chosen decoder."""
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


def image_shape(name):
    info = data.info(name)
    feature = info.features[info.supervised_keys[0]]
    if len(feature.shape) != 3 or feature.dtype != tf.uint8:
        raise training.ConfigError(
            f"{name}: the autoencoder needs uint8 images; its input feature is {feature}")
    return tuple(feature.shape)


def evaluate_reconstructions(model, test_ds):
    """MSE, PSNR and checkerboard scores of the test split's reconstructions."""
    images, outputs = [], []
    for batch, target in test_ds:
        images.append(target.numpy())
        outputs.append(np.asarray(model(batch, training=False)))
    images, outputs = np.concatenate(images), np.concatenate(outputs)
    input_score = float(np.mean(checkerboard_score(images)))
    output_score = float(np.mean(checkerboard_score(outputs)))
    return {
        "test_mse": float(np.mean((images - outputs) ** 2)),
        "test_psnr": float(np.mean(psnr(images, outputs))),
        "checkerboard_input": input_score,
        "checkerboard_output": output_score,
        "checkerboard_ratio": output_score / max(input_score, 1e-12),
    }


def export_model(model, shape, train):
    """Export raw uint8 images -> reconstructions (and ONNX/LiteRT if asked)."""
    def serving_function(model):
        return lambda image: {"reconstruction": model(image, training=False)}

    inputs = {"image": tf.TensorSpec((None, *shape), tf.uint8)}
    images = next(iter(data.load(train.dataset, "test").take(16).batch(16)))[0].numpy()
    return export.export_savedmodel(
        model, "upsampling", inputs, serving_function(model),
        root=train.export_dir, sample={"image": images},
        predictions={"reconstruction": model(images, training=False).numpy()},
        formats=train.export_format,
        portable=lambda: export.float32_portable(model, inputs, serving_function,
                                                 {"image": images}))


def run(model_config, train, resume=None, export_enabled=None):
    """Train and measure one decoder; returns its metrics (and the model)."""
    shape = image_shape(train.dataset)
    validate(model_config, shape)
    run_dir = training.start_run("upsampling", model_config, train, resume)
    train_ds, val_ds, test_ds, n_train = training.splits(
        train, map_example=as_reconstruction_target)
    model = build_model(shape, **dataclasses.asdict(model_config))
    model.compile(optimizer=training.optimizer(train, training.count(train_ds)), loss="mse")
    print(f"[upsampling] decoder {model_config.decoder}: {model.count_params():,} parameters",
          flush=True)
    metrics, history = training.fit_and_evaluate(
        model, train_ds, val_ds, test_ds, train, run_dir, n_train,
        evaluate=evaluate_reconstructions)
    latent_shape = (shape[0] // 2 ** len(model_config.filters),
                    shape[1] // 2 ** len(model_config.filters), model_config.filters[-1])
    metrics["checkerboard_untrained"], untrained = untrained_artifact(
        latent_shape, shape[-1], model_config.decoder, model_config.filters)
    if train.export if export_enabled is None else export_enabled:
        metrics["export"] = export_model(model, shape, train)
    training.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    print(f"[upsampling] {model_config.decoder}: test MSE {metrics['test_mse']:.5f}, PSNR "
          f"{metrics['test_psnr']:.2f} dB, checkerboard {metrics['checkerboard_output']:.4f} "
          f"(inputs {metrics['checkerboard_input']:.4f}), untrained on a constant "
          f"{metrics['checkerboard_untrained']:.4f}; run {run_dir}", flush=True)
    return {**metrics, "run_dir": run_dir, "model": model, "untrained": untrained}


def compare(model_config, train):
    """All three decoders with the same seed and budget: table + PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = training.new_run_dir(train.runs_dir, "upsampling-compare")
    results = {}
    for kind in KINDS:
        print(f"\n[upsampling] === decoder {kind} ===", flush=True)
        with training.released_graphs():
            results[kind] = run(dataclasses.replace(model_config, decoder=kind), train,
                                export_enabled=False)
    table = [
        f"Decoders on {train.dataset} test split: same encoder, seed {train.seed}, at most "
        f"{train.epochs} epochs (early stopping), batch {train.batch_size}. Checkerboard "
        "score: share of non-constant spectral energy at the stride-2 frequencies (1 = pure "
        "checkerboard, 0 = none); 'untrained' = a fresh decoder fed a constant input, mean "
        "of 5 initialisations.",
        "",
        "| decoder | parameters | test MSE | PSNR (dB) | checkerboard (output / input) | "
        "untrained, constant input | train time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in results.items():
        table.append(
            f"| {kind} | {r['parameters']:,} | {r['test_mse']:.5f} | {r['test_psnr']:.2f} | "
            f"{r['checkerboard_output']:.4f} / {r['checkerboard_input']:.4f} | "
            f"{r['checkerboard_untrained']:.4f} | {r['train_seconds']:.0f} |")
    with open(os.path.join(out_dir, "upsampling.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    training.write_json(os.path.join(out_dir, "upsampling.json"), {
        kind: {k: v for k, v in r.items() if k not in ("model", "untrained", "history")}
        for kind, r in results.items()})

    images = next(iter(data.load(train.dataset, "test").take(8).batch(8)))[0].numpy()
    rows = [("input", images[..., 0] / 255.0)] + [
        (kind, np.asarray(r["model"](images))[..., 0]) for kind, r in results.items()]
    fig, axes = plt.subplots(len(rows) + 1, 8, figsize=(10, 1.35 * (len(rows) + 1)))
    for row, (label, pictures) in enumerate(rows):
        for col in range(8):
            axes[row, col].imshow(pictures[col], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(label, loc="left", fontsize=9)
    for n, (kind, r) in enumerate(results.items()):
        ax = axes[-1, 3 * n]  # spaced out so the titles fit
        ax.imshow(r["untrained"][..., 0], cmap="gray")  # own contrast: the pattern is faint
        ax.set_title(f"untrained {kind},\nconstant input", loc="left", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "upsampling.png"), dpi=110)
    print("\n".join(table))
    print(f"[upsampling] comparison written to {out_dir}")
    return out_dir


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    parser = training.build_parser(
        "python -m recipes.upsampling", __doc__, ModelConfig(),
        training.TrainConfig(epochs=8, patience=2), ModelConfig.HELP)
    parser.add_argument("--compare", action="store_true",
                        help=f"train each decoder of {KINDS} with the same seed and budget")
    args = parser.parse_args(argv)
    return (parser, args, *training.split_args(args, ModelConfig(), training.TrainConfig()))


def main(argv=None):
    parser, args, model_config, train = parse(argv)
    if args.compare:
        training.run_or_exit(parser, compare, model_config, train)
    else:
        training.run_or_exit(parser, run, model_config, train, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
