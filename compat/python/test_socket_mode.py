"""Real slack_sdk / slack_bolt Socket Mode clients against Tidings: the builtin and aiohttp
SocketModeClients and Bolt's SocketModeHandler connect with an app-level token, receive
`events_api` envelopes, ack them (which completes the delivery), reconnect when the server
refreshes the connection, and an envelope left un-acked is redelivered."""

import asyncio
import json
import threading
import time

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

# A refresh cycle short enough for a test: `warning` after 2 s, `refresh_requested` after 4 s.
SHORT_LIFETIME = "4s"
SHORT_LIFETIME_SECONDS = 4.0


@pytest.fixture
def tidings_short_lifetime(monkeypatch, request):
    """The usual server, started with TIDINGS_SOCKET_MODE_CONNECTION_LIFETIME=4s (the `tidings`
    fixture passes the process environment through, then sets its own fixed variables)."""
    monkeypatch.setenv("TIDINGS_SOCKET_MODE_CONNECTION_LIFETIME", SHORT_LIFETIME)
    return request.getfixturevalue("tidings")


@pytest.fixture
def tidings_short_ack_timeout(monkeypatch, request):
    """The usual server, started with TIDINGS_SOCKET_MODE_ACK_TIMEOUT=500ms."""
    monkeypatch.setenv("TIDINGS_SOCKET_MODE_ACK_TIMEOUT", "500ms")
    return request.getfixturevalue("tidings")


