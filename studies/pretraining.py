"""Does pretraining give a transformer the data it needs?

The notes claim: "Transformers relate any position to any other, but need
sufficient data". Self-supervised pretraining is how text networks get that
data: if the claim holds, an encoder pretrained on unlabeled text should
gain most over the same encoder trained from scratch where the labelled
data is smallest.

Setup, fixed before it ran: `python -m recipes.finetune_text` at its defaults
with the encoder `python -m recipes.pretrain_text` exported (the newest in
saved_models/pretrain_text, 46 minutes of masked-language-model pretraining
here), and with `--init scratch`: the same architecture, WordPiece
vocabulary and budget from random weights. Both train on `--percents` of the
training split (`--train-percent`: a random subset drawn with the seed;
validation and test stay whole) of rt_snippets (2 classes) and reuters_r8 (8
topics), seeds 42-44. The recipes' budget is counted in steps (2,000 at
most, early stopping on validation accuracy), so a small subset gets as many
steps as the whole split.

Measured: test accuracy (read once per model) against the share of training
data, and the pretraining run's own curve (loss and masked-word accuracy on
its held-out 1%, from the run directory the encoder records it came from).
`--budgets` adds encoders pretrained for fewer steps, fine-tuned on the whole
training split: the gain against pretraining budget.

    python -m studies.pretraining                       # about 70 minutes here
    python -m studies.pretraining --corpora rt_snippets --percents 10,100 --seeds 42
"""

import json
import os
import sys

import numpy as np

import studies

INITS = {"pretrained": "pretrained encoder", "scratch": "same encoder from scratch"}
#: Points of a change counted as real: about 2 standard errors of a 3-seed mean
#: difference on a ~2,100-text test split.
MARGIN = 0.02


def key(corpus, percent, init, seed):
    return f"{corpus}|{percent}|{init}|{seed}"


def arms(args):
    """(init key, finetune_text flags, percents) of every arm: the encoder and its
    from-scratch control at each percent, and each `--budgets` encoder at the largest."""
    yield "pretrained", ["--pretrained", args.pretrained, "--init", "pretrained"], args.percents
    yield "scratch", ["--pretrained", args.pretrained, "--init", "scratch"], args.percents
    for path in args.budgets:
        yield f"pretrained@{path}", ["--pretrained", path], [max(args.percents)]


def study(args):
    for percent in args.percents:
        if not 0 < percent <= 100:
            raise studies.StudyError(f"a percent must be in (0, 100], got {percent}")
    partial = os.path.join(args.out, "pretraining.partial.json")
    runs = {}
    # An interrupted study goes on where it stopped; an extended one (more --budgets)
    # keeps the runs it already has.
    for path in (os.path.join(args.out, "pretraining.json"), partial):
        if os.path.exists(path):
            with open(path) as f:
                found = json.load(f)
            runs.update(found.get("runs", {}) if path != partial else found)
    for seed in args.seeds:
        for corpus in args.corpora:
            for init, flags, percents in arms(args):
                for percent in percents:
                    k = key(corpus, percent, init, seed)
                    if k in runs:
                        continue
                    r = studies.text_recipe(
                        "finetune_text", [*flags, "--dataset", corpus],
                        seed=seed, train_percent=percent, limit=args.limit)
                    runs[k] = {name: r[name] for name in (
                        "test_accuracy", "epochs", "train_seconds", "encoder")}
                    runs[k]["best_val_accuracy"] = max(r["history"]["val_accuracy"])
                    print(f"[pretraining] {k}: test {r['test_accuracy']:.4f} after "
                          f"{r['epochs']} epochs, {r['train_seconds']:.0f} s", flush=True)
                    os.makedirs(args.out, exist_ok=True)
                    with open(partial + ".tmp", "w") as f:
                        json.dump(runs, f, indent=2)
                    os.replace(partial + ".tmp", partial)
    report(args, runs)
    if os.path.exists(partial):
        os.remove(partial)


def accuracy(runs, args, corpus, percent, init):
    return studies.mean_sd([runs[key(corpus, percent, init, s)]["test_accuracy"]
                            for s in args.seeds])


