"""Knowledge entries: the schema editors write in ``knowledge_index/entries/*.yml`` and the loader.

One YAML file holds a list of entries of one subject. Every entry is one topic: how people ask it, a concise
answer in plain Chinese, a short spoken variant for the phone, and the citation it rests on with its effective
dates. ``review`` says whether the facts were checked against the cited text (``approved``) or still need an
editor (``needs_review``, with ``review_note`` saying what to check).
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENTRIES_DIR = Path(__file__).resolve().parent / "entries"

CATEGORIES = (
    "个人所得税",
    "专项附加扣除",
    "增值税",
    "企业所得税",
    "小微企业和个体工商户",
    "其他税费",
    "征收管理",
    "办税流程",
    "发票",
    "社保费",
    "纳税服务",
)
ID_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$"


class CorpusError(ValueError):
    """The entries cannot be loaded: a file is not valid YAML or an entry breaks the schema."""


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=2, description="name of the law, regulation or notice, without 《》")
    number: str | None = Field(default=None, description="document number (文号), e.g. 国发〔2023〕13号")
    article: str | None = Field(default=None, description="article or item, e.g. 第六条第一款")

    def cited(self) -> str:
        """The citation as a reader sees it: 《title》（number）article."""
        text = f"《{self.title}》"
        if self.number:
            text += f"（{self.number}）"
        if self.article:
            text += self.article
        return text


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=4, max_length=60)
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    questions: tuple[str, ...] = Field(min_length=3, max_length=8)
    answer: str = Field(min_length=10)
    spoken: str = Field(min_length=6)
    source: Source
    effective_from: date
    effective_to: date | None = None
    review: Literal["approved", "needs_review"]
    review_note: str | None = None
    tags: tuple[str, ...] = ()

    @field_validator("questions", "tags", mode="before")
    @classmethod
    def _texts(cls, items: object) -> object:
        """A YAML scalar such as 12366 is text here."""
        if isinstance(items, (list, tuple)):
            return [str(item) if isinstance(item, (int, float)) else item for item in items]
        return items

    @field_validator("questions", "tags")
    @classmethod
    def _stripped(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(item.strip() for item in items)
        if any(not item for item in cleaned):
            raise ValueError("empty item")
        return cleaned

    @field_validator("answer", "spoken", "title")
    @classmethod
    def _one_text(cls, text: str) -> str:
        return re.sub(r"\s*\n\s*", "", text.strip())

    @model_validator(mode="after")
    def _consistent(self) -> "Entry":
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.review == "needs_review" and not (self.review_note or "").strip():
            raise ValueError("needs_review entries say what to check in review_note")
        return self

    def in_force(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)

    def passages(self) -> list[str]:
        """The texts retrieval indexes for this entry: its title, each way of asking, and the answer."""
        return [self.title, *self.questions, self.answer]


class Corpus(BaseModel):
    model_config = ConfigDict(frozen=True)

    entries: tuple[Entry, ...]
    files: dict[str, list[str]] = Field(default_factory=dict, description="file name → entry ids, in order")

    def by_id(self) -> dict[str, Entry]:
        return {entry.id: entry for entry in self.entries}

    def digest(self) -> str:
        """A hash of the content retrieval depends on (entries, normalised), independent of file layout."""
        payload = [entry.model_dump(mode="json") for entry in sorted(self.entries, key=lambda e: e.id)]
        blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def load_corpus(directory: Path = ENTRIES_DIR) -> Corpus:
    """Load every ``*.yml`` under ``directory``; raise :class:`CorpusError` naming the file and entry at fault."""
    entries: list[Entry] = []
    files: dict[str, list[str]] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.yml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: 不是有效的 YAML：{exc}")
            continue
        if not isinstance(raw, list):
            problems.append(f"{path.name}: 顶层应是条目列表")
            continue
        files[path.name] = []
        for position, item in enumerate(raw, start=1):
            label = item.get("id", f"#{position}") if isinstance(item, dict) else f"#{position}"
            try:
                entry = Entry.model_validate(item)
            except ValidationError as exc:
                details = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
                problems.append(f"{path.name} {label}: {details}")
                continue
            entries.append(entry)
            files[path.name].append(entry.id)
    if problems:
        raise CorpusError("\n".join(problems))
    return Corpus(entries=tuple(entries), files=files)


def main(argv: list[str] | None = None) -> int:
    """``python -m knowledge_index.corpus [FILE...]``: validate entry files (all of ``entries/`` by default)."""
    import shutil
    import sys
    import tempfile

    names = argv if argv is not None else sys.argv[1:]
    if not names:
        directory = ENTRIES_DIR
    else:
        directory = Path(tempfile.mkdtemp(prefix="kb-check-"))
        for name in names:
            shutil.copy(name, directory / Path(name).name)
    try:
        corpus = load_corpus(directory)
    except CorpusError as exc:
        print(exc, file=sys.stderr)
        return 1
    ids = [entry.id for entry in corpus.entries]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        print("重复的 id：" + ", ".join(duplicated), file=sys.stderr)
        return 1
    print(f"{len(corpus.entries)} entries OK in {len(corpus.files)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
