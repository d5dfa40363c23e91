"""Configs and their flags: one source for each default and its help.

A recipe's `ModelConfig` and the shared `TrainConfig` are dataclasses whose
fields carry their help text (`field(default, "help")`). `parser` turns both
into command-line flags; a recipe's own training defaults, a named preset
(`--preset`) or a mode's shorter budget (a comparison's epochs) become the
parser's defaults before the command line is read, so a flag given by the
user, however abbreviated, always wins.

    @dataclasses.dataclass
    class ModelConfig:
        units: int = field(64, "width of the hidden layer")
"""

import argparse
import dataclasses

from core import distribute, export

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "sgd")


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any training starts."""


def field(default, help=""):
    """A dataclass field with its default and the help its flag shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(f):
    return f.metadata.get("help", "")


@dataclasses.dataclass
class TrainConfig:
    """Knobs shared by every recipe; each becomes a `--flag`."""

    dataset: str = field(
        "fashion_mnist", "a TFDS name, or your own data: a folder of class folders (images "
        "or .txt files; optionally inside train/ and test/ folders) or a .csv, .tsv or .jsonl "
        "file (docs/data.md)")
    epochs: int = field(10, "maximum epochs (early stopping may end sooner)")
    steps_per_epoch: int = field(
        0, "optimizer steps in an epoch, the unit of --epochs, --patience and the schedule's "
        "warm-up and decay; validation runs after each (0 = one pass over the training split)")
    batch_size: int = field(128, "examples per optimizer step (per device under --strategy)")
    optimizer: str = field(
        "adam", "adam, or sgd (with Nesterov momentum 0.9): plain gradient steps move a "
        "rarely seen feature's weight no faster than its gradient, where Adam moves it as "
        "fast as any (the n-gram baseline's; docs/recipes.md)")
    learning_rate: float = field(1e-3, "the optimizer's learning rate (the peak, with a "
                                 "schedule)")
    schedule: str = field(
        "constant", "learning rate over training: constant, or cosine (one epoch of linear "
        "warm-up from 0 to --learning-rate, then a cosine decay to 0 at --epochs; "
        "Loshchilov & Hutter 2017)")
    clipnorm: float = field(
        0.0, "rescale each weight's gradient to at most this L2 norm (0 = no clipping)")
    label_smoothing: float = field(
        0.0, "train towards (1 - s) on the true class and s / classes on every class, "
        "instead of 1 and 0 (Szegedy et al. 2016; classifiers only; 0 = off)")
    ema: float = field(
        0.0, "keep an exponential moving average of the weights with this momentum (e.g. "
        "0.999), which validation, the best epoch, the test and the export use (Polyak "
        "averaging; 0 = off)")
    patience: int = field(3, "epochs without validation improvement before stopping")
    monitor: str = field(
        "val_loss", "validation metric that early stopping watches (and restores the best of)")
    lr_patience: int = field(
        0, "epochs without improvement before the learning rate is cut to a fifth (0 = never)")
    validation_percent: int = field(
        10, "share of TFDS's train split held out for validation (of its films for "
        "rt_snippets, so no film is in two splits)")
    image_size: int = field(
        0, "own image folders: images are resized to this side (0 = the median side of the "
        "folder's images, at most 256)")
    channels: int = field(
        0, "own image folders: 1 (grayscale) or 3 (colour); 0 = 3 if any image has colour")
    text_column: str = field("", "own tables: the column holding the text (found by name "
                             "if unambiguous: text, sentence, review, ...)")
    label_column: str = field("", "own tables: the column holding the label (found by name "
                              "if unambiguous: label, class, category, ...)")
    seed: int = field(42, "seeds Python, NumPy, TensorFlow and the shuffle order")
    precision: str = field(
        "auto", f"one of {PRECISIONS}; auto = mixed_bfloat16 on a CPU with bf16 instructions "
        "and no GPU, else float32")
    deterministic: bool = field(False, "enable TensorFlow op determinism (slower)")
    limit: int = field(0, "use at most this many examples per split (0 = all); for smoke tests")
    train_percent: int = field(
        100, "train on this share of the training split, a random subset drawn with --seed "
        "(learning curves); validation and test stay whole")
    runs_dir: str = field("runs", "where runs/<recipe>/<timestamp>/ are written")
    export_dir: str = field("saved_models", "TF Serving model base path")
    export: bool = field(True, "export at the end (a SavedModel, plus --export-format)")
    export_format: str = field(
        "saved_model", "comma-separated, among saved_model,onnx,litert; the SavedModel is "
        "always written, and the others are checked against it")
    strategy: str = field(
        "default", f"one of {distribute.STRATEGIES}: this process's device, several devices "
        "(MirroredStrategy), or the workers TF_CONFIG names (MultiWorkerMirroredStrategy; see "
        "recipes.launch)")
    cpu_replicas: int = field(
        0, "with --strategy mirrored and no GPU: split the CPU into this many devices (0 = the "
        "devices there are)")
    keep_checkpoints: int = field(
        2, "epoch checkpoints kept in the run directory, the newest ones: a resume whose "
        "newest one is damaged goes on from the one before")
    run_dir: str = field(
        "", "write the run here instead of a new runs/<recipe>/<timestamp>/; if it holds a "
        "checkpoint of this run, go on from it (the workers of a multi-worker job share one, "
        "so a restarted job resumes)")


