"""Raw recogniser text → the text the assistant reads.

``normalize`` runs three stages, each usable on its own:

1. :func:`clean` — Traditional → Simplified (zhconv ``zh-cn``), full-width ASCII → half-width (the CJK punctuation
   of Chinese prose, ，！？：；（）, is kept), Whisper artefacts removed (subtitle credits and "please subscribe"
   lines it invents on noise, bracketed non-speech tags such as （音乐）, a phrase looping three or more times),
   and whitespace between Chinese characters collapsed (Vosk separates every word with a space).
2. :func:`correct_tax_terms` — homophone errors on tax vocabulary (个人所得睡, 增直税, 贷款利新) corrected by
   comparing toneless pinyin of sliding windows with a lexicon of canonical tax terms. The lexicon is the NLU's jieba
   dictionary ``nlu_data/dictionary/tax_terms.txt`` minus the misspellings it carries on purpose (an entry is a
   misspelling when another entry has the same toneless pinyin and a higher frequency), plus
   :data:`EXTRA_TAX_TERMS`. Two-character windows must match exactly (or differ only by a final nasal while sharing
   the other character), must not be a common word of jieba's general dictionary, must be a word of their own in
   jieba's segmentation (各税种 is 各 + 税种, 交不起税 is 交不起 + 税), and are only corrected when the sentence is
   about taxes or money. Longer windows may differ in the fuzzy pairs zh/z, ch/c, sh/s, n/l, in/ing, en/eng,
   an/ang and in one final nasal, must share a character with the term unless the pinyin is identical, and must not
   be a common word. In every window a number character must match the term's (一报 is not 医保).
   This runs before number conversion so that terms containing number characters (六税两费, 一般纳税人) are whole.
   Then :func:`correct_domain_phrases` corrects against the much larger domain lexicon of ``asr/lexicon.py`` (words
   and frequent word runs of the knowledge base and NLU data: 首套房, 零申报, 减按, 应纳税额): a window whose pinyin
   matches an entry (toneless exact, or with zh/z ch/c sh/s n/l l/r -n/-ng, or one whole syllable of a word of four
   or more characters that keeps its initial or final) is replaced when a domain language model (jieba's general
   frequencies mixed with the domain counts) makes the utterance more likely by a margin that grows with each tone or
   syllable mismatch and each common word the change breaks. Never when the window is itself an entry, the target is
   no more likely in the domain than in general Chinese (价格), the words heard are ordinary domain words (缴 for 交),
   a number character would change, or a correctly spelled domain word would be cut into.
3. :func:`numbers_to_digits` — Chinese numbers → Arabic digits, only where a run of number characters *is* a
   number in context: followed by a unit or measure word (元, 个, 月, 日, 岁, 年, 小时 …, also through a range:
   三到五个), inside 百分之/千分之/万分之, a decimal (一点五万 → 15000), a clock time (三点十分), a positional number
   of two or more characters (三千五, 三十五), or a digit string read one digit at a time (years, phone, ID and
   taxpayer numbers; 幺 = 1, and in strings of five or more the radio forms 洞 = 0, 拐 = 7, 勾 = 9; an ID read
   with 叉 at the end gets X). Everything else stays as spoken: a lone 一 (一般, 一下, 一个, 一次性 — except with
   money, age, months and days), ordinals (第一, 第三季度, 二套房), weekdays (周六), approximations (三四个, 几十万,
   这两天), and number characters inside words (十分, 万一, 六税两费, 三方协议, 五险一金). Digits the recogniser
   already wrote stay as written (Whisper's 30万 is not expanded). cn2an does the arithmetic of positional numbers
   (三千五百 → 3500); its sentence-level ``transform`` is not used because it converts every number character
   (一般 → 1般).

Nothing heavy happens at import time; the tax lexicon, the domain lexicon (from its disk cache, or built in about a
second), pinyin tables and jieba load on first use (:func:`warm_up` loads them on purpose). After warm-up a
40-character utterance takes about a millisecond.
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

TAX_DICTIONARY = Path(__file__).resolve().parent.parent / "nlu_data" / "dictionary" / "tax_terms.txt"


def normalize(text: str) -> str:
    """Simplified, artefact-free text with tax terms corrected and numbers as digits."""
    if not text:
        return ""
    text = clean(text)
    text = correct_tax_terms(text)
    return numbers_to_digits(text)


# ---------------------------------------------------------------------------------------------------------------
# 1. Script, width, artefacts, whitespace
# ---------------------------------------------------------------------------------------------------------------

# Full-width forms that are ordinary in Chinese prose stay full-width.
_KEEP_FULL_WIDTH = set("，！？：；（）")
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if chr(code) not in _KEEP_FULL_WIDTH}
_HALF_WIDTH[0x3000] = 0x20  # ideographic space


def to_halfwidth(text: str) -> str:
    """Full-width letters, digits and symbols (ＡＢＣ１２３％) → ASCII; Chinese punctuation is kept."""
    return text.translate(_HALF_WIDTH)


def to_simplified(text: str) -> str:
    """Traditional (or mixed) Chinese → Simplified, mainland vocabulary."""
    import zhconv
    return zhconv.convert(text, "zh-cn")


_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCT = "，。、；：？！“”‘’（）《》〈〉【】〔〕…—·「」『』"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_HAN}{_CJK_PUNCT}0-9])\s+(?=[{_HAN}{_CJK_PUNCT}])"
                                rf"|(?<=[{_HAN}{_CJK_PUNCT}])\s+(?=[0-9])")


def collapse_spaces(text: str) -> str:
    """Drop whitespace next to Chinese characters ("我 想 问" → "我想问"); other runs become one space."""
    text = _SPACE_BETWEEN_CJK.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


# Whisper, trained on subtitled video, invents credits and channel plugs on silence or noise. A clause carrying
# one of these markers is not something a caller says to a tax hotline.
_CREDIT_MARKERS = re.compile(
    r"字幕|subtitles?|amara|请不吝|明镜与点点|点点栏目|独播剧场|谢谢观看|感谢观看|谢谢收看|感谢收看|下期再见|本期视频"
    r"|^\s*by(?![a-z])", re.IGNORECASE)
# "Like, subscribe, share" plugs: two or more of these in one clause (one alone is ordinary speech: 给你点赞).
_PLUG_WORDS = re.compile(r"点赞|订阅|转发|打赏|关注|收藏|分享")
# Clauses end at sentence punctuation; a full stop inside a name (Amara.org) does not end one.
_CLAUSE = re.compile(r"(?:[^，。！？；,.!?;\n]|\.(?=\w))+(?:[，。！？；,!?;\n]|\.(?!\w))*")
_NON_SPEECH_TAG = re.compile(r"[(（\[【][^)）\]】]{0,12}?(?:音乐|掌声|笑声|笑|欢呼|music|applause|laughter|字幕)"
                             r"[^)）\]】]{0,12}?[)）\]】]|[♪♫♬]+", re.IGNORECASE)
# A Chinese phrase (2–15 characters) said three or more times in a row, separators allowed in between.
_LOOP = re.compile(rf"((?=[^，。、,.!?！？\s]*[{_HAN}])[^，。、,.!?！？\s]{{2,15}}?)(?:[\s，。、,.!?！？]*\1){{2,}}")
_ONE_CHAR_LOOP = re.compile(rf"([{_HAN}])\1{{5,}}")
_CHINESE_NUMERALS = frozenset("零〇一二两三四五六七八九十百千万亿幺")
_NUMBER_CHARS = _CHINESE_NUMERALS | set("洞拐勾点0123456789.")


def _loop_replacement(match: re.Match) -> str:
    unit = match.group(1)
    if set(unit) <= _NUMBER_CHARS or not unit.strip():
        return match.group(0)  # digit strings legitimately repeat (13888888888)
    return unit


def strip_artifacts(text: str) -> str:
    """Remove invented subtitle credits, non-speech tags and looping repetitions."""
    text = _NON_SPEECH_TAG.sub("", text)
    clauses = _CLAUSE.findall(text)
    if clauses:
        kept = [clause for clause in clauses
                if not _CREDIT_MARKERS.search(clause) and len(set(_PLUG_WORDS.findall(clause))) < 2]
        if len(kept) != len(clauses):
            text = "".join(kept).rstrip("，,、；; ")
    text = _ONE_CHAR_LOOP.sub(lambda m: m.group(0) if m.group(1) in _NUMBER_CHARS else m.group(1), text)
    text = _LOOP.sub(_loop_replacement, text)
    return text.strip()


def clean(text: str) -> str:
    """Stage 1: half-width, Simplified, whitespace collapsed, artefacts stripped."""
    text = to_simplified(to_halfwidth(unicodedata.normalize("NFC", text)))
    text = collapse_spaces(text)
    return collapse_spaces(strip_artifacts(text))


# ---------------------------------------------------------------------------------------------------------------
# 2. Tax terms heard as homophones
# ---------------------------------------------------------------------------------------------------------------

# Tax vocabulary callers use that the NLU dictionary does not list (it lists what jieba must keep whole).
EXTRA_TAX_TERMS = (
    "利息", "税率", "申报", "纳税申报", "发票", "开票", "开发票", "代开发票", "电子发票", "增值税专用发票", "增值税普通发票",
    "抵扣", "进项税额", "销项税额", "进项税", "销项税", "留抵退税", "加计扣除", "减免", "免征", "免征额", "免税",
    "起征点", "纳税人", "纳税", "税费", "税款", "完税", "计税", "征收", "核定征收", "查账征收", "减半征收",
    "税收优惠", "年终奖金", "汇算", "个税汇算", "年度汇算清缴", "扣除", "税前扣除", "基本减除费用", "附加扣除",
    "贷款利息", "存款利息", "利息所得", "利息收入", "股息", "红利", "股息红利", "偶然所得", "财产租赁所得",
    "工资薪金", "工资薪金所得", "稿酬", "社保", "医保", "公积金", "住房公积金", "税务局", "税务机关", "税务登记",
    "税控盘", "所得税", "企业所得税汇算清缴", "个人所得税年度汇算",
)
EXTRA_TERM_FREQUENCY = 500
# Entries of the dictionary that share a pinyin with a more frequent entry yet are real words, not misspellings:
# 企税 (short for 企业所得税) sounds exactly like 契税.
LEGITIMATE_HOMOPHONES = frozenset({"企税"})
# Words the dictionary lists so that jieba keeps them whole (虚开发票 is 虚开 + 发票, not 虚 + 开发票) but that a
# correction must never produce: 预开发票 heard as 虚开发票 turns a question into an accusation of fraud.
NEVER_CORRECTED_TO = frozenset({"虚开", "虚开发票"})
# A window that is a word of at least this frequency in jieba's general dictionary is a real word, not an error.
COMMON_WORD_FREQUENCY = 20
# Two-character corrections need the sentence to be about taxes ("我不睡" must not become "我补税").
_TAX_CONTEXT = re.compile(r"税|票|缴|申报|扣除|抵扣|减免|社保|医保|公积金|汇算|退还|征收|报销|利息|工资|收入|个体户"
                          r"|金额|公司|单位|会计|财务|元")

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c",
             "s", "y", "w")
_FUZZY_INITIAL = {"zh": "z", "ch": "c", "sh": "s", "n": "l"}


def _split_syllable(syllable: str) -> tuple[str, str]:
    for initial in _INITIALS:
        if syllable.startswith(initial) and len(syllable) > len(initial):
            return initial, syllable[len(initial):]
    return "", syllable


@lru_cache(maxsize=4096)
def _fuzzy(syllable: str) -> tuple[str, str]:
    """(fuzzy syllable, fuzzy syllable without a final nasal): zh/z ch/c sh/s n/l and -ng/-n merged."""
    initial, final = _split_syllable(syllable)
    initial = _FUZZY_INITIAL.get(initial, initial)
    if final.endswith("ng") and final not in ("ong", "iong", "ng"):
        final = final[:-1]  # ing→in, eng→en, ang→an, iang→ian, uang→uan
    denasal = final[:-1] if final.endswith("n") and len(final) > 1 else final
    return initial + final, initial + denasal


def _exact_denasal(syllable: str) -> str:
    """The syllable with a final -n/-ng dropped and no other change (xin → xi, sheng → she)."""
    for nasal in ("ng", "n"):
        if syllable.endswith(nasal) and len(syllable) > len(nasal) and not syllable.endswith("ong"):
            return syllable[:-len(nasal)]
    return syllable


@lru_cache(maxsize=2048)
def _tone_pinyin(run: str) -> tuple[str, ...]:
    """Pinyin with the tone as a final digit (neutral tone 5), one syllable per character of a run of Chinese
    characters (polyphones read in context)."""
    from pypinyin import Style, lazy_pinyin
    syllables = lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda chars: list(chars))
    if len(syllables) != len(run):  # defensive: never misalign windows
        syllables = [lazy_pinyin(char, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda c: [c])[0]
                     for char in run]
    return tuple(syllables)


@lru_cache(maxsize=2048)
def _pinyin(run: str) -> tuple[str, ...]:
    """Toneless pinyin, one syllable per character of a run of Chinese characters (polyphones read in context)."""
    return tuple(s[:-1] if s[-1:].isdigit() and len(s) > 1 else s for s in _tone_pinyin(run))


@dataclass(frozen=True)
class _Term:
    text: str
    syllables: tuple[str, ...]
    frequency: int

    @property
    def fuzzy_key(self) -> tuple[str, ...]:
        return tuple(_fuzzy(s)[1] for s in self.syllables)


@dataclass(frozen=True)
class _Lexicon:
    known: frozenset[str]  # canonical spellings and legitimate homophones: never rewritten
    known_lengths: tuple[int, ...]
    exact: dict  # (syllables) → [_Term], two-character terms
    two_denasal: dict  # (syllables without final nasal) → [_Term], two-character terms
    fuzzy: dict  # length → {fuzzy denasal key → [_Term]}, terms of three or more characters
    lengths: tuple[int, ...]  # term lengths of three or more, longest first


def _read_dictionary(path: Path) -> list[tuple[str, int]]:
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        logger.warning("asr.tax_dictionary_missing path=%s", path)
        return entries
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            entries.append((parts[0], int(parts[1])))
        elif parts:
            entries.append((parts[0], EXTRA_TERM_FREQUENCY))
    return entries


def _is_han(text: str) -> bool:
    return bool(text) and all("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def canonical_tax_terms(path: Path = TAX_DICTIONARY) -> dict[str, int]:
    """Canonical tax terms (Chinese characters only, two or more) → frequency; deliberate misspellings left out."""
    return dict(_canonical_terms(path))


@lru_cache(maxsize=4)
def _canonical_terms(path: Path) -> tuple[tuple[str, int], ...]:
    entries = [(word, freq) for word, freq in _read_dictionary(path)
               if _is_han(word) and len(word) >= 2 and word not in NEVER_CORRECTED_TO]
    entries += [(word, EXTRA_TERM_FREQUENCY) for word in EXTRA_TAX_TERMS]
    best: dict[tuple[str, ...], int] = {}
    for word, freq in entries:
        key = _pinyin(word)
        best[key] = max(best.get(key, 0), freq)
    canonical: dict[str, int] = {}
    for word, freq in entries:
        if freq < best[_pinyin(word)] and word not in LEGITIMATE_HOMOPHONES:
            continue  # a rarer spelling of the same sound: a misspelling kept for the NLU's tokenizer
        canonical[word] = max(canonical.get(word, 0), freq)
    return tuple(sorted(canonical.items()))


@lru_cache(maxsize=4)
def _lexicon(path: Path = TAX_DICTIONARY) -> _Lexicon:
    exact: dict = {}
    two_denasal: dict = {}
    fuzzy: dict = {}
    terms = dict(_canonical_terms(path))
    for word, freq in terms.items():
        term = _Term(word, _pinyin(word), freq)
        if len(word) == 2:
            exact.setdefault(term.syllables, []).append(term)
            two_denasal.setdefault(tuple(_exact_denasal(s) for s in term.syllables), []).append(term)
        else:
            fuzzy.setdefault(len(word), {}).setdefault(term.fuzzy_key, []).append(term)
    logger.debug("asr.tax_lexicon_loaded terms=%d", len(terms))
    known = frozenset(terms) | LEGITIMATE_HOMOPHONES
    return _Lexicon(known=known, known_lengths=tuple(sorted({len(word) for word in known})), exact=exact,
                    two_denasal=two_denasal, fuzzy=fuzzy, lengths=tuple(sorted(fuzzy, reverse=True)))


_TOKENIZER_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _tokenizer():
    """A private jieba tokenizer on jieba's general dictionary (no tax user words), for word frequencies and
    segmentation. Private so that user dictionaries loaded elsewhere in the process do not change its answers."""
    with _TOKENIZER_LOCK:
        import jieba
        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        return tokenizer


def _is_common_word(word: str) -> bool:
    return _tokenizer().FREQ.get(word, 0) >= COMMON_WORD_FREQUENCY


@lru_cache(maxsize=1024)
def _segments(run: str) -> tuple[tuple[int, int], ...]:
    """jieba's words in ``run`` (with its HMM for unknown words) as (start, end) offsets."""
    spans, offset = [], 0
    for word in _tokenizer().lcut(run, HMM=True):
        spans.append((offset, offset + len(word)))
        offset += len(word)
    return tuple(spans)


