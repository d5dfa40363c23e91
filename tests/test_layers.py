"""layers/: values, gradients, serialization, SavedModel, bfloat16, copy-alone.

One harness runs every layer through the same checks (as Keras's own
`run_layer_test` does); hand-computed values are checked layer by layer.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import keras
import tensorflow as tf

from layers.inception import InceptionModule
from layers.maxout import Maxout
from layers.resnet import ResidualBlock
from layers.swish import Swish
from layers.transformer import (
    MaskedAveragePooling1D, TokenAndPositionEmbedding, TransformerEncoder)
from layers.upsampling import ResizeConv2D, upsampling_block

LAYERS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "layers")
RNG = np.random.default_rng(0)


def _dense_maxout(dtype=None):
    inputs = keras.Input((6,))
    return keras.Model(inputs, Maxout(3, dtype=dtype)(keras.layers.Dense(6, dtype=dtype)(inputs)))


def _conv_maxout(dtype=None):
    inputs = keras.Input((5, 5, 2))
    x = keras.layers.Conv2D(4, 3, dtype=dtype)(inputs)
    return keras.Model(inputs, Maxout(2, dtype=dtype)(x))


def _swish(**options):
    def build(dtype=None):
        inputs = keras.Input((3, 4))
        x = keras.layers.Dense(4, dtype=dtype)(inputs)
        return keras.Model(inputs, Swish(dtype=dtype, **options)(x))
    return build


def _upsample(kind):
    def build(dtype=None):
        inputs = keras.Input((4, 4, 3))
        return keras.Model(inputs, upsampling_block(kind, 5, activation="relu", dtype=dtype)(inputs))
    return build


def _encoder(dtype=None):
    inputs = keras.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(20, 8, 8, dtype=dtype)(inputs)
    x = TransformerEncoder(2, 16, dropout=0.1, dtype=dtype)(x)
    x = TransformerEncoder(2, 16, dropout=0.0, dtype=dtype)(x)
    return keras.Model(inputs, MaskedAveragePooling1D(dtype=dtype)(x))


def _residual(**options):
    def build(dtype=None):
        inputs = keras.Input((6, 6, 3))
        x = ResidualBlock(3, dtype=dtype, **options)(inputs)  # identity shortcut
        return keras.Model(inputs, ResidualBlock(5, strides=2, dtype=dtype)(x))  # projection
    return build


def _inception(factorize):
    def build(dtype=None):
        inputs = keras.Input((5, 5, 3))
        return keras.Model(inputs, InceptionModule(2, (2, 3), (2, 2), 2, factorize=factorize,
                                                   dtype=dtype)(inputs))
    return build


CASES = {
    "maxout_dense": (_dense_maxout, RNG.normal(size=(3, 6))),
    "maxout_conv": (_conv_maxout, RNG.normal(size=(2, 5, 5, 2))),
    "swish_trainable": (_swish(beta=1.5), RNG.normal(size=(2, 3, 4))),
    "swish_per_channel": (_swish(per_channel=True), RNG.normal(size=(2, 3, 4))),
    "swish_fixed": (_swish(beta=1.0, trainable_beta=False), RNG.normal(size=(2, 3, 4))),
    "resize_nearest": (_upsample("resize_nearest"), RNG.normal(size=(2, 4, 4, 3))),
    "resize_bilinear": (_upsample("resize_bilinear"), RNG.normal(size=(2, 4, 4, 3))),
    "transposed": (_upsample("transposed"), RNG.normal(size=(2, 4, 4, 3))),
    "transformer": (_encoder, np.array([[3, 4, 5, 0, 0, 0], [7, 1, 2, 9, 11, 0]])),
    "residual": (_residual(), RNG.normal(size=(2, 6, 6, 3))),
    "inception": (_inception(False), RNG.normal(size=(2, 5, 5, 3))),
    "inception_factorized": (_inception(True), RNG.normal(size=(2, 5, 5, 3))),
}


def _model(name, dtype=None):
    keras.utils.set_random_seed(1)
    build, x = CASES[name]
    model = build(dtype)
    x = x.astype("int32") if x.dtype.kind == "i" else x.astype("float32")
    return model, x


def _perturb(model):
    """Move weights off their initial values so round trips are not trivially equal."""
    for weight in model.weights:
        weight.assign(weight.numpy() + RNG.normal(scale=0.1, size=weight.shape))


# --- hand-computed values ---------------------------------------------------


def test_maxout_values():
    x = np.array([[1.0, 5.0, -2.0, 3.0, 0.5, -1.0]], "float32")
    np.testing.assert_allclose(Maxout(3)(x), [[5.0, 3.0, 0.5]])
    np.testing.assert_allclose(Maxout(1)(x), [[5.0]])
    image = np.arange(8, dtype="float32").reshape(1, 1, 2, 4)  # channels [0..3], [4..7]
    np.testing.assert_allclose(Maxout(2)(image), [[[[1.0, 3.0], [5.0, 7.0]]]])


def test_swish_values():
    x = np.array([-2.0, 0.0, 1.0, 3.0], "float32")
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    np.testing.assert_allclose(Swish(1.0)(x), x * sigmoid(x), rtol=1e-6)
    np.testing.assert_allclose(Swish(2.0)(x), x * sigmoid(2 * x), rtol=1e-6)
    np.testing.assert_allclose(Swish(0.0)(x), x / 2, rtol=1e-6)
    per_channel = Swish(1.0, per_channel=True)
    per_channel.build((None, 4))
    per_channel.beta.assign([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(per_channel(x[None]), [x * sigmoid(x * [0, 1, 2, 3])], rtol=1e-6)
    assert len(Swish(trainable_beta=False).trainable_weights) == 0


def test_resize_conv_values():
    layer = ResizeConv2D(1, 1, size=2, use_bias=False, kernel_initializer="ones")
    x = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]], "float32")
    np.testing.assert_allclose(
        layer(x)[0, :, :, 0],
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
    )
    bilinear = ResizeConv2D(1, 1, interpolation="bilinear", use_bias=False,
                            kernel_initializer="ones")
    row = bilinear(np.array([[[[0.0], [4.0]]]], "float32"))[0, 0, :, 0]
    np.testing.assert_allclose(row, [0.0, 1.0, 3.0, 4.0])  # half-pixel centres


def test_upsampling_kinds_match_shape_and_parameters():
    x = np.zeros((2, 7, 7, 6), "float32")
    shapes, params = set(), set()
    for kind in ("transposed", "resize_nearest", "resize_bilinear"):
        layer = upsampling_block(kind, 4)
        shapes.add(tuple(layer(x).shape))
        params.add(layer.count_params())
        assert tuple(layer.compute_output_shape(x.shape)) == (2, 14, 14, 4)
    assert shapes == {(2, 14, 14, 4)} and params == {3 * 3 * 6 * 4 + 4}


def test_token_and_position_embedding_values():
    layer = TokenAndPositionEmbedding(5, 4, 2)
    layer.build((None, 3))
    layer.token_embeddings.assign(np.arange(10, dtype="float32").reshape(5, 2))
    layer.position_embeddings.assign(np.full((4, 2), 100.0, "float32") * [[1], [2], [3], [4]])
    ids = np.array([[4, 1, 0]])
    np.testing.assert_allclose(layer(ids), [[[108, 109], [202, 203], [300, 301]]])
    np.testing.assert_array_equal(layer.compute_mask(ids), [[True, True, False]])


def test_masked_average_pooling_values():
    x = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]] * 2, "float32")
    mask = np.array([[True, True, False], [False, False, False]])
    np.testing.assert_allclose(MaskedAveragePooling1D()(x, mask=mask), [[2.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(MaskedAveragePooling1D()(x)[0], [104 / 3, 106 / 3], rtol=1e-6)


def test_residual_block_adds_its_shortcut():
    block = ResidualBlock(2, kernel_initializer="zeros")  # the convolutions contribute 0
    x = np.abs(RNG.normal(size=(1, 3, 3, 2))).astype("float32")
    np.testing.assert_allclose(block(x), x, rtol=1e-6)  # relu(0 + x) = x
    assert not block.projection
    projected = ResidualBlock(4, strides=2)
    assert projected(x).shape == (1, 2, 2, 4) and projected.projection
    assert projected.compute_output_shape((None, 3, 3, 2)) == (None, 2, 2, 4)


def test_inception_module_concatenates_its_branches():
    module = InceptionModule(1, (2, 3), (1, 4), 5)
    x = RNG.normal(size=(2, 7, 7, 3)).astype("float32")
    assert module(x).shape == (2, 7, 7, 13) == module.compute_output_shape(x.shape)
    kernels = [conv.kernel.shape for conv in module.convs]
    assert kernels == [(1, 1, 3, 1), (1, 1, 3, 2), (3, 3, 2, 3), (1, 1, 3, 1), (5, 5, 1, 4),
                       (1, 1, 3, 5)]
    factorized = InceptionModule(1, (2, 3), (1, 4), 5, factorize=True)
    factorized(x)
    assert [c.kernel.shape for c in factorized.convs][4:6] == [(3, 3, 1, 1), (3, 3, 1, 4)]
    assert factorized.count_params() < module.count_params()


def test_transformer_answers_a_fully_padded_sequence():
    model, _ = _model("transformer")
    assert np.isfinite(model(np.zeros((2, 5), "int32"))).all()


def test_transformer_ignores_padding():
    model, _ = _model("transformer")
    short = np.array([[3, 4, 5, 0], [7, 1, 2, 9]], "int32")
    padded = np.pad(short, ((0, 0), (0, 4)))
    np.testing.assert_allclose(model(short), model(padded), atol=1e-5)
    changed = padded.copy()
    changed[0, 1] = 6  # a real token changes the output
    assert np.abs(model(changed)[0] - model(padded)[0]).max() > 1e-4


# --- the harness: every case ------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_trainable_weight(name):
    model, x = _model(name)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None, weight.path
        assert float(tf.reduce_max(tf.abs(grad))) > 0, weight.path


def _ours(model):
    """The model's layers that come from layers/ (not Keras's own)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if type(layer).__module__.startswith("layers.")]


