"""Bag-of-n-grams baseline: tf-idf over words and word pairs, then logistic regression.

What it shows:
- The baseline a neural text model has to beat to earn its cost: word order
  is ignored beyond pairs of neighbours. Published figures on comparable
  sentence-polarity data put n-gram models level with from-scratch networks.
- `TextVectorization(ngrams=2, output_mode="tf_idf")`, adapted on the
  training split only: one vector per text over the most frequent unigrams
  and bigrams, each count weighted by its inverse document frequency.
- One Dense softmax layer on it: multinomial logistic regression, in Keras,
  trained with the same loop, early stopping and export as the other text
  recipes; the SavedModel takes raw strings.

    python -m recipes.ngram_text                       # rt_snippets
    python -m recipes.ngram_text --ngrams 1            # bag of words
"""

import dataclasses
import sys

import keras

from core import text, training


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments and their defaults."""

    vocabulary_size: int = 20_000
    ngrams: int = 2
    dropout: float = 0.0
    standardize: str = "strip_punctuation"

    HELP = {
        "vocabulary_size": "features: the most frequent 1- to n-grams of the training split",
        "ngrams": "longest n-gram counted (1 = bag of words)",
        "dropout": "dropout on the tf-idf features",
    }


def validate(config):
    if not 0 <= config.dropout < 1:
        raise training.ConfigError(f"dropout must be in [0, 1), got {config.dropout}")


def build_model(vocabulary_size, num_classes, ngrams=2, dropout=0.0):
    """A tf-idf vector `(batch, vocabulary_size)` -> class probabilities."""
    features = keras.Input((vocabulary_size,), name="tf_idf")
    x = keras.layers.Dropout(dropout)(features)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(features, outputs, name=f"tf_idf_{ngrams}gram_logistic")


def parse(argv=None):
    """(parser, args, model config, train config) of a command line; runs nothing."""
    return text.parse("ngram_text", __doc__, ModelConfig(), argv)


def main(argv=None):
    text.main("ngram_text", __doc__, ModelConfig(), build_model, validate, argv)


if __name__ == "__main__":
    sys.exit(main())
