"""Own data: real Fashion-MNIST images written as files into class folders, and real
rt_snippets texts written as a CSV and as .txt files; every recipe trains on them."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from core import data, files
from recipes import cnn, cnn_text, ngram_text, rnn_text, transformer_text, upsampling

PER_CLASS = 12  # images a class: 10 classes, 120 images a folder


@pytest.fixture(autouse=True)
def rescan():
    """A process scans a folder once (`data.source`); these tests change folders."""
    data.source.cache_clear()
    yield


def _fashion(n):
    ds = data.load("fashion_mnist", "train").take(n)
    names = data.info("fashion_mnist").features["label"].names
    return [(image, names[label].replace("/", "-")) for image, label in ds.as_numpy_iterator()]


def _write_image(path, image, fmt):
    encoded = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image, quality=95)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, encoded)


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    """{layout: folder}: class folders; train/ and test/ split folders; and a folder
    mixing 28x28 grayscale PNGs with 36x36 colour JPEGs."""
    root = tmp_path_factory.mktemp("images")
    examples = _fashion(PER_CLASS * 10 * 2)
    for i, (image, name) in enumerate(examples[:PER_CLASS * 10]):
        fmt = "png" if i % 2 else "jpg"
        _write_image(str(root / "flat" / name / f"{i}.{fmt}"), image, fmt)
        split = "test" if i % 4 == 0 else "train"
        _write_image(str(root / "split" / split / name / f"{i}.{fmt}"), image, fmt)
    for i, (image, name) in enumerate(examples[PER_CLASS * 10:]):
        if i % 2:
            _write_image(str(root / "mixed" / name / f"{i}.png"), image, "png")
        else:
            colour = tf.image.resize(tf.image.grayscale_to_rgb(tf.constant(image)), (36, 36))
            _write_image(str(root / "mixed" / name / f"{i}.jpg"),
                         tf.cast(colour, tf.uint8).numpy(), "jpg")
    return {layout: str(root / layout) for layout in ("flat", "split", "mixed")}


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """{layout: path}: rt_snippets' first 400 training snippets as a CSV file and as
    class folders of .txt files."""
    root = tmp_path_factory.mktemp("texts")
    names = data.info("rt_snippets").features["label"].names
    rows = [(text.decode("utf-8"), names[label]) for text, label in
            data.load("rt_snippets", "train").take(400).as_numpy_iterator()]
    with open(root / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["movie_review", "sentiment"])
        writer.writerows(rows)
    for i, (text, name) in enumerate(rows):
        (root / "folder" / name).mkdir(parents=True, exist_ok=True)
        (root / "folder" / name / f"{i}.txt").write_text(text, encoding="utf-8")
    return {"csv": str(root / "reviews.csv"), "folder": str(root / "folder")}


def _tiny(tmp_path, dataset, *extra, steps="2"):
    return ["--dataset", dataset, "--epochs", "1", "--steps-per-epoch", steps,
            "--runs-dir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "sm"), *extra]


# --- splits -------------------------------------------------------------------------


_SPLIT_OF = """
import json, os, sys
from core import files
found = files.scan(sys.argv[1])
print(json.dumps({split: sorted(os.path.relpath(p, found.path) for p in found.splits[split][0])
                  for split in files.SPLIT_FOLDERS}))
