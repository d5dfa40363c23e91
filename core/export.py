"""Export for TF Serving, ONNX Runtime and LiteRT, the one way every recipe does it.

    path = export.export_savedmodel(
        model, "cnn",
        inputs={"image": tf.TensorSpec([None, 28, 28, 1], tf.uint8)},
        serve=lambda image: {"probabilities": model(image), ...},
        sample={"image": images}, formats="saved_model,onnx", portable=...,
    )

- Layout `saved_models/<model>/<version>/`, TF Serving's: versions are
  integers, the next one is one more than the largest present, and an existing
  version is never touched. Everything is written to a hidden temporary
  folder beside it (TF Serving ignores non-numeric names) and renamed into
  place in one atomic step, so a server never sees a half-written or empty
  version, and two exporters never take the same number (the second one's
  rename fails and it takes the next). A full disk fails the export with an
  error naming the folder (`storage.WriteError`), nothing published. A run's
  version records where it came from (`assets.extra/origin.json`: run
  directory, weights digest, formats), so a resumed run that had published
  before it was stopped checks that version instead of adding a duplicate.
- The SavedModel is always written: TF Serving loads it, and the other
  formats are checked against it. Its signature `serving_default` has the
  input and output names the recipe chooses, checks the request's shape (a
  wrong one fails with a message naming the expected shape, not deep inside
  the graph) and answers an empty batch with empty outputs.
- `model.onnx` and `model.tflite` (LiteRT), when asked for, sit in the same
  version folder with the companion files a client needs (`labels.txt`,
  `vocabulary.txt`). They are converted from a float32 copy of the model
  (`Portable`), with numeric outputs only: ONNX needs a float32 policy, and
  neither runtime has TensorFlow's string ops.
- `verify_export` runs each file in one new interpreter that cannot import
  this project (`tf.saved_model.load`, `onnxruntime`, `ai_edge_litert`): the
  SavedModel must answer as the traced serving function and the trained
  model do, the ONNX and LiteRT files as the float32 copy and the SavedModel.
"""

import atexit
import contextlib
import contextvars
import dataclasses
import errno
import functools
import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from core import storage

SIGNATURE = "serving_default"
FORMATS = ("saved_model", "onnx", "litert")
FILES = {"onnx": "model.onnx", "litert": "model.tflite"}
ORIGIN_FILE = os.path.join("assets.extra", "origin.json")

#: How far the reloaded export may stray from the trained model's own eager
#: predictions. In float32 the two agree to rounding; under mixed_bfloat16 the
#: graph optimiser fuses and rounds differently from eager execution (measured
#: here: up to 1.4e-2 in a probability).
PREDICTION_ATOL = {"float32": 1e-5, "mixed_float16": 1e-2, "mixed_bfloat16": 3e-2}
#: How far an ONNX or LiteRT file may stray from the float32 model it was
#: converted from (both compute in float32; kernels and fusions differ).
PORTABLE_ATOL = 1e-4


class ExportError(ValueError):
    """An export that cannot be made as asked (raised before anything is written)."""


