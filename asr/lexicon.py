"""The domain lexicon and language model behind the phrase correction of ASR text (``asr.normalize``).

Built from the project's own text: the knowledge base (``knowledge_index/entries/*.yml``: titles, questions, answers,
spoken variants), the NLU training examples (``nlu_data/*.yml``, entity annotations stripped) and the tax dictionary
(``nlu_data/dictionary/tax_terms.txt``). The text is segmented by jieba (its general dictionary plus the tax terms)
and counted:

* **words** — every word of two or more Chinese characters, with its count;
* **phrases** — runs of two to four words (two to eight characters) seen at least :data:`MIN_PHRASE_COUNT` times
  and not starting or ending with a function word: 首套房 (首套 + 房), 进项发票, 应纳税额, 零申报, 减按.

The NLU data carries misspellings on purpose (各税, 个人所得睡, 增殖税 — its synonyms list them as the typos and
homophones ASR produces); a synonym example that sounds exactly like another spelling of its group and is not a word
of jieba's dictionary is such a misspelling, and is replaced by that spelling before counting, so it is neither a
"known" phrase nor a target.

The language model that decides whether a correction makes an utterance more likely is a unigram model over words
*and phrases*: the probability of a stretch of text is that of its best segmentation (jieba's own method), with each
entry's probability mixing jieba's general dictionary frequency (the background) and the domain count scaled by
:data:`DOMAIN_WEIGHT`. Phrases in the vocabulary make it a short-range n-gram model where the domain has evidence
(首套房 outscores 手套 + 房).

Building takes about a second of segmentation; the result is cached on disk as JSON (no pickle) under
``$TAXBOT_CACHE_DIR/asr-lexicon/`` (default ``~/.cache/taxbot``), keyed by a hash of the source files and
:data:`BUILD_VERSION`, so it is rebuilt exactly when the sources change. A running process checks the sources every
:data:`REFRESH_SECONDS` and swaps in the new lexicon in the background (:class:`SourceWatch`), so an editor's entry
reaches speech recognition without a restart.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import yaml

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
KB_ENTRIES = ROOT / "knowledge_index" / "entries"
NLU_DATA = ROOT / "nlu_data"
TAX_DICTIONARY = NLU_DATA / "dictionary" / "tax_terms.txt"
BUILD_VERSION = 6
MIN_PHRASE_COUNT = 3
# How often a long-running process checks whether the knowledge base or the NLU data changed (SourceWatch).
REFRESH_SECONDS = 30.0
MAX_PHRASE_WORDS = 4
MAX_PHRASE_CHARS = 8
# Domain counts weigh as much, in total, as this many times the whole of jieba's general dictionary.
DOMAIN_WEIGHT = 0.5
# Phrases do not start or end with these (的税, 是否要 are not domain phrases).
FUNCTION_CHARS = frozenset("的了吗呢吧啊呀是和与及或在也都就还要我你他她它这那有么个对把被给让从向于以而且很不没")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_ANNOTATION = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")


def _is_han(text: str) -> bool:
    return bool(text) and all("\u3400" <= ch <= "\u9fff" for ch in text)


def tone_pinyin(run: str) -> tuple[str, ...]:
    """Pinyin with the tone as a final digit (neutral tone 5), one syllable per character, read in context."""
    from asr.normalize import _tone_pinyin

    return _tone_pinyin(run)


# ---------------------------------------------------------------------------------------------------------------
# Sources


def source_files() -> list[Path]:
    return sorted(KB_ENTRIES.glob("*.yml")) + sorted(NLU_DATA.glob("*.yml")) + [TAX_DICTIONARY]


def sources_hash(files: Iterable[Path]) -> str:
    digest = hashlib.sha256(f"v{BUILD_VERSION}".encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:20]


def kb_texts(directory: Path | None = None, *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Titles, questions, answers and spoken variants of the knowledge base (``exclude``: questions left out)."""
    texts = []
    for path in sorted((directory or KB_ENTRIES).glob("*.yml")):
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if not isinstance(entry, dict):
                continue
            texts += [str(entry.get(key) or "") for key in ("title", "answer", "spoken")]
            texts += [str(q) for q in entry.get("questions") or [] if str(q).strip() not in exclude]
    return [text for text in texts if text]


