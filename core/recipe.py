"""The one run sequence every recipe goes through, and its command line.

A recipe module describes its own pieces by subclassing `Recipe` (its
config, what it reads from the data, its model, its export); `Recipe.run`
puts them through the same steps for every recipe:

    facts    read the dataset's facts and check the config against them (nothing written)
    start    seed, precision, strategy, a new runs/<recipe>/<stamp>/ with config.json
    data     train / validation / test pipelines (core.data)
    build    the functional model, compiled with the shared optimizer and schedule
    fit      shared callbacks and checkpoints; the test split read once (core.training)
    export   saved_models/<recipe>/<version>/, checked in a fresh interpreter
    report   metrics.json and one line

`Recipe.compare` trains one model per value of a field with the same seed
and budget and writes a table, a JSON record and a plot; `Recipe.main` is
the command line (`--help` lists a flag per config field).
"""

import dataclasses
import os
import sys
from typing import Any, NamedTuple

from core import config, data, distribute, export, runs, storage, training
from core.config import ConfigError


class Data(NamedTuple):
    """A run's input pipelines: batches of (inputs, targets)."""

    train: Any
    validation: Any
    test: Any
    examples: int  # training examples in one pass
    resolved: dict = {}  # model arguments the data decided (a text's sequence length)
    extra: Any = None  # what the export needs besides the model (a text vectorizer)


