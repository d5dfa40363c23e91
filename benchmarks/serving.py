"""Serving latency and throughput: the exported SavedModel's signature against `model.predict`.

    python -m benchmarks.serving                 # exports a CNN first if none is given
    python -m benchmarks.serving --saved-model saved_models/cnn/1 --model runs/cnn/<stamp>/model.keras

Both sides run in this process on the same inputs, interleaved round by round
so machine noise hits them alike:

- batch 1: latency p50 and p99 of one call (`--calls` calls each);
- batch 256: images/s.

The SavedModel is called through `signatures["serving_default"]`, the way
TF Serving calls it; the Keras model through `model.predict`, the way a
notebook usually does. The bar: batch 1 at least 5x faster through the
signature than `model.predict` on one example.
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
    parser.add_argument("--calls", type=int, default=300, help="batch-1 calls per side")
    parser.add_argument("--rounds", type=int, default=5, help="batch-256 rounds per side")
    args = parser.parse_args(argv)
    if bool(args.saved_model) != bool(args.model):
        parser.error("--saved-model and --model go together")
    with tempfile.TemporaryDirectory() as scratch:
        if args.saved_model:
            model, path = keras.saving.load_model(args.model), args.saved_model
        else:
            model, path = fresh_cnn(scratch)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        images = np.stack([image for image, _ in
                           data.load("fashion_mnist", "test").take(256).as_numpy_iterator()])
        one = images[:1]
        one_tensor = tf.constant(one)
        for _ in range(20):  # warm up both paths
            serve(image=one_tensor)
            model.predict(one, verbose=0)

        signature_times, predict_times = [], []
        for _ in range(args.calls):
            start = time.perf_counter()
            serve(image=one_tensor)["probabilities"].numpy()
            signature_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(one, verbose=0)
            predict_times.append(time.perf_counter() - start)

        batch = tf.constant(images)
        signature_rates, predict_rates = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            serve(image=batch)["probabilities"].numpy()
            signature_rates.append(len(images) / (time.perf_counter() - start))
            start = time.perf_counter()
            model.predict(images, batch_size=len(images), verbose=0)
            predict_rates.append(len(images) / (time.perf_counter() - start))

    rows = []
    for name, times, rates in (("SavedModel signature", signature_times, signature_rates),
                               ("model.predict", predict_times, predict_rates)):
        rows.append({"path": name, "batch1_p50_ms": round(percentile(times, 50), 3),
                     "batch1_p99_ms": round(percentile(times, 99), 3),
                     "batch256_images_per_second": round(statistics.median(rates), 1)})
    speedup = rows[1]["batch1_p50_ms"] / rows[0]["batch1_p50_ms"]
    table = ["| path | batch 1 p50 (ms) | batch 1 p99 (ms) | batch 256 images/s |",
             "|---|---:|---:|---:|"]
    table += [f"| {r['path']} | {r['batch1_p50_ms']:.2f} | {r['batch1_p99_ms']:.2f} | "
              f"{r['batch256_images_per_second']:,.0f} |" for r in rows]
    table.append(f"\nBatch 1, p50: the signature is {speedup:.1f}x faster than model.predict.")
    print("\n".join(table))
    command = "python -m benchmarks.serving " + " ".join(argv or sys.argv[1:])
    write_result("serving", {"command": command.strip(), "calls": args.calls,
                             "rows": rows, "batch1_speedup_p50": round(speedup, 2),
                             "table": table})


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
