from rasa_sdk.events import FollowupAction, SlotSet

from actions.self_service import ActionSelfServiceQuery, yuan
from tests.actions.support import ServiceError, ServiceUnavailable, make_tracker, responses

VERIFIED = {"verified": True, "taxpayer_grant": "g-1", "taxpayer_name": "张伟"}


def test_yuan_groups_thousands():
    assert yuan("36500") == "36,500.00"
    assert yuan("1280.5") == "1,280.50"


async def test_tax_due_lists_items_and_total(service, dispatcher):
    service.responses["tax_due"] = {
        "taxpayer": {"name": "北京云帆科技有限公司"},
        "items": [
            {"tax_type": "增值税", "period": "2026年10月", "amount": "36500.00", "due_date": "2026-11-15", "status": "unpaid"},
            {"tax_type": "企业所得税", "period": "2026年第三季度", "amount": "12000.00", "due_date": "2026-10-15", "status": "overdue"},
        ],
        "total": "48500.00",
    }
    events = await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={**VERIFIED, "pending_query": "tax_due"}), {})
    message = dispatcher.messages[0]
    assert message["response"] == "utter_tax_due"
    assert message["total"] == "48,500.00"
    assert "1. 2026年10月 增值税 36,500.00 元" in message["items"]
    assert "已逾期" in message["items"].splitlines()[1]
    assert "\n" not in message["items_spoken"]
    assert events == [SlotSet("pending_query", None)]
    assert service.calls == [("tax_due", "g-1")]


async def test_empty_records_have_their_own_answer(service, dispatcher):
    service.responses["refunds"] = {"taxpayer": {"name": "李娜"}, "items": []}
    await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={**VERIFIED, "pending_query": "refund"}), {})
    assert responses(dispatcher) == ["utter_no_refunds"]
    assert dispatcher.messages[0]["taxpayer_name"] == "李娜"


async def test_payments_show_status_in_chinese(service, dispatcher):
    service.responses["payments"] = {
        "taxpayer": {"name": "张伟"},
        "items": [{"tax_type": "个人所得税", "period": "2025年", "amount": "500.00", "paid_at": "2026-03-01T10:00:00",
                   "channel": "个税App", "voucher_no": "V1", "status": "processing"}],
    }
    await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={**VERIFIED, "pending_query": "payment"}), {})
    assert "银行处理中" in dispatcher.messages[0]["items"]
    assert service.calls == [("payments", "g-1", 5)]


async def test_unverified_after_the_form_is_told_why_and_nothing_is_read(service, dispatcher):
    events = await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={"verified": False, "pending_query": "tax_due"}), {})
    assert responses(dispatcher) == ["utter_identity_failed"]
    assert SlotSet("identity_failed", False) in events
    assert service.calls == []


async def test_expired_grant_starts_verification_again(service, dispatcher):
    service.responses["tax_due"] = ServiceError(401, "grant_invalid")
    events = await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={**VERIFIED, "pending_query": "tax_due"}), {})
    assert SlotSet("verified", False) in events
    assert events[-1] == FollowupAction("identity_form")


async def test_no_pending_query_asks_which(service, dispatcher):
    await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots=VERIFIED), {})
    assert responses(dispatcher) == ["utter_ask_which_query"]


async def test_service_down_is_a_polite_reply(service, dispatcher):
    service.responses["payments"] = ServiceUnavailable("down")
    await ActionSelfServiceQuery().run(dispatcher, make_tracker(slots={**VERIFIED, "pending_query": "payment"}), {})
    assert responses(dispatcher) == ["utter_service_unavailable"]
