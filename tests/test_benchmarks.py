"""Benchmarks pick the runs they report honestly."""

import json

import pytest

from benchmarks import accuracy


def _run(root, recipe, stamp, command, seed, metrics, **changes):
    model, train = accuracy.resolved_config(recipe, command, seed)
    train = {**train, **changes, "runs_dir": str(root), "precision_resolved": "float32"}
    path = root / recipe / stamp
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": model, "train": train}))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    return str(path)


def test_only_runs_of_the_default_command_are_reported(tmp_path):
    done, gru = {"test_accuracy": 0.8}, "python -m recipes.rnn_text --cell gru"
    old = _run(tmp_path, "rnn_text", "20260101-000000", gru, 42, done)
    _run(tmp_path, "rnn_text", "20260102-000000", gru, 42, done, limit=256)  # a smoke run
    _run(tmp_path, "rnn_text", "20260103-000000", gru, 42, done, epochs=3)  # a shorter one
    _run(tmp_path, "rnn_text", "20260104-000000", gru, 42, None)  # unfinished
    _run(tmp_path, "rnn_text", "20260105-000000", gru, 43, done)  # another seed
    lstm = _run(tmp_path, "rnn_text", "20260106-000000", "python -m recipes.rnn_text", 42, done)
    assert accuracy.newest_run(str(tmp_path), "rnn_text", gru, 42)[0] == old
    assert accuracy.newest_run(str(tmp_path), "rnn_text", "python -m recipes.rnn_text --cell "
                               "lstm", 42)[0] == lstm
    assert accuracy.newest_run(str(tmp_path), "cnn", "python -m recipes.cnn", 42) is None


def test_a_cnn_run_recorded_before_the_speedrun_flags_still_counts():
    # Those runs trained without label smoothing, which the default has now.
    model, train = accuracy.resolved_config("cnn", "python -m recipes.cnn --label-smoothing 0",
                                            42)
    saved = json.loads(json.dumps({"model": model, "train": train}))
    for section, keys in (("model", ("augmentations", "tta")),
                          ("train", ("label_smoothing", "ema"))):
        for key in keys:
            del saved[section][key]
    assert accuracy.same_config(saved, model, train)
    assert not accuracy.same_config(saved, *accuracy.resolved_config(
        "cnn", "python -m recipes.cnn", 42))
    saved["train"]["ema"] = 0.999  # a run that did use one is another configuration
    assert not accuracy.same_config(saved, model, train)


def test_resolved_config_is_what_the_command_runs():
    model, train = accuracy.resolved_config("cnn", "python -m recipes.cnn --epochs 5", 7)
    assert train["epochs"] == 5 and train["seed"] == 7 and model["activation"] == "relu"
    _, text_train = accuracy.resolved_config("transformer_text",
                                             "python -m recipes.transformer_text", 42)
    assert text_train["dataset"] == "rt_snippets" and text_train["monitor"] == "val_accuracy"


def test_hyperband_winner_is_retrained_with_exactly_its_hyperparameters(monkeypatch):
    from benchmarks import hyperband
    from recipes import cnn

    best = {"hyperparameters": {"learning_rate": 0.0012345678901234, "blocks": 2},
            "recipe_kwargs": {"filters": [48, 96], "kernel_size": 5, "activation": "swish",
                              "dropout": 0.30000000000000004, "dense_units": 128,
                              "batch_norm_momentum": 0.9}}
    seen = {}
    monkeypatch.setattr(cnn.RECIPE, "run", lambda model, train, resume=None: seen.update(
        model=model, train=train))
    cnn.main(hyperband.recipe_flags(best))
    assert seen["model"].filters == (48, 96)
    for name, value in best["recipe_kwargs"].items():
        if name != "filters":
            assert getattr(seen["model"], name) == value
    assert seen["train"].learning_rate == best["hyperparameters"]["learning_rate"]
    # Everything else stays at the recipe's default budget.
    assert seen["train"].epochs == cnn.TRAIN_DEFAULTS["epochs"] and seen["train"].limit == 0


