"""Training under tf.distribute: several devices, several workers, a killed worker."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from core import config, loop, runs
from recipes import cnn, launch
from tests import distributed_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 2,048 images, 32 per worker and step: 32 steps an epoch, a few seconds for
# two workers here, so a kill sent as epoch 2 begins lands inside it.
JOB = ["cnn", "--limit", "2048", "--batch-size", "32", "--epochs", "3", "--precision",
       "float32", "--patience", "5", "--filters", "8,16", "--dense-units", "32"]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _launch(tmp_path, *args):
    return [sys.executable, "-m", "recipes.launch", *args, *JOB,
            "--runs-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "models")]


def _digests(output):
    """{worker index: trained weights digest} from the workers' last lines."""
    return {int(i): d for i, d in re.findall(r"\[worker (\d)\] trained weights (\w+)", output)}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """An uninterrupted two-worker job: (tmp path, launcher output)."""
    tmp_path = tmp_path_factory.mktemp("two_workers")
    result = subprocess.run(_launch(tmp_path, "--workers", "2"), cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    return tmp_path, result.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("two_workers")
def test_two_workers_train_in_step_and_only_the_chief_writes(two_workers):
    tmp_path, output = two_workers
    digests = _digests(output)
    assert set(digests) == {0, 1} and digests[0] == digests[1]
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "cnn" / "*"))
    with open(os.path.join(run_dir, "config.json")) as f:
        train = json.load(f)["train"]
    assert (train["replicas"], train["global_batch_size"]) == (2, 64)
    with open(os.path.join(run_dir, "history.json")) as f:
        assert len(json.load(f)["loss"]) == 3
    assert glob.glob(os.path.join(run_dir, "logs", "validation", "events.*"))  # TensorBoard
    # The other worker wrote to a temporary directory, gone now.
    (worker_dir,) = re.findall(r"\[w1\] \[cnn\] run directory (\S+)", output)
    assert not os.path.exists(worker_dir)
    (version,) = glob.glob(str(tmp_path / "models" / "cnn" / "*"))
    assert "(verified in a fresh interpreter)" in output
    serve = tf.saved_model.load(version).signatures["serving_default"]
    assert serve(image=tf.zeros((2, 28, 28, 1), tf.uint8))["probabilities"].shape == (2, 10)


def test_loop_gives_what_fit_gives_callbacks_included():
    """Same data, same start: the loop's epochs, logs, stop and weights are fit's."""
    import keras

    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=96) > 0).astype("int64")
    train_ds = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
    val_ds = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(16)

    def trained(fit):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
            keras.layers.Dense(8, activation="relu")(inputs)))
        model.compile(optimizer=keras.optimizers.Adam(0.3),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = keras.callbacks.History()
        callbacks = [keras.callbacks.ReduceLROnPlateau(patience=0, factor=0.5),
                     keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True),
                     history]
        fit(model, train_ds.repeat(), steps_per_epoch=4, validation_data=val_ds, epochs=12,
            callbacks=callbacks, verbose=0)
        return history.history, model.get_weights()

    fit_history, fit_weights = trained(keras.Model.fit)
    loop_history, loop_weights = trained(loop.fit)
    assert len(fit_history["loss"]) < 12  # early stopping did stop it
    assert sorted(loop_history) == sorted(fit_history)
    for key in fit_history:
        np.testing.assert_allclose(loop_history[key], fit_history[key], rtol=1e-4, atol=1e-5)
    for got, want in zip(loop_weights, fit_weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_worker_slices_are_disjoint_and_cover_every_global_batch():
    ids = tf.data.Dataset.range(45).batch(8)  # the last global batch is partial
    slices = [[b.numpy().tolist() for (b,) in loop.worker_slice(ids.map(lambda b: (b,)), 2, i)]
              for i in (0, 1)]
    assert len(slices[0]) == len(slices[1]) == 6  # the same number of steps on each
    seen = [sum(s, []) for s in slices]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(45))


