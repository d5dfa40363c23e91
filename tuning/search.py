"""`python -m tuning <recipe>`: a keras-tuner search over a recipe's hyperparameters.

    python -m tuning cnn --tuner hyperband --epochs 9
    python -m tuning rnn_text --tuner bayesian --max-trials 12
    python -m tuning cnn --tuner random --max-trials 10 --export-best

- Resumable: the search lives in `--dir` (default `tuning_runs/<recipe>/<tuner>/`);
  run the same command again after an interruption (even SIGKILL) and it goes
  on: finished trials are kept, the interrupted one is run again.
- Reproducible: `--seed` fixes the sequence of trial hyperparameters.
- Distributed: keras-tuner's chief/worker mode. `--chief HOST:PORT` serves the
  oracle, `--worker HOST:PORT` runs trials for it (or set KERASTUNER_TUNER_ID,
  KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT yourself); `python -m
  tuning.launch --workers N ...` starts a chief and N workers on this machine.
- Results: `trials.md` and `trials.csv` in the search directory, sorted by
  score; `trials.png`, each trial's score in the order the trials ran and the
  best so far; the best model restored from its checkpoint, evaluated once on
  the test split (not with --skip-test), and with `--export-best` exported
  like the recipe's own.
- TensorBoard: `tensorboard --logdir <dir>/tensorboard` shows every trial as a
  run, and the HParams tab compares them by hyperparameter.
"""

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import sys
import time

import keras
import keras_tuner as kt

from core import config, data, storage, training
from tuning.spaces import DEFAULT_DATASETS, RECIPES

TUNERS = ("random", "bayesian", "hyperband", "grid")
MARKER = "search.json"
RUN_LOG = "run_log.jsonl"  # one line per finished trial: its id, tuner, seconds and memory
TENSORBOARD = "tensorboard"  # under the search directory; keras-tuner adds <trial>/execution0


class SearchError(ValueError):
    """A search that cannot start; the message says why."""


class RecipeHyperModel(kt.HyperModel):
    """Builds a recipe's model for a point of its space and trains it on that point's data."""

    def __init__(self, recipe):
        super().__init__(name=recipe.name)
        self.recipe = recipe

    def build(self, hp):
        return self.recipe.build(hp)

    def fit(self, hp, model, *args, **kwargs):
        train_ds, val_ds, _, _ = self.recipe.data(self.recipe.space(hp))
        kwargs.pop("x", None)
        kwargs.pop("validation_data", None)
        training.build_state(model, val_ds.element_spec)  # one trace of the step, not two
        return model.fit(train_ds, validation_data=val_ds, shuffle=False, *args, **kwargs)


class _TrialLog:
    """Prints each trial as it starts and appends its wall time and memory to a log.

    `run_log.jsonl` in the search directory gets one line per finished trial
    run (a trial interrupted and run again appears once, when it finishes).
    """

    def run_trial(self, trial, *args, **kwargs):
        print(f"\n[tuning] trial {trial.trial_id} ({self.tuner_id}): "
              f"{json.dumps(trial.hyperparameters.values)}", flush=True)
        start = time.perf_counter()
        with training.released_graphs():
            result = super().run_trial(trial, *args, **kwargs)
        line = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "seconds": round(time.perf_counter() - start, 2),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "current_rss_mb": _current_rss_mb(),
        }
        with open(os.path.join(self.project_dir, RUN_LOG), "a") as f:
            f.write(json.dumps(line) + "\n")
        return result


def _current_rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except OSError:
        return None


def make_tuner(kind, hypermodel, objective, directory, project_name, max_trials, epochs, seed,
               initial_points=0):
    """A keras-tuner tuner of `kind` that logs its trials.

    `initial_points`: random trials before Bayesian optimization fits its
    Gaussian process (0: keras-tuner's default, 3 per hyperparameter).
    """
    common = dict(objective=objective, seed=seed, directory=directory,
                  project_name=project_name, overwrite=False)
    if kind == "hyperband":
        base, extra = kt.Hyperband, dict(max_epochs=epochs, factor=3, hyperband_iterations=1)
    else:
        base = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization,
                "grid": kt.GridSearch}[kind]
        extra = dict(max_trials=max_trials)
        if kind == "bayesian" and initial_points:
            extra["num_initial_points"] = initial_points
    tuner_class = type(f"Logged{base.__name__}", (_TrialLog, base), {})
    return tuner_class(hypermodel, **common, **extra)


