"""keras-tuner searches: bad input, reproducible, resumable after SIGKILL, distributed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from core import export
from tuning import search

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


def _log(path):
    with open(os.path.join(path, "run_log.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("argv, message", [
    (["resnet"], "unknown recipe 'resnet'"),
    (["cnn", "--tuner", "evolution"], "unknown tuner 'evolution'"),
    (["cnn", "--max-trials", "0"], "--max-trials must be >= 1"),
    (["cnn", "--chief", "nohost"], "expected HOST:PORT"),
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


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_same_seed_same_trials(tuner, tmp_path):
    sequences = []
    for name in ("a", "b"):
        path = str(tmp_path / name)
        _run("tuning", "upsampling", "--tuner", tuner, "--max-trials", "3", "--seed", "7",
             *TINY, "--dir", path)
        trials = _trial_values(path)
        sequences.append([trials[key][1] for key in sorted(trials)])
    assert len(sequences[0]) == 3
    assert sequences[0] == sequences[1]


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
    with open(os.path.join(path, "best.json")) as f:
        best = json.load(f)
    assert 0 <= best["test_accuracy"] <= 1
    served = export.serve_in_fresh_process(best["export"],
                                           {"image": np.zeros((1, 28, 28, 1), np.uint8)})
    assert served["probabilities"].shape == (1, 10)


def test_sigkill_mid_trial_then_resume_loses_and_repeats_nothing(tmp_path):
    path = str(tmp_path / "search")
    argv = [sys.executable, "-m", "tuning", "upsampling", "--max-trials", "3", "--epochs", "3",
            "--limit", "2048", "--batch-size", "64", "--dir", path]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            trials = _trial_values(path) if os.path.isdir(path) else {}
            if trials.get("0", ("",))[0] == "COMPLETED" and trials.get("1", ("",))[0] == "RUNNING":
                time.sleep(1.0)  # well inside trial 1
                break
            time.sleep(0.2)
        else:
            pytest.fail("the search never reached its second trial")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = _trial_values(path)
    assert before["1"][0] == "RUNNING" and [e["trial_id"] for e in _log(path)] == ["0"]

    _run("tuning", "upsampling", "--max-trials", "3", "--epochs", "3", "--limit", "2048",
         "--batch-size", "64", "--dir", path)
    after = _trial_values(path)
    assert sorted(after) == ["0", "1", "2"]
    assert all(status == "COMPLETED" for status, _ in after.values())
    assert after["0"] == before["0"] and after["1"][1] == before["1"][1]
    assert sorted(e["trial_id"] for e in _log(path)) == ["0", "1", "2"]  # each finished once


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
