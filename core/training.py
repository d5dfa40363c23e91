"""Training: the optimizer and its schedule, the callbacks, and `fit`.

- `optimizer`: Adam at `--learning-rate`, following `--schedule` over the
  run's steps, clipped at `--clipnorm`.
- `fit_and_evaluate`: EarlyStopping (best weights restored), a checkpoint of
  the whole training state every epoch (`runs.RunCheckpoint`: a killed run
  goes on with `--resume RUN_DIR`), TerminateOnNaN and TensorBoard; the test
  split evaluated once, at the end.
- `released_graphs`: around each model when one process trains many (tuning
  trials, comparisons), so memory stays flat.
- `--strategy` (see `core.distribute`): the same run on several devices
  (`fit` under MirroredStrategy) or several workers (`core.loop` under
  MultiWorkerMirroredStrategy); only the chief writes the run and exports.

Configs and flags live in `core.config`, run directories and checkpoints in
`core.runs`, input pipelines in `core.data`, and the sequence that ties them
together for every recipe in `core.recipe`.
"""

import contextlib
import gc
import hashlib
import os
import time

import keras
import numpy as np

from core import data, distribute, loop, storage
from core.config import ConfigError
from core.loop import build_state  # noqa: F401 (shared: tuning and the studies call it here)
from core.runs import RunCheckpoint


class WorkerDone(Exception):
    """A non-chief worker has finished training; the chief evaluates and exports."""


def optimizer(train, steps_per_epoch=None):
    """The recipes' optimizer: `--optimizer` (Adam, or SGD with Nesterov momentum 0.9)
    at `--learning-rate` (following `--schedule`, which needs `steps_per_epoch`),
    clipped at `--clipnorm` if set, keeping a moving average of the weights with
    `--ema` if set (`EMAWeights` puts it to use)."""
    options = dict(clipnorm=train.clipnorm or None, use_ema=bool(train.ema),
                   ema_momentum=train.ema or 0.99)
    rate = learning_rate(train, steps_per_epoch)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, **options)
    return keras.optimizers.Adam(rate, **options)


def loss(name, label_smoothing=0.0):
    """The recipe's loss `name`, with `--label-smoothing` if set (classifiers only)."""
    if not label_smoothing:
        return name
    if name != "sparse_categorical_crossentropy":
        raise ConfigError(f"--label-smoothing applies to classifiers (sparse categorical "
                          f"cross-entropy); this recipe's loss is {name}")
    return SmoothedSparseCrossentropy(label_smoothing)


@keras.saving.register_keras_serializable(package="recipes")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of integer labels against targets smoothed towards uniform:
    -sum_k q_k log p_k with q = (1 - s) one_hot(y) + s / K (Szegedy et al., 2016,
    "Rethinking the Inception Architecture", section 7). Keras's sparse
    cross-entropy takes no smoothing; its categorical one does, on one-hot labels.
    """

    def __init__(self, label_smoothing=0.1, name="smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.reshape(keras.ops.cast(y_true, "int32"), (-1,))
        return keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype), y_pred,
            label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """With `--ema`: validation, early stopping's best epoch, the checkpoints and
    the trained model see the moving average of the weights, training the raw
    ones.

    Keras's `SwapEMAWeights(swap_on_epoch=True)`, which puts the average in
    the model at each epoch's end and the raw weights back at the next
    epoch's start, plus resumption: a checkpoint is taken at an epoch's end,
    swapped, so a run resumed from one (the optimizer has taken steps before
    its first epoch) starts swapped too.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=True)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch and int(self.model.optimizer.iterations) > 0:
            self._ema_weights_in_model = True  # restored from an epoch-end checkpoint
        self._first_epoch = False
        super().on_epoch_begin(epoch, logs)


