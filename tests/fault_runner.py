"""Run a module as `python -m` would, and SIGKILL this process at a named point.

    python -m tests.fault_runner POINT N -m MODULE [ARGS...]

The Nth time the process reaches POINT (see `POINTS`) it prints
`[fault] killed at POINT` and sends itself SIGKILL, as a power cut or
`kill -9` would: no handler, no cleanup, no flush of files in flight.
"""

import os
import runpy
import signal
import sys


def points():
    """{name: (owner, attribute, "before" or "after" the call, which calls count)}."""
    import keras

    from core import export, runs, storage

    every = lambda *args, **kwargs: True  # noqa: E731
    return {
        # inside an epoch: a batch has just been trained
        "mid-epoch": (keras.callbacks.TerminateOnNaN, "on_batch_end", "after", every),
        # an epoch trained and validated, its checkpoint not begun
        "epoch-end": (runs.RunCheckpoint, "on_epoch_end", "before", every),
        # a checkpoint half-written: the weights in its temporary folder, nothing else
        "checkpoint-weights": (keras.Model, "save_weights", "after", every),
        # a checkpoint written but for its manifest
        "checkpoint-manifest": (storage, "write_manifest", "before", every),
        # a checkpoint published, the older ones not yet removed
        "checkpoint-published": (runs.RunCheckpoint, "_prune", "before",
                                 lambda self, newest: newest > self.initial_epoch),
        # trained; the test split not yet read
        "test-read": (keras.Model, "evaluate", "before", every),
        # history.json and model.keras written; nothing exported
        "model-saved": (keras.Model, "save", "after", every),
        # the export written in its hidden folder, not yet renamed into place
        "export-staged": (type(keras.export.ExportArchive()), "write_out", "after", every),
        # a version published, not yet checked in a fresh interpreter
        "export-published": (export, "verify_export", "before", every),
        # exported and checked; metrics.json, the run's last file, not written
        "metrics": (storage, "write_json", "before",
                    lambda path, value: path.endswith("metrics.json")),
    }


def arm(name, nth):
    """Wrap the point's function so that its `nth` counted call kills the process."""
    owner, attribute, when, counts = points()[name]
    original = getattr(owner, attribute)
    calls = [0]

    def kill():
        print(f"[fault] killed at {name} ({nth})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def wrapped(*args, **kwargs):
        counted = counts(*args, **kwargs)
        calls[0] += counted
        if counted and calls[0] == nth and when == "before":
            kill()
        result = original(*args, **kwargs)
        if counted and calls[0] == nth and when == "after":
            kill()
        return result

    setattr(owner, attribute, wrapped)


if __name__ == "__main__":
    point, nth, dash_m, module, *args = sys.argv[1:]
    assert dash_m == "-m", __doc__
    arm(point, int(nth))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
