"""Where things are in the checkout."""
from __future__ import annotations

from cli.bootstrap import ROOT

RASA_PYTHON = ROOT / ".venvs" / "rasa" / "bin" / "python"
RASA_BIN = ROOT / ".venvs" / "rasa" / "bin" / "rasa"
SERVICE_PYTHON = ROOT / ".venvs" / "service" / "bin" / "python"
MODELS_DIR = ROOT / "models"
REPORTS_DIR = ROOT / "reports"

# The paths Rasa's CLI does not default, spelled out once.
CONFIG = ROOT / "config.yml"
DOMAIN = ROOT / "bot" / "domain"
CREDENTIALS = ROOT / "bot" / "credentials.yml"
TRAINING_DATA = (ROOT / "nlu_data", ROOT / "bot" / "rules", ROOT / "bot" / "stories")
NLU_TEST_DATA = ROOT / "tests" / "nlu"
CONVERSATION_TESTS = ROOT / "tests" / "conversations"
# Code that the trained model loads: a change to it needs a new model too.
MODEL_CODE = (ROOT / "bot" / "components", ROOT / "taxlib" / "identifiers.py", ROOT / "requirements" / "rasa.lock")
