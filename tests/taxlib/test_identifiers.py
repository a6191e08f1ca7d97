import pytest

from taxlib.identifiers import (
    classify_identifier,
    id_check_char,
    is_valid_id_number,
    is_valid_uscc,
    normalize_phone,
    uscc_check_char,
)


@pytest.mark.parametrize(
    "code",
    # Published codes of real organisations (check digits per GB 32100-2015).
    ["91110000100017643K", "91440300708461136T"],
)
def test_published_credit_codes_are_valid(code):
    assert is_valid_uscc(code)
    assert uscc_check_char(code[:17]) == code[17]


def test_credit_code_rules():
    assert not is_valid_uscc("91110000100017643A")  # wrong check character
    assert not is_valid_uscc("91110000100017643")  # 17 characters
    assert not is_valid_uscc("9111000010001764IK")  # I is not in the alphabet
    assert is_valid_uscc("91110000100017643k")  # case does not matter


def test_id_number_rules():
    # GB 11643-1999's own worked example: 11010519491231002X
    assert id_check_char("11010519491231002") == "X"
    assert is_valid_id_number("11010519491231002X")
    assert is_valid_id_number("11010519491231002x")
    assert not is_valid_id_number("110105194912310021")  # check digit
    assert not is_valid_id_number("110105194902300028")  # 30 February
    assert not is_valid_id_number("11010519491231002")


def test_phone_normalisation():
    assert normalize_phone("13812345678") == "13812345678"
    assert normalize_phone("+86 138-1234-5678") == "13812345678"
    assert normalize_phone("8613812345678") == "13812345678"
    assert normalize_phone("12812345678") is None
    assert normalize_phone("1381234567") is None


def test_a_resident_id_is_an_id_number_a_credit_code_a_taxpayer_id():
    assert classify_identifier("11010519491231002X") == "id_number"
    assert classify_identifier("91110000100017643K") == "taxpayer_id"
    assert classify_identifier("12345") is None
