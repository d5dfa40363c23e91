"""Training conventions shared by every recipe.

- `TrainConfig`: the knobs every recipe has (dataset, epochs, batch size,
  seed, precision, ...). A recipe adds its own model dataclass; `parse` turns
  both into command-line flags, so defaults live in one small place.
- `start_run`: seeds everything, sets the precision policy, makes a new
  `runs/<recipe>/<timestamp>/` (never reusing one unless asked to resume),
  prints the resolved configuration and saves it there.
- `pipeline`: the tf.data conventions (cache, shuffle, batch, prefetch; no
  autotuner, whose thread can stall the end of an epoch).
- `optimizer`: Adam at `--learning-rate`, clipped at `--clipnorm`.
- `fit_and_evaluate`: EarlyStopping (best weights restored), a checkpoint of
  the whole training state every epoch (`RunCheckpoint`: a killed run goes on
  with `--resume RUN_DIR`), TerminateOnNaN and TensorBoard; the test split
  evaluated once, at the end; `metrics.json`.
- `released_graphs`: around each model when one process trains many (tuning
  trials, comparisons), so memory stays flat.
- `--strategy` (see `core.distribute`): the same run on several devices
  (`fit` under MirroredStrategy) or several workers (`core.loop` under
  MultiWorkerMirroredStrategy); only the chief writes the run and exports.
"""

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import gc
import hashlib
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from core import data, distribute, export, loop

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
    """Knobs shared by every recipe; each becomes a `--flag`."""

    dataset: str = "fashion_mnist"
    epochs: int = 10
    steps_per_epoch: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3
    schedule: str = "constant"
    clipnorm: float = 0.0
    patience: int = 3
    monitor: str = "val_loss"
    lr_patience: int = 0
    validation_percent: int = 10
    seed: int = 42
    precision: str = "auto"
    deterministic: bool = False
    limit: int = 0
    train_percent: int = 100
    runs_dir: str = "runs"
    export_dir: str = "saved_models"
    export: bool = True
    export_format: str = "saved_model"
    strategy: str = "default"
    cpu_replicas: int = 0
    run_dir: str = ""

    HELP = {
        "dataset": "TFDS name",
        "epochs": "maximum epochs (early stopping may end sooner)",
        "steps_per_epoch": "optimizer steps in an epoch, the unit of --epochs, --patience and "
        "the schedule's warm-up; validation runs after each (0 = one pass over the training "
        "split)",
        "schedule": "learning rate over training: constant, or cosine (one epoch of linear "
        "warm-up from 0 to --learning-rate, then a cosine decay to 0 at --epochs; "
        "Loshchilov & Hutter 2017)",
        "clipnorm": "rescale each weight's gradient to at most this L2 norm (0 = no clipping)",
        "patience": "epochs without validation improvement before stopping",
        "monitor": "validation metric that early stopping watches (and restores the best of)",
        "lr_patience": "epochs without improvement before the learning rate is cut to a "
        "fifth (0 = never)",
        "validation_percent": "share of TFDS's train split held out for validation (of its "
        "films for rt_snippets, so no film is in two splits)",
        "precision": f"one of {PRECISIONS}; auto = mixed_bfloat16 on a CPU with bf16 "
        "instructions and no GPU, else float32",
        "deterministic": "enable TensorFlow op determinism (slower)",
        "limit": "use at most this many examples per split (0 = all); for smoke tests",
        "train_percent": "train on this share of the training split, a random subset drawn "
        "with --seed (learning curves); validation and test stay whole",
        "runs_dir": "where runs/<recipe>/<timestamp>/ are written",
        "export_dir": "TF Serving model base path",
        "export": "export at the end (a SavedModel, plus --export-format)",
        "export_format": "comma-separated, among saved_model,onnx,litert; the SavedModel is "
        "always written, and the others are checked against it",
        "strategy": f"one of {distribute.STRATEGIES}: this process's device, several devices "
        "(MirroredStrategy), or the workers TF_CONFIG names (MultiWorkerMirroredStrategy; "
        "see recipes.launch)",
        "cpu_replicas": "with --strategy mirrored and no GPU: split the CPU into this many "
        "devices (0 = the devices there are)",
        "run_dir": "write the run here instead of a new runs/<recipe>/<timestamp>/; if it "
        "holds a checkpoint of this run, go on from it (the workers of a multi-worker job "
        "share one, so a restarted job resumes)",
    }


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any training starts."""


class WorkerDone(Exception):
    """A non-chief worker has finished training; the chief evaluates and exports."""


def _add_flags(parser, config, helps):
    for field in dataclasses.fields(config):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(config, field.name)
        text = helps.get(field.name, "")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else int
            parser.add_argument(
                flag, default=default, metavar="A,B,...",
                type=lambda s, kind=kind: tuple(kind(v) for v in s.split(",") if v),
                help=f"{text} (default: {','.join(map(str, default))})".strip(),
            )
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{text} (default: %(default)s)".strip())


def build_parser(prog, description, model_config, train_config, model_help=None):
    """An argparse parser with a flag for every field of both configs."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_flags(parser.add_argument_group("model"), model_config, model_help or {})
    _add_flags(parser.add_argument_group("training"), train_config, TrainConfig.HELP)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run in its own directory")
    return parser


