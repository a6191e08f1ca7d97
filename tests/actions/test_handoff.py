import json

import pytest

from actions.handoff import MAX_HANDOFF_BYTES, ActionFallback, ActionHandleYesNo, ActionHandoff, handoff_after_turns
from tests.actions.support import ServiceError, ServiceUnavailable, bot, make_tracker, responses, user

QUEUED = {"reference": "RG20261123000001", "status": "queued", "position": 3, "wait_minutes": 6, "group": "个税"}
# Paused, and listening: the desk's EXTERNAL_handoff_closed after the resume must follow an action_listen to match a rule.
PAUSED = [
    {"event": "pause", "timestamp": None},
    {"event": "action", "name": "action_listen", "policy": None, "confidence": None, "timestamp": None},
]


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
    events = await ActionFallback().run(dispatcher, make_tracker(fallbacks(3), sender="c-7"), {})
    assert responses(dispatcher) == ["utter_handoff_queued_no_estimate"]  # an old service: no queue position
    assert dispatcher.messages[0]["reference"] == "RG20261123000001"
    assert events == PAUSED
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
    service.responses["create_handoff"] = QUEUED
    events = [user("？？", "nlu_fallback", 0.2), bot("utter_offer_human"), user("好的", "affirm")]
    assert await ActionHandleYesNo().run(dispatcher, make_tracker(events), {}) == PAUSED
    assert responses(dispatcher) == ["utter_handoff_queued"]
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


@pytest.mark.parametrize(
    "settled",
    [
        "utter_handoff_queued",
        "utter_handoff_queued_no_estimate",
        "utter_handoff_connected",
        "utter_handoff_after_hours",
        "utter_handoff_refused",
        "utter_ask_satisfaction",
    ],
)
async def test_counting_starts_again_after_a_handoff(service, dispatcher, settled):
    events = fallbacks(3) + [bot(settled), user("😀", "nlu_fallback", 1.0)]
    await ActionFallback().run(dispatcher, make_tracker(events), {})
    assert responses(dispatcher) == ["utter_ask_rephrase"]
    assert [call[0] for call in service.calls] == ["answer_question"]  # no second handoff


async def test_asking_for_a_person_after_a_suggestion_says_the_knowledge_base_was_unsure(service, dispatcher):
    service.responses["create_handoff"] = {"reference": "RG3", "status": "pending"}
    events = [user("孩子能扣多少", "ask_policy"), bot("utter_knowledge_suggested"), user("转人工", "request_human")]
    await ActionHandoff().run(dispatcher, make_tracker(events), {})
    assert service.calls[0][1]["reason"] == "knowledge_gap"



# ---- what the desk gets --------------------------------------------------------------------------

T0 = 1795000000.0  # 2026-11-18T11:06:40Z


def said(text, intent, at, ranking=(), entities=(), metadata=None, channel="wechat"):
    return {
        "event": "user",
        "timestamp": at,
        "text": text,
        "input_channel": channel,
        "metadata": metadata or {},
        "parse_data": {
            "intent": {"name": intent, "confidence": ranking[0][1] if ranking else 0.9},
            "intent_ranking": [{"name": name, "confidence": confidence} for name, confidence in ranking],
            "entities": list(entities),
        },
    }


def answered(response, text, at, buttons=None):
    data = {"buttons": buttons} if buttons else {}
    return {"event": "bot", "timestamp": at, "text": text, "data": data, "metadata": {"utter_action": response}}


async def handed_over(service, dispatcher, events, slots=None, sender="conv-1"):
    service.responses.setdefault("create_handoff", QUEUED)
    await ActionHandoff().run(dispatcher, make_tracker(events, slots=slots, sender=sender), {})
    (payload,) = [call[1] for call in service.calls if call[0] == "create_handoff"]
    return payload


