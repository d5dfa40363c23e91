"""Does a keras-tuner search leak memory trial over trial?

    python -m benchmarks.tuning_memory             # 20 small CNN trials, about 2 minutes

Runs a random search of `--trials` small trials in a fresh process and reads
the resident memory each trial recorded when it finished (`run_log.jsonl`).
Each trial runs inside `training.released_graphs()`, which clears the Keras
session and frees the graphs TensorFlow's gradient registry would otherwise
keep (~20 MB a model). What remains is the allocator's high-water mark: RSS
climbs while ever larger models appear, then stays level. Reported: RSS after
each trial, the growth from trial 2 to the last (trial 1 includes start-up and
the dataset cache), and least-squares slopes in MB per trial over all trials
and over the second half.

Fixed before it ran: 20 trials, one epoch on 2,048 images, and the slope over
the second half as the reading (a growing high-water mark is not a leak).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import write_result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning_memory",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--limit", type=int, default=2048, help="training images per trial")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "search")
        command = ["-m", "tuning", "cnn", "--tuner", "random", "--max-trials", str(args.trials),
                   "--epochs", "1", "--limit", str(args.limit), "--dir", path]
        subprocess.run([sys.executable, *command], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(path, "run_log.jsonl")) as f:
            log = [json.loads(line) for line in f]
    rss = [entry["current_rss_mb"] for entry in sorted(log, key=lambda e: int(e["trial_id"]))]
    half = len(rss) // 2
    result = {
        "command": "python -m benchmarks.tuning_memory " + " ".join(argv or sys.argv[1:]),
        "rss_mb_after_each_trial": rss,
        "growth_mb_trial2_to_last": round(rss[-1] - rss[1], 1) if len(rss) > 1 else 0.0,
        "slope_mb_per_trial": _slope(rss[1:]),
        "slope_mb_per_trial_second_half": _slope(rss[half:]),
    }
    print(json.dumps(result, indent=2))
    write_result("tuning_memory", result)


def _slope(values):
    if len(values) < 2:
        return 0.0
    return round(float(np.polyfit(np.arange(len(values)), values, 1)[0]), 2)


if __name__ == "__main__":
    sys.exit(main())
