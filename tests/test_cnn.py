"""The CNN recipe: model shapes, bad input before training, and a tiny end-to-end run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import config
from layers.inception import InceptionModule
from layers.resnet import ResidualBlock
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
    model = cnn.build_model((28, 28, 1), 10, filters=(4, 8), convs_per_block=1, dense_units=8,
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
    ({"kernel_size": 7, "padding": "valid", "filters": (8, 8, 8), "convs_per_block": 1},
     "at block 3"),
    ({"kernel_size": 4}, r"kernel_size must be one of \(3, 5, 7\)"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"batch_norm_momentum": 1.0}, "batch_norm_momentum must be in"),
    ({"augment": True, "augmentations": ("flip", "rotate")}, "augmentations must be among"),
    ({"augment": True, "augmentations": ()}, "augmentations must be among"),
])
def test_bad_model_config(overrides, message):
    with pytest.raises(config.ConfigError, match=message):
        cnn.ModelConfig(**overrides).validate((28, 28, 1))


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


@pytest.mark.slow
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
    assert "(verified in a fresh interpreter)" in out  # the export reloaded itself there
    images = np.zeros((2, 28, 28, 1), np.uint8)
    served = {key: value.numpy() for key, value in signature(image=tf.constant(images)).items()}
    served["class_name"] = served["class_name"].astype(str)
    assert served["probabilities"].shape == (2, 10)
    assert served["class_id"].dtype == np.int64
    assert set(served["class_name"]) <= {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
        "Bag", "Ankle boot"}

    # A second run gets its own run directory and the next version.
    _main(tmp_path)
    assert len(list((tmp_path / "runs" / "cnn").iterdir())) == 2
    assert sorted(os.listdir(tmp_path / "saved_models" / "cnn")) == ["1", "2"]


# --- architectures ------------------------------------------------------------


@pytest.mark.parametrize("architecture", cnn.ARCHITECTURES)
def test_every_architecture_outputs_float32_probabilities_under_bf16(architecture):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = cnn.build_model((28, 28, 1), 10, architecture=architecture)
        images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
        probabilities = model(images)
    finally:
        keras.config.set_dtype_policy("float32")
    assert probabilities.shape == (3, 10) and probabilities.dtype == tf.float32
    np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, rtol=1e-3)


def test_lenet5_is_lecuns_layout():
    model = cnn.build_model((28, 28, 1), 10, architecture="lenet5")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    # 28x28 padded to 32x32; 5x5 valid convolutions and 2x2 average pooling.
    assert shapes["C1"] == (28, 28, 6) and shapes["S2"] == (14, 14, 6)
    assert shapes["C3"] == (10, 10, 16) and shapes["S4"] == (5, 5, 16)
    assert shapes["C5"] == (1, 1, 120) and shapes["F6"] == (84,)
    assert all(model.get_layer(name).activation is keras.activations.tanh
               for name in ("C1", "C3", "C5", "F6"))
    # The parameter count of LeNet-5 with a fully connected C3 and 10 outputs.
    assert model.count_params() == 61_706


def test_resnet_and_inception_use_the_blocks_from_layers():
    resnet = cnn.build_model((28, 28, 1), 10, architecture="resnet", batch_norm_momentum=0.9)
    # the classes of layers/, not copies of the same name
    blocks = [layer for layer in resnet.layers if isinstance(layer, ResidualBlock)]
    assert len(blocks) >= 2 and all(block.momentum == 0.9 for block in blocks)
    inception = cnn.build_model((28, 28, 1), 10, architecture="inception")
    assert sum(isinstance(layer, InceptionModule) for layer in inception.layers) == 3


@pytest.mark.parametrize("overrides, shape, message", [
    ({"architecture": "alexnet"}, (28, 28, 1), "architecture must be one of"),
    ({"architecture": "lenet5"}, (16, 16, 1), "lenet5 needs images of at least 28x28"),
    ({"architecture": "inception"}, (2, 2, 1), "at least 4x4"),
    ({"architecture": "lenet5", "activation": "swish"}, (28, 28, 1),
     "does not read --activation"),
    ({"architecture": "resnet", "filters": (8,), "dropout": 0.3}, (28, 28, 1),
     "does not read --filters, --dropout"),
    ({"architecture": "resnet", "batch_norm_momentum": 1.5}, (28, 28, 1),
     "batch_norm_momentum must be in"),
])
def test_bad_architecture_config(overrides, shape, message):
    with pytest.raises(config.ConfigError, match=message):
        cnn.ModelConfig(**overrides).validate(shape)


def test_unknown_architecture_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cnn.main(["--architecture", "vgg16", "--runs-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "architecture must be one of" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("architecture", [a for a in cnn.ARCHITECTURES if a != "plain"])
@pytest.mark.slow
def test_each_architecture_trains_and_exports_a_servable_model(architecture, tmp_path):
    """LeNet-5 also trains with #38's techniques, and serves with test-time flips."""
    techniques = (["--augment", "--augmentations", "crop,flip", "--label-smoothing", "0.1",
                   "--ema", "0.9", "--tta"] if architecture == "lenet5" else [])
    cnn.main(["--architecture", architecture, "--epochs", "1", "--limit", "128",
              "--batch-size", "64", "--runs-dir", str(tmp_path / "runs"),
              "--export-dir", str(tmp_path / "saved_models"), *techniques])
    (run_dir,) = (tmp_path / "runs" / "cnn").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["architecture"] == architecture
    metrics = json.loads((run_dir / "metrics.json").read_text())
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), np.uint8)
    # (the export was checked in a fresh interpreter as it was written; here, the
    # reloaded SavedModel against the reloaded .keras file)
    serve = tf.saved_model.load(metrics["export"]).signatures["serving_default"]
    served = {key: value.numpy() for key, value in serve(image=tf.constant(images)).items()}
    assert served["probabilities"].shape == (2, 10)
    trained = keras.saving.load_model(run_dir / "model.keras", compile=False)
    expected = trained(images)
    if techniques:  # the mean over each image and its mirror image: mirroring changes nothing
        expected = (expected + trained(images[:, :, ::-1])) / 2
        mirrored = serve(image=tf.constant(images[:, :, ::-1]))["probabilities"].numpy()
        np.testing.assert_allclose(served["probabilities"], mirrored, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-2)