def nlu_documents(directory: Path | None = None) -> list[dict]:
    documents = []
    for path in sorted((directory or NLU_DATA).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        documents.extend(item for item in data.get("nlu") or [] if isinstance(item, dict))
    return documents


def _examples(item: dict) -> list[str]:
    lines = str(item.get("examples") or "").splitlines()
    return [_ANNOTATION.sub(r"\1", line.strip()[2:].strip()) for line in lines if line.strip().startswith("- ")]


def nlu_texts(directory: Path | None = None) -> list[str]:
    """The intent examples, entity annotations stripped ([个税](tax_type) → 个税)."""
    return [text for item in nlu_documents(directory) if "intent" in item for text in _examples(item)]


def misspelling_map(directory: Path | None = None, dictionary: Path | None = None) -> dict[str, str]:
    """Deliberate misspellings → the right spelling that sounds the same: synonym examples and tax-dictionary entries
    that are not words (of jieba's dictionary, the canonical tax terms, or a synonym's own name) while another
    spelling of their group with the same pinyin is."""
    from asr.normalize import _is_dictionary_word, _pinyin, canonical_tax_terms

    dictionary = dictionary or TAX_DICTIONARY
    canonical_terms = canonical_tax_terms(dictionary)
    groups = [[str(item["synonym"])] + _examples(item) for item in nlu_documents(directory) if "synonym" in item]
    dictionary_words = [line.split()[0] for line in dictionary.read_text(encoding="utf-8").splitlines()
                        if line.strip()] if dictionary.is_file() else []
    groups.append(dictionary_words)
    mapping = {}
    for group in groups:
        right = [word for index, word in enumerate(group) if _is_han(word) and (
            word in canonical_terms or _is_dictionary_word(word) or (index == 0 and group is not dictionary_words))]
        for word in group:
            if not _is_han(word) or word in right:
                continue
            same = [other for other in right if _pinyin(other) == _pinyin(word)]
            if same:
                mapping[word] = max(same, key=lambda w: canonical_terms.get(w, 0))
    return mapping


# ---------------------------------------------------------------------------------------------------------------
# The lexicon


@dataclass
class DomainLexicon:
    """Counted words and phrases of the domain, and the unigram model over them."""

    words: dict[str, int]  # segmented tokens (any length) → count
    phrases: dict[str, int]  # multi-word phrases → count
    total: int  # segmented tokens
    misspellings: dict[str, str] = field(default_factory=dict)
    pinyin: dict[str, str] = field(default_factory=dict)  # entry → pinyin with tone numbers, space-separated
    key: str = ""

    def entries(self) -> dict[str, int]:
        """Correction targets and known spellings: words of two or more characters and phrases."""
        merged = {word: count for word, count in self.words.items() if len(word) >= 2}
        for phrase, count in self.phrases.items():
            merged[phrase] = max(merged.get(phrase, 0), count)
        return merged

    def to_json(self) -> dict:
        return {"version": BUILD_VERSION, "key": self.key, "total": self.total, "words": self.words,
                "phrases": self.phrases, "misspellings": self.misspellings, "pinyin": self.pinyin}

    @classmethod
    def from_json(cls, data: dict) -> "DomainLexicon":
        return cls(words=data["words"], phrases=data["phrases"], total=data["total"],
                   misspellings=data.get("misspellings", {}), pinyin=data["pinyin"], key=data.get("key", ""))


def _segmenter():
    """A jieba tokenizer on the general dictionary plus the canonical tax terms (a copy: the general one stays
    untouched for ``asr.normalize``)."""
    import jieba

    from asr.normalize import _tokenizer, canonical_tax_terms

    general = _tokenizer()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ = dict(general.FREQ)
    tokenizer.total = general.total
    tokenizer.initialized = True
    for word, freq in canonical_tax_terms(TAX_DICTIONARY).items():
        tokenizer.add_word(word, max(freq, 10))
    return tokenizer


def misspelling_fixer(misspellings: dict[str, str]) -> Callable[[str], str]:
    """A function that cleans a text (``asr.normalize.clean``) and replaces the deliberate misspellings in it by their
    right spelling (longest first)."""
    from asr.normalize import clean

    pattern = (re.compile("|".join(map(re.escape, sorted(misspellings, key=len, reverse=True))))
               if misspellings else None)

    def fix(text: str) -> str:
        text = clean(text) if not text.isascii() else text
        return pattern.sub(lambda m: misspellings[m.group(0)], text) if pattern else text

    return fix


def build_lexicon(texts: Iterable[str], *, misspellings: dict[str, str] | None = None,
                  dictionary: Path = TAX_DICTIONARY) -> DomainLexicon:
    """Count words and phrases in ``texts`` (misspellings replaced first)."""
    from asr.normalize import canonical_tax_terms

    fix = misspelling_fixer(dict(misspellings or {}))
    tokenizer = _segmenter()
    words: Counter[str] = Counter()
    grams: Counter[str] = Counter()
    split: dict[str, tuple[str, ...]] = {}
    total = 0
    for text in texts:
        text = fix(text)
        for run in _HAN_RUN.findall(text):
            tokens = tokenizer.lcut(run, HMM=False)
            total += len(tokens)
            words.update(tokens)
            for n in range(2, MAX_PHRASE_WORDS + 1):
                for i in range(len(tokens) - n + 1):
                    phrase = "".join(tokens[i:i + n])
                    if len(phrase) <= MAX_PHRASE_CHARS:
                        grams[phrase] += 1
                        split.setdefault(phrase, tuple(tokens[i:i + n]))
    for term in canonical_tax_terms(dictionary):
        words[term] = max(words[term], 1)
    phrases = {phrase: count for phrase, count in grams.items()
               if count >= MIN_PHRASE_COUNT and phrase not in words
               and phrase[0] not in FUNCTION_CHARS and phrase[-1] not in FUNCTION_CHARS}
    pinyin = {}
    for word in words:
        if len(word) >= 2 and _is_han(word):
            pinyin[word] = " ".join(tone_pinyin(word))
    for phrase in phrases:
        pinyin[phrase] = " ".join(pinyin.get(token) or " ".join(tone_pinyin(token)) for token in split[phrase])
    return DomainLexicon(words=dict(words), phrases=phrases, total=total, misspellings=misspellings, pinyin=pinyin)


_LOCK = threading.Lock()


def cache_directory() -> Path:
    return Path(os.environ.get("TAXBOT_CACHE_DIR") or Path.home() / ".cache" / "taxbot").expanduser() / "asr-lexicon"


class SourceWatch:
    """A value built from the project's sources (:func:`source_files`), built again when they change: an editor's
    new knowledge-base entry reaches speech recognition without a restart, as it reaches retrieval.

    The first :meth:`get` builds it. Later ones return the current value at once, and at most every ``interval``
    seconds start a check on a background thread, which hashes the sources and, if they changed, builds the new value
    and swaps it in; until then, and if the build fails, the last value keeps serving."""

    def __init__(self, build: Callable[[], object], *, name: str, interval: float = REFRESH_SECONDS,
                 key: Callable[[], str] | None = None) -> None:
        self._build = build
        self._key = key or (lambda: sources_hash(source_files()))
        self.name = name
        self.interval = interval
        self._lock = threading.Lock()
        self._value: object | None = None
        self._built_from: str | None = None
        self._checked = 0.0
        self._checking: threading.Thread | None = None

    def get(self):  # noqa: ANN201 - whatever ``build`` returns
        if self._value is None:
            with self._lock:
                if self._value is None:
                    key = self._key()
                    self._value, self._built_from, self._checked = self._build(), key, time.monotonic()
            return self._value
        if time.monotonic() - self._checked >= self.interval and self._checking is None:
            with self._lock:
                if self._checking is None:
                    self._checked = time.monotonic()
                    self._checking = threading.Thread(target=self._refresh, name=f"asr-refresh-{self.name}",
                                                      daemon=True)
                    self._checking.start()
        return self._value

    def _refresh(self) -> None:
        try:
            key = self._key()  # taken before the build: a change made during it is seen by the next check
            if key != self._built_from:
                started = time.monotonic()
                value = self._build()
                self._value, self._built_from = value, key
                logger.info("asr.refreshed what=%s key=%s seconds=%.2f", self.name, key, time.monotonic() - started)
        except Exception:  # noqa: BLE001 - the last build keeps serving; the next check tries again
            logger.exception("asr.refresh_failed what=%s", self.name)
        finally:
            self._checking = None

    def wait(self) -> None:
        """Wait for a check in flight (tests)."""
        checking = self._checking
        if checking is not None:
            checking.join()


def load_lexicon() -> DomainLexicon:
    """The project's lexicon: from the disk cache when the sources are unchanged, else built and cached."""
    with _LOCK:
        files = source_files()
        key = sources_hash(files)
        path = cache_directory() / f"lexicon-{key}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == BUILD_VERSION and data.get("key") == key:
                return DomainLexicon.from_json(data)
        except (OSError, ValueError, KeyError):
            pass
        lexicon = build_lexicon(kb_texts() + nlu_texts(), misspellings=misspelling_map())
        lexicon.key = key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(lexicon.to_json(), ensure_ascii=False), encoding="utf-8")
            temporary.replace(path)
        except OSError as error:
            logger.warning("asr.lexicon_cache_unwritable path=%s error=%s", path, error)
        logger.info("asr.lexicon_built words=%d phrases=%d", len(lexicon.words), len(lexicon.phrases))
        return lexicon


