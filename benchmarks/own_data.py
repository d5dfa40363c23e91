"""Own data against TFDS: Fashion-MNIST written as PNG files, trained from the folder.

The question (#34's bar): does `python -m recipes.cnn --dataset DIR`, on
Fashion-MNIST written as PNG files into `DIR/train/<class>/` and
`DIR/test/<class>/`, reach the TFDS path's test accuracy within 0.5 point at
the default budget (same seed), at no less than 0.8x its images per second;
and is its peak memory with 60,000 training images within 1.2x of that with
6,000 (the folder streams; only the decoded cache grows)?

Setup, fixed before any run: the recipe's default command, seed 42, on TFDS's
`fashion_mnist` and on the folder; images/s is metrics.json's
`examples_per_second` (training examples over training seconds). Peak memory
is the recipe process's maximum resident set size (`ru_maxrss`), measured on
2-epoch runs of the 60,000-image folder and of a 6,000-image one (its first
6,000 training and 1,000 test images). The folder's validation split is its
own (a hash of each file's path), so the two runs do not train on exactly the
same 54,000 images. Each run is its own process, one after the other.

    python -m benchmarks.own_data                    # writes results/own_data.{json,md}
    python -m benchmarks.own_data --epochs 1 --limit 2000   # a smoke run
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchmarks import RESULTS, write_result

_RUN = """
import resource, sys
from recipes import cnn
cnn.main(sys.argv[1:])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_folder(root, train_count, test_count):
    """Fashion-MNIST's first `train_count` training and `test_count` test images as
    PNG files in `root/{train,test}/<class>/`; kept if already complete."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from core import data

    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    names = [n.replace("/", "-") for n in data.info("fashion_mnist").features["label"].names]
    for split, count in (("train", train_count), ("test", test_count)):
        for name in names:
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
        data.prepare("fashion_mnist")
        ds = tfds.load("fashion_mnist", split=split, as_supervised=True, download=False)
        for i, (image, label) in enumerate(ds.take(count).as_numpy_iterator()):
            tf.io.write_file(os.path.join(root, split, names[label], f"{i:05d}.png"),
                             tf.io.encode_png(image))
    open(marker, "w").close()
    return root


def run_recipe(dataset, runs_dir, flags):
    """One `python -m recipes.cnn` process; (its metrics.json, peak RSS in MB)."""
    before = set(os.listdir(os.path.join(runs_dir, "cnn"))) if os.path.isdir(
        os.path.join(runs_dir, "cnn")) else set()
    out = subprocess.run(
        [sys.executable, "-c", _RUN, "--dataset", dataset, "--no-export", "--runs-dir", runs_dir,
         *flags], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    peak = next(int(line.split()[1]) for line in out.stdout.splitlines()
                if line.startswith("MAXRSS_KB"))
    (stamp,) = set(os.listdir(os.path.join(runs_dir, "cnn"))) - before
    with open(os.path.join(runs_dir, "cnn", stamp, "metrics.json")) as f:
        return json.load(f), round(peak / 1024, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.own_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "fashion_png"),
                        help="where the PNG folders are written (kept between runs)")
    parser.add_argument("--epochs", type=int, default=0,
                        help="override the default budget (0 = the recipe's own; smoke runs)")
    parser.add_argument("--limit", type=int, default=0, help="--limit for every run (smoke)")
    args = parser.parse_args(argv)
    budget = [*(["--epochs", str(args.epochs)] if args.epochs else []),
              *(["--limit", str(args.limit)] if args.limit else []), "--seed", "42"]
    big = write_folder(os.path.join(args.dir, "60000"), 60_000, 10_000)
    small = write_folder(os.path.join(args.dir, "6000"), 6_000, 1_000)
    with tempfile.TemporaryDirectory() as runs:
        results = {}
        for name, dataset, flags in (
                ("tfds", "fashion_mnist", budget), ("folder", big, budget),
                ("memory 60000", big, ["--epochs", "2", "--seed", "42"]),
                ("memory 6000", small, ["--epochs", "2", "--seed", "42"])):
            metrics, peak = run_recipe(dataset, runs, flags)
            results[name] = {**metrics, "peak_rss_mb": peak}
            print(f"[own_data] {name}: test accuracy {metrics['test_accuracy']:.4f}, "
                  f"{metrics['examples_per_second']:.0f} images/s, peak {peak:.0f} MB", flush=True)
    tfds, folder = results["tfds"], results["folder"]
    verdict = {
        "accuracy_gap_points": round(100 * (folder["test_accuracy"] - tfds["test_accuracy"]), 2),
        "speed_ratio": round(folder["examples_per_second"] / tfds["examples_per_second"], 3),
        "memory_ratio": round(results["memory 60000"]["peak_rss_mb"]
                              / results["memory 6000"]["peak_rss_mb"], 3),
    }
    verdict["bar_met"] = bool(abs(verdict["accuracy_gap_points"]) <= 0.5
                              and verdict["speed_ratio"] >= 0.8
                              and verdict["memory_ratio"] <= 1.2)
    write_result("own_data", {"command": "python -m benchmarks.own_data " + " ".join(
        argv if argv is not None else sys.argv[1:]), "runs": results, **verdict})
    rows = [f"| {name} | {r['test_accuracy']:.4f} | {r['epochs']} | {r['train_seconds']:.0f} | "
            f"{r['examples_per_second']:,.0f} | {r['peak_rss_mb']:,.0f} |"
            for name, r in results.items()]
    table = ["| run | test accuracy | epochs | training s | images/s | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|", *rows, "",
             f"Folder minus TFDS: {verdict['accuracy_gap_points']:+.2f} points; images/s "
             f"{verdict['speed_ratio']:.2f}x; peak memory 60,000 vs 6,000 images "
             f"{verdict['memory_ratio']:.2f}x. Bar (within 0.5 point, >= 0.8x, <= 1.2x): "
             f"{'met' if verdict['bar_met'] else 'not met'}."]
    with open(os.path.join(RESULTS, "own_data.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    sys.exit(main())
