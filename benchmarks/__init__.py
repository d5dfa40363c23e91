"""Side-by-side measurements: `python -m benchmarks.<name>`. Results go to benchmarks/results/.

These machines are shared and noisy, so every benchmark measures its variants
in one process, back to back, and reports ratios against a baseline measured
in the same run, with the machine described beside the numbers.
"""

import datetime
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Text corpora that are a seeded share of an offline dataset's training split,
#: name: (dataset, percent). A tenth of health_tweets is 4,350 tweets of 16
#: accounts: small, short and multi-class, like a question-type corpus; three
#: tenths are the middle of #37's curve (benchmarks/text_corpora.py says why).
SUBSETS = {"health_tweets_10pct": ("health_tweets", 10),
           "health_tweets_30pct": ("health_tweets", 30)}


def corpus_flags(corpus):
    """A text recipe's flags to train on `corpus`, a dataset or one of SUBSETS
    (validated and tested on the dataset's whole validation and test splits)."""
    if corpus in SUBSETS:
        dataset, percent = SUBSETS[corpus]
        return ["--dataset", dataset, "--train-percent", str(percent)]
    return ["--dataset", corpus]


def machine():
    """What the numbers were measured on."""
    import keras
    import tensorflow as tf

    from core import config

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_bf16": config.cpu_has_bf16(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def write_result(name, result):
    """benchmarks/results/<name>.json, with the machine; returns the path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"machine": machine(), **result}, f, indent=2, default=str)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"[benchmarks] wrote {path}")
    return path
