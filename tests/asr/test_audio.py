"""asr/audio.py: decoding every format callers send, G.711, resampling, the phone line, WAV writing, garbage.

Speech comes from the committed fixtures (espeak-ng Mandarin, see fixtures/make_fixtures.py); other formats are
encoded here with the service venv's own libraries (libsndfile via soundfile, FFmpeg via PyAV), so no system
package is needed at test time.
"""
from __future__ import annotations

import io
import random
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from asr import audio as audio_io
from asr.audio import BadAudio
from asr.types import Audio, SpeechError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def query() -> Audio:
    """"我想查询个税": 2.1 s of speech at 16 kHz, trimmed to the speech."""
    return audio_io.load(FIXTURES / "query_16k.wav")


@pytest.fixture(scope="module")
def hello() -> Audio:
    return audio_io.load(FIXTURES / "hello_16k.wav")


# -- helpers ---------------------------------------------------------------------------------------------------------


def envelope_db(audio: Audio, frame_ms: int = 20) -> np.ndarray:
    """Per-frame level in dB, floored at -50 dBFS so that codec noise in pauses does not dominate."""
    n = audio.rate * frame_ms // 1000
    k = len(audio.samples) // n
    frames = audio.samples[:k * n].astype(np.float64).reshape(k, n)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + (32768 * 10 ** (-50 / 20)) ** 2)


def envelope_similarity(a: Audio, b: Audio, max_lag_frames: int = 5) -> float:
    """Best correlation of the two level envelopes (telephone band, 20 ms frames) over small lags (codecs add delay).

    The same speech through a codec scores above 0.9 (AMR-NB, AAC) or 0.97 (MP3, Opus, G.711); different speech
    scores about 0.5.
    """
    ea, eb = envelope_db(audio_io.resample(a, 8000)), envelope_db(audio_io.resample(b, 8000))
    best = -1.0
    for lag in range(-max_lag_frames, max_lag_frames + 1):
        x, y = (ea[lag:], eb) if lag >= 0 else (ea, eb[-lag:])
        n = min(len(x), len(y))
        best = max(best, float(np.corrcoef(x[:n], y[:n])[0, 1]))
    return best


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    noise = test.astype(np.float64) - reference
    return 10 * np.log10(np.sum(reference ** 2) / max(np.sum(noise ** 2), 1e-9))


def tone(freq: float, seconds: float, rate: int, amplitude: float = 10000.0) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate)


def soundfile_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


# -- G.711 -----------------------------------------------------------------------------------------------------------

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_g711_is_bit_exact_with_audioop():
    audioop = pytest.importorskip("audioop")  # deprecated in 3.11, gone in 3.13: the reference only
    linear = ALL_INT16.tobytes()
    assert audio_io.ulaw_encode(ALL_INT16) == audioop.lin2ulaw(linear, 2)
    assert audio_io.alaw_encode(ALL_INT16) == audioop.lin2alaw(linear, 2)
    codes = bytes(range(256))
    assert audio_io.ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert audio_io.alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)


def test_g711_known_codes():
    # Silence, the extremes and the code tables' fixed points from ITU-T G.711.
    assert audio_io.ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xff\x80\x00"
    assert audio_io.alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == b"\xd5\xaa\x2a"
    assert audio_io.ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    assert audio_io.alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_round_trip_error_is_within_half_a_step(law):
    encode, decode = getattr(audio_io, f"{law}_encode"), getattr(audio_io, f"{law}_decode")
    back = decode(encode(ALL_INT16)).astype(np.int32)
    x = ALL_INT16.astype(np.int32)
    error = np.abs(back - x)
    inside = np.abs(x) <= 32000  # beyond the largest code the error is clipping, bounded separately
    # Logarithmic quantisation: the error grows with the magnitude, about 1/32 of it (plus the smallest step).
    assert np.all(error[inside] <= np.abs(x[inside]) / 32 + 16)
    assert error.max() <= 644
    assert decode(encode(back.astype(np.int16))).tolist() == back.tolist()  # decoded values are fixed points


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_speech_quality(query, law):
    encode, decode = getattr(audio_io, f"{law}_encode"), getattr(audio_io, f"{law}_decode")
    assert snr_db(query.samples, decode(encode(query.samples))) > 33  # G.711 gives about 38 dB on speech


