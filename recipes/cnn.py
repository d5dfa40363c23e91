"""CNN image classifier: Fashion-MNIST, four architectures, served from raw pixels.

What it shows:
- A functional-API stack of convolution blocks, each
  (Conv2D -> BatchNormalization -> activation) x 2 -> 2x2 max pooling -> dropout,
  then a dense head whose softmax stays float32 under mixed precision. Its
  default reaches about 0.93 test accuracy in 4 minutes of training on 2 CPU
  cores: a cosine learning-rate schedule over a fixed budget, and small wide-
  enough blocks (benchmarks/time_to_accuracy.py measures it).
- The classic architectures behind `--architecture`: LeNet-5 (LeCun et al.,
  1998), a small ResNet and a small Inception network built from layers/.
- Six activations behind one argument: relu, leaky_relu, prelu, tanh, and the
  two from layers/: maxout (the conv emits 2x the channels, Maxout keeps the
  max of each pair) and swish (trainable beta).
- Pixel scaling inside the model, so a serving client sends raw uint8 images.
- The shared conventions: core.data for TFDS, core.training for seeds,
  callbacks, run directories and metrics, core.export for TF Serving.

    python -m recipes.cnn                           # fashion_mnist, defaults below
    python -m recipes.cnn --activation swish --epochs 5
    python -m recipes.cnn --dataset cifar10         # where TFDS can download
    python -m recipes.cnn --architecture lenet5
    python -m recipes.cnn --compare-activations     # table + PNG of all six
    python -m recipes.cnn --compare-architectures   # table + PNG of all four
"""

import dataclasses
import inspect
import os
import sys

import keras
import tensorflow as tf

from core import data, export, training
from layers.inception import InceptionModule
from layers.maxout import Maxout
from layers.resnet import ResidualBlock
from layers.swish import Swish