# ---------------------------------------------------------------------------------------------------------------
# The language model


class DomainModel:
    """Unigram model over jieba's general words and the domain's words and phrases; a text's log-probability is that
    of its best segmentation."""

    def __init__(self, lexicon: DomainLexicon, background: dict[str, int], background_total: int,
                 domain_weight: float = DOMAIN_WEIGHT) -> None:
        self.background = background
        self.domain: dict[str, int] = dict(lexicon.words)
        for phrase, count in lexicon.phrases.items():
            self.domain[phrase] = self.domain.get(phrase, 0) + count
        self.scale = domain_weight * background_total / max(1, lexicon.total)
        self.log_total = math.log(background_total * (1.0 + domain_weight))
        self.max_length = max(8, max((len(w) for w in self.domain), default=1))
        self.unknown = math.log(0.5) - self.log_total
        self.domain_total = max(1, lexicon.total)
        self.log_background_total = math.log(max(1, background_total))
        self._cache: dict[str, float] = {}
        self._specificity: dict[str, float] = {}

    def logprob_word(self, word: str) -> float | None:
        """log P(word), or None when neither dictionary has it (single characters always have one)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        weight = self.background.get(word, 0) + self.scale * self.domain.get(word, 0)
        if weight <= 0:
            if len(word) > 1:
                return None
            value = self.unknown
        else:
            value = math.log(weight) - self.log_total
        if len(self._cache) < 200_000:
            self._cache[word] = value
        return value

    def logprob(self, text: str) -> float:
        """log P of the best segmentation of ``text`` (dynamic programming from the end, as jieba does)."""
        return self._best(text, self.logprob_word)[0][0]

    def segment(self, text: str) -> list[tuple[int, int]]:
        """The best segmentation of ``text`` as (start, end) spans."""
        _scores, route = self._best(text, self.logprob_word)
        spans, i = [], 0
        while i < len(text):
            spans.append((i, route[i]))
            i = route[i]
        return spans

    def domain_count(self, word: str) -> int:
        return self.domain.get(word, 0)

    def specificity(self, entry: str) -> float:
        """How much likelier the domain makes ``entry`` than general Chinese does (log ratio of the domain's relative
        frequency to that of its best segmentation by jieba's general dictionary): 契税 high, 钱包 low."""
        cached = self._specificity.get(entry)
        if cached is None:
            domain = math.log(max(self.domain.get(entry, 0), 0.5) / self.domain_total)
            background = self._best(entry, self._background_logprob)[0][0]
            cached = self._specificity[entry] = domain - background
        return cached

    def _background_logprob(self, word: str) -> float | None:
        weight = self.background.get(word, 0)
        if weight > 0:
            return math.log(weight) - self.log_background_total
        return None if len(word) > 1 else math.log(0.5) - self.log_background_total

    def _best(self, text: str, logprob_word) -> tuple[list[float], list[int]]:
        n = len(text)
        best = [0.0] * (n + 1)
        route = list(range(1, n + 2))
        for i in range(n - 1, -1, -1):
            score, end = -math.inf, i + 1
            for j in range(i + 1, min(n, i + self.max_length) + 1):
                value = logprob_word(text[i:j])
                if value is not None and value + best[j] > score:
                    score, end = value + best[j], j
            best[i], route[i] = score, end
        return best, route


# ---------------------------------------------------------------------------------------------------------------
# Phrase correction

# Initials and finals ASR confuses (and southern speakers merge): zh/z ch/c sh/s, n/l, l/r; -ng/-n.
_PHRASE_FUZZY_INITIAL = {"zh": "z", "ch": "c", "sh": "s", "n": "l", "r": "l"}
CONTEXT_CHARS = 4  # characters of context either side of a window that the model scores
MIN_TARGET_COUNT = 2  # a word or phrase seen once in the corpus is not a correction target
MAX_WINDOW = 8
SUBSTITUTION_MIN_SYLLABLES = 4  # phrases this long may differ in one whole syllable (sharing its initial or final)
# The log-probability gain a correction must clear: a base, plus for every syllable that differs in tone, in a
# fuzzy pair, or entirely, plus for every common word of the general dictionary the change cuts into or replaces.
MARGIN = 3.0
TONE_PENALTY = 1.0
FUZZY_PENALTY = 2.0
SUBSTITUTION_PENALTY = 5.0
COMMON_WORD_PENALTY = 4.0
# A target must be this much likelier in the domain than in general Chinese (log ratio; 价格 is not a tax word).
MIN_SPECIFICITY = 0.5
SUBSTITUTE_IN_PHRASES = False  # whole-syllable substitutions in multi-word phrases too (not only in words)
# Text already made of ordinary domain words is left alone: a change is only considered when one of the words it
# touches (in the model's segmentation of what was heard) is seen fewer than this many times in the domain text
# (交 for 缴, 钱包 for 前报 are not errors).
SUPPORTED_COUNT = 20


def _toneless(syllable: str) -> str:
    return syllable[:-1] if syllable[-1:].isdigit() else syllable


@lru_cache(maxsize=8192)
def phrase_key(syllable: str) -> str:
    """The toneless syllable with the confusable pairs merged (shi4 → si, ning2 → lin, ru4 → lu)."""
    from asr.normalize import _split_syllable

    initial, final = _split_syllable(_toneless(syllable))
    initial = _PHRASE_FUZZY_INITIAL.get(initial, initial)
    if final.endswith("ng") and final not in ("ong", "iong", "ng"):
        final = final[:-1]
    return initial + final


@lru_cache(maxsize=8192)
def _syllable_cost(heard: str, target: str) -> float | None:
    """What hearing ``target`` as ``heard`` costs, or None when too far apart."""
    if heard == target:
        return 0.0
    plain_heard, plain_target = _toneless(heard), _toneless(target)
    if plain_heard == plain_target:
        return TONE_PENALTY
    tone = TONE_PENALTY if heard[-1:] != target[-1:] else 0.0
    if phrase_key(heard) == phrase_key(target):
        return FUZZY_PENALTY + tone
    return None


def _substitution_cost(heard: str, target: str) -> float | None:
    """One whole syllable of a long phrase heard wrong: it must still share its initial or its final (小 → 下)."""
    from asr.normalize import _split_syllable

    (hi, hf), (ti, tf) = _split_syllable(phrase_key(heard)), _split_syllable(phrase_key(target))
    return SUBSTITUTION_PENALTY if (hi and hi == ti) or hf == tf else None


@dataclass(frozen=True)
class Correction:
    start: int
    end: int
    phrase: str
    cost: float  # the margin its gain had to clear
    gain: float  # log-probability gain of the utterance


class PhraseCorrector:
    """Finds windows of a run of Chinese characters that sound like a domain phrase and are better as it."""

    def __init__(self, lexicon: DomainLexicon, model: DomainModel, segment, is_common) -> None:
        from asr.normalize import NEVER_CORRECTED_TO  # nor the phrases that hold them (虚开发票罚多少)

        self.lexicon = lexicon
        self.model = model
        self._segment = segment  # run → general-dictionary word spans
        self._is_common = is_common  # a common word of the general dictionary
        entries = lexicon.entries()
        misspelled = set(lexicon.misspellings)
        self.known = frozenset(e for e in entries if e not in misspelled)
        self.known_words = frozenset(w for w, count in lexicon.words.items()
                                     if len(w) >= 2 and count >= MIN_TARGET_COUNT and w not in misspelled)
        self.fuzzy: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]] = {}
        self.wild: dict[tuple[str, ...], list[tuple[str, tuple[str, ...]]]] = {}  # words only
        for entry, count in entries.items():
            syllables = tuple(lexicon.pinyin.get(entry, "").split())
            if (count < MIN_TARGET_COUNT or entry in misspelled or not 2 <= len(entry) <= MAX_WINDOW
                    or len(syllables) != len(entry) or any(word in entry for word in NEVER_CORRECTED_TO)):
                continue
            key = tuple(phrase_key(s) for s in syllables)
            self.fuzzy.setdefault(key, []).append((entry, syllables))
            if len(entry) >= SUBSTITUTION_MIN_SYLLABLES and (entry in lexicon.words or SUBSTITUTE_IN_PHRASES):
                for position in range(len(key)):
                    self.wild.setdefault(key[:position] + ("*",) + key[position + 1:], []).append((entry, syllables))

        self.wild_lengths = frozenset(len(key) for key in self.wild)

    def _protected(self, run: str) -> list[tuple[int, int]]:
        """Where words of the domain (not phrases: 怎么开 must not shield 开局) stand correctly spelled."""
        spans = []
        for length in range(2, min(MAX_WINDOW, len(run)) + 1):
            for start in range(len(run) - length + 1):
                if run[start:start + length] in self.known_words:
                    spans.append((start, start + length))
        return spans

    def candidates(self, run: str, syllables: tuple[str, ...], *, two_char: bool) -> list[Correction]:
        from asr.normalize import _CHINESE_NUMERALS

        keys = [phrase_key(s) for s in syllables]
        spans = self._protected(run)
        common = [(a, b) for a, b in self._segment(run) if b - a >= 2 and self._is_common(run[a:b])]
        heard_words = self.model.segment(run)
        found = []
        for length in range(2 if two_char else 3, min(MAX_WINDOW, len(run)) + 1):
            for start in range(len(run) - length + 1):
                end = start + length
                window = run[start:end]
                if window in self.known:
                    continue
                key = tuple(keys[start:end])
                options = list(self.fuzzy.get(key, ()))
                if length in self.wild_lengths:
                    for position in range(length):
                        options += self.wild.get(key[:position] + ("*",) + key[position + 1:], ())
                if not options:
                    continue
                cut = [(a, b) for a, b in spans if a < end and start < b and not (start <= a and b <= end)]
                seen = set()
                for phrase, target in options:
                    if phrase in seen or phrase == window:
                        continue
                    seen.add(phrase)
                    changed = [start + i for i, (w, t) in enumerate(zip(window, phrase)) if w != t]
                    if any(run[i] in _CHINESE_NUMERALS for i in changed) or all(t in _CHINESE_NUMERALS for t in phrase):
                        continue  # number characters are heard reliably (一报 is not 医保, 爸前 is not 八千)
                    if any(a <= i < b for a, b in cut for i in changed):
                        continue  # would change a correctly spelled word the window cuts into
                    touched = [run[a:b] for a, b in heard_words if any(a <= i < b for i in changed)]
                    if min(self.model.domain_count(word) for word in touched) >= SUPPORTED_COUNT:
                        continue  # what was heard is ordinary domain language
                    if self.model.specificity(phrase) < MIN_SPECIFICITY:
                        continue
                    cost, substituted = MARGIN, False
                    for i, syllable in enumerate(target):
                        step = _syllable_cost(syllables[start + i], syllable)
                        if step is None:
                            step = None if substituted else _substitution_cost(syllables[start + i], syllable)
                            substituted = True
                        if step is None:
                            break
                        cost += step
                    else:
                        cost += COMMON_WORD_PENALTY * sum(any(a <= i < b for i in changed) for a, b in common)
                        found.append(Correction(start, end, phrase, cost, 0.0))
        return found

    def correct(self, run: str, syllables: tuple[str, ...], *, two_char: bool) -> tuple[str, list[Correction]]:
        """``run`` with its corrections, and the corrections (``syllables``: :func:`tone_pinyin` of the run)."""
        scored = []
        for candidate in self.candidates(run, syllables, two_char=two_char):
            left = max(0, candidate.start - CONTEXT_CHARS)
            right = min(len(run), candidate.end + CONTEXT_CHARS)
            before = run[left:right]
            after = run[left:candidate.start] + candidate.phrase + run[candidate.end:right]
            gain = self.model.logprob(after) - self.model.logprob(before)
            if gain > candidate.cost:
                scored.append(Correction(candidate.start, candidate.end, candidate.phrase, candidate.cost, gain))
        scored.sort(key=lambda c: (-(c.end - c.start), -(c.gain - c.cost), c.start))
        chosen: list[Correction] = []
        for candidate in scored:
            if all(candidate.end <= other.start or other.end <= candidate.start for other in chosen):
                chosen.append(candidate)
        for candidate in sorted(chosen, key=lambda c: c.start, reverse=True):
            run = run[:candidate.start] + candidate.phrase + run[candidate.end:]
        return run, chosen