def learning_rate(train, steps_per_epoch=None):
    """`--learning-rate`, or for `--schedule cosine` a schedule over `--epochs` epochs."""
    if train.schedule == "constant":
        return train.learning_rate
    if not steps_per_epoch:
        raise ValueError(f"--schedule {train.schedule} needs the number of steps per epoch")
    total = train.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total - warmup, warmup_target=train.learning_rate, warmup_steps=warmup)


@contextlib.contextmanager
def released_graphs():
    """A fresh Keras session for one model, and its traced graphs freed afterwards.

    Tracing a train step registers a `CustomGradient-<n>` function in
    TensorFlow's global gradient registry (tf.distribute's all-reduce of the
    gradients is a `tf.custom_gradient`), and that function's closure holds
    the whole traced graph. `clear_session()` does not remove it, so a process
    that trains many models grows by ~20 MB a model
    (tensorflow/tensorflow#80895, #97697). On leaving the block, the entries
    registered inside it are dropped; use it only around a model whose train
    step will not be traced again.
    """
    registry = _gradient_registry()
    before = set(registry)
    keras.backend.clear_session()
    try:
        yield
    finally:
        for name in set(registry) - before:
            if name.startswith("CustomGradient-"):
                del registry[name]
        gc.collect()


def _gradient_registry():
    """TF's private registry of gradient functions, or {} if it has moved."""
    from tensorflow.python.framework import ops

    return getattr(getattr(ops, "_gradient_registry", None), "_registry", {})


def steps_per_epoch(train, train_ds):
    """`--steps-per-epoch`, or the batches in one pass over `train_ds`."""
    return train.steps_per_epoch or data.count(train_ds)


def callbacks(run_dir, patience, monitor="val_loss", lr_patience=0, restore_from=None,
              keep_checkpoints=2, ema=False):
    """The shared callbacks; `RunCheckpoint` comes after the two whose state it keeps,
    and `EMAWeights` (with `ema`) before every callback that reads the weights.

    `restore_from`: where the checkpoint to go on from is, if not in this run
    directory (a non-chief worker writes to a temporary one but restores the
    chief's).
    """
    plateau = [keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=0.2, patience=lr_patience, min_lr=1e-5, verbose=1)
    ] if lr_patience else []
    stateful = [*plateau, keras.callbacks.EarlyStopping(
        monitor=monitor, patience=patience, restore_best_weights=True, verbose=1)]
    return [
        *([EMAWeights()] if ema else []),
        *stateful,
        RunCheckpoint(os.path.join(run_dir, "checkpoints"), stateful, restore_from,
                      keep_checkpoints),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
    ]


class EpochClock(keras.callbacks.Callback):
    """Seconds spent training, validation excluded, at each epoch's end (`seconds`),
    and each epoch's training steps (`steps`).

    An epoch's clock stops when its validation begins (Keras's `fit` calls
    `on_test_begin` then) or, without validation, at the epoch's end.
    """

    def on_train_begin(self, logs=None):
        self.seconds, self.steps, self._total, self._start = [], [], 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

    def seconds_per_step(self):
        """The median epoch's seconds per step, leaving out the first epoch (which
        also traces the graph) when there are others."""
        per_epoch = np.diff([0.0, *self.seconds]) / np.maximum(self.steps, 1)
        return float(np.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch))

    def _stop(self):
        if self._start is not None:
            self._total += time.perf_counter() - self._start
            self._start = None

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()
        self.seconds.append(self._total)


