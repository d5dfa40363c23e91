"""Every layer through Keras's own layer harness, on whichever backend runs it.

`keras.src.testing.TestCase.run_layer_test` is what Keras's own layers pass:
build and call, symbolic and eager shapes, weight counts, masks, `get_config`
round trip, a `fit` with a loss (the training check) and a call under
`mixed_float16` and `mixed_bfloat16` (the mixed precision check, which Keras
skips on PyTorch's CPU). It saves no file, so a `.keras` round trip and a
`mixed_bfloat16` call are checked here on every backend besides, and each
file is trained copied alone. This file imports only keras, numpy, pytest and layers/, so
it runs unchanged under `KERAS_BACKEND=jax` or `torch` in an environment with
nothing else installed (`make test-backends`; docs/layers.md), and under
TensorFlow in `make test`.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras.src import testing

from layers.inception import InceptionModule
from layers.maxout import Maxout
from layers.resnet import ResidualBlock
from layers.swish import Swish
from layers.transformer import (
    MaskedAveragePooling1D, TokenAndPositionEmbedding, TransformerEncoder)
from layers.upsampling import ResizeConv2D

# (layer class, its arguments, run_layer_test's other arguments)
CASES = {
    "maxout_dense": (Maxout, {"num_units": 3}, dict(
        input_shape=(2, 6), expected_output_shape=(2, 3), expected_num_trainable_weights=0)),
    "maxout_conv": (Maxout, {"num_units": 2}, dict(
        input_shape=(2, 5, 5, 4), expected_output_shape=(2, 5, 5, 2))),
    "swish": (Swish, {"beta": 1.5}, dict(
        input_shape=(2, 3, 4), expected_output_shape=(2, 3, 4),
        expected_num_trainable_weights=1)),
    "swish_per_channel": (Swish, {"per_channel": True}, dict(
        input_shape=(2, 3, 4), expected_output_shape=(2, 3, 4),
        expected_num_trainable_weights=1)),
    "swish_fixed": (Swish, {"trainable_beta": False}, dict(
        input_shape=(2, 4), expected_output_shape=(2, 4), expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=1)),
    "resize_nearest": (ResizeConv2D, {"filters": 5}, dict(
        input_shape=(2, 4, 4, 3), expected_output_shape=(2, 8, 8, 5),
        expected_num_trainable_weights=2)),
    "resize_bilinear": (ResizeConv2D, {"filters": 5, "interpolation": "bilinear"}, dict(
        input_shape=(2, 4, 4, 3), expected_output_shape=(2, 8, 8, 5),
        expected_num_trainable_weights=2)),
    "token_and_position_embedding": (TokenAndPositionEmbedding, {
        "vocabulary_size": 20, "sequence_length": 6, "embedding_dim": 8}, dict(
        input_data=np.array([[3, 4, 5, 0, 0, 0], [7, 1, 2, 9, 11, 0]], "int32"),
        expected_output_shape=(2, 6, 8), expected_num_trainable_weights=2,
        supports_masking=True, expected_mask_shape=(2, 6))),
    "transformer_encoder": (TransformerEncoder, {
        "num_heads": 2, "intermediate_dim": 16, "dropout": 0.1}, dict(
        input_shape=(2, 6, 8), expected_output_shape=(2, 6, 8),
        expected_num_trainable_weights=16, supports_masking=True)),
    "masked_average_pooling": (MaskedAveragePooling1D, {}, dict(
        input_shape=(2, 6, 8), expected_output_shape=(2, 8), expected_num_trainable_weights=0,
        supports_masking=True)),
    "residual_identity": (ResidualBlock, {"filters": 3}, dict(
        input_shape=(2, 6, 6, 3), expected_output_shape=(2, 6, 6, 3),
        expected_num_trainable_weights=6, expected_num_non_trainable_weights=4)),
    "residual_projection": (ResidualBlock, {"filters": 5, "strides": 2}, dict(
        input_shape=(2, 6, 6, 3), expected_output_shape=(2, 3, 3, 5),
        expected_num_trainable_weights=9, expected_num_non_trainable_weights=6)),
    "inception": (InceptionModule, {
        "filters_1x1": 2, "filters_3x3": (2, 3), "filters_5x5": (2, 2), "filters_pool": 2},
        dict(input_shape=(2, 5, 5, 3), expected_output_shape=(2, 5, 5, 9))),
    "inception_factorized": (InceptionModule, {
        "filters_1x1": 2, "filters_3x3": (2, 3), "filters_5x5": (2, 2), "filters_pool": 2,
        "factorize": True}, dict(input_shape=(2, 5, 5, 3), expected_output_shape=(2, 5, 5, 9))),
}


class _Harness(testing.TestCase):
    """Keras's TestCase, driven by pytest's parametrization below."""

    def runTest(self):  # unittest wants one; the harness is called directly
        pass


@pytest.mark.parametrize("name", CASES)
def test_keras_layer_harness(name):
    layer_cls, init_kwargs, expectations = CASES[name]
    harness = _Harness()
    harness.setUp()
    harness.run_layer_test(layer_cls, init_kwargs, **expectations)


def _model_around(name, dtype=None):
    """A model of the case's layer alone, and an input for it."""
    layer_cls, init_kwargs, expectations = CASES[name]
    keras.utils.set_random_seed(0)
    if "input_data" in expectations:
        x = expectations["input_data"]
        inputs = keras.Input(x.shape[1:], dtype=x.dtype.name)
    else:
        x = np.random.default_rng(0).normal(size=expectations["input_shape"]).astype("float32")
        inputs = keras.Input(x.shape[1:])
    return keras.Model(inputs, layer_cls(**init_kwargs, dtype=dtype)(inputs)), x


