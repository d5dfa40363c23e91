"""Search spaces: a `keras_tuner.HyperParameters` mapped onto each recipe's
`build_model(**hparams)` keyword arguments. Recipes never import keras-tuner;
everything tuner-shaped lives here.

Each recipe adapter knows its objective, how to build a compiled model for a
point of the space, which data that point trains on (text data depends on the
vocabulary and sequence length chosen), and how to export the winner.
"""

import keras
import keras_tuner as kt

from core import data, images, text
from recipes import cnn, cnn_text, rnn_text, transformer_text, upsampling


def learning_rate(hp):
    return hp.Float("learning_rate", 3e-4, 3e-3, sampling="log")


def registered(recipe):
    """A `HyperParameters` holding `recipe`'s whole space, in the order a trial
    defines it (the model's hyperparameters, then the learning rate)."""
    hp = kt.HyperParameters()
    recipe.define(hp)
    return hp


def grid_values(hp):
    """{name: values} that keras-tuner's GridSearch walks for each hyperparameter
    of `hp`: its default first, then the rest of `values`. A Float without a
    step has no values of its own; keras-tuner takes 10, at the 5th, 15th, ...,
    95th percentile of its range on its sampling's scale (log for the learning
    rate), so a continuous learning rate becomes 11 points on the grid."""
    return {h.name: [h.default, *(v for v in h.values if v != h.default)] for h in hp.space}


class Recipe:
    """The parts every adapter shares; subclasses give the space and the data."""

    name = ""
    objective = kt.Objective("val_accuracy", "max")
    loss = "sparse_categorical_crossentropy"
    metrics = ("accuracy",)

    def __init__(self, train):
        self.train = train
        self._data = {}

    def space(self, hp):
        raise NotImplementedError

    def data_key(self, kwargs):
        return ()

    def make_data(self, kwargs):
        raise NotImplementedError

    def data(self, kwargs):
        """(train, validation, test, extras) for a point; built once per data key."""
        key = self.data_key(kwargs)
        if key not in self._data:
            self._data[key] = self.make_data(kwargs)
        return self._data[key]

    def define(self, hp):
        """The point `hp` names: the model's keyword arguments, and the learning rate
        (defined last, so a grid turns it fastest)."""
        return self.space(hp), learning_rate(hp)

    def build(self, hp):
        kwargs, rate = self.define(hp)
        model = self.model(kwargs)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=self.loss,
                      metrics=list(self.metrics))
        return model


class CNN(Recipe):
    name = "cnn"

    def __init__(self, train):
        super().__init__(train)
        self.shape, self.class_names = images.facts(train)

    def space(self, hp):
        blocks = hp.Int("blocks", 2, 3)
        base = hp.Choice("base_filters", [16, 32, 48])
        # Around the stack the searches were first measured on (one Conv2D per
        # block; `cnn.CLASSIC`), not the recipe's current default: its two
        # convolutions per block would make the wide trials several times dearer.
        return {
            **cnn.CLASSIC,
            "filters": tuple(base * 2**i for i in range(blocks)),
            "kernel_size": hp.Choice("kernel_size", [3, 5]),
            "activation": hp.Choice("activation", list(cnn.ACTIVATIONS)),
            "dropout": hp.Float("dropout", 0.1, 0.4, step=0.1),
            "dense_units": hp.Choice("dense_units", [128, 256]),
            # Trials are short: with Keras's 0.99, BatchNormalization's moving
            # statistics still carry ~40% of their initial values after 100
            # steps, and validation accuracy measures that lag, not the model.
            "batch_norm_momentum": hp.Fixed("batch_norm_momentum", 0.9),
        }

    def make_data(self, kwargs):
        train_ds, val_ds, test_ds, _ = data.splits(self.train)
        return train_ds, val_ds, test_ds, None

    def model(self, kwargs):
        cnn.ModelConfig(**kwargs).validate(self.shape)
        return cnn.build_model(self.shape, len(self.class_names), **kwargs)

    def export(self, model, kwargs):
        return images.export_classifier(model, "cnn", self.class_names, self.shape, self.train)