"""


def test_split_is_the_same_across_runs_and_working_directories(image_folders, tmp_path):
    """A copy of the folder elsewhere, scanned by another process from another working
    directory (and another Python hash seed), splits file by file the same."""
    import shutil
    import subprocess
    import sys

    folder = image_folders["flat"]
    found = files.scan(folder)
    first = {split: sorted(os.path.relpath(p, folder) for p in found.splits[split][0])
             for split in files.SPLIT_FOLDERS}
    copy = tmp_path / "elsewhere" / "photos"
    shutil.copytree(folder, copy)
    (tmp_path / "cwd").mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _SPLIT_OF, os.path.relpath(copy, tmp_path / "cwd")],
        cwd=tmp_path / "cwd", env={**os.environ, "PYTHONPATH": root, "PYTHONHASHSEED": "123"},
        capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == first
    sizes = {split: len(first[split]) for split in files.SPLIT_FOLDERS}
    assert sum(sizes.values()) == PER_CLASS * 10
    assert 10 <= sizes["test"] <= 40 and sizes["validation"] >= 3  # 20% and 10% of the rest


def test_a_split_comes_in_a_fixed_order_that_mixes_the_classes(image_folders, text_files):
    """Folders list their files class by class; a shuffle buffer smaller than the split
    cannot undo that, so the split itself comes mixed (and the same every time)."""
    for path in (image_folders["flat"], text_files["folder"], text_files["csv"]):
        labels = files.scan(path).splits["train"][1]
        assert labels != sorted(labels) and len(set(labels[:10])) > 1
        assert labels == files.scan(path).splits["train"][1]


def test_split_folders_are_kept_and_validation_is_carved_from_train(image_folders):
    found = files.scan(image_folders["split"])
    in_test = [p for p in found.splits["test"][0]]
    assert in_test and all(f"{os.sep}test{os.sep}" in p for p in in_test)
    assert all(f"{os.sep}train{os.sep}" in p for split in ("train", "validation")
               for p in found.splits[split][0])
    assert found.class_names == sorted(os.listdir(os.path.join(image_folders["split"], "train")))


def test_mixed_sizes_and_colours_become_one_shape(image_folders):
    found = files.scan(image_folders["mixed"])
    assert found.image_shape == (32, 32, 3)  # median of 28 and 36; colour since any has it
    images, _ = next(iter(files.dataset(found, "train").batch(200)))
    assert images.shape[1:] == (32, 32, 3) and images.dtype == tf.uint8
    assert files.scan(image_folders["mixed"], image_size=28, channels=1).image_shape == (28, 28, 1)


def test_a_png_decodes_to_the_pixels_it_was_written_from(image_folders):
    found = files.scan(image_folders["flat"])
    path = next(p for p in found.splits["train"][0] if p.endswith(".png"))
    written = tf.io.decode_png(tf.io.read_file(path))
    np.testing.assert_array_equal(files.decode_image(tf.io.read_file(path), (28, 28, 1)),
                                  written)


# --- every recipe on every layout it takes ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["flat", "split", "mixed"])
def test_cnn_trains_and_exports_on_each_image_layout(layout, image_folders, tmp_path, capsys):
    cnn.main(_tiny(tmp_path, image_folders[layout], "--filters", "4,8", "--dense-units", "16"))
    out = capsys.readouterr().out
    assert "test accuracy" in out and "exported" in out
    assert "T-shirt-top" in out  # the class names and counts are printed
    (run_dir,) = (tmp_path / "runs" / "cnn").iterdir()
    record = json.loads((run_dir / "config.json").read_text())["dataset"]
    assert record["kind"] == "image" and len(record["class_names"]) == 10
    assert sum(sum(c.values()) for c in record["counts"].values()) == PER_CLASS * 10


@pytest.mark.slow
def test_upsampling_trains_on_any_folder_of_images_labels_or_not(image_folders, tmp_path,
                                                                  capsys):
    upsampling.main(_tiny(tmp_path, image_folders["split"], "--filters", "4,8"))
    out = capsys.readouterr().out
    assert "PSNR" in out and "exported" in out
    loose = tmp_path / "loose"
    loose.mkdir()
    for i, (image, _) in enumerate(_fashion(40)):
        _write_image(str(loose / f"{i}.png"), image, "png")
    upsampling.main(_tiny(tmp_path, str(loose), "--filters", "4,8", "--no-export"))
    assert "PSNR" in capsys.readouterr().out
    assert "at least two" in _refused(tmp_path / "cnn", capsys, cnn, str(loose))


@pytest.mark.slow
@pytest.mark.parametrize("module", [rnn_text, transformer_text, cnn_text, ngram_text],
                         ids=lambda m: m.__name__)
@pytest.mark.parametrize("layout", ["csv", "folder"])
def test_text_recipes_train_and_export_on_a_csv_and_a_text_folder(module, layout, text_files,
                                                                  tmp_path, capsys):
    module.main(_tiny(tmp_path, text_files[layout]))
    out = capsys.readouterr().out
    assert "test accuracy" in out and "exported" in out
    assert "fresh" in out and "rotten" in out  # the class names and counts are printed


# --- bad input: one line, exit 2, nothing written ---------------------------------------


def _refused(tmp_path, capsys, module, dataset, *extra):
    data.source.cache_clear()  # the folder may have changed since it was last scanned
    with pytest.raises(SystemExit) as exit_info:
        module.main(_tiny(tmp_path, dataset, *extra))
    assert exit_info.value.code == 2
    assert not (tmp_path / "runs").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_folders_are_refused_with_one_line(tmp_path, capsys):
    assert "no such file or folder" in _refused(tmp_path, capsys, cnn, str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "no class folders" in _refused(tmp_path, capsys, cnn, str(tmp_path / "empty"))
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    for i in range(80):
        tf.io.write_file(str(one / f"{i}.png"), tf.io.encode_png(np.full((8, 8, 1), i, np.uint8)))
    assert "at least two" in _refused(tmp_path, capsys, cnn, str(tmp_path / "one"))
    (tmp_path / "one" / "dogs").mkdir()
    assert "no usable file: dogs" in _refused(tmp_path, capsys, cnn, str(tmp_path / "one"))


def test_split_folders_whose_classes_differ_are_refused(image_folders, tmp_path, capsys):
    import shutil

    folder = tmp_path / "differ"
    shutil.copytree(image_folders["split"], folder)
    shutil.rmtree(folder / "test" / "Bag")
    assert "different classes" in _refused(tmp_path, capsys, cnn, str(folder))


def test_images_and_texts_go_to_the_recipes_that_read_them(image_folders, text_files, tmp_path,
                                                           capsys):
    assert "needs a folder of class folders of images" in _refused(
        tmp_path, capsys, cnn, text_files["csv"])
    assert "holds images" in _refused(tmp_path, capsys, rnn_text, image_folders["flat"])


def _scan_warning(monkeypatch, path):
    """(files.scan(path), the warnings it gave)."""
    warnings = []
    monkeypatch.setattr(files, "warn", warnings.append)
    return files.scan(str(path)), warnings


def test_unreadable_and_stray_files_are_left_out_with_a_warning(image_folders, tmp_path,
                                                                 monkeypatch):
    import shutil

    folder = tmp_path / "messy"
    shutil.copytree(image_folders["flat"], folder)
    (folder / "notes.txt").write_text("not data")
    (folder / "Bag" / ".DS_Store").write_bytes(b"\0\1")
    (folder / "Bag" / "empty.jpg").write_bytes(b"")
    png = next(p for p in (folder / "Bag").iterdir() if p.suffix == ".png")
    (folder / "Bag" / "truncated.png").write_bytes(png.read_bytes()[:60])
    (folder / "Coat" / "fake.jpg").write_text("hello")
    found, warnings = _scan_warning(monkeypatch, folder)
    said = " ".join(warnings)
    for name in ("notes.txt", "empty.jpg (empty)", "truncated.png (cannot be decoded)",
                 "fake.jpg (not an image)"):
        assert name in said
    assert ".DS_Store" not in said  # hidden files are no one's data
    kept = [p for items, _ in found.splits.values() for p in items]
    assert len(kept) == PER_CLASS * 10 and not any("truncated" in p or "fake" in p for p in kept)
    # Every kept file decodes: no epoch stops on a bad one.
    for split in files.SPLIT_FOLDERS:
        assert sum(1 for _ in files.dataset(found, split)) == len(found.splits[split][0])


def test_bad_tables_are_refused_with_one_line(text_files, tmp_path, capsys):
    assert "--label-column" in _refused(tmp_path, capsys, cnn_text, text_files["csv"],
                                        "--label-column", "stars")
    other = tmp_path / "other.csv"
    other.write_text("a,b\nfine film,1\nbad film,0\n", encoding="utf-8")
    assert "cannot tell which column holds the text" in _refused(
        tmp_path, capsys, cnn_text, str(other))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    assert "not UTF-8" in _refused(tmp_path, capsys, cnn_text, str(latin))


def test_rows_without_a_text_or_a_label_are_left_out_with_a_warning(tmp_path, monkeypatch):
    table = tmp_path / "t.csv"
    lines = ["text,label"] + [f"review number {i},{'good' if i % 2 else 'bad'}"
                              for i in range(60)] + [",good", "no label here,"]
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    found, warnings = _scan_warning(monkeypatch, table)
    assert found.class_names == ["bad", "good"]
    assert sum(len(items) for items, _ in found.splits.values()) == 60
    assert "2 row(s)" in warnings[0] and "62, 63" in warnings[0]


# --- serving real image files ----------------------------------------------------------


@pytest.mark.slow
def test_image_bytes_answers_the_files_as_the_pixel_signature_answers_their_pixels(
        image_folders, tmp_path):
    """In a fresh interpreter without our code: the files themselves (PNG and JPEG)
    through `image_bytes`, the pixels they were written from through
    `serving_default`. PNG is lossless, so those rows agree to rounding; JPEG's
    within its loss."""
    from core import export

    folder = image_folders["flat"]
    cnn.main(_tiny(tmp_path, folder, "--filters", "4,8", "--dense-units", "16"))
    path = str(tmp_path / "sm" / "cnn" / "1")
    names = files.scan(folder).splits["test"][0][:20]
    originals = _fashion(PER_CLASS * 10)
    pixels = np.stack([originals[int(os.path.basename(n).split(".")[0])][0] for n in names])
    raw = np.array([open(n, "rb").read() for n in names])
    by_bytes = "saved_model:image_bytes"
    answers = export.serve_many_in_fresh_process(path, {  # one interpreter for the four
        "file": (by_bytes, {"image_bytes": raw}), "pixels": ("saved_model", {"image": pixels}),
        "empty": (by_bytes, {"image_bytes": raw[:0]}),
        "not an image": (by_bytes, {"image_bytes": np.array([b"not an image"])})},
        raise_errors=False)
    by_file, by_pixels = answers["file"], answers["pixels"]
    png = np.array([n.endswith(".png") for n in names])
    assert png.any() and not png.all()
    np.testing.assert_allclose(by_file["probabilities"][png], by_pixels["probabilities"][png],
                               atol=1e-5)
    np.testing.assert_allclose(by_file["probabilities"][~png], by_pixels["probabilities"][~png],
                               atol=0.05)
    assert list(by_file["class_name"][png]) == list(by_pixels["class_name"][png])
    assert answers["empty"]["probabilities"].shape == (0, 10)
    assert isinstance(answers["not an image"], RuntimeError)
    assert "Unknown image file format" in str(answers["not an image"])


def test_tsv_and_json_lines_tables_are_read_like_a_csv(tmp_path):
    rows = [(f"a {'fine' if i % 2 else 'poor'} film, number {i}", "good" if i % 2 else "bad")
            for i in range(80)]
    (tmp_path / "t.tsv").write_text("sentence\tclass\n" + "".join(
        f"{text}\t{label}\n" for text, label in rows), encoding="utf-8")
    (tmp_path / "t.jsonl").write_text("".join(
        json.dumps({"body": text, "topic": label}) + "\n" for text, label in rows),
        encoding="utf-8")
    for name in ("t.tsv", "t.jsonl"):
        found = files.scan(str(tmp_path / name))
        assert found.class_names == ["bad", "good"] and not found.streamed
        texts = [t for split in files.SPLIT_FOLDERS for t in found.splits[split][0]]
        assert sorted(texts) == sorted(text for text, _ in rows)
