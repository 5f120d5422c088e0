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
