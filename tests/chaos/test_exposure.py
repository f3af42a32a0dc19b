"""What the daemon gives away: tokens in its log (issue 11.9), an open API (11.12).

Redaction matched the literal `token=`; `?%74oken=...` authenticates just the same
(the server decodes the name) and was logged in clear. `--insecure` on a network
address started without a word.
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


def test_insecure_on_a_network_address_says_so_at_start(apsis_daemon):
    daemon = apsis_daemon({}, start=False, args=["--insecure"])
    daemon.bind = f"0.0.0.0:{daemon.port}"
    daemon.start()
    daemon.stop()
    warnings = [line for line in daemon.log_text().splitlines() if "WARNING" in line]
    assert any(f"--insecure: serving on 0.0.0.0:{daemon.port} without api.tokens and api.tls"
               in line for line in warnings), warnings