def check_directory(path, recipe, tuner, overwrite):
    """Refuse a directory that belongs to another search; wipe only with --overwrite."""
    marker = os.path.join(path, MARKER)
    if os.path.exists(path) and overwrite:
        shutil.rmtree(path)
    if os.path.exists(marker):
        with open(marker) as f:
            owner = json.load(f)
        if (owner["recipe"], owner["tuner"]) != (recipe, tuner):
            raise SearchError(
                f"{path} holds a {owner['tuner']} search for {owner['recipe']!r}, not a "
                f"{tuner} search for {recipe!r}; choose another --dir, or pass --overwrite "
                "to delete it")
    elif os.path.isdir(path) and os.listdir(path):
        raise SearchError(
            f"{path} exists and is not a search directory; choose another --dir, or pass "
            "--overwrite to delete it")
    os.makedirs(path, exist_ok=True)
    storage.write_json(marker, {"recipe": recipe, "tuner": tuner})


def trial_seconds(path):
    """{trial id: wall seconds} of the finished trials `run_log.jsonl` records."""
    log = os.path.join(path, RUN_LOG)
    if not os.path.exists(log):
        return {}
    with open(log) as f:
        return {entry["trial_id"]: entry["seconds"] for entry in map(json.loads, f)}


def trials_table(tuner, path, epochs):
    """Write trials.md and trials.csv (best first) and return the rows.

    `epochs` is what each trial trained for, unless Hyperband says otherwise.
    """
    times = trial_seconds(path)
    objective = tuner.oracle.objective
    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    trials.sort(key=lambda t: t.score, reverse=objective.direction == "max")
    names = sorted({name for t in trials for name in t.hyperparameters.values
                    if not name.startswith("tuner/")})
    rows = []
    for t in trials:
        values = t.hyperparameters.values
        rows.append({"trial": t.trial_id, objective.name: round(t.score, 5),
                     "epochs": values.get("tuner/epochs", epochs),
                     "seconds": times.get(t.trial_id, ""),
                     **{name: _short(values.get(name, "")) for name in names}})
    columns = ["trial", objective.name, "epochs", "seconds", *names]
    with open(os.path.join(path, "trials.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(path, "trials.md"), "w") as f:
        f.write("| " + " | ".join(columns) + " |\n")
        f.write("|" + "---|" * len(columns) + "\n")
        for row in rows:
            f.write("| " + " | ".join(str(row[c]) for c in columns) + " |\n")
    return rows


def _short(value):
    return float(f"{value:.4g}") if isinstance(value, float) else value


def history(path, epochs):
    """The finished trials of the search in `path`, in the order they were created
    (which is the order they ran in one process): trial id, score, hyperparameters
    (without Hyperband's bookkeeping), and the epochs the trial trained, which is
    `epochs` unless Hyperband went on from an earlier trial's checkpoint."""
    trials = []
    for name in os.listdir(path):
        file = os.path.join(path, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(file):
            with open(file) as f:
                trial = json.load(f)
            if trial["status"] == "COMPLETED" and trial["score"] is not None:
                trials.append(trial)
    trials.sort(key=lambda t: int(t["trial_id"]))
    rows = []
    for t in trials:
        values = t["hyperparameters"]["values"]
        spent = values.get("tuner/epochs", epochs) - values.get("tuner/initial_epoch", 0)
        rows.append({"trial_id": t["trial_id"], "score": t["score"], "epochs": spent,
                     "values": {k: v for k, v in values.items()
                                if not k.startswith("tuner/")}})
    return rows


def best_so_far(scores, direction="max"):
    """The best of `scores[:i + 1]` for each i (the highest, or the lowest for "min")."""
    pick = max if direction == "max" else min
    best, out = None, []
    for score in scores:
        best = score if best is None else pick(best, score)
        out.append(best)
    return out


def plot_trials(rows, objective, file, title):
    """`file`: each trial's score in run order, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    scores = [row["score"] for row in rows]
    order = range(1, len(rows) + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(order, scores, "o", color="tab:blue", alpha=0.6, label="trial")
    ax.step(order, best_so_far(scores, objective.direction), where="post",
            color="tab:orange", label="best so far")
    ax.set_xlabel("trial, in the order it ran")
    ax.set_ylabel(objective.name)
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(file, dpi=100)
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tuning", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help=f"one of {tuple(RECIPES)}")
    parser.add_argument("--tuner", default="random", help=f"one of {TUNERS} (default: random)")
    parser.add_argument("--max-trials", type=int, default=10,
                        help="trials to run (random, bayesian, grid; default: 10)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per trial; Hyperband's max epochs (default: 3)")
    parser.add_argument("--initial-points", type=int, default=0,
                        help="bayesian: random trials before the Gaussian process guides the "
                        "search (default: 0 = keras-tuner's, 3 per hyperparameter)")
    parser.add_argument("--dataset", default=None,
                        help="a TFDS name or your own data, as for the recipes (default: the "
                        "recipe's)")
    config.add_flags(parser, config.TrainConfig, ("validation_percent", *data.OWN_OPTIONS))
    parser.add_argument("--seed", type=int, default=42, help="search seed (default: 42)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=0,
                        help="use at most this many examples per split (0 = all)")
    parser.add_argument("--train-percent", type=int, default=100,
                        help="train on this share of the training split, drawn with --seed; "
                        "validation and test stay whole (default: 100)")
    parser.add_argument("--precision", default="auto", help=f"one of {config.PRECISIONS}")
    parser.add_argument("--dir", default=None,
                        help="search directory (default: tuning_runs/<recipe>/<tuner>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing search in --dir and start again")
    parser.add_argument("--export-best", action="store_true",
                        help="export the best model to --export-dir after the search")
    parser.add_argument("--export-dir", default="saved_models")
    parser.add_argument("--skip-test", action="store_true",
                        help="do not evaluate the best model on the test split (for a search "
                        "that is one step of a study which reads the test split itself)")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--chief", metavar="HOST:PORT",
                      help="serve the oracle for distributed workers at HOST:PORT")
    role.add_argument("--worker", metavar="HOST:PORT",
                      help="run trials for the chief at HOST:PORT")
    parser.add_argument("--worker-id", default=None,
                        help="this worker's name (default: worker-<pid>)")
    return parser


def set_role(args):
    """Translate --chief/--worker into keras-tuner's environment variables."""
    address = args.chief or args.worker
    if not address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"expected HOST:PORT, got {address!r}")
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = port
    os.environ["KERASTUNER_TUNER_ID"] = (
        "chief" if args.chief else (args.worker_id or f"worker-{os.getpid()}"))


def validate(args):
    if args.recipe not in RECIPES:
        raise SearchError(f"unknown recipe {args.recipe!r}; choose one of {tuple(RECIPES)}")
    if args.tuner not in TUNERS:
        raise SearchError(f"unknown tuner {args.tuner!r}; choose one of {TUNERS}")
    if args.max_trials < 1:
        raise SearchError(f"--max-trials must be >= 1, got {args.max_trials}")
    if args.epochs < 1:
        raise SearchError(f"--epochs must be >= 1, got {args.epochs}")
    if args.initial_points < 0:
        raise SearchError(f"--initial-points must be >= 0, got {args.initial_points}")


class _WorkersDone(Exception):
    """Raised in the chief by SIGUSR1 while it waits for the workers (`tuning.launch`
    sends it once every worker has exited)."""


_waiting = [False]


def _workers_done(signum, frame):
    if _waiting[0]:  # not once the search has returned: the report is being written
        raise _WorkersDone


def search(args):
    validate(args)
    set_role(args)
    is_worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief" and \
        "KERASTUNER_ORACLE_IP" in os.environ
    train = config.TrainConfig(
        dataset=args.dataset or DEFAULT_DATASETS[args.recipe], epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, precision=args.precision, limit=args.limit,
        train_percent=args.train_percent, export_dir=args.export_dir,
        validation_percent=args.validation_percent,
        **{name: getattr(args, name) for name in data.OWN_OPTIONS})
    config.validate(train)
    path = args.dir or os.path.join("tuning_runs", args.recipe, args.tuner)
    if not is_worker:  # workers share the chief's directory
        check_directory(path, args.recipe, args.tuner, args.overwrite)
    keras.utils.set_random_seed(args.seed)
    keras.config.set_dtype_policy(config.resolve_precision(train.precision))
    recipe = RECIPES[args.recipe](train)
    directory, project = os.path.split(os.path.abspath(path))
    tuner = make_tuner(args.tuner, RecipeHyperModel(recipe), recipe.objective, directory,
                       project, args.max_trials, args.epochs, args.seed, args.initial_points)
    print(f"[tuning] {args.tuner} search for {args.recipe} on {train.dataset} in {path} "
          f"({os.environ.get('KERASTUNER_TUNER_ID', 'single process')})", flush=True)
    tuner.search_space_summary()
    fit_kwargs = {} if args.tuner == "hyperband" else {"epochs": args.epochs}
    # keras-tuner gives each trial its own log directory under this one and adds
    # the HParams plugin's callback beside it (TensorFlow backend only).
    board = keras.callbacks.TensorBoard(os.path.join(path, TENSORBOARD), write_graph=False,
                                        profile_batch=0)
    if args.chief:
        # keras-tuner's chief checks only every 20 s whether the workers are done;
        # tuning.launch knows when they have all exited and says so with SIGUSR1.
        signal.signal(signal.SIGUSR1, _workers_done)
        _waiting[0] = True
    try:
        tuner.search(verbose=2, callbacks=[board], **fit_kwargs)
        _waiting[0] = False
    except _WorkersDone:
        _waiting[0] = False
        print("[tuning] every worker has finished", flush=True)
    if args.chief:  # ignored, not the default (which kills), however late it comes
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if is_worker:
        return None
    return report(tuner, recipe, path, args)


def report(tuner, recipe, path, args):
    """The sorted trial table and plot, the best model on the test split (unless
    --skip-test), and its export."""
    rows = trials_table(tuner, path, args.epochs)
    if rows:
        plot_trials(history(path, args.epochs), tuner.oracle.objective,
                    os.path.join(path, "trials.png"),
                    f"{args.tuner} search, {args.recipe}: {len(rows)} trials")
    print(f"[tuning] {len(rows)} trials, best first: {os.path.join(path, 'trials.md')}; "
          f"in run order: trials.png; tensorboard --logdir {os.path.join(path, TENSORBOARD)}")
    with open(os.path.join(path, "trials.md")) as f:
        print(f.read())
    if not rows:
        return {"trials": 0}
    best_hp = tuner.get_best_hyperparameters(1)[0]
    kwargs = recipe.space(best_hp)
    best = {"hyperparameters": best_hp.values, "recipe_kwargs": kwargs}
    if not args.skip_test or args.export_best:
        best_model = tuner.get_best_models(1)[0]
        if not args.skip_test:
            test = best_model.evaluate(recipe.data(kwargs)[2], return_dict=True, verbose=0)
            best.update({f"test_{k}": float(v) for k, v in test.items()})
        if args.export_best:
            best["export"] = recipe.export(best_model, kwargs)
    storage.write_json(os.path.join(path, "best.json"), best)
    print(f"[tuning] best: {json.dumps(best, default=str)}", flush=True)
    return best


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        search(args)
    except (SearchError, config.ConfigError, data.DatasetError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