def _straddles_word(run: str, start: int, end: int, term: str) -> bool:
    """Whether the window cuts through a word: a dictionary word (各税种 = 各 + 税种), or a word jieba's HMM found
    that takes a character the correction would change (交不起税 = 交不起 + 税). An HMM word that swallows the
    whole window (利新要) only says the window itself is unknown, which is what a misheard term looks like."""
    for a, b in _segments(run):
        if not (a < end and start < b) or (start <= a and b <= end):
            continue  # outside the window, or a word inside it
        if _is_dictionary_word(run[a:b]):
            return True  # cuts into a real word, or lies inside one
        if a <= start and end <= b:
            continue  # an unknown stretch around the whole window
        if any(run[i] != term[i - start] for i in range(max(a, start), min(b, end))):
            return True
    return False


def _is_dictionary_word(word: str) -> bool:
    return len(word) > 1 and _tokenizer().FREQ.get(word, 0) > 0


def warm_up() -> None:
    """Load the lexicon, pinyin tables and jieba now rather than on the first caller's utterance."""
    normalize("我想问一下个人所得睡和各税的申报，三千五百元")
    _tokenizer()
    from asr.lexicon import phrase_corrector
    phrase_corrector()


@dataclass(frozen=True)
class _Candidate:
    start: int
    end: int
    term: str
    cost: int
    frequency: int