ARCHITECTURES = ("plain", "lenet5", "resnet", "inception")
# The smallest image side each architecture takes: LeNet-5 pads 28x28 to its
# 32x32 field and no more; the others halve the side twice.
MIN_SIDE = {"lenet5": 28, "resnet": 4, "inception": 4}
SHARED = ("architecture", "augment")  # model options every architecture reads
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "maxout", "swish", "tanh")
PADDINGS = ("same", "valid")
# The training defaults, chosen on validation accuracy against training seconds
# (docs/recipes.md): Adam warmed up for an epoch to 3e-3, then a cosine decay
# to 0 at epoch 16, about 250 s here. The schedule owns the learning rate, so
# there is no cut on plateaus; early stopping (patience 4) still watches
# validation loss and restores its best epoch.
EPOCHS, LEARNING_RATE, SCHEDULE, PATIENCE = 16, 3e-3, "cosine", 4
COMPARE_EPOCHS = 5  # per activation or architecture, so a comparison fits in 15 minutes


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments and their defaults."""

    architecture: str = "plain"
    augment: bool = False
    filters: tuple = (16, 32, 64)
    convs_per_block: int = 2
    kernel_size: int = 3
    strides: int = 1
    padding: str = "same"
    batch_norm: bool = True
    batch_norm_momentum: float = 0.99
    activation: str = "relu"
    dropout: float = 0.1
    dense_units: int = 256
    dense_dropout: float = 0.25
    l2: float = 0.0


#: The plain stack that was the default before the time-to-accuracy work (#17):
#: 32-64-128 filters, one Conv2D per block, dropout 0.25 and 0.5. The batch-norm,
#: regularization and padding studies were measured on it and keep it.
CLASSIC = {"architecture": "plain", "filters": (32, 64, 128), "convs_per_block": 1,
           "dropout": 0.25, "dense_dropout": 0.5}

MODEL_HELP = {
    "architecture": f"one of {ARCHITECTURES}; the flags after --augment shape 'plain'; "
    "the others have fixed layouts and read only --batch-norm-momentum (resnet, inception)",
    "augment": "random horizontal flips and shifts of up to 10%% (2 pixels on 28x28), as "
    "layers inside the model that only act in training (every architecture)",
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
    if config.architecture not in ARCHITECTURES:
        raise training.ConfigError(
            f"architecture must be one of {ARCHITECTURES}, got {config.architecture!r}")
    if len(input_shape) != 3:
        raise training.ConfigError(
            f"the CNN needs images of shape (height, width, channels); got {input_shape}")
    if not 0 < config.batch_norm_momentum < 1:
        raise training.ConfigError(
            f"batch_norm_momentum must be in (0, 1), got {config.batch_norm_momentum}")
    if config.architecture != "plain":
        validate_fixed(config, input_shape)
        return
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
    spatial_sizes(min(input_shape[:2]), config.filters, config.convs_per_block,
                  config.kernel_size, config.strides, config.padding)


def validate_fixed(config, input_shape):
    """LeNet-5, ResNet and Inception have fixed layouts: refuse flags they would ignore,
    and images too small for them."""
    name = config.architecture
    ignored = [f"--{field.name.replace('_', '-')}" for field in dataclasses.fields(config)
               if field.name not in (*uses(name), *SHARED)
               and getattr(config, field.name) != field.default]
    if ignored:
        raise training.ConfigError(
            f"--architecture {name} has a fixed layout and does not read {', '.join(ignored)} "
            f"(it reads: {', '.join(uses(name)) or 'no other model flag'})")
    if min(input_shape[:2]) < MIN_SIDE[name]:
        raise training.ConfigError(
            f"--architecture {name} needs images of at least {MIN_SIDE[name]}x{MIN_SIDE[name]}; "
            f"got {input_shape[0]}x{input_shape[1]}")


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


def plain(x, filters, convs_per_block, kernel_size, strides, padding, batch_norm,
          batch_norm_momentum, activation, dropout, dense_units, dense_dropout, l2):
    """The recipe's own stack: conv blocks, then a dense layer; returns the features
    the classifier reads."""
    penalty = keras.regularizers.L2(l2) if l2 else None
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
    return keras.layers.Dropout(dense_dropout)(x)


def lenet5(x):
    """LeNet-5 as LeCun et al. (1998) laid it out, on a 32x32 field.

    C1: 6 5x5 convolutions -> S2: 2x2 average pooling -> C3: 16 5x5 convolutions
    -> S4: 2x2 average pooling -> C5: 120 5x5 convolutions -> F6: 84 units,
    each followed by tanh. A 28x28 image is zero-padded to 32x32, as the paper
    centred MNIST's digits. Two simplifications, as in most re-implementations:
    C3 connects every S2 map (the paper wired each to a subset), and the
    classifier is a softmax, not the paper's Gaussian (RBF) units; pooling has
    no trainable scale and bias.
    """
    pad = [max(0, 32 - side) for side in x.shape[1:3]]  # 0 to 4: `validate` sees to it
    x = keras.layers.ZeroPadding2D(((pad[0] // 2, pad[0] - pad[0] // 2),
                                    (pad[1] // 2, pad[1] - pad[1] // 2)))(x)
    x = keras.layers.Conv2D(6, 5, activation="tanh", name="C1")(x)
    x = keras.layers.AveragePooling2D(2, name="S2")(x)
    x = keras.layers.Conv2D(16, 5, activation="tanh", name="C3")(x)
    x = keras.layers.AveragePooling2D(2, name="S4")(x)
    x = keras.layers.Conv2D(120, 5, activation="tanh", name="C5")(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(84, activation="tanh", name="F6")(x)


def stem(x, filters, momentum):
    """3x3 convolution, batch norm, relu, then 2x2 max pooling: the full-resolution
    layer that the residual and Inception networks start with."""
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization(momentum=momentum)(x)
    x = keras.layers.ReLU()(x)
    return keras.layers.MaxPooling2D(2)(x)


def resnet(x, batch_norm_momentum):
    """A small ResNet (He et al., 2015) sized for a 2-core CPU.

    Stem (24 filters, pooled to 14x14), a residual block of 48 filters (a 1x1
    projection shortcut, since the channels change), a residual block of 96
    filters at stride 2 (7x7), global average pooling.
    """
    x = stem(x, 24, batch_norm_momentum)
    x = ResidualBlock(48, momentum=batch_norm_momentum)(x)
    x = ResidualBlock(96, strides=2, momentum=batch_norm_momentum)(x)
    return keras.layers.GlobalAveragePooling2D()(x)


def inception(x, batch_norm_momentum):
    """A small GoogLeNet (Szegedy et al., 2014) sized for a 2-core CPU.

    Stem (32 filters, pooled to 14x14), two Inception modules, 2x2 max pooling
    (7x7), a third module, global average pooling. The 5x5 branches are
    factorized into two 3x3 (Szegedy et al., 2015), which costs less here.
    """
    norm = {"momentum": batch_norm_momentum, "factorize": True}
    x = stem(x, 32, batch_norm_momentum)
    x = InceptionModule(16, (16, 32), (8, 8), 8, **norm)(x)
    x = InceptionModule(32, (32, 48), (8, 16), 16, **norm)(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = InceptionModule(48, (32, 64), (8, 16), 16, **norm)(x)
    return keras.layers.GlobalAveragePooling2D()(x)


BODIES = {"plain": plain, "lenet5": lenet5, "resnet": resnet, "inception": inception}


def build_model(input_shape, num_classes, **options):
    """The CNN as a functional model taking uint8 images, returning probabilities.

    `options` are `ModelConfig`'s fields; those not given take its defaults.
    `architecture` picks the body (`BODIES`), which reads the options it
    lists (`uses`).
    """
    options = {**dataclasses.asdict(ModelConfig()), **options}
    architecture = options["architecture"]
    inputs = keras.Input(input_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    if options["augment"]:  # identity at inference, so the export is unchanged
        x = keras.layers.RandomFlip("horizontal")(x)
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(x)
    body = BODIES[architecture]
    x = body(x, **{k: v for k, v in options.items() if k in uses(architecture)})
    l2 = options["l2"] if "l2" in uses(architecture) else 0
    penalty = keras.regularizers.L2(l2) if l2 else None
    x = keras.layers.Dense(num_classes, kernel_regularizer=penalty)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn" if architecture == "plain" else architecture)


def uses(architecture):
    """The model options `architecture`'s body reads."""
    return tuple(inspect.signature(BODIES[architecture]).parameters)[1:]


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


