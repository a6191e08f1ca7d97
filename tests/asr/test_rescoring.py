"""Choosing among Whisper's hypotheses with the domain's character model (asr/rescoring.py): the model, the choice,
the hook into faster-whisper's beam search, and the gain on real recordings."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from asr import audio as audio_io
from asr.metrics import comparable, edit_distance
from asr.normalize import normalize
from asr.rescoring import CHARACTER_SET, CharacterModel, Hypothesis, Rescorer, domain_model, domain_texts
from asr.whisper import WhisperEngine, _rescorer, _RescoringWhisper

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "asr" / "eval"


def test_the_model_is_a_distribution_that_prefers_what_it_has_read() -> None:
    model = CharacterModel(["哪些情况可以免契税", "买房契税怎么交", "契税税率是多少"])
    seen = set("".join(["哪些情况可以免契税", "买房契税怎么交", "契税税率是多少"])) | {"\x03"}
    for history in ("", "\x02\x02\x02", "买房契", "税率是"):
        total = sum(model.probability(history, c) for c in seen)
        unseen = CHARACTER_SET * model.probability(history, "龘")  # every character never read is as likely
        assert math.isclose(total + unseen, 1.0, rel_tol=0.02), history
    assert model.logprob("免契税") > model.logprob("免汽水")
    assert model.logprob("契税怎么交") > model.logprob("汽水怎么交")
    assert math.isfinite(model.logprob("完全没见过的字龘"))


def test_the_domain_text_has_no_deliberate_misspellings_and_no_punctuation() -> None:
    from asr.lexicon import misspelling_map

    texts = domain_texts()
    joined = "\n".join(texts)
    assert len(texts) > 3000
    assert "个人所得税" in joined and "个人所得睡" not in joined
    assert not [wrong for wrong in misspelling_map() if wrong in joined]
    assert not any(p in joined for p in "，。？！、")


def test_a_rescorer_follows_the_projects_model_when_an_editor_adds_an_entry(editable_kb, monkeypatch) -> None:
    """The engine's rescorer is built once, at load; the model it scores with is the project's as it is now, so a
    word an editor has just added to the knowledge base starts to win close calls without a restart."""
    from asr import lexicon as lx
    from asr import rescoring

    watch = lx.SourceWatch(rescoring._project._build, name="domain-lm", interval=0)  # the project's build
    monkeypatch.setattr(rescoring, "_project", watch)
    rescorer = Rescorer(lambda text: text)
    heard = [Hypothesis("享受股转让怎么交个税", -5.0), Hypothesis("限售股转让怎么交个税", -5.5)]
    assert rescorer.choose(heard) == 0
    editable_kb()  # an editor adds an entry about 限售股
    before = rescorer.model
    rescorer.choose(heard)  # starts the check
    watch.wait()
    assert rescorer.model is not before
    assert rescorer.choose(heard) == 1


def test_the_domain_tips_a_close_call_but_not_a_clear_acoustic_verdict() -> None:
    rescorer = Rescorer(normalize, domain_model())
    heard = [Hypothesis("哪些情况可以绵气水?", -6.0), Hypothesis("哪些情况可以免契税?", -7.5)]
    assert rescorer.choose(heard) == 1
    assert rescorer.choose([Hypothesis("哪些情况可以绵气水?", -6.0), Hypothesis("哪些情况可以免契税?", -40.0)]) == 0
    assert rescorer.choose([Hypothesis("只有一个", -3.0)]) == 0


@dataclass
class _Result:
    sequences_ids: list
    scores: list
    no_speech_prob: float = 0.01


class _Tokenizer:
    eot = 100

    def decode(self, tokens: list[int]) -> str:
        return "".join(chr(0x4E00 + t) for t in tokens)


class _Model:
    """Records how it was called; returns the beam it was asked for."""

    is_multilingual = True

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def generate(self, features, prompts, **options):  # noqa: ANN001, ANN201
        self.calls.append(options)
        beam = [[1, 2, 3], [4, 5], [6]][: options.get("num_hypotheses", 1)]
        return [_Result(beam, [-0.5, -0.6, -0.7][: len(beam)])]


class _PreferShort:
    def choose(self, hypotheses: list[Hypothesis]) -> int:
        return min(range(len(hypotheses)), key=lambda i: len(hypotheses[i].text))


def test_the_hook_asks_for_the_beam_and_returns_the_chosen_hypothesis_alone() -> None:
    model = _Model()
    wrapped = _RescoringWhisper(model, _Tokenizer())
    assert wrapped.is_multilingual  # everything else passes through
    plain = wrapped.generate(None, [[1]], beam_size=5)  # no rescorer set: untouched
    assert plain[0].sequences_ids == [[1, 2, 3]] and "num_hypotheses" not in model.calls[-1]
    token = _rescorer.set(_PreferShort())
    try:
        chosen = wrapped.generate(None, [[1]], beam_size=3, length_penalty=1.0)
        assert model.calls[-1]["num_hypotheses"] == 3 and model.calls[-1]["return_scores"]
        # the chosen text, with the beam's best score: faster-whisper's fallback judges the audio, not the choice
        assert chosen[0].sequences_ids == [[6]] and chosen[0].scores == [-0.5] and chosen[0].no_speech_prob == 0.01
        sampled = wrapped.generate(None, [[1]], beam_size=1, num_hypotheses=1, sampling_temperature=0.4)
        assert sampled[0].sequences_ids == [[1, 2, 3]]  # the temperature fallback samples: not rescored
    finally:
        _rescorer.reset(token)


def _policy_items(count: int) -> list[dict]:
    items = [i for i in json.loads((EVAL / "manifest.json").read_text())["items"] if i["kind"] == "policy"]
    return items[:count]


@pytest.mark.parametrize("condition", ["16k", "8k"])
def test_rescoring_hears_policy_questions_better_than_the_first_hypothesis(condition: str) -> None:
    """Ten policy questions of the evaluation set (written independently of the knowledge base the model reads):
    with the domain choosing among the beam, fewer characters are wrong than with the beam's first hypothesis."""
    plain, rescoring = WhisperEngine(rescore=False, beam_size=8), WhisperEngine(beam_size=8)
    errors = {"plain": 0, "rescoring": 0}
    for item in _policy_items(10):
        recording = audio_io.load(EVAL / item["files"][condition]["path"])
        for name, engine in (("plain", plain), ("rescoring", rescoring)):
            errors[name] += edit_distance(comparable(item["text"]), comparable(engine.transcribe(recording).text))
    assert errors["rescoring"] < errors["plain"], errors
