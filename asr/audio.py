"""Audio in and out: decoding what callers send, G.711 for the phone line, resampling, WAV writing.

Everything that leaves this module is an :class:`~asr.types.Audio`: mono int16 at the source's own rate. What comes in:

* WAV: PCM 8/16/24/32-bit, IEEE float, G.711 μ-law (format 7) and A-law (format 6), also inside
  ``WAVE_FORMAT_EXTENSIBLE``; other WAV encodings (ADPCM, GSM 6.10, MP3-in-WAV) go to FFmpeg.
* Raw G.711 (``format_hint="ulaw"`` or ``"alaw"``, 8 kHz unless ``"ulaw:16000"``) and raw little-endian PCM16
  (``format_hint="pcm16:16000"``), as telephony gateways send them.
* FLAC, Ogg (Vorbis, Opus), AIFF, AU through libsndfile (``soundfile``).
* AMR-NB (WeChat voice messages, ``#!AMR\\n``), AMR-WB, MP3, AAC/M4A, WebM through FFmpeg (PyAV's bundled build).

Anything that cannot be decoded raises :class:`BadAudio` (a :class:`~asr.types.SpeechError`) with a message for the
log; the decoders' own exceptions never escape. Input is capped (:data:`MAX_BYTES`, :data:`MAX_SECONDS`) because it
comes from the outside. Decoder libraries are imported when first needed, not at import time.
"""
from __future__ import annotations

import io
import logging
import os
import struct
import wave
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

from asr.types import Audio, SpeechError

logger = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024  # larger input is refused before decoding
MAX_SECONDS = 600.0  # ten minutes: longer audio is refused (also guards against decompression bombs)
MIN_RATE = 2000
MAX_RATE = 384000
TELEPHONE_RATE = 8000

PathLike = Union[str, "os.PathLike[str]"]


class BadAudio(SpeechError):
    """The input is not audio this module can decode (empty, truncated, corrupt, too long, or a wrong format hint)."""


# --------------------------------------------------------------------------------------------------------------------
# G.711 (ITU-T G.711; the classic Sun reference tables, bit-exact with the old ``audioop`` module)

_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


