"""The App Manifest API (issue 23) through the unmodified slack_sdk WebClient: every
apps_manifest_* method and tooling_tokens_rotate, with a configuration token the operator
issued, against the real binary."""

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


def developer(tidings, user="U01"):
    """T01 with `user`, and a configuration token pair for them."""
    if tidings.admin("GET", "/teams/T01")[0] == 404:
        tidings.admin("POST", "/teams", {"id": "T01", "name": "Acme", "domain": "acme"}, expect=201)
    if tidings.admin("GET", f"/users/{user}")[0] == 404:
        tidings.admin("POST", "/teams/T01/users", {"id": user, "name": user.lower()}, expect=201)
    _, pair = tidings.admin("POST", "/config_tokens", {"team_id": "T01", "user_id": user}, expect=201)
    return pair


MANIFEST = {
    "display_information": {"name": "SDK manifest"},
    "features": {
        "bot_user": {"display_name": "sdkbot"},
        "shortcuts": [{"name": "Go", "type": "global", "callback_id": "go", "description": "go"}],
    },
    "oauth_config": {"scopes": {"bot": ["reactions:read"]}},
    "settings": {"socket_mode_enabled": True, "event_subscriptions": {"bot_events": ["reaction_added"]}},
}


def test_the_sdk_creates_exports_updates_and_deletes_an_app(tidings):
    pair = developer(tidings)
    client = WebClient(token=pair["token"], base_url=tidings.api_url)
    assert client.apps_manifest_validate(manifest=MANIFEST)["ok"] is True

    created = client.apps_manifest_create(manifest=MANIFEST)
    app_id = created["app_id"]
    assert set(created["credentials"]) == {"client_id", "client_secret", "verification_token", "signing_secret"}
    assert "/oauth/v2/authorize?" in created["oauth_authorize_url"]

    assert client.apps_manifest_export(app_id=app_id)["manifest"] == MANIFEST

    grown = {**MANIFEST, "oauth_config": {"scopes": {"bot": ["reactions:read", "chat:write"]}}}
    updated = client.apps_manifest_update(app_id=app_id, manifest=grown)
    assert updated["app_id"] == app_id and updated["permissions_updated"] is True
    assert client.apps_manifest_export(app_id=app_id)["manifest"] == grown

    assert client.apps_manifest_delete(app_id=app_id)["ok"] is True
    with pytest.raises(SlackApiError) as e:
        client.apps_manifest_export(app_id=app_id)
    assert e.value.response["error"] == "invalid_app_id"


def test_an_invalid_manifest_comes_back_with_pointers(tidings):
    pair = developer(tidings)
    client = WebClient(token=pair["token"], base_url=tidings.api_url)
    bad = {**MANIFEST, "settings": {"socket_mode_enabled": True, "event_subscriptions": {"bot_events": ["reaction_added"], "colour": 1}}}
    with pytest.raises(SlackApiError) as e:
        client.apps_manifest_validate(manifest=bad)
    assert e.value.response["error"] == "invalid_manifest"
    assert e.value.response["errors"] == [
        {"message": 'unknown property "colour"', "pointer": "/settings/event_subscriptions/colour"}
    ]


def test_tooling_tokens_rotate_gives_a_new_pair_once(tidings):
    pair = developer(tidings)
    client = WebClient(base_url=tidings.api_url)
    fresh = client.tooling_tokens_rotate(refresh_token=pair["refresh_token"])
    assert fresh["token"].startswith("xoxe.xoxp-1-") and fresh["refresh_token"].startswith("xoxe-1-")
    assert (fresh["team_id"], fresh["user_id"]) == ("T01", "U01")
    assert fresh["exp"] > fresh["iat"]
    assert WebClient(token=fresh["token"], base_url=tidings.api_url).apps_manifest_validate(manifest=MANIFEST)["ok"]
    with pytest.raises(SlackApiError) as e:
        client.tooling_tokens_rotate(refresh_token=pair["refresh_token"])
    assert e.value.response["error"] == "invalid_refresh_token"


def test_a_configuration_token_is_refused_on_other_methods_and_other_developers_apps(tidings):
    alice = developer(tidings, "U01")
    bob = developer(tidings, "U02")
    with pytest.raises(SlackApiError) as e:
        WebClient(token=alice["token"], base_url=tidings.api_url).auth_test()
    assert e.value.response["error"] == "not_allowed_token_type"
    app_id = WebClient(token=alice["token"], base_url=tidings.api_url).apps_manifest_create(manifest=MANIFEST)["app_id"]
    with pytest.raises(SlackApiError) as e:
        WebClient(token=bob["token"], base_url=tidings.api_url).apps_manifest_delete(app_id=app_id)
    assert e.value.response["error"] == "invalid_app_id"


def test_a_manifest_app_moves_from_socket_mode_to_a_request_url_with_the_same_bolt_app(tidings):
    """End to end: create with socket_mode_enabled → install (operator API) → Bolt's
    SocketModeHandler receives an event; update to a Request URL → the same Bolt app, now over
    HTTP, receives the next one."""
    import threading
    import time

    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from conftest import free_port

    pair = developer(tidings)
    web = WebClient(token=pair["token"], base_url=tidings.api_url)
    socket_manifest = {
        "display_information": {"name": "Mover"},
        "features": {"bot_user": {"display_name": "mover"}},
        "oauth_config": {"scopes": {"bot": ["channels:history"]}},
        "settings": {"socket_mode_enabled": True, "event_subscriptions": {"bot_events": ["message.channels"]}},
    }
    created = web.apps_manifest_create(manifest=socket_manifest)
    app_id = created["app_id"]
    _, inst = tidings.admin(
        "POST", f"/apps/{app_id}/installations",
        {"team_id": "T01", "installer_user_id": "U01", "bot_scopes": ["channels:history"]}, expect=201,
    )
    tidings.admin(
        "PUT", "/teams/T01/conversations/C01",
        {"name": "general", "kind": "public", "members": ["U01", inst["bot_user_id"]]}, expect=201,
    )
    _, app_token = tidings.admin("POST", f"/apps/{app_id}/tokens", {"scopes": ["connections:write"]}, expect=201)

    got = []
    lock = threading.Lock()
    bolt = App(
        signing_secret=created["credentials"]["signing_secret"],
        client=WebClient(token=inst["bot_token"], base_url=tidings.api_url),
    )

    @bolt.event("message")
    def on_message(event):
        with lock:
            got.append(event["text"])

    def wait_for(text):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if text in got:
                    return
            time.sleep(0.05)
        raise AssertionError(f"Bolt never received {text!r}; got {got}")

    def say(text):
        tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": text})

    handler = SocketModeHandler(bolt, app_token["token"])
    try:
        handler.connect()
        say("over the socket")
        wait_for("over the socket")

        port = free_port()
        threading.Thread(target=lambda: bolt.start(port=port), daemon=True).start()
        url = f"http://127.0.0.1:{port}/slack/events"
        http_manifest = {
            **socket_manifest,
            "settings": {"socket_mode_enabled": False,
                         "event_subscriptions": {"request_url": url, "bot_events": ["message.channels"]}},
        }
        deadline = time.monotonic() + 10
        while True:  # Bolt's HTTP server takes a moment to listen
            try:
                updated = web.apps_manifest_update(app_id=app_id, manifest=http_manifest)
                break
            except SlackApiError as e:
                if time.monotonic() > deadline or e.response["error"] != "invalid_manifest":
                    raise
                time.sleep(0.1)
        assert updated["permissions_updated"] is False
        say("over http")
        wait_for("over http")
    finally:
        handler.close()
