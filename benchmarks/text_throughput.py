"""Training and inference throughput of the three text recipes, side by side.

    python -m benchmarks.text_throughput          # about 5 minutes here

Each recipe's default model (BiLSTM, BiGRU, transformer) on rt_snippets,
with the recipe's own pipeline (TextVectorization in the tf.data map, cache,
shuffle, batch 128, prefetch) and its default precision, in one process:

- training: one warm-up epoch each (tracing, filling the cache), then
  `--epochs - 1` more, interleaved model by model so that a noisy neighbour
  slows them alike; median, min and max examples/s, and each epoch's
  seconds outside its steps (where a tf.data stall would show, see
  `data.pipeline`);
- inference from raw strings, as the exported model serves them: the test
  split in batches of 256 through a traced `vectorizer -> model` function,
  `--repeats` times, interleaved likewise.

Ratios are to the BiLSTM measured in the same run.

Fixed before it ran: each recipe's default model and pipeline, batch 128,
the epochs and passes; no setting here was changed after reading its results.
"""

import argparse
import dataclasses
import sys
import time

import numpy as np
import tensorflow as tf

from benchmarks import write_result
from benchmarks.throughput import Variant, rate_stats
from core import config, data, text
from recipes import rnn_text, transformer_text

RECIPES = {
    "BiLSTM": (rnn_text.build_model, rnn_text.ModelConfig(cell="lstm")),
    "BiGRU": (rnn_text.build_model, rnn_text.ModelConfig(cell="gru")),
    "Transformer": (transformer_text.build_model, transformer_text.ModelConfig()),
}


class TextModel:
    """A recipe's model trained on its pipeline, and its raw-string serving path."""

    def __init__(self, name, build_model, config, train, precision):
        train_ds, _, test_ds, self.vectorizer, _ = text.datasets(train, config)
        kwargs = {**dataclasses.asdict(config),
                  "vocabulary_size": self.vectorizer.vocabulary_size()}
        make_model = lambda: build_model(num_classes=2, **kwargs)  # noqa: E731
        self.variant = Variant(name, make_model, train_ds, test_ds, train.batch_size,
                               precision=precision, seed=train.seed, unit="examples")
        self.serve_seconds = []

    def serve(self):
        """A traced strings -> probabilities function, like the exported signature."""
        model = text.end_to_end(self.variant.model, self.vectorizer)
        return tf.function(lambda texts: model(texts, training=False),
                           input_signature=[tf.TensorSpec((None,), tf.string)])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_throughput",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="1 warm-up + repeats (default: 4)")
    parser.add_argument("--repeats", type=int, default=5, help="inference passes (default: 5)")
    parser.add_argument("--limit", type=int, default=0, help="training texts (0 = all)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first is warm-up)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    train = config.TrainConfig(dataset="rt_snippets", limit=args.limit)
    precision = config.resolve_precision(train.precision)
    models = [TextModel(name, build, config, train, precision)
              for name, (build, config) in RECIPES.items()]
    warmups = [m.variant.epoch() for m in models]
    for repeat in range(args.epochs - 1):
        for m in models:
            m.variant.seconds.append(m.variant.epoch())
            print(f"[text_throughput] epoch {repeat + 1}: {m.variant.name} "
                  f"{m.variant.examples / m.variant.seconds[-1]:,.0f} examples/s", flush=True)

    texts = np.array([t for t, _ in data.load(train.dataset, "test").as_numpy_iterator()],
                     dtype=object)
    batches = [tf.constant(texts[i:i + 256]) for i in range(0, len(texts), 256)]
    serves = [m.serve() for m in models]
    for serve in serves:
        serve(batches[0])  # trace
    for _ in range(args.repeats):
        for m, serve in zip(models, serves):
            start = time.perf_counter()
            for batch in batches:
                serve(batch).numpy()
            m.serve_seconds.append(time.perf_counter() - start)

    rows = []
    for m, warmup in zip(models, warmups):
        rows.append({**m.variant.result(warmup),
                     **rate_stats("serving_examples_per_second", len(texts), m.serve_seconds)})
    for key in ("examples_per_second_median", "serving_examples_per_second_median"):
        for row in rows:
            row[key.replace("_median", "_ratio")] = round(row[key] / rows[0][key], 2)
    table = ["| model | training examples/s (median, min-max) | x BiLSTM | "
             "s outside steps, each epoch | "
             "inference from strings, examples/s (median, min-max) | x BiLSTM | "
             f"test accuracy after {args.epochs} epochs |", "|---|---:|---:|---:|---:|---:|---:|"]
    table += [f"| {r['variant']} | {r['examples_per_second_median']:,.0f} "
              f"({r['examples_per_second_min']:,.0f}-{r['examples_per_second_max']:,.0f}) | "
              f"{r['examples_per_second_ratio']:.2f} | "
              f"{', '.join(f'{s:.2f}' for s in r['seconds_outside_steps'])} | "
              f"{r['serving_examples_per_second_median']:,.0f} "
              f"({r['serving_examples_per_second_min']:,.0f}-"
              f"{r['serving_examples_per_second_max']:,.0f}) | "
              f"{r['serving_examples_per_second_ratio']:.2f} | {r['test_accuracy']:.4f} |"
              for r in rows]
    print("\n".join(table))
    command = "python -m benchmarks.text_throughput " + " ".join(argv or sys.argv[1:])
    write_result("text_throughput", {"command": command.strip(), "precision": precision,
                                     "batch_size": train.batch_size, "epochs": args.epochs,
                                     "serving_batch_size": 256, "rows": rows, "table": table})


if __name__ == "__main__":
    sys.exit(main())
