"""What each speedrun technique buys the CNN on Fashion-MNIST at its 5-minute budget (#38).

    python -m benchmarks.cnn_techniques --name cnn_techniques_20   # 4 rungs x 3 seeds, about 55 minutes
    python -m benchmarks.cnn_techniques --limit 512 --epochs 1 --seeds 42   # a smoke test

A ladder, each rung adding one technique to the last rung kept, every rung at the
5-minute budget and seeds 42, 43 and 44. The budget is epochs, so that a
busy machine changes the seconds and not what trained: `BUDGET_EPOCHS`, 20,
the whole epochs of the default that fit 300 s with a 20% margin for this
shared machine, at the 11.5 s an epoch (and 15 s for the first) measured here
on 2026-12-06 with batch norm on TensorFlow's fused kernel (core/batchnorm.py).
The first run of this ladder, in results/cnn_techniques.json, had 7 epochs:
what fitted 300 s at 43 s an epoch, before that kernel. The cosine schedule
spans the budget.

1. `default`: `python -m recipes.cnn` as it is.
2. `+ crop, flip`: `--augment --augmentations crop,flip`, whole-pixel shifts of
   up to 2 pixels and horizontal flips (the airbench recipe for small images).
3. `+ label smoothing`: `--label-smoothing 0.1`.
4. `+ EMA`: `--ema 0.999`, a moving average of the weights (a horizon of about
   1,000 steps, 2.4 epochs).

Each run also reports test-time augmentation: the trained model's
probabilities averaged over each validation image and its mirror image.

The rule, fixed before any rung ran: a rung is kept when its mean validation
accuracy beats the last kept rung's by at least 0.1 point and by more than one
standard error of the difference, and its seconds per epoch are within 15%;
test-time augmentation likewise, on the kept configuration. At the 20-epoch
budget the recipe's default then becomes the last rung kept, trained for the
budget (fixed before that run, on 2026-12-06). Validation is the
6,000 images held out of TFDS's train split; the runs also read the test split
once each, as every run does, and nothing is chosen on it.

Writes benchmarks/results/cnn_techniques.json and .md; a stopped run resumes,
skipping the runs already recorded.
"""

import argparse
import dataclasses
import json
import math
import os
import sys

import numpy as np

from benchmarks import RESULTS, write_result
from core import data, training
from recipes import cnn

RUNGS = [
    ("default", []),
    ("+ crop, flip", ["--augment", "--augmentations", "crop,flip"]),
    ("+ label smoothing 0.1", ["--label-smoothing", "0.1"]),
    ("+ EMA 0.999", ["--ema", "0.999"]),
]
BUDGET_EPOCHS = 20
MIN_GAIN = 0.001  # the rule: at least 0.1 point...
MAX_SLOWDOWN = 1.15  # ...at most 15% more seconds per epoch


def one_run(flags, seed, args):
    """Train one rung at one seed; its validation accuracy with and without TTA."""
    argv = [*flags, "--seed", str(seed), "--no-export", "--runs-dir", args.runs_dir]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    argv += ["--epochs", str(args.epochs)]
    _, _, model_config, train = cnn.parse(argv)
    clock = training.EpochClock()
    with training.released_graphs():
        result = cnn.run(model_config, train, extra_callbacks=[clock])
        model = result["model"]
        _, val_ds, _, _ = data.splits(train)
        model.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
        plain = model.evaluate(val_ds, return_dict=True, verbose=0)["accuracy"]
        tta = cnn.with_tta(model)  # what --tta serves
        tta.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
        mirrored = tta.evaluate(val_ds, return_dict=True, verbose=0)["accuracy"]
    return {"val_accuracy": float(plain), "val_accuracy_tta": float(mirrored),
            "test_accuracy": result["test_accuracy"], "epochs": result["epochs"],
            "train_seconds": clock.seconds[-1],
            "seconds_per_epoch": clock.seconds[-1] / max(1, len(clock.seconds)),
            "run_dir": result["run_dir"], "flags": flags, "model": dataclasses.asdict(model_config),
            "train": {"label_smoothing": train.label_smoothing, "ema": train.ema,
                      "epochs": train.epochs, "seed": seed}}


def last_kept(results, rung):
    """The last rung before `rung` that the rule keeps (None before the first)."""
    before = [name for name, _ in RUNGS[:[n for n, _ in RUNGS].index(rung)]]
    kept = [name for name, ok, _ in verdicts({k: v for k, v in results.items() if k in before})
            if ok and name in before]
    return kept[-1] if kept else None