def test_throughput_reports_steady_state_of_the_repeats_only():
    import keras
    import numpy as np

    from benchmarks.throughput import Variant

    def tiny():
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))

    data = (np.random.rand(8, 3).astype("float32"), np.array([0, 1] * 4))
    variant = Variant("tiny", tiny, data, data, batch_size=4)
    warmup = variant.epoch()
    variant.step_seconds[0] = [100.0, 100.0]  # a slow warm-up (tracing) must not count
    for _ in range(2):
        variant.seconds.append(variant.epoch())
    row = variant.result(warmup)
    assert row["repeats"] == 2 and len(variant.step_seconds) == 3
    assert row["step_images_per_second"] > 1.0  # the warm-up's pace is 0.04
    # Steps happen inside the epoch: what is left over is never negative.
    assert len(row["seconds_outside_steps"]) == 2
    assert all(s >= 0 for s in row["seconds_outside_steps"])


def test_throughput_compares_keras_batchnorm_on_the_same_model():
    import keras
    import numpy as np

    from benchmarks.throughput import keras_batchnorm
    from core.batchnorm import FusedBatchNormalization
    from recipes import cnn

    fused = cnn.build_model((28, 28, 1), 10)
    plain = keras_batchnorm(fused)
    kinds = lambda model: [type(layer) for layer in model.layers]  # noqa: E731
    assert FusedBatchNormalization in kinds(fused)
    assert FusedBatchNormalization not in kinds(plain)
    assert (kinds(plain).count(keras.layers.BatchNormalization)
            == kinds(fused).count(FusedBatchNormalization))
    # Same layout and weights: the same function, only the kernel differs.
    plain.set_weights(fused.get_weights())
    x = np.random.RandomState(0).randint(0, 256, (4, 28, 28, 1)).astype("uint8")
    np.testing.assert_allclose(plain.predict(x, verbose=0), fused.predict(x, verbose=0),
                               atol=1e-5)


def test_selection_keeps_the_default_only_when_validation_says_so(monkeypatch):
    from benchmarks import selection

    scores = {(): [0.30, 0.32], ("--alt",): [0.25, 0.27]}  # val_loss: lower is better
    monkeypatch.setitem(selection.CHECKS, "demo", {
        "command": [], "monitor": "val_loss", "seeds": (1, 2), "default": [],
        "alternative": ["--alt"]})
    monkeypatch.setattr(selection, "train", lambda command, flags, seed, runs_dir: (
        f"run-{seed}", {"loss": [1.0], "val_loss": [0.9, scores[tuple(flags)][seed - 1]]}))
    result = selection.check("demo", "runs")
    assert result["default"]["mean"] == 0.31 and result["alternative"]["mean"] == 0.26
    assert result["verdict"].startswith("the alternative scores better")
    scores[("--alt",)] = [0.35, 0.40]
    assert selection.check("demo", "runs")["verdict"] == "the default stays"
    assert selection.best_score({"val_accuracy": [0.7, 0.8, 0.75]}, "val_accuracy") == 0.8


