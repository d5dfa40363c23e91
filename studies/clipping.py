"""Exploding gradients, and clipping them.

The notes claim: "Exploding gradients: clip them" (by norm or by value).

Setup: a network that explodes without help: `--depth` fully connected relu
layers of 256 units on flattened Fashion-MNIST, He-normal initialization, no
normalization, plain SGD with momentum 0.9 at `--learning-rate`, batch 128.
The same network, seed and batches are trained three times: unclipped,
with `clipnorm` (each weight's gradient rescaled to at most that L2 norm,
Keras's `clipnorm`, also the recipes' `--clipnorm`), and with `clipvalue`
(each gradient element clipped to [-v, v]).

Measured at every step: the training loss and the global norm of the
gradient before clipping; then test accuracy (read once per model) after
`--epochs` epochs. A run that reaches a non-finite loss stops there and is
counted as diverged.

    python -m studies.clipping                 # about 3 minutes here
    python -m studies.clipping --epochs 1
"""

import math
import sys

import keras
import numpy as np
import tensorflow as tf

import studies
from core import training

BATCH = 128
CHANCE_PLUS = 0.2  # test accuracy under this on 10 classes: nothing learned


def build(depth, width=256):
    inputs = x = keras.Input((784,))
    for _ in range(depth):
        x = keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def one(clip, data, args):
    """Loss and gradient norm per step, and test accuracy, with `clip` ({} or a Keras arg)."""
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    model = build(args.depth)
    optimizer = keras.optimizers.SGD(args.learning_rate, momentum=0.9, **clip)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        norm = tf.linalg.global_norm(gradients)
        optimizer.apply(gradients, model.trainable_variables)
        return loss, norm

    losses, norms = [], []
    order = np.random.default_rng(args.seed)
    for _ in range(args.epochs):
        idx = order.permutation(len(x))
        for start in range(0, len(x) - BATCH + 1, BATCH):
            batch = idx[start:start + BATCH]
            loss, norm = step(x[batch], y[batch])
            losses.append(float(loss))
            norms.append(float(norm))
            if not math.isfinite(losses[-1]):
                break
        if not math.isfinite(losses[-1]):
            break
    diverged = not math.isfinite(losses[-1])
    accuracy = None if diverged else float(np.mean(
        np.argmax(model.predict(x_test, batch_size=1024, verbose=0), -1) == y_test))
    return {"loss": losses, "gradient_norm": norms, "diverged": diverged,
            "steps": len(losses), "test_accuracy": accuracy}


def study(args):
    studies.check_positive(learning_rate=args.learning_rate, epochs=args.epochs,
                           depth=args.depth, clipnorm=args.clipnorm, clipvalue=args.clipvalue)
    keras.config.set_dtype_policy("float32")
    data = (studies.images("train", flat=True), studies.images("test", flat=True))
    variants = {"no clipping": {}, f"clipnorm {args.clipnorm:g}": {"clipnorm": args.clipnorm},
                f"clipvalue {args.clipvalue:g}": {"clipvalue": args.clipvalue}}
    runs = {}
    for name, clip in variants.items():
        with training.released_graphs():
            runs[name] = r = one(clip, data, args)
        print(f"[clipping] {name:<15}: {r['steps']} steps, "
              f"{'DIVERGED' if r['diverged'] else 'test %.4f' % r['test_accuracy']}, largest "
              f"gradient norm {max(r['gradient_norm']):.3g}", flush=True)
    report(args, runs)


def report(args, runs):
    plt = studies.pyplot()
    lines = [
        f"# Exploding gradients and clipping ({args.depth} relu layers, He-normal, SGD "
        f"{args.learning_rate:g} momentum 0.9, {args.epochs} epochs, seed {args.seed})", "",
        "![loss and gradient norm per step](clipping.png)", "",
        "| training | steps run | diverged | largest gradient norm | median gradient norm "
        "| final loss (mean of last 50 steps) | test accuracy |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        finite = [v for v in r["loss"] if math.isfinite(v)]
        norms = [v for v in r["gradient_norm"] if math.isfinite(v)]
        lines.append(
            f"| {name} | {r['steps']} | {'yes' if r['diverged'] else 'no'} | "
            f"{max(norms) if norms else float('nan'):.3g} | {np.median(norms):.3g} | "
            + ("-" if r["diverged"] else f"{np.mean(finite[-50:]):.4f}") + " | "
            + ("-" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}") + " |")
    plain = runs["no clipping"]
    clipped = [name for name in runs if name != "no clipping"]
    learned = lambda r: not r["diverged"] and r["test_accuracy"] >= CHANCE_PLUS  # noqa: E731
    saved = [name for name in clipped if learned(runs[name])]
    stuck = [name for name in clipped if not runs[name]["diverged"] and not learned(runs[name])]
    if plain["diverged"]:
        text = (f"- Unclipped, the loss became non-finite after {plain['steps']} steps. "
                + "".join(f"With {name} the same network trained to the end (test accuracy "
                          f"{runs[name]['test_accuracy']:.4f}). " for name in saved)
                + "".join(f"With {name} it did not overflow but learned nothing (test "
                          f"accuracy {runs[name]['test_accuracy']:.4f}; chance is 0.1). "
                          for name in stuck)
                + ("**Holds**" + (f" for {' and '.join(saved)}" if stuck else "") + "."
                   if saved else "**Does not hold here**: clipping did not save it."))
    else:
        best = max(runs, key=lambda n: runs[n]["test_accuracy"] or 0)
        text = ("- The unclipped network did not diverge in this setting, so the claim is not "
                f"tested by it; best test accuracy: {best}. Raise --learning-rate or --depth.")
    lines += ["", "## Verdict", "", text]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, r in runs.items():
        steps = range(1, r["steps"] + 1)
        axes[0].plot(steps, r["loss"], lw=0.8, label=name)
        axes[1].plot(steps, r["gradient_norm"], lw=0.8, label=name)
    axes[0].set(xlabel="step", ylabel="training loss (batch)", yscale="log",
                title="loss per step")
    axes[1].set(xlabel="step", ylabel="global gradient norm, before clipping", yscale="log",
                title="gradient norm per step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    studies.write(args, "clipping", lines, {"clipping": fig},
                  {"runs": runs})


def main(argv=None):
    p = studies.parser("python -m studies.clipping", __doc__)
    p.add_argument("--depth", type=int, default=12, help="hidden layers (default: 12)")
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--clipnorm", type=float, default=1.0)
    p.add_argument("--clipvalue", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=42)
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
