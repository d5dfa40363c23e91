"""Run directories and checkpoints: where a run is written, and how it goes on.

- `start_run`: sets up the strategy, seeds everything, sets the precision
  policy, makes a new `runs/<recipe>/<timestamp>/` and saves the resolved
  configuration there as `config.json`. A resumed run (`--resume RUN_DIR`)
  never rewrites it: a flag that would change what the run trains is refused,
  and a budget or export flag that differs (`AMENDABLE`) is recorded in
  `amendments.json` beside it.
- `RunCheckpoint`: the whole training state at every epoch end, the newest
  `--keep-checkpoints` of them kept, each with the SHA-256 of its files; a
  resumed run takes the newest one that checks out.
- `finished`: the metrics of a run that went to its end; resuming it trains nothing.

A file that cannot be written (a full disk, no permission) ends the run with
an `OSError` that names it and says what is intact; `core.recipe` turns it
into a one-line error.
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

from core import config, distribute, storage
from core.storage import new_run_dir
from core.config import ConfigError

#: Fields a resumed run may change: how long it trains and where it exports.
#: Any other difference from the run's config.json is refused.
AMENDABLE = ("epochs", "patience", "export", "export_dir", "export_format")
#: Fields that say where a run is, not what it trains (never compared).
LOCATION = ("runs_dir", "run_dir")


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be used (each was reported with its reason)."""


def start_run(recipe, model_config, train, resume=None, dataset=None):
    """Set up the strategy, seed, set precision, make (or reopen) the run directory,
    save the config (and `dataset`: what was found in the user's own data).

    A run directory that already holds a run (`--resume`, or a `--run-dir` a
    restarted job shares) keeps its config.json as it is: `check_resumed`
    refuses a config that would train something else and records a changed
    budget as an amendment.

    A non-chief worker of a multi-worker job gets a temporary directory,
    removed when it exits: only the chief writes runs/ and exports.
    """
    config.validate(train)
    if resume and train.run_dir:
        raise ConfigError("give --resume RUN_DIR or --run-dir RUN_DIR, not both")
    if resume and train.strategy == "multi_worker":
        raise ConfigError("a multi-worker job resumes from its --run-dir: restart every "
                          "worker with the same TF_CONFIG and --run-dir")
    if resume and not is_run(resume):
        raise ConfigError(f"--resume {resume}: not a run directory (no config.json)")
    try:  # first: the strategy must exist before TensorFlow runs any op
        strategy = distribute.get(train.strategy, train.cpu_replicas)
    except distribute.StrategyError as err:
        raise ConfigError(str(err)) from None
    precision = config.resolve_precision(train.precision)
    record = {
        "recipe": recipe,
        "model": dataclasses.asdict(model_config),
        "train": {**dataclasses.asdict(train), "precision_resolved": precision,
                  "replicas": distribute.replicas(strategy),
                  "global_batch_size": train.batch_size * distribute.replicas(strategy)},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        **({"dataset": dataset} if dataset else {}),
    }
    chief = distribute.is_chief(train.strategy)
    existing = existing_run(resume, train.run_dir)
    if existing and chief:
        check_resumed(existing, record)
    keras.utils.set_random_seed(train.seed)
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.config.set_dtype_policy(precision)
    if not chief:
        run_dir = tempfile.mkdtemp(
            prefix=f"{recipe}-worker{distribute.worker_index(train.strategy)}-")
        atexit.register(shutil.rmtree, run_dir, True)
    elif existing:
        run_dir = existing
        print(f"[{recipe}] going on with the run in {run_dir}", flush=True)
        return run_dir
    elif train.run_dir:
        run_dir = named_run_dir(train.run_dir)
    else:
        with storage.writing(os.path.join(train.runs_dir, recipe)):
            run_dir = new_run_dir(train.runs_dir, recipe)
    storage.write_json(os.path.join(run_dir, "config.json"), record)
    print(f"[{recipe}] run directory {run_dir}")
    print(json.dumps(record, indent=2, default=str), flush=True)
    return run_dir


def is_run(path):
    """Whether `path` is a run directory (it holds a config.json)."""
    return bool(path) and os.path.isfile(os.path.join(path, "config.json"))


def existing_run(resume, run_dir):
    """The run directory a run goes on with: `--resume`'s, or a `--run-dir` that
    already holds a run (a restarted job's); None for a new run."""
    return resume or (run_dir if is_run(run_dir) else None)


def recorded(run_dir):
    """The config.json of a run, with the changes in its amendments.json applied."""
    try:
        record = storage.read_json(os.path.join(run_dir, "config.json"))
        amendments = os.path.join(run_dir, "amendments.json")
        for amendment in storage.read_json(amendments) if os.path.isfile(amendments) else []:
            for key, change in amendment["changes"].items():
                record["train" if key in record["train"] else "model"][key] = change["now"]
        return record
    except FileNotFoundError:
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{run_dir}: config.json or amendments.json is not as a run "
                          f"writes it ({err})") from None


