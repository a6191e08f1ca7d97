"""asr.normalize: raw recogniser text → what the assistant reads. Each stage on its own, then the whole."""
from __future__ import annotations

import pytest

from asr.normalize import (
    canonical_tax_terms,
    clean,
    collapse_spaces,
    correct_tax_terms,
    normalize,
    numbers_to_digits,
    strip_artifacts,
    to_halfwidth,
    to_simplified,
    warm_up,
)


@pytest.fixture(scope="module", autouse=True)
def _loaded():
    warm_up()


# --- stage 1: script, width, artefacts, whitespace -------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("請問個人所得稅怎麼申報", "请问个人所得税怎么申报"),
    ("發票丟了怎麼補開", "发票丢了怎么补开"),
    ("增值稅專用發票", "增值税专用发票"),
    ("个人所得税怎么申报", "个人所得税怎么申报"),  # already Simplified: unchanged
])
def test_to_simplified(raw, expected):
    assert to_simplified(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("ＡＢＣ１２３％", "ABC123%"),
    ("个税Ａｐｐ", "个税App"),
    ("１２３６６", "12366"),
    ("你好，请问！", "你好，请问！"),  # Chinese prose punctuation stays full-width
    ("（音乐）", "（音乐）"),
    ("a\u3000b", "a b"),  # ideographic space
])
def test_to_halfwidth(raw, expected):
    assert to_halfwidth(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("我 想 问 一下 个税 怎么 交", "我想问一下个税怎么交"),
    ("幺 三 八 一 二", "幺三八一二"),
    ("2025 年", "2025年"),
    ("打开 App  看看", "打开 App 看看"),  # next to a Latin word one space stays
    ("hi 想看下payment记录", "hi 想看下payment记录"),  # space after a Latin word stays
    ("  个税  ", "个税"),
])
def test_collapse_spaces(raw, expected):
    assert collapse_spaces(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("怎么交怎么交怎么交怎么交", "怎么交"),
    ("我要退税，谢谢观看", "我要退税"),
    ("字幕由Amara.org社区提供", ""),
    ("我要退税。请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "我要退税。"),
    ("我想问个税。点赞订阅转发", "我想问个税。"),
    ("（音乐）我要开发票", "我要开发票"),
    ("[音乐]", ""),
    ("好好好好好好好好", "好"),
])
def test_strip_artifacts_removes_whisper_inventions(raw, expected):
    assert strip_artifacts(raw) == expected


@pytest.mark.parametrize("text", [
    "谢谢谢谢",  # said twice is ordinary speech
    "对对对",
    "有个主播粉丝打赏全走私人账户，收入都藏起来了",  # one plug word is a real word
    "感谢感谢，给你点赞",
    "我的手机号是13888888888",  # digits repeat legitimately
    "幺三八八八八八八八八八",
    "byd的车要交车船税吗",
])
def test_strip_artifacts_keeps_real_speech(text):
    assert strip_artifacts(text) == text


def test_clean_combines_the_steps():
    assert clean("請問 個人 所得稅 怎麼 申報 ，謝謝觀看") == "请问个人所得税怎么申报"


# --- stage 2: tax terms heard as homophones --------------------------------------------------------------------

def test_canonical_terms_leave_out_deliberate_misspellings():
    terms = canonical_tax_terms()
    for misspelling in ("个人所得睡", "增殖税", "增直税", "各税"):
        assert misspelling not in terms
    for term in ("个人所得税", "增值税", "个税", "契税", "企税", "缴税", "交税", "利息", "税率", "发票"):
        assert term in terms


