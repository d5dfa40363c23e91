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

import keras

from core import text
from core.config import ConfigError, at_least, field, fraction


@dataclasses.dataclass
class ModelConfig(text.TextConfig):
    """`build_model`'s keyword arguments: every default and its help."""

    embedding_dim: int = field(128, "word embedding size (learned from scratch)")
    kernel_sizes: tuple = field(
        (3, 4, 5), "widths in words of the parallel convolutions, one branch each")
    filters: int = field(100, "feature maps per width")
    dropout: float = field(0.5, "dropout on the pooled features, before the head")

    def validate(self):
        super().validate()
        at_least(self, 1, "embedding_dim", "filters")
        if not self.kernel_sizes or min(self.kernel_sizes) < 1:
            raise ConfigError(
                f"kernel_sizes must be one or more widths >= 1, got {self.kernel_sizes}")
        fraction(self, "dropout")


def build_model(vocabulary_size, sequence_length, num_classes, **hparams):
    """Token ids `(batch, sequence_length)` -> class probabilities.

    `hparams` are `ModelConfig`'s fields (its defaults for those not given).
    `padding="same"` keeps a text shorter than the widest kernel valid; the
    padding id has an embedding like any word, as in Kim's model.
    """
    c = ModelConfig(vocabulary_size=vocabulary_size, sequence_length=sequence_length, **hparams)
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, c.embedding_dim)(ids)
    pooled = [keras.layers.GlobalMaxPooling1D()(
        keras.layers.Conv1D(c.filters, width, padding="same", activation="relu")(x))
        for width in c.kernel_sizes]
    x = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    x = keras.layers.Dropout(c.dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(ids, outputs, name="text_cnn")


RECIPE = text.TextRecipe("cnn_text", __doc__, ModelConfig, build_model)
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