def _weights(model):
    """What a round trip must keep: each weight's path, shape and trainability."""
    return [(w.path, tuple(w.shape), w.trainable) for w in model.weights]


@pytest.mark.parametrize("name", CASES)
def test_config_round_trip(name):
    model, x = _model(name)
    _perturb(model)
    for layer in _ours(model):
        config = layer.get_config()
        # every argument the constructor takes is in the config, with its value
        arguments = [p for p in inspect.signature(type(layer).__init__).parameters.values()
                     if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
        missing = [p.name for p in arguments if p.name not in config]
        assert not missing, f"{type(layer).__name__}.get_config() leaves out {missing}"
        clone = layer.__class__.from_config(config)
        assert clone.get_config() == config
        json.dumps(keras.saving.serialize_keras_object(layer))
    clone = keras.Model.from_config(model.get_config())
    assert _weights(clone) == _weights(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_keras_file_round_trip(name, tmp_path):
    model, x = _model(name)
    _perturb(model)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert _weights(reloaded) == _weights(model)  # trainable ones stay trainable, and only they
    np.testing.assert_array_equal(reloaded(x), model(x))


@pytest.mark.parametrize("name", CASES)
def test_compute_output_shape_matches_what_the_layer_outputs(name):
    """Each layer's declared output shape against its real output, on real inputs
    (masks included, where the model carries one)."""
    model, x = _model(name)
    for layer in _ours(model):
        # (a layer given a mask has it as a second input)
        given = layer.input[0] if isinstance(layer.input, list) else layer.input
        seen = keras.Model(model.inputs, [given, layer.output])(x)
        assert tuple(layer.compute_output_shape(tuple(seen[0].shape))) == tuple(
            seen[1].shape), type(layer).__name__


@pytest.mark.parametrize("make, built_on, called_on", [
    (lambda: Swish(per_channel=True), (2, 4), (2, 1)),
    (lambda: Maxout(3), (2, 6), (2, 4)),
    (lambda: ResidualBlock(4), (1, 6, 6, 3), (1, 6, 6, 5)),
    (lambda: InceptionModule(2, (2, 3), (2, 2), 2), (1, 5, 5, 3), (1, 5, 5)),
    (lambda: TransformerEncoder(2, 8), (1, 3, 8), (1, 3, 6)),
    (lambda: MaskedAveragePooling1D(), (1, 3, 8), (1, 8)),
    (lambda: TokenAndPositionEmbedding(10, 5, 4), (1, 5), (1, 5, 1)),
])
def test_a_layer_refuses_inputs_unlike_those_it_was_built_for(make, built_on, called_on):
    """InputSpec, as Keras's own layers declare it: a wrong shape is an error, not a
    silently broadcast output."""
    layer = make()
    dtype = "int32" if isinstance(layer, TokenAndPositionEmbedding) else "float32"
    layer(np.ones(built_on, dtype))
    with pytest.raises(ValueError, match="is incompatible with the layer"):
        layer(np.ones(called_on, dtype))


def test_swish_keeps_its_regularizer_and_constraint_through_a_keras_file(tmp_path):
    inputs = keras.Input((4,))
    layer = Swish(per_channel=True, beta_regularizer=keras.regularizers.L2(0.01),
                  beta_constraint=keras.constraints.NonNeg())
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "swish.keras")
    reloaded = keras.saving.load_model(tmp_path / "swish.keras").layers[-1]
    assert isinstance(reloaded.beta_regularizer, keras.regularizers.L2)
    assert reloaded.beta_regularizer.l2 == pytest.approx(0.01)
    assert isinstance(reloaded.beta_constraint, keras.constraints.NonNeg)
    assert reloaded.losses and float(reloaded.losses[0]) == pytest.approx(0.01 * 4)


@pytest.mark.parametrize("name", CASES)
def test_mixed_bfloat16(name):
    policy = keras.dtype_policies.DTypePolicy("mixed_bfloat16")
    model, x = _model(name, dtype=policy)
    y = model(x, training=True)
    assert y.dtype == tf.bfloat16
    assert np.isfinite(np.asarray(y, "float32")).all()
    assert all(w.dtype == "float32" for w in model.weights)


@pytest.fixture(scope="module")
def saved_model_outputs(tmp_path_factory):
    """Export every case, reload all in ONE fresh interpreter that cannot see layers/."""
    root = tmp_path_factory.mktemp("saved")
    expected = {}
    for name in CASES:
        model, x = _model(name)
        _perturb(model)
        model.export(str(root / name), format="tf_saved_model", verbose=False)
        np.save(root / f"{name}.input.npy", x)
        expected[name] = np.asarray(model(x))
    script = textwrap.dedent(
        """
        import importlib.util, os, sys
        import numpy as np, tensorflow as tf
        assert importlib.util.find_spec("layers") is None, "layers/ must not be importable"
        root = sys.argv[1]
        for name in sys.argv[2:]:
            loaded = tf.saved_model.load(os.path.join(root, name))
            x = np.load(os.path.join(root, name + ".input.npy"))
            np.save(os.path.join(root, name + ".output.npy"), loaded.serve(tf.constant(x)).numpy())
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, str(root), *CASES],
        cwd=root, check=True, env={**os.environ, "PYTHONPATH": ""},
    )
    return {name: (expected[name], np.load(root / f"{name}.output.npy")) for name in CASES}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
@pytest.mark.xdist_group("layers_saved_model")
def test_saved_model_in_fresh_interpreter(name, saved_model_outputs):
    expected, served = saved_model_outputs[name]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_layer_files_import_only_keras_and_stdlib():
    allowed = {"keras", "math"}
    files = [f for f in os.listdir(LAYERS_DIR) if f.endswith(".py") and f != "__init__.py"]
    assert len(files) == 6
    for filename in sorted(files):
        with open(os.path.join(LAYERS_DIR, filename)) as f:
            for line in f:
                if line.startswith(("import ", "from ")):
                    assert line.split()[1].split(".")[0] in allowed, (filename, line)


# --- invalid arguments name the argument and the value -----------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Maxout(0), "num_units=0"),
        (lambda: Maxout(3)(np.zeros((1, 4), "float32")), "channels=4, num_units=3"),
        (lambda: Swish(beta="one"), "beta=one"),
        (lambda: ResizeConv2D(4, interpolation="bicubic"), "interpolation='bicubic'"),
        (lambda: ResizeConv2D(4, size=0), "size="),
        (lambda: upsampling_block("pixel_shuffle", 4), "kind='pixel_shuffle'"),
        (lambda: TokenAndPositionEmbedding(0, 4, 4), "vocabulary_size=0"),
        (lambda: TokenAndPositionEmbedding(10, 4, -1), "embedding_dim=-1"),
        (lambda: TransformerEncoder(0, 8), "num_heads=0"),
        (lambda: TransformerEncoder(2, 8, dropout=1.5), "dropout=1.5"),
        (lambda: TransformerEncoder(3, 8)(np.zeros((1, 2, 4), "float32")),
         "embedding_dim=4, num_heads=3"),
        (lambda: ResidualBlock(0), "filters=0"),
        (lambda: ResidualBlock(8, strides=1.5), "strides=1.5"),
        (lambda: ResidualBlock(8)(np.zeros((1, 4, 4), "float32")), "input_shape=(1, 4, 4)"),
        (lambda: InceptionModule(0, (1, 2), (1, 2), 1), "filters_1x1=0"),
        (lambda: InceptionModule(1, 2, (1, 2), 1), "filters_3x3=2"),
        (lambda: InceptionModule(1, (1, 2), (1, 0), 1), "filters_5x5=(1, 0)"),
    ],
)
def test_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()
