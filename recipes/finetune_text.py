"""Fine-tune a pretrained text encoder on labelled texts, serving raw strings.

What it shows:
- The second half of BERT's recipe: the encoder `python -m
  recipes.pretrain_text` exported (`encoder.keras`, loaded in Keras's safe
  mode, and its `vocabulary.txt`), with an average over the real tokens and a
  softmax head on top, trained end to end on any labelled corpus: a TFDS name,
  a folder of class folders of .txt files, or a .csv/.tsv/.jsonl table.
- `--init scratch` trains the same architecture, vocabulary and budget from
  random weights: the control that says what pretraining bought.
- `--freeze`, feature extraction, for an encoder too slow to fine-tune on
  two cores (a published one, from `python -m recipes.import_encoder`): each
  text goes through the encoder once and the head alone trains; `--ngrams 2`
  sets the n-gram recipe's tf-idf beside the encoder's vector (`--preset
  beside_ngrams` adds the n-gram recipe's optimizer and budget); `--train-blocks
  N` trains the encoder's top N blocks too, on the cached output of the ones
  below (`--preset top_blocks`).
- Texts become WordPiece ids inside the tf.data pipeline, and inside the
  exported graph (`core.wordpiece.Vectorizer`), so the SavedModel takes raw
  strings like the other text recipes' (core/text.py). Its tokenizer ops come
  from TensorFlow Text: a server loads it with `import tensorflow_text`.

    python -m recipes.pretrain_text                     # once: the encoder (50 min)
    python -m recipes.finetune_text                     # rt_snippets, newest encoder
    python -m recipes.finetune_text --dataset reuters_r8
    python -m recipes.finetune_text --pretrained saved_models/pretrain_text/1 --init scratch
    python -m recipes.import_encoder                    # all-MiniLM-L6-v2, published
    python -m recipes.finetune_text --pretrained saved_models/all_minilm_l6_v2 --preset beside_ngrams
    python -m recipes.finetune_text --pretrained saved_models/all_minilm_l6_v2 --preset top_blocks
"""

import dataclasses
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from core import data, export, recipe, text, wordpiece
from core.config import ConfigError, field, fraction
from layers.transformer import MaskedAveragePooling1D, TransformerEncoder
from recipes import ngram_text, pretrain_text

INITS = ("pretrained", "scratch")
#: With --ngrams, the length of each text's encoder vector beside its unit-length
#: tf-idf: chosen on rt_snippets' validation split (seed 42) among standardizing
#: the vectors, this, and full length at a tenth of the learning rate
#: (docs/recipes.md).
VECTOR_WEIGHT = 0.3
HEAD = "head"  # the name of the model a frozen run trains

#: The text recipes' budget in steps (core/text.py) with BERT's fine-tuning batch
#: of 32 and a peak learning rate of 1e-3; chosen on rt_snippets' validation
#: split (docs/recipes.md).
TRAIN_DEFAULTS = dict(batch_size=32, learning_rate=1e-3)


@dataclasses.dataclass
class ModelConfig:
    """`build_model`'s keyword arguments: every default and its help."""

    pretrained: str = field(
        "saved_models/pretrain_text", "an encoder exported by recipes.pretrain_text: its "
        "version folder, or the folder of versions (the newest is used)")
    init: str = field(
        "pretrained", f"one of {INITS}: the encoder's weights, or random ones (the control: "
        "same architecture, vocabulary and budget)")
    sequence_length: int = field(
        0, f"WordPiece tokens per text with [CLS] and [SEP], padded or cut (0 = from the "
        f"data: the {text.LENGTH_PERCENTILE}th percentile of the training texts, at most the "
        "encoder's)")
    head_dropout: float = field(0.1, "dropout before the classification head")
    freeze: bool = field(
        False, "feature extraction: keep the encoder as loaded and train the head alone "
        "on each text's average token vector, computed once before training (for an "
        "encoder too slow to fine-tune here; the export chains encoder and head)")
    train_blocks: int = field(
        0, "with --freeze, the encoder's top N blocks train too, with the head, on the output "
        "of the layers below them, computed once per token (0 = the head alone, on each "
        "text's average token vector)")
    ngrams: int = field(
        0, "with --freeze, the head also reads each text's tf-idf over the most frequent "
        "1- to n-grams, as recipes.ngram_text does, beside the encoder's vector (wide and "
        "deep; 0 = the encoder's vector alone)")

    def validate(self):
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {INITS}, got {self.init!r}")
        if self.freeze and self.init != "pretrained":
            raise ConfigError("--freeze keeps the pretrained weights; --init scratch has "
                              "none to keep")
        for name in ("train_blocks", "ngrams"):
            value = getattr(self, name)
            if value < 0 or (value and not self.freeze):
                raise ConfigError(f"{name} must be 0, or at least 1 with --freeze, got {value}")
        if self.sequence_length < 0:
            raise ConfigError(f"sequence_length must be >= 3, or 0 for the data's own, got "
                              f"{self.sequence_length}")
        fraction(self, "head_dropout")


