"""Upsampling recipe: the checkerboard score, matched decoders, bad input, a tiny comparison."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from core import data
from recipes import upsampling


def test_checkerboard_score_on_synthetic_images():
    i, j = np.mgrid[0:28, 0:28]
    checkerboard = ((i + j) % 2).astype("float32")
    assert upsampling.checkerboard_score(checkerboard) == pytest.approx(1.0)
    assert upsampling.checkerboard_score(checkerboard + 5.0) == pytest.approx(1.0)  # offset-free
    stripes = (j % 2).astype("float32")
    assert upsampling.checkerboard_score(stripes) == pytest.approx(1.0)
    ramp = (i + j).astype("float32") / 54.0
    assert upsampling.checkerboard_score(ramp) < 0.01
    smooth = np.sin(i / 5.0) * np.cos(j / 7.0)
    assert upsampling.checkerboard_score(smooth) < 0.01
    assert upsampling.checkerboard_score(np.ones((28, 28))) == 0.0  # no AC energy at all
    mixed = upsampling.checkerboard_score(smooth + 0.1 * checkerboard)
    assert 10 * upsampling.checkerboard_score(smooth) < mixed < 1.0
    batch = np.stack([checkerboard, ramp])[..., None]
    np.testing.assert_allclose(upsampling.checkerboard_score(batch),
                               [1.0, upsampling.checkerboard_score(ramp)])


def test_psnr():
    images = np.zeros((2, 4, 4, 1))
    np.testing.assert_allclose(upsampling.psnr(images, images + 0.1), [20.0, 20.0])


def test_decoders_match_in_shape_and_parameters():
    models = {kind: upsampling.build_model((28, 28, 1), decoder=kind) for kind in upsampling.KINDS}
    assert len({m.count_params() for m in models.values()}) == 1
    images = np.zeros((2, 28, 28, 1), np.uint8)
    for model in models.values():
        out = model(images)
        assert out.shape == (2, 28, 28, 1)
        assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 1


def test_untrained_transposed_decoder_shows_the_artifact():
    transposed, _ = upsampling.untrained_artifact((7, 7, 64), 1, "transposed", (32, 64), (0, 1))
    nearest, _ = upsampling.untrained_artifact((7, 7, 64), 1, "resize_nearest", (32, 64), (0, 1))
    assert transposed > 5 * nearest


@pytest.mark.parametrize("flags, message", [
    (["--decoder", "pixel_shuffle"], "decoder must be one of"),
    (["--filters", "8,8,8"], "divisible by 8"),
    (["--dataset", "rt_snippets"], "needs uint8 images"),
    (["--label-smoothing", "0.1"], "--label-smoothing applies to classifiers"),
])
def test_bad_input_refused_before_training(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        upsampling.main([*flags, "--runs-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_tiny_run_exports_and_tiny_comparison_writes_table_and_png(tmp_path):
    common = ["--epochs", "1", "--limit", "128", "--filters", "4,8",
              "--runs-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm")]
    upsampling.main(["--decoder", "transposed", *common])
    (run_dir,) = (tmp_path / "runs" / "upsampling").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_mse", "test_psnr", "checkerboard_output", "checkerboard_untrained"):
        assert np.isfinite(metrics[key])
    # (checked in a fresh interpreter as it was exported; here, that it serves)
    serve = tf.saved_model.load(str(tmp_path / "sm" / "upsampling" / "1")).signatures[
        "serving_default"]
    assert serve(image=tf.zeros((3, 28, 28, 1), tf.uint8))["reconstruction"].shape == (3, 28, 28, 1)

    upsampling.main(["--compare", *common])
    (compare_dir,) = (tmp_path / "runs" / "upsampling-decoders").iterdir()
    table = (compare_dir / "decoders.md").read_text()
    for kind in upsampling.KINDS:
        assert f"| {kind} |" in table
    assert (compare_dir / "reconstructions.png").stat().st_size > 10_000
    assert (compare_dir / "decoders.png").stat().st_size > 10_000  # validation loss curves
    record = json.loads((compare_dir / "decoders.json").read_text())
    assert set(record) == set(upsampling.KINDS)
    assert all(np.isfinite(r["test_psnr"]) and r["epochs"] == 1 for r in record.values())
    assert os.listdir(tmp_path / "sm" / "upsampling") == ["1"]  # --compare exports nothing


def test_a_run_reads_the_test_split_once(tmp_path, monkeypatch):
    passes = []
    real_splits = data.splits

    def counted_splits(*args, **kwargs):
        train_ds, val_ds, test_ds, n = real_splits(*args, **kwargs)

        class Counted:  # an iterable test split that counts how often it is read
            def __iter__(self):
                passes.append(1)
                return iter(test_ds)

        return train_ds, val_ds, Counted(), n

    monkeypatch.setattr(data, "splits", counted_splits)
    upsampling.main(["--epochs", "1", "--limit", "64", "--filters", "4,8", "--no-export",
                     "--runs-dir", str(tmp_path)])
    assert len(passes) == 1
