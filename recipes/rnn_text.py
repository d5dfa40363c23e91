"""Recurrent text classifier: SimpleRNN, LSTM or GRU, optionally bidirectional, serving raw strings.

What it shows:
- Embedding with `mask_zero=True`, so padding never reaches the recurrent
  layers, then one or more SimpleRNN, LSTM or GRU layers (`--cell`), each
  optionally wrapped in `Bidirectional`, then a softmax head.
- The cell's activation (`--activation tanh|relu`): the notes say RNNs do
  well with tanh; relu is there to measure it.
- TextVectorization adapted on the training split only, applied in tf.data for
  training and inside the exported SavedModel for serving: a client sends
  raw strings.
- A portable export: the serving copy is rebuilt with `use_cudnn=False`, so a
  model trained on a GPU (where Keras picks cuDNN kernels) still serves on a
  CPU-only TF Serving.

    python -m recipes.rnn_text                          # BiLSTM on rt_snippets
    python -m recipes.rnn_text --cell gru
    python -m recipes.rnn_text --cell simple --activation relu
    python -m recipes.rnn_text --dataset imdb_reviews   # where TFDS can download
"""

import dataclasses
import sys

import keras

from core import text, training

CELLS = ("simple", "lstm", "gru")
#: Adam's peak learning rate, 3x the CNN's: on validation it bought
#: the BiLSTM +3.0 points on health_tweets_10pct (3 seeds), +3.4 on health_tweets
#: and +0.7 on reuters_r8 (in half the time), for -0.7 on rt_snippets (2 seeds,
#: within noise); benchmarks/text_defaults.py, row 5a.
TRAIN_DEFAULTS = dict(learning_rate=3e-3)
ACTIVATIONS = ("tanh", "relu")


@dataclasses.dataclass
class ModelConfig(text.TextConfig):
    """`build_model`'s keyword arguments and their defaults."""

    cell: str = "lstm"
    activation: str = "tanh"
    bidirectional: bool = True
    embedding_dim: int = 64
    units: int = 32
    num_layers: int = 1
    dropout: float = 0.3
    recurrent_dropout: float = 0.0

    HELP = {
        "cell": f"one of {CELLS}",
        "activation": f"the cell's output activation, one of {ACTIVATIONS} (LSTM and GRU "
        "keep their sigmoid gates; anything but tanh rules out cuDNN)",
        "num_layers": "stacked recurrent layers",
        "dropout": "dropout on the recurrent layers' inputs and before the head",
        "recurrent_dropout": "dropout on the recurrent state (slow on CPU: no fused kernel)",
    }


def validate(config):
    if config.cell not in CELLS:
        raise training.ConfigError(f"cell must be one of {CELLS}, got {config.cell!r}")
    if config.activation not in ACTIVATIONS:
        raise training.ConfigError(
            f"activation must be one of {ACTIVATIONS}, got {config.activation!r}")
    for name in ("embedding_dim", "units", "num_layers"):
        if getattr(config, name) < 1:
            raise training.ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("dropout", "recurrent_dropout"):
        if not 0 <= getattr(config, name) < 1:
            raise training.ConfigError(f"{name} must be in [0, 1), got {getattr(config, name)}")


def build_model(vocabulary_size, sequence_length, num_classes, cell="lstm", activation="tanh",
                bidirectional=True, embedding_dim=64, units=32, num_layers=1, dropout=0.3,
                recurrent_dropout=0.0, use_cudnn="auto"):
    """Token ids `(batch, sequence_length)` -> class probabilities."""
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True)(ids)
    for layer in range(num_layers):
        options = dict(activation=activation, dropout=dropout,
                       recurrent_dropout=recurrent_dropout,
                       return_sequences=layer < num_layers - 1)
        if cell == "simple":  # no cuDNN kernel to choose
            rnn = keras.layers.SimpleRNN(units, **options)
        else:
            recurrent = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
            rnn = recurrent(units, use_cudnn=use_cudnn, **options)
        x = keras.layers.Bidirectional(rnn)(x) if bidirectional else rnn(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    name = "simple_rnn" if cell == "simple" else cell
    return keras.Model(ids, outputs, name=f"{'bi' if bidirectional else ''}{name}")


def portable_copy(model):
    """A copy of the trained model (same weights) whose LSTM/GRU never use cuDNN.

    `use_cudnn` is not part of a recurrent layer's config, so it is set on the
    cloned layers directly; it takes effect when the serving graph is traced.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        inner = [layer.forward_layer, layer.backward_layer] if isinstance(
            layer, keras.layers.Bidirectional) else [layer]
        for rnn in inner:
            if isinstance(rnn, (keras.layers.LSTM, keras.layers.GRU)):
                rnn.use_cudnn = False
    return copy


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    return text.parse("rnn_text", __doc__, ModelConfig(), argv, **TRAIN_DEFAULTS)


def main(argv=None):
    # LiteRT's converter lowers the recurrent loop to built-in ops only with a
    # static batch size, so the LiteRT file answers one text per call.
    text.main("rnn_text", __doc__, ModelConfig(), build_model, validate, argv,
              export_model=portable_copy, litert_batch=1, train_defaults=TRAIN_DEFAULTS)


if __name__ == "__main__":
    sys.exit(main())
