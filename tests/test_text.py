"""Text recipes: model shapes, bad input, train-only vocabulary, raw-string serving."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import config, data, text
from recipes import cnn_text, ngram_text, rnn_text, transformer_text

IDS = np.random.default_rng(0).integers(0, 50, (3, 12))
IDS[:, 8:] = 0  # padding


@pytest.mark.parametrize("cell", rnn_text.CELLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_rnn_builds_binary_and_multiclass(cell, bidirectional):
    for num_classes in (2, 4):
        model = rnn_text.build_model(50, 12, num_classes, cell=cell, bidirectional=bidirectional,
                                     embedding_dim=8, units=4, num_layers=2)
        probabilities = model(IDS)
        assert probabilities.shape == (3, num_classes)
        np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-5)


def test_simple_rnn_uses_the_activation_asked_for():
    model = rnn_text.build_model(50, 12, 2, cell="simple", activation="relu", bidirectional=False,
                                 embedding_dim=8, units=4)
    (rnn,) = [layer for layer in model.layers if isinstance(layer, keras.layers.SimpleRNN)]
    assert rnn.activation is keras.activations.relu and model.name == "simple_rnn"


def test_ngram_baseline_sees_unigrams_and_bigrams_of_the_training_split():
    train = config.TrainConfig(dataset="rt_snippets", limit=300)
    *_, vectorizer, _ = text.datasets(train, ngram_text.ModelConfig(vocabulary_size=2_000))
    vocabulary = vectorizer.get_vocabulary()
    assert len(vocabulary) == 2_000 and vocabulary[0] == "[UNK]"
    assert any(" " in term for term in vocabulary) and "the" in vocabulary
    features = vectorizer(np.array(["the film the film", ""])).numpy()
    assert features.shape == (2, 2_000) and features[1].sum() == 0  # tf-idf, not ids
    assert features[0, vocabulary.index("the film")] > 0
    model = ngram_text.build_model(2_000, 2)
    assert model(features).shape == (2, 2) and len(model.layers) == 5
    # each text's vector is scaled to unit length: its length does not count, its mix does
    np.testing.assert_allclose(model(features[:1] * 3), model(features[:1]), rtol=1e-5)
    assert np.isfinite(model(features[1:])).all()  # an empty text stays defined


def test_transformer_builds_binary_and_multiclass():
    for num_classes in (2, 4):
        model = transformer_text.build_model(50, 12, num_classes, embedding_dim=8, num_heads=2,
                                             intermediate_dim=16, num_blocks=2)
        assert model(IDS).shape == (3, num_classes)


def test_cnn_has_a_branch_per_width_and_handles_texts_shorter_than_its_kernels():
    for num_classes, widths in ((2, (3, 4, 5)), (6, (2,))):
        model = cnn_text.build_model(50, 4, num_classes, embedding_dim=8, kernel_sizes=widths,
                                     filters=5)
        convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
        assert sorted(c.kernel_size[0] for c in convolutions) == sorted(widths)
        probabilities = model(IDS[:, :4])  # 4 tokens, widest kernel 5
        assert probabilities.shape == (3, num_classes)
        np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-5)


def test_length_from_data_covers_most_texts_in_multiples_of_eight():
    assert text.length_from_data([10] * 95 + [500] * 5) == 16  # 95th percentile 10 -> 16
    assert text.length_from_data([1, 2, 3]) == 8                # at least 8
    assert text.length_from_data([5_000] * 10) == 256           # at most 256


def test_sequence_length_zero_comes_from_the_training_texts():
    texts = tf.data.Dataset.from_tensor_slices(["a b c"] * 19 + ["a " * 100])
    vectorizer = text.make_vectorizer(texts, 50, sequence_length=0)
    assert text.sequence_length(vectorizer) == 8
    vocabulary = vectorizer.get_vocabulary()
    assert vocabulary[:3] == ["", "[UNK]", "a"]  # padding, out-of-vocabulary, most frequent
    np.testing.assert_array_equal(vectorizer(tf.constant(["c b zzz"])).numpy()[0, :4],
                                  [vocabulary.index("c"), vocabulary.index("b"), 1, 0])


def test_split_punctuation_keeps_marks_as_tokens_by_default():
    texts = tf.data.Dataset.from_tensor_slices(["Why? Who!", "why"])
    split = text.make_vectorizer(texts, 50, 6)
    strip = text.make_vectorizer(texts, 50, 6, standardize="strip_punctuation")
    assert text.TextConfig().standardize == "split_punctuation"
    assert {"why", "?", "!"} <= set(split.get_vocabulary())
    assert "?" not in strip.get_vocabulary()
    assert (split(tf.constant(["why?"])).numpy() != split(tf.constant(["why"])).numpy()).any()


def test_each_text_recipe_has_its_own_learning_rate_default_and_the_flag_wins():
    rates = {recipe.__name__: recipe.parse([])[3].learning_rate
             for recipe in (rnn_text, cnn_text, transformer_text, ngram_text)}
    assert rates == {"recipes.rnn_text": 3e-3, "recipes.transformer_text": 3e-3,
                     "recipes.cnn_text": 1e-3, "recipes.ngram_text": 30.0}
    optimizers = {recipe.__name__: recipe.parse([])[3].optimizer
                  for recipe in (rnn_text, cnn_text, transformer_text, ngram_text)}
    assert optimizers == {"recipes.rnn_text": "adam", "recipes.transformer_text": "adam",
                          "recipes.cnn_text": "adam", "recipes.ngram_text": "sgd"}
    assert ngram_text.parse(["--optimizer", "adam"])[3].optimizer == "adam"
    assert rnn_text.parse(["--learning-rate", "0.001"])[3].learning_rate == 1e-3
    # The rest of the shared defaults still apply under the recipe's own.
    assert rnn_text.parse([])[3].steps_per_epoch == text.TRAIN_DEFAULTS["steps_per_epoch"]


def test_rnn_serving_copy_has_no_cudnn_kernels_and_same_outputs():
    model = rnn_text.build_model(50, 12, 2, cell="lstm", embedding_dim=8, units=4, num_layers=2)
    copy = rnn_text.portable_copy(model)
    recurrent = [rnn for layer in copy.layers if isinstance(layer, keras.layers.Bidirectional)
                 for rnn in (layer.forward_layer, layer.backward_layer)]
    assert len(recurrent) == 4 and all(rnn.use_cudnn is False for rnn in recurrent)
    assert all(rnn.use_cudnn == "auto" for layer in model.layers
               if isinstance(layer, keras.layers.Bidirectional)
               for rnn in (layer.forward_layer, layer.backward_layer))
    np.testing.assert_allclose(copy(IDS), model(IDS), rtol=1e-6)


@pytest.mark.parametrize("recipe, flags, message", [
    (rnn_text, ["--cell", "transformer"], "cell must be one of"),
    (rnn_text, ["--cell", "simple", "--activation", "sigmoid"], "activation must be one of"),
    (ngram_text, ["--ngrams", "0"], "ngrams must be >= 1"),
    (ngram_text, ["--export-format", "onnx"], "exports a SavedModel only"),
    (rnn_text, ["--vocabulary-size", "1"], "vocabulary_size must be >= 2"),
    (rnn_text, ["--sequence-length", "-1"], "sequence_length must be >= 1"),
    (rnn_text, ["--standardize", "none"], "standardize must be one of"),
    (cnn_text, ["--kernel-sizes", "3,0"], "kernel_sizes must be"),
    (cnn_text, ["--dropout", "1"], "dropout must be in"),
    (rnn_text, ["--steps-per-epoch", "-1"], "steps_per_epoch must be >= 0"),
    (rnn_text, ["--dataset", "fashion_mnist"], "need a text dataset"),
    (transformer_text, ["--num-heads", "3"], "multiple of num_heads"),
    (transformer_text, ["--dataset", "no_such_dataset"], "Unknown dataset"),
])
def test_bad_input_refused_before_training(recipe, flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.main([*flags, "--runs-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_vocabulary_comes_from_the_training_slice_only():
    train = config.TrainConfig(dataset="rt_snippets", limit=200)
    *_, vectorizer, n_train = text.datasets(train, text.TextConfig(vocabulary_size=500))
    assert n_train == 200
    first_train = data.load("rt_snippets", "train").take(200).map(lambda t, label: t)
    reference = text.make_vectorizer(first_train, 500, 64)
    assert vectorizer.get_vocabulary() == reference.get_vocabulary()
    validation = data.load("rt_snippets", "validation").take(200).map(lambda t, label: t)
    assert text.make_vectorizer(validation, 500, 64).get_vocabulary() != reference.get_vocabulary()


def _awkward_batch(size):
    pool = text.EDGE_CASES + ["A gripping, beautifully acted drama.", "Dull and far too long."]
    return np.array([pool[i % len(pool)] for i in range(size)])


@pytest.mark.parametrize("recipe, flags", [
    (rnn_text, ["--cell", "gru", "--units", "8", "--embedding-dim", "8"]),
    (rnn_text, ["--cell", "simple", "--activation", "relu", "--units", "8",
                "--embedding-dim", "8"]),
    (ngram_text, []),
    (cnn_text, ["--embedding-dim", "8", "--filters", "4", "--standardize", "strip_punctuation"]),
    (transformer_text, ["--embedding-dim", "8", "--num-heads", "2", "--intermediate-dim", "16",
                        "--num-blocks", "1"]),
])
@pytest.mark.slow
def test_tiny_run_exports_a_model_that_takes_raw_strings(recipe, flags, tmp_path, capsys):
    recipe.main([*flags, "--epochs", "1", "--steps-per-epoch", "3", "--limit", "200",
                 "--batch-size", "64",
                 "--vocabulary-size", "300", "--runs-dir", str(tmp_path / "runs"),
                 "--export-dir", str(tmp_path / "saved_models")])
    # The export reloaded itself in an interpreter without our code, on the edge
    # cases; the batch shapes below are served here, which saves a TensorFlow start each.
    assert "(verified in a fresh interpreter)" in capsys.readouterr().out
    (name,) = os.listdir(tmp_path / "saved_models")
    serve = tf.saved_model.load(str(tmp_path / "saved_models" / name / "1")).signatures[
        "serving_default"]
    for batch in (np.array([""]), _awkward_batch(1_000)):
        served = {key: value.numpy() for key, value in serve(text=tf.constant(batch)).items()}
        assert served["probabilities"].shape == (len(batch), 2)
        assert np.isfinite(served["probabilities"]).all()
        np.testing.assert_allclose(served["probabilities"].sum(axis=-1), 1.0, rtol=1e-5)
        assert {n.decode() for n in served["label_name"]} <= {"rotten", "fresh"}
        assert served["label"].shape == (len(batch),)
    _refuses_bad_requests(serve)


def _refuses_bad_requests(serve):
    """What a client of any text export gets for an empty batch and a malformed one."""
    empty = serve(text=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 2) and empty["label_name"].shape == (0,)
    for bad in (tf.constant("one review"), tf.constant([["a"], ["b"]])):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape("text must be string [batch]")):
            serve(text=bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor"):
        serve(text=tf.constant([1, 2]))