def test_g711_rejects_other_sample_types():
    with pytest.raises(TypeError):
        audio_io.ulaw_encode(np.zeros(4, dtype=np.float32))


# -- resampling and the phone line -----------------------------------------------------------------------------------


def test_resample_16k_8k_16k_keeps_a_tone():
    original = tone(1000, 1.0, 16000)
    down = audio_io.resample(original, 8000)
    back = audio_io.resample(down, 16000)
    assert down.rate == 8000 and len(down.samples) == 8000 and down.samples.dtype == np.int16
    assert back.rate == 16000 and len(back.samples) == 16000
    middle = slice(1600, -1600)  # the filters' edges aside
    assert snr_db(original.samples[middle], back.samples[middle]) > 40
    spectrum = np.abs(np.fft.rfft(back.samples[middle]))
    assert np.fft.rfftfreq(len(back.samples[middle]), 1 / 16000)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)


def test_resample_removes_what_the_new_rate_cannot_carry():
    # 5 kHz at 16 kHz must vanish at 8 kHz (Nyquist 4 kHz), not fold back to 3 kHz.
    down = audio_io.resample(tone(5000, 1.0, 16000), 8000)
    assert audio_io.rms_dbfs(down.samples[800:-800]) < -80


def test_resample_same_rate_and_empty():
    audio = tone(440, 0.1, 16000)
    assert audio_io.resample(audio, 16000) is audio
    empty = audio_io.resample(Audio(np.zeros(0, dtype=np.int16), 16000), 8000)
    assert empty.rate == 8000 and len(empty.samples) == 0
    with pytest.raises(ValueError):
        audio_io.resample(audio, 0)


def test_streaming_resampler_matches_one_shot(query):
    one_shot = audio_io.resample(query, 8000).samples
    resampler = audio_io.Resampler(16000, 8000)
    rng = np.random.default_rng(7)
    pcm, out, i = query.pcm(), b"", 0
    while i < len(pcm):
        n = int(rng.integers(1, 3000))  # odd sizes too: a byte can wait for the next chunk
        out += resampler.feed(pcm[i:i + n])
        i += n
    out += resampler.feed(b"", last=True)
    streamed = np.frombuffer(out, dtype="<i2")
    assert len(streamed) == len(one_shot)
    assert np.abs(streamed.astype(np.int32) - one_shot).max() <= 4


def test_telephone_round_trip(query):
    line = audio_io.to_telephone(query)
    assert isinstance(line, bytes) and len(line) == round(query.seconds * 8000)
    heard = audio_io.from_telephone(line)
    assert heard.rate == 8000
    assert snr_db(audio_io.resample(query, 8000).samples, heard.samples) > 30
    assert envelope_similarity(query, heard) > 0.98


# -- decoding: WAV ---------------------------------------------------------------------------------------------------


def test_wav_pcm16_is_exact(query, tmp_path):
    path = tmp_path / "q.wav"
    audio_io.write_wav(path, query)
    with wave.open(str(path)) as reader:  # an independent reader agrees with the writer
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
    loaded = audio_io.load(path)
    assert loaded.rate == 16000 and loaded.samples.dtype == np.int16
    assert np.array_equal(loaded.samples, query.samples)


@pytest.mark.parametrize("subtype, min_snr", [("PCM_U8", 20), ("PCM_24", 90), ("PCM_32", 90), ("FLOAT", 90),
                                              ("DOUBLE", 90), ("ULAW", 33), ("ALAW", 33)])
