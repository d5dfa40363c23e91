"""Serving latency and throughput: the exported SavedModel against fair in-process baselines.

    python -m benchmarks.serving                 # exports a CNN first if none is given
    python -m benchmarks.serving --saved-model saved_models/cnn/1 --model runs/cnn/<stamp>/model.keras

Every path runs in this process on the same inputs, interleaved call by call
so machine noise hits them alike, after each was warmed up at every batch
shape it is timed on:

- `SavedModel signature`: `signatures["serving_default"]`, what TF Serving calls;
- `tf.function(model)`: the Keras model traced once, the fair in-process
  equivalent of the signature;
- `model.predict_on_batch`: Keras's call for one batch;
- `model.predict`: what notebooks use; it sets up a tf.data pipeline and
  callbacks on every call, a fixed cost of tens of milliseconds that says
  nothing about the model, so it is shown but is not the baseline.

Measured: batch 1, latency p50 and p99 of one call (`--calls` calls each);
batch 256, images/s (median of `--rounds`).

Fixed before it ran: the four paths, the batch sizes, 300 calls and 5 rounds.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import write_result
from core import data, training
from layers import maxout, swish  # noqa: F401  (registers the custom layers for load_model)
from recipes import cnn


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def fresh_cnn(root):
    """A CNN trained one short epoch, exported: latency does not depend on the weights."""
    keras.utils.set_random_seed(0)
    model = cnn.build_model((28, 28, 1), 10)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(training.pipeline(data.load("fashion_mnist", "train"), 128, limit=4096),
              epochs=1, verbose=0)
    train = training.TrainConfig(export_dir=root)
    return model, cnn.export_model(model, cnn.dataset_facts("fashion_mnist")[1],
                                   (28, 28, 1), train)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saved-model", help="an exported cnn version (default: export one)")
    parser.add_argument("--model", help="the matching .keras file")
    parser.add_argument("--calls", type=int, default=300, help="batch-1 calls per path")
    parser.add_argument("--rounds", type=int, default=5, help="batch-256 rounds per path")
    args = parser.parse_args(argv)
    if bool(args.saved_model) != bool(args.model):
        parser.error("--saved-model and --model go together")
    with tempfile.TemporaryDirectory() as scratch:
        if args.saved_model:
            model, path = keras.saving.load_model(args.model), args.saved_model
        else:
            model, path = fresh_cnn(scratch)
        signature = tf.saved_model.load(path).signatures["serving_default"]
        traced = tf.function(lambda x: model(x, training=False))
        paths = {
            "SavedModel signature": lambda x: signature(image=x)["probabilities"].numpy(),
            "tf.function(model)": lambda x: traced(x).numpy(),
            "model.predict_on_batch": lambda x: np.asarray(model.predict_on_batch(x)),
            "model.predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
        }
        images = np.stack([image for image, _ in
                           data.load("fashion_mnist", "test").take(256).as_numpy_iterator()])
        inputs = {1: tf.constant(images[:1]), 256: tf.constant(images)}
        for batch in inputs.values():  # warm every path at every shape it is timed on
            for call in paths.values():
                for _ in range(5):
                    call(batch)

        times = {name: [] for name in paths}
        for _ in range(args.calls):
            for name, call in paths.items():
                start = time.perf_counter()
                call(inputs[1])
                times[name].append(time.perf_counter() - start)
        rates = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, call in paths.items():
                start = time.perf_counter()
                call(inputs[256])
                rates[name].append(256 / (time.perf_counter() - start))

    rows = [{"path": name, "batch1_p50_ms": round(percentile(times[name], 50), 3),
             "batch1_p99_ms": round(percentile(times[name], 99), 3),
             "batch256_images_per_second": round(statistics.median(rates[name]), 1)}
            for name in paths]
    baseline = rows[1]["batch1_p50_ms"]  # tf.function(model)
    for row in rows:
        row["batch1_p50_x_traced"] = round(baseline / row["batch1_p50_ms"], 2)
    table = ["| path | batch 1 p50 (ms) | batch 1 p99 (ms) | p50 speed vs tf.function(model) | "
             "batch 256 images/s |", "|---|---:|---:|---:|---:|"]
    table += [f"| {r['path']} | {r['batch1_p50_ms']:.2f} | {r['batch1_p99_ms']:.2f} | "
              f"{r['batch1_p50_x_traced']:.2f}x | {r['batch256_images_per_second']:,.0f} |"
              for r in rows]
    print("\n".join(table))
    command = "python -m benchmarks.serving " + " ".join(argv or sys.argv[1:])
    write_result("serving", {"command": command.strip(), "calls": args.calls,
                             "rounds": args.rounds, "rows": rows, "table": table})


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
