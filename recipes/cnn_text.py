"""Convolutional text classifier (Kim 2014, "CNN-rand"), serving raw strings.

What it shows:
- Word embeddings learned from scratch, then parallel `Conv1D` branches of
  several widths (3, 4 and 5 words by default: n-gram detectors), each
  followed by a global max pool over the text ("max-over-time": the strongest
  match anywhere), concatenated, dropout, softmax.
- No recurrence and no attention: every position is computed at once, so it
  trains faster per example than the BiLSTM, and a detector fires wherever its
  phrase is, which suits short texts whose label rests on a few words
  (question type, topic, source).
- The same tokenization, training and raw-string export as the other text
  recipes (core/text.py).

Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014
(https://arxiv.org/abs/1408.5882). Kim's CNN-rand used 300-d embeddings, 100
filters per width, dropout 0.5 and Adadelta; this recipe keeps the widths and
the dropout, with Adam and a smaller embedding.

    python -m recipes.cnn_text                                # rt_snippets
    python -m recipes.cnn_text --dataset reuters_r8
    python -m recipes.cnn_text --kernel-sizes 2,3,4 --filters 64
"""

import dataclasses
import sys

import keras

from core import text, training


@dataclasses.dataclass
class ModelConfig(text.TextConfig):
    """`build_model`'s keyword arguments and their defaults."""

    embedding_dim: int = 128
    kernel_sizes: tuple = (3, 4, 5)
    filters: int = 100
    dropout: float = 0.5

    HELP = {
        "embedding_dim": "word embedding size (learned from scratch)",
        "kernel_sizes": "widths in words of the parallel convolutions, one branch each",
        "filters": "feature maps per width",
        "dropout": "dropout on the pooled features, before the head",
    }


def validate(config):
    for name in ("embedding_dim", "filters"):
        if getattr(config, name) < 1:
            raise training.ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not config.kernel_sizes or min(config.kernel_sizes) < 1:
        raise training.ConfigError(
            f"kernel_sizes must be one or more widths >= 1, got {config.kernel_sizes}")
    if not 0 <= config.dropout < 1:
        raise training.ConfigError(f"dropout must be in [0, 1), got {config.dropout}")


def build_model(vocabulary_size, sequence_length, num_classes, embedding_dim=128,
                kernel_sizes=(3, 4, 5), filters=100, dropout=0.5):
    """Token ids `(batch, sequence_length)` -> class probabilities.

    `padding="same"` keeps a text shorter than the widest kernel valid; the
    padding id has an embedding like any word, as in Kim's model.
    """
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, embedding_dim)(ids)
    pooled = [keras.layers.GlobalMaxPooling1D()(
        keras.layers.Conv1D(filters, width, padding="same", activation="relu")(x))
        for width in kernel_sizes]
    x = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(ids, outputs, name="text_cnn")


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    return text.parse("cnn_text", __doc__, ModelConfig(), argv)


def main(argv=None):
    text.main("cnn_text", __doc__, ModelConfig(), build_model, validate, argv)


if __name__ == "__main__":
    sys.exit(main())
