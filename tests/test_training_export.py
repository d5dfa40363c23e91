"""Shared conventions: run directories, config flags, resume, versioned export."""

import dataclasses
import gc
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from core import config, data, export, runs, training


def _tiny_model():
    inputs = keras.Input((3,), name="x")
    outputs = keras.layers.Dense(2, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _serve(model):
    return lambda x: {"probabilities": model(x), "label": tf.argmax(model(x), axis=-1)}


def _export(model, root):
    return export.export_savedmodel(
        model, "tiny", {"x": tf.TensorSpec((None, 3), tf.float32)}, _serve(model), root=root)


def test_run_dirs_are_never_reused(tmp_path):
    first = runs.new_run_dir(str(tmp_path), "cnn")
    second = runs.new_run_dir(str(tmp_path), "cnn")
    assert first != second and os.path.isdir(first) and os.path.isdir(second)


def test_start_run_saves_config_and_resume_needs_a_run(tmp_path):
    @dataclasses.dataclass
    class Model:
        units: int = 4

    train = config.TrainConfig(runs_dir=str(tmp_path), precision="float32")
    run_dir = runs.start_run("demo", Model(), train)
    with open(os.path.join(run_dir, "config.json")) as f:
        record = json.load(f)
    assert record["model"] == {"units": 4}
    assert record["train"]["precision_resolved"] == "float32"
    assert runs.start_run("demo", Model(), train, resume=run_dir) == run_dir
    with pytest.raises(config.ConfigError, match="not a run directory"):
        runs.start_run("demo", Model(), train, resume=str(tmp_path))
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be >= 1"),
    ("batch_size", 0, "batch_size must be >= 1"),
    ("learning_rate", -1.0, "learning_rate must be > 0"),
    ("validation_percent", 100, "validation_percent"),
    ("precision", "float8", "precision must be one of"),
    ("train_percent", 0, "train_percent must be between 1 and 100"),
    ("train_percent", 101, "train_percent must be between 1 and 100"),
    ("schedule", "step", "schedule must be one of"),
    ("optimizer", "rmsprop", "optimizer must be one of"),
    ("label_smoothing", 1.0, "label_smoothing must be in"),
    ("label_smoothing", -0.1, "label_smoothing must be in"),
    ("ema", 1.0, "ema must be in"),
])
def test_bad_training_config(field, value, message):
    with pytest.raises(config.ConfigError, match=message):
        config.validate(dataclasses.replace(config.TrainConfig(), **{field: value}))


def test_optimizer_flag_picks_the_optimizer_and_keeps_the_other_options():
    adam = training.optimizer(config.TrainConfig(learning_rate=0.02))
    assert isinstance(adam, keras.optimizers.Adam)
    sgd = training.optimizer(config.TrainConfig(optimizer="sgd", learning_rate=30.0,
                                                clipnorm=2.0, ema=0.9))
    assert type(sgd) is keras.optimizers.SGD and sgd.nesterov and sgd.momentum == 0.9
    assert float(sgd.learning_rate) == 30.0
    assert (sgd.clipnorm, sgd.use_ema, sgd.ema_momentum) == (2.0, True, 0.9)


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: True)
    assert config.resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: False)
    assert config.resolve_precision("auto") == "float32"
    assert config.resolve_precision("float32") == "float32"


def test_flags_cover_every_field():
    @dataclasses.dataclass
    class Model:
        filters: tuple = (8, 16)
        batch_norm: bool = True

    parser = config.parser("demo", "demo", Model)
    args = parser.parse_args(["--filters", "4,5,6", "--no-batch-norm", "--epochs", "2"])
    model, train = config.split_args(args, Model)
    assert model == Model(filters=(4, 5, 6), batch_norm=False)
    assert train.epochs == 2 and train.dataset == "fashion_mnist"


def test_export_versions_never_overwrite(tmp_path):
    model = _tiny_model()
    first = _export(model, str(tmp_path))
    assert first == str(tmp_path / "tiny" / "1")
    marker = os.path.join(first, "saved_model.pb")
    before = (os.path.getmtime(marker), os.path.getsize(marker))
    os.makedirs(tmp_path / "tiny" / "7")  # a version made by someone else
    second = _export(model, str(tmp_path))
    assert second == str(tmp_path / "tiny" / "8")
    assert (os.path.getmtime(marker), os.path.getsize(marker)) == before
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1", "7", "8"]  # no temporary left


