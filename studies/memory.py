"""Memory over distance: does a plain RNN forget the first words, and does an LSTM fix it?

The notes claim:
- "A standard RNN suffers from vanishing gradients: words at the beginning of
  a sequence lose significance; LSTM solves it."
- "RNNs do well with tanh" (rather than relu).

The task: a real rt_snippets review, cut to its first `--review-tokens` words
(left-padded and masked, so its last word always sits at the same place),
followed by L filler words, labelled with the review's sentiment. The filler
is drawn at random from the training split's 20 most frequent words (the, a,
and, of, ...) at their frequencies, the same for both classes, so it carries
no information about the label: the label depends only on the review at the
start, and L is the distance the network has to carry it to the end, where
the classifier reads the state. Why this and not a synthetic copy or adding
task: the claim is about words, and here both the words and the label are
real; a network that remembers scores at L = 300 what it scores at L = 1 (the
ceiling of a one-way RNN on these reviews), one that forgets falls to the
majority class. Why frequent words: filler drawn from the whole vocabulary
(`--filler-words 0`, the first design) is made of sentiment words too, and
100 random ones drown a 20-word review for any reader, remembering or not.

Setup: the RNN recipe's model (`recipes.rnn_text.build_model`: embedding 64,
32 units, dropout 0.3) one-way (a backward layer would read the review last),
for SimpleRNN with tanh and with relu, LSTM and GRU as Keras initializes them,
and LSTM and GRU whose keep gates start open ("chrono" initialization, added
after the plain LSTM and GRU learned nothing at L = 100 in the first runs:
what moves them); Adam 1e-3 with
`clipnorm` 1 for all (a relu RNN is otherwise free to explode), batch 128,
`--epochs` epochs keeping the best validation epoch. The same filler for every
cell at a given L and seed.

Measured for each cell and L: test accuracy (read once per model), the
gradient of the loss with respect to each position's embedding, at
initialization and after training (its norm at the review's last word over its
norm at the last filler word: how much of the error signal travels back L
steps), and milliseconds per training step.

    python -m studies.memory                          # about 8 minutes here
    python -m studies.memory --distances 1,100 --cells simple-tanh,lstm --epochs 2
"""

import sys

import keras
import numpy as np
import tensorflow as tf

import studies
from core import text, training
from recipes import rnn_text

#: name -> (recipe's --cell, --activation)
CELLS = {"simple-tanh": ("simple", "tanh"), "simple-relu": ("simple", "relu"),
         "lstm": ("lstm", "tanh"), "gru": ("gru", "tanh"),
         "lstm-chrono": ("lstm", "tanh"), "gru-chrono": ("gru", "tanh")}
BATCH = 128
VOCABULARY = 20_000
FILLER_WORDS = 20
MARGIN = 0.03  # accuracy points treated as a real difference: about 2 se on ~1,000 texts


def check_cells(names):
    unknown = [n for n in names if n not in CELLS]
    if unknown:
        raise studies.StudyError(f"unknown cell {unknown[0]!r}; one of {', '.join(CELLS)}")


def check_distances(distances):
    bad = [d for d in distances if d < 1]
    if bad:
        raise studies.StudyError(f"a distance L must be >= 1 filler word, got {bad[0]}")


def left_aligned(ids):
    """Token ids (padding at the end) -> the same tokens with the padding in front."""
    out = np.zeros_like(ids)
    for row, tokens in enumerate(ids):
        tokens = tokens[tokens > 0]
        if len(tokens):
            out[row, -len(tokens):] = tokens
    return out


def word_frequencies(ids, vocabulary_size, top=0):
    """Each token id's share of the (non-padding) tokens in `ids`; given `top`, of
    the `top` most frequent words only (the out-of-vocabulary token 1 left out)."""
    counts = np.bincount(ids[ids > 0], minlength=vocabulary_size).astype("float64")
    if top:
        counts[1] = 0
        counts[np.argsort(counts)[:-top]] = 0
    return counts / counts.sum()


