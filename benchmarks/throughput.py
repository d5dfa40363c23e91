"""Training throughput of the CNN recipe's pipeline against a numpy-fed baseline.

    python -m benchmarks.throughput              # about 30 minutes here (XLA is most of it)
    python -m benchmarks.throughput --model mnist_convnet     # about 7 minutes
    python -m benchmarks.throughput --epochs 2 --limit 8192   # quicker look
    python -m benchmarks.throughput --compare-batchnorm       # about 8 minutes

The same model (the CNN recipe's default) and batch size, trained back to back
in one process:

- `numpy baseline`: the way keras-io's mnist_convnet example feeds data, numpy
  arrays handed to `fit` (scaled to float32 outside the model, as it does);
- `tf.data fp32`: the recipe's pipeline (cache, shuffle, batch, prefetch;
  scaling inside the model), float32;
- `tf.data mixed_bfloat16`: the same under the mixed_bfloat16 policy (only
  where the CPU has bf16 instructions, or always with --force-bf16);
- `tf.data jit_compile`: the same, compiled with XLA.

Each variant trains `--epochs` epochs; the first is warm-up (tracing, filling
the cache) and every later epoch is one repeat, interleaved across variants
(one epoch of each in turn) so that a noisy neighbour slows them alike.

Reported, each with its ratio to the baseline:
- images/s per epoch (median, min, max): what a user waits for, everything
  included;
- images/s per step: one batch over the median step time (waiting for the
  batch included), the steady state, which a slow spell on the machine or a
  stall between epochs barely moves;
- seconds outside steps in each epoch: fit's setup and the iterator's start
  and end, where tf.data's autotuner can stall (see `data.pipeline`);
- test accuracy after the same budget. The bar asked for it to stay within
  0.5 point of the baseline's; read it as one run each (on 10,000 test
  images one accuracy has a standard error of about 0.3 points).

`--compare-batchnorm` measures instead the recipe's model with Keras's
BatchNormalization against the same model on TensorFlow's fused kernel
(core/batchnorm.py, what the recipe trains with), each in float32 and
mixed_bfloat16, all fed by the recipe's pipeline; the baseline is Keras's
layer in float32.

Fixed before it ran: the variants, the model, batch 128, the epochs and the
interleaving; no setting here was changed after reading its results.
"""

import argparse
import dataclasses
import statistics
import sys
import time

import keras
import numpy as np

from benchmarks import write_result
from core import config, data
from core.batchnorm import FusedBatchNormalization
from recipes import cnn


def numpy_arrays(split, limit):
    """The split as numpy arrays, scaled to [0, 1] float32 like keras-io's example."""
    ds = data.load("fashion_mnist", split)
    if limit:
        ds = ds.take(limit)
    images, labels = zip(*ds.as_numpy_iterator())
    return np.stack(images).astype("float32") / 255.0, np.array(labels)