def test_wav_encodings(query, subtype, min_snr):
    samples = query.samples / 32768.0 if subtype in ("FLOAT", "DOUBLE") else query.samples  # floats in [-1, 1)
    data = soundfile_bytes(samples, 16000, "WAV", subtype)
    if subtype in ("ULAW", "ALAW"):  # the G.711 payload formats 7 and 6
        assert struct.unpack_from("<H", data, 20)[0] == (7 if subtype == "ULAW" else 6)
    decoded = audio_io.decode(data)
    assert decoded.rate == 16000 and decoded.samples.dtype == np.int16
    assert len(decoded.samples) == len(query.samples)
    assert snr_db(query.samples, decoded.samples) > min_snr


def test_wav_extensible_and_g711_written_by_ffmpeg(query):
    wavex = soundfile_bytes(query.samples, 16000, "WAVEX", "PCM_16")
    assert struct.unpack_from("<H", wavex, 20)[0] == 0xFFFE
    assert np.array_equal(audio_io.decode(wavex).samples, query.samples)
    audio8k = audio_io.resample(query, 8000)
    for codec, decode in (("pcm_mulaw", audio_io.ulaw_decode), ("pcm_alaw", audio_io.alaw_decode)):
        data = audio_io.ffmpeg_encode(audio8k.samples, 8000, "wav", codec)
        decoded = audio_io.decode(data)
        assert decoded.rate == 8000
        assert snr_db(audio8k.samples[:len(decoded.samples)], decoded.samples) > 30


def test_wav_other_encodings_go_through_ffmpeg(query):
    data = audio_io.ffmpeg_encode(audio_io.resample(query, 8000).samples, 8000, "wav", "adpcm_ima_wav")
    assert struct.unpack_from("<H", data, 20)[0] == 0x0011
    decoded = audio_io.decode(data)
    assert decoded.rate == 8000 and envelope_similarity(query, decoded) > 0.9


def test_envelope_similarity_tells_speech_apart(query, hello):
    assert envelope_similarity(query, query) > 0.999
    assert envelope_similarity(query, hello) < 0.7
    assert envelope_similarity(query, Audio(query.samples[::-1].copy(), query.rate)) < 0.7


def test_stereo_is_mixed_to_mono(query):
    left = query.samples.astype(np.int32)
    both = soundfile_bytes(np.stack([query.samples, query.samples], axis=1), 16000, "WAV", "PCM_16")
    assert np.array_equal(audio_io.decode(both).samples, query.samples)
    one_side = soundfile_bytes(np.stack([query.samples, np.zeros_like(query.samples)], axis=1), 16000, "WAV",
                               "PCM_16")
    mono = audio_io.decode(one_side).samples.astype(np.int32)
    assert np.abs(mono - left / 2).max() <= 0.5


def test_wav_streaming_header_with_unknown_length(query):
    data = bytearray(audio_io.wav_bytes(query))
    data[40:44] = b"\xff\xff\xff\xff"  # what a recorder writes before it knows the length
    data[4:8] = b"\xff\xff\xff\xff"
    assert np.array_equal(audio_io.decode(bytes(data)).samples, query.samples)


def test_truncated_wav_keeps_what_arrived(query):
    data = audio_io.wav_bytes(query)
    half = audio_io.decode(data[:44 + 16001])  # an odd byte count: the half sample is dropped
    assert np.array_equal(half.samples, query.samples[:8000])


# -- decoding: raw, libsndfile, FFmpeg -------------------------------------------------------------------------------


def test_raw_g711_and_pcm16(query):
    audio8k = audio_io.resample(query, 8000)
    ulaw = audio_io.ulaw_encode(audio8k.samples)
    for hint in ("ulaw", "PCMU", "audio/basic", "mulaw:8000"):
        decoded = audio_io.decode(ulaw, format_hint=hint)
        assert decoded.rate == 8000 and np.array_equal(decoded.samples, audio_io.ulaw_decode(ulaw))
    alaw = audio_io.alaw_encode(query.samples)
    decoded = audio_io.decode(alaw, format_hint="alaw:16000")
    assert decoded.rate == 16000 and np.array_equal(decoded.samples, audio_io.alaw_decode(alaw))
    decoded = audio_io.decode(query.pcm(), format_hint="pcm16:16000")
    assert decoded.rate == 16000 and np.array_equal(decoded.samples, query.samples)


