"""CNN image classifier: Fashion-MNIST, four architectures, served from raw pixels.

What it shows:
- A functional-API stack of convolution blocks, each
  (Conv2D -> BatchNormalization -> activation) x 2 -> 2x2 max pooling -> dropout,
  then a dense head whose softmax stays float32 under mixed precision. Its
  default reaches about 0.937 test accuracy in under 4 minutes of training on
  2 CPU cores: a cosine learning-rate schedule over a fixed budget, label
  smoothing, and small wide-enough blocks (benchmarks/time_to_accuracy.py
  measures it).
- The classic architectures behind `--architecture`: LeNet-5 (LeCun et al.,
  1998), a small ResNet and a small Inception network built from layers/.
- Six activations behind one argument: relu, leaky_relu, prelu, tanh, and the
  two from layers/: maxout (the conv emits 2x the channels, Maxout keeps the
  max of each pair) and swish (trainable beta).
- Pixel scaling inside the model, so a serving client sends raw uint8 images.
- Batch norm on TensorFlow's fused kernel (core/batchnorm.py): Keras 3's own
  layer made a training step twice as slow here.
- The shared run sequence (core/recipe.py): seeds, run directory, callbacks,
  checkpoints, one read of the test split, a TF Serving export.

    python -m recipes.cnn                           # fashion_mnist, defaults below
    python -m recipes.cnn --activation swish --epochs 5
    python -m recipes.cnn --dataset cifar10         # where TFDS can download
    python -m recipes.cnn --architecture lenet5
    python -m recipes.cnn --preset classic          # the plain stack the studies used
    python -m recipes.cnn --compare-activations     # table + PNG of all six
    python -m recipes.cnn --compare-architectures   # table + PNG of all four
"""

import dataclasses
import inspect

import keras

from core import data, images, recipe
from core.batchnorm import FusedBatchNormalization
from core.config import ConfigError, at_least, field, fraction, one_of
from layers.inception import InceptionModule
from layers.maxout import Maxout
from layers.resnet import ResidualBlock
from layers.swish import Swish

