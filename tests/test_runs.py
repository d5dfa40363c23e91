"""A run keeps its record, survives a damaged checkpoint and a full disk (core.runs)."""

import dataclasses
import errno
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import config, export, runs, storage, training
from core.config import ConfigError
from recipes import cnn

FLAGS = ["--epochs", "3", "--limit", "2048", "--learning-rate", "0.01", "--filters", "8,16",
         "--precision", "float32"]


def _started(tmp_path):
    """A cnn run directory as `start_run` leaves it: (run dir, model config, train config)."""
    _, _, model, train = cnn.RECIPE.parse([*FLAGS, "--runs-dir", str(tmp_path)])
    return runs.start_run("cnn", model, train), model, train


def _bytes(run_dir, name="config.json"):
    with open(os.path.join(run_dir, name), "rb") as f:
        return f.read()


def test_resume_without_flags_takes_the_runs_own_config_and_leaves_it_untouched(tmp_path):
    run_dir, model, train = _started(tmp_path)
    before = _bytes(run_dir)
    _, _, resumed_model, resumed_train = cnn.RECIPE.parse(["--resume", run_dir])
    assert resumed_model == model and resumed_model.filters == (8, 16)
    # Where the run lives is not a training flag: everything else is the run's.
    assert dataclasses.replace(resumed_train, runs_dir=train.runs_dir) == train
    assert runs.start_run("cnn", resumed_model, resumed_train, resume=run_dir) == run_dir
    assert _bytes(run_dir) == before
    assert not os.path.exists(os.path.join(run_dir, "amendments.json"))


def test_a_run_recorded_before_a_field_existed_resumes_with_what_it_used(tmp_path):
    from recipes import ngram_text

    _, _, model, train = ngram_text.RECIPE.parse(["--runs-dir", str(tmp_path)])
    assert train.optimizer == "sgd"  # today's default for this recipe
    run_dir = runs.start_run("ngram_text", model, train)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        record = json.load(f)
    del record["train"]["optimizer"]  # as a run recorded before --optimizer existed
    record["train"]["learning_rate"] = 0.01
    with open(path, "w") as f:
        json.dump(record, f)
    _, _, _, resumed = ngram_text.RECIPE.parse(["--resume", run_dir])
    assert (resumed.optimizer, resumed.learning_rate) == ("adam", 0.01)  # what it trained with


def test_resume_refuses_a_changed_config_and_records_a_changed_budget(tmp_path):
    run_dir, _, _ = _started(tmp_path)
    before = _bytes(run_dir)
    _, _, model, train = cnn.RECIPE.parse(["--resume", run_dir, "--filters", "16,32",
                                           "--learning-rate", "0.003", "--epochs", "5"])
    with pytest.raises(ConfigError) as refused:
        runs.start_run("cnn", model, train, resume=run_dir)
    message = str(refused.value)
    assert "--filters: the run has 8,16, given 16,32" in message
    assert "--learning-rate: the run has 0.01, given 0.003" in message
    assert "--epochs" not in message.split("only")[0]  # a budget: allowed
    assert not os.path.exists(os.path.join(run_dir, "amendments.json"))

    _, _, model, train = cnn.RECIPE.parse(["--resume", run_dir, "--epochs", "5"])
    runs.start_run("cnn", model, train, resume=run_dir)
    _, _, model, train = cnn.RECIPE.parse(["--resume", run_dir, "--patience", "1"])
    assert train.epochs == 5  # the amended budget holds for every later resume
    runs.start_run("cnn", model, train, resume=run_dir)
    assert _bytes(run_dir) == before
    amendments = json.loads(_bytes(run_dir, "amendments.json"))
    assert [a["changes"] for a in amendments] == [
        {"epochs": {"was": 3, "now": 5}}, {"patience": {"was": 4, "now": 1}}]


def test_a_preset_or_a_comparison_cannot_resume(tmp_path, capsys):
    run_dir, _, _ = _started(tmp_path)
    for extra in (["--preset", "classic"], ["--compare-activations"]):
        with pytest.raises(SystemExit) as exit_info:
            cnn.RECIPE.parse(["--resume", run_dir, *extra])
        assert exit_info.value.code == 2
        assert "a resumed run keeps its own configuration" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path, capsys, monkeypatch):
    run_dir, _, _ = _started(tmp_path)
    storage.write_json(os.path.join(run_dir, "metrics.json"), {
        "test_accuracy": 0.5, "epochs": 3, "train_seconds": 4.0})
    files = sorted(os.listdir(run_dir))
    monkeypatch.setattr(training, "fit_and_evaluate", lambda *a, **k: pytest.fail("trained"))
    cnn.main(["--resume", run_dir])  # returns: exit code 0
    out = capsys.readouterr().out
    assert f"{run_dir} is finished (test accuracy 0.5000 after 3 epochs" in out
    assert "nothing to train" in out and sorted(os.listdir(run_dir)) == files


# --- checkpoints ---------------------------------------------------------------------


def _tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="x")
    hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


