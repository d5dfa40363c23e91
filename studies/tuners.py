"""Search strategies at an equal budget: is Bayesian optimization > random > grid?

The notes rank hyperparameter optimization methods: "Bayesian optimization,
random search, grid search (ordered by usefulness)". keras-tuner offers all
three, and Hyperband besides.

Setup: the CNN space of `python -m tuning cnn` (`tuning/spaces.py`: blocks,
base filters, kernel size, activation, dropout, dense units, and a
log-uniform learning rate from 3e-4 to 3e-3; 7 hyperparameters searched, 1
fixed) on Fashion-MNIST. Every trial trains on `--train-percent` of the
training split (10%: 5,400 images, drawn with the seed) and is scored by its
best validation accuracy on the whole validation split (6,000 images).

Budget, in training epochs, fixed before the study ran: Hyperband with
`--max-epochs 9` and factor 3 spends 75 epochs on 17 configurations (it goes
on from a trial's checkpoint when it promotes it, so only new epochs count);
random, Bayesian and grid search get the epochs Hyperband spent, as trials of
`--trial-epochs 3` (25 trials). Bayesian optimization starts from
`--initial-points 8` random trials (a third of its budget): keras-tuner's
default, 3 per hyperparameter, is 24, which would leave it one guided trial
of 25 and make it random search by another name.

The grid: keras-tuner's GridSearch walks every hyperparameter's values like
an odometer, the last-defined one fastest, starting from all defaults. The
discrete ones it takes as they are; the continuous learning rate has no
values, so keras-tuner makes 10 (the 5th, 15th, ..., 95th percentile of its
log range) and tries the default (3e-4) first: 11 learning rates, and 6,336
points in all. The learning rate is defined last, so the grid's 25 trials are
the 11 learning rates at the all-defaults network with 128 and then 256 dense
units, then 3 with dropout 0.2: a sweep of one corner. That is grid search's
fate here, and what any grid of this space that fits the budget shares: 25
points cannot cover 7 dimensions.

Seeds 42, 43, 44: the seed fixes a search's sequence of hyperparameters and
each trial's initialization and shuffling. The grid's sequence has no
randomness, so its spread is training noise only.

Measured: the best validation accuracy found against epochs spent (the
anytime curve), and each search's winner retrained from scratch at one common
budget (`--retrain-epochs 9` on the same training subset, no early stopping),
its test accuracy read once on the whole test split. The verdict uses the
retrained test accuracy: the searches' own best scores are maxima over noisy
readings, and more trials read more of them.

    python -m studies.tuners             # about 50 minutes here
    python -m studies.tuners --seeds 42,43 --max-epochs 3 --trial-epochs 1

Each search is an ordinary `python -m tuning` search in `--searches`
(default `tuning_runs/tuners/<strategy>/seed<N>/`, with its trials.md,
trials.png and TensorBoard logs); a study stopped part-way resumes there.
"""

import json
import math
import os
import shutil
import sys
import time

import numpy as np

import studies

STRATEGIES = ("grid", "random", "bayesian", "hyperband")
CLAIM = ("bayesian", "random", "grid")  # the notes' order, most useful first
BATCH_SIZE = 128


def search_argv(strategy, seed, args, path, max_trials):
    argv = ["cnn", "--tuner", strategy, "--seed", str(seed), "--dir", path,
            "--batch-size", str(BATCH_SIZE), "--train-percent", str(args.train_percent),
            "--limit", str(args.limit), "--skip-test"]
    if strategy == "hyperband":
        return argv + ["--epochs", str(args.max_epochs)]
    argv += ["--epochs", str(args.trial_epochs), "--max-trials", str(max_trials)]
    if strategy == "bayesian":
        argv += ["--initial-points", str(args.initial_points)]
    return argv


def run_search(strategy, seed, args, max_trials):
    """One `python -m tuning cnn` search in this process (a finished one is only
    reloaded): its directory, its trials in run order, and the seconds they trained."""
    from tuning import search

    path = os.path.join(args.searches, strategy, f"seed{seed}")
    argv = search_argv(strategy, seed, args, path, max_trials)
    print(f"[tuners] python -m tuning {' '.join(argv)}", flush=True)
    search.search(search.build_parser().parse_args(argv))
    epochs = args.max_epochs if strategy == "hyperband" else args.trial_epochs
    return path, search.history(path, epochs), sum(search.trial_seconds(path).values())