ARCHITECTURES = ("plain", "lenet5", "resnet", "inception")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "maxout", "swish", "tanh")
PADDINGS = ("same", "valid")
#: What `--augmentations` may list: horizontal flips; shifts of up to 10% of the
#: side, interpolated (2.8 pixels on 28x28); crops, whole-pixel shifts of up to
#: 2 pixels with zeros coming in, as padding by 2 and cropping back would give.
AUGMENTATIONS = ("flip", "shift", "crop")
# The smallest image side each architecture takes: LeNet-5 pads 28x28 to its
# 32x32 field and no more; the others halve the side twice.
MIN_SIDE = {"lenet5": 28, "resnet": 4, "inception": 4}
SHARED = ("architecture", "augment", "augmentations", "tta")  # every architecture reads


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments: every default and its help."""

    architecture: str = field(
        "plain", f"one of {ARCHITECTURES}; the flags after --augment shape 'plain'; the "
        "others have fixed layouts and read only --batch-norm-momentum (resnet, inception)")
    augment: bool = field(
        False, "augment the training images with --augmentations, as layers inside the "
        "model that only act in training (every architecture)")
    augmentations: tuple = field(
        ("flip", "shift"), f"with --augment, among {AUGMENTATIONS}: horizontal flips, "
        "interpolated shifts of up to 10%%, whole-pixel crops of up to 2 pixels")
    tta: bool = field(
        False, "test-time augmentation: the test split and the export average the "
        "probabilities of each image and its mirror image (twice the serving compute)")
    filters: tuple = field((16, 32, 64), "filters of each block; one block per entry")
    convs_per_block: int = field(2, "Conv2D layers in each block before pooling")
    kernel_size: int = field(3, "3, 5 or 7")
    strides: int = field(1, "stride of each block's first convolution")
    padding: str = field("same", f"one of {PADDINGS}")
    batch_norm: bool = field(True, "BatchNormalization after each convolution")
    batch_norm_momentum: float = field(
        0.99, "of BatchNormalization's moving statistics (Keras's 0.99 needs a few hundred "
        "steps to settle; 0.9 suits short runs such as tuning trials)")
    activation: str = field("relu", f"one of {ACTIVATIONS}")
    dropout: float = field(0.1, "dropout after each block")
    dense_units: int = field(256, "units of the dense layer before the classifier")
    dense_dropout: float = field(0.25, "dropout before the classifier")
    l2: float = field(0.0, "L2 penalty on every convolution and dense kernel, added to the "
                      "loss as l2 * sum(w ** 2) (0 = none)")

    def validate(self, input_shape):
        """Refuse what cannot build on images of `input_shape` (height, width, channels)."""
        one_of(self, "architecture", ARCHITECTURES)
        unknown = set(self.augmentations) - set(AUGMENTATIONS)
        if unknown or not self.augmentations:
            raise ConfigError(f"augmentations must be among {AUGMENTATIONS}, got "
                              f"{','.join(self.augmentations)!r}")
        if len(input_shape) != 3:
            raise ConfigError(
                f"the CNN needs images of shape (height, width, channels); got {input_shape}")
        if not 0 < self.batch_norm_momentum < 1:
            raise ConfigError(
                f"batch_norm_momentum must be in (0, 1), got {self.batch_norm_momentum}")
        if self.architecture != "plain":
            return self.validate_fixed(input_shape)
        one_of(self, "activation", ACTIVATIONS)
        one_of(self, "padding", PADDINGS)
        one_of(self, "kernel_size", (3, 5, 7))
        if not self.filters or min(self.filters) < 1:
            raise ConfigError(f"filters must be positive, got {self.filters}")
        at_least(self, 1, "convs_per_block", "strides", "dense_units")
        fraction(self, "dropout", "dense_dropout")
        at_least(self, 0, "l2")
        spatial_sizes(min(input_shape[:2]), self.filters, self.convs_per_block,
                      self.kernel_size, self.strides, self.padding)

    def validate_fixed(self, input_shape):
        """LeNet-5, ResNet and Inception have fixed layouts: refuse flags they would
        ignore, and images too small for them."""
        name = self.architecture
        ignored = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self)
                   if f.name not in (*uses(name), *SHARED) and getattr(self, f.name) != f.default]
        if ignored:
            raise ConfigError(
                f"--architecture {name} has a fixed layout and does not read "
                f"{', '.join(ignored)} (it reads: {', '.join(uses(name)) or 'no other model flag'})")
        if min(input_shape[:2]) < MIN_SIDE[name]:
            raise ConfigError(
                f"--architecture {name} needs images of at least {MIN_SIDE[name]}x"
                f"{MIN_SIDE[name]}; got {input_shape[0]}x{input_shape[1]}")


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
            raise ConfigError(
                f"{len(filters)} blocks (kernel {kernel_size}, stride {strides}, padding "
                f"{padding!r}) shrink a {input_size}x{input_size} image to nothing at block "
                f"{block + 1}; use fewer blocks, padding='same' or stride 1")
        sizes.append(size)
    return sizes


#: The plain stack that was the default before the time-to-accuracy work (#17):
#: 32-64-128 filters, one Conv2D per block, dropout 0.25 and 0.5. The batch-norm,
#: regularization and padding studies were measured on it and keep it.
CLASSIC = {"filters": (32, 64, 128), "convs_per_block": 1, "dropout": 0.25,
           "dense_dropout": 0.5}
#: The training defaults, chosen on validation accuracy against training seconds
#: (docs/recipes.md): Adam warmed up for an epoch to 3e-3, then a cosine decay
#: to 0 at epoch 20, about 210 s here; label smoothing 0.1, the one technique
#: of benchmarks.cnn_techniques' ladder kept at that budget (+0.41 points of
#: validation accuracy, 3 seeds). The schedule owns the learning rate, so there
#: is no cut on plateaus; early stopping (patience 4) still watches validation
#: loss and restores its best epoch.
TRAIN_DEFAULTS = dict(epochs=20, learning_rate=3e-3, schedule="cosine", patience=4,
                      lr_patience=0, label_smoothing=0.1)
PRESETS = {
    "default": {"doc": "the defaults above", "model": {}, "train": {}},
    "classic": {"doc": "the plain stack the studies were measured on", "model": CLASSIC},
    "previous": {"doc": "the default before #17: the classic stack at a constant 1e-3 for "
                 "up to 20 epochs, the rate cut on plateaus", "model": CLASSIC,
                 "train": dict(epochs=20, patience=4, lr_patience=2, learning_rate=1e-3,
                               schedule="constant", batch_size=128, label_smoothing=0.0)},
    "before_38": {"doc": "the default before #38's ladder: the same stack, 16 epochs, no "
                  "label smoothing", "model": {},
                  "train": dict(epochs=16, label_smoothing=0.0)},
}


# --- model -------------------------------------------------------------------


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
                x = FusedBatchNormalization(momentum=batch_norm_momentum)(x)
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
    x = FusedBatchNormalization(momentum=momentum)(x)
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


def uses(architecture):
    """The model options `architecture`'s body reads."""
    return tuple(inspect.signature(BODIES[architecture]).parameters)[1:]


