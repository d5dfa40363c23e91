"""Export for TF Serving, the one way every recipe does it.

    path = export.export_savedmodel(
        model, "cnn",
        inputs={"image": tf.TensorSpec([None, 28, 28, 1], tf.uint8)},
        serve=lambda image: {"probabilities": model(image), ...},
    )
    export.verify_in_fresh_process(path, {"image": images}, expected_outputs)

- Layout `saved_models/<model>/<version>/`, TF Serving's: versions are
  integers, the next one is one more than the largest present, and an existing
  version is never touched. The SavedModel is written to a hidden temporary
  folder beside it (TF Serving ignores non-numeric names) and renamed into
  place in one atomic step, so a server never sees a half-written or empty
  version, and two exporters never take the same number (the second one's
  rename fails and it takes the next).
- The signature `serving_default` has the input and output names the recipe
  chooses (plain `model.export` would call them `keras_tensor` / `output_0`).
- `verify_in_fresh_process` reloads the export with `tf.saved_model.load` in
  a new interpreter that cannot import this project, and compares its outputs
  with the traced serving function's (exactly) and with the trained model's
  own predictions (within `PREDICTION_ATOL`).
"""

import errno
import os
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"


def next_version(model_dir):
    """One more than the largest integer version in `model_dir` (1 if none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return max(versions, default=0) + 1


#: How far the reloaded export may stray from the trained model's own eager
#: predictions. In float32 the two agree to rounding; under mixed_bfloat16 the
#: graph optimiser fuses and rounds differently from eager execution (measured
#: here: up to 1.4e-2 in a probability).
PREDICTION_ATOL = {"float32": 1e-5, "mixed_float16": 1e-2, "mixed_bfloat16": 3e-2}


def export_savedmodel(model, name, inputs, serve, root="saved_models", sample=None,
                      predictions=None):
    """Write a new version of `name` under `root`, and return its path.

    Args:
        model: the Keras model (tracked so its variables are saved).
        name: the model's folder under `root`.
        inputs: `{input_name: tf.TensorSpec}`, in the order `serve` takes them.
        serve: a function of those inputs returning `{output_name: tensor}`.
        root: the model base path that TF Serving watches.
        sample: optional `{input_name: numpy array}`; when given, the new
            version is reloaded in a fresh interpreter and must answer these
            inputs as `serve` does here (see `verify_in_fresh_process`).
        predictions: optional `{output_name: numpy array}`, the trained model's
            own answers to `sample`; the reloaded export must match them within
            `PREDICTION_ATOL` for the current precision policy.
    """
    model_dir = os.path.join(root, name)
    os.makedirs(model_dir, exist_ok=True)
    specs = [tf.TensorSpec(spec.shape, spec.dtype, name=key) for key, spec in inputs.items()]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve, input_signature=specs)
    with tempfile.TemporaryDirectory(prefix=".incomplete-", dir=model_dir) as tmp:
        archive.write_out(os.path.join(tmp, "model"), verbose=False)
        # The version appears whole or not at all: one rename of the finished
        # SavedModel onto the next number. rename is atomic and fails when
        # another exporter has just published that number (its folder is not
        # empty), and then the next number is tried.
        while True:
            final = os.path.join(model_dir, str(next_version(model_dir)))
            try:
                os.rename(os.path.join(tmp, "model"), final)
                break
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
    if sample is not None:
        served = verify_in_fresh_process(final, sample, expected_outputs(serve, sample))
        if predictions is not None:
            policy = keras.config.dtype_policy().name
            atol = PREDICTION_ATOL.get(policy, PREDICTION_ATOL["mixed_bfloat16"])
            compare(served, predictions, atol, what=f"against the trained model ({policy})")
    checked = " (verified in a fresh interpreter)" if sample is not None else ""
    print(f"[{name}] exported {final}{checked}", flush=True)
    return final


def expected_outputs(serve, sample):
    """What `serve` answers to `sample`, computed as a graph like the SavedModel.

    Traced, not eager: under mixed_bfloat16 the graph optimiser fuses ops and
    rounds differently from eager execution (here by up to 1.4e-2 in a
    probability), while the traced function and the reloaded SavedModel agree
    exactly.
    """
    outputs = tf.function(serve)(**{key: tf.constant(value) for key, value in sample.items()})
    return {key: value.numpy() for key, value in outputs.items()}


_VERIFY_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np, tensorflow as tf
    for package in ("core", "recipes", "layers"):
        assert importlib.util.find_spec(package) is None, package + " is importable"
    path, inputs_file, outputs_file = sys.argv[1:]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    inputs = {key: tf.constant(value) for key, value in np.load(inputs_file).items()}
    outputs = serve(**inputs)
    as_numpy = lambda t: (np.char.decode(t.numpy().astype("S"), "utf-8")
                          if t.dtype == tf.string else t.numpy())
    np.savez(outputs_file, **{key: as_numpy(value) for key, value in outputs.items()})
    """
)


def serve_in_fresh_process(path, inputs):
    """Outputs of the export's `serving_default` on `inputs`, computed in a new
    interpreter started in an empty folder, so no project code can be imported."""
    with tempfile.TemporaryDirectory() as scratch:
        inputs_file = os.path.join(scratch, "inputs.npz")
        outputs_file = os.path.join(scratch, "outputs.npz")
        np.savez(inputs_file, **inputs)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        result = subprocess.run(
            [sys.executable, "-c", _VERIFY_SCRIPT, os.path.abspath(path), inputs_file,
             outputs_file],
            cwd=scratch, env=env, capture_output=True, text=True,
        )
        if result.returncode:
            raise RuntimeError(f"Reloading {path} failed:\n{result.stderr[-3000:]}")
        with np.load(outputs_file) as outputs:
            return {key: outputs[key] for key in outputs.files}


def verify_in_fresh_process(path, inputs, expected, atol=1e-5):
    """Check the export answers `inputs` with `expected` outputs; raise if not.

    Floating outputs are compared within `atol`, others exactly; string
    inputs and outputs travel as numpy `str` arrays. Returns what it served.
    """
    served = serve_in_fresh_process(path, inputs)
    compare(served, expected, atol)
    return served


def compare(served, expected, atol, what=""):
    """Raise AssertionError unless each `expected` output matches `served`."""
    for key, want in expected.items():
        got = served[key]
        want = np.asarray(want)
        if want.dtype.kind in "OS":  # strings come back decoded as str
            want = np.char.decode(want.astype("S"), "utf-8")
        if got.shape != want.shape:
            raise AssertionError(f"{key}: shape {got.shape}, expected {want.shape} {what}")
        if np.issubdtype(want.dtype, np.floating):
            worst = float(np.max(np.abs(got - want))) if want.size else 0.0
            if worst > atol:
                raise AssertionError(f"{key}: differs by {worst:.2e} (> {atol}) {what}")
        elif not np.array_equal(got, want):
            raise AssertionError(f"{key}: served {got[:5]}..., expected {want[:5]}... {what}")
