"""NLU parse latency, in-process (Rasa venv): ``python bench/nlu_parse.py --model M --data tests/nlu``.

Parses every held-out sentence ``--rounds`` times after a warm-up and prints one JSON object
with p50/p95/mean in milliseconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def percentile(values, q):  # type: ignore[no-untyped-def]
    """The q-th percentile by nearest rank (also used by bench/run.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def measure(agent, texts, rounds):  # type: ignore[no-untyped-def]
    for text in texts[:20]:  # warm-up
        await agent.parse_message(text)
    timings = []
    for _ in range(rounds):
        for text in texts:
            started = time.perf_counter()
            await agent.parse_message(text)
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> int:
    from cli.rasa_tools import load_agent, load_examples  # Rasa venv only

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = [text for text, _, _ in load_examples(Path(args.data))]
    started = time.perf_counter()
    agent = load_agent(args.model)
    load_seconds = time.perf_counter() - started
    timings = asyncio.run(measure(agent, texts, args.rounds))
    print(json.dumps({
        "nlu_parse_ms_p50": round(percentile(timings, 50), 2),
        "nlu_parse_ms_p95": round(percentile(timings, 95), 2),
        "nlu_parse_ms_mean": round(statistics.mean(timings), 2),
        "nlu_parse_samples": len(timings),
        "nlu_model_load_seconds": round(load_seconds, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