def retrained(path, values, seed, args):
    """`retrain`, once per search: its test accuracy and seconds, kept in the
    search's directory."""
    file = os.path.join(path, "retrained.json")
    key = {"winner": values, "seed": seed, "retrain_epochs": args.retrain_epochs}
    if os.path.exists(file):
        with open(file) as f:
            kept = json.load(f)
        if {k: kept[k] for k in key} == key:
            return kept["test_accuracy"], kept["seconds"]
    start = time.perf_counter()
    test = retrain(values, seed, args)
    seconds = round(time.perf_counter() - start, 1)
    with open(file + ".tmp", "w") as f:
        json.dump({**key, "test_accuracy": test, "seconds": seconds}, f)
    os.replace(file + ".tmp", file)
    return test, seconds


def retrain(values, seed, args):
    """Test accuracy of the point `values` trained from scratch for --retrain-epochs."""
    import keras
    import keras_tuner as kt

    from core import config, training
    from tuning import spaces

    train = config.TrainConfig(dataset="fashion_mnist", seed=seed, batch_size=BATCH_SIZE,
                                 train_percent=args.train_percent, limit=args.limit)
    keras.utils.set_random_seed(seed)
    keras.config.set_dtype_policy(config.resolve_precision(train.precision))
    recipe = spaces.CNN(train)
    hp = kt.HyperParameters()
    hp.values = dict(values)
    with training.released_graphs():
        model = recipe.build(hp)
        train_ds, _, test_ds, _ = recipe.data(recipe.space(hp))
        training.build_state(model, test_ds.element_spec)  # one trace of the step, not two
        model.fit(train_ds, epochs=args.retrain_epochs, verbose=0)
        return float(model.evaluate(test_ds, return_dict=True, verbose=0)["accuracy"])


def anytime(trials, budget):
    """Best score found by the end of each epoch 1..budget (nan before the first trial)."""
    from tuning import search

    spent = np.cumsum([t["epochs"] for t in trials])
    best = search.best_so_far([t["score"] for t in trials])
    curve = np.full(budget, np.nan)
    for end, value in zip(spent, best):
        if end <= budget:
            curve[end - 1:] = value
    return curve