def encoder_version(path):
    """`path` itself if it holds an encoder, else its newest numbered version."""
    if not os.path.isdir(path):
        raise ConfigError(f"{path}: no such folder; run `python -m recipes.pretrain_text` "
                          "first, or give --pretrained the folder it exported")
    newest = export.next_version(path) - 1  # 0: no numbered version in it
    if os.path.exists(os.path.join(path, pretrain_text.ENCODER_FILE)) or not newest:
        return path
    return os.path.join(path, str(newest))


def build_model(encoder, num_classes, sequence_length, ngram_features=0, **hparams):
    """Token ids `(batch, sequence_length)` -> class probabilities, through a copy of
    `encoder` (a loaded pretrained one) with the encoder's weights, or fresh ones
    for `init="scratch"`. `hparams` are `ModelConfig`'s fields.

    With `freeze`, the head alone: average token vectors `(batch, encoder
    width)` -> class probabilities (`features` makes them, `chained` serves
    both). With `train_blocks`, the head starts with copies of the encoder's
    top blocks, and its inputs are their inputs: `(batch, sequence_length,
    width)`, zero at padding. With `ngrams` too, `{"text_vectors": ..., "tf_idf": (batch,
    ngram_features)}` side by side in the softmax, each scaled to unit length,
    the vectors then to `VECTOR_WEIGHT`: they share a large common direction,
    which the n-gram recipe's large SGD steps overshoot at full length
    (validation loss above 4 at its rate of 30; docs/recipes.md)."""
    c = ModelConfig(sequence_length=sequence_length, **hparams)
    if c.freeze:
        width = encoder.output_shape[-1]
        if c.train_blocks:
            inputs = keras.Input((sequence_length, width), name="text_vectors")
            vectors = top_blocks(encoder, c.train_blocks, inputs)
        else:
            inputs = vectors = keras.Input((width,), name="text_vectors")
        if not c.ngrams:
            return keras.Model(inputs, head(vectors, num_classes, c.head_dropout), name=HEAD)
        tf_idf = keras.Input((ngram_features,), name="tf_idf")
        weighted = keras.layers.Rescaling(VECTOR_WEIGHT)(keras.layers.UnitNormalization()(vectors))
        x = keras.layers.Concatenate()([weighted, keras.layers.UnitNormalization()(tf_idf)])
        return keras.Model({"text_vectors": inputs, "tf_idf": tf_idf},
                           head(x, num_classes, c.head_dropout), name=HEAD)
    body = pretrain_text.encoder_copy(encoder, sequence_length, weights=c.init == "pretrained")
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = MaskedAveragePooling1D()(body(ids))
    return keras.Model(ids, head(x, num_classes, c.head_dropout), name="finetune_text")


def head(x, num_classes, dropout):
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(num_classes)(x)
    return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def blocks_of(model):
    """`model`'s transformer blocks, in order."""
    return [layer for layer in model.layers if isinstance(layer, TransformerEncoder)]


def top_blocks(encoder, blocks, tokens):
    """Copies of `encoder`'s top `blocks` blocks, with its weights, over `tokens`
    `(batch, length, width)` (zero at padding), then their average over the real
    tokens."""
    real = keras.ops.any(keras.ops.not_equal(tokens, 0), axis=-1)
    x = tokens
    for layer in blocks_of(pretrain_text.encoder_copy(encoder, None))[-blocks:]:
        x = layer(x, mask=real)
    return MaskedAveragePooling1D()(x, mask=real)