def make_task(reviews, labels, distance, frequencies, rng):
    """(reviews followed by `distance` filler words, labels).

    The filler is drawn from `frequencies` alone, never from `labels`; the
    labels are the reviews' own.
    """
    check_distances([distance])
    filler = rng.choice(len(frequencies), size=(len(reviews), distance), p=frequencies)
    return np.concatenate([reviews, filler], axis=1), labels.copy()


def load(review_tokens, filler_words, limit=0):
    """Left-aligned review ids for train/validation/test, labels, the filler's word
    frequencies, and the vocabulary."""
    splits = {name: studies.texts(name, limit) for name in ("train", "validation", "test")}
    vectorizer = text.make_vectorizer(tf.data.Dataset.from_tensor_slices(splits["train"][0]),
                                      VOCABULARY, review_tokens)
    ids = {name: left_aligned(vectorizer(x).numpy()) for name, (x, _) in splits.items()}
    labels = {name: y for name, (_, y) in splits.items()}
    frequencies = word_frequencies(ids["train"], vectorizer.vocabulary_size(), filler_words)
    return ids, labels, frequencies, vectorizer.get_vocabulary()


def recurrent_parameters(model):
    """Weights of the model's recurrent layers (inside Bidirectional too)."""
    return sum(layer.count_params() for layer in model.layers
               if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)))


def chrono_init(model, t_max, rng):
    """Start a gated cell remembering: its keep gate's bias log(u), u ~ U(1, t_max - 1).

    Tallec & Ollivier (2018), "Can recurrent neural networks warp time?": an
    LSTM's forget-gate bias log(u) and input-gate bias -log(u), so that the
    state decays over about u steps. Keras starts the forget bias at 1, which
    keeps sigmoid(1) = 0.73 of the state per step: 2e-14 after 100 steps. For
    a GRU (h = z h_prev + (1 - z) h_new in Keras) the update gate z's input
    bias plays the forget gate's part; Keras starts it at 0 (0.5 per step).
    """
    layer = next(layer for layer in model.layers
                 if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)))
    bias = layer.cell.bias.numpy()
    units = layer.cell.units
    keep = np.log(rng.uniform(1, max(t_max - 1, 2), units))
    if isinstance(layer, keras.layers.LSTM):  # gates i, f, c, o
        bias[:units], bias[units:2 * units] = -keep, keep
    else:  # (input, recurrent) biases of gates z, r, h
        bias[0, :units] = keep
    layer.cell.bias.assign(bias)


def gradient_profile(model, ids, labels):
    """Mean norm over examples of d loss / d embedding at each position."""
    embedding = next(layer for layer in model.layers
                     if isinstance(layer, keras.layers.Embedding))
    rest = model.layers[model.layers.index(embedding) + 1:]
    ids = tf.constant(ids)
    embedded, mask = embedding(ids), embedding.compute_mask(ids)
    with tf.GradientTape() as tape:
        tape.watch(embedded)
        x = rest[0](embedded, mask=mask, training=False)
        for layer in rest[1:]:
            x = layer(x, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(labels, x)
    gradient = tape.gradient(loss, embedded)
    return np.linalg.norm(gradient.numpy(), axis=-1).mean(axis=0)


def train_one(cell, task, vocabulary_size, epochs, seed, threshold=None):
    """Train one cell on one task ({split: (ids, labels)}); its measurements, with
    the seconds until validation accuracy first reached `threshold` if given."""
    (x, y), (x_val, y_val), (x_test, y_test) = task["train"], task["validation"], task["test"]
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(seed)
    kind, activation = CELLS[cell]
    model = rnn_text.build_model(vocabulary_size, x.shape[1], 2, cell=kind,
                                 activation=activation, bidirectional=False)
    if cell.endswith("-chrono"):
        chrono_init(model, x.shape[1], np.random.default_rng(seed))
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    training.build_state(model, (x, y))  # one trace of the step, not two
    probe = x[:256], y[:256]
    review_end = task["review_tokens"] - 1  # the review's last word, in every example
    before = gradient_profile(model, *probe)
    clock = training.EpochClock()
    best = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=epochs,
                                         restore_best_weights=True)
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=(x_val, y_val),
                        callbacks=[clock, best], verbose=0).history
    after = gradient_profile(model, *probe)
    test = model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1]
    return {
        "test_accuracy": float(test),
        "best_val_accuracy": float(max(history["val_accuracy"])),
        "history": history,
        "parameters": int(model.count_params()),
        "recurrent_parameters": recurrent_parameters(model),
        "seconds_per_step": clock.seconds_per_step(),
        "epoch_seconds": clock.seconds,
        "seconds_to_threshold": None if threshold is None else studies.seconds_to(
            threshold, history["val_accuracy"], clock.seconds),
        "gradient_ratio_init": float(before[review_end] / before[-1]),
        "gradient_ratio_trained": float(after[review_end] / after[-1]),
        "profile_init": before.tolist(),
        "profile_trained": after.tolist(),
    }