def _protected_spans(run: str, lexicon: _Lexicon) -> list[tuple[int, int]]:
    """Where correctly spelled terms already stand."""
    spans = []
    for length in lexicon.known_lengths:
        for start in range(len(run) - length + 1):
            if run[start:start + length] in lexicon.known:
                spans.append((start, start + length))
    return spans


def _clashes(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """A window may swallow a correct term whole (个人所得 in 个人所得睡) but not cut into one."""
    return any(a < end and start < b and not (start <= a and b <= end) for a, b in spans)


def _numbers_agree(window: str, term: str) -> bool:
    """Number characters are recognised reliably: where the window has one, the term must have the same one
    (一报 is "one report", not 医保)."""
    return all(w == t for w, t in zip(window, term) if w in _CHINESE_NUMERALS)


def _long_candidates(run: str, syllables: tuple[str, ...], lexicon: _Lexicon,
                     spans: list[tuple[int, int]]) -> list[_Candidate]:
    found = []
    fuzzy = [_fuzzy(s) for s in syllables]
    keys = [f[1] for f in fuzzy]
    for length in lexicon.lengths:
        index = lexicon.fuzzy[length]
        for start in range(len(run) - length + 1):
            end = start + length
            terms = index.get(tuple(keys[start:end]))
            if not terms:
                continue
            window = run[start:end]
            if window in lexicon.known or _clashes(start, end, spans) or _is_common_word(window):
                continue
            for term in terms:
                nasal = sum(fuzzy[start + i][0] != _fuzzy(s)[0] for i, s in enumerate(term.syllables))
                inexact = sum(syllables[start + i] != s for i, s in enumerate(term.syllables))
                shared = sum(window[i] == term.text[i] for i in range(length))
                if nasal > 1 or (inexact and not shared) or not _numbers_agree(window, term.text):
                    continue
                found.append(_Candidate(start, end, term.text, inexact + nasal, term.frequency))
    return found


def _two_char_candidates(run: str, syllables: tuple[str, ...], lexicon: _Lexicon,
                         spans: list[tuple[int, int]]) -> list[_Candidate]:
    found = []
    for start in range(len(run) - 1):
        end = start + 2
        window = run[start:end]
        if window in lexicon.known or _clashes(start, end, spans):
            continue
        key = syllables[start:end]
        terms = [(term, 0) for term in lexicon.exact.get(key, ())]
        if not terms:  # one character right, the other differing only by a final nasal (利新 → 利息)
            for term in lexicon.two_denasal.get(tuple(_exact_denasal(s) for s in key), ()):
                same = [window[i] == term.text[i] for i in range(2)]
                if sum(same) == 1:
                    terms.append((term, 1))
        terms = [(term, cost) for term, cost in terms if _numbers_agree(window, term.text)]
        if not terms or _is_common_word(window):
            continue
        for term, cost in terms:
            if not _straddles_word(run, start, end, term.text):
                found.append(_Candidate(start, end, term.text, cost, term.frequency))
    return found


def _choose(candidates: list[_Candidate]) -> list[_Candidate]:
    """Longest, closest, most frequent first; non-overlapping; a window two terms claim equally is left alone."""
    by_window: dict[tuple[int, int], list[_Candidate]] = {}
    for candidate in candidates:
        by_window.setdefault((candidate.start, candidate.end), []).append(candidate)
    winners = []
    for options in by_window.values():
        options.sort(key=lambda c: (c.cost, -c.frequency))
        first = options[0]
        if any(other.term != first.term and (other.cost, other.frequency) == (first.cost, first.frequency)
               for other in options[1:]):
            continue
        winners.append(first)
    winners.sort(key=lambda c: (-(c.end - c.start), c.cost, -c.frequency, c.start))
    chosen: list[_Candidate] = []
    for candidate in winners:
        if all(candidate.end <= other.start or other.end <= candidate.start for other in chosen):
            chosen.append(candidate)
    return chosen


def _apply(run: str, chosen: list[_Candidate]) -> str:
    for candidate in sorted(chosen, key=lambda c: c.start, reverse=True):
        run = run[:candidate.start] + candidate.term + run[candidate.end:]
    return run


_HAN_RUN = re.compile(f"[{_HAN}]{{2,}}")


def _correct_run(run: str, two_char: bool) -> str:
    lexicon = _lexicon()
    syllables = _pinyin(run)
    spans = _protected_spans(run, lexicon)
    if two_char:
        candidates = _two_char_candidates(run, syllables, lexicon, spans)
    else:
        candidates = _long_candidates(run, syllables, lexicon, spans)
    chosen = _choose(candidates)
    if not chosen:
        return run
    # Only the terms are logged: the rest of the utterance may carry a spoken ID or phone number.
    logger.debug("asr.tax_term_corrected corrections=%s",
                 ",".join(f"{run[c.start:c.end]}>{c.term}" for c in chosen))
    return _apply(run, chosen)


def correct_tax_terms(text: str) -> str:
    """Replace tax terms misheard as homophones (个人所得睡 → 个人所得税); correct text is left as it is.

    Terms of three or more characters first; two-character terms only when the sentence is about taxes. Then
    phrases of the domain lexicon (:func:`correct_domain_phrases`).
    """
    if not text:
        return text
    text = _HAN_RUN.sub(lambda m: _correct_run(m.group(0), two_char=False), text)
    tax_context = bool(_TAX_CONTEXT.search(text))
    if tax_context:
        text = _HAN_RUN.sub(lambda m: _correct_run(m.group(0), two_char=True), text)
    return correct_domain_phrases(text, two_char=tax_context)


def correct_domain_phrases(text: str, *, two_char: bool = True) -> str:
    """Windows that sound like a word or phrase of the domain lexicon (``asr/lexicon.py``: 手套房 → 首套房,
    领身报 → 零申报) replaced when the domain language model finds the utterance more likely with it, by a margin
    that grows with every syllable that does not match exactly and when the window is a common word itself.
    Two-character windows only with ``two_char`` (the sentence is about taxes)."""
    if not text:
        return text
    from asr.lexicon import phrase_corrector, tone_pinyin

    corrector = phrase_corrector()

    def run_corrected(match: re.Match) -> str:
        run = match.group(0)
        fixed, chosen = corrector.correct(run, tone_pinyin(run), two_char=two_char)
        if chosen:
            logger.debug("asr.domain_phrase_corrected corrections=%s",
                         ",".join(f"{run[c.start:c.end]}>{c.phrase}" for c in chosen))
        return fixed

    return _HAN_RUN.sub(run_corrected, text)


# ---------------------------------------------------------------------------------------------------------------
# 3. Chinese numbers → digits
# ---------------------------------------------------------------------------------------------------------------

_DIGIT_OF = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
             "五": "5", "六": "6", "七": "7", "拐": "7", "八": "8", "九": "9", "勾": "9"}
