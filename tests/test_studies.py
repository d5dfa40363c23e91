"""The studies: each runs end to end on a tiny budget, and what they measure is right."""

import json
import math
import os
import re

import keras
import numpy as np
import pytest

import studies
from core import config, training
from studies import (activations, batchnorm, clipping, data_size, gru_lstm, memory, padding,
                     regularization, tuners)


#: Numbers a study may leave undefined: a standard error of one seed.
UNDEFINED = {"se"}


def _numbers(value, key=""):
    """(key, number) for every number in a study's JSON, however deep."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v, key)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key, value


def _written(out, name, pngs):
    """The study's files, with what they measured in range: its JSON (returned)
    holds finite numbers (accuracies in [0, 1], times and losses >= 0), and its
    table and verdict show no NaN."""
    with open(os.path.join(out, f"{name}.md")) as f:
        text = f.read()
    assert "## Verdict" in text and "| " in text and f"python -m studies.{name}" in text
    assert "\n- " in text.split("## Verdict", 1)[1], "an empty verdict"
    assert not re.search(r"\bnan\b|\binf\b", text, re.I), "a NaN or inf in the table"
    for png in pngs:
        assert os.path.getsize(os.path.join(out, f"{png}.png")) > 1000
    with open(os.path.join(out, f"{name}.json")) as f:
        result = json.load(f)
    measured = [(k, v) for k, v in _numbers({k: v for k, v in result.items()
                                             if k != "settings"}) if k not in UNDEFINED]
    assert measured, "the JSON records no measurement"
    for key, value in measured:
        assert math.isfinite(value), (key, value)
        if "accuracy" in key:
            assert 0 <= value <= 1, (key, value)
        if "seconds" in key or key == "loss" or key.endswith("_loss"):
            assert value >= 0, (key, value)
    return text, result


@pytest.mark.parametrize("module, argv, pngs", [
    (activations, ["--depths", "1,3", "--activations", "sigmoid,relu,maxout", "--epochs", "1",
                   "--seeds", "42", "--early-steps", "2"], ["activations", "activations_accuracy"]),
    (batchnorm, ["--learning-rates", "0.001", "--epochs", "1", "--train-images", "256"],
     ["batchnorm"]),
    (regularization, ["--epochs", "1", "--train-images", "256", "--seeds", "42"],
     ["regularization"]),
    (clipping, ["--epochs", "1", "--depth", "2"], ["clipping"]),
    (padding, ["--epochs", "1", "--seeds", "42"], ["padding"]),
    (memory, ["--distances", "1,3", "--cells", "simple-tanh,simple-relu,lstm", "--epochs", "1",
              "--review-tokens", "8", "--limit", "256"], ["memory"]),
    (gru_lstm, ["--seeds", "42", "--distance", "2", "--epochs", "1", "--review-tokens", "8",
                "--limit", "256"], ["gru_lstm"]),
    (data_size, ["--percents", "50,100", "--seeds", "42", "--limit", "256"], ["data_size"]),
])
@pytest.mark.slow
def test_study_runs_end_to_end_and_writes_its_table_and_plot(tmp_path, monkeypatch, module,
                                                            argv, pngs):
    real = studies.images  # every split capped at 512 images: a tiny budget
    monkeypatch.setattr(studies, "images",
                        lambda split, limit=0, **kw: real(split, limit=min(limit or 512, 512),
                                                          **kw))
    recipe = studies.text_recipe  # and a text recipe trains one epoch of 2 steps
    monkeypatch.setattr(studies, "text_recipe", lambda name, argv=(), **kw: recipe(
        name, argv, **{**kw, "epochs": 1, "steps_per_epoch": 2}))
    module.main([*argv, "--out", str(tmp_path)])
    name = module.__name__.split(".")[-1]
    text, result = _written(str(tmp_path), name, pngs)
    if module is activations:  # the verdict is the one its numbers give
        settings = result["settings"]
        lines = activations.verdict(settings["depths"], settings["activations"],
                                    result["accuracy"], result["gradient_ratio"])
        assert lines and all(line in text for line in lines)


@pytest.mark.slow
def test_tuners_study_runs_end_to_end_and_writes_its_table_and_plot(tmp_path):
    searches = tmp_path / "searches"
    tuners.main(["--seeds", "42", "--max-epochs", "1", "--trial-epochs", "1",
                 "--retrain-epochs", "1", "--limit", "128", "--searches", str(searches),
                 "--out", str(tmp_path)])
    text, result = _written(str(tmp_path), "tuners", ["tuners"])
    assert all(f"| {s} |" in text for s in tuners.STRATEGIES)
    # the verdict is the one its numbers give
    ranking = tuners.ranking({s: [{"test_accuracy": r["test_accuracy"]} for r in runs]
                              for s, runs in result["runs"].items()})
    assert [(v["better"], v["worse"], v["status"]) for v in result["verdicts"]] == [
        (b, w, status) for b, w, _, _, status in ranking]
    assert all(f"{b} vs {w}: {status}" in text or f"{b} > {w}: {status}" in text
               for b, w, _, _, status in ranking)
    for strategy in tuners.STRATEGIES:  # ordinary searches, each with its own trials.png
        assert os.path.isfile(searches / strategy / "seed42" / "trials.png")


def test_tuners_verdict_needs_a_gap_beyond_noise():
    def runs(**accuracies):
        return {s: [{"test_accuracy": a} for a in accs] for s, accs in accuracies.items()}

    statuses = lambda r: [v[4] for v in tuners.ranking(r)]  # noqa: E731
    assert statuses(runs(bayesian=[.90, .91, .92], random=[.85, .86, .87],
                         grid=[.80, .81, .82])) == ["holds", "holds"]
    assert statuses(runs(bayesian=[.90, .92, .91], random=[.91, .90, .92],
                         grid=[.95, .96, .94])) == ["tie", "reversed"]
    assert statuses(runs(bayesian=[.9], random=[.8], grid=[.7])) == ["one seed", "one seed"]
    curve = tuners.anytime([{"epochs": 2, "score": .5}, {"epochs": 3, "score": .7},
                            {"epochs": 1, "score": .6}], budget=6)
    assert np.isnan(curve[0]) and list(curve[1:]) == [.5, .5, .5, .7, .7]


def test_gradient_norms_cover_every_layer():
    model = activations.build(5, "maxout", width=8)
    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    norms = activations.kernel_gradient_norms(model, x, np.arange(16) % 10)
    assert [name for name, _ in norms] == [f"dense_{i}" for i in range(1, 6)] + ["output"]
    assert all(n > 0 for _, n in norms)


def test_deep_sigmoid_network_vanishes_at_initialization():
    """A property of the maths: sigmoid' <= 1/4, so 20 layers shrink the gradient."""
    keras.utils.set_random_seed(0)
    model = activations.build(20, "sigmoid")
    x = np.random.default_rng(0).random((256, 784), dtype=np.float32)
    norms = [n for _, n in activations.kernel_gradient_norms(model, x, np.arange(256) % 10)]
    assert norms[0] < 1e-4 * norms[-2]  # first hidden layer vs last hidden layer


