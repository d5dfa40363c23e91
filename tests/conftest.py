"""What every test shares: Keras's defaults restored after each, and the suite's pace.

- Under pytest-xdist (`make test`: one worker per core), each worker's
  TensorFlow, and every process it starts, uses one thread for its ops, so
  two workers do not fight over the two cores.
- Exports are checked as always, in an interpreter that cannot import this
  project; here one such interpreter per worker (`core.export.CheckerServer`,
  on a Unix socket named by `core.export.SHARED_INTERPRETER`) answers every
  check, the worker's and those of every process its tests start, instead of
  a TensorFlow start each.
- What the test modules import (TensorFlow, Keras and the rest: about
  380,000 objects) is frozen out of the garbage collector once they are
  collected (`gc.freeze()`), so each full collection (Keras's
  `clear_session()`, `training.released_graphs`) walks only what the tests
  made: 0.23 s a collection before, nothing after.
- The end-to-end tests (marked slow) are handed out first, so the long ones
  run side by side rather than one of them last; tests that share an
  expensive module fixture carry an `xdist_group`, so one worker builds it.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # before TensorFlow is imported
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("RECIPES_SHARED_EXPORT_CHECKER", "1")

import gc  # noqa: E402
import importlib.util  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture(scope="session", autouse=True)
def export_checker():
    """One export checker for this worker and every process its tests start."""
    if importlib.util.find_spec("tensorflow") is None:  # make test-backends' environments
        yield
        return
    from core import export

    if os.environ.get(export.SHARED_INTERPRETER) != "1":
        yield  # set to something else by hand: left as it is
        return
    servers = [export.CheckerServer()]
    os.environ[export.SHARED_INTERPRETER] = servers[0].socket
    yield servers
    os.environ[export.SHARED_INTERPRETER] = "1"
    servers[0].close()


@pytest.fixture(autouse=True)
def export_checker_alive(export_checker):
    """A checker that died (a crash while reloading) is replaced before the next test,
    so one failure does not fail every export after it."""
    yield
    if export_checker and export_checker[0].process.poll() is not None:
        from core import export

        export_checker[0].close()
        export_checker[0] = export.CheckerServer()
        os.environ[export.SHARED_INTERPRETER] = export_checker[0].socket


def pytest_collection_finish(session):
    gc.freeze()  # every test module imported: what they imported lives to the end


@pytest.fixture(autouse=True)
def keras_defaults():
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session(free_memory=False)  # gc.collect() took 0.16 s a test