@pytest.mark.parametrize("heard, expected", [
    ("我想问一下个人所得睡怎么申报", "我想问一下个人所得税怎么申报"),
    ("增直税的税率是多少", "增值税的税率是多少"),
    ("增殖税专用发票怎么开", "增值税专用发票怎么开"),
    ("建筑服务增殖税几个点", "建筑服务增值税几个点"),
    ("住房贷款利新可以扣除吗", "住房贷款利息可以扣除吗"),  # nasal: xin ~ xi
    ("我的存款利新要交税吗", "我的存款利息要交税吗"),
    ("这个利新要交税吗", "这个利息要交税吗"),  # two characters: one shared, one differing by the nasal
    ("个人所的税计算公式是什么", "个人所得税计算公式是什么"),
    ("企业所得睡季度预缴什么时候报", "企业所得税季度预缴什么时候报"),
    ("纳税人实别号在哪里看", "纳税人识别号在哪里看"),  # fuzzy sh/s
    ("专项附加扣除的子女叫育怎么填", "专项附加扣除的子女教育怎么填"),
    ("专享附加扣除是什么", "专项附加扣除是什么"),  # fuzzy an/ang
    ("会算清缴是什么意思", "汇算清缴是什么意思"),
    ("年终将个税计算方法", "年终奖个税计算方法"),
    ("治纳金计算公式", "滞纳金计算公式"),  # fuzzy zh/z
    ("营花税征收范围", "印花税征收范围"),
    ("电子税物局能办哪些业务", "电子税务局能办哪些业务"),
    ("为什么要签三方写议", "为什么要签三方协议"),
    ("网上开发漂的步骤", "网上开发票的步骤"),
    ("各税怎么算", "个税怎么算"),
    ("咋交各税啊", "咋交个税啊"),
    ("那个就是腿税要什么条件才能申请啊", "那个就是退税要什么条件才能申请啊"),
    ("我要举报有个人在网上卖砖票", "我要举报有个人在网上卖专票"),
    ("开了张砖票金额错了要洪冲怎么弄", "开了张专票金额错了要红冲怎么弄"),
    ("发票怎么做废", "发票怎么作废"),
    ("气税税率多少", "契税税率多少"),
    ("个人所得睡app能不能跟医保app打通", "个人所得税app能不能跟医保app打通"),
])
def test_misheard_tax_terms_are_corrected(heard, expected):
    assert correct_tax_terms(heard) == expected


@pytest.mark.parametrize("text", [
    # everyday words that sound like tax terms, outside or inside a tax context
    "我不睡了",
    "他说的对",
    "我睡觉了",
    "申报的人数很多",
    "你说的个税是哪个",
    "这个水费怎么交税",  # 水费 is a word (税费 would be a misreading of it)
    "交了税以后能不能退",
    "发票上的名字写错了",
    "见面再说吧，发票带上",  # 见面 sounds like 减免
    "明天浇水，顺便交税",  # 浇水 sounds like 交税
    # straddling a real word
    "各税种的申报期限",
    "交不起税能申请延期缴纳吗",
    "小规模增值税是一个月一报还是三个月一报",  # 一报 is not 医保
    # correct terms, including homophone pairs that are both real
    "企税怎么交",
    "交税和缴税",
    "一般纳税人和小规模纳税人的区别",
    "六税两费减免政策",
    "统一社会信用代码是什么",
    "个人所得税App怎么下载",
    "社保费怎么交",
    "我想开一张增值税专用发票",
])
def test_correct_text_is_left_alone(text):
    assert correct_tax_terms(text) == text


