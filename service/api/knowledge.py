"""Knowledge base: search (agent assist, ``kb search``) and answer (the assistant's policy questions)."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, field_validator

from knowledge_index.answering import Outcome
from knowledge_index.corpus import Entry
from knowledge_index.scoring import Scored
from service.knowledge import KnowledgeBase

router = APIRouter(prefix="/kb", tags=["knowledge"])


def get_kb(request: Request) -> KnowledgeBase:
    return request.app.state.kb


KbDep = Annotated[KnowledgeBase, Depends(get_kb)]


class _Question(BaseModel):
    @field_validator("question", "query", mode="before", check_fields=False)
    @classmethod
    def _clean(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class SearchRequest(_Question):
    query: str = Field(min_length=1, max_length=500)
    k: int = Field(default=5, ge=1, le=20)


class AnswerRequest(_Question):
    question: str = Field(default="", max_length=500)
    intent: str | None = Field(default=None, max_length=64)
    channel: str = Field(default="rest", max_length=32, description="phone gets the spoken variant")
    entry_id: str | None = Field(default=None, max_length=80, description="answer this entry (the user picked it)")
    today: date | None = Field(default=None, description="the day to judge effective dates by (tests)")


class EntryOut(BaseModel):
    id: str
    title: str
    category: str
    citation: str
    effective_from: date
    effective_to: date | None
    review: str

    @classmethod
    def of(cls, entry: Entry) -> "EntryOut":
        return cls(id=entry.id, title=entry.title, category=entry.category, citation=entry.source.cited(),
                   effective_from=entry.effective_from, effective_to=entry.effective_to, review=entry.review)


class CandidateOut(BaseModel):
    id: str
    title: str
    score: float = Field(description="calibrated probability that this entry answers the question")
    dense: float
    lexical: float

    @classmethod
    def of(cls, scored: Scored) -> "CandidateOut":
        c = scored.candidate
        return cls(id=c.entry.id, title=c.entry.title, score=round(scored.probability, 4), dense=round(c.dense, 4),
                   lexical=round(c.lexical, 4))


class Hit(CandidateOut):
    answer: str
    spoken: str
    citation: str
    category: str


class SearchResponse(BaseModel):
    index_version: str
    hits: list[Hit]


class AnswerResponse(BaseModel):
    status: Literal["answered", "ambiguous", "suggested", "no_answer", "expired", "needs_review"]
    answer: str | None
    entry: EntryOut | None
    score: float
    threshold: float
    candidates: list[CandidateOut]
    choices: list[EntryOut]
    index_version: str

    @classmethod
    def of(cls, outcome: Outcome, version: str) -> "AnswerResponse":
        return cls(
            status=outcome.status,
            answer=outcome.answer,
            entry=EntryOut.of(outcome.chosen) if outcome.chosen else None,
            score=round(outcome.confidence, 4),
            threshold=outcome.threshold,
            candidates=[CandidateOut.of(s) for s in outcome.ranked[:5]],
            choices=[EntryOut.of(e) for e in outcome.choices],
            index_version=version,
        )


def ranked_hits(kb: KnowledgeBase, query: str, k: int) -> tuple[list[Hit], str]:
    ranked, version = kb.search(query, k)
    hits = [
        Hit(**CandidateOut.of(s).model_dump(), answer=s.candidate.entry.answer, spoken=s.candidate.entry.spoken,
            citation=s.candidate.entry.source.cited(), category=s.candidate.entry.category)
        for s in ranked
    ]
    return hits, version


def search_hits(kb: KnowledgeBase, query: str, k: int) -> list[dict[str, object]]:
    """Agent assist in the desk: the same hits as /kb/search."""
    return [hit.model_dump() for hit in ranked_hits(kb, query, k)[0]]


@router.post("/search", response_model=SearchResponse)
def search(body: SearchRequest, kb: KbDep) -> SearchResponse:
    hits, version = ranked_hits(kb, body.query, body.k)
    return SearchResponse(index_version=version, hits=hits)


@router.post("/answer", response_model=AnswerResponse)
def answer(body: AnswerRequest, kb: KbDep) -> AnswerResponse:
    if body.entry_id:
        outcome, version = kb.answer_entry(body.entry_id, body.channel, body.today)
    elif not body.question:
        return AnswerResponse(status="no_answer", answer=None, entry=None, score=0.0, threshold=1.0, candidates=[],
                              choices=[], index_version=kb.index.version if kb.index else "")
    else:
        outcome, version = kb.answer(body.question, body.intent, body.channel, body.today)
    return AnswerResponse.of(outcome, version)


class StatusResponse(BaseModel):
    loaded: bool
    index_version: str | None
    encoder: str | None
    entries: int
    built_at: str | None
    problem: str | None


@router.get("/status", response_model=StatusResponse)
def status(kb: KbDep) -> StatusResponse:
    index = kb.index
    meta = index.meta if index else None
    return StatusResponse(loaded=index is not None, index_version=meta.version if meta else None,
                          encoder=meta.encoder if meta else None, entries=meta.entries if meta else 0,
                          built_at=meta.built_at if meta else None, problem=kb.problem)


@router.post("/reload", response_model=StatusResponse)
def reload(kb: KbDep) -> StatusResponse:
    kb.refresh()
    return status(kb)
