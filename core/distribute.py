"""Where a recipe trains: this process's device, several devices, or several machines.

`--strategy` picks one of TensorFlow's distribution strategies, here and
nowhere else:

- ``default``: no strategy; Keras's `fit` on this process's device.
- ``mirrored``: `tf.distribute.MirroredStrategy`, one replica per GPU (or per
  logical CPU with `--cpu-replicas N`, which splits the CPU so the strategy
  can be tried on a machine without GPUs); Keras's `fit` runs it.
- ``multi_worker``: `tf.distribute.MultiWorkerMirroredStrategy` across the
  processes that `TF_CONFIG` names, one replica per worker, trained by
  `core.loop` because Keras 3's `fit` cannot run this strategy
  (keras-team/keras#20585).

Under a strategy the recipe's model is not moved: `replica_of` builds a twin
of it inside `strategy.scope()` (model, optimizer and metrics), which trains,
and the trained weights are copied back. A recipe therefore builds and
compiles its model as it always does, and evaluates and exports a plain
model. Every replica gets `--batch-size` examples a step: the global batch is
that times the number of replicas. The learning rate is not scaled.
"""

import contextlib
import json
import os

import keras
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")

_created = {}  # TensorFlow allows one strategy of each kind per process


class StrategyError(ValueError):
    """A strategy that cannot be set up; the message says why."""


def check(strategy, cpu_replicas):
    """Raise StrategyError for a strategy this process cannot use (before any training)."""
    if strategy not in STRATEGIES:
        raise StrategyError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if cpu_replicas < 0:
        raise StrategyError(f"cpu_replicas must be >= 0, got {cpu_replicas}")
    if cpu_replicas and strategy != "mirrored":
        raise StrategyError("--cpu-replicas splits the CPU for --strategy mirrored only")
    if strategy == "multi_worker":
        cluster()


def cluster():
    """(worker addresses, this worker's index) from `TF_CONFIG`, checked."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise StrategyError(
            "--strategy multi_worker needs TF_CONFIG (the cluster and this worker's place in "
            "it); start the workers with `python -m recipes.launch --workers N ...`, or see "
            "docs/distributed.md")
    try:
        config = json.loads(raw)
        workers = list(config["cluster"].get("chief", [])) + list(config["cluster"]["worker"])
        task = config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise StrategyError(
            f"TF_CONFIG is malformed ({type(err).__name__}: {err}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
            '"index": 0}}') from None
    if kind not in ("chief", "worker"):
        raise StrategyError(f"TF_CONFIG task type must be 'chief' or 'worker', got {kind!r}")
    count = len(config["cluster"].get(kind, []))
    if not 0 <= index < count:
        raise StrategyError(f"TF_CONFIG task index {index} is outside its {count} {kind}(s)")
    if not all(isinstance(w, str) and ":" in w for w in workers):
        raise StrategyError(f"TF_CONFIG workers must be 'host:port' strings, got {workers}")
    return workers, index


def is_chief(strategy_name):
    """Whether this process writes runs and exports: always, except a non-chief worker."""
    if strategy_name != "multi_worker":
        return True
    config = json.loads(os.environ["TF_CONFIG"])
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return int(task["index"]) == 0


def worker_index(strategy_name):
    """This worker's place among the workers (0 outside multi_worker)."""
    return cluster()[1] if strategy_name == "multi_worker" else 0


def get(strategy_name, cpu_replicas=0):
    """The strategy for `--strategy` (None for default), created once per process.

    Call it before TensorFlow runs any op: both the logical CPU split and
    MultiWorkerMirroredStrategy must come first.
    """
    check(strategy_name, cpu_replicas)
    if strategy_name == "default":
        return None
    key = (strategy_name, cpu_replicas)
    if key not in _created:
        if strategy_name == "mirrored":
            _created[key] = tf.distribute.MirroredStrategy(devices=_devices(cpu_replicas))
        else:
            _created[key] = tf.distribute.MultiWorkerMirroredStrategy()
    return _created[key]


def _devices(cpu_replicas):
    """GPUs if any; else `cpu_replicas` logical CPUs (or the one CPU)."""
    # Physical devices first: listing logical ones starts TensorFlow's runtime.
    if tf.config.list_physical_devices("GPU") and not cpu_replicas:
        return [d.name for d in tf.config.list_logical_devices("GPU")]
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError:
            if len(tf.config.list_logical_devices("CPU")) != cpu_replicas:
                raise StrategyError(
                    "--cpu-replicas must take effect before TensorFlow starts; this process "
                    "has already initialized its devices") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def barrier(strategy):
    """Return when every worker has got here (one all-reduce of a scalar).

    At the end of a multi-worker run the other workers wait here for the
    chief's evaluation and export, so a worker's exit code says whether the
    job finished, and the chief is not left with peers that vanished.
    """
    tf.function(lambda: strategy.reduce(
        "SUM", strategy.run(lambda: tf.ones(())), axis=None))()


def replicas(strategy):
    return strategy.num_replicas_in_sync if strategy else 1


@contextlib.contextmanager
def replica_of(model, strategy):
    """A twin of the compiled `model` made inside `strategy.scope()`, trained in its place.

    The twin has the model's architecture, starting weights and compile
    settings (optimizer, loss, metrics), all created in the scope, so its
    variables are mirrored across replicas. On leaving the block the trained
    weights are copied back into `model`.
    """
    if strategy is None:
        yield model
        return
    with strategy.scope():
        twin = keras.models.clone_model(model)
        twin.compile_from_config(model.get_compile_config())
        twin.set_weights(model.get_weights())
    yield twin
    model.set_weights(twin.get_weights())
