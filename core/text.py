"""What the text recipes share: tokenization, data and a raw-string export.

A text recipe supplies its `ModelConfig` and a `build_model(vocabulary_size,
num_classes, **hparams)` that maps the vectorizer's output (token ids, or
tf-idf vectors for a config with `ngrams`) to class probabilities;
`TextRecipe` gives the rest to the shared run sequence (core/recipe.py):

- `TextVectorization` adapted on the training split only (never validation or
  test), applied inside the tf.data pipeline for training;
- a softmax head over the dataset's classes (two for binary datasets, so
  binary and multi-class serve the same way);
- an export whose signature takes raw strings: the vectorizer and the model in
  one graph, input `text` (string `[batch]`), outputs `probabilities`,
  `label` (class id) and `label_name`.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from core import data, export, files, recipe
from core.config import ConfigError, field

#: Awkward inputs every text export must answer (checked after each export).
EDGE_CASES = [
    "",
    "A quietly devastating film. " * 3_600,  # about 100,000 characters
    "Un film étonnant, déjà culte ! 🎬🍿 素晴らしい映画",
    "   ",
    "!!!???",
]


#: How texts become tokens: "split" (the default) keeps each mark as a token of
#: its own ("why ?" and "why" differ; +5.9 and +8.3 validation points for the
#: BiLSTM and the CNN on health_tweets, benchmarks.text_defaults); "strip" is
#: Keras's own default, which drops them.
STANDARDIZE = ("split_punctuation", "strip_punctuation")
#: Keras's own punctuation class (TextVectorization's default strips it).
PUNCTUATION = r'([!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\'])'
#: `sequence_length` 0 cuts texts at this percentile of the training split's
#: token counts, rounded up to a multiple of 8 and kept within these bounds.
LENGTH_PERCENTILE = 95
LENGTH_BOUNDS = (8, 256)


@keras.saving.register_keras_serializable(package="recipes")
def split_punctuation(texts):
    """Lowercase, and put spaces around each punctuation mark so it becomes a token."""
    return tf.strings.regex_replace(tf.strings.lower(texts), PUNCTUATION, r" \1 ")


@dataclasses.dataclass
class TextConfig:
    """Tokenization knobs shared by the sequence models (part of each ModelConfig)."""

    vocabulary_size: int = field(
        20_000, "the most frequent training tokens kept (others become [UNK])")
    sequence_length: int = field(
        0, f"tokens per text, padded or cut (0 = from the data: the {LENGTH_PERCENTILE}th "
        f"percentile of the training texts' lengths, within {LENGTH_BOUNDS})")
    standardize: str = field(
        "split_punctuation", f"one of {STANDARDIZE}: punctuation kept as tokens, or dropped")

    def validate(self):
        validate_text(self)


def validate_text(config):
    """Refuse tokenization settings that cannot work (any text recipe's config)."""
    if config.vocabulary_size < 2:
        raise ConfigError(
            f"vocabulary_size must be >= 2 (padding and out-of-vocabulary tokens), got "
            f"{config.vocabulary_size}")
    if getattr(config, "ngrams", 1) < 1:
        raise ConfigError(f"ngrams must be >= 1, got {config.ngrams}")
    if hasattr(config, "sequence_length") and config.sequence_length < 0:
        raise ConfigError(
            f"sequence_length must be >= 1, or 0 for the data's own, got "
            f"{config.sequence_length}")
    if getattr(config, "standardize", STANDARDIZE[0]) not in STANDARDIZE:
        raise ConfigError(
            f"standardize must be one of {STANDARDIZE}, got {config.standardize!r}")


def dataset_facts(train):
    """Class names of `train.dataset`, a TFDS text classification dataset or own texts
    (a folder of class folders of .txt files, or a table); refuse anything else."""
    name = train.dataset
    if files.is_path(name):
        found = data.source(name, train.validation_percent, **data.own_options(train))
        if found.kind != "text":
            raise ConfigError(f"{name}: holds {found.kind}s; the text recipes need .txt files "
                              "in class folders, or a .csv, .tsv or .jsonl file")
        data.require_classes(found)
        return found.class_names
    info = data.info(name)
    if not info.supervised_keys:
        raise ConfigError(f"{name}: has no (input, label) supervised keys")
    text_key, label_key = info.supervised_keys
    feature = info.features[text_key]
    if not isinstance(feature, tfds.features.Text):
        raise ConfigError(
            f"{name}: the text recipes need a text dataset; its {text_key!r} feature is "
            f"{feature}")
    return info.features[label_key].names


def make_vectorizer(train_texts, vocabulary_size, sequence_length=None, ngrams=None,
                    standardize=STANDARDIZE[0]):
    """A TextVectorization adapted on `train_texts` (a dataset of strings).

    It outputs token ids padded or cut to `sequence_length` (the sequence
    models; 0 = `length_from_data`) or, given `ngrams`, one tf-idf vector over
    the `vocabulary_size` most frequent 1- to n-grams (the bag-of-n-grams
    baseline).
    """
    options = dict(max_tokens=vocabulary_size, name="vectorizer", standardize={
        "strip_punctuation": "lower_and_strip_punctuation",
        "split_punctuation": split_punctuation}[standardize])
    batches = train_texts.batch(1024)
    if ngrams or sequence_length:
        shape = ({"ngrams": ngrams, "output_mode": "tf_idf"} if ngrams
                 else {"output_sequence_length": sequence_length})
        vectorizer = keras.layers.TextVectorization(**shape, **options)
        vectorizer.adapt(batches)
        return vectorizer
    ragged = keras.layers.TextVectorization(ragged=True, **options)
    ragged.adapt(batches)
    lengths = np.concatenate([ragged(b).row_lengths().numpy() for b in batches])
    return keras.layers.TextVectorization(
        output_sequence_length=length_from_data(lengths),
        vocabulary=ragged.get_vocabulary(), **options)


def length_from_data(lengths):
    """A sequence length that covers `LENGTH_PERCENTILE`% of texts of these token counts."""
    longest = np.percentile(lengths, LENGTH_PERCENTILE, method="inverted_cdf")  # a real count
    covering = int(np.ceil(longest / 8)) * 8
    return int(np.clip(covering, *LENGTH_BOUNDS))


def sequence_length(vectorizer):
    """Token ids per text that a sequence vectorizer outputs."""
    return int(vectorizer(tf.constant([""])).shape[1])


def datasets(train, vectorizer_config):
    """(train, validation, test) of token ids, the vectorizer, and the train size."""
    raw_train = data.training_examples(train)
    vectorizer = make_vectorizer(raw_train.map(lambda text, label: text),
                                 vectorizer_config.vocabulary_size,
                                 getattr(vectorizer_config, "sequence_length", None),
                                 getattr(vectorizer_config, "ngrams", None),
                                 getattr(vectorizer_config, "standardize", STANDARDIZE[0]))
    train_ds, val_ds, test_ds, n_train = data.splits(
        train, map_batch=lambda texts, labels: (vectorizer(texts), labels))
    return train_ds, val_ds, test_ds, vectorizer, n_train


def end_to_end(model, vectorizer, name=None):
    """Raw strings -> probabilities: the vectorizer in front of the trained model."""
    text = keras.Input((), dtype="string", name="text")
    return keras.Model(text, model(vectorizer(text)), name=name)


def export_text_model(recipe, model, vectorizer, class_names, train, trained=None,
                      serving_copy=None, litert_batch=None):
    """Export strings -> probabilities, checked on real and awkward inputs.

    `model` is what gets served; `trained` (default: `model`) is the model as
    trained, whose own predictions the reloaded export must match.

    ONNX Runtime and LiteRT have none of TextVectorization's string ops
    (tf2onnx: StaticRegexReplace and StringSplitV2 unsupported; the LiteRT
    converter: not built-in ops), so those files take token ids,
    int64 `[batch, sequence_length]`, with `vocabulary.txt` beside them (line
    n is token id n). `serving_copy(model)` rebuilds the model for serving
    (the RNN recipe's drops cuDNN-only kernels); `litert_batch` fixes LiteRT's
    batch size where a recurrent loop needs static shapes.
    """
    serving_model = end_to_end(model, vectorizer, name=f"{recipe}_serving")
    def serve(text):
        probabilities = serving_model(text, training=False)
        label = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "label": label,
                "label_name": tf.gather(tf.constant(class_names), label)}

    samples = [t.decode("utf-8") for t, _ in
               data.load_split(train, "test").take(27).as_numpy_iterator()]
    texts = np.array(samples + EDGE_CASES)
    # token ids, or tf-idf for n-grams, or a dict of both (finetune_text --ngrams)
    vectorized = keras.tree.map_structure(np.asarray, vectorizer(tf.constant(texts)))
    trained = trained or model
    predictions = trained(vectorized, training=False).numpy()

    def portable():
        copy = export.float32_copy(trained)
        copy = serving_copy(copy) if serving_copy else copy

        def serve_ids(token_ids):
            probabilities = copy(token_ids, training=False)
            return {"probabilities": probabilities, "label": tf.argmax(probabilities, axis=-1)}

        return export.Portable(
            copy, {"token_ids": tf.TensorSpec((None, vectorized.shape[1]), tf.int64)}, serve_ids,
            {"token_ids": vectorized}, litert_batch=litert_batch,
            files={"vocabulary.txt": vectorizer.get_vocabulary(), "labels.txt": class_names})

    return export.export_savedmodel(
        serving_model, recipe, {"text": tf.TensorSpec((None,), tf.string)}, serve,
        root=train.export_dir, sample={"text": texts},
        predictions={"probabilities": predictions},
        formats=train.export_format, portable=portable)