_DIGITS = "零〇一二两三四五六七八九幺"
_MULTIPLIERS = "十百千万亿"
_BIG_MULTIPLIERS = set("百千万亿")

# Units and measure words after which a number is a number. Longest first so 分钟 wins over 分 (十分 = "very").
_UNITS = sorted({
    "元", "块钱", "块", "角", "毛钱", "毛", "分钱", "美元", "港元", "欧元", "英镑", "日元",
    "分钟", "秒钟", "秒", "小时", "钟头", "个小时", "天", "日", "号", "周", "周岁", "星期", "礼拜", "月", "年", "岁",
    "季度", "个月", "个工作日", "工作日",
    "个", "次", "遍", "趟", "回", "人", "名", "位", "户", "家", "张", "份", "笔", "套", "台", "辆", "项",
    "种", "本", "间", "条", "款", "页", "期", "倍", "层", "楼", "档", "点", "件", "批", "组", "部",
    "座", "栋", "所", "单", "米", "平米", "平方米", "平方", "公里", "千米", "公斤", "千克", "斤", "吨", "亩", "%",
}, key=len, reverse=True)
_UNIT = re.compile("(?:多|余)[百千万亿]|(?:多|余)?(?:" + "|".join(map(re.escape, _UNITS)) + ")")
# A lone 一 is nearly always part of a word (一个, 一次, 一起, 一般), and a lone 二 before a measure word is an
# ordinal (二套房, 二类卡; the cardinal is 两): only money, age, months, days after a month and ranges make them
# numbers, and never after a determiner (前一月, 每一年).
_UNITS_FOR_WORDLIKE = re.compile(r"(?:元|块钱|角|毛钱|分钱|岁|周岁|月|%)")
_WORDLIKE_DIGITS = {"一", "幺", "二"}
_DETERMINERS = set("前后上下每同这那哪某")
# 这两天, 前两年, 过两天: 两 after a deictic word means "a couple of", not 2.
_VAGUE_BEFORE_TWO = set("这那前过没隔头")
_WEEKDAY_PREFIXES = ("周", "星期", "礼拜")

