"""What `make run`'s 5 epochs should train: candidates against the default (#38).

    python -m benchmarks.cnn_short                        # 4 candidates x 3 seeds, about 27 minutes here
    python -m benchmarks.cnn_short --limit 512 --epochs 1 --seeds 42   # a smoke test

`make run` trains `python -m recipes.cnn --epochs 5`, the recipe's default with
the cosine schedule squeezed into 5 epochs. That default was chosen at 20
epochs (benchmarks/results/cnn_techniques_20.md), label smoothing included,
and was never judged at 5. Each candidate changes one thing, at 5 epochs and
seeds 42, 43 and 44:

1. `default`: `python -m recipes.cnn --epochs 5`.
2. `no label smoothing`: `--label-smoothing 0`.
3. `batch 64`: `--batch-size 64`, twice the steps in the same epochs.
4. `filters 32,64,128`: twice the width, about twice the seconds.

The rule, fixed before any candidate ran (2026-12-06): `make run` takes the
candidate with the highest mean validation accuracy when it beats the default
by at least 0.1 point and by more than one standard error of the difference,
at most 2.5x the default's seconds per epoch; otherwise it keeps the default.
Validation is the 6,000 images held out of TFDS's train split; each run reads
the test split once, as every run does, and nothing is chosen on it.

Writes benchmarks/results/cnn_short.json and .md; a stopped run resumes,
skipping the runs already recorded.
"""

import math
import sys

import numpy as np

from benchmarks.cnn_techniques import arguments, measure, publish, recorded, summary

EPOCHS = 5
CANDIDATES = [
    ("default", []),
    ("no label smoothing", ["--label-smoothing", "0"]),
    ("batch 64", ["--batch-size", "64"]),
    ("filters 32,64,128", ["--filters", "32,64,128"]),
]
MIN_GAIN = 0.001  # the rule: at least 0.1 point...
MAX_SLOWDOWN = 2.5  # ...at most 2.5x the default's seconds per epoch


def verdict(results):
    """(chosen candidate, [(candidate, gain, standard error, slowdown, eligible)])."""
    def of(name, key):
        return [r[key] for r in results[name].values()]

    base = of("default", "val_accuracy")
    base_seconds = np.mean(of("default", "seconds_per_epoch"))
    rows = []
    for name, _ in CANDIDATES[1:]:
        if not results.get(name):
            continue
        accuracy = of(name, "val_accuracy")
        gain = np.mean(accuracy) - np.mean(base)
        se = math.sqrt(summary(accuracy)[1] ** 2 + summary(base)[1] ** 2)
        slower = np.mean(of(name, "seconds_per_epoch")) / base_seconds
        rows.append((name, float(gain), se, float(slower),
                     bool(gain >= MIN_GAIN and gain > se and slower <= MAX_SLOWDOWN)))
    eligible = [row for row in rows if row[4]]
    chosen = max(eligible, key=lambda row: row[1])[0] if eligible else "default"
    return chosen, rows


def report(results, settings):
    lines = [
        "# What `make run`'s 5 epochs should train (#38)",
        "",
        f"`python -m benchmarks.cnn_short` ({settings}). Each candidate changes one "
        "thing from the default (its flags are in the JSON); validation accuracy "
        "(6,000 images held out of the training split), mean ± standard error over "
        "seeds. Seconds: training only, on a shared machine.",
        "",
        "| candidate | seeds | validation accuracy | s per epoch | test accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _ in CANDIDATES:
        runs = list(results.get(name, {}).values())
        if not runs:
            continue
        acc, test = (summary([r[k] for r in runs]) for k in ("val_accuracy", "test_accuracy"))
        lines.append(f"| {name} | {len(runs)} | {acc[0]:.4f} ± {acc[1]:.4f} | "
                     f"{np.mean([r['seconds_per_epoch'] for r in runs]):.1f} | "
                     f"{test[0]:.4f} ± {test[1]:.4f} |")
    if results.get("default"):
        chosen, rows = verdict(results)
        lines += ["", "## Verdict (the rule in the module's docstring)", ""]
        lines += [f"- {name}: {gain * 100:+.2f} points (standard error {se * 100:.2f}) over "
                  f"the default, {slower:.2f}x its seconds per epoch: "
                  f"{'eligible' if ok else 'not eligible'}."
                  for name, gain, se, slower, ok in rows]
        lines += ["", f"`make run` trains: **{chosen}**."]
    return lines


def main(argv=None):
    args = arguments("python -m benchmarks.cnn_short", __doc__, "cnn_short", EPOCHS,
                     "default: %(default)s").parse_args(argv)
    results, settings = recorded(args)
    for seed in args.seeds:  # seed by seed, so that a stop leaves every candidate alike
        for name, flags in CANDIDATES:
            measure(results, name, flags, seed, args, settings)
    publish(args, report(results, settings))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