def split_args(args, model_config, train_config):
    """(model config, train config) with the parsed flags applied."""
    values = vars(args)
    pick = lambda config: dataclasses.replace(  # noqa: E731
        config, **{f.name: values[f.name] for f in dataclasses.fields(config)})
    return pick(model_config), pick(train_config)


def cpu_has_bf16():
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision):
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if not tf.config.list_physical_devices("GPU") and cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def validate(train):
    if train.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {train.epochs}")
    if train.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {train.batch_size}")
    if train.steps_per_epoch < 0:
        raise ConfigError(
            f"steps_per_epoch must be >= 0 (0 = one pass), got {train.steps_per_epoch}")
    if not train.learning_rate > 0:
        raise ConfigError(f"learning_rate must be > 0, got {train.learning_rate}")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {train.schedule!r}")
    if train.schedule != "constant" and train.lr_patience:
        raise ConfigError(f"--schedule {train.schedule} sets the learning rate at every step; "
                          "it cannot be combined with --lr-patience (use --lr-patience 0)")
    if train.clipnorm < 0:
        raise ConfigError(f"clipnorm must be >= 0 (0 = off), got {train.clipnorm}")
    if not 0 < train.validation_percent < 100:
        raise ConfigError(
            f"validation_percent must be between 1 and 99, got {train.validation_percent}")
    if train.patience < 0 or train.lr_patience < 0:
        raise ConfigError("patience and lr_patience must be >= 0")
    if train.limit < 0:
        raise ConfigError(f"limit must be >= 0, got {train.limit}")
    if not 0 < train.train_percent <= 100:
        raise ConfigError(f"train_percent must be between 1 and 100, got {train.train_percent}")
    resolve_precision(train.precision)
    try:
        export.parse_formats(train.export_format)
        distribute.check(train.strategy, train.cpu_replicas)
    except (export.ExportError, distribute.StrategyError) as err:
        raise ConfigError(str(err)) from None


def optimizer(train, steps_per_epoch=None):
    """The recipes' optimizer: Adam at `--learning-rate` (following `--schedule`, which
    needs `steps_per_epoch`), clipped at `--clipnorm` if set."""
    return keras.optimizers.Adam(learning_rate(train, steps_per_epoch),
                                 clipnorm=train.clipnorm or None)


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


