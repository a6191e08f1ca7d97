"""``taxbot test`` and ``taxbot bench``: every suite in the venv it needs, one summary line.

Parts, in order (``./taxbot test unit nlu`` runs a subset):
  validate       Rasa data validation, warnings as errors (cli/rasa_tools.py validate)
  unit           pytest in the Rasa venv (actions, NLU component, channel) and the service venv
                 (service app, channels, shared helpers, CLI, knowledge base, speech)
  nlu            intent/entity report on the held-out split tests/nlu; fails under the floor
  conversations  ``rasa test core`` on tests/conversations (dialogue predictions)
  system         pytest tests/system: the whole system started for real on spare ports
The last line is "taxbot: N passed, N failed" over all of them.
"""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from cli import paths
from cli.config import RuntimeConfig
from cli.model import ensure_model
from cli.runtime import fail, run

PARTS = ("validate", "unit", "nlu", "conversations", "system")
# Held-out NLU floors (the target is macro-F1 >= 0.95): a drop below these fails the build.
NLU_FLOORS = {"intent_accuracy": 0.95, "intent_macro_f1": 0.95, "entity_micro_f1": 0.90, "out_of_scope_recall": 0.90}


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(name)

    def add(self, name: str, passed: int, failed: int, skipped: int = 0, returncode: int = 0, ok_codes=(0,)) -> None:
        """A suite's counts; a suite that failed without failing cases (it crashed) counts one failure."""
        self.passed += passed
        self.failed += failed
        self.skipped += skipped
        if failed or returncode not in ok_codes:
            self.failures.append(name)
            if not failed:
                self.failed += 1

    def add_junit(self, report: Path, name: str, returncode: int) -> None:
        if not report.exists():
            self.check(f"{name} (no report, exit {returncode})", False)
            return
        suites = ET.parse(report).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        tests = sum(int(s.get("tests", 0)) for s in suites)
        failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
        skipped = sum(int(s.get("skipped", 0)) for s in suites)
        self.add(name, tests - failed - skipped, failed, skipped, returncode, ok_codes=(0, 5))  # 5: no tests


def banner(title: str) -> None:
    print(f"\n========== {title} ==========", flush=True)


def pytest(python: Path, targets: list[str], report: Path, config: RuntimeConfig, extra: list[str] | None = None) -> int:
    return run(
        [python, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *(extra or [])],
        config,
        check=False,
    ).returncode


def run_tests(config: RuntimeConfig, args: list[str]) -> int:
    parts = [a for a in args if not a.startswith("-")] or list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        fail(f"未知的测试部分：{', '.join(sorted(unknown))}；可选：{' '.join(PARTS)}", code=2)
    paths.REPORTS_DIR.mkdir(exist_ok=True)
    tally = Tally()
    started = time.monotonic()
    model = ensure_model(config) if {"nlu", "conversations", "system"} & set(parts) else None

    if "validate" in parts:
        banner("数据校验 (rasa data validate)")
        code = run(
            [paths.RASA_PYTHON, "-m", "cli.rasa_tools", "validate", "--config", paths.CONFIG, "--domain", paths.DOMAIN,
             "--data", *paths.TRAINING_DATA, "--code", "actions", "channels"],
            config, check=False,
        ).returncode
        tally.check("validate", code == 0)

    if "unit" in parts:
        banner("单元测试：Rasa 环境（动作、NLU 组件、渠道）")
        report = paths.REPORTS_DIR / "junit-rasa.xml"
        code = pytest(paths.RASA_PYTHON, ["tests/actions", "tests/bot", "tests/channels"], report, config)
        tally.add_junit(report, "unit (rasa venv)", code)
        banner("单元测试：服务环境（服务应用、共享工具、命令行、知识库、语音）")
        report = paths.REPORTS_DIR / "junit-service.xml"
        code = pytest(paths.SERVICE_PYTHON, ["tests/service", "tests/taxlib", "tests/cli", "tests/knowledge", "tests/asr"],
                      report, config)
        tally.add_junit(report, "unit (service venv)", code)

    if "nlu" in parts:
        banner("NLU 留出测试集评估")
        out = paths.REPORTS_DIR / "nlu.json"
        code = run(
            [paths.RASA_PYTHON, "-m", "cli.rasa_tools", "report", "--model", model, "--data", paths.NLU_TEST_DATA, "--out", out],
            config, check=False,
        ).returncode
        report = json.loads(out.read_text()) if code == 0 and out.exists() else {}
        for metric, floor in NLU_FLOORS.items():
            value = report.get(metric)
            ok = value is not None and value >= floor
            print(f"  {'✔' if ok else '✗'} {metric} = {value}（下限 {floor}）")
            tally.check(f"nlu {metric} >= {floor}", ok)

    if "conversations" in parts:
        banner("对话测试 (rasa test core, tests/conversations)")
        out = paths.REPORTS_DIR / "conversations"
        code = run(
            [paths.RASA_BIN, "test", "core", "--model", model, "--stories", paths.CONVERSATION_TESTS,
             "--out", out, "--fail-on-prediction-errors", "--no-plot"],
            config, check=False,
        ).returncode
        failed_file = out / "failed_test_stories.yml"
        failed_text = failed_file.read_text() if failed_file.exists() else ""
        stories = _count_stories(paths.CONVERSATION_TESTS)
        failed = failed_text.count("- story:")
        if failed_text.strip():
            print(failed_text)
        tally.add("conversations", stories - failed, failed, returncode=code)

    if "system" in parts:
        banner("系统测试：真实启动 Rasa、动作服务器和服务应用")
        report = paths.REPORTS_DIR / "junit-system.xml"
        code = pytest(paths.SERVICE_PYTHON, ["tests/system"], report, config)
        tally.add_junit(report, "system", code)

    banner(f"汇总（用时 {time.monotonic() - started:.0f} 秒）")
    if tally.failures:
        print("失败：" + "；".join(tally.failures))
    line = f"taxbot: {tally.passed} passed, {tally.failed} failed"
    print(line + (f", {tally.skipped} skipped" if tally.skipped else ""))
    return 1 if tally.failed else 0


def _count_stories(directory: Path) -> int:
    return sum(f.read_text(encoding="utf-8").count("- story:") for f in directory.glob("test_*.yml"))


def run_bench(config: RuntimeConfig, args: list[str]) -> int:
    """bench/run.py in the service venv (it starts what it measures)."""
    return run([paths.SERVICE_PYTHON, "bench/run.py", *args], config, check=False).returncode