def test_coverage_counts_the_border_effect():
    valid, same = padding.coverage(padding="valid"), padding.coverage(padding="same")
    assert (valid[0, 0], valid[0, 14], valid[14, 14]) == (1, 3, 9)
    assert (same[0, 0], same[0, 14], same[14, 14]) == (4, 6, 9)
    moved = padding.shifted(np.ones((1, 28, 28, 1), np.uint8), 4)
    assert moved[0, :4].sum() == 0 and moved[0, 4:, 4:].all()


def test_memory_task_label_depends_only_on_the_review():
    rng = np.random.default_rng(0)
    reviews = memory.left_aligned(np.array([[5, 6, 7, 0], [8, 0, 0, 0], [9, 9, 9, 9]]))
    assert reviews.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8], [9, 9, 9, 9]]
    labels = np.array([1, 0, 1])
    frequencies = memory.word_frequencies(np.array([[1, 2, 3, 3, 0]]), 10)
    assert frequencies.tolist() == [0, 0.25, 0.25, 0.5, 0, 0, 0, 0, 0, 0]
    x, y = memory.make_task(reviews, labels, 50, frequencies, np.random.default_rng(1))
    assert x.shape == (3, 54) and (x[:, :4] == reviews).all() and (y == labels).all()
    assert set(np.unique(x[:, 4:])) <= {1, 2, 3}  # filler from the frequencies only
    # The filler never sees the labels: the same draw with the labels flipped is identical.
    flipped, y_flipped = memory.make_task(reviews, 1 - labels, 50, frequencies,
                                          np.random.default_rng(1))
    assert (flipped == x).all() and (y_flipped == 1 - labels).all()
    # Another draw (another generator): other filler, the same reviews and labels.
    other, y_other = memory.make_task(reviews, labels, 50, frequencies, rng)
    assert (other[:, 4:] != x[:, 4:]).any()
    assert (other[:, :4] == reviews).all() and (y_other == labels).all()


def test_gradient_reaches_only_unmasked_positions():
    keras.utils.set_random_seed(0)
    model = memory.rnn_text.build_model(10, 6, 2, cell="lstm", bidirectional=False)
    ids = np.array([[0, 0, 3, 4, 5, 6]] * 4)
    profile = memory.gradient_profile(model, ids, np.array([0, 1, 0, 1]))
    assert profile.shape == (6,)
    assert (profile[:2] == 0).all() and (profile[2:] > 0).all()  # padding gets no gradient