_RADIO_RUN = re.compile("[零〇一二两三四五六七八九幺洞拐勾]{5,}")
_TIME = re.compile(r"(?P<h>[零一二两三四五六七八九十]{1,3})点"
                   r"(?:(?P<m>[零一二三四五六七八九十]{1,3})(?P<fen>分(?!钟))?|(?P<half>半)|(?P<whole>整))")
_NUMBER = re.compile(
    rf"(?P<pct>百分之|千分之|万分之)?(?P<int>[{_DIGITS}{_MULTIPLIERS}]+)"
    rf"(?:点(?P<frac>[{_DIGITS}]+)(?![十百千])(?P<mag>万亿|万|亿)?)?")
# 第一, 第十一、十二条, 第一至三条: ordinals (and the items listed after one) stay words.
_ORDINAL_CONTEXT = re.compile(rf"第(?:[{_DIGITS}{_MULTIPLIERS}]+[、，,和及或至到])*$")
_RANGE_TAIL = re.compile(rf"(?:到|至)(?:百分之)?[{_DIGITS}{_MULTIPLIERS}]+(?:点[{_DIGITS}]+)?")
# After a lone 一 with a decimal part, what may follow for it to be a decimal (not 一点一起 = "a bit together").
_AFTER_DECIMAL = re.compile(rf"$|[^{_HAN}]|[的左右以上下内吧呢啊了]")
_ID_TAIL = re.compile(r"(?<!\d)(\d{17})\s*(?:叉|艾克斯|[xX])")
_DIGIT_GROUPS = re.compile(r"(?<![\d.])\d{3,}(?: \d{3,})+(?![\d.])")


