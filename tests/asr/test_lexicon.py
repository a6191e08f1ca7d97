"""asr.lexicon: the domain lexicon built from the project's text, its language model, and the phrase correction
that ``asr.normalize.correct_tax_terms`` runs after the tax-dictionary pass."""
from __future__ import annotations

import json
import threading

import pytest

from asr import lexicon as lx
from asr.normalize import correct_domain_phrases, correct_tax_terms, normalize, warm_up


@pytest.fixture(scope="module", autouse=True)
def _loaded():
    warm_up()


# --- the lexicon ---------------------------------------------------------------------------------------------------

def test_lexicon_holds_domain_words_and_phrases_with_counts():
    lexicon = lx.domain_lexicon()
    entries = lexicon.entries()
    for word in ("应纳税额", "契税", "开具", "勾选", "逾期", "减按", "赡养", "小型微利企业"):
        assert entries.get(word, 0) >= 2, word
    for phrase in ("首套房", "零申报"):  # runs of jieba words, counted
        assert lexicon.phrases.get(phrase, 0) >= lx.MIN_PHRASE_COUNT, phrase
    assert all(len(phrase) <= lx.MAX_PHRASE_CHARS for phrase in lexicon.phrases)
    assert not any(phrase[0] in lx.FUNCTION_CHARS or phrase[-1] in lx.FUNCTION_CHARS for phrase in lexicon.phrases)
    assert lexicon.pinyin["契税"] == "qi4 shui4"


def test_deliberate_misspellings_are_mapped_not_learnt():
    mapping = lx.misspelling_map()
    assert mapping["各税"] == "个税"
    assert mapping["个人所得睡"] == "个人所得税"
    assert mapping["砖票"] == "专票"
    assert "企业所得税" not in mapping and "专票" not in mapping and "企税" not in mapping
    corrector = lx.phrase_corrector()
    assert "各税" not in corrector.known and "个税" in corrector.known


def test_build_counts_phrases_and_replaces_misspellings():
    texts = ["首套房的契税怎么算", "首套房契税减按百分之一", "首套房有优惠吗", "各税怎么交"]
    lexicon = lx.build_lexicon(texts, misspellings={"各税": "个税"})
    assert lexicon.phrases.get("首套房") == 3
    assert "各税" not in lexicon.words and lexicon.words.get("个税", 0) >= 1


def test_nlu_annotations_are_stripped():
    texts = lx.nlu_texts()
    assert texts and not any("](" in text for text in texts)


def test_lexicon_is_cached_on_disk_by_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TAXBOT_CACHE_DIR", str(tmp_path))
    built = lx.load_lexicon()
    files = list((tmp_path / "asr-lexicon").glob("lexicon-*.json"))
    assert len(files) == 1 and built.key in files[0].name
    assert json.loads(files[0].read_text(encoding="utf-8"))["key"] == built.key

    def no_build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the lexicon was built again although its sources did not change")

    monkeypatch.setattr(lx, "build_lexicon", no_build)
    loaded = lx.load_lexicon()
    assert loaded.phrases == built.phrases and loaded.words == built.words


def test_a_watched_value_is_rebuilt_in_the_background_when_the_sources_change():
    key, builds, release = ["a"], [], threading.Event()
    release.set()

    def build():
        assert release.wait(10)
        if key[0] == "broken":
            raise ValueError("a half-written file")
        builds.append(key[0])
        return f"built from {key[0]}"

    watch = lx.SourceWatch(build, name="test", interval=3600, key=lambda: key[0])
    assert watch.get() == "built from a" and builds == ["a"]
    key[0] = "b"
    assert watch.get() == "built from a"  # not checked again before the interval
    watch.interval = 0
    release.clear()
    assert watch.get() == "built from a"  # the check builds in the background; the caller does not wait for it
    assert watch.get() == "built from a"  # nor does the next one start a second check
    release.set()
    watch.wait()
    assert watch.get() == "built from b" and builds == ["a", "b"]
    watch.wait()
    assert builds == ["a", "b"]  # unchanged sources: not built again
    key[0] = "broken"
    watch.get()
    watch.wait()
    assert watch.get() == "built from b"  # a failed build leaves the last one serving
    key[0] = "c"
    watch.wait()
    watch.get()
    watch.wait()
    assert watch.get() == "built from c"  # and the next check tries again