def new_run_dir(runs_dir, recipe):
    """A fresh `runs_dir/recipe/<timestamp>[-n]/`; an existing one is never reused."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(runs_dir, recipe, stamp)
    for n in range(1, 1000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {base}")


def write_json(path, value):
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def start_run(recipe, model_config, train, resume=None):
    """Set up the strategy, seed, set precision, make (or reopen) the run directory,
    save the config.

    A non-chief worker of a multi-worker job gets a temporary directory,
    removed when it exits: only the chief writes runs/ and exports.
    """
    validate(train)
    if resume and train.run_dir:
        raise ConfigError("give --resume RUN_DIR or --run-dir RUN_DIR, not both")
    if resume and train.strategy == "multi_worker":
        raise ConfigError("a multi-worker job resumes from its --run-dir: restart every "
                          "worker with the same TF_CONFIG and --run-dir")
    try:  # first: the strategy must exist before TensorFlow runs any op
        strategy = distribute.get(train.strategy, train.cpu_replicas)
    except distribute.StrategyError as err:
        raise ConfigError(str(err)) from None
    precision = resolve_precision(train.precision)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.config.set_dtype_policy(precision)
    if not distribute.is_chief(train.strategy):
        run_dir = tempfile.mkdtemp(
            prefix=f"{recipe}-worker{distribute.worker_index(train.strategy)}-")
        atexit.register(shutil.rmtree, run_dir, True)
    elif resume:
        if not os.path.isfile(os.path.join(resume, "config.json")):
            raise ConfigError(f"--resume {resume}: not a run directory (no config.json)")
        run_dir = resume
    elif train.run_dir:
        run_dir = named_run_dir(train.run_dir)
    else:
        run_dir = new_run_dir(train.runs_dir, recipe)
    config = {
        "recipe": recipe,
        "model": dataclasses.asdict(model_config),
        "train": {**dataclasses.asdict(train), "precision_resolved": precision,
                  "replicas": distribute.replicas(strategy),
                  "global_batch_size": train.batch_size * distribute.replicas(strategy)},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    write_json(os.path.join(run_dir, "config.json"), config)
    print(f"[{recipe}] run directory {run_dir}")
    print(json.dumps(config, indent=2, default=str), flush=True)
    return run_dir


def named_run_dir(path):
    """`--run-dir`: created if new, continued if it holds a run, refused otherwise."""
    if os.path.isfile(os.path.join(path, "config.json")):
        print(f"[run] {path} holds a run; going on from its last checkpoint", flush=True)
    elif os.path.isdir(path) and os.listdir(path):
        raise ConfigError(f"--run-dir {path}: not empty and not a run directory; refusing "
                          "to write into it")
    os.makedirs(path, exist_ok=True)
    return path


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


# tf.data's autotuner runs a thread per iterator that sleeps in doubling
# periods (10 ms, 20 ms, ... so its wake-ups fall 10.23 s, 20.47 s, 40.95 s
# after the iterator starts). Keras makes a new iterator every epoch, and
# destroying the old one sometimes blocks until that thread's next wake-up:
# measured here (TF 2.21) as stalls of 5.9 s and 12.1 s at the start of two of
# three CNN epochs (124 s instead of 90 s), and none in 6 epochs without the
# autotuner (nor in the throughput benchmarks' 33 timed epochs since; their
# numpy baseline, Keras's own pipeline, still stalls). Nothing in `pipeline`
# needs tuning: AUTOTUNE prefetch then sizes its own buffer, a parallel map
# runs one call per core, and step times were unchanged (median 63-68 ms
# either way).
_NO_AUTOTUNE = tf.data.Options()
_NO_AUTOTUNE.autotune.enabled = False


def pipeline(ds, batch_size, shuffle=False, seed=0, limit=0, map_batch=None):
    """tf.data conventions: (limit), cache, (shuffle), batch, (map_batch), prefetch.

    `map_batch(inputs, labels)` transforms whole batches (e.g. tokenization),
    which keeps the dataset's cardinality known to Keras.
    """
    if limit:
        ds = ds.take(limit)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if map_batch is not None:
        ds = ds.map(map_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_NO_AUTOTUNE)


def splits(train, map_example=None, map_batch=None):
    """(train, validation, test) pipelines of `train.dataset` and the train size.

    `map_example` runs on each example before caching; `map_batch` on each
    batch (see `pipeline`). `train.limit` caps every split. Train and
    validation come in global batches (`--batch-size` per replica); test,
    which the trained plain model reads, in `--batch-size` ones.
    """
    def split(name):
        ds = data.load(train.dataset, name, train.validation_percent)
        return ds.map(map_example) if map_example else ds

    train_split = training_examples(train)
    if map_example:
        train_split = train_split.map(map_example)
    # Under a strategy every replica gets batch_size examples a step.
    strategy = distribute.get(train.strategy, train.cpu_replicas)
    global_batch = train.batch_size * distribute.replicas(strategy)
    train_ds = pipeline(train_split, global_batch, shuffle=True, seed=train.seed,
                        map_batch=map_batch)
    val_ds = pipeline(split("validation"), global_batch, limit=train.limit,
                      map_batch=map_batch)
    test_ds = pipeline(split("test"), train.batch_size, limit=train.limit, map_batch=map_batch)
    return train_ds, val_ds, test_ds, count(train_split)


def training_examples(train):
    """The training split a run learns from: `--train-percent` of it, `--limit` at most."""
    ds = data.load(train.dataset, "train", train.validation_percent)
    if train.train_percent < 100:
        n = count(ds)
        ds = ds.shuffle(n, seed=train.seed, reshuffle_each_iteration=False).take(
            max(1, round(n * train.train_percent / 100)))
    return ds.take(train.limit) if train.limit else ds


def run_or_exit(parser, action, *args, **kwargs):
    """Run a recipe's `action`; bad configuration or data ends with exit code 2.

    The strategy (`--strategy`) is set up first, before the recipe reads any
    data: splitting the CPU and joining a cluster must precede every
    TensorFlow op. A non-chief worker's run ends after training
    (`WorkerDone`) and waits for the chief to finish evaluating and exporting.
    """
    train = next((a for a in (*args, *kwargs.values()) if isinstance(a, TrainConfig)), None)
    try:
        if train is not None:
            validate(train)
            distribute.get(train.strategy, train.cpu_replicas)
        try:
            result = action(*args, **kwargs)
        except WorkerDone:
            result = None
        if train is not None and train.strategy == "multi_worker":
            distribute.barrier(distribute.get(train.strategy))  # the job ends together
        return result
    except (ConfigError, data.DatasetError, distribute.StrategyError) as err:
        parser.exit(2, f"error: {err}\n")


def steps_per_epoch(train, train_ds):
    """`--steps-per-epoch`, or the batches in one pass over `train_ds`."""
    return train.steps_per_epoch or count(train_ds)


def count(ds):
    """Examples in a finite dataset (cheap after `cache`)."""
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda total, _: total + 1))


def callbacks(run_dir, patience, monitor="val_loss", lr_patience=0, restore_from=None):
    """The shared callbacks; `RunCheckpoint` comes after the two whose state it keeps.

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
        *stateful,
        RunCheckpoint(os.path.join(run_dir, "checkpoints"), stateful, restore_from),
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


