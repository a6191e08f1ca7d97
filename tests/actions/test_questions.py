from actions.questions import ActionAnswerQuestion
from tests.actions.support import ServiceUnavailable, make_tracker, responses, user


async def test_knowledge_answer_is_used_when_there_is_one(service, dispatcher):
    service.responses["answer_question"] = {"answer": "每月5000元。依据：个人所得税法第六条。"}
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
