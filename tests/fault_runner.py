"""Run a module as `python -m` would, and SIGKILL this process at a named point.

    python -m tests.fault_runner POINT N -m MODULE [ARGS...]

The Nth time the process reaches POINT (see `points`) it prints
`[fault] killed at POINT` and sends itself SIGKILL, as a power cut or
`kill -9` would: no handler, no cleanup, no flush of files in flight.
"""

import argparse
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


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tests.fault_runner", usage="%(prog)s POINT N -m MODULE [ARGS...]",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("point", choices=sorted(points()), help="where to kill the process")
    p.add_argument("nth", type=int, help="kill on the Nth time the point is reached")
    p.add_argument("-m", dest="module", required=True, help="the module to run; the "
                   "arguments after it are the module's own")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("-m") + 2 if "-m" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    arm(args.point, args.nth)
    sys.argv = [args.module, *argv[cut:]]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