def check_searches(args):
    """The search directory holds this study's searches, or none yet."""
    settings = {k: getattr(args, k) for k in ("max_epochs", "trial_epochs", "initial_points",
                                              "train_percent", "limit")}
    marker = os.path.join(args.searches, "study.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) != settings:
                raise studies.StudyError(
                    f"{args.searches} holds this study's searches with other settings; "
                    "pass another --searches or delete it")
    os.makedirs(args.searches, exist_ok=True)
    with open(marker, "w") as f:
        json.dump(settings, f)


def study(args):
    studies.check_positive(max_epochs=args.max_epochs, trial_epochs=args.trial_epochs,
                           retrain_epochs=args.retrain_epochs, initial_points=args.initial_points)
    if not 0 < args.train_percent <= 100:
        raise studies.StudyError(f"--train-percent must be in (0, 100], got {args.train_percent}")
    if args.trial_epochs > args.max_epochs:
        raise studies.StudyError("--trial-epochs must be at most --max-epochs")
    check_searches(args)
    runs = {}
    for seed in args.seeds:
        budget = None
        for strategy in ("hyperband", "grid", "random", "bayesian"):  # Hyperband sets the budget
            max_trials = max(1, (budget or 0) // args.trial_epochs)
            path, trials, seconds = run_search(strategy, seed, args, max_trials)
            spent = sum(t["epochs"] for t in trials)
            budget = budget or spent
            best = max(trials, key=lambda t: t["score"])
            test, retrain_seconds = retrained(path, best["values"], seed, args)
            distinct = len({json.dumps(t["values"], sort_keys=True) for t in trials})
            runs.setdefault(strategy, []).append({
                "seed": seed, "path": path, "trials": trials, "epochs": spent,
                "budget": budget, "configurations": distinct, "seconds": round(seconds, 1),
                "retrain_seconds": retrain_seconds,
                "best_val": best["score"], "winner": best["values"], "test_accuracy": test})
            print(f"[tuners] {strategy:<9} seed {seed}: {len(trials)} trials, {spent} epochs, "
                  f"best val {best['score']:.4f}, retrained test {test:.4f}", flush=True)
    report(args, runs)


def describe(values):
    filters = "-".join(str(values["base_filters"] * 2**i) for i in range(values["blocks"]))
    return (f"{values['activation']} {filters} k{values['kernel_size']} "
            f"d{values['dropout']:.1f} u{values['dense_units']} lr {values['learning_rate']:.1e}")


def paired(runs, args):
    """What Bayesian optimization adds over random search, seed by seed: with the
    same seed its random start draws random search's first points, so the two
    differ only in the trials its Gaussian process chose."""
    shared, guided, unguided = [], [], []
    for b, r in zip(runs["bayesian"], runs["random"]):
        same = 0
        for tb, tr in zip(b["trials"], r["trials"]):
            if tb["values"] != tr["values"]:
                break
            same += 1
        shared.append(same)
        n = min(len(b["trials"]), len(r["trials"]))
        guided += [t["score"] for t in b["trials"][same:n]]
        unguided += [t["score"] for t in r["trials"][same:n]]
    if not guided:
        return "Random and Bayesian search drew the same points throughout."
    return (f"With the same seed, Bayesian optimization's random start drew random search's "
            f"first {min(shared)} points (of {args.initial_points} initial ones), so the two "
            "curves coincide until then. After that, the trials its Gaussian process chose "
            f"scored {np.mean(guided):.4f} on average against {np.mean(unguided):.4f} for "
            f"random search's trials in the same places ({len(guided)} trials each).")


def ranking(runs):
    """Pairs of the notes' order, each judged on retrained test accuracy: 'holds' when
    the first leads by more than twice the standard error of the difference of the
    seed means, 'reversed' when it trails by as much, else 'tie'."""
    verdicts = []
    for better, worse in zip(CLAIM, CLAIM[1:]):
        a = [r["test_accuracy"] for r in runs[better]]
        b = [r["test_accuracy"] for r in runs[worse]]
        diff = float(np.mean(a) - np.mean(b))
        if min(len(a), len(b)) < 2:
            verdicts.append((better, worse, diff, float("nan"), "one seed"))
            continue
        se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
        status = "holds" if diff > 2 * se else "reversed" if diff < -2 * se else "tie"
        verdicts.append((better, worse, diff, se, status))
    return verdicts


def report(args, runs):
    plt = studies.pyplot()
    budget = runs["hyperband"][0]["budget"]
    points = _grid_points()
    quarter = [max(1, budget // 4), max(1, budget // 2), budget]
    lines = [
        f"# Search strategies at an equal budget: {budget} epochs on the CNN space "
        f"(seeds {', '.join(map(str, args.seeds))})", "",
        "![best validation accuracy against epochs spent; retrained winners' test "
        "accuracy](tuners.png)", "",
        f"Trials train on {args.train_percent}% of Fashion-MNIST's training split and are "
        "scored on the whole validation split; each winner is retrained from scratch for "
        f"{args.retrain_epochs} epochs on the same images and read once on the test split. "
        "Mean ± standard deviation over the seeds.", "",
        "| strategy | trials | configurations | epochs | "
        + " | ".join(f"best val after {q} epochs" for q in quarter)
        + " | winner retrained: test acc | search seconds |",
        "|---|---:|---:|---:|" + "---:|" * len(quarter) + "---:|---:|",
    ]
    curves = {}
    for strategy in STRATEGIES:
        rs = runs[strategy]
        curves[strategy] = np.array([anytime(r["trials"], budget) for r in rs])
        at = [studies.mean_sd([float(c[q - 1]) for c in curves[strategy]]) for q in quarter]
        test = studies.mean_sd([r["test_accuracy"] for r in rs])
        lines.append(
            f"| {strategy} | {np.mean([len(r['trials']) for r in rs]):.0f} | "
            f"{np.mean([r['configurations'] for r in rs]):.0f} | "
            f"{np.mean([r['epochs'] for r in rs]):.0f} | "
            + " | ".join("—" if math.isnan(m) else f"{m:.4f} ± {s:.4f}" for m, s in at)
            + f" | {test[0]:.4f} ± {test[1]:.4f} | "
            f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    lines += ["", "Winners (activation, filters, kernel, dropout, dense units, learning rate), "
              "retrained test accuracy:", "",
              "| strategy | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
              "|---|" + "---|" * len(args.seeds)]
    for strategy in STRATEGIES:
        lines.append(f"| {strategy} | " + " | ".join(
            f"{describe(r['winner'])}: {r['test_accuracy']:.4f}" for r in runs[strategy]) + " |")
    grid = [t["values"] for t in runs["grid"][0]["trials"]]
    varied = [name for name in grid[0] if len({json.dumps(g[name]) for g in grid}) > 1]
    lines += ["", f"The grid has {points:,} points (11 learning rates: keras-tuner's 10 "
              "percentiles of the log range and the default); its "
              f"{len(grid)} trials visit {100 * len(grid) / points:.2f}% of them, and vary "
              f"only {', '.join(varied) or 'nothing'}: every other hyperparameter stays at its "
              "default.", ""]

    lines += [paired(runs, args), ""]
    verdicts = ranking(runs)
    order = sorted(STRATEGIES, key=lambda s: -np.mean([r["test_accuracy"] for r in runs[s]]))
    holds = all(v[4] == "holds" for v in verdicts)
    reversed_ = [v for v in verdicts if v[4] == "reversed"]
    lines += ["## Verdict", ""]
    for better, worse, diff, se, status in verdicts:
        noise = "one seed" if math.isnan(se) else f"standard error {100 * se:.2f}"
        lines.append(f"- {better} vs {worse}: {100 * diff:+.2f} points of retrained test "
                     f"accuracy ({noise}): "
                     + {"holds": "ahead, as the notes say.",
                        "reversed": "**behind**, against the notes.",
                        "tie": "within noise (under 2 standard errors).",
                        "one seed": "one seed, no spread to judge it by."}[status])
    lines.append(f"- Order by retrained test accuracy: {' > '.join(order)}.")
    if holds:
        verdict = "**holds**: Bayesian > random > grid, each beyond noise."
    elif reversed_:
        verdict = ("**does not hold here**: " + "; ".join(
            f"{w} beat {b}" for b, w, *_ in reversed_) + ".")
    elif any(v[4] == "holds" for v in verdicts):
        verdict = ("**holds in part**: " + "; ".join(
            f"{b} > {w}: {s}" for b, w, _, _, s in verdicts)
            + " (a tie is a gap under 2 standard errors).")
    else:
        verdict = ("**not shown at this budget**: " + "; ".join(
            f"{b} vs {w}: {s}" for b, w, _, _, s in verdicts) + " (a tie is a gap under "
            "2 standard errors).")
    lines.append(f"- The notes' ordering, Bayesian > random > grid: {verdict}")
    searched = sum(r["seconds"] for rs in runs.values() for r in rs)
    retrained_ = sum(r["retrain_seconds"] for rs in runs.values() for r in rs)
    lines.append(f"- Time: the searches' trials took {searched / 60:.0f} minutes and the "
                 f"retraining {retrained_ / 60:.0f} (data loading and each search's start "
                 "not counted).")

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    epochs = np.arange(1, budget + 1)
    for strategy in STRATEGIES:
        c = curves[strategy]
        mean = np.nanmean(c, axis=0) if np.isfinite(c).any() else c[0]
        line, = ax.plot(epochs, mean, label=strategy)
        ax.fill_between(epochs, np.nanmin(c, axis=0), np.nanmax(c, axis=0),
                        color=line.get_color(), alpha=0.2)
    ax.set(xlabel="training epochs spent", ylabel="best validation accuracy so far",
           title="anytime curves (mean; shaded: seeds' range)")
    ax.grid(alpha=0.3)
    ax.legend()
    for i, strategy in enumerate(STRATEGIES):
        values = [r["test_accuracy"] for r in runs[strategy]]
        bx.plot([i] * len(values), values, "o", alpha=0.6)
        bx.plot([i - 0.2, i + 0.2], [np.mean(values)] * 2, color="black")
    bx.set_xticks(range(len(STRATEGIES)), STRATEGIES)
    bx.set(ylabel="test accuracy", title=f"winners retrained, {args.retrain_epochs} epochs")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    result = {"searched_seconds": searched, "retrained_seconds": retrained_,
              "grid_points": points,
              "verdicts": [{"better": b, "worse": w, "difference": d, "se": s, "status": st}
                           for b, w, d, s, st in verdicts],
              "runs": runs}
    studies.write(args, "tuners", lines, {"tuners": fig}, result)
    for strategy in STRATEGIES:  # each strategy's first search, trial by trial
        shutil.copy(os.path.join(runs[strategy][0]["path"], "trials.png"),
                    os.path.join(args.out, f"tuners_{strategy}_trials.png"))


def _grid_points():
    from core import config
    from tuning import spaces

    values = spaces.grid_values(spaces.registered(spaces.CNN(config.TrainConfig())))
    return math.prod(len(v) for v in values.values())


def main(argv=None):
    p = studies.parser("python -m studies.tuners", __doc__)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--seeds", type=ints, default=[42, 43, 44],
                   help="comma-separated (default: 42,43,44)")
    p.add_argument("--max-epochs", type=int, default=9,
                   help="Hyperband's max epochs; what it spends is every strategy's budget "
                   "(default: 9, which spends 75)")
    p.add_argument("--trial-epochs", type=int, default=3,
                   help="epochs of a grid, random or Bayesian trial (default: 3)")
    p.add_argument("--initial-points", type=int, default=8,
                   help="random trials before Bayesian optimization's Gaussian process "
                   "(default: 8)")
    p.add_argument("--train-percent", type=int, default=10,
                   help="share of the training split every trial trains on (default: 10)")
    p.add_argument("--retrain-epochs", type=int, default=9,
                   help="epochs each winner is retrained for (default: 9)")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many images per split (0 = all); for smoke tests")
    p.add_argument("--searches", default=os.path.join("tuning_runs", "tuners"),
                   help="where the searches live (default: tuning_runs/tuners)")
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