def test_tta_averages_each_image_and_its_mirror_image_with_the_same_weights():
    keras.utils.set_random_seed(0)
    model = cnn.build_model((28, 28, 1), 10, filters=(4,), dense_units=8)
    model.layers[-2].set_weights([w * 50 for w in model.layers[-2].get_weights()])  # confident
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), np.uint8)
    plain, mirrored = model(images), model(images[:, :, ::-1])
    assert np.abs(plain - mirrored).max() > 0.05  # the mirror image changes the answer
    tta = cnn.with_tta(model)
    np.testing.assert_allclose(tta(images), (plain + mirrored) / 2, rtol=1e-6, atol=1e-7)
    assert len(tta.weights) == len(model.weights)  # shared, not copied
    reloaded = keras.Model.from_config(tta.get_config())  # HorizontalFlip is registered
    assert [type(layer).__name__ for layer in reloaded.layers] == [
        type(layer).__name__ for layer in tta.layers]


def test_crop_shifts_whole_pixels_in_training_only_and_flip_mirrors():
    """`crop` moves an image by whole pixels, at most 2, zeros coming in (no
    interpolated values); `flip` mirrors it; both are the identity at inference."""
    image = np.zeros((1, 28, 28, 1), np.uint8)
    image[0, 10:14, 9:13, 0] = [[11, 22, 33, 44]] * 4  # one 4x4 patch, columns differ
    for augmentations in (("crop",), ("flip",)):
        inputs = keras.Input((28, 28, 1), dtype="uint8")
        model = keras.Model(inputs, cnn.augment(keras.layers.Rescaling(1.0)(inputs),
                                                augmentations))
        np.testing.assert_array_equal(model(image, training=False), image)
        seen = set()
        for seed in range(8):
            keras.utils.set_random_seed(seed)
            out = np.asarray(model(image, training=True))[0, :, :, 0]
            if augmentations == ("flip",):
                assert (np.array_equal(out, image[0, :, :, 0])
                        or np.array_equal(out, image[0, :, ::-1, 0]))
                seen.add(out.tobytes())
                continue
            rows, cols = np.nonzero(out)
            assert set(np.unique(out)) <= {0, 11, 22, 33, 44}  # whole pixels
            assert len(rows) == 16 and abs(rows.min() - 10) <= 2 and abs(cols.min() - 9) <= 2
            np.testing.assert_array_equal(out[rows.min():rows.min() + 4, cols.min():cols.min() + 4],
                                          image[0, 10:14, 9:13, 0])
            seen.add((rows.min(), cols.min()))
        assert len(seen) > 1, f"{augmentations} never changed the image in 8 draws"


def test_augmentation_acts_in_training_only_for_every_architecture():
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    small = {"plain": {"filters": (4,), "dense_units": 8, "dropout": 0.0, "dense_dropout": 0.0}}
    for architecture in cnn.ARCHITECTURES:
        model = cnn.build_model((28, 28, 1), 10, architecture=architecture, augment=True,
                                **small.get(architecture, {}))
        assert any(isinstance(layer, keras.layers.RandomTranslation) for layer in model.layers)
        # the augmentation alone: what comes after it sees the shifted images in training
        augmented = keras.Model(model.inputs, next(
            layer for layer in model.layers
            if isinstance(layer, keras.layers.RandomTranslation)).output)
        np.testing.assert_array_equal(augmented(images, training=False),
                                      augmented(images, training=False))
        np.testing.assert_array_equal(model(images, training=False), model(images, training=False))
        assert not np.allclose(augmented(images, training=True), augmented(images, training=True))
