"""Run directories and checkpoints: where a run is written, and how it goes on.

- `start_run`: sets up the strategy, seeds everything, sets the precision
  policy, makes a new `runs/<recipe>/<timestamp>/` (never reusing one unless
  asked to resume) and saves the resolved configuration there.
- `RunCheckpoint`: the whole training state at every epoch end, so a killed
  run goes on with `--resume RUN_DIR`.
- `write_json`: every record is written to a temporary file and renamed.
"""

import atexit
import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from core import config, distribute
from core.config import ConfigError


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


def start_run(recipe, model_config, train, resume=None, dataset=None):
    """Set up the strategy, seed, set precision, make (or reopen) the run directory,
    save the config (and `dataset`: what was found in the user's own data).

    A non-chief worker of a multi-worker job gets a temporary directory,
    removed when it exits: only the chief writes runs/ and exports.
    """
    config.validate(train)
    if resume and train.run_dir:
        raise ConfigError("give --resume RUN_DIR or --run-dir RUN_DIR, not both")
    if resume and train.strategy == "multi_worker":
        raise ConfigError("a multi-worker job resumes from its --run-dir: restart every "
                          "worker with the same TF_CONFIG and --run-dir")
    try:  # first: the strategy must exist before TensorFlow runs any op
        strategy = distribute.get(train.strategy, train.cpu_replicas)
    except distribute.StrategyError as err:
        raise ConfigError(str(err)) from None
    precision = config.resolve_precision(train.precision)
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
    record = {
        "recipe": recipe,
        "model": dataclasses.asdict(model_config),
        "train": {**dataclasses.asdict(train), "precision_resolved": precision,
                  "replicas": distribute.replicas(strategy),
                  "global_batch_size": train.batch_size * distribute.replicas(strategy)},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        **({"dataset": dataset} if dataset else {}),
    }
    write_json(os.path.join(run_dir, "config.json"), record)
    print(f"[{recipe}] run directory {run_dir}")
    print(json.dumps(record, indent=2, default=str), flush=True)
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


