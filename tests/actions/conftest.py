"""Fixtures for action tests (Rasa venv)."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.service_client import set_service_client
from tests.actions.support import FakeService


@pytest.fixture
def service():
    fake = FakeService()
    set_service_client(fake)
    yield fake
    set_service_client(None)


@pytest.fixture
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()
