"""The official slack_sdk clients (and Bolt's startup) against Tidings' Web API."""

import asyncio

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient


def test_auth_test_describes_a_bot_token_with_its_scopes(tidings):
    app, inst = tidings.workspace(bot_scopes=["channels:history", "chat:write"])
    res = WebClient(token=inst["bot_token"], base_url=tidings.api_url).auth_test()
    assert res["ok"] is True
    assert res["team_id"] == "T01"
    assert res["user_id"] == inst["bot_user_id"]
    assert res["bot_id"] == inst["bot_id"]
    assert res["app_id"] == app["id"]
    assert res.headers["x-oauth-scopes"] == "channels:history,chat:write"


def test_auth_test_describes_a_user_token(tidings):
    _, inst = tidings.workspace(user_scopes=["stars:read"])
    res = WebClient(token=inst["user_token"], base_url=tidings.api_url).auth_test()
    assert res["user_id"] == "U01"
    assert "bot_id" not in res.data


def test_an_unknown_token_raises_invalid_auth(tidings):
    with pytest.raises(SlackApiError) as e:
        WebClient(token="xoxb-not-a-real-token", base_url=tidings.api_url).auth_test()
    assert e.value.response["error"] == "invalid_auth"
    assert e.value.response.status_code == 200


def test_no_token_raises_not_authed(tidings):
    with pytest.raises(SlackApiError) as e:
        WebClient(base_url=tidings.api_url).auth_test()
    assert e.value.response["error"] == "not_authed"


def test_an_uninstalled_token_raises_token_revoked(tidings):
    _, inst = tidings.workspace(bot_scopes=["chat:write"])
    tidings.admin("DELETE", f"/apps/A01/installations/{inst['id']}", expect=200)
    with pytest.raises(SlackApiError) as e:
        WebClient(token=inst["bot_token"], base_url=tidings.api_url).auth_test()
    assert e.value.response["error"] == "token_revoked"


def test_the_async_client_works_too(tidings):
    _, inst = tidings.workspace(bot_scopes=["chat:write"])

    async def go():
        return await AsyncWebClient(token=inst["bot_token"], base_url=tidings.api_url).auth_test()

    res = asyncio.run(go())
    assert res["user_id"] == inst["bot_user_id"]


def test_a_bolt_app_starts_against_tidings(tidings):
    from slack_bolt import App

    _, inst = tidings.workspace(bot_scopes=["chat:write"])
    app = App(client=WebClient(token=inst["bot_token"], base_url=tidings.api_url), signing_secret="unused")
    # Bolt calls auth.test in its constructor and keeps the bot identity.
    assert app._token == inst["bot_token"] or app.client.token == inst["bot_token"]
    assert app.client.auth_test()["user_id"] == inst["bot_user_id"]
