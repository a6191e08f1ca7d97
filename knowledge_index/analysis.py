"""Lexical analysis for BM25: normalised text → jieba words (with the tax dictionary) + character bigrams.

Words catch exact terms (专项附加扣除, 汇算清缴); character bigrams catch what word segmentation splits
differently or what typos and ASR homophones break (个人所得睡 still shares 个人, 人所, 所得). Colloquial names and
homophones from the NLU synonym table (各税 → 个人所得税) add their canonical term as an extra token.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cached_property
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DICTIONARY = ROOT / "nlu_data" / "dictionary" / "tax_terms.txt"
SYNONYMS = ROOT / "nlu_data" / "synonyms.yml"

_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[0-9a-z\u3400-\u9fff]")
# Function words and question frames that say nothing about the topic.
STOPWORDS = frozenset(
    "的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 在 有 和 与 及 或 我 你 您 他 她 它 我们 这 那 这个 那个 请问 请 问 一下 "
    "怎么 怎么样 怎样 如何 什么 多少 哪些 哪里 哪儿 为什么 能 能不能 可以 可不可以 要 要不要 需要 会 就 都 也 还 "
    "想 知道 告诉 谢谢 麻烦 你好 您好 一个 个 吗？ 呢？ 嗯 哎 诶".split()
)


def normalise(text: str) -> str:
    """Full-width to half-width, lower case, whitespace folded."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


_NOT_KEY = re.compile(r"[^0-9a-z\u3400-\u9fff]")


def question_key(text: str) -> str:
    """A question as its digits, letters and Chinese characters (width and case folded, spaces and punctuation
    dropped): 个税起征点是多少？ and 个税起征点是多少 are one question. Lint keeps these unique across entries."""
    return _NOT_KEY.sub("", normalise(text))


class Analyzer:
    """Turns text into BM25 tokens. Its own jieba tokenizer, so the process-wide one is left alone."""

    def __init__(self, dictionary: Path = DICTIONARY, synonyms: Path = SYNONYMS) -> None:
        self.dictionary, self.synonyms = dictionary, synonyms

    @cached_property
    def _jieba(self):  # noqa: ANN202 - jieba has no types
        import jieba

        jieba.setLogLevel(60)
        tokenizer = jieba.Tokenizer()
        tokenizer.load_userdict(str(self.dictionary))
        for variant in self._canonical:
            tokenizer.add_word(variant, freq=500)
        return tokenizer

    @cached_property
    def _canonical(self) -> dict[str, str]:
        """variant → canonical name, from the NLU synonym table (two characters or more)."""
        table: dict[str, str] = {}
        for item in yaml.safe_load(self.synonyms.read_text(encoding="utf-8")).get("nlu", []):
            canonical = item.get("synonym")
            if not canonical:
                continue
            for line in str(item.get("examples", "")).splitlines():
                variant = normalise(line.strip().removeprefix("- ").strip())
                if len(variant) >= 2 and variant != normalise(canonical):
                    table[variant] = normalise(canonical)
        return table

    @cached_property
    def fingerprint(self) -> str:
        """Changes when the dictionary, the synonyms or this analysis change: part of the index version."""
        digest = hashlib.sha256(b"analysis-v1")
        for path in (self.dictionary, self.synonyms):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def tokens(self, text: str) -> list[str]:
        text = normalise(text)
        words = [w for w in self._jieba.lcut(text) if _WORD.search(w) and w not in STOPWORDS]
        expanded = [self._canonical[w] for w in words if w in self._canonical]
        bigrams = [f"#{run[i:i + 2]}" for run in _CJK.findall(text) for i in range(len(run) - 1)]
        return words + expanded + bigrams

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """jieba's words of ``text`` as written (not normalised), with their character offsets."""
        return list(self._jieba.tokenize(text))
