from actions.questions import ActionAnswerQuestion
from tests.actions.support import ServiceUnavailable, make_tracker, responses, user


async def test_knowledge_answer_is_used_when_there_is_one(service, dispatcher):
    service.responses["answer_question"] = {"status": "answered", "answer": "每月5000元。依据：个人所得税法第六条。"}
    await ActionAnswerQuestion().run(dispatcher, make_tracker([user("个税起征点多少", "ask_policy", channel="webchat")]), {})
    assert responses(dispatcher) == ["utter_knowledge_answer"]
    assert dispatcher.messages[0]["answer"].startswith("每月5000元")
    assert service.calls == [("answer_question", "个税起征点多少", "ask_policy", "webchat")]


async def test_without_an_answer_each_intent_gets_its_general_reply(service, dispatcher):
    service.responses["answer_question"] = None
    for intent, expected in [
        ("invoice", "utter_invoice_general"),
        ("account_help", "utter_account_help_general"),
        ("pay_tax", "utter_pay_tax_general"),
        ("ask_policy", "utter_ask_policy_general"),
    ]:
        dispatcher.messages.clear()
        await ActionAnswerQuestion().run(dispatcher, make_tracker([user("问题", intent)]), {})
        assert responses(dispatcher) == [expected]


async def test_service_down_still_answers_safely(service, dispatcher):
    service.responses["answer_question"] = ServiceUnavailable("down")
    await ActionAnswerQuestion().run(dispatcher, make_tracker([user("专票怎么开", "invoice")]), {})
    assert responses(dispatcher) == ["utter_invoice_general"]


def _found(status, **extra):
    return {"status": status, "answer": None, "candidates": [{"id": "iit-a", "title": "甲", "score": 0.9},
                                                              {"id": "iit-b", "title": "乙", "score": 0.8}]} | extra


async def test_the_candidates_are_kept_for_an_agent(service, dispatcher):
    service.responses["answer_question"] = _found("answered", answer="答复。")
    events = await ActionAnswerQuestion().run(dispatcher, make_tracker([user("问", "ask_policy")]), {})
    assert events == [{"event": "slot", "timestamp": None, "name": "kb_candidates",
                       "value": [{"id": "iit-a", "title": "甲", "score": 0.9}, {"id": "iit-b", "title": "乙", "score": 0.8}]}]


async def test_close_candidates_become_buttons_that_name_the_entry(service, dispatcher):
    choices = [{"id": "ded-child-education-amount", "title": "子女教育扣除标准"}, {"id": "ded-infant-care-amount", "title": "3岁以下婴幼儿照护扣除"}]
    service.responses["answer_question"] = _found("ambiguous", choices=choices)
    await ActionAnswerQuestion().run(dispatcher, make_tracker([user("孩子能扣多少", "ask_policy")]), {})
    assert responses(dispatcher) == ["utter_knowledge_choose"]
    buttons = dispatcher.messages[0]["buttons"]
    assert [b["title"] for b in buttons] == ["子女教育扣除标准", "3岁以下婴幼儿照护扣除"]
    assert buttons[0]["payload"] == '/ask_policy{"kb_entry": "ded-child-education-amount"}'


async def test_a_picked_button_asks_for_that_entry(service, dispatcher):
    service.responses["answer_question"] = _found("answered", answer="每个子女每月2000元。")
    message = user('/ask_policy{"kb_entry": "ded-child-education-amount"}', "ask_policy")
    message["parse_data"]["entities"] = [{"entity": "kb_entry", "value": "ded-child-education-amount"}]
    await ActionAnswerQuestion().run(dispatcher, make_tracker([message]), {})
    assert service.calls[0][-1] == "ded-child-education-amount"
    assert responses(dispatcher) == ["utter_knowledge_answer"]


async def test_expired_or_unreviewed_entries_offer_a_person(service, dispatcher):
    for status, expected in [("expired", "utter_knowledge_expired"), ("needs_review", "utter_knowledge_under_review")]:
        dispatcher.messages.clear()
        service.responses["answer_question"] = _found(status)
        await ActionAnswerQuestion().run(dispatcher, make_tracker([user("问", "ask_policy")]), {})
        assert responses(dispatcher) == [expected]


async def test_out_of_scope_asks_the_knowledge_base_then_says_what_it_can_do(service, dispatcher):
    service.responses["answer_question"] = _found("no_answer")
    await ActionAnswerQuestion().run(dispatcher, make_tracker([user("今天天气怎么样", "out_of_scope")]), {})
    assert service.calls == [("answer_question", "今天天气怎么样", "out_of_scope", "rest")]
    assert responses(dispatcher) == ["utter_out_of_scope"]


async def test_a_likely_but_uncertain_entry_is_suggested_with_a_person_offered(service, dispatcher):
    service.responses["answer_question"] = _found("suggested", answer="每个子女每月2000元。")
    await ActionAnswerQuestion().run(dispatcher, make_tracker([user("孩子能扣多少", "ask_policy")]), {})
    assert responses(dispatcher) == ["utter_knowledge_suggested"]
    assert dispatcher.messages[0]["answer"] == "每个子女每月2000元。"