@pytest.mark.parametrize("name", CASES)
def test_keras_file_round_trip_on_this_backend(name, tmp_path):
    """The harness checks the config; this saves and reloads a `.keras` file, with
    weights moved off their initial values."""
    model, x = _model_around(name)
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(keras.ops.convert_to_numpy(weight) + rng.normal(0, 0.1, weight.shape))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [(w.path, w.trainable) for w in reloaded.weights] == [
        (w.path, w.trainable) for w in model.weights]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_mixed_bfloat16_on_this_backend(name):
    """Keras's harness skips mixed precision on PyTorch's CPU; bfloat16 is checked
    here on every backend: bfloat16 outputs, finite, float32 weights."""
    model, x = _model_around(name, dtype="mixed_bfloat16")
    y = model(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))).all()
    assert all(w.dtype == "float32" for w in model.weights)


# --- each file copied alone into an empty folder, trained there --------------

LAYERS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "layers")

# What a user's project does with each file: a small model around the layer,
# fitted for two steps. `layer(x)` is the layer applied to the input `x`.
_ALONE = {
    "maxout.py": ("image", "maxout.Maxout(2)(keras.layers.Conv2D(4, 3)(x))"),
    "swish.py": ("image", "swish.Swish(per_channel=True)(keras.layers.Conv2D(4, 3)(x))"),
    "upsampling.py": ("image", "upsampling.upsampling_block('resize_bilinear', 3)(x)"),
    "transformer.py": ("ids", "transformer.MaskedAveragePooling1D()(transformer."
                       "TransformerEncoder(2, 8)(transformer.TokenAndPositionEmbedding("
                       "10, 5, 4)(x)))"),
    "resnet.py": ("image", "resnet.ResidualBlock(8, strides=2)(x)"),
    "inception.py": ("image", "inception.InceptionModule(1, (1, 2), (1, 3), 4)(x)"),
}

