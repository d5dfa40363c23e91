"""The multi-worker training loop against Keras's `fit`, on the CNN at its default budget.

    python -m benchmarks.distributed                # about 40 minutes here
    python -m benchmarks.distributed --epochs 2     # a quick look

Three runs of `python -m recipes.cnn`, one after the other, same seed:

- ``fit``: `--strategy default`, Keras's `fit` on this process's device;
- ``loop, 1 worker``: `python -m recipes.launch --workers 1 cnn`, the
  multi-worker loop (`core.loop`) under MultiWorkerMirroredStrategy with one
  worker: the same global batch (128) and number of steps as `fit`;
- ``loop, 2 workers``: `--workers 2` on this machine: two processes of 128
  examples each, a global batch of 256, so half the steps per epoch.

Fixed before it ran: the runs, the seed (42), the recipe's default budget
(20 epochs, early stopping on val_loss with patience 4, the learning-rate
cut after 2), and the bar from issue #14: the loop with one worker within
0.5 point of `fit`'s test accuracy, in comparable time. Two processes on two
cores share the cores that one process already uses, so the 2-worker run is
not expected to be faster; it shows that the job runs and what it costs.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

from benchmarks import RESULTS, write_result

RUNS = {
    "fit": ["-m", "recipes.cnn", "--strategy", "default"],
    "loop, 1 worker": ["-m", "recipes.launch", "--workers", "1", "cnn"],
    "loop, 2 workers": ["-m", "recipes.launch", "--workers", "2", "cnn"],
}


def train(command, flags, runs_dir):
    """Run one command; returns its run's config and metrics and the wall seconds."""
    before = set(glob.glob(os.path.join(runs_dir, "cnn", "*")))
    started = time.perf_counter()
    subprocess.run([sys.executable, *command, *flags, "--runs-dir", runs_dir], check=True)
    wall = time.perf_counter() - started
    (run_dir,) = set(glob.glob(os.path.join(runs_dir, "cnn", "*"))) - before
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    return {"run": run_dir, "wall_seconds": round(wall, 1),
            "global_batch_size": config["train"]["global_batch_size"],
            **{k: metrics[k] for k in ("test_accuracy", "epochs", "train_seconds")}}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's budget (default: its own, 20)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    flags = ["--seed", str(args.seed), "--no-export"]
    if args.epochs:
        flags += ["--epochs", str(args.epochs)]
    results = {}
    for name, command in RUNS.items():
        print(f"\n[benchmarks] === {name} ===", flush=True)
        results[name] = train(command, flags, args.runs_dir)
    base = results["fit"]
    table = ["| training | global batch | test accuracy | vs fit (points) | epochs | "
             "train time (s) | time vs fit | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        table.append(
            f"| {name} | {r['global_batch_size']} | {r['test_accuracy']:.4f} | "
            f"{100 * (r['test_accuracy'] - base['test_accuracy']):+.2f} | {r['epochs']} | "
            f"{r['train_seconds']:.0f} | {r['train_seconds'] / base['train_seconds']:.2f}x | "
            f"{r['wall_seconds']:.0f} |")
    gap = abs(results["loop, 1 worker"]["test_accuracy"] - base["test_accuracy"])
    verdict = (f"loop (1 worker) vs fit: {100 * gap:.2f} points apart: bar (<= 0.5) "
               + ("met" if gap <= 0.005 else "NOT met"))
    table += ["", verdict]
    print("\n".join(table))
    suffix = f"_epochs{args.epochs}" if args.epochs else ""
    write_result(f"distributed{suffix}", {"seed": args.seed, "runs": results, "table": table})
    with open(os.path.join(RESULTS, f"distributed{suffix}.md"), "w") as f:
        f.write("\n".join(table) + "\n")


if __name__ == "__main__":
    sys.exit(main())
