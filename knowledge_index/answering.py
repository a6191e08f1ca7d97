"""From a question to what the assistant may say: answer, ask which one, or hand over — never guess.

Statuses:
* ``answered``: the top entry is confident, in force and approved; ``answer`` carries its text and citation.
* ``ambiguous``: two or more entries are confident and close; ``candidates`` lets the user pick (buttons).
* ``suggested``: the best entry is likely but not certain: its text is offered as "the closest policy I found",
  with a person offered in the same reply.
* ``no_answer``: nothing is likely enough; the assistant offers a person.
* ``expired`` / ``needs_review``: the best entry is out of force or not yet checked; a person, not that text.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from knowledge_index.corpus import Entry
from knowledge_index.index import KnowledgeIndex
from knowledge_index.scoring import RERANK, Calibration, Mode, Scored, rank, rerank

Status = Literal["answered", "ambiguous", "suggested", "no_answer", "expired", "needs_review"]
KNOWLEDGE_INTENTS = frozenset({"ask_policy", "invoice", "account_help", "pay_tax"})
# A question NLU did not recognise as a knowledge question answers only when retrieval is this sure.
OTHER_INTENT_THRESHOLD = 0.85
VOICE_CHANNELS = frozenset({"phone"})


def _day(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def citation(entry: Entry, voice: bool = False) -> str:
    """依据：《…》（文号）条款，2019年1月1日起施行[，至2027年12月31日]。 The voice form names only the document."""
    if voice:
        return f"依据是{entry.source.title}。"
    period = f"自{_day(entry.effective_from)}起执行"
    if entry.effective_to:
        period += f"，执行至{_day(entry.effective_to)}"
    return f"依据：{entry.source.cited()}，{period}。"


def render(entry: Entry, channel: str | None) -> str:
    voice = (channel or "") in VOICE_CHANNELS
    body = entry.spoken if voice else entry.answer
    return f"{body}\n{citation(entry, voice)}" if not voice else f"{body}{citation(entry, voice)}"


@dataclass(frozen=True)
class Outcome:
    status: Status
    question: str
    ranked: list[Scored]
    threshold: float
    answer: str | None = None
    chosen: Entry | None = None
    choices: tuple[Entry, ...] = ()

    @property
    def confidence(self) -> float:
        return self.ranked[0].probability if self.ranked else 0.0


def decide(
    index: KnowledgeIndex,
    calibration: Calibration,
    question: str,
    *,
    intent: str | None = None,
    channel: str | None = None,
    today: date | None = None,
    serve_unreviewed: bool = False,
    max_choices: int = 3,
) -> Outcome:
    today = today or date.today()
    candidates = index.candidates(question, today)
    mode: Mode = "hybrid"
    if index.reranker is not None and RERANK in calibration.modes:  # the index's cross-encoder reads the top few
        mode = RERANK
        candidates = rerank(candidates, calibration, index.reranker, question)
    ranked = rank(candidates, calibration, mode)
    model = calibration.for_mode(mode)
    knowledge_question = intent in KNOWLEDGE_INTENTS or intent is None
    threshold = model.threshold if knowledge_question else max(model.threshold, OTHER_INTENT_THRESHOLD)
    if not ranked:
        return Outcome("no_answer", question, ranked, threshold)
    top = ranked[0]
    if top.probability < threshold:
        if knowledge_question and top.probability >= model.suggestion:
            outcome = settle(top.candidate.entry, question, ranked, threshold, channel, today, serve_unreviewed)
            if outcome.status == "answered":  # an expired or unreviewed entry is not suggested either
                return Outcome("suggested", question, ranked, threshold, answer=outcome.answer, chosen=outcome.chosen)
        return Outcome("no_answer", question, ranked, threshold)
    close = [s for s in ranked[1:max_choices] if s.probability >= threshold and top.probability - s.probability < calibration.ambiguity_margin]
    if close:
        choices = tuple(s.candidate.entry for s in [top, *close])
        return Outcome("ambiguous", question, ranked, threshold, choices=choices)
    return settle(top.candidate.entry, question, ranked, threshold, channel, today, serve_unreviewed)


def settle(
    entry: Entry,
    question: str,
    ranked: list[Scored],
    threshold: float,
    channel: str | None,
    today: date,
    serve_unreviewed: bool,
) -> Outcome:
    """The outcome for one chosen entry: its answer, unless it is out of force or unreviewed."""
    if not entry.in_force(today):
        return Outcome("expired", question, ranked, threshold, chosen=entry)
    if entry.review != "approved" and not serve_unreviewed:
        return Outcome("needs_review", question, ranked, threshold, chosen=entry)
    return Outcome("answered", question, ranked, threshold, answer=render(entry, channel), chosen=entry)