def run(model_config, train, resume=None, export_enabled=None, extra_callbacks=()):
    """Train, evaluate and export one configuration; returns its metrics.

    `extra_callbacks` join the shared ones (a benchmark's clock)."""
    shape, class_names = dataset_facts(train.dataset)
    validate(model_config, shape)
    run_dir = training.start_run("cnn", model_config, train, resume)
    train_ds, val_ds, test_ds, n_train = training.splits(train)
    model = build_model(shape, len(class_names), **dataclasses.asdict(model_config))
    model.compile(
        optimizer=training.optimizer(train, training.count(train_ds)),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"],
    )
    print(f"[cnn] {model.count_params():,} parameters, {n_train:,} training images", flush=True)
    metrics, history = training.fit_and_evaluate(
        model, train_ds, val_ds, test_ds, train, run_dir, n_train, extra_callbacks)
    if train.export if export_enabled is None else export_enabled:
        metrics["export"] = export_model(model, class_names, shape, train)
        training.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    exported = f"; exported {metrics['export']}" if "export" in metrics else ""
    print(f"[cnn] test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} "
          f"epochs, {metrics['train_seconds']:.0f} s; run {run_dir}{exported}", flush=True)
    return {**metrics, "run_dir": run_dir, "history": history}


# --- comparisons --------------------------------------------------------------


def compare(model_config, train, field, values):
    """Train one model per value of `field` ("activation" or "architecture") with the
    same seed and budget; a table and a PNG of validation accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = f"{field}s"
    if field == "activation":  # only the plain stack takes an activation
        model_config = dataclasses.replace(model_config, architecture="plain")
    shape, _ = dataset_facts(train.dataset)
    for value in values:  # every configuration is checked before the first trains
        validate(dataclasses.replace(model_config, **{field: value}), shape)
    out_dir = training.new_run_dir(train.runs_dir, f"cnn-{name}")
    rows, curves = [], {}
    for value in values:
        print(f"\n[cnn] === {field} {value} ===", flush=True)
        clock = training.EpochClock()
        with training.released_graphs():
            result = run(dataclasses.replace(model_config, **{field: value}), train,
                         export_enabled=False, extra_callbacks=[clock])
        rows.append((value, result["test_accuracy"], result["parameters"],
                     clock.seconds[-1] / len(clock.seconds), result["epochs"]))
        curves[value] = result["history"]["val_accuracy"]
    table = [
        f"{field.capitalize()}s on {train.dataset}: same seed ({train.seed}), at most "
        f"{train.epochs} epochs (early stopping, patience {train.patience}), batch "
        f"{train.batch_size}, learning rate {train.learning_rate} ({train.schedule}), "
        f"precision {training.resolve_precision(train.precision)}. Seconds per epoch: "
        "training only, validation excluded.",
        "",
        f"| {field} | test accuracy | parameters | seconds per epoch | epochs |",
        "|---|---:|---:|---:|---:|",
        *(f"| {v} | {acc:.4f} | {p:,} | {s:.1f} | {e} |" for v, acc, p, s, e in rows),
    ]
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for value, accuracies in curves.items():
        ax.plot(range(1, len(accuracies) + 1), accuracies, marker="o", label=value)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title=f"CNN {name} on {train.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"{name}.png"), dpi=120)
    print("\n".join(table))
    print(f"[cnn] comparison written to {out_dir}")
    return out_dir


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = training.build_parser(
        "python -m recipes.cnn", __doc__, ModelConfig(),
        training.TrainConfig(epochs=EPOCHS, learning_rate=LEARNING_RATE, schedule=SCHEDULE,
                             patience=PATIENCE, lr_patience=0),
        MODEL_HELP)
    comparisons = parser.add_mutually_exclusive_group()
    comparisons.add_argument("--compare-activations", action="store_true",
                             help=f"train each of {ACTIVATIONS} with the same seed and budget "
                             f"(--epochs defaults to {COMPARE_EPOCHS} here)")
    comparisons.add_argument("--compare-architectures", action="store_true",
                             help=f"train each of {ARCHITECTURES} with the same seed and "
                             f"budget (--epochs defaults to {COMPARE_EPOCHS} here)")
    args = parser.parse_args(argv)
    comparing = args.compare_activations or args.compare_architectures
    if comparing and not any(a.startswith("--epochs") for a in argv):
        args.epochs = COMPARE_EPOCHS
    return (parser, args, *training.split_args(args, ModelConfig(), training.TrainConfig()))


def main(argv=None):
    parser, args, model_config, train = parse(argv)
    if args.compare_activations:
        training.run_or_exit(parser, compare, model_config, train, "activation", ACTIVATIONS)
    elif args.compare_architectures:
        training.run_or_exit(parser, compare, model_config, train, "architecture",
                             ARCHITECTURES)
    else:
        training.run_or_exit(parser, run, model_config, train, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
