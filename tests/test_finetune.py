"""Fine-tuning a pretrained encoder: its weights arrive, texts become its ids, and the
export serves raw strings."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import data, text, wordpiece
from recipes import finetune_text, pretrain_text
from tests.test_pretrain import small_vocabulary

TEXTS = ["a wry, wistful film that never quite decides what it wants to be.",
         "the best picture of the year", "", "dull"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny encoder (random weights: what is checked is that they arrive) exported as
    pretrain_text exports one, in `<root>/pretrain_text/1`."""
    texts = [t.decode() for t, _ in data.load("rt_snippets", "train").take(500).as_numpy_iterator()]
    tokenizer = wordpiece.Tokenizer(small_vocabulary(texts))
    keras.utils.set_random_seed(0)
    encoder = pretrain_text.build_encoder(len(tokenizer.vocabulary), 32, embedding_dim=16,
                                          num_heads=2, intermediate_dim=32, num_blocks=1,
                                          dropout=0.1)
    root = tmp_path_factory.mktemp("encoders")
    return pretrain_text.export_encoder(encoder, tokenizer, str(root)), encoder, tokenizer


def _model(encoder_dir, init, sequence_length=24):
    path, _, _ = encoder_dir
    _, _, model_config, train = finetune_text.parse(["--pretrained", path, "--init", init,
                                                     "--sequence-length", str(sequence_length)])
    facts = finetune_text.RECIPE.facts(model_config, train)
    return facts, finetune_text.build_model(facts.encoder, 2, sequence_length, init=init)


def test_the_encoders_weights_arrive_and_scratch_starts_afresh(encoder_dir):
    _, encoder, tokenizer = encoder_dir
    short = tf.constant(TEXTS[1:])  # all within 24 tokens, so cutting at 24 changes nothing
    for init in finetune_text.INITS:
        facts, model = _model(encoder_dir, init)
        body = model.get_layer("encoder")
        assert body.input_shape == (None, 24)  # fewer positions than the encoder's 32
        same = [np.array_equal(a, b) for a, b in zip(body.get_weights(), encoder.get_weights())]
        assert len(same) == len(encoder.get_weights())
        if init == "pretrained":
            assert all(same)
            np.testing.assert_allclose(body(tokenizer(short, 24)),
                                       encoder(tokenizer(short, 32))[:, :24], atol=2e-2)
        else:  # the token embeddings and every kernel are drawn anew
            kernels = [s for w, s in zip(body.weights, same) if w.name in ("embeddings", "kernel")]
            assert kernels and not any(kernels)


def test_the_vectorizer_is_the_tokenizer_as_a_layer(encoder_dir):
    _, _, tokenizer = encoder_dir
    vectorizer = wordpiece.Vectorizer(tokenizer, 12)
    texts = keras.Input((), dtype="string")
    assert vectorizer(texts).shape == (None, 12)
    np.testing.assert_array_equal(vectorizer(tf.constant(TEXTS)), tokenizer(tf.constant(TEXTS), 12))
    assert vectorizer.get_vocabulary() == tokenizer.vocabulary
    assert vectorizer.vocabulary_size() == len(tokenizer.vocabulary)