def parse_formats(text):
    """`"saved_model,onnx"` -> `("saved_model", "onnx")`; the SavedModel always comes first."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ExportError(f"export format must be among {', '.join(FORMATS)}; got "
                          f"{', '.join(map(repr, unknown))}")
    return tuple(name for name in FORMATS if name == "saved_model" or name in names)


@dataclasses.dataclass
class Portable:
    """What the ONNX and LiteRT files are converted from.

    model: a float32 Keras model (see `float32_copy`), tracked for its weights.
    inputs: `{input_name: tf.TensorSpec}` of `serve`.
    serve: a function of those inputs returning `{output_name: numeric tensor}`.
    sample: `{input_name: numpy array}`, the same examples as the SavedModel's
        sample (for text, their token ids), so the outputs can be compared.
    files: `{file name: lines}` written beside the model (labels, vocabulary).
    litert_batch: a fixed batch size for LiteRT, when the model cannot be
        converted with a dynamic one (a recurrent loop needs static shapes).
    """

    model: keras.Model
    inputs: dict
    serve: Callable
    sample: dict
    files: dict = dataclasses.field(default_factory=dict)
    litert_batch: int | None = None


def float32_copy(model):
    """The same model, weights and all, computing in float32.

    ONNX export needs a float32 policy; a model trained under mixed precision
    keeps float32 weights, so only each layer's compute policy changes.
    """
    def to_float32(node):
        if isinstance(node, dict):
            if "DTypePolicy" in str(node.get("class_name", "")):
                return "float32"
            return {key: to_float32(value) for key, value in node.items()}
        if isinstance(node, list):
            return [to_float32(value) for value in node]
        return node

    copy = model.__class__.from_config(to_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def float32_portable(model, inputs, make_serve, sample, files=None):
    """The usual `Portable`: `make_serve(model)` on a float32 copy, numeric outputs only."""
    copy = float32_copy(model)
    return Portable(copy, inputs, numeric_outputs(make_serve(copy)), sample, files or {})


def numeric_outputs(serve):
    """`serve` without its string outputs (ONNX Runtime and LiteRT get numbers)."""
    @functools.wraps(serve)  # keeps the argument names that the input signature binds
    def numeric(*args, **kwargs):
        return {key: value for key, value in serve(*args, **kwargs).items()
                if value.dtype != tf.string}
    return numeric


def describe(spec):
    """`uint8 [batch, 28, 28, 1]`: a spec as a client reads it."""
    dims = ["batch" if i == 0 else str(d) if d is not None else "any"
            for i, d in enumerate(spec.shape)]
    return f"{spec.dtype.name} [{', '.join(dims)}]"


def guarded(serve, inputs):
    """`serve` behind the checks a client needs, inside the serving graph.

    - A request whose shape is not the signature's fails with a message that
      names the expected shape (TF Serving does not check shapes itself, and
      the graph would otherwise fail deep inside, e.g. in a Reshape).
    - An empty batch returns empty outputs: one placeholder example goes
      through the model and every output is cut back to the batch size (an
      empty tensor would otherwise reach BatchNormalization, which rejects it).
    """
    def padded_shape(tensor, rank):
        # The shape padded with -1s: indexing it never fails whatever rank
        # came in, and as real sizes are >= 0, the rank is right exactly when
        # entry `rank - 1` is a size and entry `rank` is padding. (tf.rank
        # would be folded into the signature's rank by the graph optimiser,
        # and a check on it would pass every rank.)
        return tf.concat([tf.shape(tensor), tf.fill([rank + 1], -1)], axis=0)

    def has_shape(shape, spec):
        rank = len(spec.shape)
        return tf.reduce_all([shape[rank - 1] >= 0, tf.equal(shape[rank], -1), *(
            tf.equal(shape[axis], size) for axis, size in enumerate(spec.shape)
            if size is not None)])

    @functools.wraps(serve)  # keeps the argument names that the input signature binds
    def wrapped(*args, **kwargs):
        tensors = inspect.signature(serve).bind(*args, **kwargs).arguments
        shapes = {key: padded_shape(tensors[key], len(spec.shape)) for key, spec in inputs.items()}
        checks = [tf.debugging.Assert(has_shape(shapes[key], spec), [
            f"{key} must be {describe(spec)}; got shape", tf.shape(tensors[key])])
            for key, spec in inputs.items()]
        with tf.control_dependencies(checks):
            batch = tf.identity(shapes[next(iter(inputs))][0])
        nonempty = {
            key: tf.cond(batch > 0, lambda x=tensors[key]: x,
                         lambda spec=spec: tf.zeros([1, *(d or 1 for d in spec.shape[1:])],
                                                    spec.dtype))
            for key, spec in inputs.items()}
        return {key: value[:batch] for key, value in serve(**nonempty).items()}

    return wrapped


def next_version(model_dir):
    """One more than the largest integer version in `model_dir` (1 if none)."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [int(name) for name in os.listdir(model_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def export_savedmodel(model, name, inputs, serve, root="saved_models", sample=None,
                      predictions=None, formats="saved_model", portable=None, extra=None):
    """Write a new version of `name` under `root`, and return its path. Inside
    `from_run`, a version this run already published (it was stopped after the
    rename) is checked and returned instead of publishing a second one.

    Args:
        model: the Keras model (tracked so its variables are saved).
        name: the model's folder under `root`.
        inputs: `{input_name: tf.TensorSpec}`, in the order `serve` takes them.
        serve: a function of those inputs returning `{output_name: tensor}`;
            the signature wraps it in `guarded`.
        root: the model base path that TF Serving watches.
        sample: optional `{input_name: numpy array}`; when given, the new
            version is reloaded in a fresh interpreter and must answer these
            inputs as `serve` does here (see `verify_in_fresh_process`).
        predictions: optional `{output_name: numpy array}`, the trained model's
            own answers to `sample`; the reloaded export must match them within
            `PREDICTION_ATOL` for the current precision policy.
        formats: the `--export-format` string (see `parse_formats`); "onnx"
            and "litert" need `portable`.
        portable: a function returning a `Portable`, what the ONNX and LiteRT
            files come from; called only when they are asked for.
        extra: `{signature: (inputs, serve, sample)}`, more signatures of the
            SavedModel (encoded image files, say); `serve` is used as it is
            (it does its own checks), and with `sample` given each is checked
            in the fresh interpreter too.
    """
    formats = parse_formats(formats)
    others = formats[1:]
    if others and portable is None:
        raise ExportError(f"{name}: no portable model was given for {', '.join(others)}")
    if others:
        portable = portable()
    origin = {**ORIGIN.get(), "formats": list(formats)} if ORIGIN.get() else None

    def write(staged, scratch):  # checked before it is published: a failure publishes nothing
        traced = _write_version(staged, scratch, model, inputs, serve, formats, portable, extra)
        if sample is not None:
            verify_export(staged, serve, sample, predictions, formats, portable, extra, traced)

    final, new = publish(os.path.join(root, name), origin, write)
    if not new:
        print(f"[{name}] {final} is this run's export already (published before the run was "
              "stopped); checking it instead of publishing another", flush=True)
        if sample is not None:
            verify_export(final, serve, sample, predictions, formats, portable, extra)
    checked = " (verified in a fresh interpreter)" if sample is not None else ""
    print(f"[{name}] exported {final}: {', '.join(formats)}{checked}", flush=True)
    return final


