"""Kept so that imports written before tests/support.py keep working: the API fixtures live in
tests/conftest.py and the helpers in tests/support.py (new code imports them from there)."""

from tests.conftest import api, api_settings, client, receiver, token, tokens
from tests.support import CALLBACK_SECRET, ApiServer, Receiver, free_port
from tests.support import poll_until as wait_for

__all__ = ["CALLBACK_SECRET", "ApiServer", "Receiver", "api", "api_settings", "client",
           "free_port", "receiver", "token", "tokens", "wait_for"]
