"""The studies: each runs end to end on a tiny budget, and what they measure is right."""

import os

import keras
import numpy as np
import pytest

import studies
from core import training
from studies import activations, batchnorm, clipping, padding, regularization


def _written(out, name, pngs):
    with open(os.path.join(out, f"{name}.md")) as f:
        text = f.read()
    assert "## Verdict" in text and "| " in text and f"python -m studies.{name}" in text
    for png in pngs:
        assert os.path.getsize(os.path.join(out, f"{png}.png")) > 1000
    assert os.path.isfile(os.path.join(out, f"{name}.json"))
    return text


@pytest.mark.parametrize("module, argv, pngs", [
    (activations, ["--depths", "1,3", "--activations", "sigmoid,relu,maxout", "--epochs", "1",
                   "--seeds", "42", "--early-steps", "2"], ["activations", "activations_accuracy"]),
    (batchnorm, ["--learning-rates", "0.001", "--epochs", "1", "--train-images", "256"],
     ["batchnorm"]),
    (regularization, ["--epochs", "1", "--train-images", "256", "--seeds", "42"],
     ["regularization"]),
    (clipping, ["--epochs", "1", "--depth", "2"], ["clipping"]),
    (padding, ["--epochs", "1", "--seeds", "42"], ["padding"]),
])
def test_study_runs_end_to_end_and_writes_its_table_and_plot(tmp_path, monkeypatch, module,
                                                            argv, pngs):
    real = studies.images  # every split capped at 512 images: a tiny budget
    monkeypatch.setattr(studies, "images",
                        lambda split, limit=0, **kw: real(split, limit=min(limit or 512, 512),
                                                          **kw))
    module.main([*argv, "--out", str(tmp_path)])
    _written(str(tmp_path), module.__name__.split(".")[-1], pngs)


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


@pytest.mark.parametrize("module, argv, message", [
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
    assert training.optimizer(training.TrainConfig(clipnorm=1.5)).clipnorm == 1.5
    assert training.optimizer(training.TrainConfig()).clipnorm is None
    with pytest.raises(training.ConfigError, match="clipnorm must be >= 0"):
        training.validate(training.TrainConfig(clipnorm=-1))