def _digit_string(run: str) -> str:
    return "".join(_DIGIT_OF[ch] for ch in run)


def _plain_value(run: str) -> int | None:
    """The integer a run of number characters spells, or None when it is not a well-formed number."""
    if not run:
        return None
    if all(ch in _DIGIT_OF for ch in run):
        return int(_digit_string(run))
    if run[0] in _BIG_MULTIPLIERS:
        return None  # 万一, 千万, 百万 are words before they are numbers
    import cn2an
    try:
        value = cn2an.cn2an(run, "normal")
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return int(value) if value == int(value) else None


def _is_code_char(char: str) -> bool:
    """A character of a written code (digits, capitals): 91350100M…Y四三 is the end of a taxpayer number."""
    return char.isascii() and (char.isdigit() or char.isupper())


def _format_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _is_approximate(run: str) -> bool:
    """三四个, 两三天, 十五六岁, 五六十: neighbouring digits one apart are an estimate, not a number."""
    if len(run) != 2 and not any(ch in _MULTIPLIERS for ch in run):
        return False
    values = [int(_DIGIT_OF[ch]) if ch in _DIGIT_OF else None for ch in run]
    return any(a is not None and b is not None and a > 0 and b == a + 1 for a, b in zip(values, values[1:]))


def _time_replacement(match: re.Match) -> str:
    hour = _plain_value(match.group("h"))
    minute_text = match.group("m")
    if minute_text and not (match.group("fen") or "十" in minute_text):
        return match.group(0)  # 三点五 is 3.5, not 3:05 — left to the decimal rule
    if hour is None or hour > 24 or (match.group("h") == "零" and not match.group("fen")):
        return match.group(0)
    if minute_text:
        minute = _plain_value(minute_text)
        if minute is None or minute > 59:
            return match.group(0)
        return f"{hour}点{minute}" + ("分" if match.group("fen") else "")
    return f"{hour}点" + ("半" if match.group("half") else "整")


