"""CNN image classifier: Fashion-MNIST, activation variants, served from raw pixels.

What it shows:
- A functional-API stack of convolution blocks, each
  Conv2D -> (BatchNormalization) -> activation -> 2x2 max pooling -> dropout,
  then a dense head whose softmax stays float32 under mixed precision.
- Six activations behind one argument: relu, leaky_relu, prelu, tanh, and the
  two from layers/: maxout (the conv emits 2x the channels, Maxout keeps the
  max of each pair) and swish (trainable beta).
- Pixel scaling inside the model, so a serving client sends raw uint8 images.
- The shared conventions: core.data for TFDS, core.training for seeds,
  callbacks, run directories and metrics, core.export for TF Serving.

    python -m recipes.cnn                           # fashion_mnist, defaults below
    python -m recipes.cnn --activation swish --epochs 5
    python -m recipes.cnn --dataset cifar10         # where TFDS can download
    python -m recipes.cnn --compare-activations     # table + PNG of all six
"""

import dataclasses
import os
import sys

import keras
import tensorflow as tf

from core import data, export, training
from layers.maxout import Maxout
from layers.swish import Swish

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "maxout", "swish", "tanh")
PADDINGS = ("same", "valid")
EPOCHS = 20  # with early stopping; reaches >= 0.92 test accuracy in about 10 minutes here
# Validation loss is noisy epoch to epoch: cutting the learning rate after two
# flat epochs (and stopping only after four) keeps a run from ending on a bump
# (without it, one run stopped at epoch 12 with 0.907).
PATIENCE, LR_PATIENCE = 4, 2
COMPARE_EPOCHS = 5  # per activation, so the six fit in about 15 minutes


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments and their defaults."""

    filters: tuple = (32, 64, 128)
    convs_per_block: int = 1
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    batch_norm: bool = True
    batch_norm_momentum: float = 0.99
    activation: str = "relu"
    dropout: float = 0.25
    dense_units: int = 256
    dense_dropout: float = 0.5
    l2: float = 0.0


MODEL_HELP = {
    "filters": "filters of each block; one block per entry",
    "convs_per_block": "Conv2D layers in each block before pooling",
    "kernel_size": "3, 5 or 7",
    "strides": "stride of each block's first convolution",
    "padding": f"one of {PADDINGS}",
    "batch_norm_momentum": "of BatchNormalization's moving statistics (Keras's 0.99 needs "
    "a few hundred steps to settle; 0.9 suits short runs such as tuning trials)",
    "activation": f"one of {ACTIVATIONS}",
    "l2": "L2 penalty on every convolution and dense kernel, added to the loss as "
    "l2 * sum(w ** 2) (0 = none)",
}


def spatial_sizes(input_size, filters, convs_per_block, kernel_size, strides, padding):
    """Side length after each block; raises ConfigError when it would vanish."""
    size, sizes = input_size, []
    for block in range(len(filters)):
        for conv in range(convs_per_block):
            stride = strides if conv == 0 else 1
            reach = 1 if padding == "same" else kernel_size
            size = (size - reach) // stride + 1 if size >= reach else 0
        size //= 2
        if size < 1:
            raise training.ConfigError(
                f"{len(filters)} blocks (kernel {kernel_size}, stride {strides}, padding "
                f"{padding!r}) shrink a {input_size}x{input_size} image to nothing at block "
                f"{block + 1}; use fewer blocks, padding='same' or stride 1"
            )
        sizes.append(size)
    return sizes


def validate(config, input_shape):
    if config.activation not in ACTIVATIONS:
        raise training.ConfigError(
            f"activation must be one of {ACTIVATIONS}, got {config.activation!r}")
    if config.padding not in PADDINGS:
        raise training.ConfigError(f"padding must be one of {PADDINGS}, got {config.padding!r}")
    if config.kernel_size not in (3, 5, 7):
        raise training.ConfigError(f"kernel_size must be 3, 5 or 7, got {config.kernel_size}")
    if not config.filters or min(config.filters) < 1:
        raise training.ConfigError(f"filters must be positive, got {config.filters}")
    if config.convs_per_block < 1 or config.strides < 1 or config.dense_units < 1:
        raise training.ConfigError("convs_per_block, strides and dense_units must be >= 1")
    for name in ("dropout", "dense_dropout"):
        if not 0 <= getattr(config, name) < 1:
            raise training.ConfigError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.l2 < 0:
        raise training.ConfigError(f"l2 must be >= 0, got {config.l2}")
    if not 0 < config.batch_norm_momentum < 1:
        raise training.ConfigError(
            f"batch_norm_momentum must be in (0, 1), got {config.batch_norm_momentum}")
    if len(input_shape) != 3:
        raise training.ConfigError(
            f"the CNN needs images of shape (height, width, channels); got {input_shape}")
    spatial_sizes(min(input_shape[:2]), config.filters, config.convs_per_block,
                  config.kernel_size, config.strides, config.padding)


# --- model -----------------------------------------------------------------


def activate(x, activation, units):
    """Apply `activation` to `x`, whose last axis has `width(activation, units)` channels."""
    if activation == "maxout":
        return Maxout(units)(x)
    if activation == "relu":
        return keras.layers.ReLU()(x)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1)(x)
    if activation == "prelu":  # one learned slope per channel
        return keras.layers.PReLU(shared_axes=[1, 2] if len(x.shape) == 4 else None)(x)
    if activation == "swish":
        return Swish()(x)
    return keras.layers.Activation(activation)(x)


def width(activation, units):
    """Channels to produce before the activation: maxout keeps the max of each pair."""
    return 2 * units if activation == "maxout" else units


def build_model(input_shape, num_classes, filters=(32, 64, 128), convs_per_block=1,
                kernel_size=3, strides=1, padding="same", batch_norm=True,
                batch_norm_momentum=0.99, activation="relu", dropout=0.25, dense_units=256,
                dense_dropout=0.5, l2=0.0):
    """The CNN as a functional model taking uint8 images, returning probabilities."""
    penalty = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input(input_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for block_filters in filters:
        for conv in range(convs_per_block):
            x = keras.layers.Conv2D(
                width(activation, block_filters), kernel_size,
                strides=strides if conv == 0 else 1, padding=padding,
                use_bias=not batch_norm, kernel_regularizer=penalty,
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(momentum=batch_norm_momentum)(x)
            x = activate(x, activation, block_filters)
        x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(width(activation, dense_units), kernel_regularizer=penalty)(x)
    x = activate(x, activation, dense_units)
    x = keras.layers.Dropout(dense_dropout)(x)
    x = keras.layers.Dense(num_classes, kernel_regularizer=penalty)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn")


# --- data ------------------------------------------------------------------


def dataset_facts(name):
    """(image shape, class names) of a TFDS image classification dataset."""
    info = data.info(name)
    image_key, label_key = info.supervised_keys
    shape = tuple(info.features[image_key].shape)
    if len(shape) != 3 or info.features[image_key].dtype != tf.uint8:
        raise training.ConfigError(
            f"{name}: the CNN recipe needs uint8 images of shape (height, width, channels); "
            f"its {image_key!r} feature is {info.features[image_key]}")
    return shape, info.features[label_key].names


# --- train, evaluate, export -------------------------------------------------


def serving_function(model, class_names):
    """Raw uint8 images -> probabilities, class id and class name."""
    def serve(image):
        probabilities = model(image, training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        # The names are a constant of the graph, not a captured tensor (which
        # tf2onnx would turn into an input).
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": tf.gather(tf.constant(class_names), class_id)}

    return serve


def export_model(model, class_names, shape, train):
    """Export with a raw-uint8 signature (and ONNX/LiteRT if asked), checked in a
    fresh interpreter."""
    inputs = {"image": tf.TensorSpec((None, *shape), tf.uint8)}
    images = next(iter(data.load(train.dataset, "test").take(64).batch(64)))[0].numpy()
    return export.export_savedmodel(
        model, "cnn", inputs, serving_function(model, class_names),
        root=train.export_dir, sample={"image": images},
        predictions={"probabilities": model(images, training=False).numpy()},
        formats=train.export_format,
        portable=lambda: export.float32_portable(
            model, inputs, lambda copy: serving_function(copy, class_names),
            {"image": images}, files={"labels.txt": class_names}))


def run(model_config, train, resume=None, export_enabled=None):
    """Train, evaluate and export one configuration; returns its metrics."""
    shape, class_names = dataset_facts(train.dataset)
    validate(model_config, shape)
    run_dir = training.start_run("cnn", model_config, train, resume)
    train_ds, val_ds, test_ds, n_train = training.splits(train)
    model = build_model(shape, len(class_names), **dataclasses.asdict(model_config))
    model.compile(
        optimizer=training.optimizer(train),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"],
    )
    print(f"[cnn] {model.count_params():,} parameters, {n_train:,} training images", flush=True)
    metrics, history = training.fit_and_evaluate(
        model, train_ds, val_ds, test_ds, train, run_dir, n_train)
    if train.export if export_enabled is None else export_enabled:
        metrics["export"] = export_model(model, class_names, shape, train)
        training.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    exported = f"; exported {metrics['export']}" if "export" in metrics else ""
    print(f"[cnn] test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} "
          f"epochs, {metrics['train_seconds']:.0f} s; run {run_dir}{exported}", flush=True)
    return {**metrics, "run_dir": run_dir, "history": history}


# --- comparing activations ---------------------------------------------------


def compare_activations(model_config, train):
    """Train every activation with the same seed and budget; table + PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = training.new_run_dir(train.runs_dir, "cnn-activations")
    rows, curves = [], {}
    for activation in ACTIVATIONS:
        print(f"\n[cnn] === activation {activation} ===", flush=True)
        with training.released_graphs():
            result = run(dataclasses.replace(model_config, activation=activation), train,
                         export_enabled=False)
        rows.append((activation, result["test_accuracy"], result["parameters"],
                     result["train_seconds"], result["epochs"]))
        curves[activation] = result["history"]["val_accuracy"]
    table = [
        f"Activations on {train.dataset}: same seed ({train.seed}), at most {train.epochs} "
        f"epochs (early stopping, patience {train.patience}), batch {train.batch_size}, "
        f"precision {training.resolve_precision(train.precision)}.",
        "",
        "| activation | test accuracy | parameters | train time (s) | epochs |",
        "|---|---:|---:|---:|---:|",
        *(f"| {a} | {acc:.4f} | {p:,} | {s:.0f} | {e} |" for a, acc, p, s, e in rows),
    ]
    with open(os.path.join(out_dir, "activations.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for activation, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=activation)
    ax.set(xlabel="epoch", ylabel="validation accuracy",
           title=f"CNN activations on {train.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "activations.png"), dpi=120)
    print("\n".join(table))
    print(f"[cnn] comparison written to {out_dir}")
    return out_dir


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = training.build_parser(
        "python -m recipes.cnn", __doc__, ModelConfig(),
        training.TrainConfig(epochs=EPOCHS, patience=PATIENCE, lr_patience=LR_PATIENCE),
        MODEL_HELP)
    parser.add_argument("--compare-activations", action="store_true",
                        help=f"train each of {ACTIVATIONS} with the same seed and budget "
                        f"(--epochs defaults to {COMPARE_EPOCHS} here)")
    args = parser.parse_args(argv)
    if args.compare_activations and not any(a.startswith("--epochs") for a in argv):
        args.epochs = COMPARE_EPOCHS
    return (parser, args, *training.split_args(args, ModelConfig(), training.TrainConfig()))


def main(argv=None):
    parser, args, model_config, train = parse(argv)
    if args.compare_activations:
        training.run_or_exit(parser, compare_activations, model_config, train)
    else:
        training.run_or_exit(parser, run, model_config, train, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
