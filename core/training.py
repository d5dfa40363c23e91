"""Training conventions shared by every recipe.

- `TrainConfig`: the knobs every recipe has (dataset, epochs, batch size,
  seed, precision, ...). A recipe adds its own model dataclass; `parse` turns
  both into command-line flags, so defaults live in one small place.
- `start_run`: seeds everything, sets the precision policy, makes a new
  `runs/<recipe>/<timestamp>/` (never reusing one unless asked to resume),
  prints the resolved configuration and saves it there.
- `pipeline`: the tf.data conventions (cache, shuffle, batch, prefetch; no
  autotuner, whose thread can stall the end of an epoch).
- `fit_and_evaluate`: EarlyStopping (best weights restored), BackupAndRestore
  (an interrupted run resumes with `--resume RUN_DIR`), TerminateOnNaN and
  TensorBoard; the test split evaluated once, at the end; `metrics.json`.
- `released_graphs`: around each model when one process trains many (tuning
  trials, comparisons), so memory stays flat.
"""

import argparse
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import time

import keras
import tensorflow as tf

from core import data

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass
class TrainConfig:
    """Knobs shared by every recipe; each becomes a `--flag`."""

    dataset: str = "fashion_mnist"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 3
    monitor: str = "val_loss"
    lr_patience: int = 0
    validation_percent: int = 10
    seed: int = 42
    precision: str = "auto"
    deterministic: bool = False
    limit: int = 0
    runs_dir: str = "runs"
    export_dir: str = "saved_models"
    export: bool = True

    HELP = {
        "dataset": "TFDS name",
        "epochs": "maximum epochs (early stopping may end sooner)",
        "patience": "epochs without validation improvement before stopping",
        "monitor": "validation metric that early stopping watches (and restores the best of)",
        "lr_patience": "epochs without improvement before the learning rate is cut to a "
        "fifth (0 = never)",
        "validation_percent": "share of TFDS's train split held out for validation",
        "precision": f"one of {PRECISIONS}; auto = mixed_bfloat16 on a CPU with bf16 "
        "instructions and no GPU, else float32",
        "deterministic": "enable TensorFlow op determinism (slower)",
        "limit": "use at most this many examples per split (0 = all); for smoke tests",
        "runs_dir": "where runs/<recipe>/<timestamp>/ are written",
        "export_dir": "TF Serving model base path",
        "export": "export a SavedModel at the end",
    }


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any training starts."""


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
    if not train.learning_rate > 0:
        raise ConfigError(f"learning_rate must be > 0, got {train.learning_rate}")
    if not 0 < train.validation_percent < 100:
        raise ConfigError(
            f"validation_percent must be between 1 and 99, got {train.validation_percent}")
    if train.patience < 0 or train.lr_patience < 0:
        raise ConfigError("patience and lr_patience must be >= 0")
    if train.limit < 0:
        raise ConfigError(f"limit must be >= 0, got {train.limit}")
    resolve_precision(train.precision)


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
    """Seed, set precision, make (or reopen) the run directory, save the config."""
    validate(train)
    precision = resolve_precision(train.precision)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.config.set_dtype_policy(precision)
    if resume:
        if not os.path.isfile(os.path.join(resume, "config.json")):
            raise ConfigError(f"--resume {resume}: not a run directory (no config.json)")
        run_dir = resume
    else:
        run_dir = new_run_dir(train.runs_dir, recipe)
    config = {
        "recipe": recipe,
        "model": dataclasses.asdict(model_config),
        "train": {**dataclasses.asdict(train), "precision_resolved": precision},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    write_json(os.path.join(run_dir, "config.json"), config)
    print(f"[{recipe}] run directory {run_dir}")
    print(json.dumps(config, indent=2, default=str), flush=True)
    return run_dir


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
    batch (see `pipeline`). `train.limit` caps every split.
    """
    def split(name):
        ds = data.load(train.dataset, name, train.validation_percent)
        return ds.map(map_example) if map_example else ds

    train_split = split("train")
    if train.limit:
        train_split = train_split.take(train.limit)
    train_ds = pipeline(train_split, train.batch_size, shuffle=True, seed=train.seed,
                        map_batch=map_batch)
    val_ds = pipeline(split("validation"), train.batch_size, limit=train.limit,
                      map_batch=map_batch)
    test_ds = pipeline(split("test"), train.batch_size, limit=train.limit, map_batch=map_batch)
    return train_ds, val_ds, test_ds, count(train_split)


def run_or_exit(parser, action, *args, **kwargs):
    """Run a recipe's `action`; bad configuration or data ends with exit code 2."""
    try:
        return action(*args, **kwargs)
    except (ConfigError, data.DatasetError) as err:
        parser.exit(2, f"error: {err}\n")


def count(ds):
    """Examples in a finite dataset (cheap after `cache`)."""
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda total, _: total + 1))


def callbacks(run_dir, patience, monitor="val_loss", lr_patience=0):
    plateau = [keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, factor=0.2, patience=lr_patience, min_lr=1e-5, verbose=1)
    ] if lr_patience else []
    return [
        *plateau,
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True, verbose=1),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
    ]


def fit_and_evaluate(model, train_ds, val_ds, test_ds, train, run_dir, examples_per_epoch,
                     extra_callbacks=()):
    """Fit with the shared callbacks, evaluate on test once, write metrics.json."""
    start = time.perf_counter()
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=train.epochs, shuffle=False,  # the pipeline shuffles
        callbacks=[*callbacks(run_dir, train.patience, train.monitor, train.lr_patience),
                   *extra_callbacks], verbose=2,
    )
    train_seconds = time.perf_counter() - start
    epochs_run = len(history.epoch)
    test = model.evaluate(test_ds, return_dict=True, verbose=0)
    metrics = {
        **{f"test_{key}": float(value) for key, value in test.items()},
        "epochs": epochs_run,
        "train_seconds": round(train_seconds, 2),
        "examples_per_second": round(examples_per_epoch * epochs_run / train_seconds, 1),
        "parameters": int(model.count_params()),
    }
    write_json(os.path.join(run_dir, "history.json"),
               {key: [float(v) for v in values] for key, values in history.history.items()})
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    model.save(os.path.join(run_dir, "model.keras"))
    return metrics, history.history
