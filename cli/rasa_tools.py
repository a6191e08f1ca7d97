"""NLU tools that run inside the Rasa venv (Python 3.10): ``parse`` and ``report``.

Started by ``./taxbot nlu …``; imports only the standard library and Rasa.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_agent(model: str):  # type: ignore[no-untyped-def]
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    # Rasa's structlog default prints every parse at debug level, text included.
    configure_structlog(logging.WARNING)
    logging.getLogger("rasa").setLevel(logging.WARNING)
    return Agent.load(model)


def to_record(text: str, parsed: Dict[str, Any]) -> Dict[str, Any]:
    intent = parsed.get("intent") or {}
    return {
        "text": text,
        "intent": intent.get("name"),
        "confidence": round(float(intent.get("confidence") or 0.0), 4),
        "intent_ranking": [
            {"name": r.get("name"), "confidence": round(float(r.get("confidence") or 0.0), 4)}
            for r in parsed.get("intent_ranking") or []
        ],
        "entities": [
            {k: e[k] for k in ("entity", "value", "start", "end", "extractor", "valid") if k in e}
            for e in parsed.get("entities") or []
        ],
    }


def decode_line(raw: bytes) -> str:
    """One stdin line as text; invalid UTF-8 is replaced rather than fatal."""
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


async def parse_lines(agent, lines: Iterable[bytes], out) -> None:  # type: ignore[no-untyped-def]
    for raw in lines:
        text = decode_line(raw)
        if text.strip():
            parsed = await agent.parse_message(text)
        else:
            parsed = {"intent": None, "intent_ranking": [], "entities": []}
        out.write(json.dumps(to_record(text, parsed), ensure_ascii=False) + "\n")
        out.flush()


# ---- report ---------------------------------------------------------------------------------


def load_examples(directory: Path) -> List[Tuple[str, str, List[Dict[str, Any]]]]:
    from rasa.shared.nlu.training_data.loading import load_data

    examples = []
    for file in sorted(directory.glob("*.yml")):
        for message in load_data(str(file)).intent_examples:
            examples.append((message.get("text"), message.get("intent"), message.get("entities") or []))
    return examples


def f1(tp: int, fp: int, fn: int) -> Tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, score


def evaluate(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Intent accuracy and macro-F1, entity F1 (type + exact span), out_of_scope recall."""
    labels = sorted({r["expected"] for r in results})
    per_intent = {}
    for label in labels:
        tp = sum(1 for r in results if r["expected"] == label and r["predicted"] == label)
        fp = sum(1 for r in results if r["expected"] != label and r["predicted"] == label)
        fn = sum(1 for r in results if r["expected"] == label and r["predicted"] != label)
        p, rc, score = f1(tp, fp, fn)
        per_intent[label] = {"precision": round(p, 4), "recall": round(rc, 4), "f1": round(score, 4), "support": tp + fn}
    accuracy = sum(r["expected"] == r["predicted"] for r in results) / len(results)
    macro_f1 = sum(v["f1"] for v in per_intent.values()) / len(per_intent)

    entity_counts: Dict[str, Counter] = {}
    for r in results:
        gold = {(e["entity"], e["start"], e["end"]) for e in r["expected_entities"]}
        pred = {(e["entity"], e["start"], e["end"]) for e in r["predicted_entities"]}
        for kind in {k for k, _, _ in gold | pred}:
            c = entity_counts.setdefault(kind, Counter())
            g = {x for x in gold if x[0] == kind}
            p_ = {x for x in pred if x[0] == kind}
            c["tp"] += len(g & p_)
            c["fp"] += len(p_ - g)
            c["fn"] += len(g - p_)
    per_entity = {}
    for kind, c in sorted(entity_counts.items()):
        p, rc, score = f1(c["tp"], c["fp"], c["fn"])
        per_entity[kind] = {"precision": round(p, 4), "recall": round(rc, 4), "f1": round(score, 4), "support": c["tp"] + c["fn"]}
    total = Counter()
    for c in entity_counts.values():
        total.update(c)
    entity_f1 = f1(total["tp"], total["fp"], total["fn"])[2]
    return {
        "examples": len(results),
        "intent_accuracy": round(accuracy, 4),
        "intent_macro_f1": round(macro_f1, 4),
        "entity_micro_f1": round(entity_f1, 4),
        "out_of_scope_recall": per_intent.get("out_of_scope", {}).get("recall"),
        "fallback_rate": round(sum(r["predicted"] == "nlu_fallback" for r in results) / len(results), 4),
        "per_intent": per_intent,
        "per_entity": per_entity,
        "errors": [
            {k: r[k] for k in ("text", "expected", "predicted", "confidence")}
            for r in results
            if r["expected"] != r["predicted"]
        ],
    }