def socket_workspace(tidings):
    """T01 with U01, socket-mode app A01 subscribed to channel messages and installed with
    channels:history, C01 with U01 and the bot. Returns (installation, app-level token)."""
    tidings.admin("POST", "/teams", {"id": "T01", "name": "Acme", "domain": "acme"}, expect=201)
    tidings.admin("POST", "/teams/T01/users", {"id": "U01", "name": "alice"}, expect=201)
    _, app = tidings.admin(
        "POST", "/apps",
        {"id": "A01", "name": "Socket app", "socket_mode": True, "bot_events": ["message.channels"]},
        expect=201,
    )
    assert app["socket_mode"] is True, app
    _, inst = tidings.admin(
        "POST", "/apps/A01/installations",
        {"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]},
        expect=201,
    )
    tidings.admin(
        "PUT", "/teams/T01/conversations/C01",
        {"name": "general", "kind": "public", "members": ["U01", inst["bot_user_id"]]},
        expect=201,
    )
    _, token = tidings.admin(
        "POST", "/apps/A01/tokens", {"scopes": ["connections:write", "authorizations:read"]}, expect=201,
    )
    assert token["token"].startswith("xapp-"), token
    return inst, token["token"]


def say(tidings, text):
    return tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": text})


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_delivered_over_socket(tidings, event_id):
    d = tidings.wait_delivery(event_id, "delivered")
    assert d["attempts"], d
    assert d["attempts"][-1]["transport"] == "socket", d
    return d


class Recorder:
    """Thread-safe record of what a client saw: the events_api envelopes (as dicts) and the
    type/reason of every other frame."""

    def __init__(self):
        self.lock = threading.Lock()
        self.envelopes = []
        self.frames = []

    def envelope(self, envelope):
        with self.lock:
            self.envelopes.append(envelope)

    def frame(self, raw):
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if isinstance(msg, dict) and msg.get("type") != "events_api":
            with self.lock:
                self.frames.append((msg.get("type"), msg.get("reason")))

    def texts(self):
        with self.lock:
            return [e["payload"]["event"]["text"] for e in self.envelopes]

    def for_event(self, event_id):
        with self.lock:
            return [e for e in self.envelopes if e["payload"]["event_id"] == event_id]

    def count(self, frame):
        with self.lock:
            return self.frames.count(frame)


def builtin_client(tidings, app_token, recorder, ack=lambda envelope: True):
    """slack_sdk's builtin SocketModeClient pointed at Tidings; its request listener records
    every events_api envelope and acks it when `ack(envelope)` says so."""
    client = SocketModeClient(
        app_token=app_token,
        web_client=WebClient(base_url=tidings.api_url),
        on_message_listeners=[recorder.frame],
    )

    def listener(client, req: SocketModeRequest):
        if req.type != "events_api":
            return
        envelope = {
            "envelope_id": req.envelope_id, "payload": req.payload,
            "retry_attempt": req.retry_attempt, "retry_reason": req.retry_reason,
        }
        recorder.envelope(envelope)
        if ack(envelope):
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(listener)
    return client


def test_builtin_client_receives_events_and_its_acks_complete_the_delivery(tidings):
    _, app_token = socket_workspace(tidings)
    recorder = Recorder()
    client = builtin_client(tidings, app_token, recorder)
    try:
        client.connect()
        wait_for(lambda: recorder.count(("hello", None)) >= 1, what="hello")
        event_id = say(tidings, "hello socket")
        d = assert_delivered_over_socket(tidings, event_id)
        wait_for(lambda: recorder.for_event(event_id), what="the envelope")
        (envelope,) = recorder.for_event(event_id)
        assert envelope["payload"]["event"]["text"] == "hello socket"
        assert envelope["payload"]["type"] == "event_callback"
        assert envelope["payload"]["team_id"] == "T01"
        assert (envelope["retry_attempt"], envelope["retry_reason"]) == (0, "")
        assert [a["transport"] for a in d["attempts"]] == ["socket"]
    finally:
        client.close()


def test_builtin_client_reconnects_after_a_refresh_and_keeps_receiving(tidings_short_lifetime):
    tidings = tidings_short_lifetime
    _, app_token = socket_workspace(tidings)
    recorder = Recorder()
    client = builtin_client(tidings, app_token, recorder)
    try:
        connected_at = time.monotonic()
        client.connect()
        first = say(tidings, "before the refresh")
        assert_delivered_over_socket(tidings, first)
        # Past the first connection's whole lifetime: it was warned, refreshed and replaced.
        time.sleep(max(0.0, connected_at + SHORT_LIFETIME_SECONDS + 1.0 - time.monotonic()))
        assert recorder.count(("disconnect", "warning")) >= 1, recorder.frames
        assert recorder.count(("hello", None)) >= 2, recorder.frames
        second = say(tidings, "after the refresh")
        assert_delivered_over_socket(tidings, second)
        wait_for(lambda: "after the refresh" in recorder.texts(), what="the event after the refresh")
        assert recorder.texts().count("before the refresh") >= 1
    finally:
        client.close()


def test_aiohttp_client_receives_acks_and_reconnects_after_a_refresh(tidings_short_lifetime):
    from slack_sdk.socket_mode.aiohttp import SocketModeClient as AiohttpSocketModeClient

    tidings = tidings_short_lifetime
    _, app_token = socket_workspace(tidings)
    recorder = Recorder()

    async def main():
        client = AiohttpSocketModeClient(app_token=app_token, web_client=AsyncWebClient(base_url=tidings.api_url))

        async def on_message(client, message, raw):
            recorder.frame(raw)

        async def on_request(client, req: SocketModeRequest):
            if req.type != "events_api":
                return
            recorder.envelope({
                "envelope_id": req.envelope_id, "payload": req.payload,
                "retry_attempt": req.retry_attempt, "retry_reason": req.retry_reason,
            })
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

        client.message_listeners.append(on_message)
        client.socket_mode_request_listeners.append(on_request)
        try:
            connected_at = time.monotonic()
            await asyncio.wait_for(client.connect(), 10)
            # The operator API client blocks: run it off the loop so acks keep flowing.
            first = await asyncio.to_thread(say, tidings, "aiohttp before")
            await asyncio.to_thread(assert_delivered_over_socket, tidings, first)
            await asyncio.sleep(max(0.0, connected_at + SHORT_LIFETIME_SECONDS + 1.0 - time.monotonic()))
            # Disconnect frames are handled inside the client; a second hello shows it reconnected.
            assert recorder.count(("hello", None)) >= 2, recorder.frames
            second = await asyncio.to_thread(say, tidings, "aiohttp after")
            await asyncio.to_thread(assert_delivered_over_socket, tidings, second)
            await asyncio.to_thread(wait_for, lambda: "aiohttp after" in recorder.texts(), 10, "the event after the refresh")
            assert "aiohttp before" in recorder.texts()
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_bolt_socket_mode_handler_receives_acks_and_reconnects_after_a_refresh(tidings_short_lifetime):
    tidings = tidings_short_lifetime
    inst, app_token = socket_workspace(tidings)
    got = []
    lock = threading.Lock()
    app = App(client=WebClient(token=inst["bot_token"], base_url=tidings.api_url))  # auth.test here

    @app.event("message")
    def on_message(event, body):
        with lock:
            got.append((event["text"], body["event_id"]))

    handler = SocketModeHandler(app, app_token)
    recorder = Recorder()
    handler.client.on_message_listeners.append(recorder.frame)
    try:
        connected_at = time.monotonic()
        handler.connect()
        first = say(tidings, "bolt before")
        assert_delivered_over_socket(tidings, first)
        wait_for(lambda: ("bolt before", first) in got, what="the first event in the listener")
        time.sleep(max(0.0, connected_at + SHORT_LIFETIME_SECONDS + 1.0 - time.monotonic()))
        assert recorder.count(("disconnect", "warning")) >= 1, recorder.frames
        assert recorder.count(("hello", None)) >= 2, recorder.frames
        second = say(tidings, "bolt after")
        assert_delivered_over_socket(tidings, second)
        wait_for(lambda: ("bolt after", second) in got, what="the event after the refresh")
    finally:
        handler.close()


def test_an_unacked_envelope_is_redelivered_with_a_new_id_and_reason_timeout(tidings_short_ack_timeout):
    tidings = tidings_short_ack_timeout
    _, app_token = socket_workspace(tidings)
    recorder = Recorder()
    # Ignore the first envelope of each event, ack the next one.
    client = builtin_client(tidings, app_token, recorder, ack=lambda e: len(recorder.for_event(e["payload"]["event_id"])) >= 2)
    try:
        client.connect()
        wait_for(lambda: recorder.count(("hello", None)) >= 1, what="hello")
        event_id = say(tidings, "ack me the second time")
        d = assert_delivered_over_socket(tidings, event_id)
        first, second = recorder.for_event(event_id)[:2]
        assert (first["retry_attempt"], first["retry_reason"]) == (0, "")
        assert (second["retry_attempt"], second["retry_reason"]) == (1, "timeout")
        assert first["envelope_id"] != second["envelope_id"]
        assert second["payload"] == first["payload"]
        assert [a["transport"] for a in d["attempts"]] == ["socket", "socket"]
        assert d["attempts"][0]["reason"] == "timeout", d
        assert len(recorder.for_event(event_id)) == 2, "no further redelivery after the ack"
    finally:
        client.close()


def test_builtin_client_hears_refresh_requested_when_the_server_stops_on_sigterm(tidings):
    """Graceful shutdown (issue 26): SIGTERM sends every Socket Mode connection Slack's
    `disconnect` with `refresh_requested` before closing it, and the server exits 0."""
    import signal

    _, app_token = socket_workspace(tidings)
    recorder = Recorder()
    client = builtin_client(tidings, app_token, recorder)
    try:
        client.connect()
        wait_for(lambda: recorder.count(("hello", None)) >= 1, what="hello")
        tidings.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: recorder.count(("disconnect", "refresh_requested")) >= 1,
                 what="disconnect refresh_requested")
        assert tidings.proc.wait(timeout=15) == 0, tidings.log()
    finally:
        client.close()