def test_next_version_ignores_non_numeric(tmp_path):
    for name in ("2", "10", ".incomplete-x", "notes"):
        os.makedirs(tmp_path / name)
    assert export.next_version(str(tmp_path)) == 11
    assert export.next_version(str(tmp_path / "absent")) == 1


@pytest.mark.slow
def test_named_signature_and_fresh_process_check(tmp_path):
    model = _tiny_model()
    path = _export(model, str(tmp_path))
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["x"]
    assert set(signature.structured_outputs) == {"probabilities", "label"}
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    expected = {key: value.numpy() for key, value in _serve(model)(x).items()}
    export.verify_in_fresh_process(path, {"x": x}, expected)
    expected["label"] = 1 - expected["label"]
    with pytest.raises(AssertionError, match="label"):
        export.verify_in_fresh_process(path, {"x": x}, expected)


def test_learning_rate_cut_only_when_asked(tmp_path):
    names = lambda cbs: [type(cb).__name__ for cb in cbs]  # noqa: E731
    assert "ReduceLROnPlateau" not in names(training.callbacks(str(tmp_path), 3))
    plateau = training.callbacks(str(tmp_path), 4, "val_accuracy", lr_patience=2)[0]
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert plateau.patience == 2 and plateau.monitor == "val_accuracy"
    with pytest.raises(config.ConfigError, match="lr_patience"):
        config.validate(dataclasses.replace(config.TrainConfig(), lr_patience=-1))


def test_cosine_schedule_warms_up_for_an_epoch_then_decays_to_zero_at_the_last_epoch():
    train = config.TrainConfig(schedule="cosine", learning_rate=0.004, epochs=10)
    schedule = training.optimizer(train, steps_per_epoch=50).learning_rate
    rate = lambda step: float(training.learning_rate(train, 50)(step))  # noqa: E731
    assert rate(0) == 0.0 and rate(25) == pytest.approx(0.002)
    assert rate(50) == pytest.approx(0.004)  # the peak, after one epoch
    assert rate(50 + 225) == pytest.approx(0.002, rel=1e-3)  # half-way through the decay
    assert rate(500) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule) == 0.0  # the optimizer follows it: step 0, warm-up begins at 0
    assert float(training.optimizer(config.TrainConfig()).learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="steps per epoch"):
        training.learning_rate(train)
    with pytest.raises(config.ConfigError, match="cannot be combined with --lr-patience"):
        config.validate(dataclasses.replace(train, lr_patience=2))


def _func_graphs():
    from tensorflow.python.framework import func_graph

    return sum(isinstance(o, func_graph.FuncGraph) for o in gc.get_objects())


def test_released_graphs_drops_each_models_gradient_entries_and_traced_graphs():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def train_one():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)

    with training.released_graphs():  # warm-up: TF's own one-off graphs
        train_one()
    registry, graphs = len(training._gradient_registry()), _func_graphs()
    for _ in range(3):
        with training.released_graphs():
            train_one()
    assert len(training._gradient_registry()) == registry
    assert _func_graphs() <= graphs
    # Without it, each traced train step stays registered (the leak it works around).
    keras.backend.clear_session()
    train_one()
    keras.backend.clear_session()
    assert len(training._gradient_registry()) > registry


def test_train_percent_draws_a_seeded_subset_of_train_only():
    def texts(**fields):
        train = config.TrainConfig(dataset="rt_snippets", **fields)
        return [t for t, _ in data.training_examples(train).as_numpy_iterator()]

    everything = texts()
    tenth, again, other = (texts(train_percent=10, seed=s) for s in (1, 1, 2))
    assert len(tenth) == round(len(everything) / 10)
    assert tenth == again and tenth != other  # drawn with the seed
    assert set(tenth) <= set(everything) and len(set(tenth)) > 0.95 * len(tenth)
    assert tenth[:20] != everything[:20]  # a random subset, not the first films
    _, val, test, n = data.splits(
        config.TrainConfig(dataset="rt_snippets", train_percent=10, batch_size=512))
    whole = data.splits(config.TrainConfig(dataset="rt_snippets", batch_size=512))
    assert n == len(tenth)
    assert [data.count(ds.unbatch()) for ds in (val, test)] == [
        data.count(ds.unbatch()) for ds in whole[1:3]]


