"""Custom actions of the 12366 assistant (rasa-sdk action server, Rasa venv).

Actions stay thin: they read slots, call the service app over HTTP through
``actions.service_client``, and return events. Nothing heavy happens at import time:
rasa-sdk imports every module here and builds each action with no arguments.
"""
from taxlib.privacy import install_log_masking

install_log_masking()
