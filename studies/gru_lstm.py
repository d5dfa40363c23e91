"""GRU against LSTM: less processing, faster to train?

The notes claim: "A GRU uses far less processing than an LSTM and may be
faster to train."

Setup, on two tasks, each seed running both cells back to back so that the
machine's noise falls on both:
- rt_snippets: the RNN recipe at its defaults (`python -m recipes.rnn_text
  --cell lstm` against `--cell gru`: bidirectional, 32 units, early stopping
  on validation accuracy);
- the memory study's task (`studies.memory`) at one distance `--distance`:
  a review followed by filler words, one-way networks, fixed epochs. L = 30
  was chosen after the memory study's run: at L = 100 neither cell, as Keras
  initializes it, learned anything, and timing two failures says nothing.

Measured: the parameters of the recurrent layer and of the whole model,
milliseconds per training step (the median epoch after the first, which also
traces the graph; validation excluded), seconds of training until
validation accuracy first reaches a threshold fixed before the runs (0.74 on
rt_snippets and 0.70 on the memory task, where the recipes' best validation
epochs reach 0.75-0.78 and the validation split's majority class is 0.661),
and test accuracy (read once per model).

    python -m studies.gru_lstm                       # about 3 minutes here
    python -m studies.gru_lstm --seeds 42 --distance 10
"""

import sys

import numpy as np

import studies
from core import training
from recipes import rnn_text
from studies import memory

CELLS = ("lstm", "gru")
MARGIN = 0.10  # a ratio within 10% of 1 is "the same" on this noisy machine


def rt_snippets_run(cell, seed, args):
    r = studies.text_recipe("rnn_text", ["--cell", cell], seed=seed, limit=args.limit)
    return {
        "test_accuracy": r["test_accuracy"],
        "parameters": r["parameters"],
        # the recurrent layer's size does not depend on the vocabulary
        "recurrent_parameters": memory.recurrent_parameters(
            rnn_text.build_model(2, 64, 2, cell=cell)),
        "epochs": r["epochs"],
        "seconds_per_step": r["seconds_per_step"],
        "seconds_to_threshold": studies.seconds_to(args.rt_threshold,
                                                   r["history"]["val_accuracy"], r["clock"]),
    }


def memory_run(cell, seed, data, args):
    ids, labels, frequencies, vocabulary = data
    vocabulary_size = len(vocabulary)
    task = memory.tasks(ids, labels, frequencies, args.distance, seed, args.review_tokens)
    r = memory.train_one(cell, task, vocabulary_size, args.epochs, seed, args.memory_threshold)
    return {k: r[k] for k in ("test_accuracy", "parameters", "recurrent_parameters",
                              "seconds_per_step", "seconds_to_threshold")}


def study(args):
    studies.check_positive(epochs=args.epochs, review_tokens=args.review_tokens)
    memory.check_distances([args.distance])
    runs = {"rt_snippets": {c: [] for c in CELLS}, "memory": {c: [] for c in CELLS}}
    data = memory.load(args.review_tokens, memory.FILLER_WORDS, args.limit)
    for seed in args.seeds:
        for cell in CELLS:
            r = rt_snippets_run(cell, seed, args)
            runs["rt_snippets"][cell].append(r)
            print(f"[gru_lstm] rt_snippets {cell} seed {seed}: test {r['test_accuracy']:.4f}, "
                  f"{1000 * r['seconds_per_step']:.0f} ms/step, to {args.rt_threshold}: "
                  f"{r['seconds_to_threshold']} s", flush=True)
        for cell in CELLS:
            with training.released_graphs():
                r = memory_run(cell, seed, data, args)
            runs["memory"][cell].append(r)
            print(f"[gru_lstm] memory L={args.distance} {cell} seed {seed}: test "
                  f"{r['test_accuracy']:.4f}, {1000 * r['seconds_per_step']:.0f} ms/step, to "
                  f"{args.memory_threshold}: {r['seconds_to_threshold']} s", flush=True)
    report(args, runs)