def test_several_replicas_get_whole_global_batches_and_too_little_data_is_refused(
        monkeypatch):
    # A short last batch split across replicas can leave one of them an empty
    # batch, which oneDNN's convolution answers with the wrong shape
    # (tests/test_distributed.py runs the real thing on two logical CPUs).
    from core import distribute
    monkeypatch.setattr(distribute, "replicas", lambda strategy: 2)
    train, val, test, n = data.splits(
        config.TrainConfig(dataset="fashion_mnist", limit=257, batch_size=32))
    assert n == 257
    assert [data.count(ds) for ds in (train, val)] == [4, 4]  # 257 // 64, the last one left out
    assert {int(x.shape[0]) for x, _ in train} == {int(x.shape[0]) for x, _ in val} == {64}
    assert data.count(test.unbatch()) == 257  # the test split, read outside the strategy, whole
    with pytest.raises(data.DatasetError, match=(
            "40 training examples, fewer than one global batch of 64 "
            r"\(32 for each of 2 replicas\); use a smaller --batch-size")):
        data.splits(config.TrainConfig(dataset="fashion_mnist", limit=40, batch_size=32))


def test_epoch_clock_leaves_validation_out():
    import time

    class SlowValidation(keras.callbacks.Callback):
        def on_test_end(self, logs=None):
            time.sleep(0.5)

    model, clock = _tiny_model(), training.EpochClock()
    x, y = np.zeros((64, 3), "float32"), np.zeros(64, "int64")
    started = time.perf_counter()
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
              callbacks=[clock, SlowValidation()])
    wall = time.perf_counter() - started
    assert len(clock.seconds) == 2 and 0 < clock.seconds[0] < clock.seconds[1]
    assert clock.steps == [2, 2]  # 64 examples in batches of 32
    assert 0 < clock.seconds_per_step() < (clock.seconds[1] - clock.seconds[0])
    assert clock.seconds[1] < wall - 1.0  # two half-second validations left out


def test_pipeline_batches_reshuffles_and_runs_without_the_autotuner():
    ds = tf.data.Dataset.range(10).map(lambda i: (i, i % 2))
    train = data.pipeline(ds, 4, shuffle=True, seed=1)
    epochs = [[x.numpy().tolist() for x, _ in train] for _ in range(2)]
    assert [len(batch) for batch in epochs[0]] == [4, 4, 2]
    assert sorted(sum(epochs[0], [])) == list(range(10))  # each example once
    assert epochs[0] != epochs[1]  # reshuffled every epoch
    # The autotuner's thread can stall the end of an epoch (data.pipeline).
    assert train.options().autotune.enabled is False
    assert data.pipeline(ds, 4, limit=3).options().autotune.enabled is False


