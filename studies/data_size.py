"""Learning curves: does the transformer need more data than the BiLSTM?

The notes claim: "Transformers relate any position to any other, but need
sufficient data" (they have less built in about word order and locality than
a recurrent network, so they have more to learn from the examples).

Setup: the text recipes at their defaults (`python -m recipes.rnn_text`, a
BiLSTM; `python -m recipes.transformer_text`; and the tf-idf n-gram baseline
`python -m recipes.ngram_text` as a reference that has no word order to learn)
trained on `--percents` of rt_snippets' training split (`--train-percent`: a
random subset drawn with the seed; the vocabulary is adapted on that subset
only; validation and test stay whole), `--seeds` seeds each. Early stopping
on validation accuracy, as the recipes do, with the recipes' budget in
epochs (6, patience 2) scaled by 100 / percent, so that every run may take
the same number of steps: at 10% an epoch is 8 steps, and the recipes' own
budget (48 steps; the first run of this study) stopped the BiLSTM at the
majority class before it had learned anything.

Measured: test accuracy (read once per model) against the share of training
data. The claim predicts the transformer's deficit against the BiLSTM to grow
as data shrinks.

    python -m studies.data_size                      # about 8 minutes here
    python -m studies.data_size --percents 30,100 --seeds 42
"""

import sys

import numpy as np

import studies

RECIPES = {"rnn_text": "BiLSTM", "transformer_text": "transformer", "ngram_text": "tf-idf n-grams"}
MARGIN = 0.02  # points of a gap change counted as real: about 2 se of a 3-seed mean difference


def budget(recipe, percent):
    """The recipe's epochs and patience, scaled so a run on `percent` of the data
    may take as many steps as one on all of it."""
    import importlib
    import math

    _, _, _, train = importlib.import_module(f"recipes.{recipe}").parse([])
    scale = 100 / percent
    return {"epochs": math.ceil(train.epochs * scale),
            "patience": math.ceil(train.patience * scale)}


def study(args):
    for percent in args.percents:
        if not 0 < percent <= 100:
            raise studies.StudyError(f"a percent must be in (0, 100], got {percent}")
    runs = {}
    for seed in args.seeds:
        for percent in args.percents:
            for recipe in RECIPES:
                r = studies.text_recipe(recipe, seed=seed, train_percent=percent,
                                        limit=args.limit, **budget(recipe, percent))
                runs.setdefault(f"{recipe}/{percent}", []).append(
                    {k: r[k] for k in ("test_accuracy", "epochs", "parameters")})
                print(f"[data_size] {RECIPES[recipe]:<15} {percent:>3}% seed {seed}: test "
                      f"{r['test_accuracy']:.4f} after {r['epochs']} epochs", flush=True)
    report(args, runs)


def accuracy(runs, recipe, percent):
    return studies.mean_sd([r["test_accuracy"] for r in runs[f"{recipe}/{percent}"]])


def report(args, runs):
    plt = studies.pyplot()
    percents = args.percents
    lines = [
        f"# Learning curves on rt_snippets (recipe defaults; seeds "
        f"{', '.join(map(str, args.seeds))})", "",
        "![test accuracy against training data](data_size.png)", "",
        "Test accuracy, mean ± standard deviation over the seeds (each seed also draws its "
        "own subset).", "",
        "| recipe | parameters (100%) | " + " | ".join(f"{p}% of train" for p in percents) + " |",
        "|---|---:|" + "---:|" * len(percents),
    ]
    for recipe, name in RECIPES.items():
        cells = [f"{a:.4f} ± {s:.4f}" for a, s in (accuracy(runs, recipe, p) for p in percents)]
        lines.append(f"| {name} | {runs[f'{recipe}/{max(percents)}'][0]['parameters']:,} | "
                     + " | ".join(cells) + " |")
    gaps = {p: accuracy(runs, "transformer_text", p)[0] - accuracy(runs, "rnn_text", p)[0]
            for p in percents}
    small, large = min(percents), max(percents)
    widens = gaps[small] < gaps[large] - MARGIN
    lines += ["", "## Verdict", "",
              "- Transformer minus BiLSTM, test accuracy: " + ", ".join(
                  f"{100 * gaps[p]:+.1f} points at {p}%" for p in percents) + ". "
              + ("**Holds**: the transformer falls further behind as the data shrinks."
                 if widens else
                 "**Does not hold here**: the transformer does not fall further behind the "
                 "BiLSTM with less data (a change under "
                 f"{100 * MARGIN:.0f} points counts as none).")]
    ngram = {p: accuracy(runs, "ngram_text", p)[0] for p in percents}
    best_neural = {p: max(accuracy(runs, r, p)[0] for r in ("rnn_text", "transformer_text"))
                   for p in percents}
    lines.append("- Against the n-gram baseline, the best network: " + ", ".join(
        f"{100 * (best_neural[p] - ngram[p]):+.1f} points at {p}%" for p in percents) + ".")

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = np.array(percents)
    for recipe, name in RECIPES.items():
        stats = [accuracy(runs, recipe, p) for p in percents]
        ax.errorbar(sizes, [a for a, _ in stats], yerr=[s for _, s in stats], marker="o",
                    capsize=3, label=name)
    ax.set(xscale="log", xlabel="% of the training split", ylabel="test accuracy",
           title="rt_snippets learning curves")
    ax.set_xticks(sizes, [str(p) for p in percents])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    studies.write(args, "data_size", lines, {"data_size": fig}, {"runs": runs, "gaps": gaps})


def main(argv=None):
    p = studies.parser("python -m studies.data_size", __doc__)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--percents", type=ints, default=[10, 30, 100],
                   help="shares of the training split, comma-separated (default: 10,30,100)")
    p.add_argument("--seeds", type=ints, default=[42, 43, 44],
                   help="comma-separated (default: 42,43,44)")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many texts per split (0 = all); for smoke tests")
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