def make_corrector(lexicon: DomainLexicon) -> PhraseCorrector:
    """A corrector over ``lexicon``, with jieba's general dictionary as the background."""
    from asr.normalize import COMMON_WORD_FREQUENCY, _segments, _tokenizer

    general = _tokenizer()
    model = DomainModel(lexicon, general.FREQ, general.total)
    return PhraseCorrector(lexicon, model, _segments, lambda w: general.FREQ.get(w, 0) >= COMMON_WORD_FREQUENCY)


_override: list[PhraseCorrector] = []


_project = SourceWatch(lambda: make_corrector(load_lexicon()), name="lexicon")


def domain_lexicon() -> DomainLexicon:
    """The project's lexicon as it is now (loaded on first use, built again when the sources change)."""
    return _project.get().lexicon


def phrase_corrector() -> PhraseCorrector:
    """The corrector over the project's lexicon (loaded on first use, built again when the sources change), unless
    one is in use through :func:`use_corrector`."""
    return _override[-1] if _override else _project.get()


@contextmanager
def use_corrector(corrector: PhraseCorrector):
    """Correct with ``corrector`` inside the block (the dev set scores a lexicon that has not seen its questions)."""
    _override.append(corrector)
    try:
        yield corrector
    finally:
        _override.remove(corrector)
