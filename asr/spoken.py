"""Written replies → text a Mandarin TTS voice reads naturally ("voice replies are written for the ear").

:func:`for_speech` rewrites, in this order, everything a synthesiser would read badly or aloud as symbols:

1. Layout: markdown (headings, emphasis, code, links → their text, tables, bullets; ``1.`` list items become
   第一，第二，…), URLs (dropped when a label or brackets already name them, otherwise 相关网站), e-mail addresses
   (电子邮箱), 【】 brackets (the label is kept, followed by a pause), emoji and decorative symbols.
2. Numbers whose reading depends on what they are, most specific first: document numbers (财税〔2019〕13号 →
   财税二零一九年第十三号), dates (2026-01-01, 2026年1月1日 → 二零二六年一月一日), clock times and their ranges
   (9:00-17:00 → 九点到十七点), years (2025年 → 二零二五年), percentages (3% → 百分之三, ‰ → 千分之),
   identifiers read digit by digit with 幺 for 1 (12366 and the other 12xxx/95xxx service lines, phone numbers,
   ID card / taxpayer / social-credit codes, any digit string after 电话/手机/身份证/识别号/账号 … or of eleven
   digits and more, or starting with 0), ranges (3-5 → 三到五; a descending "-" is a minus: 3000-800 → 三千减八百).
3. Everything left is a quantity read as one (3500元 → 三千五百元, 60000元 → 六万元, 1.5万 → 一点五万), with
   两 where Mandarin says it (2个 → 两个, 2000 → 两千, but 第2 → 第二 and 2月 → 二月); arithmetic and comparison
   signs become words (× 乘以, = 等于, ≥ 大于等于 …), 元/月 becomes 元每月.

cn2an supplies the readings of quantities. The function is pure and cheap; nothing is loaded at import time.
"""
from __future__ import annotations

import re
import unicodedata

from asr.normalize import to_halfwidth

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DIGIT_NAMES = dict(zip("0123456789", "零一二三四五六七八九"))
_PHONE_DIGIT_NAMES = {**_DIGIT_NAMES, "1": "幺"}


def for_speech(text: str) -> str:
    """The reply rewritten so a Mandarin TTS reads it the way a person on the phone would say it."""
    if not text:
        return ""
    text = to_halfwidth(unicodedata.normalize("NFC", text))
    text = _layout(text)
    text = _numbers(text)
    return _tidy(text)


# ---------------------------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------------------------

def read_digits(digits: str, *, yao: bool = True) -> str:
    """Digit by digit: 12366 → 幺二三六六 (一 instead of 幺 when ``yao`` is false, as in years)."""
    names = _PHONE_DIGIT_NAMES if yao else _DIGIT_NAMES
    return "".join(names.get(ch, ch) for ch in digits)


def read_year(year: str) -> str:
    """2025 → 二零二五."""
    return read_digits(year, yao=False)


def read_number(number: str) -> str:
    """A quantity: 3500 → 三千五百, 60000 → 六万, 1.5 → 一点五, 2000 → 两千 (cn2an's reading, 两 before 千/万/亿)."""
    import cn2an
    number = number.replace(",", "")
    if "." in number:
        whole, _, fraction = number.partition(".")
        reading = cn2an.an2cn(whole or "0", "low") + "点" + read_digits(fraction, yao=False)
    else:
        reading = cn2an.an2cn(str(int(number)), "low")
    if len(reading) > 1 and reading[0] == "二" and reading[1] in "千万亿":
        reading = "两" + reading[1:]
    return reading


def read_identifier(code: str) -> str:
    """An identifier, one character at a time, grouped with short pauses the way people read them out:
    mobile numbers 3-4-4, 18-character ID and credit codes 6-8-4, other long strings in fours."""
    code = code.upper()
    if len(code) == 11 and code.startswith("1"):
        groups = [code[:3], code[3:7], code[7:]]
    elif len(code) == 18:
        groups = [code[:6], code[6:14], code[14:]]
    elif len(code) > 8:
        groups = [code[i:i + 4] for i in range(0, len(code), 4)]
    else:
        groups = [code]
    return "，".join(read_digits(group).replace("X", "叉") for group in groups)