async def test_the_desk_gets_the_transcript_with_what_nlu_understood(service, dispatcher):
    ranking = [
        ("query_refund", 0.81234567), ("ask_policy", 0.1), ("pay_tax", 0.05), ("greet", 0.02), ("deny", 0.01), ("thank", 0.01)
    ]
    events = [
        {"event": "action", "timestamp": T0 - 1, "name": "action_listen"},
        said("我的个税退税到哪了", "query_refund", T0, ranking, [{"entity": "tax_type", "value": "个人所得税", "start": 2, "end": 4}],
             metadata={"asr_confidence": 0.87, "channel_user_id": "oWx-123"}),
        answered("utter_ask_which_query", "身份已核验。您想查询什么？", T0 + 1.5,
                 buttons=[{"title": "退税进度", "payload": "/query_refund"}]),
        said("EXTERNAL: EXTERNAL_handoff_closed", "EXTERNAL_handoff_closed", T0 + 2),  # how Rasa logs trigger_intent
        said("转人工", "request_human", T0 + 3, [("request_human", 0.99)], metadata={"channel_user_id": "oWx-123"}),
    ]
    payload = await handed_over(service, dispatcher, events)
    assert payload["channel"] == "wechat" and payload["reason"] == "user_request"
    assert payload["last_message"] == "转人工"
    assert payload["channel_user_id"] == "oWx-123"
    first, bot_turn, last = payload["context"]["transcript"]  # the action and the desk's external intent are left out
    assert first == {
        "at": "2026-11-18T11:06:40.000+00:00",
        "role": "user",
        "text": "我的个税退税到哪了",
        "intent": "query_refund",
        "confidence": 0.8123,
        "intent_ranking": [
            {"name": "query_refund", "confidence": 0.8123},
            {"name": "ask_policy", "confidence": 0.1},
            {"name": "pay_tax", "confidence": 0.05},
            {"name": "greet", "confidence": 0.02},
            {"name": "deny", "confidence": 0.01},
        ],
        "entities": [{"entity": "tax_type", "value": "个人所得税"}],
        "asr_confidence": 0.87,
        "buttons": [],
    }
    assert bot_turn["role"] == "bot" and bot_turn["at"] == "2026-11-18T11:06:41.500+00:00"
    assert bot_turn["text"] == "身份已核验。您想查询什么？" and bot_turn["intent"] is None
    assert bot_turn["buttons"] == [{"title": "退税进度", "payload": "/query_refund"}]
    assert last["text"] == "转人工" and last["asr_confidence"] is None
    assert payload["context"]["intent"] == "request_human"
    assert "dropped_turns" not in payload["context"]


async def test_the_desk_never_gets_the_grant_or_the_sms_code(service, dispatcher):
    slots = {
        "taxpayer_grant": "grant-secret",
        "otp_code": "123456",
        "verification_id": "v-1",
        "requested_slot": "otp_code",
        "identifier": "110101198704020880",
        "verified": False,
        "phone": None,
        "tax_type": "个人所得税",
        "kb_candidates": [{"id": "iit-threshold", "title": "个税起征点", "score": 0.42}],
    }
    payload = await handed_over(service, dispatcher, [said("转人工", "request_human", T0)], slots=slots)
    assert payload["context"]["slots"] == {
        "identifier": "110101198704020880",
        "verified": False,
        "tax_type": "个人所得税",
    }
    assert payload["context"]["kb_candidates"] == [{"id": "iit-threshold", "title": "个税起征点", "score": 0.42}]
    assert payload["taxpayer_identifier"] is None  # typed, but not verified
    assert "grant-secret" not in json.dumps(payload) and "123456" not in json.dumps(payload)


async def test_a_verified_taxpayer_is_named_and_missing_context_is_empty(service, dispatcher):
    slots = {"identifier": "110101198704020880", "verified": True}
    payload = await handed_over(service, dispatcher, [said("转人工", "request_human", T0)], slots=slots)
    assert payload["taxpayer_identifier"] == "110101198704020880"
    assert payload["channel_user_id"] is None
    assert payload["context"]["kb_candidates"] == []


async def test_a_long_conversation_keeps_its_latest_turns_under_60_kb(service, dispatcher):
    events = []
    for i in range(120):
        events.append(said(f"第{i}条" + "很长的问题" * 300, "ask_policy", T0 + 2 * i))
        events.append(answered("utter_x", f"第{i}条回答", T0 + 2 * i + 1))
    events.append(said("转人工", "request_human", T0 + 1000))
    payload = await handed_over(service, dispatcher, events)
    sent = len(json.dumps(payload).encode("utf-8"))  # as aiohttp sends it
    transcript = payload["context"]["transcript"]
    assert MAX_HANDOFF_BYTES - 10_000 < sent < MAX_HANDOFF_BYTES <= 60 * 1024
    assert 2 < len(transcript) < 60
    assert payload["context"]["dropped_turns"] == 241 - len(transcript)
    assert transcript[-1]["text"] == "转人工" and transcript[-2]["text"] == "第119条回答"  # the newest survive, in order
    assert [t["at"] for t in transcript] == sorted(t["at"] for t in transcript)


