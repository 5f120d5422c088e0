"""A Bolt app that distributes itself through OAuth, pointed at Tidings only by its documented
options (issue 21's proof, driven by ui-tests/oauth_install.test.js in headless Chromium).

- `OAuthSettings(authorization_url=<tidings>/oauth/v2/authorize)`, a FileInstallationStore;
- the App's `client` has `base_url=<tidings>/api/` (oauth.v2.access, auth.test), and the
  installation store is also given to `App(...)` so Bolt's token rotation uses that client
  (OAUTH-RTM-WIRE.md A6);
- served with wsgiref on 127.0.0.1 (port 0: the port is printed).

It prints one JSON line per thing it saw: `listening`, each event type reaching its
middleware, and what its message handler's `client.auth_test()` answered.
"""

import hashlib
import json
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore


def say(**kw):
    print(json.dumps(kw), flush=True)


def digest(token):
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


handler = None


def wsgi(environ, start_response):
    return handler(environ, start_response)


server = make_server("127.0.0.1", 0, wsgi, handler_class=Quiet)
port = server.server_port
tidings = os.environ["TIDINGS_URL"]
store_dir = os.environ["INSTALL_DIR"]
installation_store = FileInstallationStore(base_dir=os.path.join(store_dir, "installations"))

app = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=WebClient(base_url=f"{tidings}/api/"),
    installation_store=installation_store,
    oauth_settings=OAuthSettings(
        client_id=os.environ["SLACK_CLIENT_ID"],
        client_secret=os.environ["SLACK_CLIENT_SECRET"],
        scopes=["channels:history", "chat:write"],
        redirect_uri=f"http://localhost:{port}/slack/oauth_redirect",
        authorization_url=f"{tidings}/oauth/v2/authorize",
        installation_store=installation_store,
        state_store=FileOAuthStateStore(
            expiration_seconds=600, base_dir=os.path.join(store_dir, "states")
        ),
    ),
)


@app.middleware
def seen(body, next):
    event = body.get("event") or {}
    if event.get("type"):
        say(kind="event", type=event["type"], team_id=body.get("team_id"))
    next()


@app.event("message")
def on_message(event, client):
    r = client.auth_test()
    say(kind="message", text=event.get("text"), ok=r["ok"], bot_id=r.get("bot_id"),
        user_id=r.get("user_id"), token=digest(client.token))


app.enable_token_revocation_listeners()

handler = SlackRequestHandler(app)
say(kind="listening", port=port)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
