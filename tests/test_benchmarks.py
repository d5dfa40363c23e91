"""Benchmarks pick the runs they report honestly."""

import json

from benchmarks import accuracy


def _run(root, recipe, stamp, model, train, metrics):
    path = root / recipe / stamp
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": model, "train": train}))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    return str(path)


def test_newest_default_run_is_reported(tmp_path):
    done = {"test_accuracy": 0.8}
    old = _run(tmp_path, "rnn_text", "20260101-000000", {"cell": "gru"}, {"limit": 0}, done)
    _run(tmp_path, "rnn_text", "20260102-000000", {"cell": "gru"}, {"limit": 256}, done)
    _run(tmp_path, "rnn_text", "20260103-000000", {"cell": "gru"}, {"limit": 0}, None)
    lstm = _run(tmp_path, "rnn_text", "20260104-000000", {"cell": "lstm"}, {"limit": 0}, done)
    # A smoke run (--limit) and an unfinished run never stand for the default.
    assert accuracy.newest_run(str(tmp_path), "rnn_text", {"cell": "gru"})[0] == old
    assert accuracy.newest_run(str(tmp_path), "rnn_text", {"cell": "lstm"})[0] == lstm
    assert accuracy.newest_run(str(tmp_path), "cnn", {}) is None
