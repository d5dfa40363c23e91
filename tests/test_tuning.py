"""keras-tuner searches: bad input, reproducible, resumable after SIGKILL, distributed."""

import csv
import json
import os
import signal
import subprocess
import sys

import tensorflow as tf
import pytest

import keras_tuner as kt

from core import config
from tests import fault_runner
from tuning import search, spaces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--epochs", "1", "--limit", "128", "--batch-size", "64"]


def _run(*argv, check=True, **kwargs):
    """`python -m tuning ...` in a subprocess (keras-tuner keeps global state)."""
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, check=check,
                          capture_output=True, text=True, **kwargs)


def _trial_values(path):
    trials = {}
    for name in os.listdir(path):
        if name.startswith("trial_"):
            with open(os.path.join(path, name, "trial.json")) as f:
                trial = json.load(f)
            trials[trial["trial_id"]] = (trial["status"], trial["hyperparameters"]["values"])
    return trials


def _hparams_tags(logdir):
    import tensorflow as tf

    tags = set()
    for root, _, files in os.walk(logdir):
        for name in files:
            if name.startswith("events.out.tfevents"):
                for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                    tags |= {v.tag for v in event.summary.value
                             if v.metadata.plugin_data.plugin_name == "hparams"}
    return tags


def _log(path):
    with open(os.path.join(path, "run_log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("argv, message", [
    (["resnet"], "unknown recipe 'resnet'"),
    (["cnn", "--tuner", "evolution"], "unknown tuner 'evolution'"),
    (["cnn", "--max-trials", "0"], "--max-trials must be >= 1"),
    (["cnn", "--chief", "nohost"], "expected HOST:PORT"),
    (["cnn", "--tuner", "bayesian", "--initial-points", "-1"], "--initial-points must be >= 0"),
])
def test_bad_input(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        search.main([*argv, "--dir", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_directory_of_another_search_is_refused_and_only_wiped_with_overwrite(tmp_path):
    path = str(tmp_path / "search")
    search.check_directory(path, "cnn", "random", overwrite=False)
    open(os.path.join(path, "keep.txt"), "w").close()
    with pytest.raises(search.SearchError, match="random search for 'cnn'"):
        search.check_directory(path, "rnn_text", "random", overwrite=False)
    with pytest.raises(search.SearchError, match="--overwrite"):
        search.check_directory(path, "cnn", "hyperband", overwrite=False)
    search.check_directory(path, "cnn", "random", overwrite=False)  # same search: resumes
    assert os.path.exists(os.path.join(path, "keep.txt"))
    search.check_directory(path, "rnn_text", "random", overwrite=True)
    assert os.listdir(path) == ["search.json"]
    other = tmp_path / "not_a_search"
    other.mkdir()
    (other / "data.csv").write_text("x")
    with pytest.raises(search.SearchError, match="not a search directory"):
        search.check_directory(str(other), "cnn", "random", overwrite=False)


def _walk(oracle, trials):
    """Run `trials` trials on `oracle` without training: each scores its learning rate."""
    points = []
    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        points.append(dict(trial.hyperparameters.values))
        oracle.update_trial(trial.trial_id, {"val_loss": trial.hyperparameters["learning_rate"]})
        oracle.end_trial(trial)
    return points


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_same_seed_same_trials(tuner, tmp_path):
    """--seed fixes the sequence of points (Bayesian's guided ones included)."""
    from core import config
    from tuning import spaces

    recipe = spaces.Upsampling(config.TrainConfig())
    sequences = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        oracle = search.make_tuner(tuner, search.RecipeHyperModel(recipe), recipe.objective,
                                   str(tmp_path), name, max_trials=5, epochs=1, seed=seed,
                                   initial_points=2).oracle
        oracle.update_space(spaces.registered(recipe))
        sequences.append(_walk(oracle, 5))
    assert len(sequences[0]) == 5
    assert sequences[0] == sequences[1]
    assert sequences[0] != sequences[2]


@pytest.mark.slow
def test_results_table_best_model_and_export(tmp_path):
    path = str(tmp_path / "search")
    result = _run("tuning", "cnn", "--max-trials", "2", *TINY, "--dir", path,
                  "--export-best", "--export-dir", str(tmp_path / "sm"))
    assert "[tuning] trial 0" in result.stdout and "[tuning] trial 1" in result.stdout
    with open(os.path.join(path, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    scores = [float(row["val_accuracy"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert {"activation", "learning_rate", "seconds", "epochs"} <= set(rows[0])
    assert os.path.getsize(os.path.join(path, "trials.png")) > 1000
    # TensorBoard: one run per trial, each with the HParams plugin's session summaries.
    board = os.path.join(path, search.TENSORBOARD)
    assert sorted(os.listdir(board)) == ["0", "1"]
    for trial in ("0", "1"):
        assert "_hparams_/session_start_info" in _hparams_tags(os.path.join(board, trial))
    with open(os.path.join(path, "best.json")) as f:
        best = json.load(f)
    assert 0 <= best["test_accuracy"] <= 1
    # (checked in a fresh interpreter as it was exported; here, that it serves)
    serve = tf.saved_model.load(best["export"]).signatures["serving_default"]
    assert serve(image=tf.zeros((1, 28, 28, 1), tf.uint8))["probabilities"].shape == (1, 10)


def test_history_is_in_run_order_and_counts_hyperbands_new_epochs_only(tmp_path):
    trials = {"0": {"tuner/epochs": 1, "tuner/initial_epoch": 0, "lr": 1.0},
              "10": {"tuner/epochs": 9, "tuner/initial_epoch": 3, "lr": 2.0},
              "2": {"tuner/epochs": 3, "tuner/initial_epoch": 1, "lr": 3.0}}
    for i, (trial_id, values) in enumerate(trials.items()):
        (tmp_path / f"trial_{trial_id}").mkdir()
        (tmp_path / f"trial_{trial_id}" / "trial.json").write_text(json.dumps(
            {"trial_id": trial_id, "status": "COMPLETED", "score": 0.5 + i / 10,
             "hyperparameters": {"values": values}}))
    rows = search.history(str(tmp_path), epochs=3)
    assert [r["trial_id"] for r in rows] == ["0", "2", "10"]
    assert [r["epochs"] for r in rows] == [1, 2, 6]
    assert rows[0]["values"] == {"lr": 1.0}
    assert search.best_so_far([0.5, 0.4, 0.7, 0.6]) == [0.5, 0.5, 0.7, 0.7]
    assert search.best_so_far([0.5, 0.4, 0.7], "min") == [0.5, 0.4, 0.4]


def test_grid_walks_every_point_of_its_discrete_space_once(tmp_path):
    """keras-tuner's grid over the upsampling space: 3 decoders x 2 widths x 11 learning
    rates (the continuous rate made discrete), each once, then it stops."""
    import itertools
    import math

    import keras_tuner as kt

    from core import config
    from tuning import spaces

    hp = spaces.registered(spaces.Upsampling(config.TrainConfig()))
    grid = spaces.grid_values(hp)
    assert len(grid["learning_rate"]) == 11 and grid["learning_rate"][0] == 3e-4
    oracle = kt.oracles.GridSearchOracle(objective=kt.Objective("val_loss", "min"),
                                         hyperparameters=hp, max_trials=1000)
    oracle._set_project_dir(str(tmp_path), "grid")
    seen = [tuple(sorted(point.items())) for point in _walk(oracle, 1000)]
    assert len(seen) == len(set(seen)) == math.prod(len(v) for v in grid.values()) == 66
    assert set(seen) == {tuple(sorted(zip(grid, point)))
                         for point in itertools.product(*grid.values())}


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_loses_and_repeats_nothing(tmp_path):
    """SIGKILL after the first of trial 1's two epochs (the third epoch the search
    trains), then the same command again: trial 0 is kept, trial 1 runs again
    with the same values, trial 2 follows, and each is logged once."""
    path = str(tmp_path / "search")
    argv = ["-m", "tuning", "upsampling", "--max-trials", "3", "--epochs", "2",
            "--limit", "512", "--batch-size", "64", "--dir", path]
    with fault_runner.Forks(str(tmp_path), ROOT, os.environ) as forks:
        code, out, err = forks.run("trial-epoch-end", "3", *argv)
        assert code == -signal.SIGKILL, err[-3000:]
        before = _trial_values(path)
        assert before["1"][0] == "RUNNING" and [e["trial_id"] for e in _log(path)] == ["0"]
        code, out, err = forks.run(*argv)
        assert code == 0, err[-3000:]
    after = _trial_values(path)
    assert sorted(after) == ["0", "1", "2"]
    assert all(status == "COMPLETED" for status, _ in after.values())
    assert after["0"] == before["0"] and after["1"][1] == before["1"][1]
    assert sorted(e["trial_id"] for e in _log(path)) == ["0", "1", "2"]  # each finished once


@pytest.mark.slow
def test_chief_and_two_workers_run_every_trial_once(tmp_path):
    path = str(tmp_path / "search")
    _run("tuning.launch", "--workers", "2", "cnn", "--max-trials", "4", *TINY, "--dir", path,
         timeout=600)
    log = _log(path)
    assert sorted(e["trial_id"] for e in log) == ["0", "1", "2", "3"]
    # Both workers took trials from the chief (one doing all four would pass a subset check).
    assert {e["tuner_id"] for e in log} == {"worker-0", "worker-1"}
    assert all(status == "COMPLETED" for status, _ in _trial_values(path).values())
    with open(os.path.join(path, "trials.csv")) as f:
        assert len(list(csv.DictReader(f))) == 4
    # The chief reported right after the last trial, not after keras-tuner's 20 s
    # wait for the workers (tuning.launch ends that wait once they have exited).
    last_trial = os.path.getmtime(os.path.join(path, "run_log.jsonl"))
    assert os.path.getmtime(os.path.join(path, "trials.csv")) - last_trial < 12


@pytest.mark.parametrize("name", ["rnn_text", "transformer_text", "cnn_text"])
def test_text_spaces_build_at_their_defaults_with_the_datas_sequence_length(name):
    train = config.TrainConfig(dataset="rt_snippets", limit=64)
    recipe = spaces.RECIPES[name](train)
    kwargs, _ = recipe.define(kt.HyperParameters())
    model = recipe.model(kwargs)
    length = model.inputs[0].shape[1]
    token_ids, _ = next(iter(recipe.data(kwargs)[0]))  # what the search trains it on
    assert length == token_ids.shape[1]
    assert model(token_ids[:2]).shape == (2, 2)