#: The text recipes' training defaults. Counted in steps, not passes, so they
#: fit a corpus of 5,000 texts as well as one of 50,000: an epoch is 100
#: optimizer steps, the budget 20 of them (2,000 steps of 128 texts), early
#: stopping waits 4 (400 steps), and the learning rate follows a cosine over
#: the budget after a 100-step warm-up (benchmarks/text_defaults.py measured
#: each change on three corpora). Early stopping watches accuracy, not loss:
#: on small corpora the loss turns up (overconfidence) well before the
#: accuracy stops improving.
TRAIN_DEFAULTS = dict(dataset="rt_snippets", steps_per_epoch=100, epochs=20, patience=4,
                      schedule="cosine", monitor="val_accuracy")


class TextRecipe(recipe.Recipe):
    """A text recipe from its config and `build_model`: the vectorizer adapted on the
    training split, a softmax over the dataset's classes, a raw-string export.

    `serving_copy(model)` rebuilds the trained model for serving (the RNN
    recipe's drops cuDNN-only kernels); `litert_batch`: see `export_text_model`.
    """

    def __init__(self, name, doc, config_class, build_model, train_defaults=None,
                 serving_copy=None, litert_batch=None):
        self.name, self.doc, self.Config, self.build_model = name, doc, config_class, build_model
        self.train_defaults = {**TRAIN_DEFAULTS, **(train_defaults or {})}
        self.presets = {"default": {"doc": "the defaults above"}}
        self.serving_copy, self.litert_batch = serving_copy, litert_batch

    def facts(self, model_config, train):
        model_config.validate()
        if getattr(model_config, "ngrams", None) and len(
                export.parse_formats(train.export_format)) > 1:
            raise ConfigError(
                f"{self.name} exports a SavedModel only: an ONNX or LiteRT file would leave the "
                "client to compute tf-idf features itself")
        return dataset_facts(train)

    def data(self, class_names, model_config, train):
        train_ds, val_ds, test_ds, vectorizer, n_train = datasets(train, model_config)
        resolved = {"vocabulary_size": vectorizer.vocabulary_size()}
        if hasattr(model_config, "sequence_length"):
            resolved["sequence_length"] = sequence_length(vectorizer)
        return recipe.Data(train_ds, val_ds, test_ds, n_train, resolved, vectorizer)

    def build(self, class_names, splits, model_config):
        hparams = {k: v for k, v in dataclasses.asdict(model_config).items() if k != "standardize"}
        return self.build_model(num_classes=len(class_names), **{**hparams, **splits.resolved})

    def export(self, model, class_names, splits, train):
        serving_model = self.serving_copy(model) if self.serving_copy else model
        return export_text_model(self.name, serving_model, splits.extra, class_names, train,
                                 trained=model, serving_copy=self.serving_copy,
                                 litert_batch=self.litert_batch)