def pretraining_curve(encoder):
    """The history, metrics and config of the run that pretrained `encoder` (a version
    folder), or None if that run's directory is gone."""
    from core import export

    origin = os.path.join(encoder, export.ORIGIN_FILE)
    try:
        with open(origin) as f:
            run_dir = json.load(f)["run"]
        found = {"run": run_dir}
        for name in ("history", "metrics", "config"):
            with open(os.path.join(run_dir, f"{name}.json")) as f:
                found[name] = json.load(f)
    except (OSError, KeyError):
        return None
    return found


def report(args, runs):
    plt = studies.pyplot()
    percents, corpora = args.percents, args.corpora
    encoder = runs[key(corpora[0], percents[0], "pretrained", args.seeds[0])]["encoder"]
    lines = [
        f"# Pretrained against from scratch, by labelled data (seeds "
        f"{', '.join(map(str, args.seeds))})", "",
        f"Encoder: `{encoder}`. Test accuracy, mean ± standard deviation over the seeds "
        "(each seed also draws its own subset).", "",
        "![test accuracy against training data](pretraining.png)", "",
        "| corpus | encoder | " + " | ".join(f"{p}% of train" for p in percents) + " |",
        "|---|---|" + "---:|" * len(percents),
    ]
    gains = {}
    for corpus in corpora:
        for init, name in INITS.items():
            cells = [f"{a:.4f} ± {s:.4f}" for a, s in
                     (accuracy(runs, args, corpus, p, init) for p in percents)]
            lines.append(f"| {corpus} | {name} | " + " | ".join(cells) + " |")
        gains[corpus] = {p: accuracy(runs, args, corpus, p, "pretrained")[0]
                         - accuracy(runs, args, corpus, p, "scratch")[0] for p in percents}
    small, large = min(percents), max(percents)
    lines += ["", "## Verdict", ""]
    for corpus, gain in gains.items():
        lines.append(f"- {corpus}, pretrained minus scratch: " + ", ".join(
            f"{100 * gain[p]:+.1f} points at {p}%" for p in percents) + ".")
    more_on_less = [c for c, g in gains.items() if g[small] > g[large] + MARGIN]
    lines.append(
        f"- **Holds** on {', '.join(more_on_less)}: pretraining gains more where labelled data "
        "is scarce, as the claim predicts." if more_on_less and len(more_on_less) == len(gains)
        else f"- **Does not hold here** on {len(gains) - len(more_on_less)} of {len(gains)} "
        f"corpora: the gain at {small}% is not {100 * MARGIN:.0f} points above the gain at "
        f"{large}% (on {', '.join(more_on_less) or 'none'} it is).")

    curve = pretraining_curve(encoder)
    figures = 2 if curve else 1
    fig, axes = plt.subplots(1, len(corpora) + figures - 1, figsize=(5 * (len(corpora) + 1), 4))
    axes = np.atleast_1d(axes)
    for ax, corpus in zip(axes, corpora):
        for init, name in INITS.items():
            stats = [accuracy(runs, args, corpus, p, init) for p in percents]
            ax.errorbar(percents, [a for a, _ in stats], yerr=[s for _, s in stats],
                        marker="o", capsize=3, label=name)
        ax.set(xscale="log", xlabel="% of the training split", ylabel="test accuracy",
               title=corpus)
        ax.set_xticks(percents, [str(p) for p in percents])
        ax.grid(alpha=0.3)
        ax.legend()
    if curve:
        history, metrics = curve["history"], curve["metrics"]
        ax = axes[-1]
        epochs = range(1, len(history["val_loss"]) + 1)
        ax.plot(epochs, history["val_loss"], marker="o", label="validation loss")
        ax.set(xlabel="pretraining epoch (500 steps)", ylabel="masked-word loss",
               title="pretraining")
        twin = ax.twinx()
        twin.plot(epochs, history["val_accuracy"], marker="s", color="C1",
                  label="validation masked-word accuracy")
        twin.set_ylabel("masked-word accuracy")
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="center right", fontsize=8)
        lines += ["", "## Pretraining", "",
                  f"Run `{curve['run']}`: {metrics['epochs']} epochs, "
                  f"{metrics['train_seconds'] / 60:.1f} minutes of training here; masked-word "
                  "accuracy on the held-out 1% by epoch: " + ", ".join(
                      f"{a:.3f}" for a in history["val_accuracy"]) + f"; test "
                  f"{metrics['test_accuracy']:.4f} (loss {metrics['test_loss']:.3f})."]
    fig.tight_layout()
    figures = {"pretraining": fig}
    budgets = budget_lines(args, runs, encoder, curve) if args.budgets else None
    if budgets:
        lines += budgets[0]
        figures["pretraining_budget"] = budgets[1]
    studies.write(args, "pretraining", lines, figures,
                  {"runs": runs, "gains": gains, "pretraining_run": curve and curve["run"]})


