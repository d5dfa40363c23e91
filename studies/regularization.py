"""Regularization: dropout, L2 weight decay and early stopping against overfitting.

The notes claim: "CNNs have a habit of overfitting; dropout should be used",
with L2 weight decay and early stopping as the other remedies.

Setup: the CNN recipe's model (`recipes.cnn.build_model`: 32-64-128 filters,
batch norm with momentum 0.9, relu, a 256-unit dense layer) trained on only the first
`--train-images` of the training split, where a network this size can learn
its training set by heart, validated on the full validation split after
every epoch. Adam 1e-3, batch 128, `--epochs` epochs, for each seed. Batch
normalization's momentum is 0.9, not Keras's 0.99: an epoch here is 40
steps, and with 0.99 the running statistics have not settled for the first
epochs, which made early stopping stop at epoch 4 on an accident of them
(test 0.16; results of that first run in the git history).
Fixed before it ran, one change at a time from "none":

- none: no dropout, no L2, every epoch trained;
- dropout: the recipe's dropout (0.25 after each block, 0.5 before the output);
- L2: `--l2` (5e-4) on every kernel, no dropout;
- dropout + L2;
- early stopping: "none", stopped after `--patience` epochs without a lower
  validation loss, the best epoch's weights restored.

Measured: training and validation accuracy per epoch (the curves), the gap
between training accuracy (the trained network in inference mode on its own
training images) and validation accuracy at the end, and test accuracy (read
once per model).

    python -m studies.regularization            # about 12 minutes here
    python -m studies.regularization --epochs 2 --seeds 42 --train-images 1000
"""

import sys

import keras

import studies
from core import training
from recipes import cnn

SETTINGS = {
    "none": {"dropout": 0.0, "dense_dropout": 0.0, "l2": 0.0},
    "dropout": {},
    "L2": {"dropout": 0.0, "dense_dropout": 0.0, "l2": None},
    "dropout + L2": {"l2": None},
    "early stopping": {"dropout": 0.0, "dense_dropout": 0.0, "l2": 0.0},
}


def one(name, seed, data, args):
    (x, y), (x_val, y_val), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    hparams = {k: (args.l2 if v is None else v) for k, v in SETTINGS[name].items()}
    model = cnn.build_model((28, 28, 1), 10, **{**cnn.CLASSIC, "batch_norm_momentum": 0.9,
                                                **hparams})
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    training.build_state(model, (x, y))  # one trace of the step, not two
    callbacks = [keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True)
                 ] if name == "early stopping" else []
    history = model.fit(x, y, batch_size=128, epochs=args.epochs, validation_data=(x_val, y_val),
                        callbacks=callbacks, verbose=0).history
    evaluate = lambda a, b: float(model.evaluate(a, b, batch_size=1024, verbose=0)[1])  # noqa: E731
    train_accuracy, val_accuracy = evaluate(x, y), evaluate(x_val, y_val)
    return {"history": history, "train_accuracy": train_accuracy, "val_accuracy": val_accuracy,
            "gap": train_accuracy - val_accuracy, "test_accuracy": evaluate(x_test, y_test),
            "epochs": len(history["loss"])}


def study(args):
    studies.check_positive(epochs=args.epochs, train_images=args.train_images,
                           patience=args.patience)
    if args.l2 < 0:
        raise studies.StudyError(f"l2 must be >= 0, got {args.l2}")
    keras.config.set_dtype_policy("float32")
    data = (studies.images("train", limit=args.train_images, raw=True),
            studies.images("validation", raw=True), studies.images("test", raw=True))
    runs = {}
    for name in SETTINGS:
        for seed in args.seeds:
            with training.released_graphs():
                r = one(name, seed, data, args)
            runs.setdefault(name, []).append(r)
            print(f"[regularization] {name:<15} seed {seed}: train {r['train_accuracy']:.4f} "
                  f"val {r['val_accuracy']:.4f} gap {r['gap']:.4f} test {r['test_accuracy']:.4f} "
                  f"({r['epochs']} epochs)", flush=True)
    report(args, runs)


def report(args, runs):
    plt = studies.pyplot()
    stat = lambda name, key: studies.mean_sd([r[key] for r in runs[name]])  # noqa: E731
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        f"# Regularization on {args.train_images:,} training images (CNN recipe's model, "
        f"{args.epochs} epochs at most, seeds {seeds})", "",
        "![training and validation accuracy per epoch](regularization.png)", "",
        "| setting | epochs | training accuracy | validation accuracy | gap | test accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in SETTINGS:
        cells = [" ± ".join(f"{v:.4f}" for v in stat(name, key))
                 for key in ("train_accuracy", "val_accuracy", "gap", "test_accuracy")]
        epochs = ", ".join(str(r["epochs"]) for r in runs[name])
        lines.append(f"| {name} | {epochs} | " + " | ".join(cells) + " |")
    base_gap, base_test = stat("none", "gap")[0], stat("none", "test_accuracy")
    noise = max(2 * base_test[1], 0.0054)  # two binomial standard errors on 10,000 images
    lines += ["", "## Verdict", "",
              f"- Overfitting shows: unregularized, the network fits its {args.train_images:,} "
              f"training images to {stat('none', 'train_accuracy')[0]:.4f} and validates at "
              f"{stat('none', 'val_accuracy')[0]:.4f}, a gap of {base_gap:.4f}."]
    for name in list(SETTINGS)[1:]:
        gap, test = stat(name, "gap")[0], stat(name, "test_accuracy")[0]
        change = test - base_test[0]
        lines.append(
            f"- {name}: gap {gap:.4f} ({gap - base_gap:+.4f}), test {test:.4f} "
            f"({100 * change:+.2f} points). "
            + ("**Helps.**" if change > noise else
               "**Hurts.**" if change < -noise else "Within the noise on test accuracy.")
            + (" It narrows the gap." if gap < base_gap - 0.01 else ""))
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(3.6 * len(SETTINGS), 3.6), sharey=True)
    for ax, name in zip(axes, SETTINGS):
        history = runs[name][0]["history"]
        epochs = range(1, len(history["accuracy"]) + 1)
        ax.plot(epochs, history["accuracy"], label="training (dropout on)")
        ax.plot(epochs, history["val_accuracy"], label="validation")
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"accuracy (seed {args.seeds[0]})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    studies.write(args, "regularization", lines, {"regularization": fig},
                  {"runs": runs})


def main(argv=None):
    p = studies.parser("python -m studies.regularization", __doc__)
    p.add_argument("--train-images", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--l2", type=float, default=5e-4)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[42, 43])
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
