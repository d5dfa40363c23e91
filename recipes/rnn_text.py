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

import keras

from core import text
from core.config import at_least, field, fraction, one_of

CELLS = ("simple", "lstm", "gru")
#: Adam's peak learning rate, 3x the CNN's: on validation it bought
#: the BiLSTM +3.0 points on health_tweets_10pct (3 seeds), +3.4 on health_tweets
#: and +0.7 on reuters_r8 (in half the time), for -0.7 on rt_snippets (2 seeds,
#: within noise); benchmarks/text_defaults.py, row 5a.
TRAIN_DEFAULTS = dict(learning_rate=3e-3)
ACTIVATIONS = ("tanh", "relu")


@dataclasses.dataclass
class ModelConfig(text.TextConfig):
    """`build_model`'s keyword arguments: every default and its help."""

    cell: str = field("lstm", f"one of {CELLS}")
    activation: str = field(
        "tanh", f"the cell's output activation, one of {ACTIVATIONS} (LSTM and GRU keep "
        "their sigmoid gates; anything but tanh rules out cuDNN)")
    bidirectional: bool = field(True, "read the text both ways (Bidirectional)")
    embedding_dim: int = field(64, "token embedding size")
    units: int = field(32, "units of each recurrent layer (per direction)")
    num_layers: int = field(1, "stacked recurrent layers")
    dropout: float = field(0.3, "dropout on the recurrent layers' inputs and before the head")
    recurrent_dropout: float = field(
        0.0, "dropout on the recurrent state (slow on CPU: no fused kernel)")

    def validate(self):
        super().validate()
        one_of(self, "cell", CELLS)
        one_of(self, "activation", ACTIVATIONS)
        at_least(self, 1, "embedding_dim", "units", "num_layers")
        fraction(self, "dropout", "recurrent_dropout")


def build_model(vocabulary_size, sequence_length, num_classes, use_cudnn="auto", **hparams):
    """Token ids `(batch, sequence_length)` -> class probabilities.

    `hparams` are `ModelConfig`'s fields (its defaults for those not given).
    """
    c = ModelConfig(vocabulary_size=vocabulary_size, sequence_length=sequence_length, **hparams)
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, c.embedding_dim, mask_zero=True)(ids)
    for layer in range(c.num_layers):
        options = dict(activation=c.activation, dropout=c.dropout,
                       recurrent_dropout=c.recurrent_dropout,
                       return_sequences=layer < c.num_layers - 1)
        if c.cell == "simple":  # no cuDNN kernel to choose
            rnn = keras.layers.SimpleRNN(c.units, **options)
        else:
            recurrent = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[c.cell]
            rnn = recurrent(c.units, use_cudnn=use_cudnn, **options)
        x = keras.layers.Bidirectional(rnn)(x) if c.bidirectional else rnn(x)
    x = keras.layers.Dropout(c.dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    name = "simple_rnn" if c.cell == "simple" else c.cell
    return keras.Model(ids, outputs, name=f"{'bi' if c.bidirectional else ''}{name}")


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


# LiteRT's converter lowers the recurrent loop to built-in ops only with a
# static batch size, so the LiteRT file answers one text per call.
RECIPE = text.TextRecipe("rnn_text", __doc__, ModelConfig, build_model, TRAIN_DEFAULTS,
                         serving_copy=portable_copy, litert_batch=1)
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