class RunCheckpoint(keras.callbacks.Callback):
    """All a run needs to go on after a crash, written whole at every epoch end.

    `checkpoints/epoch-<n>/` holds the model's and optimizer's variables
    (Adam's moments, its step count and learning rate), the random
    generators' states (dropout's masks),
    EarlyStopping's best weights, and `state.json`: the history so far, the
    seconds trained, and the state of EarlyStopping and ReduceLROnPlateau
    (best value, epochs waited, best epoch). It is written to a temporary
    folder and renamed into place, so a kill at any moment leaves the previous
    checkpoint whole; the older one is removed after. Keras's own
    BackupAndRestore keeps the weights and the epoch only: after a resume,
    EarlyStopping forgot its best epoch and the history began again.

    On `on_train_begin` it restores the newest checkpoint, if any, into the
    model and into `stateful` (EarlyStopping, ReduceLROnPlateau); it must come
    after those in the callback list, since their own `on_train_begin` resets
    them. `restore_from` (default: `directory`) is where it looks.
    """

    KEYS = ("best", "wait", "best_epoch", "stopped_epoch", "cooldown_counter")

    def __init__(self, directory, stateful=(), restore_from=None):
        super().__init__()
        self.directory = directory
        self.stateful = list(stateful)
        self.path, self.state = latest_checkpoint(restore_from or directory)
        self.seconds_before = self.state["train_seconds"] if self.state else 0.0
        self._started = None

    @property
    def initial_epoch(self):
        return self.state["epoch"] if self.state else 0

    @property
    def finished(self):
        return bool(self.state and self.state["stopped"])

    @property
    def train_seconds(self):
        """Seconds trained in this run, before a crash included."""
        return self.seconds_before + time.perf_counter() - self._started

    def on_train_begin(self, logs=None):
        self._started = time.perf_counter()
        self.history = dict(self.state["history"]) if self.state else {}
        if self.state is None:
            return
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.path, "model.weights.h5"))
        with np.load(os.path.join(self.path, "rng_state.npz")) as rng:
            for i, variable in enumerate(_rng_states(self.model)):
                variable.assign(rng[f"arr_{i}"])
        for cb, saved in zip(self.stateful, self.state["callbacks"]):
            for key, value in saved.items():
                setattr(cb, key, value)
            if isinstance(cb, keras.callbacks.EarlyStopping) and cb.restore_best_weights:
                with np.load(os.path.join(self.path, "best_weights.npz")) as best:
                    cb.best_weights = [best[f"arr_{i}"] for i in range(len(best.files))]
        print(f"[resume] from {self.path}: epoch {self.state['epoch']} done, "
              f"{self.state['train_seconds']:.0f} s trained", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        state = {
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "train_seconds": self.train_seconds,
            "history": self.history,
            "callbacks": [{key: _plain(getattr(cb, key)) for key in self.KEYS
                           if hasattr(cb, key)} for cb in self.stateful],
        }
        final = os.path.join(self.directory, f"epoch-{epoch + 1}")
        tmp = os.path.join(self.directory, f".epoch-{epoch + 1}.incomplete")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self.model.save_weights(os.path.join(tmp, "model.weights.h5"))
        np.savez(os.path.join(tmp, "rng_state.npz"),
                 *[variable.numpy() for variable in _rng_states(self.model)])
        best = [getattr(cb, "best_weights", None) for cb in self.stateful]
        np.savez(os.path.join(tmp, "best_weights.npz"),
                 *next((w for w in best if w is not None), []))
        write_json(os.path.join(tmp, "state.json"), state)
        shutil.rmtree(final, ignore_errors=True)  # left by a run resumed from an older one
        os.rename(tmp, final)
        for name in os.listdir(self.directory):
            if name.startswith("epoch-") and name != f"epoch-{epoch + 1}":
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)