def recorded_flags(run_dir, *config_classes):
    """{field: value} a run recorded for the fields of `config_classes` (tuples as
    tuples), locations left out: the defaults of a resumed run's flags. A training
    field the run predates gets TrainConfig's default, not the recipe's."""
    record = recorded(run_dir)
    values = {}
    for cls, section in zip(config_classes, ("model", "train")):
        for f in dataclasses.fields(cls):
            if f.name in record.get(section, {}) and f.name not in LOCATION:
                value = record[section][f.name]
                values[f.name] = tuple(value) if isinstance(f.default, tuple) else value
            elif section == "train" and "train" in record and f.name not in LOCATION:
                # Not a field yet when the run began: TrainConfig's own default is what
                # every run did before it (a recipe's default may have moved since).
                values[f.name] = f.default
    return values


def check_resumed(run_dir, record):
    """Refuse to go on with `run_dir` under a config other than the one it recorded
    (amendments included), except in the `AMENDABLE` fields, whose changes are
    appended to its `amendments.json`; config.json itself is never rewritten."""
    before = recorded(run_dir)
    if before.get("recipe") != record["recipe"]:
        raise ConfigError(f"{run_dir} is a run of {before.get('recipe')}, "
                          f"not of {record['recipe']}")
    changes = {}
    for section in ("model", "train"):
        old, new = before.get(section, {}), record[section]
        for key in dataclass_keys(new):
            if key in LOCATION or key not in old:  # not a field yet when the run began
                continue
            if _jsonable(old.get(key)) != _jsonable(new[key]):
                changes[key] = (old.get(key), new[key])
    if _jsonable(before.get("dataset")) != _jsonable(record.get("dataset")):
        changes["dataset (own data found)"] = ("as recorded", "changed since")
    refused = {key: change for key, change in changes.items() if key not in AMENDABLE}
    if refused:
        listed = "; ".join(f"{config.flag(key) if ' ' not in key else key}: the run has "
                           f"{_shown(old)}, given {_shown(new)}"
                           for key, (old, new) in refused.items())
        raise ConfigError(
            f"{run_dir} was trained with another configuration: {listed}. A resumed run "
            "takes its flags from its config.json (leave these out); only "
            f"{', '.join(config.flag(k) for k in AMENDABLE)} may change. For something else, "
            "start a new run.")
    if changes:
        path = os.path.join(run_dir, "amendments.json")
        amendments = storage.read_json(path) if os.path.isfile(path) else []
        amendments.append({"time": datetime.datetime.now().isoformat(timespec="seconds"),
                           "changes": {key: {"was": old, "now": new}
                                       for key, (old, new) in changes.items()}})
        storage.write_json(path, amendments)
        print(f"[resume] amended {', '.join(changes)}: recorded in {path}", flush=True)


def dataclass_keys(section):
    """The keys of a config.json section that are config fields (not derived values)."""
    return [key for key in section if key not in ("precision_resolved", "replicas",
                                                   "global_batch_size")]