def _number_replacement(match: re.Match) -> str:
    text = match.string
    start, end = match.span()
    pct, run, frac, mag = match.group("pct"), match.group("int"), match.group("frac"), match.group("mag")
    prev = text[start - 1] if start else ""
    rest = text[end:]
    original = match.group(0)

    if pct:
        value = _plain_value("一" + run if run[0] in "百千" else run)
        if value is None:
            return original
        number = _format_decimal(Decimal(value) if not frac else Decimal(f"{value}.{_digit_string(frac)}"))
        if pct == "万分之":
            return f"万分之{number}" + (mag or "")
        return number + ("%" if pct == "百分之" else "‰") + (mag or "")

    if prev == "几" or rest.startswith("几") or _is_approximate(run):
        return original
    digits_only = all(ch in _DIGIT_OF for ch in run)
    if prev and (prev in "%‰" or (prev.isdigit() and not digits_only)):
        return original  # 6%三档 would become 6%3档
    if text[:start].endswith(_WEEKDAY_PREFIXES) and len(run) == 1:
        return original  # 周六, 星期一, 礼拜三
    if run == "两" and prev in _VAGUE_BEFORE_TWO:
        return original
    unit = _UNIT.match(rest)
    range_tail = None if unit else _RANGE_TAIL.match(rest)
    if range_tail:  # 三到五个: the left end takes the right end's unit
        unit = _UNIT.match(rest, range_tail.end())
    unit_text = unit.group(0) if unit else ""

    if _ORDINAL_CONTEXT.search(text, max(0, start - 24), start) and not unit_text.startswith("号"):
        return original  # ordinals stay words, except document numbers (第十二号)

    if frac:
        if run in _WORDLIKE_DIGITS and not mag and not unit_text and not _AFTER_DECIMAL.match(rest):
            return original
        whole = _plain_value(run)
        if whole is None:
            return original
        number = Decimal(f"{whole}.{_digit_string(frac)}")
        if mag:
            number *= {"万": 10 ** 4, "亿": 10 ** 8, "万亿": 10 ** 12}[mag]
        return _format_decimal(number)

    if digits_only and (len(run) >= 3 or (len(run) == 2 and (_is_code_char(prev) or _is_code_char(rest[:1])))):
        return _digit_string(run)  # years, phone, ID and taxpayer numbers, 12366, the digits of 91350100M…Y43
    if digits_only and len(run) == 2:
        return _digit_string(run) if unit_text == "年" else original  # 二五年 → 25年; 二五 alone is not a number
    value = _plain_value(run)
    if value is None:
        return original
    if run in _WORDLIKE_DIGITS:
        if prev in _DETERMINERS:
            return original
        day = unit_text in ("日", "号") and (prev == "月" or _RANGE_TAIL.match(rest, len(unit_text)) is not None)
        lone_ok = bool(_UNITS_FOR_WORDLIKE.match(unit_text)) or day or bool(range_tail and unit_text)
        return str(value) if lone_ok else original
    if unit_text:
        return str(value)
    if len(run) >= 2:
        return str(value)  # 三千五, 八千, 三十五: a multiplier makes it a quantity even without a unit
    return original


def numbers_to_digits(text: str) -> str:
    """Chinese numbers that are numbers in context → Arabic digits; number characters inside words stay."""
    if not text:
        return text
    text = _RADIO_RUN.sub(lambda m: m.group(0).translate(str.maketrans("洞拐勾", "零七九"))
                          if sum(ch in _DIGITS for ch in m.group(0)) >= 3 else m.group(0), text)
    text = _TIME.sub(_time_replacement, text)
    text = _NUMBER.sub(_number_replacement, text)
    text = _DIGIT_GROUPS.sub(lambda m: m.group(0).replace(" ", "") if len(m.group(0).replace(" ", "")) >= 7
                             else m.group(0), text)
    return _ID_TAIL.sub(r"\1X", text)