#: Where the model being exported comes from ({"run": run directory, "weights":
#: digest}), set by `core.recipe` around a run's export (`from_run`).
ORIGIN = contextvars.ContextVar("origin", default=None)


@contextlib.contextmanager
def from_run(run_dir, weights):
    """Tag the versions exported inside with the run and weights they come from, so a
    resumed run finds the version it published before it was stopped."""
    token = ORIGIN.set({"run": os.path.abspath(run_dir), "weights": weights})
    try:
        yield
    finally:
        ORIGIN.reset(token)


def published(model_dir, origin):
    """The version in `model_dir` tagged with `origin` (the same run, weights and
    formats), or None."""
    if not origin or not os.path.isdir(model_dir):
        return None
    for name in sorted((n for n in os.listdir(model_dir) if n.isdigit()), key=int):
        try:
            with open(os.path.join(model_dir, name, ORIGIN_FILE)) as f:
                if json.load(f) == origin:
                    return os.path.join(model_dir, name)
        except (OSError, ValueError):
            continue
    return None


def publish(model_dir, origin, write):
    """(path, True) of a new version of `model_dir`, or (path, False) of the one this
    run published already (tagged with `origin`; see `from_run`).

    `write(staged, scratch)` fills the hidden folder `staged` (`scratch` is a
    temporary folder beside it); the folder is tagged with `origin` and renamed
    onto the next number whole. An OSError becomes a `storage.WriteError` that
    says nothing was published.
    """
    with storage.writing(model_dir):
        os.makedirs(model_dir, exist_ok=True)
    final = published(model_dir, origin)
    if final:
        return final, False
    intact = "nothing was published, and the versions already there are intact"
    with storage.writing(model_dir, intact), tempfile.TemporaryDirectory(
            prefix=".incomplete-", dir=model_dir) as tmp:
        staged = os.path.join(tmp, "model")
        write(staged, tmp)
        if origin:  # TF Serving's place for files beside the SavedModel
            os.makedirs(os.path.join(staged, os.path.dirname(ORIGIN_FILE)), exist_ok=True)
            with open(os.path.join(staged, ORIGIN_FILE), "w") as f:
                json.dump(origin, f)
        return rename_onto_next_version(staged, model_dir), True


