"""Exports in every format, and what a client gets for good and bad requests.

Each recipe is trained for one tiny epoch and exported as
`saved_model,onnx,litert`; ONNX Runtime and the LiteRT interpreter run in a
fresh interpreter that cannot import this project, as a user's server would.
"""

import os
import re
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from core import data, export
from recipes import cnn, rnn_text, transformer_text, upsampling

#: Every test here serves an export in a fresh interpreter (make test-fast skips them).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]  # one worker builds `exports`

FORMATS = "saved_model,onnx,litert"
TINY = {
    "cnn": (cnn, ["--filters", "4,8", "--dense-units", "16"]),
    "upsampling": (upsampling, ["--filters", "4,8"]),
    "rnn_text": (rnn_text, ["--units", "8", "--embedding-dim", "8", "--vocabulary-size", "300"]),
    "transformer_text": (transformer_text, [
        "--embedding-dim", "8", "--num-heads", "2", "--intermediate-dim", "16",
        "--num-blocks", "1", "--vocabulary-size", "300"]),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{recipe: its version folder}, every format in one version each."""
    root = tmp_path_factory.mktemp("serving")
    paths = {}
    for name, (recipe, flags) in TINY.items():
        recipe.main([*flags, "--epochs", "1", "--limit", "256", "--batch-size", "64",
                     *(["--sequence-length", "64", "--steps-per-epoch", "4"]
                       if name.endswith("_text") else []),
                     "--runs-dir", str(root / "runs"), "--export-dir", str(root / "saved_models"),
                     "--export-format", FORMATS])
        paths[name] = str(root / "saved_models" / name / "1")
    return paths


def test_every_format_is_published_in_one_version(exports):
    for name, path in exports.items():
        files = set(os.listdir(path))
        assert {"saved_model.pb", "variables", "model.onnx", "model.tflite"} <= files, name
        assert ("labels.txt" in files) == (name != "upsampling"), name
        # One version, and no temporary folder left beside it.
        assert os.listdir(os.path.dirname(path)) == ["1"], name
    assert "vocabulary.txt" in os.listdir(exports["rnn_text"])
    labels = open(os.path.join(exports["cnn"], "labels.txt")).read().split("\n")
    assert labels[:2] == ["T-shirt/top", "Trouser"]


@pytest.mark.parametrize("name, output", [("cnn", "probabilities"),
                                          ("upsampling", "reconstruction")])
def test_onnx_and_litert_answer_real_images_like_the_savedmodel(exports, name, output):
    images = np.stack([image for image, _ in
                       data.load("fashion_mnist", "test").skip(500).take(40).as_numpy_iterator()])
    images = np.concatenate([images, np.zeros_like(images[:1]), np.full_like(images[:1], 255)])
    served = export.serve_many_in_fresh_process(  # one interpreter for the three
        exports[name], {runtime: (runtime, {"image": images})
                        for runtime in ("saved_model", "onnx", "litert")})
    reference = served["saved_model"][output]
    for runtime in ("onnx", "litert"):
        answers = served[runtime]
        # The SavedModel computes in bfloat16 here, the portable files in float32.
        np.testing.assert_allclose(answers[output], reference, atol=export.PREDICTION_ATOL[
            "mixed_bfloat16"], err_msg=runtime)
        if name == "cnn":
            assert (answers["class_id"] == answers[output].argmax(-1)).all()


def _documented_tokenizer():
    """The client-side tokenizer from docs/serving.md, run as written there."""
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "serving.md")).read()
    (block,) = re.findall(r"```python tokenizer\n(.*?)```", text, re.S)
    namespace = {}
    exec(textwrap.dedent(block), namespace)
    return namespace["token_ids"]


@pytest.mark.parametrize("name", ["rnn_text", "transformer_text"])
def test_text_without_tensorflow_gets_the_savedmodels_answers(exports, name):
    """ONNX and LiteRT take token ids: a client tokenizing with vocabulary.txt as
    documented gets the raw-string SavedModel's probabilities."""
    path = exports[name]
    texts = [t.decode("utf-8") for t, _ in
             data.load("rt_snippets", "test").skip(100).take(30).as_numpy_iterator()]
    texts += ["", "Un film étonnant, déjà culte ! 🎬", "!!!", "It's a MUST-see... (really)"]
    vocabulary = open(os.path.join(path, "vocabulary.txt"), encoding="utf-8").read().split("\n")
    ids = _documented_tokenizer()(texts, vocabulary[:-1], sequence_length=64)
    served = export.serve_many_in_fresh_process(path, {
        "saved_model": ("saved_model", {"text": np.array(texts)}),
        **{runtime: (runtime, {"token_ids": ids}) for runtime in ("onnx", "litert")}})
    reference = served["saved_model"]
    for runtime in ("onnx", "litert"):
        answers = served[runtime]
        np.testing.assert_allclose(answers["probabilities"], reference["probabilities"],
                                   atol=export.PREDICTION_ATOL["mixed_bfloat16"], err_msg=runtime)


@pytest.mark.parametrize("name", ["cnn", "upsampling"])
def test_image_exports_refuse_bad_requests_clearly(exports, name):
    serve = tf.saved_model.load(exports[name]).signatures["serving_default"]
    empty = serve(image=tf.zeros((0, 28, 28, 1), tf.uint8))
    assert empty and all(value.shape[0] == 0 for value in empty.values())
    for shape in [(1, 32, 32, 1), (2, 28, 28, 3), (1, 28, 28), (28, 28, 1, 1, 1)]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape("image must be uint8 [batch, 28, 28, 1]")):
            serve(image=tf.zeros(shape, tf.uint8))


def test_rnn_litert_file_answers_one_text_per_call(exports):
    """Documented limit: the LiteRT converter needs a static batch for the recurrent loop."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(os.path.join(exports["rnn_text"], "model.tflite"))
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [1, 64]
    interpreter = Interpreter(os.path.join(exports["transformer_text"], "model.tflite"))
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 64]


def test_unknown_export_format_is_refused_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cnn.main(["--export-format", "saved_model,tflite", "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "export format must be among saved_model, onnx, litert; got 'tflite'" in (
        capsys.readouterr().err)
    assert not os.listdir(tmp_path)


def test_formats_are_parsed_in_one_order_with_the_savedmodel_first():
    assert export.parse_formats("litert, onnx") == ("saved_model", "onnx", "litert")
    assert export.parse_formats("saved_model") == ("saved_model",)