def summary(values):
    values = np.asarray(values, float)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def verdicts(results):
    """The rule applied down the ladder; [(rung, kept, why)]."""
    lines, kept = [], None
    for name, _ in RUNGS:
        runs = results.get(name, {}).values()
        if not runs:
            continue
        accuracy = [r["val_accuracy"] for r in runs]
        seconds = np.mean([r["seconds_per_epoch"] for r in runs])
        if kept is None:
            kept = (name, accuracy, seconds)
            lines.append((name, True, "the baseline"))
            continue
        gain = np.mean(accuracy) - np.mean(kept[1])
        se = math.sqrt(summary(accuracy)[1] ** 2 + summary(kept[1])[1] ** 2)
        slower = seconds / kept[2]
        ok = bool(gain >= MIN_GAIN and gain > se and slower <= MAX_SLOWDOWN)
        lines.append((name, ok, f"{gain * 100:+.2f} points (standard error {se * 100:.2f}) "
                      f"over {kept[0]}, {slower:.2f}x the seconds per epoch"))
        if ok:
            kept = (name, accuracy, seconds)
    if kept is not None:
        runs = results[kept[0]].values()
        gain = np.mean([r["val_accuracy_tta"] - r["val_accuracy"] for r in runs])
        lines.append((f"{kept[0]}, with test-time flips", bool(gain >= MIN_GAIN),
                      f"{gain * 100:+.2f} points on validation"))
    return lines


def report(results, settings):
    lines = [
        "# Speedrun techniques on the CNN, Fashion-MNIST (#38)",
        "",
        f"`python -m benchmarks.cnn_techniques` ({settings}). Each rung adds one technique "
        "to the last rung kept (its flags are in the JSON); validation accuracy (6,000 "
        "images held out of the training split) after the run restored its best epoch, "
        "mean ± standard error over seeds. "
        "TTA: the same models, averaging each image and its mirror image. Seconds: "
        "training only.",
        "",
        "| rung | seeds | validation accuracy | with TTA | s per epoch | epochs | test accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _ in RUNGS:
        runs = list(results.get(name, {}).values())
        if not runs:
            continue
        acc, tta, test = (summary([r[k] for r in runs])
                          for k in ("val_accuracy", "val_accuracy_tta", "test_accuracy"))
        lines.append(
            f"| {name} | {len(runs)} | {acc[0]:.4f} ± {acc[1]:.4f} | {tta[0]:.4f} ± "
            f"{tta[1]:.4f} | {np.mean([r['seconds_per_epoch'] for r in runs]):.1f} | "
            f"{np.mean([r['epochs'] for r in runs]):.0f} | {test[0]:.4f} ± {test[1]:.4f} |")
    lines += ["", "## Verdict (the rule in the module's docstring)", ""]
    lines += [f"- {name}: **{'kept' if ok else 'not kept'}**, {why}."
              for name, ok, why in verdicts(results)]
    return lines


def arguments(prog, doc, name, epochs, epochs_help):
    """The command line of the CNN benchmarks: seeds, limit, epochs, results name, runs."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="42,43,44",
                   type=lambda s: [int(v) for v in s.split(",") if v])
    p.add_argument("--limit", type=int, default=0, help="examples per split; smoke tests")
    p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    p.add_argument("--name", default=name, help="results file stem")
    p.add_argument("--runs-dir", default="runs")
    return p


def recorded(args):
    """(the runs already in results/<name>.json, which a stopped benchmark resumes
    from; the settings line)."""
    path = os.path.join(RESULTS, f"{args.name}.json")
    results = {}
    if os.path.isfile(path):
        with open(path) as f:
            results = json.load(f)["results"]
    settings = (f"seeds {','.join(map(str, args.seeds))}"
                + (f", limit {args.limit}" if args.limit else "")
                + f", {args.epochs} epochs")
    return results, settings


def measure(results, name, flags, seed, args, settings):
    """Run `name` at `seed` unless recorded, and record it in results/<name>.json."""
    if str(seed) in results.get(name, {}):
        return
    print(f"\n[{args.name}] === {name}, seed {seed} ===", flush=True)
    results.setdefault(name, {})[str(seed)] = one_run(flags, seed, args)
    write_result(args.name, {"settings": settings, "results": results})


def publish(args, lines):
    """Write results/<name>.md and print it."""
    with open(os.path.join(RESULTS, f"{args.name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = arguments("python -m benchmarks.cnn_techniques", __doc__, "cnn_techniques",
                  BUDGET_EPOCHS, "the budget (default: %(default)s, 5 minutes here)")
    p.add_argument("--rungs", type=int, default=len(RUNGS),
                   help="run the first N rungs only")
    args = p.parse_args(argv)
    results, settings = recorded(args)
    flags_of = {}
    for name, extra in RUNGS[:args.rungs]:
        flags = [*flags_of.get(last_kept(results, name), []), *extra]
        flags_of[name] = flags
        for seed in args.seeds:
            measure(results, name, flags, seed, args, settings)
    publish(args, report(results, settings))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