def budget_lines(args, runs, encoder, curve):
    """The gain at the largest share against the pretraining budget: (lines, figure)."""
    plt = studies.pyplot()
    full = max(args.percents)
    encoders = [("pretrained", encoder, curve)] + [
        (f"pretrained@{path}", path, pretraining_curve(path)) for path in args.budgets]
    if any(found is None for _, _, found in encoders):
        return None
    rows = sorted(encoders, key=lambda e: e[2]["metrics"]["epochs"]
                  * e[2]["config"]["train"]["steps_per_epoch"])
    lines = ["", "## Gain against pretraining budget", "",
             f"Each encoder fine-tuned on {full}% of each corpus, seeds "
             f"{', '.join(map(str, args.seeds))}; its pretraining as recorded by its run "
             "(minutes of `fit`, per-epoch validation included).", "",
             "| encoder | pretraining steps | minutes | masked-word test accuracy | " +
             " | ".join(f"{c} (gain over scratch)" for c in args.corpora) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(args.corpora)]
    steps, gains = [0], {c: [0.0] for c in args.corpora}
    for init, path, found in rows:
        m, config = found["metrics"], found["config"]["train"]
        steps.append(m["epochs"] * config["steps_per_epoch"])
        cells = []
        for corpus in args.corpora:
            mean, sd = accuracy(runs, args, corpus, full, init)
            gain = mean - accuracy(runs, args, corpus, full, "scratch")[0]
            gains[corpus].append(gain)
            cells.append(f"{mean:.4f} ± {sd:.4f} ({100 * gain:+.1f})")
        lines.append(f"| `{path}` | {steps[-1]:,} | {m['train_seconds'] / 60:.1f} | "
                     f"{m['test_accuracy']:.4f} | " + " | ".join(cells) + " |")
    fig, ax = plt.subplots(figsize=(6, 4))
    for corpus in args.corpora:
        ax.plot(steps, [100 * g for g in gains[corpus]], marker="o", label=corpus)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel="pretraining steps of 64 texts (0 = from scratch)",
           ylabel=f"test accuracy gain at {full}%, points", title="gain against pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return lines, fig


def main(argv=None):
    p = studies.parser("python -m studies.pretraining", __doc__)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--corpora", type=lambda s: s.split(","),
                   default=["rt_snippets", "reuters_r8"],
                   help="comma-separated (default: rt_snippets,reuters_r8)")
    p.add_argument("--percents", type=ints, default=[10, 30, 100],
                   help="shares of the training split, comma-separated (default: 10,30,100)")
    p.add_argument("--seeds", type=ints, default=[42, 43, 44],
                   help="comma-separated (default: 42,43,44)")
    p.add_argument("--pretrained", default="saved_models/pretrain_text",
                   help="the encoder (finetune_text's --pretrained; default: the newest in "
                   "%(default)s)")
    p.add_argument("--budgets", type=lambda s: [v for v in s.split(",") if v], default=[],
                   help="encoders pretrained on shorter budgets (version folders, "
                   "comma-separated), each fine-tuned at the largest percent")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many texts per split (0 = all); for smoke tests")
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