def fit_and_evaluate(model, train_ds, val_ds, test_ds, train, run_dir, examples_per_epoch,
                     extra_callbacks=(), evaluate=None, test_model=None):
    """Fit with the shared callbacks, evaluate on test once; returns (metrics, history)
    and writes history.json and model.keras (metrics.json is the run's last file,
    written by `core.recipe` once the export is done).

    An epoch is one pass over `train_ds` (`examples_per_epoch` examples), or
    `--steps-per-epoch` batches of the same endless stream.

    `evaluate(model, test_ds)` returns the test metrics as a dict (default:
    the compiled loss and metrics, as `test_<name>`); it is the one read of
    the test split in a run, by `test_model` if given (a compiled model
    sharing `model`'s weights: test-time augmentation).

    In a run directory with a checkpoint (`--resume`), training goes on from
    the epoch after it, with the optimizer, early stopping, learning-rate
    schedule and history as they were, and the shuffle order the
    uninterrupted run would have had.

    Under `--strategy` a twin of `model` made in the strategy's scope trains
    (Keras's `fit` for mirrored, `core.loop.fit` for multi_worker) and its
    weights are copied back; a non-chief worker stops after training
    (`WorkerDone`), leaving the test split and the files to the chief.
    """
    strategy = distribute.get(train.strategy, train.cpu_replicas)
    chief = distribute.is_chief(train.strategy)
    restore_from = None if chief or not train.run_dir else os.path.join(
        train.run_dir, "checkpoints")
    shared = callbacks(run_dir, train.patience, train.monitor, train.lr_patience, restore_from,
                       train.keep_checkpoints, ema=bool(train.ema))
    checkpoint = next(cb for cb in shared if isinstance(cb, RunCheckpoint))
    initial_epoch = checkpoint.initial_epoch
    # One endless stream, reshuffled on each pass: given steps_per_epoch, Keras
    # keeps a single iterator across epochs, so the order of every epoch
    # depends on the seed alone, and a resumed run skips the batches already
    # trained on (Keras's own iterator per epoch draws a new order each time,
    # which a new process cannot replay).
    steps = steps_per_epoch(train, train_ds)
    if train.steps_per_epoch:  # a share of a pass, or several
        examples_per_epoch = examples_per_epoch * steps / data.count(train_ds)
    stream = train_ds.repeat().skip(initial_epoch * steps)
    fit = loop.fit if train.strategy == "multi_worker" else keras.Model.fit
    extra = ({"strategy": strategy, "validation_steps": data.count(val_ds)} if fit is loop.fit
             else {"shuffle": False})  # the pipeline shuffles
    with distribute.replica_of(model, strategy) as trained:
        if strategy is None:
            build_state(trained, val_ds.element_spec)  # one trace of the step, not two
        fit(
            trained, stream, steps_per_epoch=steps, validation_data=val_ds,
            initial_epoch=initial_epoch,
            # An early-stopped run that was killed before its evaluation fits
            # no further epoch; EarlyStopping still restores its best weights.
            epochs=initial_epoch if checkpoint.finished else train.epochs,
            callbacks=[*shared, *extra_callbacks], verbose=2, **extra,
        )
    if not chief:
        print(f"[worker {distribute.worker_index(train.strategy)}] trained weights "
              f"{weights_digest(model)}; the chief evaluates and exports", flush=True)
        raise WorkerDone()
    history = checkpoint.history
    epochs_run = len(history.get("loss", []))
    train_seconds = checkpoint.train_seconds
    tested = model if test_model is None else test_model
    if evaluate is None:
        test = {f"test_{key}": float(value) for key, value in
                tested.evaluate(test_ds, return_dict=True, verbose=0).items()}
    else:
        test = evaluate(tested, test_ds)
    metrics = {
        **test,
        "epochs": epochs_run,
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(examples_per_epoch * epochs_run / train_seconds, 1),
        "parameters": int(model.count_params()),
        "weights_digest": weights_digest(model),
    }
    if train.strategy == "multi_worker":
        print(f"[worker 0] trained weights {weights_digest(model)}", flush=True)
    storage.write_json(os.path.join(run_dir, "history.json"), history)
    with storage.writing(os.path.join(run_dir, "model.keras")):
        model.save(os.path.join(run_dir, "model.keras"))
    return metrics, history


def weights_digest(model):
    """A short SHA-256 of the trainable weights: equal on workers that trained in step."""
    digest = hashlib.sha256()
    for variable in model.trainable_weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()[:16]