def read_time(hour: str, minute: str) -> str:
    """9:00 → 九点, 9:30 → 九点半, 8:05 → 八点零五分, 2:00 → 两点."""
    h, m = int(hour), int(minute)
    reading = "两" if h == 2 else read_number(str(h))
    if m == 0:
        return reading + "点"
    if m == 30:
        return reading + "点半"
    return reading + "点" + ("零" + _DIGIT_NAMES[str(m)] if m < 10 else read_number(str(m))) + "分"


# ---------------------------------------------------------------------------------------------------------------
# 1. Layout
# ---------------------------------------------------------------------------------------------------------------

_URL = re.compile(r"(?:https?://|www\.)[^\s，。；、！？（）()【】\[\]<>\"“”]+"
                  r"|(?<![\w@.])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:gov\.cn|com\.cn|org\.cn|cn|com|net|org)\b"
                  r"(?:/[^\s，。；、！？（）()【】]*)?", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL_LABEL = re.compile(r"(?:网站|网址|链接|地址|平台|入口|官网)\s*[:：]?\s*$")
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)]*)\)")
_LIST_NUMBER = re.compile(r"^\s*(\d{1,2})[.、)）]\s+|^\s*(\d{1,2})、", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•·]|>+)\s+", re.MULTILINE)
_HEADING = re.compile(r"^\s*#{1,6}\s*", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~|`+)(?=\S)(.+?)(?<=\S)\1")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$", re.MULTILINE)
_CODE_FENCE = re.compile(r"^\s*```.*$", re.MULTILINE)
_LABEL_BRACKETS = re.compile(r"【([^】]*)】")
_PUNCT = "，。、；：？！…—,.;:?!"


def _drop_url(match: re.Match) -> str:
    text, start, end = match.string, match.start(), match.end()
    before = text[:start]
    if _URL_LABEL.search(before):
        return ""  # 电子税务局网站：https://… — the label already says it
    if before.rstrip().endswith(("（", "(")) and text[end:].lstrip().startswith(("）", ")")):
        return ""  # (https://…) — the empty brackets are removed afterwards
    return "相关网站"


def _list_item(match: re.Match) -> str:
    number = match.group(1) or match.group(2)
    return "第" + read_number(number) + "，"


def _layout(text: str) -> str:
    text = _CODE_FENCE.sub("", text)
    text = _MARKDOWN_LINK.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EMAIL.sub("电子邮箱", text)
    text = _URL.sub(_drop_url, text)
    text = re.sub(r"[（(]\s*[）)]", "", text)
    text = _TABLE_RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _LIST_NUMBER.sub(_list_item, text)
    text = _BULLET.sub("", text)
    for _ in range(2):  # nested emphasis
        text = _EMPHASIS.sub(r"\2", text)
    text = re.sub(r"\s*\|\s*", "，", text.strip().strip("|"))
    text = _LABEL_BRACKETS.sub(lambda m: m.group(1) + ("，" if m.group(1) else ""), text)
    text = text.replace("℃", "摄氏度").replace("㎡", "平方米").replace("m²", "平方米")
    # Emoji and pictographs are not read; variation selectors and zero-width joiners go with them.
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Cf") and ch not in "\ufe0f※")
    # A line break is a pause: a full stop unless the line already ended in punctuation.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "".join(line if line[-1] in _PUNCT else line + "。" for line in lines[:-1]) + (lines[-1] if lines else "")


# ---------------------------------------------------------------------------------------------------------------
# 2.–3. Numbers
# ---------------------------------------------------------------------------------------------------------------

_NUM = r"\d+(?:\.\d+)?"
_RANGE_SIGN = r"\s*(?:-|–|—|~|～|至|到)\s*"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DOCUMENT_NUMBER = re.compile(r"[〔\[［(（【]\s*(\d{4})\s*[〕\]］)）】]\s*(\d+)\s*号")
_ISO_DATE = re.compile(r"(?<![\d.])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![\d.])")
_TIME = r"([01]?\d|2[0-4])[:：]([0-5]\d)"
_TIME_RANGE = re.compile(rf"(?<!\d){_TIME}{_RANGE_SIGN}{_TIME}(?!\d)")
_CLOCK = re.compile(rf"(?<!\d){_TIME}(?!\d)")
_YEAR_RANGE = re.compile(rf"(?<!\d)(\d{{4}}){_RANGE_SIGN}(\d{{4}})(?=\s*年)")
_YEAR = re.compile(r"(?<![\d.])(\d{4})(?=\s*年)")
_BARE_YEAR_RANGE = re.compile(r"(?<![\d.])((?:19|20)\d{2})\s*(?:-|–|—|~|～|至|到)\s*((?:19|20)\d{2})(?![\d.])")
_PERCENT_RANGE = re.compile(rf"(?<![\d.])({_NUM})\s*(%|‰)?{_RANGE_SIGN}({_NUM})\s*(%|‰)")
_PERCENT = re.compile(rf"(?<![\d.])({_NUM})\s*(%|‰)")
_MONTH_DAY_RANGE = re.compile(rf"(?<![\d.])(\d{{1,2}}){_RANGE_SIGN}(\d{{1,2}})(?=\s*[月日号])")
_MONTH_DAY = re.compile(r"(?<![\d.])(\d{1,2})(?=\s*月)|(?<![\d.])(\d{1,2})(?=\s*[日号](?!元))")
_PHONE_GROUPS = re.compile(r"(?<![\d.-])(?:0\d{2,3}|400|800)(?:-\d{3,8}){1,2}(?![\d.])"
                           r"|(?<![\d.-])\d{3}-\d{4}-\d{4}(?![\d.])")
_ALNUM_CODE = re.compile(r"(?<![0-9A-Za-z])(?=[0-9A-Z]*\d)(?=[0-9A-Z]*[A-Z])[0-9A-Z]{15,20}(?![0-9A-Za-z])"
                         r"|(?<![0-9A-Za-z])\d{17}[Xx](?![0-9A-Za-z])")
_IDENTIFIER_CONTEXT = re.compile(
    r"(?:电话|热线|拨打|致电|打|号码|手机|手机号|身份证|证件号|识别号|税号|信用代码|代码|账号|账户|卡号|编号|工号|验证码|尾号|"
    r"邮编|传真|短信|坐席)[^\d，。；！？]{0,6}$")
_DIGIT_RUN = re.compile(r"(?<![\d.])\d+(?![\d.])")
_SPACED_DIGITS = re.compile(r"(?<![\d.])\d{3,8}(?: \d{3,8}){1,4}[Xx]?(?![\d.A-Za-z])")
# What follows a quantity (money, counts, measures): such a number is never read digit by digit.
_QUANTITY_AFTER = re.compile(r"\s*(?:元|块|角|万|亿|千|百|个|人|户|家|名|位|次|笔|张|份|项|天|日|月|年|岁|周|小时|分钟|秒|"
                             r"平方|米|公里|吨|斤|公斤|千克|倍|套|台|辆|条|页|期|档|级|种|类|%|‰)")
_SERVICE_LINE = re.compile(r"(?:12|95|96)\d{3}")
_NUMBER_RANGE = re.compile(rf"(?<![\d.])({_NUM}){_RANGE_SIGN}({_NUM})(?![\d.])")
_MEASURE_AFTER_TWO = re.compile(r"\s*(?:个|位|名|人|户|家|次|遍|趟|笔|张|份|项|种|类|条|款|本|套|台|辆|间|层|天|年|周|星期|小时|"
                                r"分钟|秒|倍|点|元|块|角|毛|万|千|亿|岁|件|批|组|部|所|座|栋|期|档)")
_SYMBOLS = (("×", "乘以"), ("÷", "除以"), ("≥", "大于等于"), ("≤", "小于等于"), ("≠", "不等于"), ("≈", "约"),
            ("=", "等于"), ("+", "加"), ("&", "和"), ("→", "，"), ("～", "到"), ("~", "到"))


def _is_ascending(left: str, right: str) -> bool:
    return float(left) < float(right)


def _range_word(sign: str) -> str:
    """至 stays 至; dashes and tildes are read 到."""
    return "至" if sign.strip() == "至" else "到"


def _sign_between(match: re.Match, left_end: int, right_start: int) -> str:
    return match.string[left_end:right_start]


def _identifier_replacement(match: re.Match) -> str:
    digits = match.group(0)
    text, start, end = match.string, match.start(), match.end()
    quantity = _QUANTITY_AFTER.match(text, end) is not None
    if len(digits) >= 11 and not quantity:
        return read_identifier(digits)
    if digits.startswith("0") and len(digits) >= 3:
        return read_digits(digits)
    if _IDENTIFIER_CONTEXT.search(text, max(0, start - 12), start) and not quantity and len(digits) >= 3:
        return read_identifier(digits)
    if len(digits) == 5 and _SERVICE_LINE.fullmatch(digits) and not quantity:
        return read_digits(digits)
    return digits


def _join_spaced_digits(match: re.Match) -> str:
    """138 1234 5678: digit groups a writer spaced out are one number when they make a phone number or follow
    电话, 手机, 身份证 …"""
    joined = match.group(0).replace(" ", "")
    if (len(joined) == 11 and joined.startswith("1")) or len(joined) == 18 or _IDENTIFIER_CONTEXT.search(
            match.string, max(0, match.start() - 12), match.start()):
        return joined
    return match.group(0)


def _number_range(match: re.Match) -> str:
    left, right = match.group(1), match.group(2)
    sign = _sign_between(match, match.end(1), match.start(2)).strip()
    if sign in "-–—" and not _is_ascending(left, right):
        return read_number(left) + "减" + read_number(right)  # 3000-800 is a subtraction
    return read_number(left) + _range_word(sign) + read_number(right)


def _percent_range(match: re.Match) -> str:
    left, left_sign, right, right_sign = match.groups()
    sign = _sign_between(match, match.end(2) if left_sign else match.end(1), match.start(3)).strip()
    word = "百分之" if right_sign == "%" else "千分之"
    if sign in "-–—" and not _is_ascending(left, right):
        return word + read_number(left) + "减" + word + read_number(right)
    return word + read_number(left) + _range_word(sign) + word + read_number(right)


def _time_range(match: re.Match) -> str:
    sign = _sign_between(match, match.end(2), match.start(3))
    return read_time(match.group(1), match.group(2)) + _range_word(sign) + read_time(match.group(3), match.group(4))


def _year_range(match: re.Match) -> str:
    sign = _sign_between(match, match.end(1), match.start(2))
    return read_year(match.group(1)) + _range_word(sign) + read_year(match.group(2))


def _quantity(match: re.Match) -> str:
    number = match.group(0)
    text, start, end = match.string, match.start(), match.end()
    if number == "2" and text[start - 1:start] != "第" and _MEASURE_AFTER_TWO.match(text, end):
        return "两"
    return read_number(number)


_SENTENCE = re.compile(r"[^。；！？\n]+")
_FORMULA_SIGN = re.compile(r"[=×÷]")


def _formula_signs(match: re.Match) -> str:
    """In a sentence that is arithmetic (it has =, × or ÷), - is a minus and + a plus, never a range."""
    sentence = match.group(0)
    if not _FORMULA_SIGN.search(sentence):
        return sentence
    return re.sub(r"(?<![A-Za-z])\s*-\s*(?![A-Za-z])", "减", sentence).replace("+", "加")


def _numbers(text: str) -> str:
    text = _THOUSANDS.sub("", text)
    text = _DOCUMENT_NUMBER.sub(lambda m: read_year(m.group(1)) + "年第" + read_number(m.group(2)) + "号", text)
    text = _ISO_DATE.sub(lambda m: (read_year(m.group(1)) + "年" + read_number(m.group(2)) + "月"
                                    + read_number(m.group(3)) + "日")
                         if 1 <= int(m.group(2)) <= 12 and 1 <= int(m.group(3)) <= 31 else m.group(0), text)
    text = _PHONE_GROUPS.sub(lambda m: "，".join(read_digits(part) for part in m.group(0).split("-")), text)
    text = _TIME_RANGE.sub(_time_range, text)
    text = _CLOCK.sub(lambda m: read_time(m.group(1), m.group(2)), text)
    text = _YEAR_RANGE.sub(_year_range, text)
    text = _BARE_YEAR_RANGE.sub(lambda m: _year_range(m) if _is_ascending(m.group(1), m.group(2)) else m.group(0),
                                text)
    text = _YEAR.sub(lambda m: read_year(m.group(1)), text)
    text = _SENTENCE.sub(_formula_signs, text)
    text = _PERCENT_RANGE.sub(_percent_range, text)
    text = _PERCENT.sub(lambda m: ("百分之" if m.group(2) == "%" else "千分之") + read_number(m.group(1)), text)
    text = _MONTH_DAY_RANGE.sub(lambda m: read_number(m.group(1)) + _range_word(_sign_between(m, m.end(1), m.start(2)))
                                + read_number(m.group(2)), text)
    text = _MONTH_DAY.sub(lambda m: read_number(m.group(1) or m.group(2))
                          if 1 <= int(m.group(1) or m.group(2)) <= 31 else m.group(0), text)
    text = _SPACED_DIGITS.sub(_join_spaced_digits, text)
    text = _ALNUM_CODE.sub(lambda m: read_identifier(m.group(0)), text)
    text = _DIGIT_RUN.sub(_identifier_replacement, text)
    text = _NUMBER_RANGE.sub(_number_range, text)
    text = re.sub(r"(?<=[\d元])\s*/\s*(?=[年月日天周次人户])", "每", text)
    text = re.sub(rf"(?<=[{_HAN}])\s*/\s*(?=[{_HAN}])", "或", text)
    text = re.sub(r"(?<=\d)\s*>\s*(?=\d)", "大于", text)
    text = re.sub(r"(?<=\d)\s*<\s*(?=\d)", "小于", text)
    text = re.sub(r"\s*>\s*", "，", text)  # menu paths: 我的 > 个人信息
    for symbol, word in _SYMBOLS:
        text = text.replace(symbol, word)
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", "减", text)
    text = re.sub(rf"(?<=[{_HAN}])\s*[-–—]+\s*(?=[{_HAN}])", "，", text)  # 标题-说明: a dash is a pause
    return re.sub(_NUM, _quantity, text)


# ---------------------------------------------------------------------------------------------------------------
# Tidy
# ---------------------------------------------------------------------------------------------------------------

_SPACE_NEAR_HAN = re.compile(rf"(?<=[{_HAN}{_PUNCT}“”（）])\s+|\s+(?=[{_HAN}{_PUNCT}“”（）])")
_REPEATED_PAUSE = re.compile(r"([，、；：,;:])(?:\s*[，、；：,;:])+")


def _tidy(text: str) -> str:
    text = _SPACE_NEAR_HAN.sub("", text)
    text = re.sub(r"[*#`|]+", "", text)  # markdown left over (underscores stay: {template_slots})
    text = _REPEATED_PAUSE.sub(r"\1", text)
    text = re.sub(r"[，、；：,;:]+(?=[。！？!?])", "", text)
    text = re.sub(r"^[，。、；：,.;:\s]+", "", text)
    text = re.sub(r"[：:]\s*(?=$|[。！？!?])", "", text)  # a label whose link was removed
    return re.sub(r"\s+", " ", text).strip()
