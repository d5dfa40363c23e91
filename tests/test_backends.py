"""The recipes' networks on JAX and PyTorch, and .keras files from TensorFlow on both.

Each recipe's `build_model` (the network alone, without TensorFlow-only
preprocessing such as TextVectorization, which stays outside it) is built and
fitted a few steps under `KERAS_BACKEND=jax` and `torch`, each in a process of
its own; the same networks saved as `.keras` files under TensorFlow are loaded
there and must predict what TensorFlow predicted.

The recipes import TensorFlow for their data and export, so this runs in the
project's environment with the backends added (`make test-backends` installs
requirements-jax.txt and requirements-torch.txt); where a backend is not
installed its tests skip. The layers alone, with nothing but keras and the
backend installed, are tests/test_layer_harness.py's subject.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

BACKENDS = ("jax", "torch")

# name -> (recipe module, build_model's arguments, input kind, number of classes)
NETWORKS = {
    "cnn_plain": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3, filters=(8, 16),
                              augment=True), "image", 3),
    "cnn_maxout": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3, filters=(8,),
                               activation="maxout"), "image", 3),
    "cnn_swish": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3, filters=(8,),
                              activation="swish"), "image", 3),
    "cnn_prelu": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3, filters=(8,),
                              activation="prelu"), "image", 3),
    "cnn_lenet5": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3,
                               architecture="lenet5"), "image", 3),
    "cnn_resnet": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3,
                               architecture="resnet"), "image", 3),
    "cnn_inception": ("cnn", dict(input_shape=(28, 28, 1), num_classes=3,
                                  architecture="inception"), "image", 3),
    "upsampling_transposed": ("upsampling", dict(input_shape=(28, 28, 1), filters=(8, 16),
                                                 decoder="transposed"), "image", None),
    "upsampling_bilinear": ("upsampling", dict(input_shape=(28, 28, 1), filters=(8, 16),
                                               decoder="resize_bilinear"), "image", None),
    "rnn_lstm": ("rnn_text", dict(vocabulary_size=50, sequence_length=12, num_classes=3),
                 "ids", 3),
    "rnn_gru": ("rnn_text", dict(vocabulary_size=50, sequence_length=12, num_classes=3,
                                 cell="gru", bidirectional=False), "ids", 3),
    "cnn_text": ("cnn_text", dict(vocabulary_size=50, sequence_length=12, num_classes=3),
                 "ids", 3),
    "transformer_text": ("transformer_text", dict(vocabulary_size=50, sequence_length=12,
                                                  num_classes=3), "ids", 3),
    "ngram_text": ("ngram_text", dict(vocabulary_size=50, num_classes=3), "tf_idf", 3),
}

_SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import keras
    import numpy as np

    networks, folder = json.loads(sys.argv[1]), sys.argv[2]
    results = {"backend": keras.backend.backend()}
    for name, (module, arguments, kind, classes) in networks.items():
        recipe = importlib.import_module("recipes." + module)
        x = np.load(f"{folder}/{name}.x.npy")
        # the .keras file saved under TensorFlow predicts the same here (training=False:
        # Keras's random augmentation layers act in any call that does not say so)
        loaded = keras.saving.load_model(f"{folder}/{name}.keras")  # safe mode
        expected = np.load(f"{folder}/{name}.y.npy")
        predicted = keras.ops.convert_to_numpy(loaded(x, training=False))
        difference = float(np.abs(predicted - expected).max())
        # build_model builds on this backend and trains a few steps
        keras.utils.set_random_seed(0)
        model = recipe.build_model(**arguments)
        if classes is None:  # the autoencoder reconstructs its input
            loss, y = "mse", x.astype("float32") / 255
        else:
            loss, y = "sparse_categorical_crossentropy", np.arange(len(x)) % classes
        model.compile(keras.optimizers.Adam(0.01), loss)
        before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
        history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history["loss"]
        changed = sum(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                      for b, w in zip(before, model.trainable_weights))
        results[name] = {"difference": difference, "loss": history[-1],
                         "changed": changed, "weights": len(before),
                         "same_weights_as_tf": [tuple(w.shape) for w in model.weights]
                         == [tuple(w.shape) for w in loaded.weights]}
    print(json.dumps(results))
    """
)


def _inputs(kind, rng):
    if kind == "image":
        return rng.integers(0, 256, (8, 28, 28, 1)).astype("uint8")
    if kind == "ids":
        ids = rng.integers(1, 50, (8, 12))
        ids[:, 9:] = 0  # padding, which the masks must honour on every backend
        return ids.astype("int64")
    return rng.random((8, 50)).astype("float32")


@pytest.fixture(scope="module")
def saved_on_tensorflow(tmp_path_factory):
    """Each network built, perturbed off its initial weights and saved as .keras on
    TensorFlow, with an input and TensorFlow's prediction for it."""
    assert keras.backend.backend() == "tensorflow"
    import importlib

    folder = tmp_path_factory.mktemp("tf_keras")
    rng = np.random.default_rng(0)
    for name, (module, arguments, kind, _) in NETWORKS.items():
        keras.utils.set_random_seed(0)
        model = importlib.import_module(f"recipes.{module}").build_model(**arguments)
        for weight in model.weights:  # trained-like weights, not the initial ones
            if weight.trainable:
                weight.assign(weight.numpy() + rng.normal(scale=0.05, size=weight.shape))
        x = _inputs(kind, rng)
        model.save(folder / f"{name}.keras")
        np.save(folder / f"{name}.x.npy", x)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        np.save(folder / f"{name}.y.npy", expected)
    return folder


@pytest.fixture(scope="module")
def on_backend(request):
    """backend -> {network: what the script measured}, one process per backend."""
    runs = {}

    def run(backend):
        if importlib.util.find_spec(backend) is None:
            pytest.skip(f"{backend} is not installed here (make test-backends installs it)")
        if backend not in runs:
            folder = request.getfixturevalue("saved_on_tensorflow")
            result = subprocess.run(
                [sys.executable, "-c", _SCRIPT, json.dumps(NETWORKS), str(folder)],
                capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
            assert result.returncode == 0, result.stderr[-3000:]
            runs[backend] = json.loads(result.stdout.strip().splitlines()[-1])
            assert runs[backend].pop("backend") == backend
        return runs[backend]
    return run


# one worker per backend under xdist
ON_EACH_BACKEND = pytest.mark.parametrize("backend", [
    pytest.param(backend, marks=pytest.mark.xdist_group(f"backend_{backend}"))
    for backend in BACKENDS])


@pytest.mark.slow
@ON_EACH_BACKEND
@pytest.mark.parametrize("name", NETWORKS)
def test_build_model_trains_on_the_backend(backend, name, on_backend):
    result = on_backend(backend)[name]
    assert np.isfinite(result["loss"])
    assert result["changed"] == result["weights"] > 0  # every trainable weight moved


@pytest.mark.slow
@ON_EACH_BACKEND
@pytest.mark.parametrize("name", NETWORKS)
def test_keras_file_from_tensorflow_predicts_the_same(backend, name, on_backend):
    result = on_backend(backend)[name]
    assert result["same_weights_as_tf"]
    assert result["difference"] <= 1e-5, result["difference"]