def test_time_to_accuracy_reads_the_mean_curve_over_seeds_and_judges_the_bar():
    from benchmarks import time_to_accuracy as tta
    from studies import seconds_to  # what the benchmark reads its times with

    assert seconds_to(0.90, [0.89, 0.91, 0.90, 0.93], [10, 20, 30, 40]) == 20
    assert seconds_to(0.94, [0.89, 0.91], [10, 20]) is None

    def run(curve, seconds, final):
        return {"test_curve": curve, "seconds": seconds, "final_accuracy": final,
                "parameters": 10, "epochs": len(curve)}

    # one seed reaches 0.94 at 200 s, the other never: the mean does at 300 s
    summary = tta.summarize({42: run([0.93, 0.945, 0.95], [100, 200, 300], 0.95),
                             43: run([0.92, 0.93, 0.935, 0.96], [110, 210, 310, 410], 0.96)})
    assert summary["mean_curve"] == pytest.approx([0.925, 0.9375, 0.9425])  # 3 common epochs
    assert summary["seconds"] == pytest.approx([105, 205, 305])
    assert summary["reached"]["0.94"] == 305 and summary["reached"]["0.95"] is None
    assert summary["min_curve"][1] == 0.93 and summary["max_curve"][1] == 0.945
    assert summary["final_accuracy"] == pytest.approx(0.955)
    assert summary["final_accuracy_sd"] == pytest.approx(0.00707, abs=1e-5)

    def result(reached):
        return {"reached": {f"{t:.2f}": s for t, s in zip(tta.THRESHOLDS, reached)}}

    verdict = tta.verdict({"keras-io": result([81, None, None, None, None]),
                           "default": result([60, 120, 200, 290, 800])})
    assert [line.split("**")[1] for line in verdict] == ["met", "met", "met"]
    verdict = tta.verdict({"keras-io": result([81, None, None, None, None]),
                           "default": result([81, 200, 250, 310, None])})
    assert [line.split("**")[1] for line in verdict] == ["not met", "not met", "not met"]


def test_cnn_techniques_keeps_a_rung_only_by_its_fixed_rule():
    """A rung is kept when it beats the last kept rung by >= 0.1 point and by more
    than a standard error, at most 15% slower an epoch; later rungs are judged
    against the last kept one; TTA against the kept configuration's own runs."""
    from benchmarks import cnn_techniques as ct

    def runs(accuracies, seconds=40.0, tta=0.0):
        return {str(seed): {"val_accuracy": a, "val_accuracy_tta": a + tta,
                            "seconds_per_epoch": seconds}
                for seed, a in zip((42, 43, 44), accuracies)}

    names = [name for name, _ in ct.RUNGS]
    results = {names[0]: runs([0.930, 0.931, 0.929]),
               names[1]: runs([0.935, 0.936, 0.934]),  # +0.5 point: kept
               names[2]: runs([0.9355, 0.9365, 0.9345], seconds=41),  # +0.05: not kept
               names[3]: runs([0.940, 0.941, 0.939], seconds=48, tta=0.002)}  # 1.2x: not kept
    verdicts = ct.verdicts(results)
    assert [(name, ok) for name, ok, _ in verdicts] == [
        (names[0], True), (names[1], True), (names[2], False), (names[3], False),
        (f"{names[1]}, with test-time flips", False)]
    assert f"over {names[1]}" in verdicts[3][2]  # judged against the last kept rung
    # and built on it: the rung after one not kept starts from the one before
    assert [ct.last_kept(results, name) for name in names] == [None, names[0], names[1],
                                                               names[1]]
    results[names[1]] = runs([0.935, 0.936, 0.934], tta=0.003)
    assert ct.verdicts(results)[-1][1]
    noisy = {names[0]: runs([0.930, 0.931, 0.929]), names[1]: runs([0.925, 0.935, 0.945])}
    assert not ct.verdicts(noisy)[1][1]  # +0.5 point, but within the noise


def test_cnn_short_takes_the_best_candidate_only_by_its_fixed_rule():
    """make run takes the best candidate that beats the default by >= 0.1 point
    and by more than a standard error, at most 2.5x its seconds an epoch."""
    from benchmarks import cnn_short

    def runs(accuracies, seconds=10.0):
        return {str(seed): {"val_accuracy": a, "seconds_per_epoch": seconds}
                for seed, a in zip((42, 43, 44), accuracies)}

    names = [name for name, _ in cnn_short.CANDIDATES]
    results = {names[0]: runs([0.920, 0.921, 0.919]),
               names[1]: runs([0.9205, 0.9215, 0.9195]),  # +0.05 point: too little
               names[2]: runs([0.924, 0.925, 0.923]),  # +0.4: eligible
               names[3]: runs([0.930, 0.931, 0.929], seconds=26)}  # +1.0, but 2.6x
    chosen, rows = cnn_short.verdict(results)
    assert chosen == names[2]
    assert [ok for *_, ok in rows] == [False, True, False]
    results[names[3]] = runs([0.930, 0.931, 0.929], seconds=24)
    assert cnn_short.verdict(results)[0] == names[3]  # the best of the eligible
    noisy = {names[0]: results[names[0]], names[1]: runs([0.910, 0.925, 0.940])}
    assert cnn_short.verdict(noisy)[0] == "default"  # +0.5 point, within the noise


