"""Fixtures: a real `tidings serve` on 127.0.0.1 (ephemeral port, fresh data dir), and
helpers to build a workspace through the operator API. The binary comes from TIDINGS_BIN."""

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

ADMIN = "tdk_admin_compat_token_0123456789"

# slack_sdk honours proxy variables; every target here is loopback.
for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


class Tidings:
    def __init__(self, proc, url, log):
        self.proc = proc
        self.url = url
        self.api_url = url + "/api/"
        self._log = log

    def admin(self, method, path, body=None, expect=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/admin/v1" + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + ADMIN)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                status, text = res.status, res.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        value = json.loads(text) if text else None
        if expect is not None:
            assert status == expect, f"{method} {path} → {status}: {text}"
        return status, value

    def workspace(self, team="T01", users=("U01",), bot_events=(), user_events=(), bot_scopes=(), user_scopes=(), request_url=None, app="A01", channel=None):
        """Team, users, app, an installation by the first user, and optionally a channel
        with every user and the bot in it."""
        if self.admin("GET", f"/teams/{team}")[0] == 404:
            self.admin("POST", "/teams", {"id": team, "name": "Acme", "domain": team.lower()}, expect=201)
            for u in users:
                self.admin("POST", f"/teams/{team}/users", {"id": u, "name": u.lower()}, expect=201)
        body = {"id": app, "name": "Compat " + app, "bot_events": list(bot_events), "user_events": list(user_events)}
        if request_url:
            body["request_url"] = request_url
        _, app_obj = self.admin("POST", "/apps", body, expect=201)
        _, inst = self.admin(
            "POST",
            f"/apps/{app}/installations",
            {"team_id": team, "installer_user_id": users[0], "bot_scopes": list(bot_scopes), "user_scopes": list(user_scopes)},
            expect=201,
        )
        if channel:
            members = list(users) + ([inst["bot_user_id"]] if inst.get("bot_user_id") else [])
            self.admin("PUT", f"/teams/{team}/conversations/{channel}", {"name": "general", "kind": "public", "members": members}, expect=201)
        return app_obj, inst

    def publish(self, team, event, **extra):
        _, r = self.admin("POST", "/events", {"team_id": team, "event": event, **extra}, expect=202)
        return r["event_id"]

    def wait_delivery(self, event_id, status, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, ev = self.admin("GET", f"/events/{event_id}")
            d = ev["deliveries"][0]
            if d["status"] == status:
                return d
            time.sleep(0.05)
        raise AssertionError(f"delivery of {event_id} never became {status}: {d}")

    def log(self):
        return self._log()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tidings(tmp_path):
    binary = os.environ.get("TIDINGS_BIN")
    if not binary or not os.path.exists(binary):
        pytest.fail(f"TIDINGS_BIN must point at a built tidings binary (got {binary!r})")
    env = dict(os.environ)
    env.update({
        "TIDINGS_ADMIN_TOKEN": ADMIN,
        "TIDINGS_DELIVERY_ALLOW_PRIVATE_TARGETS": "true",
        "TIDINGS_DELIVERY_RETRY_SCHEDULE": '["0s","300ms","600ms"]',
        "TIDINGS_LOG": "warn",
    })
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    stderr_lines = []
    threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True).start()
    url = None
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("tidings listening on "):
            url = line.split()[-1]
            break
    if url is None:
        proc.kill()
        pytest.fail("tidings did not start: " + "".join(stderr_lines))
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    t = Tidings(proc, url, lambda: "".join(stderr_lines))
    yield t
    proc.kill()
    proc.wait()