@pytest.mark.parametrize("module, argv, message", [
    (memory, ["--cells", "lstm,transformer"], "unknown cell 'transformer'"),
    (memory, ["--distances", "0,30"], "L must be >= 1"),
    (gru_lstm, ["--distance", "-5"], "L must be >= 1"),
    (data_size, ["--percents", "0,100"], "a percent must be in (0, 100]"),
    (activations, ["--activations", "softsign"], "activation must be among"),
    (activations, ["--depths", "0,4"], "every depth must be >= 1"),
    (activations, ["--learning-rate", "0"], "learning_rate must be > 0"),
    (batchnorm, ["--learning-rates", "0.01,-1"], "learning_rate must be > 0"),
    (clipping, ["--learning-rate", "-0.1"], "learning_rate must be > 0"),
    (regularization, ["--l2", "-1"], "l2 must be >= 0"),
    (padding, ["--shift", "20"], "shift must be between"),
])
def test_bad_study_settings_are_one_line_errors(capsys, tmp_path, module, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        module.main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_clipnorm_reaches_the_recipes_optimizer():
    assert training.optimizer(config.TrainConfig(clipnorm=1.5)).clipnorm == 1.5
    assert training.optimizer(config.TrainConfig()).clipnorm is None
    with pytest.raises(config.ConfigError, match="clipnorm must be >= 0"):
        config.validate(config.TrainConfig(clipnorm=-1))


def test_pretraining_study_verdict_follows_its_numbers_and_an_extension_keeps_its_runs(
        tmp_path, monkeypatch):
    """The study's bookkeeping, with made-up fine-tuning results (finetune_text itself
    is tested in test_finetune.py): the verdict and the gains are the ones the runs
    give, and adding --budgets trains only the new encoder's runs."""
    from studies import pretraining

    def encoder(name, epochs, accuracy):  # a version folder and the run that made it
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        for file, content in [("history", {"val_loss": [5.0, 4.0], "val_accuracy": [0.1, 0.2]}),
                              ("metrics", {"epochs": epochs, "train_seconds": 60.0 * epochs,
                                           "test_accuracy": accuracy, "test_loss": 4.0}),
                              ("config", {"train": {"steps_per_epoch": 500}})]:
            (run / f"{file}.json").write_text(json.dumps(content))
        version = tmp_path / "models" / name / "1"
        (version / "assets.extra").mkdir(parents=True)
        (version / "assets.extra" / "origin.json").write_text(json.dumps({"run": str(run)}))
        return str(version)

    long, short = encoder("long", 13, 0.22), encoder("short", 3, 0.12)
    # pretraining gains 6 points at 10% and 1 at 100% on both corpora; the short encoder 0.5
    accuracy = {("pretrained", 10): 0.76, ("scratch", 10): 0.70, ("pretrained", 100): 0.81,
                ("scratch", 100): 0.80, (f"pretrained@{short}", 100): 0.805}
    trained = []

    def fine_tune(name, argv, seed, train_percent, limit):
        flags = dict(zip(argv[::2], argv[1::2]))
        init = (flags["--init"] if flags["--pretrained"] == long
                else f"pretrained@{flags['--pretrained']}")
        trained.append((init, flags["--dataset"], train_percent, seed))
        return {"test_accuracy": accuracy[init, train_percent] + (seed - 42) * 0.001,
                "epochs": 3, "train_seconds": 9.0, "encoder": flags["--pretrained"],
                "history": {"val_accuracy": [0.5, 0.6]}}

    monkeypatch.setattr(studies, "text_recipe", fine_tune)
    argv = ["--pretrained", long, "--percents", "10,100", "--seeds", "42,43", "--out",
            str(tmp_path / "out")]
    pretraining.main(argv)
    assert len(trained) == 2 * 2 * 2 * 2  # corpora x percents x (pretrained, scratch) x seeds
    text, result = _written(str(tmp_path / "out"), "pretraining", ["pretraining"])
    for corpus in ("rt_snippets", "reuters_r8"):
        assert result["gains"][corpus]["10"] == pytest.approx(0.06)
        assert result["gains"][corpus]["100"] == pytest.approx(0.01)
        assert f"{corpus}, pretrained minus scratch: +6.0 points at 10%, +1.0 points at 100%" in text
    assert "**Holds** on rt_snippets, reuters_r8" in text

    trained.clear()
    pretraining.main([*argv, "--budgets", short])
    assert sorted(trained) == sorted((f"pretrained@{short}", c, 100, s)
                                     for c in ("rt_snippets", "reuters_r8") for s in (42, 43))
    text, _ = _written(str(tmp_path / "out"), "pretraining",
                       ["pretraining", "pretraining_budget"])
    assert f"| `{short}` | 1,500 | 3.0 | 0.1200 | 0.8055 ± 0.0007 (+0.5)" in text
    assert f"| `{long}` | 6,500 | 13.0 | 0.2200 | 0.8105 ± 0.0007 (+1.0)" in text
    assert not (tmp_path / "out" / "pretraining.partial.json").exists()