def cpu_has_bf16():
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision):
    """`--precision`, with auto made concrete for this machine."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU") and cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def validate(train):
    """Refuse a TrainConfig that cannot work, before anything runs."""
    if train.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {train.epochs}")
    if train.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {train.batch_size}")
    if train.steps_per_epoch < 0:
        raise ConfigError(
            f"steps_per_epoch must be >= 0 (0 = one pass), got {train.steps_per_epoch}")
    if not train.learning_rate > 0:
        raise ConfigError(f"learning_rate must be > 0, got {train.learning_rate}")
    if train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {train.optimizer!r}")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {SCHEDULES}, got {train.schedule!r}")
    if train.schedule != "constant" and train.lr_patience:
        raise ConfigError(f"--schedule {train.schedule} sets the learning rate at every step; "
                          "it cannot be combined with --lr-patience (use --lr-patience 0)")
    if train.clipnorm < 0:
        raise ConfigError(f"clipnorm must be >= 0 (0 = off), got {train.clipnorm}")
    if not 0 <= train.label_smoothing < 1:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {train.label_smoothing}")
    if not 0 <= train.ema < 1:
        raise ConfigError(f"ema must be in [0, 1) (0 = off), got {train.ema}")
    if train.ema and train.strategy == "multi_worker":
        raise ConfigError("--ema runs with --strategy default or mirrored, not multi_worker")
    if not 0 < train.validation_percent < 100:
        raise ConfigError(
            f"validation_percent must be between 1 and 99, got {train.validation_percent}")
    if train.patience < 0 or train.lr_patience < 0:
        raise ConfigError("patience and lr_patience must be >= 0")
    if train.limit < 0:
        raise ConfigError(f"limit must be >= 0, got {train.limit}")
    if train.image_size < 0 or train.channels not in (0, 1, 3):
        raise ConfigError(f"image_size must be >= 0 and channels 0, 1 or 3; got "
                          f"{train.image_size} and {train.channels}")
    if train.keep_checkpoints < 1:
        raise ConfigError(f"keep_checkpoints must be >= 1, got {train.keep_checkpoints}")
    if not 0 < train.train_percent <= 100:
        raise ConfigError(f"train_percent must be between 1 and 100, got {train.train_percent}")
    resolve_precision(train.precision)
    try:
        export.parse_formats(train.export_format)
        distribute.check(train.strategy, train.cpu_replicas)
    except (export.ExportError, distribute.StrategyError) as err:
        raise ConfigError(str(err)) from None


def one_of(config, name, choices):
    """Refuse `config.<name>` unless it is one of `choices`."""
    if getattr(config, name) not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {getattr(config, name)!r}")


def at_least(config, minimum, *names):
    """Refuse any of `config.<names>` below `minimum`."""
    for name in names:
        if getattr(config, name) < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {getattr(config, name)}")


def fraction(config, *names):
    """Refuse any of `config.<names>` outside [0, 1) (dropout rates)."""
    for name in names:
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(config, name)}")


# --- flags ---------------------------------------------------------------------


def flag(name):
    return "--" + name.replace("_", "-")


def add_flags(group, config_class, names=None):
    """A flag for each field of `config_class` (those in `names`, if given), with its
    help and default."""
    for f in dataclasses.fields(config_class):
        if names is not None and f.name not in names:
            continue
        default, text = f.default, help_of(f)
        if isinstance(default, bool):
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction,
                               default=default, help=text)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else int
            group.add_argument(
                flag(f.name), default=default, metavar="A,B,...",
                type=lambda s, kind=kind: tuple(kind(v) for v in s.split(",") if v),
                help=f"{text} (default: %(default)s)".strip())
        else:
            group.add_argument(flag(f.name), type=type(default), default=default,
                               help=f"{text} (default: %(default)s)".strip())


def _tuple_defaults_readable(parser):
    """Show a tuple default as A,B,C, the way it is typed."""
    for action in parser._actions:
        if isinstance(action.default, tuple):
            action.help = action.help.replace("%(default)s", ",".join(map(str, action.default)))


def parser(prog, description, model_class, train_defaults=None, presets=None):
    """An argparse parser with a flag for every field of `model_class` and TrainConfig.

    `train_defaults` ({field: value}) are the recipe's own training defaults;
    `presets` ({name: {"model": {...}, "train": {...}}}) are offered as
    `--preset NAME`, which sets both before the other flags are read.
    """
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p.add_argument_group("model"), model_class)
    add_flags(p.add_argument_group("training"), TrainConfig)
    p.set_defaults(**(train_defaults or {}))
    if presets:
        p.add_argument("--preset", choices=sorted(presets), default=None,
                       help="start from a named configuration; flags given override it: "
                       + "; ".join(f"{name}: {preset.get('doc', '')}".strip()
                                   for name, preset in presets.items()))
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="go on with an interrupted run in its own directory, with the "
                   "flags it recorded; only --epochs, --patience and the export flags may "
                   "be given anew (a finished run is left as it is)")
    _tuple_defaults_readable(p)
    return p


def parse(p, argv, presets=None, mode_defaults=None, recorded=None):
    """Parse `argv` with `p`; a preset's values, `mode_defaults(args)` (e.g. a
    comparison's shorter budget) and `recorded(args)` (a resumed run's own
    config) become defaults first, in that order, so any flag given wins."""
    args = p.parse_args(argv)
    defaults = {}
    if presets and args.preset:
        preset = presets[args.preset]
        defaults.update({**preset.get("model", {}), **preset.get("train", {})})
    if mode_defaults:
        defaults.update(mode_defaults(args))
    if recorded:
        defaults.update(recorded(args))
    if defaults:
        p.set_defaults(**defaults)
        args = p.parse_args(argv)
    return args


def split_args(args, model_class):
    """(model config, train config) with the parsed flags applied."""
    values = vars(args)
    pick = lambda cls: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})  # noqa: E731
    return pick(model_class), pick(TrainConfig)
