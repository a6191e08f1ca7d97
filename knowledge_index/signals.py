"""What a question asks that similarity cannot see: the taxes it names, the rates it states, a time ahead of today.

Two texts about the same transaction (selling a home) are close whether the question asks about 增值税 or
土地增值税, whether it checks the rate the entry gives or another one, about this year's rule or the one people
guess for 2030. These signals are read from the question and from each candidate entry (its title, questions,
answer and tags) with general domain knowledge only: the names of China's taxes and fees (with the abbreviations
and ASR homophones of the NLU synonym table), the rates a text states, and words that ask for a prediction. They
are features of the hybrid model (``scoring.FEATURES``), weighed by ``kb calibrate`` like the others; nothing here
was taken from the evaluation sets.
"""
from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from knowledge_index.analysis import SYNONYMS, normalise

# Canonical name → other names people use. The canonical names are the taxes and fees of the Chinese tax system
# (18 taxes, the surcharges and the social insurance contributions the tax bureau collects).
TAXES: dict[str, tuple[str, ...]] = {
    "增值税": ("增殖税", "增直税", "增值睡", "vat"),
    "消费税": (),
    "企业所得税": ("企所税", "企税", "企业税", "企业所得睡", "公司所得税"),
    "个人所得税": ("个税", "各税", "个所税", "个人税", "工资税", "个人所得睡", "个人所的税", "iit"),
    "资源税": (),
    "城市维护建设税": ("城建税", "城维税", "城市建设税"),
    "房产税": ("房地产税",),
    "城镇土地使用税": ("土地使用税",),
    "土地增值税": ("土增税",),
    "车船税": (),
    "印花税": (),
    "契税": (),
    "车辆购置税": ("车购税", "购置税"),
    "耕地占用税": (),
    "烟叶税": (),
    "船舶吨税": (),
    "环境保护税": ("环保税",),
    "关税": (),
    "教育费附加": ("教育附加",),
    "地方教育附加": (),
    "文化事业建设费": (),
    "残疾人就业保障金": ("残保金",),
    "社会保险费": ("社保", "社会保险", "五险"),
}
# A group name is covered by an entry that names it or any of its members.
GROUPS: dict[str, tuple[str, ...]] = {
    "附加税费": ("城市维护建设税", "教育费附加", "地方教育附加"),
    "六税两费": ("资源税", "城市维护建设税", "房产税", "城镇土地使用税", "印花税", "耕地占用税", "教育费附加",
                 "地方教育附加"),
}
GROUP_NAMES = {"附加税费": ("附加税", "附加费")}
# 关税 inside 相关税费 / 有关税收 / 海关税款 is not the customs duty.
_NOT_CUSTOMS = re.compile(r"[相有海机]关税")

# Asking for a prediction or an opinion rather than the rule in force.
_PREDICTION = re.compile(r"(?:明年|后年|将来|未来|以后|今后)还?会|还会不会|会不会(?:取消|延续|继续|涨|调|降|出台|推开|变)|"
                         r"预计|估计|预测|你觉得|你认为|推荐|靠谱|前途|值得|划算|能不能涨|涨不涨")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|个点|个百分点)|百分之\s*(?=\d)(\d+(?:\.\d+)?)")
_PERMILLE = re.compile(r"(\d+(?:\.\d+)?)\s*‰")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})\s*年")


@lru_cache(maxsize=1)
def _aliases() -> tuple[tuple[str, str], ...]:
    """(name as written, canonical name), longest first, so 土地增值税 is read before 增值税 inside it."""
    pairs = {normalise(name): canonical for canonical, names in TAXES.items() for name in (canonical, *names)}
    pairs.update({normalise(name): group for group in GROUPS for name in (group, *GROUP_NAMES.get(group, ()))})
    pairs.update(_synonym_aliases())
    return tuple(sorted(pairs.items(), key=lambda p: (-len(p[0]), p[0])))


def _synonym_aliases() -> dict[str, str]:
    """The NLU synonym table's names for the taxes above that say 税 (增值 alone also means 'value added')."""
    import yaml

    try:
        table = yaml.safe_load(SYNONYMS.read_text(encoding="utf-8")).get("nlu", [])
    except OSError:
        return {}
    found: dict[str, str] = {}
    for item in table:
        canonical = item.get("synonym")
        if canonical not in TAXES:
            continue
        for line in str(item.get("examples", "")).splitlines():
            variant = normalise(line.strip().removeprefix("- ").strip())
            if len(variant) >= 2 and re.search(r"[税睡费]$", variant):
                found[variant] = canonical
    return found


def taxes_named(text: str) -> frozenset[str]:
    """The canonical names of the taxes and fees ``text`` names (groups such as 附加税费 by their own name)."""
    text = _NOT_CUSTOMS.sub("  ", normalise(text))
    named: set[str] = set()
    for alias, canonical in _aliases():
        if alias in text:
            named.add(canonical)
            text = text.replace(alias, " " * len(alias))
    return frozenset(named)


def covers_tax(entry_taxes: frozenset[str], tax: str) -> bool:
    if tax in entry_taxes:
        return True
    if tax in GROUPS:
        return any(member in entry_taxes for member in GROUPS[tax])
    return any(tax in GROUPS[group] for group in entry_taxes if group in GROUPS)


def tax_mismatch(query_taxes: frozenset[str], entry_taxes: frozenset[str]) -> float:
    """The share of the taxes the question names that the entry, which is about other taxes, never mentions (0 when
    either names none)."""
    if not query_taxes or not entry_taxes:  # an entry that names no tax (a procedure, a form) may hold for any
        return 0.0
    return sum(not covers_tax(entry_taxes, t) for t in query_taxes) / len(query_taxes)


def rates(text: str) -> frozenset[float]:
    """The percentages ``text`` states in digits (3%, 百分之3, 3个点, 0.5‰), as numbers of per cent."""
    text = normalise(text)
    found = {float(m.group(1) or m.group(2)) for m in _PERCENT.finditer(text)}
    found |= {float(n) / 10 for n in _PERMILLE.findall(text)}
    return frozenset(round(n, 4) for n in found)


def rate_mismatch(query_rates: frozenset[float], entry_rates: frozenset[float]) -> float:
    """1 when the question states a rate the entry never states: it asks about another item, or checks a figure
    the entry does not give (小规模纳税人是不是按5%交增值税, against the entry on the 3% and 1% rates)."""
    return 1.0 if query_rates - entry_rates else 0.0


def future(query: str, today: date) -> float:
    """1 when the question asks for a prediction or an opinion, or about a year after this one."""
    text = normalise(query)
    if _PREDICTION.search(text):
        return 1.0
    return 1.0 if any(int(y) > today.year for y in _YEAR.findall(text)) else 0.0


def entry_text(entry) -> str:  # noqa: ANN001 - a corpus.Entry
    return " ".join([entry.title, entry.category, *entry.questions, entry.answer, *entry.tags])