def report(args, runs):
    plt = studies.pyplot()
    thresholds = {"rt_snippets": args.rt_threshold, "memory": args.memory_threshold}
    names = {"rt_snippets": "rt_snippets, recipe defaults (bidirectional)",
             "memory": f"memory task, L = {args.distance} (one-way, {args.epochs} epochs)"}
    lines = [
        f"# GRU against LSTM (seeds {', '.join(map(str, args.seeds))})", "",
        "![time per step and to accuracy](gru_lstm.png)", "",
        "Mean ± standard deviation over the seeds.", "",
        "| task | cell | recurrent parameters | all parameters | ms per step | "
        "seconds to val threshold | test accuracy |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    ratios = {}
    for task, by_cell in runs.items():
        for cell in CELLS:
            rs = by_cell[cell]
            step, step_sd = studies.mean_sd([1000 * r["seconds_per_step"] for r in rs])
            acc, acc_sd = studies.mean_sd([r["test_accuracy"] for r in rs])
            lines.append(
                f"| {names[task]} | {cell} | {rs[0]['recurrent_parameters']:,} | "
                f"{rs[0]['parameters']:,} | {step:.1f} ± {step_sd:.1f} | "
                f"{_to_threshold(rs)} (val {thresholds[task]}) | {acc:.4f} ± {acc_sd:.4f} |")
        lstm, gru = by_cell["lstm"], by_cell["gru"]
        ratios[task] = {
            "recurrent_parameters": gru[0]["recurrent_parameters"]
            / lstm[0]["recurrent_parameters"],
            "seconds_per_step": np.mean([g["seconds_per_step"] / s["seconds_per_step"]
                                         for g, s in zip(gru, lstm)]),
            "seconds_to_threshold": _ratio_to_threshold(gru, lstm),
            "accuracy": np.mean([g["test_accuracy"] - s["test_accuracy"]
                                 for g, s in zip(gru, lstm)]),
        }
    lines += ["", "## Verdict", ""]
    for task, r in ratios.items():
        step = r["seconds_per_step"]
        faster = r["seconds_to_threshold"]
        lines.append(
            f"- {names[task]}: the GRU has {r['recurrent_parameters']:.2f}x the LSTM's "
            f"recurrent weights, takes {step:.2f}x its time per step (mean of each seed's "
            "ratio) and "
            + (f"{faster:.2f}x its time to the threshold" if faster is not None else
               "did not reach the threshold in every seed (no time ratio)")
            + f"; test accuracy {100 * r['accuracy']:+.1f} points.")
    step_ratios = [r["seconds_per_step"] for r in ratios.values()]
    to_ratios = [r["seconds_to_threshold"] for r in ratios.values()]
    less = all(s < 1 - MARGIN for s in step_ratios)
    far_less = all(s < 0.5 for s in step_ratios)
    lines.append(
        "- \"Far less processing\": a GRU has three weight blocks where an LSTM has four "
        f"({ratios['memory']['recurrent_parameters']:.2f}x the recurrent weights, with its "
        "second bias); per step it took "
        + " and ".join(f"{s:.2f}x" for s in step_ratios) + " the LSTM's time here. "
        + ("**Holds.**" if far_less else
           "**Holds with a caveat**: less, not far less." if less else
           "**Does not hold here**: no faster per step."))
    faster = [t for t in to_ratios if t is not None]
    lines.append(
        "- \"May be faster to train\": time to the validation threshold, GRU over LSTM: "
        + ", ".join("-" if t is None else f"{t:.2f}x" for t in to_ratios) + ". "
        + ("**Holds.**" if faster and all(t < 1 - MARGIN for t in faster) else
           "**Does not hold here.**" if faster and all(t > 1 - MARGIN for t in faster) else
           "**Mixed**: it depends on the task." if faster else "**Not decided.**"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "seconds_per_step", "ms per training step"),
                           (axes[1], "seconds_to_threshold", "seconds to val threshold")):
        for i, task in enumerate(runs):
            for j, cell in enumerate(CELLS):
                values = [r[key] for r in runs[task][cell] if r[key] is not None]
                values = [1000 * v for v in values] if key == "seconds_per_step" else values
                x = i * 3 + j
                ax.bar(x, np.mean(values) if values else 0, color=f"C{j}",
                       label=cell if i == 0 else None)
                ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks([0.5, 3.5], list(runs))
        ax.set(ylabel=label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend()
    fig.tight_layout()
    studies.write(args, "gru_lstm", lines, {"gru_lstm": fig}, {"runs": runs, "ratios": ratios})


def _to_threshold(rs):
    reached = [r["seconds_to_threshold"] for r in rs if r["seconds_to_threshold"] is not None]
    if len(reached) < len(rs):
        return f"never in {len(rs) - len(reached)} of {len(rs)}" + (
            f"; {np.mean(reached):.1f} otherwise" if reached else "")
    mean, sd = studies.mean_sd(reached)
    return f"{mean:.1f} ± {sd:.1f}"


def _ratio_to_threshold(gru, lstm):
    pairs = [(g["seconds_to_threshold"], s["seconds_to_threshold"]) for g, s in zip(gru, lstm)]
    if any(g is None or s is None for g, s in pairs):
        return None
    return float(np.mean([g / s for g, s in pairs]))


def main(argv=None):
    p = studies.parser("python -m studies.gru_lstm", __doc__)
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")],
                   default=[42, 43, 44], help="comma-separated (default: 42,43,44)")
    p.add_argument("--distance", type=int, default=30,
                   help="the memory task's filler words (default: 30)")
    p.add_argument("--epochs", type=int, default=6, help="memory task epochs (default: 6)")
    p.add_argument("--review-tokens", type=int, default=32)
    p.add_argument("--rt-threshold", type=float, default=0.74)
    p.add_argument("--memory-threshold", type=float, default=0.70)
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many texts per split (0 = all); for smoke tests")
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
