"""Transformer encoder text classifier, serving raw strings.

What it shows:
- `TokenAndPositionEmbedding` (padding id 0 masked) -> N `TransformerEncoder`
  blocks (self-attention never looks at padding) -> an average over the
  unmasked tokens -> softmax head. The blocks come from layers/transformer.py,
  which saves and reloads (keras-io's example block does not).
- The same tokenization, training and raw-string export as the RNN recipe
  (core/text.py).

    python -m recipes.transformer_text                       # rt_snippets
    python -m recipes.transformer_text --num-blocks 1 --num-heads 2
"""

import dataclasses

import keras

from core import text
from core.config import ConfigError, at_least, field, fraction
from layers.transformer import MaskedAveragePooling1D, TokenAndPositionEmbedding, TransformerEncoder

#: Adam's peak learning rate, 3x the CNN's: on validation it bought +2.4 points on
#: health_tweets_10pct (3 seeds), +0.1 on health_tweets, +0.0 on rt_snippets (2
#: seeds) and -0.2 on reuters_r8; benchmarks/text_defaults.py, row 5a.
TRAIN_DEFAULTS = dict(learning_rate=3e-3)


@dataclasses.dataclass
class ModelConfig(text.TextConfig):
    """`build_model`'s keyword arguments: every default and its help.

    Chosen on validation alone (`python -m benchmarks.selection --only
    transformer`, film-disjoint rt_snippets validation, seeds 42-44): this
    size (20k tokens, 64-d, 4 heads, 128) scored 0.7585 +- 0.0008 best
    validation accuracy against 0.7530 +- 0.0132 for the smaller 32-d,
    2-head, 64, 10k model, which had been picked earlier by reading test
    accuracies.
    """

    embedding_dim: int = field(64, "token and position embedding size; a multiple of num_heads")
    num_heads: int = field(4, "attention heads in each block")
    intermediate_dim: int = field(128, "feed-forward width inside each block")
    num_blocks: int = field(2, "stacked encoder blocks")
    dropout: float = field(0.1, "dropout inside each block")
    head_dropout: float = field(0.5, "dropout before the classification head")

    def validate(self):
        super().validate()
        at_least(self, 1, "embedding_dim", "num_heads", "intermediate_dim", "num_blocks")
        if self.embedding_dim % self.num_heads:
            raise ConfigError(f"embedding_dim ({self.embedding_dim}) must be a multiple of "
                              f"num_heads ({self.num_heads})")
        fraction(self, "dropout", "head_dropout")


def build_model(vocabulary_size, sequence_length, num_classes, **hparams):
    """Token ids `(batch, sequence_length)` -> class probabilities.

    `hparams` are `ModelConfig`'s fields (its defaults for those not given).
    """
    c = ModelConfig(vocabulary_size=vocabulary_size, sequence_length=sequence_length, **hparams)
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = TokenAndPositionEmbedding(vocabulary_size, sequence_length, c.embedding_dim)(ids)
    for _ in range(c.num_blocks):
        x = TransformerEncoder(c.num_heads, c.intermediate_dim, dropout=c.dropout)(x)
    x = MaskedAveragePooling1D()(x)
    x = keras.layers.Dropout(c.head_dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(ids, outputs, name="transformer")


RECIPE = text.TextRecipe("transformer_text", __doc__, ModelConfig, build_model, TRAIN_DEFAULTS)
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