def tasks(ids, labels, frequencies, distance, seed, review_tokens):
    """The task at one distance: the same filler for every cell (seeded per split)."""
    out = {"review_tokens": review_tokens}
    for i, name in enumerate(("train", "validation", "test")):
        rng = np.random.default_rng([seed, distance, i])
        out[name] = make_task(ids[name], labels[name], distance, frequencies, rng)
    return out


def study(args):
    check_cells(args.cells)
    check_distances(args.distances)
    studies.check_positive(epochs=args.epochs, review_tokens=args.review_tokens)
    if args.filler_words < 0:
        raise studies.StudyError(f"filler_words must be >= 0, got {args.filler_words}")
    ids, labels, frequencies, vocabulary = load(args.review_tokens, args.filler_words,
                                                args.limit)
    vocabulary_size = len(vocabulary)
    print("[memory] filler words: " + ", ".join(
        vocabulary[i] for i in np.flatnonzero(frequencies)), flush=True)
    majority = float(max(np.mean(labels["test"]), 1 - np.mean(labels["test"])))
    runs = {}
    for distance in args.distances:
        for seed in args.seeds:
            task = tasks(ids, labels, frequencies, distance, seed, args.review_tokens)
            for cell in args.cells:
                with training.released_graphs():
                    r = train_one(cell, task, vocabulary_size, args.epochs, seed)
                runs.setdefault(f"{cell}/{distance}", []).append(r)
                print(f"[memory] L={distance:<4} {cell:<12} seed {seed}: test "
                      f"{r['test_accuracy']:.4f}, gradient ratio {r['gradient_ratio_init']:.1e} "
                      f"at init, {r['gradient_ratio_trained']:.1e} trained, "
                      f"{1000 * r['seconds_per_step']:.0f} ms/step", flush=True)
    report(args, runs, majority, [vocabulary[i] for i in np.flatnonzero(frequencies)])


def ratio(value):
    return "0 (float32 underflow)" if value == 0 else f"{value:.1e}"


def summary(runs, key):
    return studies.mean_sd([r[key] for r in runs])