def frozen_part(encoder, train_blocks=0):
    """Ids `(batch, length)` -> `encoder` as loaded, all but its top `train_blocks`
    blocks: each token's vector, zero at padding, or (for `train_blocks=0`) their
    average over the real tokens."""
    body = pretrain_text.encoder_copy(encoder, None)
    ids = keras.Input((None,), dtype="int64", name="token_ids")
    stop = body.layers.index(blocks_of(body)[-train_blocks]) if train_blocks else None
    x = ids
    for layer in body.layers[1:stop]:
        x = layer(x)
    if train_blocks:
        real = keras.ops.not_equal(ids, wordpiece.PAD)
        x = x * keras.ops.expand_dims(keras.ops.cast(real, x.dtype), -1)
    else:
        x = MaskedAveragePooling1D()(x)
    return keras.Model(ids, x, name="frozen_encoder")


def features(encoder, tokenizer, sequence_length, train_blocks=0):
    """`(text, label) -> (features, label)` for `Dataset.map`: a text's ids at their
    own length (at most `sequence_length`), through `frozen_part(encoder,
    train_blocks)`; token vectors are then padded with zeros to
    `sequence_length`."""
    frozen = frozen_part(encoder, train_blocks)

    def example(text, label):
        ids = tokenizer.ragged(text[None], sequence_length).to_tensor(wordpiece.PAD)
        x = frozen(ids, training=False)[0]
        if train_blocks:
            x = tf.pad(x, [[0, sequence_length - tf.shape(x)[0]], [0, 0]])
        return x, label

    return example


def chained(encoder, trained_head, sequence_length, ngram_features=0):
    """Ids `(batch, sequence_length)` (and tf-idf `(batch, ngram_features)`, given
    them) -> `trained_head`'s probabilities, through `encoder` as loaded, but
    for the top blocks the head trained: what a frozen run serves."""
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    vectors = frozen_part(encoder, len(blocks_of(trained_head)))(ids)
    if not ngram_features:
        return keras.Model(ids, trained_head(vectors), name="finetune_text")
    tf_idf = keras.Input((ngram_features,), name="tf_idf")
    return keras.Model({"token_ids": ids, "tf_idf": tf_idf},
                       trained_head({"text_vectors": vectors, "tf_idf": tf_idf}),
                       name="finetune_text")


def both_vectorizers(tokenizer, sequence_length, tf_idf):
    """Strings -> `{"token_ids": ..., "tf_idf": ...}`, as `chained` takes them."""
    texts = keras.Input((), dtype="string", name="text")
    ids = wordpiece.Vectorizer(tokenizer, sequence_length, name="wordpiece")
    return keras.Model(texts, {"token_ids": ids(texts), "tf_idf": tf_idf(texts)},
                       name="vectorizers")


class Facts(NamedTuple):
    """What `FinetuneRecipe.facts` found."""

    class_names: list
    encoder: keras.Model  # as loaded, in safe mode
    tokenizer: wordpiece.Tokenizer  # its vocabulary
    path: str  # the version folder it came from


