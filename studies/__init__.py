"""The notes, measured: one module per claim, `python -m studies.<name>`.

Each study states the claim, trains on real data (Fashion-MNIST or rt_snippets
through `core.data`), measures, and writes `studies/results/<name>.md` (the table, the
verdict and the command), `<name>.png` and `<name>.json`. Budgets are fixed in
each module before it ran; decisions use validation, and each model's test
accuracy is read once, at its end. What they share lives here.
"""

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class StudyError(ValueError):
    """A study setting that cannot work; the message says why."""


def parser(prog, doc):
    """A parser with the flags every study has."""
    p = argparse.ArgumentParser(prog=prog, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=RESULTS, help="where the table, plot and json go "
                   "(default: studies/results)")
    return p


def run_cli(p, study, argv=None):
    """Parse, run `study(args)`; a StudyError ends with a one-line message and code 2."""
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' command line
    try:
        study(args)
    except StudyError as err:
        p.exit(2, f"error: {err}\n")


def check_positive(**values):
    for name, value in values.items():
        if not value > 0:
            raise StudyError(f"{name} must be > 0, got {value}")


def images(split, limit=0, flat=False, raw=False):
    """Fashion-MNIST `split` as numpy: (float32 pixels in [0, 1], int labels);
    `raw`: uint8 pixels, as the recipes' models take them."""
    import numpy as np

    from core import data

    ds = data.load("fashion_mnist", split)
    if limit:
        ds = ds.take(limit)
    x, y = next(iter(ds.batch(100_000).as_numpy_iterator()))
    if not raw:
        x = x.astype("float32") / 255.0
    if flat:
        x = x.reshape(len(x), -1)
    return x, y.astype(np.int64)


def texts(split, limit=0, dataset="rt_snippets"):
    """A text dataset's `split` as numpy: (byte strings, int labels)."""
    import numpy as np

    from core import data

    ds = data.load(dataset, split)
    if limit:
        ds = ds.take(limit)
    x, y = next(iter(ds.batch(1_000_000).as_numpy_iterator()))
    return x, y.astype(np.int64)


def text_recipe(name, argv=(), **train_fields):
    """Train `recipes.<name>` as its command line `argv` would, with `train_fields`
    (TrainConfig fields) on top, without exporting and in a throwaway run
    directory. Returns the run's metrics and history, `clock`: the seconds
    trained (validation excluded) at each epoch's end, and `seconds_per_step`
    (`training.EpochClock`)."""
    import dataclasses
    import importlib
    import tempfile

    from core import config, training

    recipe = importlib.import_module(f"recipes.{name}").RECIPE
    _, _, model_config, train = recipe.parse(list(argv))
    clock = training.EpochClock()
    with tempfile.TemporaryDirectory() as runs, training.released_graphs():
        train = dataclasses.replace(train, export=False, runs_dir=runs, **train_fields)
        config.validate(train)
        result = recipe.run(model_config, train, extra_callbacks=[clock])
    for key in ("run_dir", "model"):
        result.pop(key)
    return {**result, "clock": clock.seconds, "seconds_per_step": clock.seconds_per_step()}


def first_reached(values, threshold):
    """Index of the first of `values` (one per epoch) at or above `threshold`, or None."""
    return next((i for i, value in enumerate(values) if value >= threshold), None)


def seconds_to(threshold, values, seconds):
    """Seconds (`seconds[i]` at epoch i's end) until `values` first reached `threshold`."""
    i = first_reached(values, threshold)
    return None if i is None else round(seconds[i], 1)


def write(args, name, lines, figures, result):
    """Write `<name>.md` (with the command that made it and the date), `.json` (with
    the settings), and each of `figures` ({file stem: figure}) as a PNG, to `args.out`."""
    out = args.out
    os.makedirs(out, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    command = " ".join(["python -m studies." + name, *getattr(args, "argv", [])])
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "argv")}
    text = [*lines, "", f"Made by `{command}` on {stamp}."]
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    for stem, figure in figures.items():
        figure.savefig(os.path.join(out, f"{stem}.png"), dpi=110)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"command": command, "date": stamp, "settings": settings, **result}, f,
                  indent=2, default=float)
        f.write("\n")
    print("\n".join(text))
    print(f"[studies] wrote {name}.md, {name}.json and "
          f"{', '.join(stem + '.png' for stem in figures)} to {out}", flush=True)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_sd(values):
    import statistics

    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
