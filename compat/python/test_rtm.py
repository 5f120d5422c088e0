"""The real slack_sdk.rtm_v2.RTMClient against Tidings, unmodified except its base_url: it calls
auth.test (it needs bot_id) and rtm.connect with a bot token, receives a message published to its
workspace (unwrapped), keeps the connection through its WebSocket pings, and reconnects on its own
after the server's `goodbye` at the end of the connection's lifetime."""

import threading
import time
import urllib.request

import pytest
from slack_sdk.rtm_v2 import RTMClient

# Long enough for several of the client's 1 s pings (it gives a connection up after 4 s
# without a pong), short enough for a test.
LIFETIME = "6s"


@pytest.fixture
def tidings_short_rtm_lifetime(monkeypatch, request):
    """The usual server, started with TIDINGS_RTM_CONNECTION_LIFETIME=6s."""
    monkeypatch.setenv("TIDINGS_RTM_CONNECTION_LIFETIME", LIFETIME)
    return request.getfixturevalue("tidings")


def rtm_workspace(tidings):
    """T01 with U01, app A0RTM subscribed to channel messages and installed with
    channels:history, C01 with U01 and the bot. Returns the installation."""
    tidings.admin("POST", "/teams", {"id": "T01", "name": "Acme", "domain": "acme"}, expect=201)
    tidings.admin("POST", "/teams/T01/users", {"id": "U01", "name": "alice"}, expect=201)
    tidings.admin("POST", "/apps", {"id": "A0RTM", "name": "RTM app", "bot_events": ["message.channels"]}, expect=201)
    _, inst = tidings.admin(
        "POST", "/apps/A0RTM/installations",
        {"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]},
        expect=201,
    )
    tidings.admin(
        "PUT", "/teams/T01/conversations/C01",
        {"name": "general", "kind": "public", "members": ["U01", inst["bot_user_id"]]},
        expect=201,
    )
    return inst


def say(tidings, text):
    return tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": text})


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def closed_reasons(tidings):
    """tidings_rtm_closed_total by reason, from /metrics."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(tidings.url + "/metrics", timeout=10) as res:
        text = res.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith('tidings_rtm_closed_total{reason="'):
            reason = line.split('"')[1]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def test_rtm_v2_client_receives_events_keeps_its_connection_through_pings_and_reconnects_after_goodbye(
    tidings_short_rtm_lifetime,
):
    tidings = tidings_short_rtm_lifetime
    inst = rtm_workspace(tidings)
    rtm = RTMClient(token=inst["bot_token"], base_url=tidings.api_url, ping_interval=1)
    lock = threading.Lock()
    messages, goodbyes = [], []

    @rtm.on("message")
    def on_message(client, event):
        with lock:
            messages.append(event)

    @rtm.on("goodbye")
    def on_goodbye(client, event):
        with lock:
            goodbyes.append(event)

    try:
        rtm.connect()
        first_url = rtm.wss_uri
        assert first_url.startswith(tidings.url.replace("http://", "ws://") + "/rtm/websocket?ticket="), first_url
        assert rtm.bot_id == inst["bot_id"]

        say(tidings, "hello python rtm")
        got = wait_for(
            lambda: next((m for m in list(messages) if m.get("text") == "hello python rtm"), None),
            what="the published message",
        )
        assert got["channel"] == "C01" and got["user"] == "U01"
        assert "event" not in got, "unwrapped"

        # goodbye at the end of the lifetime, and a new connection on a new URL.
        wait_for(lambda: goodbyes and rtm.wss_uri != first_url and rtm.is_connected(), what="goodbye and a reconnect")
        # A connection lasted its whole lifetime (6 s): its pings were answered, since the
        # client drops a connection whose pong is 4 s late, and goodbye comes only at the end.
        reasons = closed_reasons(tidings)
        assert reasons.get("lifetime", 0) >= 1, reasons
        assert reasons.get("peer_silent", 0) == 0, reasons

        say(tidings, "after goodbye")
        wait_for(lambda: any(m.get("text") == "after goodbye" for m in list(messages)), what="a message on the new connection")
    finally:
        rtm.close()