class FinetuneRecipe(recipe.Recipe):
    name = "finetune_text"
    doc = __doc__
    Config = ModelConfig
    train_defaults = {**text.TRAIN_DEFAULTS, **TRAIN_DEFAULTS}
    presets = {"default": {"doc": "the defaults above"},
               "beside_ngrams": {
                   "doc": "--freeze --ngrams 2 with recipes.ngram_text's optimizer and budget "
                   "(SGD at 30, 60 epochs of 100 steps of 128 texts, patience 60)",
                   "model": {"freeze": True, "ngrams": 2},
                   "train": {**ngram_text.TRAIN_DEFAULTS, "batch_size": 128}},
               "top_blocks": {
                   "doc": "--freeze --train-blocks 2 at Adam's 1e-4, 9 epochs of 100 steps of "
                   "32 texts, patience 9 (chosen on rt_snippets' validation split; "
                   "docs/recipes.md)",
                   "model": {"freeze": True, "train_blocks": 2},
                   "train": {"learning_rate": 1e-4, "epochs": 9, "patience": 9}}}

    def facts(self, model_config, train):
        model_config.validate()
        if "onnx" in export.parse_formats(train.export_format):
            raise ConfigError("finetune_text cannot export ONNX: tf2onnx has no Erfc, which the "
                              "encoder's GELU uses; --export-format saved_model,litert works")
        if model_config.ngrams and len(export.parse_formats(train.export_format)) > 1:
            raise ConfigError("with --ngrams, finetune_text exports a SavedModel only: an "
                              "ONNX or LiteRT file would leave the client to compute tf-idf")
        path = encoder_version(model_config.pretrained)
        encoder, tokenizer = pretrain_text.load_encoder(path)
        longest = encoder.input_shape[1]
        if model_config.train_blocks > len(blocks_of(encoder)):
            raise ConfigError(f"train_blocks must be at most the encoder's "
                              f"{len(blocks_of(encoder))} blocks, got {model_config.train_blocks}")
        if model_config.sequence_length > longest or 0 < model_config.sequence_length < 3:
            raise ConfigError(f"sequence_length must be between 3 and the encoder's "
                              f"{longest}, got {model_config.sequence_length}")
        print(f"[{self.name}] encoder {path} ({model_config.init} weights)", flush=True)
        return Facts(text.dataset_facts(train), encoder, tokenizer, path)

    def data(self, facts, model_config, train):
        length = model_config.sequence_length or self.length_from_data(facts, train)
        vectorizer = wordpiece.Vectorizer(facts.tokenizer, length, name="vectorizer")
        if model_config.freeze:  # each text through the encoder once, then cached
            print(f"[{self.name}] frozen encoder: each text's vector is computed in the "
                  "first pass, which takes most of the run", flush=True)
            vectors = features(facts.encoder, facts.tokenizer, length, model_config.train_blocks)
            if not model_config.ngrams:
                return recipe.Data(*data.splits(train, map_example=vectors),
                                   {"sequence_length": length}, vectorizer)
            tf_idf = text.make_vectorizer(
                data.training_examples(train).map(lambda t, label: t),
                ngram_text.ModelConfig().vocabulary_size, ngrams=model_config.ngrams)
            splits = data.splits(
                train, map_example=lambda t, label: ((t, vectors(t, label)[0]), label),
                map_batch=lambda x, labels: ({"text_vectors": x[1], "tf_idf": tf_idf(x[0])},
                                             labels))
            return recipe.Data(*splits, {"sequence_length": length,
                                         "ngram_features": tf_idf.vocabulary_size()},
                               both_vectorizers(facts.tokenizer, length, tf_idf))
        train_ds, val_ds, test_ds, n_train = data.splits(
            train, map_batch=lambda texts, labels: (facts.tokenizer(texts, length), labels))
        return recipe.Data(train_ds, val_ds, test_ds, n_train,
                           {"sequence_length": length}, vectorizer)

    @staticmethod
    def length_from_data(facts, train):
        longest = facts.encoder.input_shape[1]
        texts = data.training_examples(train).map(lambda t, label: t).batch(1024)
        lengths = np.concatenate([facts.tokenizer.ragged(batch, longest).row_lengths().numpy()
                                  for batch in texts])
        return min(text.length_from_data(lengths), longest)

    def build(self, facts, splits, model_config):
        return build_model(facts.encoder, len(facts.class_names), **{
            **dataclasses.asdict(model_config), **splits.resolved})

    def measure(self, model, facts, model_config):
        return {"encoder": facts.path}

    def export(self, model, facts, splits, train):
        if model.name == HEAD:  # --freeze: the encoder as loaded, then the trained head
            model = chained(facts.encoder, model, **splits.resolved)
        return text.export_text_model(self.name, model, splits.extra, facts.class_names, train)


RECIPE = FinetuneRecipe()
run, parse, main = RECIPE.run, RECIPE.parse, RECIPE.main

if __name__ == "__main__":
    main()
