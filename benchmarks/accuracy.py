"""Every recipe's test metric, wall time and training speed at its default budget.

    python -m benchmarks.accuracy --train    # runs each default command below, then tabulates
    python -m benchmarks.accuracy            # tabulates matching runs already in runs/

A run counts for a row only if its saved config.json is the one the row's
command resolves to (every model and training field; where it writes does not
count), with the row's seeds. The text rows are run with three seeds and
reported as mean and spread: with 2,086 test snippets one accuracy has a
standard error of about 0.9 points, as large as the gaps between the models.

Writes benchmarks/results/accuracy.json, accuracy.md and accuracy.png (a bar
chart of the classifiers' test accuracy with their training time).

Fixed before it ran: the commands are the recipes' defaults as committed,
and the seeds (42 for the image rows, 42-44 for the text rows).
"""

import argparse
import dataclasses
import glob
import importlib
import json
import os
import shlex
import statistics
import subprocess
import sys

from benchmarks import RESULTS, write_result

TEXT_SEEDS = (42, 43, 44)
#: (row name, default command, recipe module, seeds, metric)
ROWS = [
    ("CNN", "python -m recipes.cnn", "cnn", (42,), "test_accuracy"),
    ("BiLSTM", "python -m recipes.rnn_text --cell lstm", "rnn_text", TEXT_SEEDS,
     "test_accuracy"),
    ("BiGRU", "python -m recipes.rnn_text --cell gru", "rnn_text", TEXT_SEEDS, "test_accuracy"),
    ("Transformer", "python -m recipes.transformer_text", "transformer_text", TEXT_SEEDS,
     "test_accuracy"),
    ("BiSimpleRNN", "python -m recipes.rnn_text --cell simple", "rnn_text", TEXT_SEEDS,
     "test_accuracy"),
    ("Bag of n-grams (tf-idf + logistic)", "python -m recipes.ngram_text", "ngram_text",
     TEXT_SEEDS, "test_accuracy"),
    ("Autoencoder (resize_nearest)", "python -m recipes.upsampling", "upsampling", (42,),
     "test_mse"),
]
#: Fields that say where and what a run writes, not what it computes.
PLACES = ("runs_dir", "export_dir", "export", "export_format", "run_dir")
#: Saved beside the training flags, derived from them.
DERIVED = ("precision_resolved", "replicas", "global_batch_size")
#: Fields added after runs were recorded, with the value every run had
#: before they existed (the RNN's cell activation was always tanh, the CNN had
#: no L2 penalty; every run trained on one device, unclipped, unsmoothed, without
#: a moving average of its weights or test-time flips).
LATER_FIELDS = {"activation": "tanh", "l2": 0.0, "architecture": "plain", "augment": False,
                "standardize": "strip_punctuation", "augmentations": ["flip", "shift"],
                "tta": False}
LATER_TRAIN_FIELDS = {"strategy": "default", "cpu_replicas": 0, "clipnorm": 0.0,
                      "train_percent": 100, "schedule": "constant", "steps_per_epoch": 0,
                      "label_smoothing": 0.0, "ema": 0.0}


def resolved_config(recipe, command, seed):
    """(model, train) dicts that `command --seed seed` saves in its config.json."""
    module = importlib.import_module(f"recipes.{recipe}")
    _, _, model, train = module.parse([*shlex.split(command)[3:], "--seed", str(seed)])
    return dataclasses.asdict(model), dataclasses.asdict(train)


def same_config(saved, model, train):
    """Whether a run's saved config is `model` and `train` (seed included), places aside."""
    as_saved = lambda value: json.loads(json.dumps(value))  # noqa: E731  (tuples -> lists)
    computes = lambda config: {k: v for k, v in config.items()  # noqa: E731
                               if k not in PLACES and k not in DERIVED}
    saved_model = {**{k: v for k, v in LATER_FIELDS.items() if k in model}, **saved["model"]}
    saved_train = {**LATER_TRAIN_FIELDS, **saved["train"]}
    return (saved_model == as_saved(model) and
            computes(saved_train) == computes(as_saved(train)))


def newest_run(runs_dir, recipe, command, seed):
    """The newest finished run of `recipe` whose config is `command`'s with `seed`."""
    model, train = resolved_config(recipe, command, seed)
    for run_dir in sorted(glob.glob(os.path.join(runs_dir, recipe, "*")), reverse=True):
        try:
            with open(os.path.join(run_dir, "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(run_dir, "metrics.json")) as f:
                metrics = json.load(f)
        except OSError:
            continue
        if same_config(config, model, train):
            return run_dir, config, metrics
    return None


def summarize(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def shown(row):
    """`accuracy 0.7650 ± 0.0040`: the mean, and the spread where there are seeds."""
    text = f"{row['metric'].replace('test_', '')} {row['value']:.4f}"
    return text + (f" ± {row['spread']:.4f}" if len(row["seeds"]) > 1 else "")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", action="store_true", help="run every default command first")
    parser.add_argument("--only", metavar="RECIPE", help="with --train: only the rows of this "
                        "recipe module (e.g. ngram_text)")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    if args.train:
        for _, command, recipe, seeds, _ in ROWS:
            if args.only and recipe != args.only:
                continue
            for seed in seeds:
                argv_ = shlex.split(command)
                subprocess.run([sys.executable, *argv_[1:], "--seed", str(seed),
                                "--runs-dir", args.runs_dir], check=True)
    rows = []
    for name, command, recipe, seeds, metric in ROWS:
        found = [newest_run(args.runs_dir, recipe, command, seed) for seed in seeds]
        if not all(found):
            missing = [seed for seed, run in zip(seeds, found) if not run]
            print(f"[accuracy] no finished run of `{command}` with seed(s) {missing} in "
                  f"{args.runs_dir}")
            continue
        value = [metrics[metric] for _, _, metrics in found]
        seconds = [metrics["train_seconds"] for _, _, metrics in found]
        mean, spread = summarize(value)
        rows.append({
            "recipe": name, "command": command, "metric": metric, "seeds": list(seeds),
            "runs": [run_dir for run_dir, _, _ in found], "values": value,
            "value": round(mean, 5), "spread": round(spread, 5),
            "epochs": [metrics["epochs"] for _, _, metrics in found],
            "train_seconds": round(statistics.mean(seconds), 1),
            "examples_per_second": round(statistics.mean(
                m["examples_per_second"] for _, _, m in found), 1),
            "parameters": found[0][2]["parameters"],
            "precision": found[0][1]["train"]["precision_resolved"],
        })
    table = ["| recipe | test metric (mean ± sd over seeds) | seeds | epochs | train time (s, mean) "
             "| examples/s | parameters | command |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    table += [f"| {r['recipe']} | {shown(r)} | {len(r['seeds'])} | "
              f"{', '.join(map(str, r['epochs']))} | {r['train_seconds']:.0f} | "
              f"{r['examples_per_second']:,.0f} | {r['parameters']:,} | `{r['command']}` |"
              for r in rows]
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
                      yerr=[r["spread"] for r in classifiers], capsize=3,
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