def augment(x, augmentations):
    """`augmentations` (`AUGMENTATIONS`) applied to images `x` in training only."""
    if "flip" in augmentations:
        x = keras.layers.RandomFlip("horizontal")(x)
    if "shift" in augmentations:
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")(x)
    if "crop" in augmentations:  # nearest: whole pixels, so no blur
        height, width = x.shape[1:3]
        x = keras.layers.RandomTranslation(2 / height, 2 / width, fill_mode="constant",
                                           interpolation="nearest")(x)
    return x


def build_model(input_shape, num_classes, **options):
    """The CNN as a functional model taking uint8 images, returning probabilities.

    `options` are `ModelConfig`'s fields (its defaults for those not given);
    `architecture` picks the body (`BODIES`), which reads the options it
    lists (`uses`).
    """
    options = dataclasses.asdict(ModelConfig(**options))
    architecture = options["architecture"]
    inputs = keras.Input(input_shape, dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    if options["augment"]:  # identity at inference, so the export is unchanged
        x = augment(x, options["augmentations"])
    x = BODIES[architecture](x, **{k: v for k, v in options.items() if k in uses(architecture)})
    l2 = options["l2"] if "l2" in uses(architecture) else 0
    x = keras.layers.Dense(num_classes, kernel_regularizer=keras.regularizers.L2(l2) if l2
                           else None)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cnn" if architecture == "plain" else architecture)


@keras.saving.register_keras_serializable(package="recipes")
class HorizontalFlip(keras.layers.Layer):
    """Images mirrored left to right, at inference as in training (unlike RandomFlip)."""

    def call(self, images):
        return keras.ops.flip(images, axis=-2)

    def compute_output_shape(self, input_shape):
        return input_shape


def with_tta(model):
    """`model` with test-time augmentation: the mean of its probabilities on each
    image and on its mirror image. It shares `model`'s weights."""
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="image")
    mirrored = model(HorizontalFlip()(inputs))
    outputs = keras.layers.Average(dtype="float32", name="probabilities")(
        [model(inputs), mirrored])
    return keras.Model(inputs, outputs, name=f"{model.name}_tta")


# --- the run -------------------------------------------------------------------


class CNN(recipe.Recipe):
    name, doc, Config = "cnn", __doc__, ModelConfig
    train_defaults, presets = TRAIN_DEFAULTS, PRESETS
    comparisons = {"--compare-activations": ("activation", ACTIVATIONS),
                   "--compare-architectures": ("architecture", ARCHITECTURES)}
    compare_defaults = {"epochs": 5}  # per model, so a comparison fits in 15 minutes

    def facts(self, model_config, train):
        shape, class_names = images.facts(train)
        model_config.validate(shape)
        return shape, class_names

    def data(self, facts, model_config, train):
        return recipe.Data(*data.splits(train))

    def build(self, facts, splits, model_config):
        shape, class_names = facts
        return build_model(shape, len(class_names), **dataclasses.asdict(model_config))

    def served(self, model, model_config):
        return with_tta(model) if model_config.tta else model

    def export(self, model, facts, splits, train):
        return images.export_classifier(model, "cnn", facts[1], facts[0], train)

    def compare(self, model_config, train, field, values):
        if field == "activation":  # only the plain stack takes an activation
            model_config = dataclasses.replace(model_config, architecture="plain")
        return super().compare(model_config, train, field, values)


RECIPE = CNN()
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
