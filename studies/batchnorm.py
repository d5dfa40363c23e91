"""Batch normalization: does it speed up and stabilize training, and its two modes.

The notes claim:
- "Batch normalization speeds up and stabilizes training."
- It "uses the batch's statistics in training and the running statistics at
  test time".

Setup: the CNN recipe's model (`recipes.cnn.build_model`: 32-64-128 filters,
relu, a 256-unit dense layer) with and without BatchNormalization, dropout
off in both so that batch normalization is the only difference between
training and inference, BatchNormalization momentum 0.9 (Keras's 0.99 needs
a few hundred steps before its running statistics settle, which would hide
the first epochs). Adam at each of `--learning-rates`, batch 128,
`--epochs` epochs on the first `--train-images` of the training split,
validated after every epoch on the full validation split. Seeds fixed.

Measured: epochs and seconds until validation accuracy first reaches
`--threshold`, the final validation and test accuracy (test read once per
model), and divergence (a non-finite loss, or final validation accuracy
under 0.2, which is chance plus a margin on 10 classes). Then the two modes,
on one trained network with batch normalization: one test image's prediction
alone against inside a batch of 256, in inference mode and in training mode.

    python -m studies.batchnorm                      # about 10 minutes here
    python -m studies.batchnorm --learning-rates 0.001 --epochs 1 --train-images 2000
"""

import math
import sys
import time

import keras
import numpy as np

import studies
from core import training
from recipes import cnn

DIVERGED_BELOW = 0.2


class Timeline(keras.callbacks.Callback):
    """Seconds of training (evaluation included) at each epoch's end."""

    def on_train_begin(self, logs=None):
        self.started, self.seconds = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def one(batch_norm, learning_rate, data, args):
    (x, y), (x_val, y_val), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    model = cnn.build_model((28, 28, 1), 10, **{**cnn.CLASSIC, "dropout": 0.0, "dense_dropout": 0.0},
                            batch_norm=batch_norm, batch_norm_momentum=0.9)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    training.build_state(model, (x, y))  # one trace of the step, not two
    timeline = Timeline()
    history = model.fit(x, y, batch_size=128, epochs=args.epochs,
                        validation_data=(x_val, y_val), callbacks=[timeline], verbose=0).history
    reached = studies.first_reached(history["val_accuracy"], args.threshold)
    test = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)[1]
    diverged = (not all(math.isfinite(v) for v in history["loss"])
                or history["val_accuracy"][-1] < DIVERGED_BELOW)
    return model, {
        "history": history, "test_accuracy": float(test), "diverged": diverged,
        "epochs_to_threshold": None if reached is None else reached + 1,
        "seconds_to_threshold": studies.seconds_to(args.threshold, history["val_accuracy"],
                                                   timeline.seconds),
        "seconds": round(timeline.seconds[-1], 1),
    }


def modes(model, x_test):
    """Max difference of one image's probabilities alone vs in a batch, per mode."""
    image, batch = x_test[:1], x_test[:256]
    out = {}
    for mode, training_flag in (("inference", False), ("training", True)):
        alone = np.asarray(model(image, training=training_flag))[0]
        inside = np.asarray(model(batch, training=training_flag))[0]
        out[mode] = float(np.max(np.abs(alone - inside)))
    return out


def study(args):
    for rate in args.learning_rates:
        studies.check_positive(learning_rate=rate)
    studies.check_positive(epochs=args.epochs, train_images=args.train_images,
                           threshold=args.threshold)
    keras.config.set_dtype_policy("float32")
    data = (studies.images("train", limit=args.train_images, raw=True),
            studies.images("validation", raw=True), studies.images("test", raw=True))
    runs, kept = {}, None
    for batch_norm in (True, False):
        for rate in args.learning_rates:
            with training.released_graphs():
                model, r = one(batch_norm, rate, data, args)
                if batch_norm and kept is None and rate == args.modes_learning_rate:
                    kept = modes(model, data[2][0])
            runs[f"{'bn' if batch_norm else 'plain'}/{rate:g}"] = r
            print(f"[batchnorm] batch norm {batch_norm!s:<5} lr {rate:<7g} val "
                  f"{r['history']['val_accuracy'][-1]:.4f} test {r['test_accuracy']:.4f} "
                  f"to {args.threshold}: {r['epochs_to_threshold']} epochs "
                  f"({r['seconds_to_threshold']} s){' DIVERGED' if r['diverged'] else ''}",
                  flush=True)
    report(args, runs, kept)


