"""The Mandarin speech-recognition evaluation set (utterances.yml, audio/, manifest.json; built by build.py)."""