def mnist_convnet():
    """keras-io's mnist_convnet model, taking uint8 pixels like the recipe's."""
    inputs = keras.Input((28, 28, 1), dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def keras_batchnorm(model):
    """`model` rebuilt with Keras's own BatchNormalization where it has the fused one."""
    def clone(layer):
        if isinstance(layer, FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())
    return keras.models.clone_model(model, clone_function=clone)


def float_input(model):
    """The same model behind a float input: the numpy baseline scales outside."""
    inputs = keras.Input((28, 28, 1), dtype="float32")
    x = inputs
    for layer in model.layers[2:]:  # skip the uint8 input and the Rescaling layer
        x = layer(x)
    return keras.Model(inputs, x)


class StepTimes(keras.callbacks.Callback):
    """Wall time of each training step (waiting for its batch included)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def rate_stats(key, count, seconds):
    """`{key}_median`, `_min`, `_max` of `count` items over each of `seconds`."""
    rates = [count / s for s in seconds]
    return {f"{key}_median": round(statistics.median(rates), 1),
            f"{key}_min": round(min(rates), 1), f"{key}_max": round(max(rates), 1)}


class Variant:
    """One way of training: a model built under its own precision, and its data."""

    def __init__(self, name, make_model, train, test, batch_size, precision="float32",
                 jit_compile=False, seed=0, unit="images"):
        keras.config.set_dtype_policy(precision)  # layers keep the policy they are built with
        keras.utils.set_random_seed(seed)
        self.name, self.train, self.test, self.batch_size = name, train, test, batch_size
        self.unit = unit
        self.model = make_model()
        self.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"], jit_compile=jit_compile)
        keras.config.set_dtype_policy("float32")
        self.examples = len(train[0]) if isinstance(train, tuple) else data.count(
            train.unbatch())
        self.seconds = []  # wall time of each repeat (the caller appends)
        self.step_seconds = []  # each epoch's step times, warm-up first

    def epoch(self):
        """Train one more epoch; return its wall time."""
        steps = StepTimes()
        start = time.perf_counter()
        if isinstance(self.train, tuple):
            self.model.fit(*self.train, batch_size=self.batch_size, epochs=1, verbose=0,
                           callbacks=[steps])
        else:
            self.model.fit(self.train, epochs=1, verbose=0, shuffle=False, callbacks=[steps])
        self.step_seconds.append(steps.seconds)
        return time.perf_counter() - start

    def result(self, warmup):
        repeats = self.step_seconds[-len(self.seconds):]
        if isinstance(self.test, tuple):
            accuracy = self.model.evaluate(*self.test, batch_size=self.batch_size, verbose=0)[1]
        else:
            accuracy = self.model.evaluate(self.test, verbose=0)[1]
        return {
            "variant": self.name,
            **rate_stats(f"{self.unit}_per_second", self.examples, self.seconds),
            "repeats": len(self.seconds),
            # Steady state: one batch over the median step of the repeats, which
            # neither a slow spell on the machine nor an epoch's ends move much.
            f"step_{self.unit}_per_second": round(self.batch_size / statistics.median(
                sum(repeats, [])), 1),
            # Each repeat's wall time not spent in a step: fit's setup, the
            # iterator's start and end (where tf.data's stalls land).
            "seconds_outside_steps": [round(wall - sum(steps), 2)
                                      for wall, steps in zip(self.seconds, repeats)],
            "warmup_epoch_seconds": round(warmup, 2),
            "test_accuracy": round(float(accuracy), 4),
        }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="1 warm-up + repeats (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=0, help="training images (0 = all 54,000)")
    parser.add_argument("--force-bf16", action="store_true",
                        help="measure mixed_bfloat16 even without bf16 instructions")
    parser.add_argument("--model", default="recipe", choices=("recipe", "mnist_convnet"),
                        help="the CNN recipe's default model, or keras-io's lighter "
                        "mnist_convnet (where feeding matters more)")
    parser.add_argument("--compare-batchnorm", action="store_true",
                        help="the recipe's model with Keras's BatchNormalization against "
                        "the fused kernel, float32 and mixed_bfloat16")
    parser.add_argument("--name", default=None, help="results file name (default: "
                        "throughput, throughput_mnist_convnet or throughput_batchnorm)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first is warm-up)")
    if args.compare_batchnorm and args.model != "recipe":
        parser.error("--compare-batchnorm needs --model recipe (mnist_convnet has no batch norm)")

    hparams = dataclasses.asdict(cnn.ModelConfig())
    if args.model == "recipe":
        make_model = lambda: cnn.build_model((28, 28, 1), 10, **hparams)  # noqa: E731
    else:
        make_model, hparams = mnist_convnet, "keras-io mnist_convnet"
    pipeline = lambda split, shuffle: data.pipeline(  # noqa: E731
        data.load("fashion_mnist", split), args.batch_size, shuffle=shuffle,
        limit=args.limit if split == "train" else 0)
    train_ds, test_ds = pipeline("train", True), pipeline("test", False)

    if args.compare_batchnorm:
        precisions = ["float32"] + (["mixed_bfloat16"] if config.cpu_has_bf16()
                                    or args.force_bf16 else [])
        variants = [Variant(f"{precision}, {kind}", build, train_ds, test_ds, args.batch_size,
                            precision=precision)
                    for precision in precisions
                    for kind, build in (("Keras's BatchNormalization",
                                         lambda: keras_batchnorm(make_model())),
                                        ("fused kernel", make_model))]
    else:
        train_np, test_np = numpy_arrays("train", args.limit), numpy_arrays("test", 0)
        variants = [Variant("numpy baseline (keras-io style)",
                            lambda: float_input(make_model()), train_np, test_np,
                            args.batch_size),
                    Variant("tf.data fp32", make_model, train_ds, test_ds, args.batch_size)]
        if config.cpu_has_bf16() or args.force_bf16:
            variants.append(Variant("tf.data mixed_bfloat16", make_model, train_ds, test_ds,
                                    args.batch_size, precision="mixed_bfloat16"))
        variants.append(Variant("tf.data jit_compile", make_model, train_ds, test_ds,
                                args.batch_size, jit_compile=True))
    # Warm-up epoch (tracing, filling the cache), then the repeats interleaved
    # variant by variant, so a noisy neighbour slows every variant alike.
    warmups = [variant.epoch() for variant in variants]
    for repeat in range(args.epochs - 1):
        for variant in variants:
            variant.seconds.append(variant.epoch())
            print(f"[throughput] repeat {repeat + 1}: {variant.name} "
                  f"{variant.examples / variant.seconds[-1]:,.0f} images/s", flush=True)
    rows = [variant.result(warmup) for variant, warmup in zip(variants, warmups)]
    baseline, steady = rows[0]["images_per_second_median"], rows[0]["step_images_per_second"]
    for row in rows:
        row["ratio_to_baseline"] = round(row["images_per_second_median"] / baseline, 2)
        row["step_ratio_to_baseline"] = round(row["step_images_per_second"] / steady, 2)
    table = ["| variant | images/s per epoch (median) | min-max | x baseline | "
             "images/s per step (median) | x baseline | s outside steps, each epoch | "
             "test accuracy |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['variant']} | {r['images_per_second_median']:,.0f} | "
              f"{r['images_per_second_min']:,.0f}-{r['images_per_second_max']:,.0f} | "
              f"{r['ratio_to_baseline']:.2f} | {r['step_images_per_second']:,.0f} | "
              f"{r['step_ratio_to_baseline']:.2f} | "
              f"{', '.join(f'{s:.1f}' for s in r['seconds_outside_steps'])} | "
              f"{r['test_accuracy']:.4f} |" for r in rows]
    print("\n".join(table))
    command = "python -m benchmarks.throughput " + " ".join(argv or sys.argv[1:])
    name = args.name or ("throughput_batchnorm" if args.compare_batchnorm else "throughput"
                         if args.model == "recipe" else "throughput_mnist_convnet")
    write_result(name, {"command": command.strip(), "model": hparams,
                             "batch_size": args.batch_size, "epochs": args.epochs,
                             "rows": rows, "table": table})


if __name__ == "__main__":
    sys.exit(main())