def test_flac_is_lossless_and_ogg_keeps_the_speech(query):
    flac = soundfile_bytes(query.samples, 16000, "FLAC")
    assert flac.startswith(b"fLaC") and np.array_equal(audio_io.decode(flac).samples, query.samples)
    for subtype in ("VORBIS", "OPUS"):
        ogg = soundfile_bytes(query.samples, 16000, "OGG", subtype)
        decoded = audio_io.decode(ogg, format_hint="ogg")
        assert decoded.rate == 16000 and envelope_similarity(query, decoded) > 0.97


def test_amr_nb_voice_message(query):
    data = (FIXTURES / "query_8k.amr").read_bytes()
    assert data.startswith(b"#!AMR\n") and len(data) < 10_000
    for hint in (None, "amr", "audio/amr", ".amr"):
        decoded = audio_io.decode(data, format_hint=hint)
        assert decoded.rate == 8000 and decoded.samples.dtype == np.int16
        assert decoded.seconds == pytest.approx(query.seconds, abs=0.05)
        assert envelope_similarity(query, decoded) > 0.9
    truncated = audio_io.decode(data[:len(data) // 2])  # a message cut off in transfer: keep what arrived
    assert truncated.seconds == pytest.approx(query.seconds / 2, abs=0.1)


def test_mp3_m4a_webm_through_ffmpeg(query):
    stereo44 = audio_io.resample(query, 44100).samples
    stereo44 = np.stack([stereo44, stereo44], axis=1)
    mp3 = audio_io.ffmpeg_encode(stereo44, 44100, "mp3", "libmp3lame", bit_rate=64000)
    decoded = audio_io.decode(mp3)
    assert decoded.rate == 44100 and decoded.samples.ndim == 1
    assert envelope_similarity(query, decoded) > 0.97
    assert audio_io.decode(mp3, format_hint="audio/mpeg").rate == 44100
    m4a = audio_io.ffmpeg_encode(query.samples, 16000, "mp4", "aac")
    assert envelope_similarity(query, audio_io.decode(m4a, format_hint="m4a")) > 0.9
    webm = audio_io.ffmpeg_encode(audio_io.resample(query, 48000).samples, 48000, "webm", "libopus")
    decoded = audio_io.decode(webm)
    assert decoded.rate == 48000 and envelope_similarity(query, decoded) > 0.97


# -- garbage ---------------------------------------------------------------------------------------------------------


def test_bad_audio_is_a_speech_error():
    assert issubclass(BadAudio, SpeechError)


@pytest.mark.parametrize("data, hint, message", [
    (b"", None, "0 bytes"),
    (b"RIFF", None, "fmt"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", None, "truncated"),
    (b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00", None, "fmt"),
    (b"RIFF\x04\x00\x00\x00AVI LIST", None, "cannot decode|not a recognised"),
    (b"#!AMR\n", None, "no decodable audio|cannot decode"),
    (b"#!SILK_V3\x0c\x00abcdefgh", None, "SILK"),
    (b"\x02#!SILK_V3\x0c\x00abcdefgh", "amr", "does not match"),
    (b"\x00\x01" * 100, "pcm16", "rate"),
    (b"\x00\x01" * 100, "pcm16:abc", "whole number"),
    (b"\x00\x01" * 100, "pcm16:100", "out of range"),
    (b"\x00\x01\x02", "pcm16:16000", "even"),
    (b"\x00\x01" * 100, "flac:16000", "raw formats"),
    (b"\x00\x01" * 100, "speex", "unknown format hint"),
    (b"\x00\x01" * 100, "wav", "header"),
    (b"\x00\x01" * 100, "amr", "header"),
    (b"hello world, this is not audio at all" * 10, None, "cannot decode|not a recognised"),
])
def test_garbage_raises_bad_audio(data, hint, message):
    with pytest.raises(BadAudio, match=message):
        audio_io.decode(data, format_hint=hint)


def test_wrong_hints_are_refused(query):
    wav = audio_io.wav_bytes(query)
    amr = (FIXTURES / "query_8k.amr").read_bytes()
    with pytest.raises(BadAudio, match="raw samples, but the data is a wav file"):
        audio_io.decode(wav, format_hint="ulaw")
    with pytest.raises(BadAudio, match="does not match"):
        audio_io.decode(amr, format_hint="mp3")
    with pytest.raises(BadAudio, match="does not match"):
        audio_io.decode(wav, format_hint="audio/amr")
    with pytest.raises(BadAudio):
        audio_io.decode(b"\x00\x11" * 4000, format_hint="mp3")


def test_wav_header_nonsense_is_refused(query):
    good = audio_io.wav_bytes(query)
    for offset, value, message in ((22, 0, "0 channels"), (24, 7, "sample rate of 7"), (34, 12, "12 bits")):
        bad = bytearray(good)
        struct.pack_into("<H" if offset != 24 else "<I", bad, offset, value)
        with pytest.raises(BadAudio, match=message):
            audio_io.decode(bytes(bad))
    silent_header = good[:44 - 4] + b"\x00\x00\x00\x00"
    with pytest.raises(BadAudio, match="no samples"):
        audio_io.decode(silent_header)


def test_random_bytes_never_escape_as_other_errors():
    rng = random.Random(20240601)
    for _ in range(150):
        data = rng.randbytes(rng.randint(1, 4000))
        with pytest.raises(BadAudio):
            audio_io.decode(data)  # no hint: nothing recognisable, so it must be refused
        hint = rng.choice(["mp3", "aac", "m4a", "webm", "ogg"])
        try:
            audio_io.decode(data, format_hint=hint)
        except BadAudio:
            pass


def test_damaged_files_decode_or_raise_bad_audio(query):
    rng = random.Random(11)
    amr = (FIXTURES / "query_8k.amr").read_bytes()
    samples = {
        "wav": audio_io.wav_bytes(query), "ulaw-wav": audio_io.ulaw_wav_bytes(query), "amr": amr,
        "flac": soundfile_bytes(query.samples, 16000, "FLAC"),
        "ogg": soundfile_bytes(query.samples, 16000, "OGG", "VORBIS"),
        "mp3": audio_io.ffmpeg_encode(query.samples, 16000, "mp3", "libmp3lame"),
    }
    outcomes = {}
    for name, data in samples.items():
        cuts = list(range(0, 48)) + [rng.randrange(len(data)) for _ in range(15)]
        variants = [data[:n] for n in cuts]
        for _ in range(15):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 40)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            variants.append(bytes(damaged))
        for variant in variants:
            try:
                decoded = audio_io.decode(variant)
            except BadAudio as error:
                assert str(error)
                outcomes[name, "bad"] = outcomes.get((name, "bad"), 0) + 1
            else:
                assert decoded.samples.dtype == np.int16 and len(decoded.samples) > 0
                assert audio_io.MIN_RATE <= decoded.rate <= audio_io.MAX_RATE
                outcomes[name, "ok"] = outcomes.get((name, "ok"), 0) + 1
    assert all(outcomes.get((name, "ok")) for name in samples)  # damage is survived where the data allows


def test_input_caps():
    with pytest.raises(BadAudio, match="too large"):
        audio_io.decode(b"\xff" * (audio_io.MAX_BYTES + 1), format_hint="ulaw")
    with pytest.raises(BadAudio, match="too long"):
        audio_io.decode(b"\xff" * (8000 * 601), format_hint="ulaw")
    # A decompression bomb: eleven minutes of silence is a small FLAC file.
    bomb = soundfile_bytes(np.zeros(8000 * 660, dtype=np.int16), 8000, "FLAC")
    assert len(bomb) < 200_000
    with pytest.raises(BadAudio, match="too long"):
        audio_io.decode(bomb)
    with pytest.raises(BadAudio, match="too long"):
        audio_io.decode(audio_io.ulaw_wav_bytes(tone(300, 3.0, 8000)), max_seconds=2.0)


def test_load_uses_the_extension_for_raw_g711(tmp_path, query):
    path = tmp_path / "call.ulaw"
    path.write_bytes(audio_io.to_telephone(query))
    assert audio_io.load(path).rate == 8000
    with pytest.raises(FileNotFoundError):
        audio_io.load(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(BadAudio):
        audio_io.load(tmp_path / "empty.wav")


def test_sniff():
    assert audio_io.sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert audio_io.sniff(b"#!AMR\n\x3c") == "amr"
    assert audio_io.sniff(b"#!AMR-WB\n") == "amr-wb"
    assert audio_io.sniff(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert audio_io.sniff(b"\xff\xff\xff\xff") is None  # μ-law silence is not mistaken for an MP3 frame


# -- writing, levels -------------------------------------------------------------------------------------------------


def test_write_ulaw_wav(tmp_path, query):
    import soundfile

    path = tmp_path / "prompt.wav"
    audio_io.write_ulaw_wav(path, audio_io.resample(query, 8000))
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and b"fact" in data[:60]
    tag, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", data, 20)
    assert (tag, channels, rate, byte_rate, block_align, bits) == (7, 1, 8000, 8000, 1, 8)
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    ours = audio_io.load(path)
    assert np.array_equal(ours.samples, audio_io.from_telephone(audio_io.to_telephone(query)).samples)
    info = soundfile.info(str(path))  # libsndfile reads it as μ-law too
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
    theirs, _ = soundfile.read(str(path), dtype="int16")
    assert np.array_equal(theirs, ours.samples)
    audio_io.write_ulaw_wav(tmp_path / "from16k.wav", query)  # not 8 kHz: resampled on the way
    assert audio_io.load(tmp_path / "from16k.wav").rate == 8000


def test_is_silent(query):
    rng = np.random.default_rng(3)
    quiet = Audio(np.rint(rng.normal(0, 32768 * 10 ** (-65 / 20), 16000)).astype(np.int16), 16000)
    assert audio_io.is_silent(Audio(np.zeros(16000, dtype=np.int16), 16000))
    assert audio_io.is_silent(Audio(np.zeros(0, dtype=np.int16), 16000))
    assert audio_io.is_silent(quiet)
    assert audio_io.is_silent(Audio(np.full(16000, 5000, dtype=np.int16), 16000))  # DC offset is not sound
    assert not audio_io.is_silent(query)
    # A short word in a long, quiet recording still counts.
    long_quiet = np.concatenate([quiet.samples] * 10)
    long_quiet[80000:80000 + 4800] += query.samples[8000:12800]
    assert not audio_io.is_silent(Audio(long_quiet, 16000))
    assert audio_io.is_silent(query, threshold_dbfs=0.0)


def test_noise_and_random_bytes_have_no_voiced_frames_speech_does(query: Audio) -> None:
    """White noise at any level and random bytes read as samples are not a voice; one syllable over a telephone
    line, or speech under noise, is."""
    root = Path(__file__).resolve().parents[2] / "asr" / "eval" / "audio"
    for path in (root / "16k" / "menu-03.flac", root / "8k" / "menu-03.wav", query):
        sound = path if isinstance(path, Audio) else audio_io.load(path)
        start = audio_io.speech_extent(sound)[0]  # a voice message that starts with the word
        trimmed = Audio(sound.samples[int(start * sound.rate):], sound.rate)
        assert audio_io.voiced_ms(trimmed) >= 200 and not audio_io.is_noise(trimmed)
    noisy = Audio((query.samples + np.random.default_rng(3).normal(0, 800, len(query.samples))).astype(np.int16),
                  query.rate)
    assert not audio_io.is_noise(noisy)
    for level in (300, 3000, 30000):
        white = Audio(np.random.default_rng(level).integers(-level, level, 32000).astype(np.int16), 16000)
        assert audio_io.voiced_ms(white) == 0 and audio_io.is_noise(white)
    garbage = Audio(np.frombuffer(random.Random(7).randbytes(64000), dtype=np.int16).copy(), 16000)
    assert audio_io.is_noise(garbage)