def _write_version(staged, scratch, model, inputs, serve, formats, portable, extra):
    """The SavedModel (and the ONNX and LiteRT files asked for) in `staged`; returns
    {signature: the `tf.function` it was written from}."""
    specs = [tf.TensorSpec(spec.shape, spec.dtype, name=key) for key, spec in inputs.items()]
    archive = keras.export.ExportArchive()
    archive.track(model)
    traced = {SIGNATURE: archive.add_endpoint(SIGNATURE, guarded(serve, inputs),
                                              input_signature=specs)}
    for signature, (more_inputs, more_serve, _) in (extra or {}).items():
        traced[signature] = archive.add_endpoint(signature, more_serve, input_signature=[
            tf.TensorSpec(spec.shape, spec.dtype, name=key) for key, spec in more_inputs.items()])
    archive.write_out(staged, verbose=False)
    if formats[1:]:
        for filename, lines in portable.files.items():
            with open(os.path.join(staged, filename), "w", encoding="utf-8") as f:
                f.writelines(f"{line}\n" for line in lines)
    if "onnx" in formats:
        write_onnx(portable, os.path.join(staged, FILES["onnx"]))
    if "litert" in formats:
        write_litert(portable, os.path.join(staged, FILES["litert"]), scratch)
    return traced


def rename_onto_next_version(staged, model_dir):
    """Publish the finished folder `staged` as the next version of `model_dir`.

    The version appears whole or not at all: one rename of the finished folder
    onto the next number. rename is atomic and fails when another exporter has
    just published that number (its folder is not empty), and then the next
    number is tried.
    """
    while True:
        final = os.path.join(model_dir, str(next_version(model_dir)))
        try:
            os.rename(staged, final)
            return final
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def write_onnx(portable, path):
    """`portable` as ONNX, through tf2onnx (what `model.export(format="onnx")` uses)."""
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    patch_tf2onnx()  # Keras's own fix for tf2onnx under numpy 2
    specs = [tf.TensorSpec(spec.shape, spec.dtype, name=key)
             for key, spec in portable.inputs.items()]
    tf2onnx.convert.from_function(tf.function(portable.serve, input_signature=specs), specs,
                                  output_path=path)