def _shown(value):
    """A config value as its flag takes it (a tuple as A,B)."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else repr(value)


def _jsonable(value):
    """A value as config.json holds it (tuples as lists), for comparison."""
    return json.loads(json.dumps(value, default=str))


def finished(run_dir):
    """The metrics of a run that went to its end (evaluated, exported), else None."""
    path = os.path.join(run_dir, "metrics.json")
    return storage.read_json(path) if os.path.isfile(path) else None


def named_run_dir(path):
    """`--run-dir`: created if new, continued if it holds a run, refused otherwise."""
    if is_run(path):
        print(f"[run] {path} holds a run; going on from its last checkpoint", flush=True)
    elif os.path.isdir(path) and os.listdir(path):
        raise ConfigError(f"--run-dir {path}: not empty and not a run directory; refusing "
                          "to write into it")
    with storage.writing(path):
        os.makedirs(path, exist_ok=True)
    return path


class RunCheckpoint(keras.callbacks.Callback):
    """All a run needs to go on after a crash, written whole at every epoch end.

    `checkpoints/epoch-<n>/` holds the model's and optimizer's variables
    (Adam's moments, its step count and learning rate), the random
    generators' states (dropout's masks), EarlyStopping's best weights,
    `state.json` (the history so far, the seconds trained, and the state of
    EarlyStopping and ReduceLROnPlateau: best value, epochs waited, best
    epoch) and `manifest.json`, the SHA-256 of each of those files.

    Each is written to a temporary folder and renamed into place, so a kill
    at any moment leaves the earlier ones whole; then all but the newest
    `keep` are removed. At a resume, the newest checkpoint whose files match
    their checksums is used; each that does not is reported with its path
    and reason. A full disk while writing one ends the run with an error that
    names it, the previous checkpoint intact.

    Why not TensorFlow's `tf.train.Checkpoint` and `CheckpointManager`
    (numbered, `max_to_keep`): they save trackable variables only, so the
    history and the callbacks' state would still need files of their own
    beside them, outside the manager's atomic step; and their index is
    written in place. Keras's own BackupAndRestore keeps the weights and the
    epoch only: after a resume, EarlyStopping forgot its best epoch and the
    history began again.

    On `on_train_begin` it restores the checkpoint into the model and into
    `stateful` (EarlyStopping, ReduceLROnPlateau); it must come after those in
    the callback list, since their own `on_train_begin` resets them.
    `restore_from` (default: `directory`) is where it looks.
    """

    KEYS = ("best", "wait", "best_epoch", "stopped_epoch", "cooldown_counter")
    FILES = ("model.weights.h5", "rng_state.npz", "best_weights.npz", "state.json")

    def __init__(self, directory, stateful=(), restore_from=None, keep=2):
        super().__init__()
        self.directory = directory
        self.stateful = list(stateful)
        self.keep = keep
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
        try:
            self.model.load_weights(os.path.join(self.path, "model.weights.h5"))
        except ValueError as err:
            raise CheckpointError(
                f"{self.path} does not fit this model ({str(err).splitlines()[0]}); was the "
                "recipe's code changed since the run started? Start a new run.") from None
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
        if self.directory == os.path.dirname(self.path):  # not a chief's, read by a worker
            self._prune(self.initial_epoch)

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
        previous = self.path if self.path and os.path.isdir(self.path) else None
        intact = (f"the previous checkpoint {previous} is intact" if previous else
                  "no checkpoint was written before it") + (
            f"; make room and go on with --resume {os.path.dirname(self.directory)}")
        with storage.writing(final, intact):
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
                self.model.save_weights(os.path.join(tmp, "model.weights.h5"))
                np.savez(os.path.join(tmp, "rng_state.npz"),
                         *[variable.numpy() for variable in _rng_states(self.model)])
                best = [getattr(cb, "best_weights", None) for cb in self.stateful]
                np.savez(os.path.join(tmp, "best_weights.npz"),
                         *next((w for w in best if w is not None), []))
                storage.write_json(os.path.join(tmp, "state.json"), state)
                storage.write_manifest(tmp)
                shutil.rmtree(final, ignore_errors=True)  # left by a resume from an older one
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.path = final
        self._prune(epoch + 1)

    def _prune(self, newest):
        """Keep the `keep` checkpoints up to epoch `newest`; a later one was left by a
        run that went on from an older checkpoint (it was damaged, and reported)."""
        for number, path in _numbered(self.directory):
            if not newest - self.keep < number <= newest:
                shutil.rmtree(path, ignore_errors=True)


def _numbered(directory):
    """[(epoch, path)] of the checkpoints in `directory`, newest first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    found = [(int(name.split("-", 1)[1]), os.path.join(directory, name)) for name in names
             if name.startswith("epoch-") and name.split("-", 1)[1].isdigit()]
    return sorted(found, reverse=True)


def _rng_states(model):
    """The states of the model's random generators (dropout's masks, for one).

    `save_weights` leaves them out, so without them a resumed run would draw
    other dropout masks than the uninterrupted one.
    """
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _plain(value):
    """A JSON-ready copy of a callback's number (numpy scalars included)."""
    return value.item() if hasattr(value, "item") else value


def check_checkpoint(path):
    """None if the checkpoint at `path` can be used, else the reason it cannot."""
    problem = storage.check_manifest(path)
    if problem == f"no {storage.MANIFEST}":  # written before checksums were recorded
        missing = [name for name in RunCheckpoint.FILES
                   if not os.path.isfile(os.path.join(path, name))]
        problem = f"{missing[0]} is missing" if missing else None
        if problem is None:
            try:
                import h5py

                h5py.File(os.path.join(path, "model.weights.h5"), "r").close()
                storage.read_json(os.path.join(path, "state.json"))
            except (OSError, ValueError) as err:
                problem = f"unreadable ({str(err).splitlines()[0]})"
    return problem


def latest_checkpoint(directory):
    """(path, state) of the newest usable checkpoint in `directory`, or (None, None)
    if there is none yet; each unusable one is reported, and if none can be
    used, CheckpointError."""
    found = _numbered(directory)
    problems = []
    for _, path in found:
        problem = check_checkpoint(path)
        if problem is None:
            if problems:
                print(f"[resume] going on from the previous checkpoint, {path}", flush=True)
            return path, storage.read_json(os.path.join(path, "state.json"))
        print(f"[resume] checkpoint {path} cannot be used: {problem}", flush=True)
        problems.append(f"{path}: {problem}")
    if problems:
        raise CheckpointError(f"no checkpoint of this run can be used ({'; '.join(problems)}); "
                              "start a new run")
    return None, None
