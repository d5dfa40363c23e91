"""A recipe killed mid-epoch goes on with `--resume` as if it had never stopped."""

import contextlib
import glob
import io
import json
import os
import re
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import config, runs, training
from recipes import cnn
from tests import fault_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 2,048 images in batches of 64: 32 steps an epoch, about 1-2 s here, so a kill
# sent as epoch 2 begins lands inside it.
CNN = ["-m", "recipes.cnn", "--limit", "2048", "--batch-size", "64", "--epochs", "3",
       "--precision", "float32", "--no-export", "--schedule", "constant", "--lr-patience", "1"]
STEPS_PER_EPOCH = 2048 // 64


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _only_run(runs_dir):
    (run_dir,) = glob.glob(os.path.join(runs_dir, "cnn", "*"))
    return run_dir


def _read(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return json.load(f)


# Ten points where a run may be killed, in the order one run reaches them: each
# process is killed at the next point (the Nth time it reaches it) and the next
# one goes on with `--resume RUN_DIR` alone. With 8 steps an epoch, the 12th
# batch of a run resumed after epoch 1 is inside epoch 3.
KILLS = [("mid-epoch", 3), ("checkpoint-weights", 1), ("checkpoint-published", 1),
         ("epoch-end", 1), ("mid-epoch", 12), ("checkpoint-published", 1), ("test-read", 1),
         ("export-staged", 1), ("export-published", 1), ("metrics", 1)]
SMALL = ["-m", "recipes.cnn", "--limit", "512", "--batch-size", "64", "--epochs", "3",
         "--precision", "float32", "--filters", "8,16", "--dense-units", "32"]


def _nothing_half_written(run_dir, models):
    """Every checkpoint checks out and every published version is whole."""
    checkpoints = os.path.join(run_dir, "checkpoints")
    for name in os.listdir(checkpoints) if os.path.isdir(checkpoints) else []:
        if not name.startswith("."):
            assert runs.check_checkpoint(os.path.join(checkpoints, name)) is None, name
    for version in glob.glob(os.path.join(models, "cnn", "[0-9]*")):
        assert os.path.isfile(os.path.join(version, "saved_model.pb")), version
        assert os.path.isfile(os.path.join(version, "assets.extra", "origin.json")), version


def _forked(forks, *args, killed=False):
    """A run in a process forked from `forks` (tests.fault_runner's fork server)."""
    code, out, err = forks.run(*args)
    assert code == (-signal.SIGKILL if killed else 0), (args, code, out[-2000:], err[-3000:])
    if killed:
        assert f"[fault] killed at {args[0]} ({args[1]})" in out, args
    return out


@pytest.mark.slow
def test_a_run_killed_at_every_point_in_turn_ends_as_an_uninterrupted_run(tmp_path):
    """SIGKILL at ten points spread over epochs, checkpoint writes and the export,
    each followed by a resume without flags: the run ends with the uninterrupted
    run's weights, history and test accuracy, one whole version, and its config.json
    as the first process wrote it.

    The 12 processes are forked from one that imported TensorFlow once (half of
    each one's time otherwise); each is killed, or exits, as a process."""
    with fault_runner.Forks(str(tmp_path), ROOT, _env()) as forks:
        _forked(forks, *SMALL, "--no-export", "--runs-dir", str(tmp_path / "whole"))
        whole = _only_run(str(tmp_path / "whole"))

        runs_dir, models = str(tmp_path / "killed"), str(tmp_path / "models")
        _forked(forks, KILLS[0][0], str(KILLS[0][1]), *SMALL, "--runs-dir", runs_dir,
                "--export-dir", models, killed=True)
        run_dir = _only_run(runs_dir)
        with open(os.path.join(run_dir, "config.json"), "rb") as f:
            config_bytes = f.read()
        outputs = []
        for point, nth in KILLS[1:]:
            _nothing_half_written(run_dir, models)
            outputs.append(_forked(forks, point, str(nth), "-m", "recipes.cnn", "--resume",
                                   run_dir, killed=True))
        _nothing_half_written(run_dir, models)
        last = _forked(forks, "-m", "recipes.cnn", "--resume", run_dir)
    assert "is this run's export already" in last  # published once, before the kills
    with contextlib.redirect_stdout(io.StringIO()) as again:
        cnn.main(["--resume", run_dir])  # in this process: it trains nothing
    assert "is finished" in again.getvalue()

    # where each resume went on from: the checkpoints the kills left
    went_on = [re.search(r"epoch (\d) done", out) for out in outputs]
    assert [int(m.group(1)) if m else 0 for m in went_on] == [0, 0, 1, 1, 2, 3, 3, 3, 3]
    metrics, reference = _read(run_dir, "metrics.json"), _read(whole, "metrics.json")
    assert metrics["weights_digest"] == reference["weights_digest"]
    assert metrics["test_accuracy"] == reference["test_accuracy"]
    assert _read(run_dir, "history.json") == _read(whole, "history.json")
    # one version; the export killed before its rename left only a hidden folder
    assert [n for n in os.listdir(os.path.join(models, "cnn")) if not n.startswith(".")] == ["1"]
    assert metrics["export"].endswith("cnn/1")
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["epoch-2", "epoch-3"]
    with open(os.path.join(run_dir, "config.json"), "rb") as f:
        assert f.read() == config_bytes
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert int(model.optimizer.iterations) == 3 * 8  # every step once, none twice


def _tiny_model():
    inputs = keras.Input((3,), name="x")
    outputs = keras.layers.Dense(2, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_resume_restores_weights_optimizer_early_stopping_and_plateau(tmp_path):
    """What a crash leaves is what a resumed run starts from, callbacks included."""
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x, 1 - y)).batch(16)  # val_loss worsens
    train = config.TrainConfig(epochs=8, patience=5, lr_patience=1)
    crashed = _tiny_model()

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit_and_evaluate(crashed, ds, val, ds, train, str(tmp_path), 64,
                                  extra_callbacks=[Crash()])
    path, saved = runs.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert saved["epoch"] == 3 and len(saved["history"]["val_loss"]) == 3

    model = _tiny_model()  # fresh weights and optimizer, as in a new process
    plateau, early, checkpoint, *_ = training.callbacks(
        str(tmp_path), train.patience, train.monitor, train.lr_patience)
    for cb in (plateau, early, checkpoint):
        cb.set_model(model)
        cb.on_train_begin()
    assert checkpoint.initial_epoch == 3
    for got, want in zip(model.get_weights(), crashed.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert int(model.optimizer.iterations) == 3 * 4
    assert float(model.optimizer.learning_rate) == pytest.approx(
        float(crashed.optimizer.learning_rate))
    assert float(model.optimizer.learning_rate) < 0.05  # the plateau cut it before the crash
    assert early.best == pytest.approx(min(saved["history"]["val_loss"]))
    assert early.wait == saved["callbacks"][1]["wait"] and early.wait > 0
    assert early.best_weights is not None and plateau.wait == saved["callbacks"][0]["wait"]
    assert checkpoint.history == saved["history"]


def test_resumed_history_and_metrics_count_every_epoch(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    train = config.TrainConfig(epochs=4, patience=10)

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit_and_evaluate(_tiny_model(), ds, ds, ds, train, str(tmp_path), 64,
                                  extra_callbacks=[Crash()])
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    metrics, history = training.fit_and_evaluate(_tiny_model(), ds, ds, ds, train,
                                                 str(tmp_path), 64, extra_callbacks=[Record()])
    assert seen == [2, 3]
    assert metrics["epochs"] == 4 and len(history["loss"]) == 4
    assert len(_read(str(tmp_path), "history.json")["val_loss"]) == 4


def test_an_epoch_of_steps_may_end_inside_a_pass(tmp_path):
    """`--steps-per-epoch`: epochs of 3 batches over a 4-batch split, so the second
    epoch spans two passes; speed counts the examples actually seen."""
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int64"))).batch(16)
    train = config.TrainConfig(epochs=3, steps_per_epoch=3, patience=10)
    clock = training.EpochClock()
    metrics, _ = training.fit_and_evaluate(_tiny_model(), ds, ds, ds, train, str(tmp_path), 64,
                                           extra_callbacks=[clock])
    assert clock.steps == [3, 3, 3] and metrics["epochs"] == 3
    # 9 batches of 16 seen: 144 examples over the run's seconds, not 3 passes of 64.
    assert metrics["examples_per_second"] * metrics["train_seconds"] == pytest.approx(144, rel=0.02)
    assert training.steps_per_epoch(train, ds) == 3
    assert training.steps_per_epoch(config.TrainConfig(), ds) == 4
