"""WordPiece tokens, BERT's masking, and the pretraining recipe."""

import collections
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import corpus, wordpiece
from recipes import pretrain_text

TEXTS = ["The quick brown fox jumps over the lazy dog, again and again.",
         "Oil prices rose sharply on Tuesday after the meeting in Vienna.",
         "A wry, wistful film that never quite decides what it wants to be."]


def small_vocabulary(texts, words=400):
    """A WordPiece vocabulary in seconds: every character, alone and as a
    continuation, and the most frequent words (the learner takes minutes)."""
    counts = collections.Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    chars = sorted({c for w in counts for c in w})
    whole = [w for w, _ in counts.most_common(words) if len(w) > 1]
    return wordpiece.RESERVED + chars + [f"##{c}" for c in chars] + whole


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece.Tokenizer(small_vocabulary(TEXTS * 3))


def test_ids_are_framed_cut_and_padded(tokenizer):
    ids = tokenizer(tf.constant([TEXTS[0], "", TEXTS[1] * 20]), 16).numpy()
    assert ids.shape == (3, 16)
    assert list(ids[:, 0]) == [wordpiece.CLS] * 3
    length = int((ids[0] != wordpiece.PAD).sum())
    assert ids[0, length - 1] == wordpiece.SEP and (ids[0, length:] == wordpiece.PAD).all()
    assert list(ids[1, :3]) == [wordpiece.CLS, wordpiece.SEP, wordpiece.PAD]
    assert ids[2, -1] == wordpiece.SEP and wordpiece.PAD not in ids[2]  # cut, then framed
    words = [tokenizer.vocabulary[i] for i in ids[0, 1:length - 1]]
    assert words[:4] == ["the", "quick", "brown", "fox"] and wordpiece.UNK not in ids[0]


def test_masking_is_berts_and_new_at_every_read(tokenizer):
    texts = tf.constant(TEXTS * 200)
    ragged = tokenizer.ragged(texts, 32)
    original = ragged.to_tensor(wordpiece.PAD, shape=[None, 32]).numpy()
    inputs, targets, weights = wordpiece.masked(ragged, len(tokenizer.vocabulary), 4, 32)
    ids, positions = inputs["token_ids"].numpy(), inputs["positions"].numpy()
    targets, weights = targets.numpy(), weights.numpy()
    assert ids.shape == original.shape and positions.shape == targets.shape == (600, 4)
    real = weights > 0
    lengths = (original != wordpiece.PAD).sum(1) - 2  # tokens that may be chosen
    # 15% of each text's tokens rounded up, at most 4: 2 or 3 of the 12-17 here
    assert (real.sum(1) == np.minimum(4, np.ceil(0.15 * lengths))).all()
    chosen = np.take_along_axis(original, positions, 1)[real]
    assert (chosen == targets[real]).all()  # the targets are the original tokens
    assert not np.isin(chosen, [wordpiece.PAD, wordpiece.CLS, wordpiece.SEP]).any()
    now = np.take_along_axis(ids, positions, 1)[real]
    assert abs((now == wordpiece.MASK).mean() - 0.8) < 0.05
    assert abs((now == chosen).mean() - 0.1) < 0.05  # kept as they were (or drawn again)
    untouched = np.ones_like(ids, bool)
    np.put_along_axis(untouched, np.where(real, positions, 0), ~real, 1)
    untouched[:, 0] = True
    assert (ids[untouched] == original[untouched]).all()  # nothing else changed
    again = wordpiece.masked(ragged, len(tokenizer.vocabulary), 4, 32)[0]["positions"]
    assert (again.numpy() != positions).any()  # dynamic: new masks each time


@pytest.mark.slow
def test_pretraining_exports_an_encoder_that_reloads_in_safe_mode(tmp_path, monkeypatch):
    texts = [t.decode() for t in corpus.load("train").take(500).as_numpy_iterator()]
    vocabulary = small_vocabulary(texts)
    monkeypatch.setattr(wordpiece, "vocabulary", lambda size, data_dir=None: vocabulary)
    pretrain_text.main(["--epochs", "1", "--steps-per-epoch", "3", "--limit", "256",
                        "--batch-size", "16", "--embedding-dim", "16", "--num-heads", "2",
                        "--intermediate-dim", "32", "--runs-dir", str(tmp_path / "runs"),
                        "--export-dir", str(tmp_path / "models")])
    (run_dir,) = (tmp_path / "runs" / "pretrain_text").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["test_loss"])
    assert metrics["vocabulary_size"] == len(vocabulary)
    encoder, tokenizer = pretrain_text.load_encoder(metrics["export"])
    assert tokenizer.vocabulary == vocabulary
    trained = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    ids = tokenizer(tf.constant(texts[:4]), 128)
    np.testing.assert_allclose(encoder(ids), trained.get_layer("encoder")(ids), atol=1e-2)


