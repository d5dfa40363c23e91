"""Activations and depth: vanishing gradients, and which activation to start with.

The notes claim:
- "For activation start with ReLU, shift to Leaky ReLU, then try PReLU or
  Maxout. Use Swish for really deep networks."
- "Sigmoid is rarely used in hidden layers: its derivative at both tails
  approaches 0 (vanishing gradients)."

Setup: plain fully connected networks on Fashion-MNIST (pixels flattened, no
batch normalization, no residual connections, no dropout), `--depths` hidden
layers of `--width` units, each activation in `--activations` (the CNN
recipe's own: relu, leaky_relu (slope 0.1), prelu, maxout (2 pieces), swish
(trainable beta), tanh, plus sigmoid). Every kernel starts from Keras's
default Glorot-uniform initializer, biases from zero, so the activation is
the only difference; He initialization, the usual partner of ReLU, would
favour the ReLU family further. Adam at 1e-3, batch 128.

Measured:
1. The gradient norm of every layer's kernel (loss on a fixed batch of 512
   training images) at initialization and after `--early-steps` steps.
2. Test accuracy after `--epochs` epochs on the full training split, for
   each seed (a fixed budget: no early stopping, so no validation decision
   is made; test is read once per model).

    python -m studies.activations                    # about 10 minutes here
    python -m studies.activations --depths 4 --epochs 1 --seeds 42
"""

import sys
import time

import keras
import numpy as np
import tensorflow as tf

import studies
from core import training
from recipes import cnn

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "maxout", "swish")
PROBE = 512  # training images the gradient norms are measured on


def build(depth, activation, width=64, inputs=784, classes=10):
    """`depth` hidden Dense layers of `width` units with `activation`, then softmax."""
    x = first = keras.Input((inputs,), name="pixels")
    for i in range(depth):
        x = keras.layers.Dense(cnn.width(activation, width), name=f"dense_{i + 1}")(x)
        x = cnn.activate(x, activation, width)
    outputs = keras.layers.Dense(classes, activation="softmax", name="output")(x)
    return keras.Model(first, outputs, name=f"mlp{depth}_{activation}")


def kernel_gradient_norms(model, x, y):
    """[(layer name, L2 norm of d loss / d kernel)] for every Dense layer, input to output."""
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
    gradients = tape.gradient(loss, kernels)
    return [(k.path.split("/")[0], float(tf.norm(g))) for k, g in zip(kernels, gradients)]


def validate(depths, activations, learning_rate, epochs, width):
    for activation in activations:
        if activation not in ACTIVATIONS:
            raise studies.StudyError(
                f"activation must be among {ACTIVATIONS}, got {activation!r}")
    if not depths or min(depths) < 1:
        raise studies.StudyError(f"every depth must be >= 1, got {depths}")
    studies.check_positive(learning_rate=learning_rate, epochs=epochs, width=width)


def one(depth, activation, seed, data, args):
    """Gradient norms (init, early) and test accuracy of one network."""
    (x, y), (x_test, y_test), (x_probe, y_probe) = data
    keras.utils.set_random_seed(seed)
    model = build(depth, activation, args.width)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    training.build_state(model, (x, y))  # one trace of the step, not two
    at_init = kernel_gradient_norms(model, x_probe, y_probe)
    started = time.perf_counter()
    model.fit(x[:args.early_steps * 128], y[:args.early_steps * 128], batch_size=128,
              epochs=1, shuffle=False, verbose=0)
    early = kernel_gradient_norms(model, x_probe, y_probe)
    model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0)
    seconds = time.perf_counter() - started
    accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1]
    return {"init": at_init, "early": early, "test_accuracy": float(accuracy),
            "seconds": round(seconds, 1)}


def study(args):
    validate(args.depths, args.activations, args.learning_rate, args.epochs, args.width)
    x, y = studies.images("train", flat=True)
    data = ((x, y), studies.images("test", flat=True), (x[-PROBE:], y[-PROBE:]))
    runs = {}
    for depth in args.depths:
        for activation in args.activations:
            for seed in args.seeds:
                with training.released_graphs():
                    r = one(depth, activation, seed, data, args)
                runs.setdefault(f"{depth}/{activation}", []).append(r)
                print(f"[activations] depth {depth:>2} {activation:<10} seed {seed}: test "
                      f"{r['test_accuracy']:.4f}, first/last kernel gradient at init "
                      f"{r['init'][0][1]:.2e}/{r['init'][-1][1]:.2e}, {r['seconds']:.0f} s",
                      flush=True)
    return report(args, runs)


