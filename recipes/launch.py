"""Start a recipe on N workers of this machine, as a multi-worker job would run.

    python -m recipes.launch --workers 2 cnn --epochs 1
    python -m recipes.launch --workers 2 --restarts 3 rnn_text --cell gru

Each worker is `python -m recipes.<recipe> --strategy multi_worker --run-dir
RUN_DIR ...`, with a `TF_CONFIG` that names every worker on 127.0.0.1 (free
ports) and its own index. Their output is streamed with a `[w<i>]` prefix.
Worker 0 is the chief: it writes RUN_DIR and exports.

When a worker fails (an error, a kill), TensorFlow's collectives cannot go on
without it: the launcher stops the others and, if `--restarts` allows,
starts every worker again with the same `TF_CONFIG` and RUN_DIR, and they go
on together from the last finished epoch's checkpoint. The exit code is
non-zero if the job does not finish. On several machines, run one worker per
host yourself with the same command line and a `TF_CONFIG` per host
(docs/distributed.md).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

RECIPES = ("cnn", "rnn_text", "transformer_text", "upsampling", "ngram_text")
#: How long a worker told to stop (SIGTERM) has before SIGKILL. Short: once
#: MultiWorkerMirroredStrategy is set up, TensorFlow takes SIGTERM as a
#: preemption notice and the worker goes on until its collectives time out
#: (about 6 s here). Killing it loses nothing: checkpoints and exports are
#: written aside and renamed into place.
STOP_GRACE_SECONDS = 1


def free_ports(n):
    """n ports that are free on 127.0.0.1 now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_configs(ports):
    """One TF_CONFIG per worker: the whole cluster, and this worker's index."""
    workers = [f"127.0.0.1:{port}" for port in ports]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(len(ports))]


def flag_value(args, flag):
    """The value of `--flag X` or `--flag=X` in a recipe's arguments, or None."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _stream(process, prefix):
    for line in process.stdout:
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


def start(recipe, configs, args):
    """Start every worker; returns [(process, reader thread)]."""
    workers = []
    for index, config in enumerate(configs):
        env = {**os.environ, "TF_CONFIG": config, "PYTHONUNBUFFERED": "1"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        process = subprocess.Popen(
            [sys.executable, "-m", f"recipes.{recipe}", "--strategy", "multi_worker", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        print(f"[launch] worker {index} pid {process.pid}", flush=True)
        reader = threading.Thread(target=_stream, args=(process, f"[w{index}]"), daemon=True)
        reader.start()
        workers.append((process, reader))
    return workers


def stop(workers):
    """SIGTERM every live worker, then SIGKILL what is left after a grace period."""
    for process, _ in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process, _ in workers:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait(workers):
    """None when all succeed; else (index, exit code) of the first that failed."""
    while True:
        codes = [process.poll() for process, _ in workers]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                return index, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def parse(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.launch", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="workers to start (default: 2)")
    parser.add_argument("--restarts", type=int, default=0,
                        help="times to restart every worker after one fails (default: 0)")
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="the recipe's own flags (see python -m recipes.<recipe> --help)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.restarts < 0:
        parser.error(f"--restarts must be >= 0, got {args.restarts}")
    if "--strategy" in args.args or any(a.startswith("--strategy=") for a in args.args):
        parser.error("the launcher sets --strategy multi_worker itself")
    return args


def main(argv=None):
    args = parse(argv)
    from core import storage  # no TensorFlow here: the workers import it

    recipe_args = list(args.args)
    run_dir = flag_value(recipe_args, "--run-dir")
    if run_dir is None:
        run_dir = storage.new_run_dir(flag_value(recipe_args, "--runs-dir") or "runs",
                                      args.recipe)
        recipe_args += ["--run-dir", run_dir]
    configs = tf_configs(free_ports(args.workers))
    print(f"[launch] {args.workers} worker(s) of {args.recipe}, run directory {run_dir}",
          flush=True)
    for attempt in range(args.restarts + 1):
        workers = start(args.recipe, configs, recipe_args)
        try:
            failed = wait(workers)
        except KeyboardInterrupt:
            stop(workers)
            return 130
        if failed is None:
            for _, reader in workers:
                reader.join()
            print(f"[launch] all {args.workers} worker(s) finished; run {run_dir}", flush=True)
            return 0
        index, code = failed
        stop(workers)
        for _, reader in workers:
            reader.join()
        if code == 2:  # the recipe refused its configuration: a restart would too
            print(f"[launch] worker {index} refused its configuration (exit code 2)",
                  flush=True)
            return 2
        left = args.restarts - attempt
        print(f"[launch] worker {index} failed (exit code {code}); "
              + (f"restarting all {args.workers} worker(s) ({left} restart(s) left)"
                 if left else "giving up"), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