async def test_at_most_200_events_are_sent(service, dispatcher):
    events = [answered("utter_x", f"回答{i}", T0 + i) for i in range(250)] + [said("转人工", "request_human", T0 + 300)]
    payload = await handed_over(service, dispatcher, events)
    transcript = payload["context"]["transcript"]
    assert len(transcript) == 200 and payload["context"]["dropped_turns"] == 51
    assert transcript[0]["text"] == "回答51"


# ---- what the user is told ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "created, response, paused",
    [
        (QUEUED, "utter_handoff_queued", True),
        ({**QUEUED, "position": None, "wait_minutes": None}, "utter_handoff_queued_no_estimate", True),
        ({"reference": "RG1", "status": "pending"}, "utter_handoff_queued_no_estimate", True),
        ({**QUEUED, "status": "assigned", "position": None}, "utter_handoff_connected", True),
        ({**QUEUED, "status": "after_hours", "position": None}, "utter_handoff_after_hours", True),
        ({**QUEUED, "status": "refused", "position": None}, "utter_handoff_refused", False),
        ({**QUEUED, "status": "lost"}, "utter_handoff_unavailable", False),
    ],
)
async def test_each_status_has_its_reply_and_only_a_person_pauses_the_bot(service, dispatcher, created, response, paused):
    service.responses["create_handoff"] = created
    events = await ActionHandoff().run(dispatcher, make_tracker([user("转人工", "request_human")]), {})
    assert responses(dispatcher) == [response]
    assert events == (PAUSED if paused else [])


async def test_the_queue_reply_has_the_position_and_the_wait(service, dispatcher):
    service.responses["create_handoff"] = QUEUED
    await ActionHandoff().run(dispatcher, make_tracker([user("转人工", "request_human")]), {})
    (message,) = dispatcher.messages
    assert (message["reference"], message["position"], message["wait_minutes"]) == ("RG20261123000001", 3, 6)


async def test_a_refused_handoff_is_not_an_error(service, dispatcher):
    service.responses["create_handoff"] = ServiceError(422, "invalid")
    assert await ActionHandoff().run(dispatcher, make_tracker([user("转人工", "request_human")]), {}) == []
    assert responses(dispatcher) == ["utter_handoff_unavailable"]


# ---- why ----------------------------------------------------------------------------------------


def loop(name):
    return {"event": "active_loop", "name": name}


async def test_a_person_asked_for_during_a_complaint_escalates_it(service, dispatcher):
    events = [
        user("我要投诉大厅工作人员", "complaint"), bot("utter_complaint_start"), loop("complaint_form"),
        bot("utter_ask_complaint_form_ticket_subject"),
        user("算了直接给我转人工", "request_human"), loop(None),  # the rule deactivates the form before the handoff
    ]
    assert (await handed_over(service, dispatcher, events))["reason"] == "complaint_escalation"


async def test_a_person_asked_for_right_after_a_complaint_was_filed_escalates_it(service, dispatcher):
    events = [
        user("我要投诉", "complaint"), bot("utter_complaint_start"), loop("complaint_form"),
        user("不留", "deny"), loop(None), bot("utter_ticket_created"),
        user("我还是要找人工", "request_human"),
    ]
    assert (await handed_over(service, dispatcher, events))["reason"] == "complaint_escalation"


@pytest.mark.parametrize(
    "events",
    [
        # a report is not a complaint
        [user("我要举报", "report_violation"), loop("report_form"), user("匿名", "deny"), loop(None),
         bot("utter_ticket_created"), user("转人工", "request_human")],
        # the complaint was filed earlier; something else came in between
        [user("投诉", "complaint"), loop("complaint_form"), user("不留", "deny"), loop(None), bot("utter_ticket_created"),
         user("个税怎么算", "ask_policy"), bot("utter_knowledge_answer"), user("转人工", "request_human")],
    ],
)
async def test_other_requests_for_a_person_are_not_complaint_escalations(service, dispatcher, events):
    assert (await handed_over(service, dispatcher, events))["reason"] == "user_request"