def test_the_newest_version_is_used_and_a_missing_encoder_is_refused(encoder_dir, tmp_path,
                                                                     capsys):
    path, encoder, tokenizer = encoder_dir
    root = path.rsplit("/", 1)[0]
    assert finetune_text.encoder_version(root) == path
    for argv, message in [(["--pretrained", str(tmp_path / "none")], "run `python -m recipes.pre"),
                          (["--pretrained", str(tmp_path)], "no encoder.keras"),
                          (["--pretrained", path, "--init", "frozen"], "init must be one of"),
                          (["--pretrained", path, "--sequence-length", "33"], "encoder's 32"),
                          (["--pretrained", path, "--dataset", "fashion_mnist"], "need a text dataset"),
                          (["--pretrained", path, "--export-format", "saved_model,onnx"], "Erfc")]:
        with pytest.raises(SystemExit) as exit_info:
            finetune_text.main([*argv, "--runs-dir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_fine_tuning_exports_a_raw_string_server(encoder_dir, tmp_path, capsys):
    """On a user's own CSV: the export takes strings (the tokenizer is in the graph)
    and answers as the trained model does on the tokenizer's ids, in a fresh
    interpreter (the export's own check); here it is asked once more."""
    path, _, tokenizer = encoder_dir
    names = data.info("rt_snippets").features["label"].names
    rows = [(t.decode(), names[label]) for t, label in
            data.load("rt_snippets", "train").take(300).as_numpy_iterator()]
    table = tmp_path / "reviews.csv"
    table.write_text("text,label\n" + "".join(
        f"\"{t.replace(chr(34), chr(39))}\",{label}\n" for t, label in rows), encoding="utf-8")
    finetune_text.main(["--pretrained", path, "--dataset", str(table), "--epochs", "1",
                        "--steps-per-epoch", "3", "--runs-dir", str(tmp_path / "runs"),
                        "--export-dir", str(tmp_path / "models")])
    assert "verified in a fresh interpreter" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs" / "finetune_text").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and 3 <= metrics["sequence_length"] <= 32
    from core import export

    served = export.serve_in_fresh_process(metrics["export"], {"text": np.array(TEXTS)})
    trained = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    expected = trained(tokenizer(tf.constant(TEXTS), metrics["sequence_length"])).numpy()
    np.testing.assert_allclose(served["probabilities"], expected, atol=2e-2)
    assert set(served["label_name"]) <= set(names)


@pytest.mark.slow
@pytest.mark.parametrize("ngrams,train_blocks", [(0, 0), (2, 0), (2, 1)])
def test_a_frozen_encoder_trains_the_head_alone_and_serves_the_chain(encoder_dir, tmp_path,
                                                                     ngrams, train_blocks):
    """--freeze: the head learns from each text's vector (made once, at the text's own
    length), and with --ngrams from its tf-idf too; with --train-blocks the head
    holds the encoder's top blocks and learns from their inputs. The export is
    the encoder as loaded up to the head, then the head, and answers as the head
    does on those features."""
    path, encoder, tokenizer = encoder_dir
    table = tmp_path / "reviews.csv"
    rows = [(t.decode(), label) for t, label in
            data.load("rt_snippets", "train").take(200).as_numpy_iterator()]
    table.write_text("text,label\n" + "".join(
        f"\"{t.replace(chr(34), chr(39))}\",{label}\n" for t, label in rows), encoding="utf-8")
    _, _, model_config, train = finetune_text.parse([
        "--pretrained", path, "--freeze", "--ngrams", str(ngrams), "--train-blocks", str(train_blocks),
        "--dataset", str(table),
        "--epochs", "2", "--steps-per-epoch", "3", "--runs-dir", str(tmp_path / "runs"),
        "--export-dir", str(tmp_path / "models")])
    metrics = finetune_text.run(model_config, train)
    head = metrics["model"]
    vectors = finetune_text.features(encoder, tokenizer, metrics["sequence_length"],
                                     train_blocks)
    inputs = np.stack([vectors(tf.constant(t), 0)[0] for t in TEXTS])
    assert 0 <= metrics["test_accuracy"] <= 1
    assert len(finetune_text.blocks_of(head)) == train_blocks
    for trained, loaded in zip(finetune_text.blocks_of(head),
                               finetune_text.blocks_of(encoder)[-train_blocks:]):
        assert not np.allclose(trained.get_weights()[0], loaded.get_weights()[0])  # trained
    if ngrams:
        tf_idf = text.make_vectorizer(data.training_examples(train).map(lambda t, label: t),
                                      metrics["ngram_features"], ngrams=2)
        inputs = {"text_vectors": inputs, "tf_idf": tf_idf(tf.constant(TEXTS)).numpy()}
    expected = head(inputs, training=False)
    from core import export

    served = export.serve_in_fresh_process(metrics["export"], {"text": np.array(TEXTS)})
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-4)


def test_freezing_is_refused_where_it_means_nothing(encoder_dir, capsys):
    path, _, _ = encoder_dir
    for argv, message in [(["--freeze", "--init", "scratch"], "none to keep"),
                          (["--ngrams", "2"], "with --freeze"),
                          (["--train-blocks", "1"], "with --freeze"),
                          (["--freeze", "--train-blocks", "2"], "at most the encoder's 1 blocks")]:
        with pytest.raises(SystemExit):
            finetune_text.main(["--pretrained", path, *argv])
        assert message in capsys.readouterr().err


def test_the_beside_ngrams_preset_is_what_was_benchmarked():
    """The flags text_corpora's row ran with on 2026-12-07, before the preset named them."""
    ran = finetune_text.parse([
        "--pretrained", "saved_models/all_minilm_l6_v2", "--freeze", "--ngrams", "2",
        "--optimizer", "sgd", "--learning-rate", "30", "--epochs", "60", "--patience", "60",
        "--batch-size", "128"])[2:]
    preset = finetune_text.parse(["--pretrained", "saved_models/all_minilm_l6_v2",
                                  "--preset", "beside_ngrams"])[2:]
    assert preset == ran


def test_the_top_blocks_preset_is_what_was_screened():
    """The flags text_corpora's row ran with on 2026-12-07, as screened on rt_snippets'
    validation split (docs/recipes.md)."""
    ran = finetune_text.parse([
        "--pretrained", "saved_models/all_minilm_l6_v2", "--freeze", "--train-blocks", "2",
        "--learning-rate", "1e-4", "--epochs", "9", "--patience", "9"])[2:]
    preset = finetune_text.parse(["--pretrained", "saved_models/all_minilm_l6_v2",
                                  "--preset", "top_blocks"])[2:]
    assert preset == ran