@pytest.mark.slow
def test_time_to_accuracy_runs_all_three_and_writes_its_report(tmp_path, monkeypatch):
    import benchmarks
    from benchmarks import time_to_accuracy as tta

    monkeypatch.setattr(benchmarks, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(tta, "RESULTS", str(tmp_path / "results"))
    results = tta.main(["--seeds", "42", "--limit", "256", "--epochs", "1", "--name", "tiny",
                        "--runs-dir", str(tmp_path / "runs")])
    assert list(results) == ["keras-io", "previous default", "default"]
    for r in results.values():
        assert r["epochs"] == 1 and len(r["mean_curve"]) == len(r["seconds"]) == 1
        assert r["seconds"][0] > 0 and 0 <= r["final_accuracy"] <= 1
    report = (tmp_path / "results" / "tiny.md").read_text()
    assert "| keras-io |" in report and "Bar, a mean of >= 0.94" in report
    assert (tmp_path / "results" / "tiny.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert set(saved["results"]) == set(results) and "machine" in saved
    assert saved["runs"]["previous default"]["42"]["model"]["architecture"] == "plain"


def test_text_defaults_resumes_and_runs_each_alternative_only_where_it_belongs(tmp_path,
                                                                               monkeypatch):
    import studies
    from benchmarks import text_defaults as bench

    calls = []

    def fake(recipe, argv, limit=0):
        calls.append((recipe, argv))
        length = 128 if argv[-2:] == ["--sequence-length", "128"] else 64
        better = argv[-2:] in (["--sequence-length", "128"], ["--batch-size", "32"])
        return {"history": {"val_accuracy": [0.5, 0.9 if better else 0.8]},
                "train_seconds": 1.0, "epochs": 2, "sequence_length": length}

    monkeypatch.setattr(studies, "text_recipe", fake)
    out = str(tmp_path / "text_defaults.json")
    first = bench.key("cnn_text", "reuters_r8", 0, 42)
    (tmp_path / "text_defaults.json").write_text(json.dumps({"runs": {first: {
        "best_val_accuracy": 0.7, "train_seconds": 1.0, "epochs": 6, "sequence_length": 64}}}))
    bench.main(["--recipes", "cnn_text", "--corpora", "reuters_r8,health_tweets_10pct",
                "--out", out])
    runs = json.loads((tmp_path / "text_defaults.json").read_text())["runs"]
    assert runs[first]["epochs"] == 6  # kept, not re-run
    r8 = [argv for _, argv in calls if "reuters_r8" in argv]
    assert len(r8) == 6  # steps 2-5, the cap and 5a; step 1 was already done
    assert r8[3][-2:] == ["--sequence-length", "128"]  # the cap comes right after step 4
    assert r8[5][-2:] == ["--learning-rate", "0.003"]  # 5a runs everywhere, 5b-5d do not
    tenth = [argv for _, argv in calls if "health_tweets" in argv]
    assert len(tenth) == 5 + 4 and all(argv[:4] == ["--dataset", "health_tweets",
                                                    "--train-percent", "10"] for argv in tenth)
    assert [argv[-1] for argv in tenth[5:]] == ["0.003", "0.0003", "32", "5000"]  # no cap
    # An alternative departs from its step, with the step's flags before its own.
    assert tenth[7][-4:] == ["--standardize", "split_punctuation", "--batch-size", "32"]

    lines = bench.table(runs, ["cnn_text"], ["reuters_r8", "health_tweets_10pct"])
    rows = {line.split(" | ")[0]: line for line in lines}
    cap, batch = (f"| {bench.ALTERNATIVES[k][0]}" for k in ("cap", "batch32"))
    assert "0.7000, 1 s" in rows["| 1. before"]
    assert "0.9000 (+10.0)" in rows[cap] and "n/a" in rows[cap]
    assert "n/a" in rows[batch] and "0.9000 (+10.0)" in rows[batch]
    # Step 5 is measured against step 4, not against the alternative beside it.
    assert "0.8000 (+0.0)" in rows["| 5. punctuation as tokens"]
    assert list(rows).index(cap) == list(rows).index("| 4. length from the data") + 1
    # The bar: the CNN's defaults (row 5) against its best row, batches of 32 on the tenth.
    gaps = {line.split(" | ")[0]: line for line in bench.bar(runs, ["cnn_text"],
                                                             ["health_tweets_10pct"])}
    assert gaps["| health_tweets_10pct"].endswith("| 0.8000 (5) | 0.9000 (5c) | 10.0 | no |")
    # --rows runs only the rows named; the .md is rewritten whole, every corpus in it.
    calls.clear()
    bench.main(["--recipes", "rnn_text", "--corpora", "reuters_r8", "--rows", "5,lr3e-3",
                "--out", out])
    assert [argv[-1] for _, argv in calls] == ["split_punctuation", "0.003"]
    report = (tmp_path / "text_defaults.md").read_text()
    assert "| health_tweets_10pct: step |" in report and "| rt_snippets: step |" in report
    assert "| reuters_r8 | Transformer | not run (5a) |" in report
    assert "| reuters_r8 | CNN | 0.8000 (5) | 0.9000 (4b) | 10.0 | no |" in report


def test_linear_reference_fits_on_the_recipes_own_splits():
    """scikit-learn's reference row sees what a recipe run sees: the same training
    share, validation and test splits."""
    from benchmarks import linear_reference
    from core import config, data

    train = config.TrainConfig(dataset="rt_snippets", seed=42)
    texts, labels = linear_reference.texts_and_labels("rt_snippets", "train")
    batches = data.training_examples(train).batch(4096).as_numpy_iterator()
    seen = [t.decode() for batch, _ in batches for t in batch]
    assert texts == seen and len(labels) == len(texts) > 9_000
    result = linear_reference.fit("rt_snippets", grid=(1.0,))
    assert 0.6 < result["test_accuracy"] <= 1 and result["C"] == 1.0
    assert result["features"] > 10_000


def test_text_corpora_names_the_seeds_of_a_partial_cell():
    from benchmarks import text_corpora as tc

    row = "CNN (Kim 2014)"
    runs = {tc.key(row, "reuters_r8", 42): {"test_accuracy": 0.97, "train_seconds": 100.0},
            tc.key(row, "health_tweets", 42): {"test_accuracy": 0.68, "train_seconds": 75.0}}
    assert tc.cell(runs, row, "reuters_r8") == "0.9700, 100 s (seed 42 of 3)"
    assert tc.cell(runs, row, "health_tweets") == "0.6800, 75 s"  # its one planned seed
    runs[tc.key(row, "reuters_r8", 44)] = {"test_accuracy": 0.96, "train_seconds": 120.0}
    assert tc.cell(runs, row, "reuters_r8") == "0.9650 ± 0.0071, 110 s (seeds 42, 44 of 3)"
    assert tc.cell(runs, row, "rt_snippets") == "not run"
    runs[tc.key(tc.REFERENCE, "reuters_r8", 42)] = {"test_accuracy": 0.96, "train_seconds": 9.0}
    assert tc.cell(runs, tc.REFERENCE, "reuters_r8") == "0.9600, 9 s"  # one fit, deterministic
