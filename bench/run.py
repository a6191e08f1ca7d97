"""``./taxbot bench``: the numbers the foundation issue asks for, printed and written to reports/bench.json.

  nlu parse latency p50/p95   in-process parse of the held-out sentences (bench/nlu_parse.py, Rasa venv)
  REST turn latency p50/p95   full turns through /webhooks/rest/webhook of the running system
  Rasa start time             from launch to /status answering with the model loaded
  Rasa server memory          RSS of the Rasa server after the REST turns
  train time, peak memory     `rasa train` from scratch into a temporary directory (skip with --no-train)
  knowledge retrieval         query latency p50/p95 with encoding, build time, memory, at the real size and at
                              10k / 100k synthetic entries (bench/kb_retrieval.py)
  desk                        handoff → agent console latency p50/p95 with 200 conversations waiting, queue
                              operations per second, on SQLite and PostgreSQL (bench/desk.py)
  channels                    WeChat acknowledgement p50/p99 with 50 users at once, web chat turn p50/p95,
                              messages per second through the gateway (bench/channels.py; starts the system)

Targets on a 2-core machine: parse p50 <= 20 ms, turn p95 <= 80 ms, retrieval p95 <= 30 ms at 10k entries,
handoff → console p95 <= 1 s with 200 waiting, WeChat acknowledgement p99 <= 300 ms, web chat turn p95 <= 300 ms.
``--only kb`` (or nlu, rest, train, desk, channels, speech) runs one part.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cli import paths  # noqa: E402
from cli.config import RuntimeConfig  # noqa: E402
from cli.model import ensure_model  # noqa: E402
from cli.runtime import process_env  # noqa: E402
from bench.nlu_parse import percentile  # noqa: E402
from tests.system.conftest import start_system, stop_system  # noqa: E402

TURNS = [
    "你好", "个税起征点是多少", "专票开错了怎么红冲", "个税App登录不上", "怎么在手机上交社保费",
    "今天天气怎么样", "谢谢", "我要投诉", "算了", "给我转人工", "再见", "年终奖怎么交税",
]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return round(total / 1024, 1)


def rasa_pid(system) -> int | None:  # type: ignore[no-untyped-def]
    found = subprocess.run(["pgrep", "-f", f"cli.rasa_server .*--port {system.rasa_url.rsplit(':', 1)[1]}"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    return min(pids) if pids else None


def bench_rest(rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        launched = time.monotonic()
        system = start_system(Path(tmp))
        # start_system returns when every process is healthy; Rasa is the slowest to load.
        start_seconds = time.monotonic() - launched
        try:
            timings, cold = [], []
            with httpx.Client(timeout=60) as client:
                # The first conversation after start pays TensorFlow's graph tracing for new
                # input shapes; it is reported apart, and the steady state is measured after it.
                warm_up = f"bench-warm-{uuid.uuid4().hex[:8]}"
                for text in TURNS:
                    started = time.perf_counter()
                    client.post(system.webhook, json={"sender": warm_up, "message": text}).raise_for_status()
                    cold.append((time.perf_counter() - started) * 1000)
                for r in range(rounds):
                    sender = f"bench-{uuid.uuid4().hex[:8]}"
                    for text in TURNS:
                        started = time.perf_counter()
                        reply = client.post(system.webhook, json={"sender": sender, "message": text})
                        timings.append((time.perf_counter() - started) * 1000)
                        reply.raise_for_status()
            pid = rasa_pid(system)
            memory = rss_mb(pid) if pid else None
            ready = re.search(r"Rasa 服务器就绪（(\d+) 秒）", system.log_text())
        finally:
            stop_system(system)
    return {
        "rest_turn_ms_p50": round(percentile(timings, 50), 1),
        "rest_turn_ms_p95": round(percentile(timings, 95), 1),
        "rest_turn_ms_mean": round(statistics.mean(timings), 1),
        "rest_turn_samples": len(timings),
        "rest_first_conversation_turn_ms_max": round(max(cold), 1),
        "system_start_seconds": round(start_seconds, 1),
        "rasa_start_seconds": int(ready.group(1)) if ready else None,
        "rasa_server_rss_mb": memory,
    }


def bench_train(config: RuntimeConfig) -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        subprocess.run(
            [str(paths.RASA_BIN), "train", "--config", str(paths.CONFIG), "--domain", str(paths.DOMAIN),
             "--data", *map(str, paths.TRAINING_DATA), "--out", out, "--fixed-model-name", "bench"],
            cwd=ROOT, env=process_env(config, RASA_MAX_CACHE_SIZE="0"), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        seconds = time.monotonic() - started
        size = (Path(out) / "bench.tar.gz").stat().st_size
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"train_seconds": round(seconds, 1), "train_peak_rss_mb": round(peak_kb / 1024, 1), "model_mb": round(size / 2**20, 1)}


def service_bench(script: str, config: RuntimeConfig) -> dict:
    """Run a benchmark script in the service venv; its last output line is its JSON numbers."""
    done = subprocess.run([str(paths.SERVICE_PYTHON), script], cwd=ROOT, env=process_env(config),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="taxbot bench")
    parser.add_argument("--no-train", action="store_true", help="skip the training benchmark (several minutes)")
    parser.add_argument("--rounds", type=int, default=10, help="conversations of %d turns for the REST benchmark" % len(TURNS))
    parser.add_argument("--only", choices=("nlu", "rest", "train", "kb", "desk", "channels", "speech"), action="append",
                        help="run only these parts")
    args = parser.parse_args()
    parts = set(args.only or ("nlu", "rest", "train", "kb", "desk", "channels", "speech"))
    if args.no_train:
        parts.discard("train")
    config = RuntimeConfig()
    results: dict = {}

    if "nlu" in parts:
        print("[bench] nlu parse …", flush=True)
        model = ensure_model(config)
        parsed = subprocess.run(
            [str(paths.RASA_PYTHON), "bench/nlu_parse.py", "--model", str(model), "--data", str(paths.NLU_TEST_DATA)],
            cwd=ROOT, env=process_env(config), capture_output=True, text=True, check=True,
        )
        results.update(json.loads(parsed.stdout.strip().splitlines()[-1]))

    if "kb" in parts:
        print("[bench] knowledge retrieval (200+ entries, then 10k and 100k synthetic) …", flush=True)
        results.update(service_bench("bench/kb_retrieval.py", config))

    if "desk" in parts:
        print("[bench] desk: handoff → console latency with 200 waiting, queue operations (SQLite, PostgreSQL) …",
              flush=True)
        results.update(service_bench("bench/desk.py", config))

    if "channels" in parts:
        print("[bench] channels: WeChat acknowledgement with 50 users, web chat turns, gateway throughput …",
              flush=True)
        ensure_model(config)
        results.update(service_bench("bench/channels.py", config))

    if "speech" in parts:
        print("[bench] speech: CER and real-time factor per condition, end-pointing, four callers at once …", flush=True)
        results.update(service_bench("bench/speech.py", config))

    if "rest" in parts:
        print("[bench] REST turns (starts the whole system) …", flush=True)
        ensure_model(config)
        results.update(bench_rest(args.rounds))

    if "train" in parts:
        print("[bench] training from scratch …", flush=True)
        results.update(bench_train(config))

    results["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    paths.REPORTS_DIR.mkdir(exist_ok=True)
    report = paths.REPORTS_DIR / "bench.json"
    previous = json.loads(report.read_text()) if report.exists() and args.only else {}
    report.write_text(json.dumps(previous | results, ensure_ascii=False, indent=2))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
