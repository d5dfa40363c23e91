"""Every recipe's test metric, wall time and training speed at its default budget.

    python -m benchmarks.accuracy --train    # runs each default command below, then tabulates
    python -m benchmarks.accuracy            # tabulates the newest matching runs in runs/

Writes benchmarks/results/accuracy.json, accuracy.md and accuracy.png (a bar
chart of the classifiers' test accuracy with their training time).
"""

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys

from benchmarks import RESULTS, write_result

#: (row name, default command, recipe run folder, config filter, metric)
ROWS = [
    ("CNN", "python -m recipes.cnn", "cnn", {}, "test_accuracy"),
    ("BiLSTM", "python -m recipes.rnn_text --cell lstm", "rnn_text", {"cell": "lstm"},
     "test_accuracy"),
    ("BiGRU", "python -m recipes.rnn_text --cell gru", "rnn_text", {"cell": "gru"},
     "test_accuracy"),
    ("Transformer", "python -m recipes.transformer_text", "transformer_text", {},
     "test_accuracy"),
    ("Autoencoder (resize_nearest)", "python -m recipes.upsampling", "upsampling",
     {"decoder": "resize_nearest"}, "test_mse"),
]


def newest_run(runs_dir, recipe, wanted):
    """The newest finished run of `recipe` whose model config matches `wanted`
    and whose training config is the default (no --limit)."""
    for run_dir in sorted(glob.glob(os.path.join(runs_dir, recipe, "*")), reverse=True):
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(run_dir, "metrics.json")) as f:
                metrics = json.load(f)
        except OSError:
            continue
        if config["train"].get("limit"):
            continue
        if all(config["model"].get(k) == v for k, v in wanted.items()):
            return run_dir, config, metrics
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="run every default command first")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    if args.train:
        for _, command, *_ in ROWS:
            argv_ = shlex.split(command)
            subprocess.run([sys.executable, *argv_[1:], "--runs-dir", args.runs_dir],
                           check=True)
    rows = []
    for name, command, recipe, wanted, metric in ROWS:
        found = newest_run(args.runs_dir, recipe, wanted)
        if not found:
            print(f"[accuracy] no finished default run of {name} in {args.runs_dir}")
            continue
        run_dir, config, metrics = found
        rows.append({
            "recipe": name, "command": command, "run": run_dir, "metric": metric,
            "value": round(metrics[metric], 5), "epochs": metrics["epochs"],
            "train_seconds": metrics["train_seconds"],
            "examples_per_second": metrics["examples_per_second"],
            "parameters": metrics["parameters"],
            "precision": config["train"]["precision_resolved"],
        })
    table = ["| recipe | test metric | epochs | train time (s) | examples/s | parameters | "
             "command |", "|---|---:|---:|---:|---:|---:|---|"]
    table += [f"| {r['recipe']} | {r['metric'].replace('test_', '')} {r['value']:.4f} | "
              f"{r['epochs']} | {r['train_seconds']:.0f} | {r['examples_per_second']:,.0f} | "
              f"{r['parameters']:,} | `{r['command']}` |" for r in rows]
    print("\n".join(table))
    write_result("accuracy", {"rows": rows, "table": table})
    with open(os.path.join(RESULTS, "accuracy.md"), "w") as f:
        f.write("\n".join(table) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classifiers = [r for r in rows if r["metric"] == "test_accuracy"]
    if classifiers:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        bars = ax.bar([r["recipe"] for r in classifiers], [r["value"] for r in classifiers],
                      color="#4c72b0")
        for bar, r in zip(bars, classifiers):
            ax.annotate(f"{r['value']:.3f}\n{r['train_seconds']:.0f} s",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("test accuracy")
        ax.set_title("Recipes at their default budget (2-core CPU)")
        fig.tight_layout()
        fig.savefig(os.path.join(RESULTS, "accuracy.png"), dpi=110)


if __name__ == "__main__":
    sys.exit(main())
