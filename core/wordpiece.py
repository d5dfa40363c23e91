"""WordPiece tokens for pretrained text encoders: a vocabulary learned from the
pretraining corpus, ids for a model, and masked-language-model examples.

    vocabulary = wordpiece.vocabulary(8000)     # learned once, then read from disk
    tokenizer = wordpiece.Tokenizer(vocabulary)
    ids = tokenizer(texts, 128)                 # [CLS] tokens [SEP], padded with [PAD]
    inputs, targets, weights = wordpiece.masked(tokenizer.ragged(texts, 128),
                                                len(vocabulary), predictions=20)

The vocabulary is learned with TensorFlow Text's `bert_vocab_from_dataset`,
the learner of the TensorFlow subword tutorial (uncased: lowercased, accents
stripped), on the train split of `pretraining_text` (core/corpus.py); it
takes about 5 minutes here and is kept beside the prepared corpus, so every
run on the same corpus shares it. `FastBertTokenizer` applies it: the
vocabulary is a constant of the graph, so an exported model needs no file.

Masking follows BERT (Devlin et al., 2018): 15% of the tokens of each text,
rounded up (never [PAD], [CLS] or [SEP]), at most `predictions`, are chosen;
80% of those become [MASK], 10% a random token, 10% stay; the model predicts
the original token at each chosen position. `masked` runs inside tf.data on
every batch, so a text gets new masks each time it is read (dynamic
masking, Liu et al., 2019).
"""

import hashlib
import os

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

from core import corpus, storage

#: Token ids 0-4. [PAD] is 0, which TokenAndPositionEmbedding masks.
RESERVED = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(len(RESERVED))
MASK_RATE = 0.15


def _text():
    import tensorflow_text  # registers its ops; imported only where used

    return tensorflow_text


def vocabulary_path(size, data_dir=None):
    return os.path.join(corpus.builder(data_dir).data_dir, f"wordpiece-{size}.txt")


def vocabulary(size, data_dir=None):
    """The WordPiece vocabulary of about `size` tokens (the learner may give a few
    fewer) learned from the pretraining corpus, `RESERVED` first."""
    return _learned(size, vocabulary_path(size, data_dir),
                    lambda: corpus.load("train", data_dir), corpus.NAME)


def own_vocabulary(size, texts, name):
    """The same, learned from `texts` (a user's own training pieces, from `name`),
    and kept in TFDS's data directory under a digest of the texts."""
    digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = os.path.join(tfds.core.constants.DATA_DIR, "own_wordpiece", f"{digest}-{size}.txt")
    return _learned(size, path, lambda: tf.data.Dataset.from_tensor_slices(texts), name)


def _learned(size, path, texts, name):
    if not os.path.exists(path):
        from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

        print(f"[wordpiece] learning a {size:,}-token vocabulary from {name} (about 5 "
              f"minutes for {corpus.NAME}'s 8.3 million words, once)", flush=True)
        learned = bert_vocab_from_dataset.bert_vocab_from_dataset(
            texts().batch(1000).prefetch(2), vocab_size=size, reserved_tokens=RESERVED,
            bert_tokenizer_params={"lower_case": True}, learn_params={})
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_vocabulary(path, learned)
    return read_vocabulary(path)


def write_vocabulary(path, tokens):
    """One token a line (line n is id n), written atomically."""
    tmp = path + ".tmp"
    with storage.writing(path):
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{token}\n" for token in tokens)
        os.replace(tmp, path)


def read_vocabulary(path):
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")[:-1]
    if tokens[:len(RESERVED)] != RESERVED:
        raise ValueError(f"{path}: not a WordPiece vocabulary of ours (it must begin with "
                         f"{', '.join(RESERVED)})")
    return tokens


class Tokenizer:
    """Strings -> WordPiece ids framed as [CLS] ... [SEP]."""

    def __init__(self, vocabulary):
        self.vocabulary = list(vocabulary)
        self.fast = _text().FastBertTokenizer(
            self.vocabulary, token_out_type=tf.int64, unknown_token="[UNK]",
            lower_case_nfd_strip_accents=True)

    def ragged(self, texts, sequence_length):
        """Ragged ids, each text cut to fit `sequence_length` with its frame."""
        tokens = self.fast.tokenize(texts)[:, :sequence_length - 2]
        column = lambda token: tf.fill([tokens.nrows(), 1], tf.constant(token, tf.int64))  # noqa: E731
        return tf.concat([column(CLS), tokens, column(SEP)], axis=1)

    def __call__(self, texts, sequence_length):
        """Ids `(batch, sequence_length)`, padded with [PAD]."""
        return self.ragged(texts, sequence_length).to_tensor(
            PAD, shape=[None, sequence_length])


class Vectorizer(keras.layers.Layer):
    """Strings `(batch,)` -> WordPiece ids `(batch, sequence_length)`: a `Tokenizer`
    as a layer, so it sits in front of a model in a serving graph as
    `TextVectorization` does (TensorFlow only: its ops come from TensorFlow
    Text). Like `TextVectorization` it answers `get_vocabulary()` and
    `vocabulary_size()`. Not saved in `.keras` files: a run keeps its
    vocabulary as `vocabulary.txt`."""

    def __init__(self, tokenizer, sequence_length, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.tokenizer, self.sequence_length = tokenizer, sequence_length
        self._convert_input_args = False  # strings, as TextVectorization takes them
        self._allow_non_tensor_positional_args = True

    @property
    def compute_dtype(self):
        return "string"

    @property
    def variable_dtype(self):
        return "string"

    def build(self, input_shape=None):
        pass

    def call(self, texts):
        return self.tokenizer(texts, self.sequence_length)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="int64")

    def get_vocabulary(self):
        return list(self.tokenizer.vocabulary)

    def vocabulary_size(self):
        return len(self.tokenizer.vocabulary)


def masked(ids, vocabulary_size, predictions, sequence_length):
    """BERT's masked-language-model example from ragged ids framed as [CLS] ... [SEP].

    Returns `({"token_ids": (batch, sequence_length), "positions": (batch,
    predictions)}, targets (batch, predictions), weights (batch, predictions))`:
    the masked ids, where the chosen tokens are, their original ids, and 1.0 for
    each real prediction (0.0 where a short text has fewer than `predictions`).
    """
    text = _text()
    selector = text.RandomItemSelector(
        max_selections_per_batch=predictions, selection_rate=MASK_RATE,
        unselectable_ids=[PAD, CLS, SEP])
    chooser = text.MaskValuesChooser(vocabulary_size, MASK, mask_token_rate=0.8,
                                     random_token_rate=0.1)
    inputs, positions, targets = text.mask_language_model(ids, selector, chooser)
    weights = tf.ones_like(targets, tf.float32)
    return ({"token_ids": inputs.to_tensor(PAD, shape=[None, sequence_length]),
             "positions": positions.to_tensor(0, shape=[None, predictions])},
            targets.to_tensor(PAD, shape=[None, predictions]),
            weights.to_tensor(0.0, shape=[None, predictions]))
