from rasa_sdk.executor import CollectingDispatcher

from actions.identity import MAX_IDENTITY_ATTEMPTS, ValidateIdentityForm, parse_code, parse_identifier, parse_phone
from tests.actions.support import ServiceError, ServiceUnavailable, make_tracker, responses

ID = "110101198704020880"
USCC = "9111010178CCCC3FLD"


def test_parse_identifier_finds_valid_numbers_in_what_people_type():
    assert parse_identifier(ID) == ID
    assert parse_identifier(f"我的身份证号是{ID}，帮我查一下") == ID
    assert parse_identifier("9111 0101 78cc cc3f ld") == USCC
    assert parse_identifier("税号：９１１１０１０１７８ＣＣＣＣ３ＦＬＤ") == USCC
    assert parse_identifier("幺幺零幺零幺幺九八七零四零二零八八零") == ID


def test_parse_identifier_rejects_wrong_check_digits_and_noise():
    assert parse_identifier("110101198704020881") is None
    assert parse_identifier("9111010178CCCC3FLE") is None
    assert parse_identifier("我不知道") is None
    assert parse_identifier("") is None
    assert parse_identifier(None) is None


def test_parse_phone_and_code():
    assert parse_phone("138 1741 4333") == "13817414333"
    assert parse_phone("+86 13817414333") == "13817414333"
    assert parse_phone("幺三八一七四一四三三三") == "13817414333"
    assert parse_phone("12345") is None
    assert parse_code("验证码是 246 810") == "246810"
    assert parse_code("二四六八一零") == "246810"
    assert parse_code("12345") is None


async def test_phone_starts_a_verification_and_keeps_its_id(service, dispatcher):
    service.responses["start_verification"] = {"verification_id": "v1", "masked_phone": "138****4333", "expires_in": 300}
    tracker = make_tracker(slots={"identifier": ID}, sender="conv-9")
    slots = await ValidateIdentityForm().validate_phone("13817414333", dispatcher, tracker, {})
    assert slots == {"phone": "13817414333", "verification_id": "v1", "masked_phone": "138****4333", "phone_tail": "4333"}
    assert service.calls == [("start_verification", ID, "13817414333", "conv-9", "rest")]


async def test_phone_without_a_valid_identifier_is_asked_again_and_sends_nothing(service, dispatcher):
    tracker = make_tracker(slots={"identifier": "110101198704020881"})
    slots = await ValidateIdentityForm().validate_phone("13817414333", dispatcher, tracker, {})
    assert slots == {"phone": None}
    assert service.calls == []


async def test_mismatch_asks_again_then_gives_up(service, dispatcher):
    service.responses["start_verification"] = ServiceError(404, "no_match")
    form = ValidateIdentityForm()
    slots = await form.validate_phone("13817414333", dispatcher, make_tracker(slots={"identifier": ID}), {})
    assert slots == {"identity_attempts": 1, "identifier": None, "phone": None}
    assert responses(dispatcher) == ["utter_identity_no_match"]

    last = CollectingDispatcher()
    tracker = make_tracker(slots={"identifier": ID, "identity_attempts": MAX_IDENTITY_ATTEMPTS - 1})
    slots = await form.validate_phone("13817414333", last, tracker, {})
    assert slots["identity_failed"] is True
    failed = make_tracker(slots={"identity_failed": True})
    assert await form.required_slots(["identifier", "phone", "otp_code"], last, failed, {}) == []


async def test_service_down_ends_the_form_politely(service, dispatcher):
    service.responses["start_verification"] = ServiceUnavailable("down")
    slots = await ValidateIdentityForm().validate_phone("13817414333", dispatcher, make_tracker(slots={"identifier": ID}), {})
    assert slots["identity_failed"] is True
    assert responses(dispatcher) == ["utter_service_unavailable"]


async def test_right_code_verifies_and_stores_the_grant(service, dispatcher):
    service.responses["confirm_verification"] = {"grant": "g-1", "expires_in": 1800, "taxpayer": {"name": "张伟"}}
    tracker = make_tracker(slots={"verification_id": "v1"})
    slots = await ValidateIdentityForm().validate_otp_code("246810", dispatcher, tracker, {})
    assert slots == {"otp_code": "246810", "verified": True, "taxpayer_grant": "g-1", "taxpayer_name": "张伟"}
    assert service.calls == [("confirm_verification", "v1", "246810")]
    assert dispatcher.messages[0]["response"] == "utter_identity_verified"
    assert dispatcher.messages[0]["taxpayer_name"] == "张伟"


async def test_wrong_code_says_how_many_tries_are_left(service, dispatcher):
    service.responses["confirm_verification"] = ServiceError(400, "wrong_code", {"attempts_left": 2})
    slots = await ValidateIdentityForm().validate_otp_code("111111", dispatcher, make_tracker(slots={"verification_id": "v1"}), {})
    assert slots == {"otp_code": None}
    assert dispatcher.messages[0]["response"] == "utter_otp_wrong"
    assert dispatcher.messages[0]["attempts_left"] == 2


async def test_expired_code_restarts_from_the_phone(service, dispatcher):
    service.responses["confirm_verification"] = ServiceError(410, "expired")
    slots = await ValidateIdentityForm().validate_otp_code("111111", dispatcher, make_tracker(slots={"verification_id": "v1"}), {})
    assert slots == {"otp_code": None, "phone": None, "verification_id": None}
    assert responses(dispatcher) == ["utter_otp_expired"]


async def test_locked_verification_fails_for_good(service, dispatcher):
    service.responses["confirm_verification"] = ServiceError(429, "locked")
    slots = await ValidateIdentityForm().validate_otp_code("111111", dispatcher, make_tracker(slots={"verification_id": "v1"}), {})
    assert slots["identity_failed"] is True


async def test_a_code_that_is_not_six_digits_is_not_sent(service, dispatcher):
    slots = await ValidateIdentityForm().validate_otp_code("不知道", dispatcher, make_tracker(slots={"verification_id": "v1"}), {})
    assert slots == {"otp_code": None}
    assert service.calls == []
