"""``./taxbot kb lint``: what an editor must fix before an entry goes live.

Errors (exit 1): schema violations, duplicated ids, one question in two entries, near-identical questions or
titles in two entries (they would answer the same question differently), a missing citation, a spoken answer
too long or unreadable for voice. Warnings: expired entries, entries waiting for review, long written answers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from typing import Literal

from knowledge_index.analysis import normalise, question_key
from knowledge_index.corpus import Corpus

SPOKEN_MAX = 100
SPOKEN_TARGET = 80
ANSWER_MAX = 300
NEAR_DUPLICATE = 0.9  # Jaccard similarity of character bigrams
_UNSPEAKABLE = re.compile(r"https?://|www\.|[%‰()（）《》〔〕\[\]【】/\\|#*_~<>]")


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{'错误' if self.level == 'error' else '提醒'} {self.entry}: {self.message}"


def _bigrams(text: str) -> frozenset[str]:
    text = question_key(text)
    return frozenset(text[i:i + 2] for i in range(len(text) - 1)) or frozenset({text})


_PARTICLES = re.compile(r"请问|一下|的|了|吗|呢|吧|啊|呀|哦|嘛|是")


def _skeleton(text: str) -> str:
    """The question without punctuation and particles: 个税的起征点是多少呀 → 个税起征点多少."""
    return _PARTICLES.sub("", question_key(text))


def _similar(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def lint(corpus: Corpus, today: date | None = None) -> list[Finding]:
    today = today or date.today()
    findings: list[Finding] = []
    seen: set[str] = set()
    for entry in corpus.entries:
        if entry.id in seen:
            findings.append(Finding("error", entry.id, "id 重复"))
        seen.add(entry.id)
        if not (entry.source.number or entry.source.article):
            findings.append(Finding("error", entry.id, "缺少引用：来源需要文号或条款"))
        if len(entry.spoken) > SPOKEN_MAX:
            findings.append(Finding("error", entry.id, f"语音答复 {len(entry.spoken)} 字，超过 {SPOKEN_MAX} 字"))
        elif len(entry.spoken) > SPOKEN_TARGET:
            findings.append(Finding("warning", entry.id, f"语音答复 {len(entry.spoken)} 字，建议不超过 {SPOKEN_TARGET} 字"))
        if _UNSPEAKABLE.search(entry.spoken):
            findings.append(Finding("error", entry.id, f"语音答复含有不适合朗读的符号或链接：{_UNSPEAKABLE.search(entry.spoken).group()}"))
        if len(entry.answer) > ANSWER_MAX:
            findings.append(Finding("warning", entry.id, f"答复 {len(entry.answer)} 字，超过 {ANSWER_MAX} 字"))
        if entry.effective_to and entry.effective_to < today:
            findings.append(Finding("warning", entry.id, f"已过期（执行至 {entry.effective_to}），助手不会用它答复"))
        if entry.effective_from > today:
            findings.append(Finding("warning", entry.id, f"尚未生效（{entry.effective_from} 起）"))
        if entry.review == "needs_review":
            findings.append(Finding("warning", entry.id, f"待复核：{entry.review_note}"))

    owner: dict[str, str] = {}
    for entry in corpus.entries:
        for question in entry.questions:
            key = question_key(question)
            if key in owner and owner[key] != entry.id:
                findings.append(Finding("error", entry.id, f"问法「{question}」与 {owner[key]} 重复"))
            owner.setdefault(key, entry.id)

    shapes = [(e, [(q, _skeleton(q), _bigrams(q)) for q in (e.title, *e.questions)]) for e in corpus.entries]
    for (a, qa), (b, qb) in combinations(shapes, 2):
        if a.effective_to and b.effective_to is None or b.effective_to and a.effective_to is None:
            continue  # a historical entry and the current one: asked alike on purpose
        for text_a, skeleton_a, grams_a in qa:
            match = next((text_b for text_b, skeleton_b, grams_b in qb
                          if (skeleton_a == skeleton_b or _similar(grams_a, grams_b) >= NEAR_DUPLICATE)
                          and normalise(text_b) != normalise(text_a)), None)
            if match:
                findings.append(Finding("error", a.id, f"「{text_a}」与 {b.id} 的「{match}」几乎相同：两个条目会答同一个问题"))
                break
    return findings