def write_litert(portable, path, scratch):
    """`portable` as a LiteRT flatbuffer, built-in ops only (no Flex delegate needed)."""
    specs = [tf.TensorSpec((portable.litert_batch, *spec.shape[1:]), spec.dtype, name=key)
             for key, spec in portable.inputs.items()]
    archive = keras.export.ExportArchive()
    archive.track(portable.model)
    archive.add_endpoint(SIGNATURE, portable.serve, input_signature=specs)
    source = os.path.join(scratch, "litert-source")
    archive.write_out(source, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(source)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with open(path, "wb") as f:
        f.write(converter.convert())


def expected_outputs(serve, sample):
    """What `serve` answers to `sample`, computed as a graph like the SavedModel.

    Traced, not eager: under mixed_bfloat16 the graph optimiser fuses ops and
    rounds differently from eager execution (here by up to 1.4e-2 in a
    probability), while the traced function and the reloaded SavedModel agree
    to rounding (the check allows 1e-5). A `tf.function` (the endpoint the
    SavedModel was written from) is called as it is: no second trace.
    """
    if not isinstance(serve, tf.types.experimental.GenericFunction):
        serve = tf.function(serve)
    outputs = serve(**{key: tf.constant(value) for key, value in sample.items()})
    return {key: value.numpy() for key, value in outputs.items()}


def verify_export(path, serve, sample, predictions, formats, portable, extra=None, traced=None):
    """Every file and signature of a new version, reloaded in one fresh interpreter,
    must answer its sample as the model did here; raise AssertionError if not.

    `traced`: {signature: the `tf.function` it was written from} (what
    `_write_version` returns), answering here in place of a new trace of each
    `serve` (about 0.3 s of a CNN export's 2.6 s here)."""
    traced = traced or {}
    policy = keras.config.dtype_policy().name
    atol = PREDICTION_ATOL.get(policy, PREDICTION_ATOL["mixed_bfloat16"])
    requests = {"saved_model": ("saved_model", sample)}
    requests.update({runtime: (runtime, portable.sample) for runtime in formats[1:]})
    requests.update({signature: (f"saved_model:{signature}", more_sample)
                     for signature, (_, _, more_sample) in (extra or {}).items()
                     if more_sample is not None})
    answers = serve_many_in_fresh_process(path, requests)
    served = answers["saved_model"]
    compare(served, expected_outputs(traced.get(SIGNATURE, serve), sample), 1e-5)
    if predictions is not None:
        compare(served, predictions, atol, what=f"against the trained model ({policy})")
    float32 = expected_outputs(portable.serve, portable.sample) if formats[1:] else None
    for runtime in formats[1:]:
        compare(answers[runtime], float32, PORTABLE_ATOL,
                what=f"{runtime} against the float32 model it came from")
        floats = {key: value for key, value in served.items()
                  if key in answers[runtime] and np.issubdtype(value.dtype, np.floating)}
        compare(answers[runtime], floats, max(atol, PORTABLE_ATOL),
                what=f"{runtime} against the SavedModel ({policy})")
    for signature, (_, more_serve, more_sample) in (extra or {}).items():
        if more_sample is not None:
            compare(answers[signature],
                    expected_outputs(traced.get(signature, more_serve), more_sample), 1e-5,
                    what=f"({signature})")


_VERIFY_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys, traceback
    import numpy as np
    for package in ("core", "recipes", "layers"):
        assert importlib.util.find_spec(package) is None, package + " is importable"

    def saved_model(path, runtime, inputs, loaded):
        import tensorflow as tf
        try:  # the WordPiece exports' tokenizer ops (recipes.finetune_text); 0.2 s
            import tensorflow_text  # noqa: F401
        except ImportError:
            pass
        if "saved_model" not in loaded:
            loaded["saved_model"] = tf.saved_model.load(path)
        signature = runtime.partition(":")[2] or "serving_default"
        serve = loaded["saved_model"].signatures[signature]
        as_numpy = lambda t: (np.char.decode(t.numpy().astype("S"), "utf-8")
                              if t.dtype == tf.string else t.numpy())
        return {key: as_numpy(value)
                for key, value in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    def onnx(path, inputs):
        import onnxruntime
        session = onnxruntime.InferenceSession(os.path.join(path, "model.onnx"))
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))

    def litert(path, inputs):
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(os.path.join(path, "model.tflite"))
        runner = interpreter.get_signature_runner("serving_default")
        fixed = interpreter.get_input_details()[0]["shape_signature"][0]
        step = len(next(iter(inputs.values()))) if fixed < 1 else fixed
        parts = [runner(**{k: v[start:start + step] for k, v in inputs.items()})
                 for start in range(0, len(next(iter(inputs.values()))), step)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def answer(line):  # one request: [export path, jobs file]
        path, jobs_file = json.loads(line)
        with open(jobs_file) as f:
            jobs = json.load(f)
        loaded = {}
        for runtime, inputs_file, outputs_file in jobs:
            inputs = dict(np.load(inputs_file))
            try:
                if runtime.startswith("saved_model"):
                    outputs = saved_model(path, runtime, inputs, loaded)
                else:
                    outputs = (onnx if runtime == "onnx" else litert)(path, inputs)
                np.savez(outputs_file, **outputs)
            except Exception:
                with open(outputs_file + ".error", "w") as f:
                    f.write(traceback.format_exc())
        return "done\\n"

    if len(sys.argv) > 1:  # a server on a Unix socket: one request a connection, in turn
        import socket
        server = socket.socket(socket.AF_UNIX)
        server.bind(sys.argv[1])
        server.listen(64)
        print("ready", flush=True)
        while True:
            connection, _ = server.accept()
            try:
                with connection, connection.makefile("rw") as stream:
                    stream.write(answer(stream.readline()))
            except (OSError, ValueError):  # the client died or sent nothing
                pass
    for line in sys.stdin:
        print(answer(line), end="", flush=True)
    """
)


class _Interpreter:
    """A Python interpreter that cannot import this project (started in an empty
    folder, without PYTHONPATH), answering requests of `_VERIFY_SCRIPT`."""

    def __init__(self, serve=False):
        """`serve`: answer on a Unix socket (`self.socket`) instead of stdin."""
        self.folder = tempfile.mkdtemp(prefix="export-check-")
        self.log = open(os.path.join(self.folder, "stderr.txt"), "w+")
        self.socket = os.path.join(self.folder, "socket") if serve else None
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _VERIFY_SCRIPT, *([self.socket] if serve else [])],
            cwd=self.folder, env=env, text=True, stdin=None if serve else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log)

    def ask(self, path, jobs_file):
        """Run one request; RuntimeError with the interpreter's errors if it died."""
        try:
            self.process.stdin.write(json.dumps([os.path.abspath(path), jobs_file]) + "\n")
            self.process.stdin.flush()
            answered = self.process.stdout.readline().strip() == "done"
        except BrokenPipeError:
            answered = False
        if not answered:
            self.close()
            self.log.seek(0)
            raise RuntimeError(f"Reloading {path} failed:\n{self.log.read()[-3000:]}")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class CheckerServer(_Interpreter):
    """Such an interpreter serving every process that connects to its Unix socket
    (`socket`), one request a connection, in turn; `close()` ends it."""

    def __init__(self):
        super().__init__(serve=True)
        if self.process.stdout.readline().strip() != "ready":
            self.log.seek(0)
            raise RuntimeError(f"the export checker did not start:\n{self.log.read()[-3000:]}")

    def close(self):
        self.process.kill()
        self.process.wait()
        super().close()


class _Connection:
    """A client of a `CheckerServer`, with `_Interpreter`'s `ask`."""

    def __init__(self, address):
        self.address = address

    def ask(self, path, jobs_file):
        try:
            with socket.socket(socket.AF_UNIX) as client, client.makefile("rw") as stream:
                client.connect(self.address)
                stream.write(json.dumps([os.path.abspath(path), jobs_file]) + "\n")
                stream.flush()
                answered = stream.readline().strip() == "done"
        except OSError:
            answered = False
        if not answered:
            raise RuntimeError(f"Reloading {path} failed: the export checker at "
                               f"{self.address} did not answer")


#: Set by the test suite (tests/conftest.py): one such interpreter answers
#: every check, instead of a new one each time (a TensorFlow start, about 4 s
#: here). "1": one per process; the path of a `CheckerServer`'s socket: that
#: server, for this process and every process it starts. What it checks is the
#: same: files reloaded from disk by an interpreter that cannot import this
#: project.
SHARED_INTERPRETER = "RECIPES_SHARED_EXPORT_CHECKER"
_shared = []


def _interpreter():
    shared = os.environ.get(SHARED_INTERPRETER)
    if not shared:
        return _Interpreter()
    if os.path.isabs(shared):
        return _Connection(shared)
    if not _shared or _shared[0].process.poll() is not None:
        _shared[:] = [_Interpreter()]
        atexit.register(_shared[0].close)
    return _shared[0]


def serve_many_in_fresh_process(path, requests, raise_errors=True):
    """{name: outputs} of the export for each {name: (runtime, inputs)}, all computed
    in one new interpreter started in an empty folder, so no project code can be
    imported. A runtime is saved_model (its `serving_default`), saved_model:NAME
    (another signature), onnx (ONNX Runtime) or litert (the LiteRT interpreter).
    A request that fails raises a RuntimeError with the reload's traceback, or
    with `raise_errors=False` gets that error in place of its outputs."""
    with tempfile.TemporaryDirectory() as scratch:
        jobs = []
        for i, (runtime, inputs) in enumerate(requests.values()):
            inputs_file = os.path.join(scratch, f"inputs-{i}.npz")
            np.savez(inputs_file, **inputs)
            jobs.append((runtime, inputs_file, os.path.join(scratch, f"outputs-{i}.npz")))
        jobs_file = os.path.join(scratch, "jobs.json")
        with open(jobs_file, "w") as f:
            json.dump(jobs, f)
        interpreter = _interpreter()
        try:
            interpreter.ask(path, jobs_file)
        finally:
            if isinstance(interpreter, _Interpreter) and interpreter not in _shared:
                interpreter.close()
        answers = {}
        for name, (runtime, _, outputs_file) in zip(requests, jobs):
            if os.path.exists(outputs_file + ".error"):
                with open(outputs_file + ".error") as f:
                    answers[name] = RuntimeError(
                        f"Reloading {path} ({runtime}) failed:\n{f.read()[-3000:]}")
                continue
            with np.load(outputs_file) as outputs:
                answers[name] = {key: outputs[key] for key in outputs.files}
        failed = [a for a in answers.values() if isinstance(a, Exception)]
        if failed and raise_errors:
            raise failed[0]
        return answers


def serve_in_fresh_process(path, inputs, runtime="saved_model"):
    """Outputs of the export on `inputs` through `runtime` (see
    `serve_many_in_fresh_process`); RuntimeError if the request fails."""
    return serve_many_in_fresh_process(path, {runtime: (runtime, inputs)})[runtime]


def verify_in_fresh_process(path, inputs, expected, atol=1e-5):
    """Check the SavedModel answers `inputs` with `expected` outputs; raise if not.

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
