"""Starts ``rasa run`` with the API token from the environment (Rasa venv).

Rasa takes ``--auth-token`` only as a command-line argument, which every local user can read
with ``ps``. This launcher appends it to Rasa's own argument list inside the process, so the
command line shows everything but the token (TAXBOT_RASA_TOKEN).
"""
from __future__ import annotations

import os
import sys


def main() -> None:
    token = os.environ.pop("TAXBOT_RASA_TOKEN", "")
    if not token:
        raise SystemExit("TAXBOT_RASA_TOKEN is not set")
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", "run", *sys.argv[1:], "--auth-token", token]
    rasa_main()


if __name__ == "__main__":
    main()