class Recipe:
    """A recipe's own pieces; subclass it and fill in the methods that raise."""

    name = ""  # runs/<name>/ and saved_models/<name>/
    doc = ""  # the module docstring, shown by --help
    Config = None  # the ModelConfig dataclass: every model default and its help
    train_defaults = {}  # the recipe's own TrainConfig defaults
    #: {name: {"doc": ..., "model": {field: value}, "train": {field: value}}},
    #: offered as --preset; "default" is the config as it stands.
    presets = {}
    #: {flag: (field, values)}: e.g. {"--compare-activations": ("activation", (...))}
    comparisons = {}
    compare_defaults = {}  # TrainConfig defaults of a comparison (a shorter budget)
    compare_curve = "val_accuracy"  # what the comparison's plot shows per epoch
    loss = "sparse_categorical_crossentropy"
    metrics = ("accuracy",)
    evaluate = None  # evaluate(model, test_ds) -> {metric: value}; default: compiled metrics

    # --- the pieces --------------------------------------------------------------

    def facts(self, model_config, train):
        """What the model needs to know of the dataset (shape, class names), with
        `model_config` checked against it; raises ConfigError."""
        raise NotImplementedError

    def data(self, facts, model_config, train):
        """A `Data` of the run's pipelines."""
        raise NotImplementedError

    def build(self, facts, data, model_config):
        """The functional model, uncompiled."""
        raise NotImplementedError

    def own_record(self, train):
        """What config.json records of a user's own data (None for a TFDS name)."""
        return data.own_record(train)

    def served(self, model, model_config):
        """The model the test split reads and the export serves: `model` itself by
        default, or one built around it that shares its weights (test-time
        augmentation)."""
        return model

    def measure(self, model, facts, model_config):
        """Extra metrics after the test evaluation ({} by default)."""
        return {}

    def export(self, model, facts, data, train):
        """Export the trained model; returns the version's path."""
        raise NotImplementedError

    def report(self, metrics):
        """The run's one-line result."""
        return (f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} "
                f"epochs, {metrics['train_seconds']:.0f} s")

    def compare_columns(self):
        """[(header, result -> cell)] of a comparison's table, after the compared field."""
        return [("test accuracy", lambda r: f"{r['test_accuracy']:.4f}"),
                ("parameters", lambda r: f"{r['parameters']:,}"),
                ("seconds per epoch", lambda r: f"{r['training_seconds'] / r['epochs']:.1f}"),
                ("epochs", lambda r: str(r["epochs"]))]

    def compare_figures(self, results, configs, train):
        """{file stem: figure} a comparison adds to its curves ({} by default), from
        its `results` and `configs`, each {value: ...}."""
        return {}

    # --- the sequence ------------------------------------------------------------

    def run(self, model_config, train, resume=None, export_enabled=None, extra_callbacks=()):
        """Train, evaluate and export one configuration; returns its metrics, with
        `run_dir`, `history` and the trained `model`.

        `export_enabled` overrides `--export`; `extra_callbacks` join the
        shared ones (a benchmark's clock)."""
        existing = runs.existing_run(resume, train.run_dir)
        done = runs.finished(existing) if existing else None
        if done is not None:
            print(f"[{self.name}] {existing} is finished ({self.report(done)}): nothing to "
                  "train. To train more, start a new run.", flush=True)
            return {**done, "run_dir": existing, "finished": True}
        facts = self.facts(model_config, train)
        loss = training.loss(self.loss, train.label_smoothing)  # refused before a run starts
        run_dir = runs.start_run(self.name, model_config, train, resume,
                                 dataset=self.own_record(train))
        splits = self.data(facts, model_config, train)
        model = self.build(facts, splits, model_config)
        model.compile(
            optimizer=training.optimizer(train, training.steps_per_epoch(train, splits.train)),
            loss=loss, metrics=list(self.metrics))
        served = self.served(model, model_config)
        if served is not model:
            served.compile(loss=loss, metrics=list(self.metrics))
        details = [f"{k} {v:,}" for k, v in splits.resolved.items()]
        print(f"[{self.name}] {', '.join([f'{model.count_params():,} parameters', *details])}, "
              f"{splits.examples:,} training examples", flush=True)
        metrics, history = training.fit_and_evaluate(
            model, splits.train, splits.validation, splits.test, train, run_dir,
            splits.examples, extra_callbacks, evaluate=self.evaluate, test_model=served)
        metrics.update(splits.resolved)
        metrics.update(self.measure(model, facts, model_config))
        if train.export if export_enabled is None else export_enabled:
            with export.from_run(run_dir, metrics["weights_digest"]):
                metrics["export"] = self.export(served, facts, splits, train)
        storage.write_json(os.path.join(run_dir, "metrics.json"), metrics)  # the run's last file
        exported = f"; exported {metrics['export']}" if "export" in metrics else ""
        print(f"[{self.name}] {self.report(metrics)}; run {run_dir}{exported}", flush=True)
        return {**metrics, "run_dir": run_dir, "history": history, "model": model}

    def compare(self, model_config, train, field, values):
        """One model per value of `field`, same seed and budget, no export: a table
        (`<field>s.md`), the results (`.json`) and the validation curves (`.png`)
        in a new `runs/<recipe>-<field>s/<stamp>/`."""
        name = f"{field}s"
        configs = [dataclasses.replace(model_config, **{field: value}) for value in values]
        for each in configs:  # every configuration is checked before the first trains
            self.facts(each, train)
        out_dir = runs.new_run_dir(train.runs_dir, f"{self.name}-{name}")
        results = {}
        for value, each in zip(values, configs):
            print(f"\n[{self.name}] === {field} {value} ===", flush=True)
            clock = training.EpochClock()
            with training.released_graphs():
                results[value] = self.run(each, train, export_enabled=False,
                                          extra_callbacks=[clock])
            results[value]["training_seconds"] = round(clock.seconds[-1], 1)
        columns = self.compare_columns()
        table = [
            f"{name.capitalize()} of {self.name} on {train.dataset}: same seed ({train.seed}), "
            f"at most {train.epochs} epochs (early stopping, patience {train.patience}), batch "
            f"{train.batch_size}, learning rate {train.learning_rate} ({train.schedule}), "
            f"precision {config.resolve_precision(train.precision)}. Seconds: training only, "
            "validation excluded.",
            "",
            f"| {field} | " + " | ".join(header for header, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
            *(f"| {value} | " + " | ".join(cell(r) for _, cell in columns) + " |"
              for value, r in results.items()),
        ]
        with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
            f.write("\n".join(table) + "\n")
        storage.write_json(os.path.join(out_dir, f"{name}.json"), {
            str(value): {k: v for k, v in r.items() if k not in ("model", "history")}
            for value, r in results.items()})
        figures = {name: curves({v: r["history"][self.compare_curve] for v, r in results.items()},
                                self.compare_curve, f"{self.name} {name} on {train.dataset}"),
                   **self.compare_figures(results, dict(zip(values, configs)), train)}
        for stem, figure in figures.items():
            figure.savefig(os.path.join(out_dir, f"{stem}.png"), dpi=110)
        print("\n".join(table))
        print(f"[{self.name}] comparison written to {out_dir}")
        return out_dir

    # --- the command line --------------------------------------------------------

    def parse(self, argv=None):
        """(parser, args, model config, train config) of a command line; runs nothing."""
        argv = sys.argv[1:] if argv is None else list(argv)
        p = config.parser(f"python -m recipes.{self.name}", self.doc, self.Config,
                          self.train_defaults, self.presets)
        if self.comparisons:
            modes = p.add_mutually_exclusive_group()
            budget = (f" (--epochs defaults to {self.compare_defaults['epochs']} here)"
                      if "epochs" in self.compare_defaults else "")
            for flag, (field, values) in self.comparisons.items():
                modes.add_argument(flag, dest=_dest(flag), action="store_true",
                                   help=f"train each {field} of {values} with the same seed "
                                   f"and budget{budget}; exports nothing")
        def recorded(a):  # a resumed run's flags default to what it recorded
            source = runs.existing_run(a.resume, a.run_dir)
            if not source:
                return {}
            if getattr(a, "preset", None) or self._comparison(a):
                p.error("--preset and the comparisons start new runs; a resumed run keeps "
                        "its own configuration")
            try:
                return runs.recorded_flags(source, self.Config, config.TrainConfig)
            except ConfigError as err:
                p.error(str(err))

        args = config.parse(p, argv, self.presets, lambda a: (
            self.compare_defaults if self._comparison(a) else {}), recorded)
        return (p, args, *config.split_args(args, self.Config))

    def _comparison(self, args):
        return next(((field, values) for flag, (field, values) in self.comparisons.items()
                     if getattr(args, _dest(flag))), None)

    def main(self, argv=None):
        p, args, model_config, train = self.parse(argv)
        comparison = self._comparison(args)
        if comparison:
            run_or_exit(p, self.compare, model_config, train, *comparison)
        else:
            run_or_exit(p, self.run, model_config, train, resume=args.resume)


def _dest(flag):
    return flag.lstrip("-").replace("-", "_")


def curves(series, metric, title):
    """A figure of `metric` per epoch, one line per {label: values}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set(xlabel="epoch", ylabel=metric.replace("_", " "), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def run_or_exit(parser, action, *args, **kwargs):
    """Run `action`; bad configuration or data ends with exit code 2, a file that
    cannot be written or a run with no usable checkpoint with exit code 1.

    The strategy (`--strategy`) is set up first, before the recipe reads any
    data: splitting the CPU and joining a cluster must precede every
    TensorFlow op. A non-chief worker's run ends after training
    (`WorkerDone`) and waits for the chief to finish evaluating and exporting.
    """
    train = next((a for a in (*args, *kwargs.values()) if isinstance(a, config.TrainConfig)),
                 None)
    try:
        if train is not None:
            config.validate(train)
            distribute.get(train.strategy, train.cpu_replicas)
        try:
            result = action(*args, **kwargs)
        except training.WorkerDone:
            result = None
        if train is not None and train.strategy == "multi_worker":
            distribute.barrier(distribute.get(train.strategy))  # the job ends together
        return result
    except (ConfigError, data.DatasetError, distribute.StrategyError) as err:
        parser.exit(2, f"error: {err}\n")
    except (storage.WriteError, runs.CheckpointError) as err:  # a disk, not a flag
        parser.exit(1, f"error: {err}\n")
