import logging

from taxlib.privacy import install_log_masking, mask_identifier, mask_text


def test_masks_keep_only_the_ends():
    assert mask_identifier("13812345678") == "138****5678"
    assert mask_identifier("11010519491231002X") == "110***********002X"


def test_free_text_is_masked_everywhere():
    text = "张先生 11010519491231002X，电话 +86 138-1234-5678，公司 91110000100017643K，卡 6222021234567890123"
    masked = mask_text(text)
    for secret in ("11010519491231002X", "1234-5678", "91110000100017643K", "6222021234567890123"):
        assert secret not in masked
    assert "张先生" in masked and "138****5678" in masked


def test_ordinary_numbers_are_left_alone():
    assert mask_text("2025年个税汇算，收入12万，税率3%") == "2025年个税汇算，收入12万，税率3%"


def test_log_records_are_masked_whatever_the_handler(caplog):
    install_log_masking()
    install_log_masking()  # idempotent
    logger = logging.getLogger("taxbot.test")
    with caplog.at_level(logging.INFO):
        logger.info("verified %s with phone %s", "11010519491231002X", "13812345678")
    assert caplog.records[-1].getMessage() == "verified 110***********002X with phone 138****5678"


def test_tracebacks_are_masked_too(caplog):
    install_log_masking()
    logger = logging.getLogger("taxbot.test")
    try:
        raise ValueError("no taxpayer 11010519491231002X with phone 13812345678")
    except ValueError:
        with caplog.at_level(logging.ERROR):
            logger.exception("lookup failed")
    formatted = logging.Formatter().format(caplog.records[-1])
    assert "ValueError" in formatted and "110***********002X" in formatted
    assert "11010519491231002X" not in formatted and "13812345678" not in formatted
