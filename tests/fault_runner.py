"""Run a module as `python -m` would, and SIGKILL this process at a named point.

    python -m tests.fault_runner POINT N -m MODULE [ARGS...]

The Nth time the process reaches POINT (see `points`) it prints
`[fault] killed at POINT` and sends itself SIGKILL, as a power cut or
`kill -9` would: no handler, no cleanup, no flush of files in flight.

    python -m tests.fault_runner --serve

A fork server for tests that start many runs one after another (`Forks`):
it imports TensorFlow, Keras and the recipes once (about 5 s here, as long
as a tiny run trains), then forks one child per request. Each child is a
process of its own, killed or exiting as `python -m` would; only the
imported modules are shared, and no TensorFlow op has run before the fork.
"""

import argparse
import gc
import importlib
import json
import os
import runpy
import signal
import subprocess
import sys
import traceback


def points():
    """{name: (owner, attribute, "before" or "after" the call, which calls count)}."""
    import keras
    import keras_tuner

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
        # a search's trial has trained and validated an epoch (any trial's)
        "trial-epoch-end": (keras_tuner.Tuner, "on_epoch_end", "after", every),
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
        prog="python -m tests.fault_runner",
        usage="%(prog)s [POINT N] -m MODULE [ARGS...]  |  %(prog)s --serve",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("point", nargs="?", choices=sorted(points()), help="where to kill the process")
    p.add_argument("nth", nargs="?", type=int, help="kill on the Nth time the point is reached")
    p.add_argument("-m", dest="module", help="the module to run; the arguments after it are "
                   "the module's own")
    p.add_argument("--serve", action="store_true",
                   help="be the fork server (`Forks`): one forked run a request line")
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("-m") + 2 if "-m" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    if args.serve:
        return serve()
    if args.module is None or (args.point is None) != (args.nth is None):
        p.error("POINT N -m MODULE, or -m MODULE alone (no kill), or --serve alone")
    if args.point is not None:
        arm(args.point, args.nth)
    sys.argv = [args.module, *argv[cut:]]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


#: What the fork server imports before its first fork.
PRELOADED = ("tensorflow", "keras", "keras_tuner", "recipes.cnn", "core.export",
             "core.recipe")


def serve():
    """Answer each request line, `{"argv": [...], "out": PATH, "err": PATH}`, with
    the exit code of a forked child that ran `main(argv)` (negative: killed by
    that signal)."""
    for name in PRELOADED:
        importlib.import_module(name)
    gc.freeze()  # what every child shares: no collection walks it, nor copies its pages
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            with open(request["out"], "w") as out, open(request["err"], "w") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
            code = 0
            try:
                main(request["argv"])
            except SystemExit as exit:  # as the interpreter maps sys.exit's argument
                code = exit.code if isinstance(exit.code, int) else exit.code is not None
                if exit.code is not None and not isinstance(exit.code, int):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)


class Forks:
    """A `--serve` process and its runs: `run(*argv)` -> (exit code, stdout, stderr).

    A context manager; the server is started in `cwd` with `env`, and each
    run's output is kept in `tmp_dir`.
    """

    def __init__(self, tmp_dir, cwd, env):
        self.tmp_dir, self.count = tmp_dir, 0
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.fault_runner", "--serve"], cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, *argv):
        self.count += 1
        out, err = (os.path.join(self.tmp_dir, f"fork-{self.count}.{s}") for s in ("out", "err"))
        self.server.stdin.write(json.dumps({"argv": list(argv), "out": out, "err": err}) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server ended (exit {self.server.wait()})")
        with open(out) as o, open(err) as e:
            return json.loads(line), o.read(), e.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stdin.close()
        self.server.wait(timeout=60)


if __name__ == "__main__":
    main()
