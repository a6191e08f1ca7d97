from rasa_sdk.events import SlotSet

from actions.tickets import ANONYMOUS, ActionSubmitTicket, ValidateComplaintForm, ValidateReportForm, parse_contact
from tests.actions.support import ServiceError, make_tracker, responses, user


def test_contact_is_a_phone_or_a_clear_refusal():
    assert parse_contact("13817414333") == "13817414333"
    assert parse_contact("我的电话 138-1741-4333") == "13817414333"
    assert parse_contact("匿名") == ANONYMOUS
    assert parse_contact("不方便留") == ANONYMOUS
    assert parse_contact("明天再说吧") is None


def test_each_form_has_its_validation_action():
    assert ValidateComplaintForm().name() == "validate_complaint_form"
    assert ValidateReportForm().name() == "validate_report_form"


async def test_invalid_contact_is_asked_again(dispatcher):
    slots = await ValidateComplaintForm().validate_contact_phone("随便", dispatcher, make_tracker(), {})
    assert slots == {"contact_phone": None}
    assert responses(dispatcher) == ["utter_invalid_contact_phone"]


def report_conversation(contact: str):
    events = [
        user("我要举报一家公司虚开发票", "report_violation"),
        {"event": "active_loop", "name": "report_form"},
        user("某某商贸公司", "report_violation"),
        user("去年开了很多假发票", "report_violation"),
        user(contact, "deny"),
        {"event": "active_loop", "name": None},
    ]
    slots = {"ticket_subject": "某某商贸公司", "ticket_detail": "去年开了很多假发票", "contact_phone": contact}
    return make_tracker(events, slots=slots, sender="conv-r")


async def test_report_is_filed_with_its_facts_and_reference(service, dispatcher):
    service.responses["create_ticket"] = {"reference": "JB20261123000004", "kind": "report", "status": "open"}
    events = await ActionSubmitTicket().run(dispatcher, report_conversation(ANONYMOUS), {})
    (_, ticket), = service.calls
    assert ticket == {
        "kind": "report",
        "subject": "某某商贸公司",
        "detail": "去年开了很多假发票",
        "contact_phone": None,
        "conversation_id": "conv-r",
        "channel": "rest",
        "opening_message": "我要举报一家公司虚开发票",
    }
    message = dispatcher.messages[0]
    assert message["response"] == "utter_ticket_created"
    assert (message["ticket_kind"], message["reference"]) == ("举报", "JB20261123000004")
    assert SlotSet("ticket_detail", None) in events


async def test_ticket_failure_is_told_and_the_facts_kept(service, dispatcher):
    service.responses["create_ticket"] = ServiceError(422, "validation_error")
    events = await ActionSubmitTicket().run(dispatcher, report_conversation("13817414333"), {})
    assert responses(dispatcher) == ["utter_ticket_failed"]
    assert events == []
    assert service.calls[0][1]["contact_phone"] == "13817414333"


async def test_form_validations_know_their_forms():
    from actions.tickets import ValidateSuggestionForm

    for action, form in [(ValidateComplaintForm(), "complaint_form"), (ValidateReportForm(), "report_form"),
                         (ValidateSuggestionForm(), "suggestion_form")]:
        assert action.form_name() == form


async def test_subject_is_cut_to_what_the_service_accepts(dispatcher):
    slots = await ValidateComplaintForm().validate_ticket_subject("窗" * 500, dispatcher, make_tracker(), {})
    assert len(slots["ticket_subject"]) == 200
