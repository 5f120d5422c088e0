"""An app set to Standard Webhooks: the official `standardwebhooks` package verifies every
request Tidings sends it (the url_verification, first attempts, retries), with the secret
from the create answer, and — across a rotation — with the old and the new secret alike."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


class Receiver:
    """A Request URL that verifies each request with every secret it holds (all must pass)
    and answers 401 when one fails; with `fail_first` it fails each event's first attempt
    with a 500, so every event is also retried."""

    def __init__(self, secrets):
        self.secrets = list(secrets)
        self.hits = []  # (event_id or None, webhook-id, {secret: verified})
        self.fail_first = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                results = {}
                for s in receiver.secrets:
                    try:
                        Webhook(s).verify(body, headers)
                        results[s] = True
                    except WebhookVerificationError:
                        results[s] = False
                doc = json.loads(body)
                event_id = doc.get("event_id")
                with receiver.lock:
                    first = event_id is not None and all(h[0] != event_id for h in receiver.hits)
                    receiver.hits.append((event_id, headers.get("webhook-id"), results))
                status, out = 200, b""
                if not all(results.values()):
                    status = 401
                elif doc.get("type") == "url_verification":
                    out = doc["challenge"].encode()
                elif first and receiver.fail_first:
                    status = 500
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def hits_for(self, event_id):
        with self.lock:
            return [h for h in self.hits if h[0] == event_id]


def standard_app(tidings):
    tidings.workspace(bot_events=["message.channels"], bot_scopes=["channels:history"], channel="C01", app="A01")
    _, app = tidings.admin("PATCH", "/apps/A01", {"signing_scheme": "standard_webhooks"}, expect=200)
    return app


def publish(tidings, text):
    return tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": text})


def test_standardwebhooks_verifies_every_delivery_across_a_rotation(tidings):
    app = standard_app(tidings)
    old = app["webhook_secret"]
    assert old.startswith("whsec_") and app["webhook_public_key"].startswith("whpk_")
    assert app["signing_scheme"] == "standard_webhooks"
    rx = Receiver([old])
    _, patched = tidings.admin("PATCH", "/apps/A01", {"request_url": rx.url}, expect=200)
    assert patched["request_url_verified"] is True  # the url_verification verified too

    before = publish(tidings, "before")
    tidings.wait_delivery(before, "delivered")

    _, rotated = tidings.admin("POST", "/apps/A01/webhook_secret/rotate", expect=200)
    new = rotated["webhook_secret"]
    assert new != old and rotated["webhook_previous_until"] > time.time()
    # During the grace period a receiver with either secret verifies every delivery.
    rx.secrets = [old, new]
    rx.fail_first = True
    during = publish(tidings, "during")
    tidings.wait_delivery(during, "delivered")

    assert rx.hits_for(before) and all(all(h[2].values()) for h in rx.hits_for(before))
    hits = rx.hits_for(during)
    assert len(hits) == 2  # the first attempt (500) and its retry
    assert all(h[2] == {old: True, new: True} for h in hits), hits
    # webhook-id is the same on every attempt of one delivery, and differs between deliveries.
    assert len({h[1] for h in hits}) == 1
    assert hits[0][1] != rx.hits_for(before)[0][1]


def test_a_retry_keeps_its_webhook_id_and_verifies(tidings):
    app = standard_app(tidings)
    rx = Receiver([app["webhook_secret"]])
    tidings.admin("PATCH", "/apps/A01", {"request_url": rx.url}, expect=200)
    # The first attempt answers 500; the retry must verify and carry the same id.
    rx.fail_first = True
    event_id = publish(tidings, "retry me")
    d = tidings.wait_delivery(event_id, "delivered")
    hits = rx.hits_for(event_id)
    assert len(hits) == 2 and all(all(h[2].values()) for h in hits)
    assert len({h[1] for h in hits}) == 1
    assert hits[0][1] == d["id"]