def test_a_version_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """No empty placeholder: the rename that publishes a version lands on a free name."""
    published, real_rename = [], os.rename

    def watching_rename(src, dst):
        published.append((os.path.basename(dst), os.path.exists(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", watching_rename)
    _export(_tiny_model(), str(tmp_path))
    assert published == [("1", False)]
    assert os.path.isfile(tmp_path / "tiny" / "1" / "saved_model.pb")


@pytest.mark.slow
def test_export_is_checked_against_the_trained_model(tmp_path):
    model = _tiny_model()
    x = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    sample, own = {"x": x}, {"probabilities": model(x).numpy()}
    export.export_savedmodel(model, "tiny", {"x": tf.TensorSpec((None, 3), tf.float32)},
                             _serve(model), root=str(tmp_path), sample=sample, predictions=own)
    wrong = {"probabilities": own["probabilities"] + 0.01}
    with pytest.raises(AssertionError, match="against the trained model"):
        export.export_savedmodel(model, "tiny", {"x": tf.TensorSpec((None, 3), tf.float32)},
                                 _serve(model), root=str(tmp_path), sample=sample,
                                 predictions=wrong)
    # checked before it is published: a failed export leaves no version, and no staging
    assert sorted(os.listdir(tmp_path / "tiny")) == ["1"]


def test_export_is_checked_against_the_function_it_was_written_from(tmp_path, monkeypatch):
    """Without the trained model's answers, the reloaded SavedModel must still answer
    its sample as the serving function did here: a reload that drifts is refused."""
    model = _tiny_model()
    x = np.random.default_rng(3).normal(size=(4, 3)).astype("float32")
    reloaded = export.serve_many_in_fresh_process

    def drifted(path, requests, **kwargs):
        answers = reloaded(path, requests, **kwargs)
        answers["saved_model"]["probabilities"] += 1e-3
        return answers

    monkeypatch.setattr(export, "serve_many_in_fresh_process", drifted)
    with pytest.raises(AssertionError, match="probabilities: differs by 1.00e-03"):
        export.export_savedmodel(model, "tiny", {"x": tf.TensorSpec((None, 3), tf.float32)},
                                 _serve(model), root=str(tmp_path), sample={"x": x})
    assert os.listdir(tmp_path / "tiny") == []


def test_a_number_taken_meanwhile_is_skipped_not_overwritten(tmp_path, monkeypatch):
    taken = tmp_path / "tiny" / "1"
    taken.mkdir(parents=True)
    (taken / "saved_model.pb").write_text("another exporter's")
    stale = iter([1])  # the number this exporter chose before the other published it
    real_next_version = export.next_version
    monkeypatch.setattr(export, "next_version",
                        lambda model_dir: next(stale, None) or real_next_version(model_dir))
    assert _export(_tiny_model(), str(tmp_path)) == str(tmp_path / "tiny" / "2")
    assert (taken / "saved_model.pb").read_text() == "another exporter's"


def test_label_smoothing_is_keras_categorical_smoothing_on_integer_labels():
    """The loss equals Keras's categorical cross-entropy with smoothing on one-hot
    labels, labels of shape (n,) or (n, 1) alike; 0 keeps the recipe's own loss;
    a config round trip keeps the smoothing."""
    rng = np.random.default_rng(0)
    probabilities = keras.ops.softmax(5 * rng.normal(size=(8, 5)).astype("float32"))
    labels = rng.integers(0, 5, 8)
    loss = training.loss("sparse_categorical_crossentropy", 0.2)
    want = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)(
        keras.ops.one_hot(labels, 5), probabilities)
    for shape in ((8,), (8, 1)):
        np.testing.assert_allclose(loss(labels.reshape(shape), probabilities), want, rtol=1e-6)
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    assert abs(float(want) - float(plain)) > 0.01  # the smoothing changes the loss
    clone = type(loss).from_config(loss.get_config())
    assert clone.label_smoothing == 0.2
    assert training.loss("sparse_categorical_crossentropy", 0.0) == "sparse_categorical_crossentropy"
    with pytest.raises(config.ConfigError, match="--label-smoothing applies to classifiers"):
        training.loss("mse", 0.1)


def _ema_model(train):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(training.optimizer(train), "sparse_categorical_crossentropy")
    return model


def test_ema_trains_raw_weights_and_ends_with_their_average_also_after_a_resume(tmp_path):
    """With --ema the trained model holds the moving average of the raw weights the
    optimizer stepped through (the first step's weights, then m * average + (1 - m)
    * weights after each step), and a run crashed after an epoch and resumed ends
    with the same weights as the uninterrupted run."""
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    train = config.TrainConfig(epochs=3, patience=10, learning_rate=0.05, ema=0.8)

    class RawWeights(keras.callbacks.Callback):  # what the optimizer stepped to
        def on_train_batch_end(self, batch, logs=None):
            steps.append([w.numpy().astype("float64") for w in self.model.trainable_weights])

    steps = []
    whole = _ema_model(train)
    training.fit_and_evaluate(whole, ds, ds, ds, train, str(tmp_path / "whole"), 64,
                              extra_callbacks=[RawWeights()])
    assert len(steps) == 3 * 4
    average = steps[0]
    for weights in steps[1:]:
        average = [0.8 * a + 0.2 * w for a, w in zip(average, weights)]
    for got, want in zip(whole.trainable_weights, average):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(whole.trainable_weights[0].numpy(), steps[-1][0])

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.fit_and_evaluate(_ema_model(train), ds, ds, ds, train, str(tmp_path / "run"),
                                  64, extra_callbacks=[Crash()])
    resumed = _ema_model(train)
    training.fit_and_evaluate(resumed, ds, ds, ds, train, str(tmp_path / "run"), 64)
    assert training.weights_digest(resumed) == training.weights_digest(whole)