def test_pretraining_refuses_another_dataset_and_bad_settings(tmp_path, capsys):
    for argv, message in [(["--dataset", "rt_snippets"], "pretrain_text reads pretraining_text"),
                          (["--embedding-dim", "30"], "must be a multiple of num_heads"),
                          (["--sequence-length", "2"], "sequence_length"),
                          (["--export-format", "onnx"], "--export-format does not apply")]:
        with pytest.raises(SystemExit) as exit_info:
            pretrain_text.main([*argv, "--runs-dir", str(tmp_path / "runs")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(Exception, match="no encoder.keras"):
        pretrain_text.load_encoder(str(tmp_path))


# --- a user's own unlabeled text ------------------------------------------------------


def _own_folder(root, documents):
    """`documents` (lists of paragraphs) as .txt files, some in a nested folder."""
    for i, paragraphs in enumerate(documents):
        folder = root / ("nested" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return root


def _rt_documents(n, per_document=30):
    from core import data

    texts = [t.decode() for t, _ in data.load("rt_snippets", "train").take(
        n * per_document).as_numpy_iterator()]
    return [texts[i:i + per_document] for i in range(0, len(texts), per_document)]


def test_own_text_is_cut_deduplicated_and_split_as_the_corpus_is(tmp_path):
    documents = _rt_documents(40)
    folder = _own_folder(tmp_path / "texts", documents + [documents[3]])  # one duplicate
    (tmp_path / "texts" / "notes.md").write_text("not read")
    corpus.own.cache_clear()
    splits, stats = corpus.own(str(folder))
    assert stats["documents"] == 41 and stats["duplicate_documents"] == 1
    pieces = [p for texts in splits.values() for p in texts]
    assert len(pieces) == len(set(pieces)) == stats["pieces"]
    assert all(corpus.MIN_PIECE_WORDS <= len(p.split()) <= corpus.PIECE_WORDS for p in pieces)
    assert all(corpus.split_of(p) == split for split, texts in splits.items() for p in texts)
    words = sum(len(" ".join(d).split()) for d in documents)
    assert stats["words"] + stats["short_pieces"] * corpus.MIN_PIECE_WORDS >= 0.95 * words
    single = tmp_path / "book.txt"
    single.write_text("\n\n".join(p for d in documents for p in d), encoding="utf-8")
    assert corpus.own(str(single))[1]["documents"] == 1


def test_own_text_that_cannot_be_used_is_refused_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "a.txt").write_bytes("café crème".encode("latin-1"))
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a.txt").write_text("A few words of text, too few to pretrain on. " * 5)
    (tmp_path / "table.csv").write_text("text\nhello\n")
    for name, message in [("nope", "no such file or folder"), ("empty", "no .txt file in it"),
                          ("latin1", "not UTF-8"), ("small", "needs a few hundred"),
                          ("table.csv", "a .txt file or a folder of them")]:
        corpus.own.cache_clear()
        with pytest.raises(SystemExit) as exit_info:
            pretrain_text.main(["--dataset", str(tmp_path / name), "--runs-dir",
                                str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err, name
    assert not (tmp_path / "runs").exists()


def test_own_vocabulary_is_learned_once_and_kept_by_digest(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    texts = [" ".join(d) for d in _rt_documents(2, per_document=10)]
    vocabulary = wordpiece.own_vocabulary(200, texts, "texts")
    assert vocabulary[:len(wordpiece.RESERVED)] == wordpiece.RESERVED and len(vocabulary) > 50
    (kept,) = (tmp_path / "own_wordpiece").iterdir()

    def learn(*args, **kwargs):
        raise AssertionError("learned again")

    monkeypatch.setattr(bert_vocab_from_dataset, "bert_vocab_from_dataset", learn)
    assert wordpiece.own_vocabulary(200, texts, "texts") == vocabulary
    with pytest.raises(AssertionError, match="learned again"):  # other texts, another file
        wordpiece.own_vocabulary(200, texts[:-1], "texts")
    assert kept.name.endswith("-200.txt")


@pytest.mark.slow
def test_pretraining_on_own_text_records_it_and_exports_an_encoder(tmp_path, monkeypatch):
    folder = _own_folder(tmp_path / "texts", _rt_documents(100))
    corpus.own.cache_clear()
    texts = corpus.own(str(folder))[0]["train"]
    vocabulary = small_vocabulary(texts)
    monkeypatch.setattr(wordpiece, "own_vocabulary", lambda size, t, name: vocabulary)
    pretrain_text.main(["--dataset", str(folder), "--epochs", "1", "--steps-per-epoch", "2",
                        "--batch-size", "8", "--embedding-dim", "16", "--num-heads", "2",
                        "--intermediate-dim", "32", "--runs-dir", str(tmp_path / "runs"),
                        "--export-dir", str(tmp_path / "models")])
    (run_dir,) = (tmp_path / "runs" / "pretrain_text").iterdir()
    record = json.loads((run_dir / "config.json").read_text())["dataset"]
    assert record["kind"] == "unlabeled text" and record["counts"]["train"] == len(texts)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    encoder, tokenizer = pretrain_text.load_encoder(metrics["export"])
    assert tokenizer.vocabulary == vocabulary