def verdicts(args, runs, majority):
    """The claims, decided from the mean test accuracies (a difference counts past MARGIN)."""
    short, long = min(args.distances), max(args.distances)

    def acc(cell, distance):
        return summary(runs[f"{cell}/{distance}"], "test_accuracy")[0]

    out = []
    if "simple-tanh" in args.cells:
        first, last = acc("simple-tanh", short), acc("simple-tanh", long)
        forgets = last <= majority + MARGIN < first
        out.append(
            f"- A standard RNN forgets the first words: SimpleRNN (tanh) {first:.4f} at L = "
            f"{short}, {last:.4f} at L = {long} (majority class {majority:.4f}). "
            + ("**Holds.**" if forgets else
               "**Does not hold here**: it still reads the review from "
               f"{long} words away." if last > majority + MARGIN else
               "**Not decided**: it learned nothing even at the shortest distance."))
    def keeps(cell):
        """None: learned nothing even at the shortest distance; else whether it kept it."""
        first, last = acc(cell, short), acc(cell, long)
        if first <= majority + MARGIN:
            return None
        return last >= first - MARGIN and last > majority + MARGIN

    for gated in ("lstm", "gru"):
        tried = [c for c in (gated, f"{gated}-chrono") if c in args.cells]
        if not tried:
            continue
        results = {c: keeps(c) for c in tried}
        line = f"- {gated.upper()} keeps it: " + "; ".join(
            f"{c} {acc(c, short):.4f} at L = {short}, {acc(c, long):.4f} at L = {long}"
            for c in tried) + ". "
        plain, chrono = results.get(gated), results.get(f"{gated}-chrono")
        opened = f"{gated}-chrono"
        if plain is None and gated in results:
            line += "**Not decided**: it learned nothing even at the shortest distance."
        elif plain:
            line += "**Holds.**"
        elif chrono:
            line += ("**Holds with a caveat**: only when its gates start open (chrono "
                     "initialization); as Keras initializes it, it forgets like the plain RNN.")
        elif opened in results and acc(opened, long) > majority + MARGIN:
            line += (f"**Holds in part**: only with its gates started open, and then it keeps "
                     f"{100 * (acc(opened, long) - majority):.1f} of the "
                     f"{100 * (acc(opened, short) - majority):.1f} points it scores above the "
                     f"majority class at L = {short}; as Keras initializes it, it forgets like "
                     "the plain RNN.")
        else:
            line += "**Does not hold here.**"
        out.append(line)
    if {"simple-tanh", "simple-relu"} <= set(args.cells):
        diffs = [acc("simple-tanh", d) - acc("simple-relu", d) for d in args.distances]
        better = sum(d > MARGIN for d in diffs)
        worse = sum(d < -MARGIN for d in diffs)
        ahead = [str(d) for d, diff in zip(args.distances, diffs) if diff > MARGIN]
        out.append(
            "- RNNs do well with tanh: tanh minus relu, per distance: "
            + ", ".join(f"{100 * d:+.1f}" for d in diffs) + " points. "
            + (f"**Holds**: tanh is ahead past the noise at L = {', '.join(ahead)}, level "
               "elsewhere." if better and not worse else
               "**Does not hold here**: relu does better." if worse and not better else
               "**Does not hold here**: no difference past the noise." if not better else
               "**Mixed.**"))
    ratios = {when: {cell: summary(runs[f"{cell}/{long}"], f"gradient_ratio_{when}")[0]
                     for cell in args.cells} for when in ("init", "trained")}
    line = (f"- Vanishing gradients: the gradient reaching the review's last word from {long} "
            "words later, over the gradient at the last word: at initialization "
            + ", ".join(f"{c} {ratio(r)}" for c, r in ratios["init"].items())
            + "; after training "
            + ", ".join(f"{c} {ratio(r)}" for c, r in ratios["trained"].items())
            + ".")
    trained = ratios["trained"]
    if "simple-tanh" in args.cells:
        plain = trained["simple-tanh"]
        line += (" The plain RNN's gradient vanishes over that distance "
                 + ("(**holds**: under 1e-2 of it arrives)." if plain < 1e-2 else
                    "(**does not hold here**: 1e-2 or more of it arrives)."))
        for cell in ("lstm", "lstm-chrono"):
            if cell in trained:
                passes = trained[cell] >= 10 * plain and trained[cell] >= 1e-2
                line += (f" {cell}: " + ("passes back 10 times more and at least 1e-2"
                                         if passes else "no better") + ".")
    out.append(line)
    return out


