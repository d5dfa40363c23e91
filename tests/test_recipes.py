"""What every recipe shares: one run sequence, one source for each default, presets."""

import dataclasses
import glob
import inspect
import os
import re

import keras
import pytest

from core import config, training
from recipes import cnn, cnn_text, ngram_text, rnn_text, transformer_text, upsampling

RECIPES = [cnn, upsampling, rnn_text, transformer_text, cnn_text, ngram_text]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: build_model's positional arguments that come from the data, not the config.
DATA_ARGUMENTS = {"input_shape", "num_classes", "vocabulary_size", "sequence_length"}


def _build(module, **hparams):
    """The recipe's model on small made-up data facts, built in a fresh session so
    that layer names do not depend on what was built before."""
    keras.backend.clear_session()
    if module in (cnn, upsampling):
        args = ((28, 28, 1), 10) if module is cnn else ((28, 28, 1),)
    elif module is ngram_text:
        args = (hparams.pop("vocabulary_size", 500), 3)
    else:
        args = (hparams.pop("vocabulary_size", 500), hparams.pop("sequence_length", 16), 3)
    return module.build_model(*args, **hparams)


@pytest.mark.parametrize("module", RECIPES, ids=lambda m: m.__name__)
def test_build_model_takes_its_defaults_from_the_config(module):
    signature = inspect.signature(module.build_model)
    fields = {f.name for f in dataclasses.fields(module.ModelConfig)}
    doubled = [name for name, p in signature.parameters.items()
               if name in fields - DATA_ARGUMENTS and p.default is not p.empty]
    assert not doubled, f"{module.__name__}.build_model repeats the config's defaults: {doubled}"
    hparams = {k: v for k, v in dataclasses.asdict(module.ModelConfig()).items()
               if k not in DATA_ARGUMENTS}
    assert _build(module).to_json() == _build(module, **hparams).to_json()
    with pytest.raises(TypeError):
        _build(module, no_such_option=1)


@pytest.mark.parametrize("module", RECIPES, ids=lambda m: m.__name__)
def test_every_config_field_has_help_and_a_flag(module):
    for cls in (module.ModelConfig, config.TrainConfig):
        for f in dataclasses.fields(cls):
            assert config.help_of(f) or f.name in ("dataset",), f"{cls.__name__}.{f.name}"
    p, *_ = module.parse([])
    flags = {option for action in p._actions for option in action.option_strings}
    for cls in (module.ModelConfig, config.TrainConfig):
        for f in dataclasses.fields(cls):
            assert config.flag(f.name) in flags


@pytest.mark.parametrize("module, preset", [
    (module, name) for module in RECIPES for name in module.RECIPE.presets],
    ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_every_preset_parses_validates_and_builds(module, preset):
    _, _, model_config, train = module.parse(["--preset", preset])
    config.validate(train)
    facts = module.RECIPE.facts(model_config, train)  # validates against the real dataset
    assert facts is not None
    hparams = {k: v for k, v in dataclasses.asdict(model_config).items()
               if k not in DATA_ARGUMENTS}
    assert _build(module, **hparams).count_params() > 0
    for name, value in module.RECIPE.presets[preset].get("model", {}).items():
        assert getattr(model_config, name) == value
    for name, value in module.RECIPE.presets[preset].get("train", {}).items():
        assert getattr(train, name) == value


def test_the_cnns_earlier_defaults_keep_training_as_they_did():
    # A default that changes later must not leak into a pinned preset.
    assert cnn.parse([])[3].label_smoothing > 0
    for preset in ("previous", "before_38"):
        assert cnn.parse(["--preset", preset])[3].label_smoothing == 0
    assert cnn.parse(["--preset", "before_38"])[3].epochs == 16


def test_a_flag_given_beats_the_preset_and_the_preset_beats_the_defaults():
    _, _, model, train = cnn.parse(["--preset", "previous", "--learning-rate", "0.01"])
    assert model.filters == (32, 64, 128) and model.convs_per_block == 1
    assert train.learning_rate == 0.01 and train.schedule == "constant" and train.epochs == 20
    _, _, model, train = cnn.parse(["--preset", "classic", "--filters", "8,16"])
    assert model.filters == (8, 16) and model.dropout == 0.25
    assert train.epochs == cnn.TRAIN_DEFAULTS["epochs"]


def test_a_comparisons_budget_is_a_default_so_an_abbreviated_flag_still_wins():
    epochs = lambda argv: cnn.parse(argv)[3].epochs  # noqa: E731
    assert epochs([]) == cnn.TRAIN_DEFAULTS["epochs"]
    assert epochs(["--compare-activations"]) == cnn.CNN.compare_defaults["epochs"]
    assert epochs(["--compare-activations", "--epoch", "3"]) == 3  # argparse's abbreviation
    assert epochs(["--compare-architectures", "--epochs=2"]) == 2
    assert epochs(["--epoch", "7"]) == 7


class _Compiled(Exception):
    """Raised in place of training, once the model is compiled."""


@pytest.mark.parametrize("module", RECIPES, ids=lambda m: m.__name__)
def test_steps_per_epoch_sizes_the_schedule_in_every_recipe(module, tmp_path, monkeypatch):
    seen = {}

    def capture(model, train_ds, *args, **kwargs):
        seen["schedule"] = model.optimizer._learning_rate
        raise _Compiled

    monkeypatch.setattr(training, "fit_and_evaluate", capture)
    _, _, model_config, train = module.parse([
        "--steps-per-epoch", "7", "--epochs", "3", "--schedule", "cosine", "--limit", "64",
        "--runs-dir", str(tmp_path), "--no-export"])
    with pytest.raises(_Compiled):
        module.run(model_config, train)
    schedule = seen["schedule"]
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.warmup_steps == 7  # one epoch of 7 steps, not one pass over 64 examples
    assert schedule.warmup_steps + schedule.decay_steps == 3 * 7


def test_one_place_compiles_and_fits_for_the_recipes():
    sources = glob.glob(os.path.join(ROOT, "recipes", "*.py")) + glob.glob(
        os.path.join(ROOT, "core", "*.py"))

    def where(pattern):
        return sorted(os.path.relpath(path, ROOT) for path in sources
                      if re.search(pattern, open(path).read()))

    assert where(r"(?<!re)\.compile\(") == ["core/recipe.py"]  # not re.compile
    assert where(r"\bfit_and_evaluate\(") == ["core/recipe.py", "core/training.py"]
    assert where(r"\bruns\.start_run\(") == ["core/recipe.py"]
