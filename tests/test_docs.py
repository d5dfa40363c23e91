"""The docs stay true: every module they name exists and takes the flags they show,
every block marked runnable runs, every relative link and image resolves."""

import argparse
import glob
import importlib
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT)
                             for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
#: `python -m` modules the docs may name that are not this project's.
OUTSIDE = {"pip", "venv", "pytest", "tensorboard", "http.server", "json.tool"}
#: What a placeholder in a quoted command is replaced with, so its flags parse.
PLACEHOLDERS = {"<corpus>": "reuters_r8"}


def _read(doc):
    with open(os.path.join(ROOT, doc)) as f:
        return f.read()


def _blocks(text):
    """(info string, body) of every fenced code block."""
    return re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.M | re.S)


def _commands():
    """(doc, module, args) for every `python -m` the docs quote, in code or inline."""
    found = []
    for doc in DOCS:
        text = _read(doc).replace("\\\n", " ")  # shell line continuations
        for module, rest in re.findall(r"python -m ([A-Za-z_][\w.<>]*)([^`\n]*)", text):
            rest = rest.split(" #")[0].split("|")[0]
            # A command quoted in parentheses ends at the first ")" outside quotes.
            rest = re.match(r"""(?:"[^"]*"|'[^']*'|[^)'"])*""", rest).group(0).strip()
            found.append((doc, module, rest))
    return sorted(set(found))


class _Parsed(Exception):
    """Raised instead of running a program once its flags have parsed."""


@pytest.mark.parametrize("doc, module, args", _commands())
def test_every_quoted_command_names_a_module_whose_flags_parse(doc, module, args, monkeypatch):
    if module in OUTSIDE:
        return
    if "<" in module:  # recipes.<name>: the package is enough
        assert os.path.isdir(os.path.join(ROOT, module.split(".")[0])), doc
        return
    path = os.path.join(ROOT, *module.split("."))
    assert (os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__main__.py"))), (
        f"{doc}: `python -m {module}` names no module")
    if not args:
        return  # named in passing: the module is enough
    # A placeholder stands for any value of its flag: the flags beside it must parse too.
    args = re.sub(r"\S*<[^>]+>\S*", lambda m: PLACEHOLDERS.get(m.group(0), "x"), args)
    assert "..." not in args, f"{doc}: `python -m {module} {args}`: spell out the flags"
    real_parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        real_parse_args(self, argv, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [module, *shlex.split(args)])
    with pytest.raises(_Parsed):
        try:
            if os.path.isdir(path):  # a package: what `python -m` runs is its __main__
                runpy.run_module(module + ".__main__", run_name="__main__")
            else:
                importlib.import_module(module).main(shlex.split(args))
        except SystemExit as exit_:
            pytest.fail(f"{doc}: `python -m {module} {args}` exited {exit_.code}")


def _runnable(language):
    return [(doc, body) for doc in DOCS for info, body in _blocks(_read(doc))
            if info.split()[:2] == [language, "runnable"]]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder laid out like a checkout after `make run`: .venv, a CNN export."""
    from core import config, images
    from recipes import cnn

    path = tmp_path_factory.mktemp("checkout")
    os.symlink(sys.prefix, path / ".venv")
    model = cnn.build_model((28, 28, 1), 10, filters=(4,), dense_units=8)
    images.export_classifier(model, "cnn", images.facts(config.TrainConfig())[1], (28, 28, 1),
                             config.TrainConfig(export_dir=str(path / "saved_models")))
    return path


@pytest.mark.parametrize("doc, block", _runnable("sh"))
@pytest.mark.slow
@pytest.mark.xdist_group("docs_workdir")
def test_runnable_shell_blocks_run(doc, block, workdir):
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=workdir,
                            env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{doc}:\n{block}\n{result.stderr[-3000:]}"


_BLOCKS_SCRIPT = """
import json, sys, traceback
outcomes = []
for block in json.loads(sys.stdin.read()):
    try:
        exec(block, {"__name__": "__main__"})  # each block in a namespace of its own
        outcomes.append("ok")
    except Exception:
        outcomes.append(traceback.format_exc())
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def python_blocks(tmp_path_factory):
    """{block: "ok" or its traceback}: every runnable Python block, run in a folder
    holding copies of the layer files, in one interpreter that cannot import this
    project."""
    folder = tmp_path_factory.mktemp("beside_layers")
    for path in glob.glob(os.path.join(ROOT, "layers", "*.py")):
        if not path.endswith("__init__.py"):
            shutil.copy(path, folder)
    blocks = [block for _, block in _runnable("python")]
    result = subprocess.run([sys.executable, "-c", _BLOCKS_SCRIPT], cwd=folder,
                            input=json.dumps(blocks), env={**os.environ, "PYTHONPATH": ""},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(zip(blocks, json.loads(result.stdout.strip().splitlines()[-1])))


@pytest.mark.parametrize("doc, block", _runnable("python"))
@pytest.mark.xdist_group("docs_python_blocks")
def test_runnable_python_blocks_run_beside_copied_layer_files(doc, block, python_blocks):
    assert python_blocks[block] == "ok", f"{doc}:\n{block}\n{python_blocks[block]}"


def test_there_are_runnable_blocks_to_check():
    assert _runnable("sh") and _runnable("python")


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_and_images_resolve(doc):
    text = _read(doc)
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), target.split("#")[0]))
        assert os.path.exists(path), f"{doc}: link to {target} does not resolve"
