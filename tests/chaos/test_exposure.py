"""Issue 11.9: a token in a query string never reaches the log, however it is spelled.

Redaction matched the literal `token=`; `?%74oken=...` authenticates just the same
(the server decodes the name) and was logged in clear.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.asyncio.client import connect

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

TOKEN = "s3cret-read-token-0123456789"
CONFIG = f"api:\n  tokens: {{{TOKEN}: read}}\n"


def test_percent_encoded_token_names_are_redacted_too(apsis_daemon):
    daemon = apsis_daemon({}, config=CONFIG, token=TOKEN)
    base = f"ws://127.0.0.1:{daemon.port}/api/v1/events"

    async def probe() -> int:
        for query in (f"?token={TOKEN}", f"?%74oken={TOKEN}", f"?since=0&%74%6F%6B%65%6E={TOKEN}"):
            async with connect(base + query, open_timeout=10):
                pass  # accepted: the server read each spelling as the token
        # Refused handshakes are logged with their path as well.
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"{base}?%74oken={TOKEN}&bogus=1", open_timeout=10):
                pass
        return info.value.response.status_code

    assert asyncio.run(probe()) == 400
    daemon.stop()
    log = daemon.log_text()
    assert "WebSocket /api/v1/events?%74oken=***" in log, log[-3000:]
    assert TOKEN not in log, [line for line in log.splitlines() if TOKEN in line]