async def run_report(agent, directory: Path) -> Dict[str, Any]:  # type: ignore[no-untyped-def]
    results = []
    for text, expected, entities in load_examples(directory):
        parsed = await agent.parse_message(text)
        record = to_record(text, parsed)
        results.append(
            {
                "text": text,
                "expected": expected,
                "predicted": record["intent"],
                "confidence": record["confidence"],
                "expected_entities": entities,
                "predicted_entities": record["entities"],
            }
        )
    return evaluate(results)


def print_report(report: Dict[str, Any], out=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    out.write(f"NLU 测试集：{report['examples']} 条\n")
    out.write(
        f"  意图准确率 {report['intent_accuracy']:.4f}  宏平均F1 {report['intent_macro_f1']:.4f}  "
        f"实体F1 {report['entity_micro_f1']:.4f}  out_of_scope召回 {report['out_of_scope_recall']}  "
        f"fallback比例 {report['fallback_rate']:.4f}\n"
    )
    for name, m in report["per_intent"].items():
        out.write(f"  {name:<18} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} n={m['support']}\n")
    for name, m in report["per_entity"].items():
        out.write(f"  [实体] {name:<13} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} n={m['support']}\n")
    for e in report["errors"]:
        out.write(f"  ✗ {e['text']!r}: 期望 {e['expected']}，得到 {e['predicted']} ({e['confidence']})\n")


# ---- validate -------------------------------------------------------------------------------

UNUSED_RESPONSE = re.compile(r"The utterance '(utter_\w+)' is not used in any story or rule")
# Intents triggered from outside (the desk's trigger_intent) are never typed by a user: they have no NLU examples.
EXTERNAL_INTENT_WITHOUT_EXAMPLES = re.compile(
    r"The intent 'EXTERNAL_\w+' is listed in the domain file, but is not found in the NLU training data"
)
CODE_RESPONSE = re.compile(r"""response=["'](utter_\w+)["']|["'](utter_\w+)["']""")


def responses_named_in_code(code_dirs: List[Path]) -> Dict[str, List[str]]:
    """utter_* names that custom actions and channels utter themselves, with where."""
    found: Dict[str, List[str]] = {}
    for directory in code_dirs:
        for file in sorted(directory.rglob("*.py")):
            for match in CODE_RESPONSE.finditer(file.read_text(encoding="utf-8")):
                name = match.group(1) or match.group(2)
                if name != "utter_action":  # the metadata key Rasa stores a response's name under
                    found.setdefault(name, []).append(str(file))
    return found


def responses_used_by_rasa(domain) -> set:  # type: ignore[no-untyped-def]
    """Responses Rasa utters itself: form questions (utter_ask_[form_]slot) and utter_default."""
    used = {"utter_default"}
    for form, definition in domain.forms.items():
        for slot in definition.get("required_slots", []):
            used |= {f"utter_ask_{slot}", f"utter_ask_{form}_{slot}"}
    return used


def misaligned_entities(training_data, config_path: str) -> List[str]:  # type: ignore[no-untyped-def]
    """Entity annotations that do not start and end on a token boundary.

    Rasa only warns about these while training (and then learns nothing from them); jieba
    often glues a number to the next character ("8万多" -> "8" / "万多").
    """
    import jieba
    from rasa.shared.utils.io import read_yaml_file

    pipeline = read_yaml_file(config_path).get("pipeline", [])
    tokenizer = next((c for c in pipeline if c.get("name") == "JiebaTokenizer"), {})
    if tokenizer.get("dictionary_path"):
        for file in sorted(Path(tokenizer["dictionary_path"]).glob("*")):
            jieba.load_userdict(str(file))
    problems = []
    for message in training_data.nlu_examples:
        text = message.get("text") or ""
        bounds = {0, len(text)}
        for _, start, end in jieba.tokenize(text):
            bounds |= {start, end}
        for entity in message.get("entities") or []:
            if entity["start"] not in bounds or entity["end"] not in bounds:
                problems.append(f"entity {text[entity['start']:entity['end']]!r} ({entity['entity']}) does not match jieba's words in {text!r}")
    return problems


def validate(config: str, domain: str, data: List[str], code_dirs: List[Path]) -> int:
    """Rasa's data validation with warnings as errors, plus the two checks Rasa cannot do.

    Rasa warns about every response that no story or rule uses, but a response uttered by a
    custom action is used from code: those warnings are expected and are checked the other way
    round here (every ``utter_*`` named in code must exist in the domain). Intents named
    ``EXTERNAL_*`` are triggered from outside and may have no NLU examples.
    """
    import warnings

    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.validator import Validator

    importer = TrainingDataImporter.load_from_dict(config_path=config, domain_path=domain, training_data_paths=data)
    validator = Validator.from_importer(importer)
    in_code = responses_named_in_code(code_dirs)
    expected_unused = set(in_code) | responses_used_by_rasa(validator.domain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        ok = all(
            [
                validator.verify_domain_validity(),
                validator.verify_nlu(ignore_warnings=False),
                validator.verify_story_structure(ignore_warnings=False),
                validator.verify_forms_in_stories_rules(),
                validator.verify_form_slots(),
                validator.verify_slot_mappings(),
                validator.verify_actions_in_stories_rules(),
            ]
        )
    problems = []
    for warning in caught:
        if not issubclass(warning.category, UserWarning):
            continue
        text = str(warning.message)
        unused = UNUSED_RESPONSE.search(text)
        if unused and unused.group(1) in expected_unused:
            continue
        if EXTERNAL_INTENT_WITHOUT_EXAMPLES.search(text):
            continue
        problems.append(text)
    problems += misaligned_entities(importer.get_nlu_data("zh"), config)
    known = set(validator.domain.responses)
    for name, files in sorted(in_code.items()):
        if name not in known:
            problems.append(f"{name} is uttered in {', '.join(sorted(set(files)))} but missing from the domain")
    for problem in problems:
        print(f"  ✗ {problem}")
    if ok and not problems:
        print("数据校验通过：领域、NLU、故事与规则、表单、代码中用到的回复均无问题。")
        return 0
    print(f"数据校验失败：{len(problems)} 个问题。")
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="taxbot nlu")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="stdin 每行一句，stdout 每行一个 JSON")
    p.add_argument("--model", required=True)
    r = sub.add_parser("report", help="在留出测试集上评估 NLU")
    r.add_argument("--model", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--out", help="写入 JSON 报告的路径")
    v = sub.add_parser("validate", help="校验领域、训练数据和代码中用到的回复")
    v.add_argument("--config", required=True)
    v.add_argument("--domain", required=True)
    v.add_argument("--data", nargs="+", required=True)
    v.add_argument("--code", nargs="+", required=True)
    args = parser.parse_args(argv)

    if args.command == "validate":
        return validate(args.config, args.domain, args.data, [Path(c) for c in args.code])
    json_out = sys.stdout
    if args.command == "parse":
        # stdout carries one JSON object per line and nothing else: libraries that print
        # while loading (jieba, TensorFlow) are sent to stderr at the file-descriptor level.
        json_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    started = time.monotonic()
    agent = load_agent(args.model)
    print(f"[nlu] 模型已加载（{time.monotonic() - started:.1f} 秒）", file=sys.stderr, flush=True)
    if args.command == "parse":
        asyncio.run(parse_lines(agent, sys.stdin.buffer, json_out))
        json_out.flush()
        return 0
    report = asyncio.run(run_report(agent, Path(args.data)))
    print_report(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