def _rng_states(model):
    """The states of the model's random generators (dropout's masks, for one).

    `save_weights` leaves them out, so without them a resumed run would draw
    other dropout masks than the uninterrupted one.
    """
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _plain(value):
    """A JSON-ready copy of a callback's number (numpy scalars included)."""
    return value.item() if hasattr(value, "item") else value


def latest_checkpoint(directory):
    """(path, state) of the newest complete checkpoint in `directory`, or (None, None)."""
    done = [int(name.split("-", 1)[1]) for name in (
        os.listdir(directory) if os.path.isdir(directory) else [])
        if name.startswith("epoch-") and name.split("-", 1)[1].isdigit()]
    if not done:
        return None, None
    path = os.path.join(directory, f"epoch-{max(done)}")
    with open(os.path.join(path, "state.json")) as f:
        return path, json.load(f)


def fit_and_evaluate(model, train_ds, val_ds, test_ds, train, run_dir, examples_per_epoch,
                     extra_callbacks=(), evaluate=None):
    """Fit with the shared callbacks, evaluate on test once, write metrics.json.

    An epoch is one pass over `train_ds` (`examples_per_epoch` examples), or
    `--steps-per-epoch` batches of the same endless stream.

    `evaluate(model, test_ds)` returns the test metrics as a dict (default:
    the compiled loss and metrics, as `test_<name>`); it is the one read of
    the test split in a run.

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
    shared = callbacks(run_dir, train.patience, train.monitor, train.lr_patience, restore_from)
    checkpoint = next(cb for cb in shared if isinstance(cb, RunCheckpoint))
    initial_epoch = checkpoint.initial_epoch
    # One endless stream, reshuffled on each pass: given steps_per_epoch, Keras
    # keeps a single iterator across epochs, so the order of every epoch
    # depends on the seed alone, and a resumed run skips the batches already
    # trained on (Keras's own iterator per epoch draws a new order each time,
    # which a new process cannot replay).
    steps = steps_per_epoch(train, train_ds)
    if train.steps_per_epoch:  # a share of a pass, or several
        examples_per_epoch = examples_per_epoch * steps / count(train_ds)
    stream = train_ds.repeat().skip(initial_epoch * steps)
    fit = loop.fit if train.strategy == "multi_worker" else keras.Model.fit
    extra = ({"strategy": strategy, "validation_steps": count(val_ds)} if fit is loop.fit
             else {"shuffle": False})  # the pipeline shuffles
    with distribute.replica_of(model, strategy) as trained:
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
    if evaluate is None:
        test = {f"test_{key}": float(value) for key, value in
                model.evaluate(test_ds, return_dict=True, verbose=0).items()}
    else:
        test = evaluate(model, test_ds)
    metrics = {
        **test,
        "epochs": epochs_run,
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(examples_per_epoch * epochs_run / train_seconds, 1),
        "parameters": int(model.count_params()),
    }
    if train.strategy == "multi_worker":
        print(f"[worker 0] trained weights {weights_digest(model)}", flush=True)
    write_json(os.path.join(run_dir, "history.json"), history)
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    model.save(os.path.join(run_dir, "model.keras"))
    return metrics, history


def weights_digest(model):
    """A short SHA-256 of the trainable weights: equal on workers that trained in step."""
    digest = hashlib.sha256()
    for variable in model.trainable_weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable)).tobytes())
    return digest.hexdigest()[:16]