_ALONE_SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys, traceback
    import keras
    import numpy as np
    assert importlib.util.find_spec("layers") is None
    data = {"image": (keras.Input((4, 4, 4)), np.random.rand(16, 4, 4, 4)),
            "ids": (keras.Input((5,), dtype="int32"), np.random.randint(0, 10, (16, 5)))}

    def train(module, kind, expression):
        x, inputs = data[kind]
        y = eval(expression, {"keras": keras, module: importlib.import_module(module), "x": x})
        y = keras.layers.Dense(2)(keras.layers.Flatten()(y) if len(y.shape) > 2 else y)
        model = keras.Model(x, y)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        before = [w.numpy().copy() for w in model.trainable_weights]
        loss = model.fit(inputs, np.arange(16) % 2, batch_size=8, verbose=0).history["loss"]
        changed = [not np.array_equal(b, w.numpy())
                   for b, w in zip(before, model.trainable_weights)]
        assert np.isfinite(loss).all() and all(changed), (loss, changed)

    results = {"backend": keras.backend.backend()}
    for folder, module, kind, code in json.loads(sys.argv[1]):
        sys.path.insert(0, folder)  # this file's folder alone, as the user's project
        try:
            if kind == "doc":  # a block of docs/layers.md, run as a user's script
                exec(code, {"__name__": "__main__"})
            else:
                train(module, kind, code)
            results[module] = "ok"
        except Exception:
            results[module] = traceback.format_exc()
        sys.path.remove(folder)
        for name, loaded in list(sys.modules.items()):  # gone, for the next file's import
            if (getattr(loaded, "__file__", None) or "").startswith(folder):
                del sys.modules[name]
    print(json.dumps(results))
    """
)


def _doc_blocks():
    """docs/layers.md's blocks marked `python backends`: (file they import, code)."""
    with open(os.path.join(LAYERS_DIR, os.pardir, "docs", "layers.md")) as f:
        blocks = re.findall(r"```python backends\n(.*?)```", f.read(), re.S)
    return [(re.search(r"^from (\w+) import", code, re.M).group(1) + ".py", code)
            for code in blocks]


@pytest.fixture(scope="module")
def copied_alone(tmp_path_factory):
    """{file: "ok" or its traceback}: each file copied into an empty folder of its own
    and trained there, in one interpreter that cannot import this project (under
    `make test-backends`, one where only keras and the backend are installed)."""
    jobs = []
    for filename, (kind, expression) in _ALONE.items():
        folder = tmp_path_factory.mktemp(filename[:-3])
        shutil.copy(os.path.join(LAYERS_DIR, filename), folder)
        assert os.listdir(folder) == [filename]
        jobs.append((str(folder), filename[:-3], kind, expression))
    for number, (filename, code) in enumerate(_doc_blocks()):
        folder = tmp_path_factory.mktemp(f"doc{number}")
        shutil.copy(os.path.join(LAYERS_DIR, filename), folder)
        jobs.append((str(folder), f"docs/layers.md block {number}", "doc", code))
    result = subprocess.run(
        [sys.executable, "-c", _ALONE_SCRIPT, json.dumps(jobs)], cwd=tmp_path_factory.mktemp(
            "elsewhere"), capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results.pop("backend") == keras.backend.backend()
    return {module if module.startswith("docs") else f"{module}.py": outcome
            for module, outcome in results.items()}


@pytest.mark.parametrize("filename", sorted(_ALONE))
@pytest.mark.slow
@pytest.mark.xdist_group("layers_alone")
def test_each_file_trains_copied_alone(filename, copied_alone):
    """One file in an empty folder, as a user copies it: nothing else of ours beside it."""
    assert copied_alone[filename] == "ok", copied_alone[filename]


@pytest.mark.slow
@pytest.mark.xdist_group("layers_alone")
def test_the_docs_backend_example_runs_beside_its_file(copied_alone):
    blocks = [name for name in copied_alone if name.startswith("docs/")]
    assert blocks, "docs/layers.md has no `python backends` block"
    for name in blocks:
        assert copied_alone[name] == "ok", copied_alone[name]
