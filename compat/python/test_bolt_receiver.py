"""A real slack_bolt app as the Request URL: it verifies signatures (on by default),
answers url_verification, receives events, sees retry numbers, and — with no listener —
answers 404, which Tidings retries like Slack does."""

import threading
import time

from slack_bolt import App, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from conftest import free_port


def start_bolt(tidings, signing_secret, inst, setup):
    def authorize(enterprise_id, team_id, user_id):
        return AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=inst["bot_token"],
            bot_id=inst["bot_id"], bot_user_id=inst["bot_user_id"],
        )

    app = App(signing_secret=signing_secret, authorize=authorize, client=WebClient(base_url=tidings.api_url))
    setup(app)
    port = free_port()
    threading.Thread(target=lambda: app.start(port=port), daemon=True).start()
    url = f"http://127.0.0.1:{port}/slack/events"
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            import urllib.request
            urllib.request.urlopen(url.replace("/slack/events", "/"), timeout=1)
        except Exception as e:  # any HTTP answer means the server is up
            if "refused" not in str(e):
                break
        time.sleep(0.05)
    return url


def prepare(tidings):
    """The app without a URL first: Bolt needs its signing secret before it can answer."""
    app, inst = tidings.workspace(bot_events=["message.channels"], bot_scopes=["channels:history"], channel="C01")
    return app, inst


def test_bolt_passes_verification_and_receives_signed_events(tidings):
    app, inst = prepare(tidings)
    got = []

    def setup(bolt):
        @bolt.event("message")
        def on_message(event, body):
            got.append((event, body))

    url = start_bolt(tidings, app["signing_secret"], inst, setup)
    status, patched = tidings.admin("PATCH", "/apps/A01", {"request_url": url})
    assert status == 200, patched
    assert patched["request_url_verified"] is True
    event_id = tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": "hello bolt"})
    tidings.wait_delivery(event_id, "delivered")
    deadline = time.time() + 10
    while not got and time.time() < deadline:
        time.sleep(0.05)
    event, body = got[0]
    assert event["text"] == "hello bolt"
    assert body["event_id"] == event_id
    assert body["authorizations"][0]["user_id"] == inst["bot_user_id"]


def test_a_wrong_signing_secret_fails_verification(tidings):
    app, inst = prepare(tidings)
    url = start_bolt(tidings, "not-the-secret", inst, lambda bolt: None)
    status, problem = tidings.admin("PATCH", "/apps/A01", {"request_url": url})
    assert status == 422
    assert "401" in problem["detail"]


def test_bolt_sees_the_retry_number_after_a_failed_first_attempt(tidings):
    app, inst = prepare(tidings)
    retries = []

    def setup(bolt):
        @bolt.middleware
        def fail_first_attempt(req, resp, next):
            if req.body.get("type") == "event_callback" and not req.headers.get("x-slack-retry-num"):
                return BoltResponse(status=500, body="try again")
            return next()

        @bolt.event("message")
        def on_message(req):
            retries.append((req.headers.get("x-slack-retry-num"), req.headers.get("x-slack-retry-reason")))

    url = start_bolt(tidings, app["signing_secret"], inst, setup)
    tidings.admin("PATCH", "/apps/A01", {"request_url": url}, expect=200)
    event_id = tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": "again"})
    d = tidings.wait_delivery(event_id, "delivered")
    assert [a["status_code"] for a in d["attempts"]] == [500, 200]
    deadline = time.time() + 10
    while not retries and time.time() < deadline:
        time.sleep(0.05)
    assert retries[0] == (["1"], ["http_error"])


def test_a_bolt_app_without_a_listener_answers_404_and_is_retried(tidings):
    app, inst = prepare(tidings)
    url = start_bolt(tidings, app["signing_secret"], inst, lambda bolt: None)
    tidings.admin("PATCH", "/apps/A01", {"request_url": url}, expect=200)
    event_id = tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": "nobody listens"})
    d = tidings.wait_delivery(event_id, "failed")
    assert [a["status_code"] for a in d["attempts"]] == [404, 404, 404, 404]
    assert [a["retry_num"] for a in d["attempts"]] == [0, 1, 2, 3]