def report(args, runs):
    plt = studies.pyplot()
    depths, activations = args.depths, args.activations
    accuracy = {key: studies.mean_sd([r["test_accuracy"] for r in rs])
                for key, rs in runs.items()}
    ratio = {key: float(np.mean([r["init"][0][1] / r["init"][-2][1] for r in rs]))
             for key, rs in runs.items()}  # first hidden layer / last hidden layer
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        f"# Activations and depth (plain MLPs of width {args.width}, Glorot-uniform, Adam "
        f"{args.learning_rate}, {args.epochs} epochs, seeds {seeds})", "",
        "Test accuracy, mean ± sd over seeds:", "",
        "| activation | " + " | ".join(f"{d} layers" for d in depths) + " |",
        "|---|" + "---:|" * len(depths),
    ]
    for a in activations:
        lines.append(f"| {a} | " + " | ".join(
            "{:.4f} ± {:.4f}".format(*accuracy[f"{d}/{a}"]) for d in depths) + " |")
    lines += ["", "Gradient norm at initialization, first hidden layer's kernel / last hidden "
              "layer's (below 1: the gradient shrinks on its way back to the input):", "",
              "| activation | " + " | ".join(f"{d} layers" for d in depths) + " |",
              "|---|" + "---:|" * len(depths)]
    for a in activations:
        lines.append(f"| {a} | " + " | ".join(f"{ratio[f'{d}/{a}']:.1e}" for d in depths) + " |")
    lines += ["", "Ranking by mean test accuracy (best first):", ""]
    for d in depths:
        order = sorted(activations, key=lambda a: -accuracy[f"{d}/{a}"][0])
        lines.append(f"- {d} layers: " + " > ".join(order))
    lines += ["", "## Verdict", "", *verdict(depths, activations, accuracy, ratio)]

    fig, axes = plt.subplots(2, len(depths), figsize=(5 * len(depths), 8), squeeze=False)
    for col, d in enumerate(depths):
        for row, when in enumerate(("init", "early")):
            ax = axes[row][col]
            for a in activations:
                norms = np.mean([[n for _, n in r[when]] for r in runs[f"{d}/{a}"]], axis=0)
                ax.plot(range(1, len(norms) + 1), norms, marker=".", label=a)
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
            moment = "at initialization" if when == "init" else f"after {args.early_steps} steps"
            ax.set(title=f"{d} hidden layers, {moment}", xlabel="layer (1 = first hidden, last = output)",
                   ylabel="gradient norm of the kernel")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    heat = plt.figure(figsize=(2 + 1.6 * len(depths), 4.5))
    ax = heat.add_subplot()
    grid = np.array([[accuracy[f"{d}/{a}"][0] for d in depths] for a in activations])
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(depths)), [f"{d} layers" for d in depths])
    ax.set_yticks(range(len(activations)), activations)
    for i in range(len(activations)):
        for j in range(len(depths)):
            ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_title("test accuracy")
    heat.colorbar(image)
    heat.tight_layout()
    lines.insert(2, "![gradient norms](activations.png) ![accuracy](activations_accuracy.png)")
    lines.insert(3, "")
    studies.write(args, "activations", lines,
                  {"activations": fig, "activations_accuracy": heat},
                  {"runs": runs, "accuracy": accuracy, "gradient_ratio": ratio})
    return runs


def verdict(depths, activations, accuracy, ratio):
    """Sentences that follow from the numbers (written by the numbers, not by hand)."""
    out = []
    deepest, shallowest = max(depths), min(depths)
    if "sigmoid" in activations:
        s = ratio[f"{deepest}/sigmoid"]
        others = [ratio[f"{deepest}/{a}"] for a in activations if a != "sigmoid"]
        out.append(
            f"- Sigmoid, vanishing gradients: at {deepest} layers the first hidden layer's "
            f"gradient is {s:.1e} of the last's (other activations: "
            f"{min(others):.1e} to {max(others):.1e}); its test accuracy is "
            f"{accuracy[f'{deepest}/sigmoid'][0]:.4f}. "
            + ("**Holds.**" if s < 0.01 * min(others) else "**Holds only in part** here."))
    best = {d: max(activations, key=lambda a: accuracy[f"{d}/{a}"][0]) for d in depths}
    if "swish" in activations and len(depths) > 1:
        rank = {d: sorted(activations, key=lambda a: -accuracy[f"{d}/{a}"][0]).index("swish") + 1
                for d in depths}
        out.append("- Swish for really deep networks: swish ranks "
                   + ", ".join(f"{rank[d]} of {len(activations)} at {d} layers" for d in depths)
                   + (". **Holds**: it moves up with depth." if rank[deepest] < rank[shallowest]
                      else ". **Does not hold here**: it does not move up with depth."))
    if "relu" in activations:
        out.append("- Start with ReLU: best activation per depth: "
                   + ", ".join(f"{best[d]} at {d} layers" for d in depths)
                   + "; differences under two standard deviations are noise.")
    return out


def main(argv=None):
    p = studies.parser("python -m studies.activations", __doc__)
    p.add_argument("--depths", type=lambda s: [int(v) for v in s.split(",")], default=[4, 10, 20],
                   help="hidden layers, comma-separated (default: 4,10,20)")
    p.add_argument("--activations", type=lambda s: s.split(","), default=list(ACTIVATIONS),
                   help=f"comma-separated, among {','.join(ACTIVATIONS)}")
    p.add_argument("--width", type=int, default=64, help="units per hidden layer (default: 64)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    p.add_argument("--early-steps", type=int, default=50,
                   help="steps before the second gradient measurement (default: 50)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[42, 43],
                   help="comma-separated (default: 42,43)")
    return studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