@pytest.mark.slow
def test_loop_on_two_workers_takes_the_steps_of_one_device_on_the_global_batch():
    """Gradients averaged over the global batch once: not per worker, not twice."""
    ports = launch.free_ports(2)
    workers = [subprocess.Popen(
        [sys.executable, "-m", "tests.distributed_worker"], cwd=ROOT,
        env={**_env(), "TF_CONFIG": config}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for config in launch.tf_configs(ports)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs[0][-3000:]
    trained = [json.loads(re.search(r"^WEIGHTS (.*)$", out, re.M).group(1)) for out in outputs]

    x, y = distributed_worker.data()
    reference = distributed_worker.model()
    reference.fit(x, y, batch_size=distributed_worker.GLOBAL_BATCH, epochs=1, shuffle=False,
                  verbose=0)
    for weights in trained:
        for got, want in zip(weights, reference.get_weights()):
            np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.xdist_group("two_workers")
def test_killed_worker_restarted_goes_on_from_the_last_epoch(tmp_path, two_workers):
    launch_argv = _launch(tmp_path, "--workers", "2", "--restarts", "1") + ["--no-export"]
    process = subprocess.Popen(launch_argv, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    pids, lines = {}, []
    for line in process.stdout:
        lines.append(line)
        started = re.match(r"\[launch\] worker (\d) pid (\d+)", line)
        if started:
            pids[int(started.group(1))] = int(started.group(2))
        if line.startswith("[w0] Epoch 1/3") and "killed" not in pids:
            os.kill(pids[1], signal.SIGKILL)
            pids["killed"] = True
    output = "".join(lines)
    assert process.wait(timeout=60) == 0, output[-4000:]
    assert "[launch] worker 1 failed (exit code -9); restarting" in output
    resumed = re.findall(r"\[w(\d)\] \[resume\] from \S+epoch-(\d+): epoch", output)
    assert sorted(resumed) == [("0", "1"), ("1", "1")]  # both, from epoch 1, not from scratch
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "cnn" / "*"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        assert json.load(f)["epochs"] == 3
    # The restarted job ends where the uninterrupted one did.
    assert _digests(output) == _digests(two_workers[1])


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_and_exports(tmp_path):
    # 257 = 4 global batches of 64 and one example: split over two replicas, a
    # last batch of one leaves a replica an empty batch, which oneDNN's
    # convolution answers with the wrong shape. Whole batches only avoid it.
    result = subprocess.run(
        [sys.executable, "-m", "recipes.cnn", "--strategy", "mirrored", "--cpu-replicas", "2",
         "--limit", "257", "--batch-size", "32", "--epochs", "1", "--runs-dir",
         str(tmp_path / "runs"), "--export-dir", str(tmp_path / "models")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "cnn" / "*"))
    with open(os.path.join(run_dir, "config.json")) as f:
        train = json.load(f)["train"]
    assert (train["replicas"], train["global_batch_size"]) == (2, 64)
    assert glob.glob(str(tmp_path / "models" / "cnn" / "*" / "saved_model.pb"))


@pytest.mark.parametrize("tf_config, message", [
    (None, "--strategy multi_worker needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is malformed"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "TF_CONFIG is malformed"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3 is outside"),
])
def test_multi_worker_without_a_usable_tf_config_is_a_one_line_error(
        monkeypatch, capsys, tmp_path, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit) as exit_info:
        cnn.main(["--strategy", "multi_worker", "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0", "cnn"], "--workers must be >= 1"),
    (["--workers", "2", "cnn", "--strategy", "default"], "sets --strategy"),
    (["--workers", "2", "nosuch"], "invalid choice"),
])
def test_launcher_refuses_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_launcher_starts_without_tensorflow():
    """Its workers import TensorFlow; the launcher itself starts in a blink."""
    code = ("import sys, recipes.launch, core.storage; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace():
    """As a MultiWorkerMirroredStrategy worker does: TensorFlow takes SIGTERM as a
    preemption notice and goes on."""
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print(1, flush=True); time.sleep(60)")
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker.stdout.readline()  # its handler is set
    start = time.monotonic()
    launch.stop([(worker, None)])
    assert worker.returncode == -signal.SIGKILL
    assert time.monotonic() - start < launch.STOP_GRACE_SECONDS + 2


@pytest.mark.parametrize("flags, message", [
    (["--strategy", "ring"], "strategy must be one of"),
    (["--cpu-replicas", "2"], "for --strategy mirrored only"),
    (["--cpu-replicas", "-1", "--strategy", "mirrored"], "cpu_replicas must be >= 0"),
])
def test_bad_strategy_flags_are_refused(capsys, tmp_path, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        cnn.main([*flags, "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_run_dir_is_created_continued_or_refused(tmp_path):
    fresh = tmp_path / "fresh"
    assert runs.named_run_dir(str(fresh)) == str(fresh) and fresh.is_dir()
    (fresh / "config.json").write_text("{}")
    assert runs.named_run_dir(str(fresh)) == str(fresh)  # a run: continued
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(config.ConfigError, match="not empty and not a run directory"):
        runs.named_run_dir(str(other))
