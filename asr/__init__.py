"""Speech for the phone line and WeChat voice: recognition (ASR) and synthesis (TTS) engines.

Everything here runs in the service venv except the neural voice's worker (``asr/tts_worker.py``), which runs in
the Rasa venv because it needs TensorFlow. Engines sit behind the small interfaces in ``asr/types.py``.
"""