def test_an_editors_new_entry_reaches_the_correction_without_a_restart(editable_kb, monkeypatch):
    """限售股 (restricted shares) is not in the knowledge base; recognised text holding it is
    "corrected" towards a word the domain knows. Once an editor adds an entry about it, the running process's
    corrector learns the word at its next check, with no restart."""
    watch = lx.SourceWatch(lx._project._build, name="lexicon", interval=0)  # the project's build, checked always
    monkeypatch.setattr(lx, "_project", watch)
    heard = "限售股转让怎么交个税"
    assert correct_tax_terms(heard) != heard
    editable_kb()  # an editor adds an entry about 限售股
    watch.get()
    watch.wait()
    assert "限售股" in lx.domain_lexicon().entries()
    assert correct_tax_terms(heard) == heard


def test_sources_hash_changes_with_the_text(tmp_path):
    source = tmp_path / "a.yml"
    source.write_text("x", encoding="utf-8")
    first = lx.sources_hash([source])
    source.write_text("y", encoding="utf-8")
    assert lx.sources_hash([source]) != first


# --- the language model --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("better, worse", [
    ("首套房的契税", "手套房的契税"),
    ("可以减按百分之", "可以减案百分之"),
    ("零申报怎么", "领身报怎么"),
    ("逾期申报", "遇期申报"),
])
def test_model_prefers_domain_text(better, worse):
    model = lx.phrase_corrector().model
    assert model.logprob(better) > model.logprob(worse)


def test_specificity_separates_tax_words_from_general_ones():
    model = lx.phrase_corrector().model
    assert model.specificity("契税") > lx.MIN_SPECIFICITY > model.specificity("价格")


# --- the correction ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("heard, expected", [
    ("个人所得税可以减案百分之二十吗", "个人所得税可以减按百分之二十吗"),  # phrase 减 + 按, exact pinyin
    ("擅养老人怎么扣除", "赡养老人怎么扣除"),
    ("手套房的契税是多少", "首套房的契税是多少"),  # the window 手套房 is no word; 手套 alone is
    ("竞相发票怎么购选", "竞相发票怎么勾选"),  # tone differs (gou4 / gou1)
    ("领身报怎么操作", "零申报怎么操作"),  # a number character may come in (领 → 零), never go out
    ("遇期申报有罚款吗", "逾期申报有罚款吗"),
    ("英大税额怎么算", "应纳税额怎么算"),  # one whole syllable of a four-character word (da → na)
    ("历论总额怎么算", "利润总额怎么算"),  # l/r
    ("员工入职30天内要给他办社保登机吗", "员工入职30天内要给他办社保登记吗"),
    ("寄账平正和发票要留多久", "记账凭证和发票要留多久"),
])
def test_domain_phrases_are_corrected(heard, expected):
    assert correct_tax_terms(heard) == expected


@pytest.mark.parametrize("text", [
    # right text, tax or not, stays as it is
    "企业所得税年报要在几月底前报",  # 前报 is not 钱包: 前 and 报 are ordinary domain words
    "预开发票要交税吗",  # 预开 is not 虚开
    "这种情况需开发票吗",  # nor is 需开: a correction never makes an accusation of fraud
    "社保费在哪缴",  # 缴 and 交 are both right
    "帮我查询退税",
    "我爸前阵子住院花了不少钱",  # 爸前 is not 八千: no number out of nowhere
    "海关进口增值税专用缴款书能抵扣吗",
    "多缴的税款怎么申请退回来",
    "房子过户契税谁出",
    "能不能在个税App上加个客服聊天窗口",  # 加个 is not 价格: 价格 is no tax word
    "我今天不想睡觉",
    "事实上我没有收入",
    "他说的开局很好",
    "汽水好喝吗",
    "我不睡了",
    "首套房的契税是多少",
    "一报还一报",
])
def test_right_text_is_left_alone(text):
    assert correct_tax_terms(text) == text


def test_two_character_windows_only_with_two_char():
    assert correct_domain_phrases("擅养老人", two_char=True) == "赡养老人"
    assert correct_domain_phrases("擅养", two_char=False) == "擅养"


def test_correction_leaves_nearly_all_nlu_examples_alone():
    misspelled = set(lx.misspelling_map())
    texts = [text for text in lx.nlu_texts() if not any(word in text for word in misspelled)]
    changed = [text for text in texts if correct_domain_phrases(text) != text]
    # what changes is mostly other deliberate misspellings (腿税, 发飘, 转人公); a handful of real slips is tolerated
    assert len(changed) / len(texts) < 0.03


def test_use_corrector_swaps_and_restores():
    class Nothing:
        def correct(self, run, syllables, *, two_char):
            return run, []

    with lx.use_corrector(Nothing()):
        assert correct_domain_phrases("手套房的契税") == "手套房的契税"
    assert correct_domain_phrases("手套房的契税") == "首套房的契税"
