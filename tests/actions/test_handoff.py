import pytest

from actions.handoff import ActionFallback, ActionHandleYesNo, ActionHandoff, handoff_after_turns
from tests.actions.support import ServiceUnavailable, bot, make_tracker, responses, user


def fallbacks(n: int, before=()):
    events = list(before)
    for i in range(n):
        events += [user(f"乱码{i}", "nlu_fallback", 0.3), bot("utter_ask_rephrase")]
    return events[:-1]  # the latest event is the user's turn


@pytest.fixture(autouse=True)
def three_turns(monkeypatch):
    monkeypatch.setenv("TAXBOT_FALLBACK_HANDOFF_TURNS", "3")


async def test_first_misunderstanding_asks_to_rephrase(service, dispatcher):
    await ActionFallback().run(dispatcher, make_tracker(fallbacks(1)), {})
    assert responses(dispatcher) == ["utter_ask_rephrase"]
    assert service.calls == [("answer_question", "乱码0", "nlu_fallback", "rest")]  # the knowledge base had nothing


async def test_a_question_the_knowledge_base_is_sure_about_is_answered(service, dispatcher):
    service.responses["answer_question"] = {"status": "answered", "answer": "每月5000元。", "candidates": []}
    await ActionFallback().run(dispatcher, make_tracker(fallbacks(2)), {})
    assert responses(dispatcher) == ["utter_knowledge_answer"]
    assert all(call[0] == "answer_question" for call in service.calls)


async def test_after_a_knowledge_answer_the_count_starts_again(service, dispatcher):
    events = fallbacks(2) + [bot("utter_knowledge_answer"), user("嗯嗯嗯", "nlu_fallback", 0.2)]
    await ActionFallback().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_ask_rephrase"]


async def test_second_offers_a_person(service, dispatcher):
    await ActionFallback().run(dispatcher, make_tracker(fallbacks(2)), {})
    assert responses(dispatcher) == ["utter_offer_human"]


async def test_third_hands_over_with_reason_low_confidence(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG20261123000001", "status": "pending"}
    await ActionFallback().run(dispatcher, make_tracker(fallbacks(3), sender="c-7"), {})
    assert responses(dispatcher) == ["utter_handoff_recorded"]
    assert dispatcher.messages[0]["reference"] == "RG20261123000001"
    (method, payload), = [call for call in service.calls if call[0] == "create_handoff"]
    assert payload["reason"] == "low_confidence"
    assert payload["conversation_id"] == "c-7"
    assert payload["last_message"] == "乱码2"


async def test_an_understood_turn_resets_the_count(service, dispatcher):
    events = fallbacks(2, before=()) + [bot("utter_offer_human"), user("个税怎么算", "ask_policy"), bot("utter_x")]
    events += [user("啊啊啊", "nlu_fallback", 0.2)]
    await ActionFallback().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_ask_rephrase"]


def test_turn_limit_comes_from_configuration(monkeypatch):
    monkeypatch.setenv("TAXBOT_FALLBACK_HANDOFF_TURNS", "5")
    assert handoff_after_turns() == 5
    monkeypatch.setenv("TAXBOT_FALLBACK_HANDOFF_TURNS", "abc")
    assert handoff_after_turns() == 3
    monkeypatch.setenv("TAXBOT_FALLBACK_HANDOFF_TURNS", "1")
    assert handoff_after_turns() == 2


async def test_yes_after_the_offer_hands_over(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG1", "status": "pending"}
    events = [user("？？", "nlu_fallback", 0.2), bot("utter_offer_human"), user("好的", "affirm")]
    await ActionHandleYesNo().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_handoff_recorded"]
    assert service.calls[0][1]["reason"] == "low_confidence"


async def test_no_after_the_offer_invites_a_rephrase(service, dispatcher):
    events = [user("？？", "nlu_fallback", 0.2), bot("utter_offer_human"), user("不用", "deny")]
    await ActionHandleYesNo().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_rephrase_ok"]
    assert service.calls == []


async def test_yes_after_failed_verification_records_that_reason(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG2", "status": "pending"}
    events = [user("123456", "query_tax_due"), bot("utter_identity_failed"), user("要", "affirm")]
    await ActionHandleYesNo().run(dispatcher, make_tracker(events), {})
    assert service.calls[0][1]["reason"] == "verification_failed"


async def test_yes_out_of_the_blue_is_acknowledged(service, dispatcher):
    events = [user("你好", "greet"), bot("utter_greet"), user("好的", "affirm")]
    await ActionHandleYesNo().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_ok"]
    assert service.calls == []


async def test_asking_for_a_person_records_user_request(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG3", "status": "pending"}
    tracker = make_tracker([user("转人工", "request_human")], slots={"contact_phone": "13817414333"})
    await ActionHandoff().run(dispatcher, tracker, {})
    payload = service.calls[0][1]
    assert payload["reason"] == "user_request"
    assert payload["contact_phone"] == "13817414333"
    assert payload["channel"] == "rest"


async def test_handoff_when_the_service_is_down_points_to_12366(service, dispatcher):
    service.responses["create_handoff"] = ServiceUnavailable("down")
    await ActionHandoff().run(dispatcher, make_tracker([user("转人工", "request_human")]), {})
    assert responses(dispatcher) == ["utter_handoff_unavailable"]


async def test_counting_starts_again_after_a_handoff(service, dispatcher):
    events = fallbacks(3) + [bot("utter_handoff_recorded"), user("😀", "nlu_fallback", 1.0)]
    await ActionFallback().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_ask_rephrase"]
    assert [call[0] for call in service.calls] == ["answer_question"]  # no second handoff


async def test_asking_for_a_person_after_a_suggestion_says_the_knowledge_base_was_unsure(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG3", "status": "pending"}
    events = [user("孩子能扣多少", "ask_policy"), bot("utter_knowledge_suggested"), user("转人工", "request_human")]
    await ActionHandoff().run(dispatcher, make_tracker(events), {})
    assert service.calls[0][1]["reason"] == "knowledge_gap"
