"""The CNN recipe: model shapes, bad input before training, and a tiny end-to-end run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import export, training
from recipes import cnn


@pytest.mark.parametrize("activation", cnn.ACTIVATIONS)
def test_every_activation_builds_and_outputs_probabilities(activation):
    model = cnn.build_model((28, 28, 1), 10, filters=(4, 8), activation=activation,
                            dense_units=8)
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    probabilities = model(images)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-5)


def test_maxout_doubles_the_channels_it_reduces():
    model = cnn.build_model((28, 28, 1), 10, filters=(4,), convs_per_block=1,
                            activation="maxout", batch_norm=False, dense_units=8)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.filters == 8
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense[0].units == 16


def test_batch_norm_momentum_reaches_every_batch_norm_layer():
    model = cnn.build_model((28, 28, 1), 10, filters=(4, 8), dense_units=8,
                            batch_norm_momentum=0.9)
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 2 and all(layer.momentum == 0.9 for layer in norms)


def test_mixed_bfloat16_keeps_softmax_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = cnn.build_model((28, 28, 1), 10, filters=(4,), dense_units=8)
        assert model.layers[-2].compute_dtype == "bfloat16"
        assert model(np.zeros((1, 28, 28, 1), np.uint8)).dtype == tf.float32
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("overrides, message", [
    ({"activation": "gelu"}, "activation must be one of"),
    ({"filters": (8, 8, 8, 8, 8)}, "shrink a 28x28 image to nothing at block 5"),
    ({"kernel_size": 7, "padding": "valid", "filters": (8, 8, 8)}, "at block 3"),
    ({"kernel_size": 4}, "kernel_size must be 3, 5 or 7"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"batch_norm_momentum": 1.0}, "batch_norm_momentum must be in"),
])
def test_bad_model_config(overrides, message):
    config = cnn.ModelConfig(**overrides)
    with pytest.raises(training.ConfigError, match=message):
        cnn.validate(config, (28, 28, 1))


def test_spatial_sizes_follow_the_blocks():
    assert cnn.spatial_sizes(28, (1, 1, 1), 2, 3, 1, "same") == [14, 7, 3]
    assert cnn.spatial_sizes(28, (1,), 1, 5, 1, "valid") == [12]
    assert cnn.spatial_sizes(28, (1,), 1, 3, 2, "same") == [7]


def _main(tmp_path, *extra):
    return cnn.main(["--epochs", "1", "--limit", "256", "--batch-size", "64",
                     "--filters", "4,8", "--dense-units", "16", "--convs-per-block", "1",
                     "--runs-dir", str(tmp_path / "runs"),
                     "--export-dir", str(tmp_path / "saved_models"), *extra])


def test_text_dataset_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _main(tmp_path, "--dataset", "rt_snippets")
    assert exit_info.value.code == 2
    assert "needs uint8 images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_too_many_blocks_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _main(tmp_path, "--filters", "4,4,4,4,4")
    assert "at block 5" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cnn.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--activation", "--precision", "--compare-activations", "--resume"):
        assert flag in text


def test_end_to_end_run_writes_a_run_and_a_servable_export(tmp_path, capsys):
    _main(tmp_path, "--activation", "swish")
    out = capsys.readouterr().out
    assert "test accuracy" in out and "exported" in out
    (run_dir,) = (tmp_path / "runs" / "cnn").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs"] == 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["activation"] == "swish"
    assert (run_dir / "model.keras").exists() and (run_dir / "logs").is_dir()
    version = tmp_path / "saved_models" / "cnn" / "1"
    assert metrics["export"] == str(version)

    # The signature takes raw uint8 pixels under the name `image`.
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28, 1]
    images = np.zeros((2, 28, 28, 1), np.uint8)
    served = export.serve_in_fresh_process(str(version), {"image": images})
    assert served["probabilities"].shape == (2, 10)
    assert served["class_id"].dtype == np.int64
    assert set(served["class_name"]) <= {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot"}

    # A second run gets its own run directory and the next version.
    _main(tmp_path)
    assert len(list((tmp_path / "runs" / "cnn").iterdir())) == 2
    assert sorted(os.listdir(tmp_path / "saved_models" / "cnn")) == ["1", "2"]
