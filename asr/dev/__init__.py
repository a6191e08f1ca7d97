"""The ASR development set (tuning data kept apart from the evaluation set in ``asr/eval``)."""