@lru_cache(maxsize=None)
def _ulaw_encode_table() -> np.ndarray:
    """μ-law code for every int16 value, indexed by the value viewed as uint16."""
    linear = np.arange(65536, dtype=np.int32)
    linear = np.where(linear >= 32768, linear - 65536, linear)  # index i ↔ int16 value with the same bits
    pcm = linear >> 2  # 14-bit magnitude range, as G.711 specifies for μ-law
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21  # clip, then add the bias (0x84 >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, magnitude, side="left")
    code = (np.minimum(seg, 7) << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


@lru_cache(maxsize=None)
def _ulaw_decode_table() -> np.ndarray:
    codes = (~np.arange(256, dtype=np.int32)) & 0xFF
    magnitude = (((codes & 0x0F) << 3) + 0x84) << ((codes & 0x70) >> 4)
    return np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


@lru_cache(maxsize=None)
def _alaw_encode_table() -> np.ndarray:
    """A-law code for every int16 value, indexed by the value viewed as uint16."""
    linear = np.arange(65536, dtype=np.int32)
    linear = np.where(linear >= 32768, linear - 65536, linear)
    pcm = linear >> 3  # 13-bit range for A-law
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, magnitude, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


@lru_cache(maxsize=None)
def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (codes & 0x70) >> 4
    magnitude = (codes & 0x0F) << 4
    magnitude = np.where(seg == 0, magnitude + 8, (magnitude + 0x108) << np.maximum(seg - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _as_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise TypeError(f"expected int16 samples, got {samples.dtype}")
    return samples.reshape(-1)


def ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 μ-law bytes (one per sample) for int16 ``samples``."""
    return _ulaw_encode_table()[_as_int16(samples).view(np.uint16)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """int16 samples for G.711 μ-law ``data`` (any bytes-like object)."""
    return _ulaw_decode_table()[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """G.711 A-law bytes (one per sample) for int16 ``samples``."""
    return _alaw_encode_table()[_as_int16(samples).view(np.uint16)].tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """int16 samples for G.711 A-law ``data`` (any bytes-like object)."""
    return _alaw_decode_table()[np.frombuffer(data, dtype=np.uint8)]


# --------------------------------------------------------------------------------------------------------------------
# Resampling, the phone line, levels


def resample(audio: Audio, rate: int) -> Audio:
    """``audio`` at ``rate`` Hz (soxr, high quality). The same object when the rate already matches.

    For a stream cut into chunks use :class:`Resampler`, which keeps the filter state between chunks.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if audio.rate == rate:
        return audio
    if not len(audio.samples):
        return Audio(np.zeros(0, dtype=np.int16), rate)
    import soxr

    out = soxr.resample(_as_int16(audio.samples), audio.rate, rate, quality="HQ")
    return Audio(np.ascontiguousarray(out, dtype=np.int16), rate)


class Resampler:
    """Streaming resampler for one stream of PCM16 chunks (any size); no clicks at chunk boundaries."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive, got {in_rate} → {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None
        self._pending = b""

    def feed(self, pcm: bytes, *, last: bool = False) -> bytes:
        """Resampled PCM16 for ``pcm``; ``last=True`` on the final chunk flushes the filter's tail."""
        data = self._pending + pcm
        usable = len(data) - len(data) % 2
        self._pending = data[usable:]
        if self.in_rate == self.out_rate:
            return data[:usable]
        if self._stream is None:
            import soxr

            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality="HQ")
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        out = self._stream.resample_chunk(samples, last=last)
        return np.ascontiguousarray(out, dtype="<i2").tobytes()


def to_telephone(audio: Audio) -> bytes:
    """What a phone line carries: 8 kHz G.711 μ-law, one byte per sample."""
    return ulaw_encode(resample(audio, TELEPHONE_RATE).samples)


def from_telephone(data: bytes) -> Audio:
    """8 kHz G.711 μ-law bytes (a phone line's payload) as :class:`Audio`."""
    return Audio(ulaw_decode(data), TELEPHONE_RATE)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 ``samples`` in dB relative to full scale (-inf for digital silence or no samples)."""
    if not len(samples):
        return float("-inf")
    values = np.asarray(samples, dtype=np.float64)
    power = float(np.mean(values * values))
    return 10.0 * np.log10(power / (32768.0 * 32768.0)) if power > 0 else float("-inf")


def speech_extent(audio: Audio, threshold_dbfs: float = -40.0) -> tuple[float, float]:
    """(start, end) seconds of the part of a recording louder than ``threshold_dbfs`` in 10 ms frames; (0, 0) when
    nothing is."""
    frame = max(1, audio.rate // 100)
    loud = [i for i in range(len(audio.samples) // frame)
            if rms_dbfs(audio.samples[i * frame:(i + 1) * frame]) > threshold_dbfs]
    if not loud:
        return 0.0, 0.0
    return loud[0] * frame / audio.rate, (loud[-1] + 1) * frame / audio.rate


def voiced_ms(audio: Audio, *, level_dbfs: float = -55.0, flatness: float = 0.35) -> int:
    """Milliseconds of ``audio`` (20 ms frames at 16 kHz) that are loud enough and have the uneven spectrum of a
    voice: the spectral flatness of their 150–4000 Hz band (geometric over arithmetic mean of the power) below
    ``flatness``. White noise and random bytes read as samples are flat (near 1) at any level; speech, even at 8 kHz
    through G.711 or under noise, is far below. On the evaluation recordings every utterance has at least 240 ms
    of such frames, down to a one-syllable "是"; white noise and random bytes have none."""
    samples = resample(audio, 16000).samples.astype(np.float64)
    frame = 320
    count = len(samples) // frame
    if not count:
        return 0
    frames = samples[:count * frame].reshape(count, frame)
    frames -= frames.mean(axis=1, keepdims=True)
    loud = np.sqrt(np.mean(frames * frames, axis=1)) / 32768.0 > 10.0 ** (level_dbfs / 20.0)
    if not loud.any():
        return 0
    power = np.abs(np.fft.rfft(frames[loud] * np.hanning(frame), axis=1)) ** 2
    hz = np.fft.rfftfreq(frame, 1 / 16000)
    band = power[:, (hz >= 150) & (hz <= 4000)] + 1e-12
    flat = np.exp(np.mean(np.log(band), axis=1)) / np.mean(band, axis=1)
    return int(np.count_nonzero(flat < flatness)) * 20


def is_noise(audio: Audio, min_voiced_ms: int = 60) -> bool:
    """True when nothing in ``audio`` sounds like a voice (``voiced_ms``): a recognizer given it would only guess."""
    return voiced_ms(audio) < min_voiced_ms


def is_silent(audio: Audio, threshold_dbfs: float = -50.0, *, window_ms: int = 50) -> bool:
    """True if no ``window_ms`` stretch of ``audio`` is louder than ``threshold_dbfs`` (RMS, DC offset removed).

    Windowed so that a short word in a long, quiet recording still counts as sound. Empty audio is silent.
    """
    samples = audio.samples
    if not len(samples):
        return True
    window = min(len(samples), max(1, int(audio.rate * window_ms / 1000)))
    count = len(samples) // window
    frames = samples[:count * window].astype(np.float64).reshape(count, window)
    frames -= frames.mean(axis=1, keepdims=True)
    loudest = float(np.max(np.mean(frames * frames, axis=1)))
    threshold = (10.0 ** (threshold_dbfs / 10.0)) * 32768.0 * 32768.0
    return loudest <= threshold


# --------------------------------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True)
class _Hint:
    kind: str  # "raw-ulaw", "raw-alaw", "raw-pcm16" or a container kind ("wav", "mp3", ...)
    rate: int = 0


_CONTAINER_ALIASES = {
    "wav": "wav", "wave": "wav", "vnd.wave": "wav",
    "flac": "flac",
    "ogg": "ogg", "oga": "ogg", "opus": "ogg", "vorbis": "ogg",
    "amr": "amr", "amr-nb": "amr", "amrnb": "amr", "amr-wb": "amr-wb", "amrwb": "amr-wb", "awb": "amr-wb",
    "mp3": "mp3", "mpeg": "mp3", "mpeg3": "mp3", "mpga": "mp3",
    "m4a": "mp4", "mp4": "mp4", "3gp": "mp4", "3gpp": "mp4", "aac": "aac",
    "webm": "webm", "mkv": "webm", "matroska": "webm",
    "aiff": "aiff", "aif": "aiff", "au": "au", "snd": "au",
}
_RAW_ALIASES = {
    "ulaw": "raw-ulaw", "mulaw": "raw-ulaw", "mu-law": "raw-ulaw", "pcmu": "raw-ulaw", "basic": "raw-ulaw",
    "alaw": "raw-alaw", "a-law": "raw-alaw", "pcma": "raw-alaw",
    "pcm16": "raw-pcm16", "s16le": "raw-pcm16", "l16le": "raw-pcm16",
}
# Containers FFmpeg handles for us; the value is its demuxer name (None: let it probe).
_FFMPEG_FORMATS = {"amr": "amr", "amr-wb": "amr", "mp3": "mp3", "mp4": None, "aac": "aac", "webm": None}
_SOUNDFILE_KINDS = {"flac", "ogg", "aiff", "au"}
# What FFmpeg may claim for data we could not recognise ourselves; anything else is treated as garbage.
_PROBED_AUDIO_DEMUXERS = {"mp3", "aac", "amr", "amrnb", "amrwb", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "ogg",
                          "flac", "wav", "caf", "aiff", "au", "ac3", "eac3", "wv", "ape", "tta", "mpc", "mpc8"}


def _parse_hint(format_hint: str) -> _Hint:
    text = format_hint.split(";")[0].strip().lower()  # a MIME type's parameters do not matter here
    name, _, rate_text = text.partition(":")
    name = name.lstrip(".")
    if name.startswith("audio/"):
        name = name[len("audio/"):]
    if name.startswith("x-"):
        name = name[2:]
    rate = 0
    if rate_text:
        try:
            rate = int(rate_text)
        except ValueError:
            raise BadAudio(f"format hint {format_hint!r}: the rate after ':' must be a whole number of Hz") from None
        if not MIN_RATE <= rate <= MAX_RATE:
            raise BadAudio(f"format hint {format_hint!r}: rate {rate} Hz is out of range")
    if name in _RAW_ALIASES:
        kind = _RAW_ALIASES[name]
        if kind == "raw-pcm16" and not rate:
            raise BadAudio(f"format hint {format_hint!r}: raw PCM16 needs its rate, e.g. 'pcm16:16000'")
        return _Hint(kind, rate or TELEPHONE_RATE)
    if name in _CONTAINER_ALIASES:
        if rate:
            raise BadAudio(f"format hint {format_hint!r}: a rate only applies to raw formats (ulaw, alaw, pcm16)")
        return _Hint(_CONTAINER_ALIASES[name])
    raise BadAudio(f"unknown format hint {format_hint!r}")


def sniff(data: bytes) -> str | None:
    """The container ``data`` starts like ("wav", "flac", "ogg", "amr", "amr-wb", "silk", "mp3", "mp4", "webm",
    "aiff", "au", "rf64"), or None when the first bytes say nothing certain (raw samples, ADTS AAC, garbage)."""
    head = bytes(data[:16])
    if head.startswith(b"RIFF") and (head[8:12] == b"WAVE" or len(head) < 12):
        return "wav"
    if head.startswith((b"RF64", b"BW64")) and head[8:12] == b"WAVE":
        return "rf64"
    if head.startswith(b"#!AMR-WB\n"):
        return "amr-wb"
    if head.startswith(b"#!AMR\n"):
        return "amr"
    if head.startswith(b"#!SILK") or head.startswith(b"\x02#!SILK"):
        return "silk"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"ID3"):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b".snd"):
        return "au"
    return None


def decode(data: bytes, *, format_hint: str | None = None, max_seconds: float = MAX_SECONDS) -> Audio:
    """Decode ``data`` to mono int16 at its own rate.

    The container is recognised from its first bytes; ``format_hint`` is needed for headerless input
    (``"ulaw"``, ``"alaw"``, ``"pcm16:16000"``, optionally ``"ulaw:16000"``) and may name a container (``"amr"``,
    ``"mp3"``, ``".wav"``, ``"audio/amr"``), in which case data that is recognisably something else is refused.
    Raises :class:`BadAudio` for empty, truncated, corrupt, over-long or mis-hinted input.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() takes bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BadAudio("no audio data (0 bytes)")
    if len(data) > MAX_BYTES:
        raise BadAudio(f"audio data too large: {len(data)} bytes, the limit is {MAX_BYTES}")
    hint = _parse_hint(format_hint) if format_hint else None
    found = sniff(data)
    if hint and hint.kind.startswith("raw-"):
        if found:
            raise BadAudio(f"format hint {format_hint!r} says raw samples, but the data is a {found} file")
        audio = _decode_raw(data, hint, max_seconds)
    else:
        if hint and found and found != hint.kind and not {found, hint.kind} <= {"mp4", "aac"}:
            raise BadAudio(f"format hint {format_hint!r} does not match the data, which is a {found} file")
        if hint and not found and hint.kind in ("wav", "flac", "ogg", "amr", "amr-wb", "aiff", "au"):
            raise BadAudio(f"format hint {format_hint!r}, but the data does not start with that format's header")
        audio = _decode_container(data, found or (hint.kind if hint else None), max_seconds)
    if not len(audio.samples):
        raise BadAudio("the audio contains no samples")
    logger.debug("audio.decoded kind=%s rate=%d seconds=%.2f", found or (hint.kind if hint else "probed"),
                 audio.rate, audio.seconds)
    return audio


def load(path: PathLike, *, format_hint: str | None = None, max_seconds: float = MAX_SECONDS) -> Audio:
    """Decode the file at ``path`` (see :func:`decode`). Files named ``*.ulaw``/``*.ul``/``*.alaw``/``*.al`` are raw
    8 kHz G.711 unless ``format_hint`` says otherwise. A missing file raises the usual ``OSError``."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_BYTES:
        raise BadAudio(f"audio file too large: {size} bytes, the limit is {MAX_BYTES}")
    if format_hint is None:
        suffix = os.path.splitext(path)[1].lower()
        format_hint = {".ulaw": "ulaw", ".ul": "ulaw", ".mulaw": "ulaw", ".alaw": "alaw", ".al": "alaw"}.get(suffix)
    with open(path, "rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    return decode(data, format_hint=format_hint, max_seconds=max_seconds)


def _check_duration(frames: int, rate: int, max_seconds: float) -> None:
    if rate and frames / rate > max_seconds:
        raise BadAudio(f"audio too long: {frames / rate:.0f} s, the limit is {max_seconds:.0f} s")


def _decode_raw(data: bytes, hint: _Hint, max_seconds: float) -> Audio:
    if hint.kind == "raw-pcm16":
        if len(data) % 2:
            raise BadAudio(f"raw PCM16 must have an even number of bytes, got {len(data)}")
        _check_duration(len(data) // 2, hint.rate, max_seconds)
        return Audio(np.frombuffer(data, dtype="<i2").astype(np.int16), hint.rate)
    _check_duration(len(data), hint.rate, max_seconds)
    samples = ulaw_decode(data) if hint.kind == "raw-ulaw" else alaw_decode(data)
    return Audio(samples, hint.rate)


def _decode_container(data: bytes, kind: str | None, max_seconds: float) -> Audio:
    if kind == "wav":
        return _decode_wav(data, max_seconds)
    if kind == "silk":
        raise BadAudio("SILK v3 audio (WeChat's internal voice format) is not supported; fetch the AMR version")
    if kind in _SOUNDFILE_KINDS or kind == "rf64":
        try:
            return _decode_soundfile(data, max_seconds)
        except _LibsndfileRejected as error:
            # libsndfile gives up on a truncated or damaged file; FFmpeg decodes what is left of it.
            logger.debug("audio.soundfile_failed kind=%s error=%s", kind, error)
            try:
                return _decode_ffmpeg(data, None, max_seconds, probed=False)
            except BadAudio:
                raise error from None
    if kind in _FFMPEG_FORMATS:
        return _decode_ffmpeg(data, _FFMPEG_FORMATS[kind], max_seconds, probed=False)
    return _decode_ffmpeg(data, None, max_seconds, probed=True)


# WAV ----------------------------------------------------------------------------------------------------------------

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_WAV_BITS = {_WAVE_FORMAT_PCM: (8, 16, 24, 32), _WAVE_FORMAT_FLOAT: (32, 64), _WAVE_FORMAT_ALAW: (8,),
             _WAVE_FORMAT_MULAW: (8,)}


def _decode_wav(data: bytes, max_seconds: float) -> Audio:
    """RIFF/WAVE: walk the chunks, decode what we know, hand other encodings (ADPCM, GSM …) to FFmpeg."""
    if len(data) < 12:
        raise BadAudio("WAV header is truncated (no 'fmt ' chunk)")
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + size > len(data):
                raise BadAudio("WAV 'fmt ' chunk is truncated")
            tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if size < 40:
                    raise BadAudio("WAV extensible 'fmt ' chunk is truncated")
                (tag,) = struct.unpack_from("<H", data, body + 24)  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            # Streaming writers leave the size 0 or 0xFFFFFFFF, truncated files have less: take what is there.
            payload = data[body:] if size in (0, 0xFFFFFFFF) or body + size > len(data) else data[body:body + size]
            if fmt is not None:
                break
        pos = body + size + (size & 1)
    if fmt is None:
        raise BadAudio("WAV has no 'fmt ' chunk (truncated header?)")
    if payload is None:
        raise BadAudio("WAV has no 'data' chunk (truncated header?)")
    tag, channels, rate, bits = fmt
    if not 1 <= channels <= 32:
        raise BadAudio(f"WAV header claims {channels} channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BadAudio(f"WAV header claims a sample rate of {rate} Hz")
    if tag not in _WAV_BITS:
        logger.debug("audio.wav_ffmpeg tag=0x%04x", tag)
        try:
            return _decode_ffmpeg(data, "wav", max_seconds, probed=False)
        except BadAudio as error:
            raise BadAudio(f"unsupported WAV encoding 0x{tag:04x}: {error}") from None
    if bits not in _WAV_BITS[tag]:
        raise BadAudio(f"WAV encoding 0x{tag:04x} with {bits} bits per sample is not valid")
    width = bits // 8
    frame_bytes = width * channels
    frames = len(payload) // frame_bytes
    _check_duration(frames, rate, max_seconds)
    raw = payload[:frames * frame_bytes]
    if tag == _WAVE_FORMAT_MULAW:
        values = ulaw_decode(raw).astype(np.float64)
    elif tag == _WAVE_FORMAT_ALAW:
        values = alaw_decode(raw).astype(np.float64)
    elif tag == _WAVE_FORMAT_FLOAT:
        floats = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
        values = np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0) * 32768.0
    elif bits == 8:
        values = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif bits == 16:
        values = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    elif bits == 24:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        values = (np.where(ints >= 1 << 23, ints - (1 << 24), ints)).astype(np.float64) / 256.0
    else:
        values = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    return Audio(_mono_int16(values.reshape(-1, channels)), rate)


def _mono_int16(values: np.ndarray) -> np.ndarray:
    """(frames, channels) floats on the int16 scale → mono int16 (channel mean, rounded, clipped)."""
    mono = values.mean(axis=1) if values.shape[1] > 1 else values[:, 0]
    return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)


# libsndfile ---------------------------------------------------------------------------------------------------------


class _LibsndfileRejected(BadAudio):
    """libsndfile could not read the data (FFmpeg gets a second try)."""


def _decode_soundfile(data: bytes, max_seconds: float) -> Audio:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            rate, channels = handle.samplerate, handle.channels
            if not MIN_RATE <= rate <= MAX_RATE or not 1 <= channels <= 32:
                raise BadAudio(f"implausible stream: {rate} Hz, {channels} channels")
            if handle.frames > 0:
                _check_duration(handle.frames, rate, max_seconds)
            parts: list[np.ndarray] = []
            total = 0
            block = rate * 10
            while True:
                chunk = handle.read(block, dtype="float32", always_2d=True)
                if not len(chunk):
                    break
                total += len(chunk)
                _check_duration(total, rate, max_seconds)
                parts.append(_mono_int16(chunk.astype(np.float64) * 32768.0))
    except soundfile.SoundFileError as error:
        raise _LibsndfileRejected(f"cannot decode audio: {error}") from None
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    return Audio(samples, rate)


# FFmpeg -------------------------------------------------------------------------------------------------------------


def _decode_ffmpeg(data: bytes, demuxer: str | None, max_seconds: float, *, probed: bool) -> Audio:
    """Decode the first audio stream with PyAV. ``probed``: FFmpeg guessed the format, so only audio formats count."""
    import av

    bad_packets = 0
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="ignore") as container:
            if probed and container.format.name not in _PROBED_AUDIO_DEMUXERS:
                raise BadAudio("not a recognised audio format")
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise BadAudio(f"no audio stream in the {container.format.name} data")
            rate = stream.codec_context.sample_rate or 0
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as error:
                    if not parts:
                        raise
                    logger.warning("audio.truncated error=%s decoded_s=%.2f", error.strerror, total / rate)
                    break
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:  # one damaged packet: skip it, keep the rest
                    bad_packets += 1
                    continue
                for frame in frames:
                    if not rate:
                        rate = frame.sample_rate
                    if not MIN_RATE <= rate <= MAX_RATE:
                        raise BadAudio(f"implausible stream: {rate} Hz")
                    if frame.sample_rate != rate:
                        raise BadAudio(f"the sample rate changes within the stream ({rate} → {frame.sample_rate} Hz)")
                    values = _frame_values(frame)
                    total += len(values)
                    _check_duration(total, rate, max_seconds)
                    parts.append(_mono_int16(values))
    except av.error.FFmpegError as error:
        raise BadAudio(f"cannot decode audio: {error.strerror or error}") from None
    if bad_packets:
        logger.warning("audio.corrupt_packets count=%d decoded_s=%.2f", bad_packets, total / rate if rate else 0.0)
    if not parts:
        raise BadAudio("no decodable audio in the data" + (f" ({bad_packets} corrupt packets)" if bad_packets else ""))
    return Audio(np.concatenate(parts), rate)


def _frame_values(frame) -> np.ndarray:
    """A PyAV AudioFrame as (samples, channels) floats on the int16 scale, whatever its sample format."""
    array = frame.to_ndarray()
    name = frame.format.name
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        values = array.T  # (channels, samples) → (samples, channels)
    else:
        values = array.reshape(-1, channels)
    base = name.rstrip("p")
    if base in ("flt", "dbl"):
        return values.astype(np.float64) * 32768.0
    if base == "u8":
        return (values.astype(np.float64) - 128.0) * 256.0
    if base == "s16":
        return values.astype(np.float64)
    if base == "s32":
        return values.astype(np.float64) / 65536.0
    if base == "s64":
        return values.astype(np.float64) / 281474976710656.0
    raise BadAudio(f"unsupported decoded sample format {name}")


# --------------------------------------------------------------------------------------------------------------------
# Writing


def wav_bytes(audio: Audio) -> bytes:
    """A PCM16 mono WAV file holding ``audio``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.rate)
        out.writeframes(audio.pcm())
    return buffer.getvalue()


def ulaw_wav_bytes(audio: Audio) -> bytes:
    """An 8 kHz G.711 μ-law WAV file (format 7, with the 'fact' chunk) holding ``audio``, resampled if needed."""
    payload = to_telephone(audio)
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_MULAW, 1, TELEPHONE_RATE, TELEPHONE_RATE, 1, 8, 0)
    fact = struct.pack("<I", len(payload))
    pad = b"\x00" if len(payload) % 2 else b""
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", len(payload)) + payload + pad)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def ffmpeg_encode(samples: np.ndarray, rate: int, container: str, codec: str, *, bit_rate: int | None = None) -> bytes:
    """Encode int16 ``samples`` ((n,) mono or (n, channels) interleaved) into a ``container`` file with PyAV's FFmpeg."""
    import av

    channels = 1 if samples.ndim == 1 else samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
                                           format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def amr_nb_bytes(audio: Audio, bit_rate: int = 12200) -> bytes:
    """An AMR-NB file (``#!AMR\\n``, 8 kHz), the format of a WeChat voice message."""
    return ffmpeg_encode(resample(audio, TELEPHONE_RATE).samples, TELEPHONE_RATE, "amr", "libopencore_amrnb",
                         bit_rate=bit_rate)


def write_wav(path: PathLike, audio: Audio) -> None:
    """Write ``audio`` to ``path`` as a PCM16 mono WAV file."""
    with open(os.fspath(path), "wb") as handle:
        handle.write(wav_bytes(audio))


def write_ulaw_wav(path: PathLike, audio8k: Audio) -> None:
    """Write ``audio8k`` to ``path`` as an 8 kHz μ-law WAV file (resampled first if it is not 8 kHz)."""
    with open(os.fspath(path), "wb") as handle:
        handle.write(ulaw_wav_bytes(audio8k))