class Crash(keras.callbacks.Callback):
    """Raises after epoch `after` (counted from 1), once its checkpoint is written."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


def _fit(run_dir, epochs=3, crash_after=None, keep=2):
    model, ds = _tiny_model(), _data()
    train = config.TrainConfig(epochs=epochs, patience=10, keep_checkpoints=keep)
    extra = [Crash(crash_after)] if crash_after else []
    training.fit_and_evaluate(model, ds, ds, ds, train, str(run_dir), 64, extra_callbacks=extra)
    return training.weights_digest(model)


def _checkpoints(run_dir):
    return sorted(os.listdir(os.path.join(run_dir, "checkpoints")))


def test_the_newest_checkpoints_are_kept_each_with_the_checksums_of_its_files(tmp_path):
    _fit(tmp_path, epochs=4, keep=2)
    assert _checkpoints(tmp_path) == ["epoch-3", "epoch-4"]
    for name in _checkpoints(tmp_path):
        folder = os.path.join(tmp_path, "checkpoints", name)
        manifest = json.loads(_bytes(folder, "manifest.json"))
        assert sorted(manifest) == sorted(runs.RunCheckpoint.FILES)
        assert all(storage.digest(os.path.join(folder, f)) == sha for f, sha in manifest.items())
    _fit(tmp_path / "three", epochs=4, keep=3)
    assert _checkpoints(tmp_path / "three") == ["epoch-2", "epoch-3", "epoch-4"]


def test_a_truncated_newest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, capsys):
    whole = _fit(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", crash_after=3)  # trained to the end; not evaluated
    newest = os.path.join(tmp_path, "cut", "checkpoints", "epoch-3")
    with open(os.path.join(newest, "model.weights.h5"), "r+b") as f:
        f.truncate(1000)  # what a full disk or an interrupted copy leaves
    capsys.readouterr()
    assert _fit(tmp_path / "cut") == whole  # epoch 3 trained again, to the same weights
    out = capsys.readouterr().out
    assert (f"checkpoint {newest} cannot be used: model.weights.h5 fails its checksum" in out)
    assert "going on from the previous checkpoint" in out and "epoch 2 done" in out


def test_no_usable_checkpoint_is_a_clear_error_naming_each(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, crash_after=2)
    for name in ("epoch-1", "epoch-2"):
        os.remove(os.path.join(tmp_path, "checkpoints", name, "state.json"))
    with pytest.raises(runs.CheckpointError) as error:
        runs.latest_checkpoint(os.path.join(tmp_path, "checkpoints"))
    assert "epoch-1: state.json is missing" in str(error.value)
    assert "epoch-2: state.json is missing" in str(error.value)


# --- a full disk -----------------------------------------------------------------------


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_names_the_path_and_keeps_the_previous_one(
        tmp_path, monkeypatch):
    savez = np.savez
    calls = []

    def savez_until_full(*args, **kwargs):  # two files a checkpoint: epoch 2 fails
        calls.append(args[0])
        return _full_disk() if len(calls) > 2 else savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", savez_until_full)
    with pytest.raises(storage.WriteError) as error:
        _fit(tmp_path)
    checkpoints = os.path.join(tmp_path, "checkpoints")
    assert str(error.value) == (
        f"could not write {checkpoints}/epoch-2: No space left on device; the previous "
        f"checkpoint {checkpoints}/epoch-1 is intact; make room and go on with --resume "
        f"{tmp_path}")
    assert _checkpoints(tmp_path) == ["epoch-1"]  # no half-written one left behind
    assert runs.check_checkpoint(os.path.join(checkpoints, "epoch-1")) is None


def _export(model, root):
    return export.export_savedmodel(
        model, "tiny", {"x": tf.TensorSpec((None, 3), tf.float32)},
        lambda x: {"probabilities": model(x)}, root=root)


@pytest.mark.parametrize("where, err", [
    ("write_out", errno.ENOSPC), ("rename", errno.EACCES)])
def test_a_failed_export_names_the_folder_and_publishes_nothing(tmp_path, monkeypatch, where,
                                                                 err):
    model = _tiny_model()
    assert _export(model, str(tmp_path)).endswith("tiny/1")
    failing = lambda *a, **k: (_ for _ in ()).throw(OSError(err, os.strerror(err)))  # noqa: E731
    if where == "write_out":
        monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", failing)
    else:
        monkeypatch.setattr(export.os, "rename", failing)
    with pytest.raises(storage.WriteError) as error:
        _export(model, str(tmp_path))
    assert str(error.value) == (
        f"could not write {tmp_path}/tiny: {os.strerror(err)}; nothing was published, and "
        "the versions already there are intact")
    assert os.listdir(tmp_path / "tiny") == ["1"]  # no version 2, no staging folder left


def test_an_unwritable_runs_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runs.os, "makedirs", _full_disk)
    with pytest.raises(SystemExit) as exit_info:
        cnn.main([*FLAGS, "--runs-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        f"error: could not write {tmp_path}/runs/cnn: No space left on device\n")


def test_a_run_exports_once_even_when_stopped_after_publishing(tmp_path):
    model = _tiny_model()
    with export.from_run(str(tmp_path / "run"), training.weights_digest(model)):
        first = _export(model, str(tmp_path))
        assert _export(model, str(tmp_path)) == first  # the resumed run finds it
    assert _export(model, str(tmp_path)).endswith("tiny/2")  # outside a run: a new one
    with export.from_run(str(tmp_path / "other"), training.weights_digest(model)):
        assert _export(model, str(tmp_path)).endswith("tiny/3")