# --- stage 3: numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spoken, expected", [
    # money
    ("三千五百元", "3500元"),
    ("六万元", "60000元"),
    ("两万五千元", "25000元"),
    ("一万二", "12000"),
    ("工资八千五", "工资8500"),
    ("多发一块钱", "多发1块钱"),
    ("一点五万", "15000"),
    ("三点五万元", "35000元"),
    ("零点五", "0.5"),
    ("一点五倍", "1.5倍"),
    ("收入三十多万", "收入30多万"),
    ("欠了两千多", "欠了2000多"),
    # percentages
    ("百分之三", "3%"),
    ("百分之零点五", "0.5%"),
    ("百分之十三的税率", "13%的税率"),
    ("百分之百", "100%"),
    ("千分之一", "1‰"),
    ("万分之五", "万分之5"),
    # dates and years
    ("二零二五年三月三十一日前要申报", "2025年3月31日前要申报"),
    ("二〇二四年度", "2024年度"),
    ("三月三十一日", "3月31日"),
    ("六月三十号", "6月30号"),
    ("一月一日", "1月1日"),
    ("次月一日起", "次月1日起"),
    ("一号到十五号", "1号到15号"),
    ("十二月", "12月"),
    ("二月", "2月"),
    ("一月份", "1月份"),
    # times
    ("三点十分", "3点10分"),
    ("九点半", "9点半"),
    ("十二点三十", "12点30"),
    ("下午两点到五点", "下午2点到5点"),
    ("十分钟", "10分钟"),
    # counts and measures
    ("两个孩子", "2个孩子"),
    ("三个月", "3个月"),
    ("我有三十岁", "我有30岁"),
    ("三到五个工作日", "3到5个工作日"),
    ("一到三个月", "1到3个月"),
    ("等了四十分钟", "等了40分钟"),
    ("今年七十了", "今年70了"),
    ("第十二号公告", "第12号公告"),  # document numbers
    # digit strings: phone, ID, service numbers
    ("幺三八一二三四五六七八", "13812345678"),
    ("我的手机号是幺三八 幺二三四 五六七八", "我的手机号是13812345678"),
    ("幺三八洞洞洞拐拐勾勾", "1380007799"),
    ("身份证号幺幺零幺零五一九九零零三零七幺二三叉", "身份证号11010519900307123X"),
    ("身份证号是三二零一零二一九九二零三零九二八八X", "身份证号是32010219920309288X"),
    ("拨打幺二三六六", "拨打12366"),
    ("一二三六六是干嘛的", "12366是干嘛的"),
    ("138一二三四五六七八", "13812345678"),
    ("识别号是九一三五零一零零M零零零一零零Y四三", "识别号是91350100M000100Y43"),
    ("验证码是三五七九", "验证码是3579"),
])
def test_numbers_become_digits(spoken, expected):
    assert numbers_to_digits(spoken) == expected


@pytest.mark.parametrize("text", [
    # words that contain number characters
    "一般纳税人", "一次性", "六税两费", "三方协议", "个人所得税", "统一社会信用代码", "五险一金", "四舍五入",
    "一带一路", "一五一十", "万一", "十分重要", "一起去", "快一点一起去", "一下", "一些", "一样", "一直",
    # a lone 一 or 二 before a measure word
    "一个孩子", "一个月", "一次", "我一个退休老太太", "二套房", "二类卡", "入学前一月", "每一年",
    # ordinals and lists after one
    "第一", "第三季度", "第二十条", "第十一、十二条", "第一至三条",
    # weekdays
    "周六", "星期三", "礼拜天", "周一到周五",
    # approximations
    "三四个月", "两三天", "十五六岁", "几十万", "九几年", "每月收入大概四五万", "这两天", "前两天",
    # digits already written, and what follows a percentage
    "年收入50万", "13%、9%、6%三档", "零税率", "个税App一直闪退", "APP一直打不开",
])
def test_number_characters_inside_words_stay(text):
    assert numbers_to_digits(text) == text


# --- the whole pipeline ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("請問個人所得稅怎麼申報", "请问个人所得税怎么申报"),
    ("喂 那个 我想问一下个人所得睡的事 能不能找个人工", "喂那个我想问一下个人所得税的事能不能找个人工"),
    ("呃就是那个月工资八千五的话个人所得睡要扣多少", "呃就是那个月工资8500的话个人所得税要扣多少"),
    ("喂那个我想问下小规模增直税一个季度三十万以内是不是不用交", "喂那个我想问下小规模增值税一个季度300000以内是不是不用交"),
    ("喂你好我想问一下我那个二零二四年度的各税汇算完了还要补多少钱", "喂你好我想问一下我那个2024年度的个税汇算完了还要补多少钱"),
    ("我 的 手机 号 是 幺 三 八 幺 二 三 四 五 六 七 八", "我的手机号是13812345678"),
    ("住房贷款利新每个月扣一千元", "住房贷款利息每个月扣1000元"),
    ("一般纳税人的增值税税率是百分之十三", "一般纳税人的增值税税率是13%"),
    ("我想问个税怎么交怎么交怎么交怎么交", "我想问个税怎么交"),
    ("", ""),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("text", [
    "我想问一下个税怎么申报",
    "一般纳税人和小规模纳税人有什么区别",
    "六税两费减半征收到什么时候",
    "我不睡了",
    "发票丢了怎么办",
    "年收入50万要交多少个税",
    "2025年3月31日前要申报",
])
def test_normalize_leaves_clean_text_alone(text):
    assert normalize(text) == text