def report(args, runs, mode_diffs):
    plt = studies.pyplot()
    rates = args.learning_rates
    lines = [
        f"# Batch normalization (CNN recipe's model, dropout off, {args.train_images:,} "
        f"training images, {args.epochs} epochs, Adam, seed {args.seed})", "",
        "![validation accuracy per epoch](batchnorm.png)", "",
        f"| learning rate | batch norm | epochs to val accuracy {args.threshold} | seconds to it "
        "| final val accuracy | test accuracy | diverged |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for rate in rates:
        for key, label in ((f"bn/{rate:g}", "yes"), (f"plain/{rate:g}", "no")):
            r = runs[key]
            lines.append(
                f"| {rate:g} | {label} | {r['epochs_to_threshold'] or 'never'} | "
                f"{r['seconds_to_threshold'] if r['seconds_to_threshold'] is not None else '-'} "
                f"| {r['history']['val_accuracy'][-1]:.4f} | {r['test_accuracy']:.4f} | "
                f"{'yes' if r['diverged'] else 'no'} |")
    bn = {rate: runs[f"bn/{rate:g}"] for rate in rates}
    plain = {rate: runs[f"plain/{rate:g}"] for rate in rates}
    faster = [r for r in rates if _speed(bn[r]) < _speed(plain[r])]
    slower = [r for r in rates if _speed(bn[r]) > _speed(plain[r])]
    equal = [r for r in rates if _speed(bn[r]) == _speed(plain[r]) < math.inf]
    ok_bn = [rate for rate in rates if not bn[rate]["diverged"]]
    ok_plain = [rate for rate in rates if not plain[rate]["diverged"]]
    if faster and not slower:
        speed = ("**Holds.**" if len(faster) > len(equal) else
                 f"**Holds with a caveat**: only at {_list(faster)}.")
    else:
        speed = "**Does not hold here.**"
    lines += ["", "## Verdict", "",
              f"- Speeds up: with batch norm, validation accuracy {args.threshold} came in "
              f"fewer epochs at learning rates {_list(faster)}, in more at {_list(slower)}, "
              f"in as many at {_list(equal)} (one-epoch resolution, one seed). {speed}",
              f"- Stabilizes: trained without diverging at {_list(ok_bn)} with batch norm and "
              f"at {_list(ok_plain)} without. "
              + ("**Holds**: it widens the range of usable learning rates."
                 if len(ok_bn) > len(ok_plain) else
                 "**Does not hold here**: the same range of learning rates works either way.")]
    if mode_diffs:
        lines += [f"- Two modes (network with batch norm, lr {args.modes_learning_rate:g}): one "
                  "test image's probabilities alone against inside a batch of 256 differ by "
                  f"at most {mode_diffs['inference']:.1e} in inference mode and "
                  f"{mode_diffs['training']:.2f} in training mode: at inference the running "
                  "statistics are used, so an example's prediction does not depend on its "
                  "batch; in training the batch's own statistics are. **Holds.**"]
    fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 3.8), squeeze=False)
    for ax, rate in zip(axes[0], rates):
        for key, label in ((f"bn/{rate:g}", "batch norm"), (f"plain/{rate:g}", "none")):
            values = runs[key]["history"]["val_accuracy"]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
        ax.axhline(args.threshold, color="grey", lw=0.8, ls="--")
        ax.set(title=f"Adam {rate:g}", xlabel="epoch", ylabel="validation accuracy",
               ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    studies.write(args, "batchnorm", lines, {"batchnorm": fig},
                  {"runs": runs, "modes": mode_diffs})


def _speed(run):
    return run["epochs_to_threshold"] or math.inf


def _list(rates):
    return ", ".join(f"{r:g}" for r in rates) or "none"


def main(argv=None):
    p = studies.parser("python -m studies.batchnorm", __doc__)
    p.add_argument("--learning-rates", type=lambda s: [float(v) for v in s.split(",")],
                   default=[1e-4, 1e-3, 1e-2, 1e-1], help="comma-separated (default: "
                   "0.0001,0.001,0.01,0.1)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-images", type=int, default=20_000)
    p.add_argument("--threshold", type=float, default=0.85,
                   help="validation accuracy to time (default: 0.85)")
    p.add_argument("--modes-learning-rate", type=float, default=1e-3,
                   help="the run whose network shows the two modes (default: 0.001)")
    p.add_argument("--seed", type=int, default=42)
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
