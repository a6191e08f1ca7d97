from taxlib.text import compact_identifier, digits_only, strip_control, to_halfwidth


def test_spoken_and_fullwidth_digits():
    assert digits_only("幺三八 1234-5678") == "13812345678"
    assert digits_only("二零二五") == "2025"
    assert digits_only("１３８") == "138"
    assert to_halfwidth("ＡＢＣ１２３") == "ABC123"


def test_identifier_compaction():
    assert compact_identifier("9111 0000-1000 1764 3k") == "91110000100017643K"


def test_control_characters_removed_but_lines_kept():
    assert strip_control("a\x00b\x07c\u200bd\ne\tf") == "abcd\ne\tf"