def report(args, runs, majority, filler):
    plt = studies.pyplot()
    seeds = ", ".join(map(str, args.seeds))
    lines = [
        f"# Memory over distance (rt_snippets review, first {args.review_tokens} words, then "
        f"L filler words; one-way RNN recipe model; {args.epochs} epochs; seeds {seeds})", "",
        "![accuracy and gradient against distance](memory.png)", "",
        f"Filler words ({len(filler)}, drawn at their training frequencies): "
        + ", ".join(f"`{w}`" for w in filler) + ".", "",
        f"Majority class on test: {majority:.4f}. Values are means over the seeds "
        "(± their standard deviation where there are several).", "",
        "| cell | L | parameters | test accuracy | gradient ratio at init | gradient ratio "
        "trained | ms per step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in args.cells:
        for distance in args.distances:
            rs = runs[f"{cell}/{distance}"]
            acc, sd = summary(rs, "test_accuracy")
            lines.append(
                f"| {cell} | {distance} | {rs[0]['parameters']:,} | {acc:.4f}"
                + (f" ± {sd:.4f}" if len(rs) > 1 else "")
                + f" | {ratio(summary(rs, 'gradient_ratio_init')[0])} | "
                f"{ratio(summary(rs, 'gradient_ratio_trained')[0])} | "
                f"{1000 * summary(rs, 'seconds_per_step')[0]:.0f} |")
    lines += ["", "## Verdict", "", *verdicts(args, runs, majority)]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for cell in args.cells:
        accs = [summary(runs[f"{cell}/{d}"], "test_accuracy") for d in args.distances]
        axes[0].errorbar(args.distances, [a for a, _ in accs], yerr=[s for _, s in accs],
                         marker="o", capsize=3, label=cell)
        line, = axes[1].plot(args.distances, [summary(runs[f"{cell}/{d}"],
                                                      "gradient_ratio_init")[0]
                                              for d in args.distances], marker="o", label=cell)
        axes[1].plot(args.distances, [summary(runs[f"{cell}/{d}"], "gradient_ratio_trained")[0]
                                      for d in args.distances], marker="x", ls="--",
                     color=line.get_color())
        profile = np.mean([r["profile_init"] for r in runs[f"{cell}/{max(args.distances)}"]],
                          axis=0)
        axes[2].plot(profile, label=cell, color=line.get_color())
    axes[0].axhline(majority, color="grey", ls="--", lw=0.8, label="majority class")
    axes[0].set(xscale="log", xlabel="distance L (filler words)", ylabel="test accuracy",
                title="accuracy against distance")
    axes[1].set(xscale="log", yscale="log", xlabel="distance L",
                ylabel="|grad| at review end / at last word",
                title="gradient reaching the review (o init, x trained)")
    axes[2].axvline(args.review_tokens - 1, color="grey", ls="--", lw=0.8)
    axes[2].set(yscale="log", xlabel="position", ylabel="mean |d loss / d embedding|",
                title=f"gradient per position at init, L = {max(args.distances)}")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[2].legend()
    fig.tight_layout()
    studies.write(args, "memory", lines, {"memory": fig},
                  {"majority": majority, "filler": filler, "runs": runs})


def main(argv=None):
    p = studies.parser("python -m studies.memory", __doc__)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--distances", type=ints, default=[1, 30, 100, 300],
                   help="filler words after the review, comma-separated (default: 1,30,100,300)")
    p.add_argument("--cells", type=lambda s: s.split(","), default=list(CELLS),
                   help=f"comma-separated, among {','.join(CELLS)} (default: all)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=ints, default=[42], help="comma-separated (default: 42)")
    p.add_argument("--review-tokens", type=int, default=32,
                   help="words of each review kept (default: 32; 93%% of reviews are shorter)")
    p.add_argument("--filler-words", type=int, default=FILLER_WORDS,
                   help="the filler is drawn from the training split's this many most "
                   "frequent words (the, a, of, ...: little sentiment); 0 = the whole "
                   "vocabulary (default: 20)")
    p.add_argument("--limit", type=int, default=0,
                   help="at most this many texts per split (0 = all); for smoke tests")
    studies.run_cli(p, study, argv)


if __name__ == "__main__":
    sys.exit(main())