class _Text(Recipe):
    module = None
    export_copy = staticmethod(lambda model: model)

    def __init__(self, train):
        super().__init__(train)
        self.class_names = text.dataset_facts(train)

    def data_key(self, kwargs):
        return kwargs["vocabulary_size"], kwargs["sequence_length"]

    def make_data(self, kwargs):
        config = text.TextConfig(*self.data_key(kwargs))
        train_ds, val_ds, test_ds, vectorizer, _ = text.datasets(self.train, config)
        return train_ds, val_ds, test_ds, vectorizer

    def model(self, kwargs):
        vectorizer = self.data(kwargs)[3]  # sequence_length 0: the data's own
        return self.module.build_model(
            num_classes=len(self.class_names),
            **{**kwargs, "vocabulary_size": vectorizer.vocabulary_size(),
               "sequence_length": text.sequence_length(vectorizer)})

    def export(self, model, kwargs):
        return text.export_text_model(self.name, self.export_copy(model), self.data(kwargs)[3],
                                      self.class_names, self.train, trained=model)


class RNNText(_Text):
    name = "rnn_text"
    module = rnn_text
    export_copy = staticmethod(rnn_text.portable_copy)

    def space(self, hp):
        return {
            # The gated cells only: SimpleRNN is there to be measured, not tuned.
            "cell": hp.Choice("cell", ["lstm", "gru"]),
            "units": hp.Choice("units", [16, 32, 64]),
            "bidirectional": hp.Boolean("bidirectional", default=True),
            "vocabulary_size": hp.Choice("vocabulary_size", [5_000, 10_000, 20_000]),
            "sequence_length": hp.Choice("sequence_length", [32, 64]),
        }


class TransformerText(_Text):
    name = "transformer_text"
    module = transformer_text

    def space(self, hp):
        return {
            "num_heads": hp.Choice("num_heads", [2, 4]),
            "num_blocks": hp.Int("num_blocks", 1, 2),
            "embedding_dim": hp.Choice("embedding_dim", [32, 64]),
            "intermediate_dim": hp.Choice("intermediate_dim", [64, 128]),
            "dropout": hp.Float("dropout", 0.0, 0.3, step=0.1),
            "vocabulary_size": text.TextConfig.vocabulary_size,
            "sequence_length": text.TextConfig.sequence_length,
        }


class CNNText(_Text):
    name = "cnn_text"
    module = cnn_text
    #: Kernel widths, named: keras-tuner's choices are scalars.
    WIDTHS = {"3,4,5": (3, 4, 5), "2,3,4": (2, 3, 4), "1,2,3": (1, 2, 3)}

    def space(self, hp):
        return {
            "embedding_dim": hp.Choice("embedding_dim", [64, 128, 256]),
            "kernel_sizes": self.WIDTHS[hp.Choice("kernel_sizes", list(self.WIDTHS))],
            "filters": hp.Choice("filters", [50, 100, 200]),
            "dropout": hp.Float("dropout", 0.2, 0.6, step=0.1, default=0.5),
            "vocabulary_size": text.TextConfig.vocabulary_size,
            "sequence_length": text.TextConfig.sequence_length,
        }


class Upsampling(Recipe):
    name = "upsampling"
    objective = kt.Objective("val_loss", "min")
    loss = "mse"
    metrics = ()

    def __init__(self, train):
        super().__init__(train)
        self.shape, _ = images.facts(train)

    def space(self, hp):
        base = hp.Choice("base_filters", [16, 32])
        return {
            "decoder": hp.Choice("decoder", list(upsampling.KINDS)),
            "filters": (base, 2 * base),
        }

    def make_data(self, kwargs):
        train_ds, val_ds, test_ds, _ = data.splits(
            self.train, map_example=upsampling.as_reconstruction_target)
        return train_ds, val_ds, test_ds, None

    def model(self, kwargs):
        return upsampling.build_model(self.shape, **kwargs)

    def export(self, model, kwargs):
        return upsampling.export_model(model, self.shape, self.train)


RECIPES = {r.name: r for r in (CNN, RNNText, TransformerText, CNNText, Upsampling)}
DEFAULT_DATASETS = {"cnn": "fashion_mnist", "upsampling": "fashion_mnist",
                    "rnn_text": "rt_snippets", "transformer_text": "rt_snippets",
                    "cnn_text": "rt_snippets"}
