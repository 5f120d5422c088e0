"""auth.test through the official slack_sdk clients, and Bolt's startup, which depends on it
(SLACK-WIRE.md §3.2, §3.5)."""

import asyncio
import json
import time

import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.error import BoltError
from slack_bolt.middleware.authorization import SingleTeamAuthorization
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

BOT_SCOPES = ["channels:history", "chat:write"]
USER_SCOPES = ["stars:read", "reactions:read"]


def scopes_header(response):
    return [s for s in response.headers["x-oauth-scopes"].split(",") if s]


def test_a_bot_token_is_described_with_its_bot_user_bot_id_app_and_scopes(tidings):
    ws = tidings.make_workspace(bot_scopes=BOT_SCOPES)
    res = WebClient(token=ws.bot_token, base_url=tidings.api_url).auth_test()
    assert res.status_code == 200
    assert res["ok"] is True
    assert res["team_id"] == ws.team_id
    assert res["user_id"] == ws.bot_user_id
    assert res["bot_id"] == ws.bot_id
    assert res["app_id"] == ws.app_id
    assert res["is_enterprise_install"] is False
    assert res["url"] and res["team"] and res["user"]
    assert scopes_header(res) == BOT_SCOPES


def test_a_user_token_is_described_as_its_installer_without_a_bot_id(tidings):
    ws = tidings.make_workspace(bot_scopes=BOT_SCOPES, user_scopes=USER_SCOPES)
    res = WebClient(token=ws.user_token, base_url=tidings.api_url).auth_test()
    assert res["ok"] is True
    assert res["team_id"] == ws.team_id
    assert res["user_id"] == ws.user_id
    assert "bot_id" not in res.data
    assert scopes_header(res) == USER_SCOPES


def test_an_unknown_bot_token_raises_invalid_auth_with_http_200(tidings):
    with pytest.raises(SlackApiError) as e:
        WebClient(token="xoxb-not-a-real-token", base_url=tidings.api_url).auth_test()
    assert e.value.response["ok"] is False
    assert e.value.response["error"] == "invalid_auth"
    assert e.value.response.status_code == 200


def test_a_call_without_a_token_raises_not_authed(tidings):
    with pytest.raises(SlackApiError) as e:
        WebClient(base_url=tidings.api_url).auth_test()
    assert e.value.response["error"] == "not_authed"


def test_tokens_of_an_uninstalled_app_raise_token_revoked(tidings):
    ws = tidings.make_workspace(bot_scopes=BOT_SCOPES, user_scopes=USER_SCOPES)
    client = WebClient(base_url=tidings.api_url)
    assert client.auth_test(token=ws.bot_token)["ok"] is True
    tidings.admin("DELETE", f"/apps/{ws.app_id}/installations/{ws.installation_id}", expect=200)
    for token in (ws.bot_token, ws.user_token):
        with pytest.raises(SlackApiError) as e:
            client.auth_test(token=token)
        assert e.value.response["error"] == "token_revoked"


def test_the_async_client_describes_a_bot_token_and_raises_invalid_auth(tidings):
    ws = tidings.make_workspace(bot_scopes=BOT_SCOPES)

    async def go():
        ok = await AsyncWebClient(token=ws.bot_token, base_url=tidings.api_url).auth_test()
        try:
            await AsyncWebClient(token="xoxb-nope", base_url=tidings.api_url).auth_test()
        except SlackApiError as e:
            return ok, e.response["error"]
        return ok, None

    res, error = asyncio.run(go())
    assert res["ok"] is True
    assert res["user_id"] == ws.bot_user_id
    assert res["bot_id"] == ws.bot_id
    assert scopes_header(res) == BOT_SCOPES
    assert error == "invalid_auth"


def test_a_bolt_app_starts_and_keeps_the_bot_identity_from_auth_test(tidings):
    ws = tidings.make_workspace(bot_events=["app_mention"], bot_scopes=["app_mentions:read", "chat:write"])
    # Bolt calls auth.test in its constructor and raises BoltError if it fails.
    app = App(client=WebClient(token=ws.bot_token, base_url=tidings.api_url), signing_secret=ws.signing_secret)
    [authorization] = [m for m in app._middleware_list if isinstance(m, SingleTeamAuthorization)]
    assert authorization.auth_test_result["user_id"] == ws.bot_user_id
    assert app.client.auth_test()["user_id"] == ws.bot_user_id

    # A signed event reaches a listener with the identity (and x-oauth-scopes) Bolt took from Tidings.
    seen = {}

    @app.event("app_mention")
    def on_mention(context):
        seen.update(bot_user_id=context.bot_user_id, bot_id=context.bot_id, team_id=context.team_id,
                    bot_scopes=context.authorize_result.bot_scopes)

    body = json.dumps({
        "type": "event_callback", "team_id": ws.team_id, "api_app_id": ws.app_id, "event_id": "Ev0COMPAT",
        "event_time": int(time.time()),
        "event": {"type": "app_mention", "user": ws.user_id, "text": f"<@{ws.bot_user_id}> hi",
                  "channel": "C0COMPAT", "ts": "1700000000.000100"},
        "authorizations": [{"enterprise_id": None, "team_id": ws.team_id, "user_id": ws.bot_user_id,
                            "is_bot": True, "is_enterprise_install": False}],
    })
    ts = str(int(time.time()))
    signature = SignatureVerifier(ws.signing_secret).generate_signature(timestamp=ts, body=body)
    res = app.dispatch(BoltRequest(body=body, headers={
        "content-type": "application/json", "x-slack-request-timestamp": ts, "x-slack-signature": signature,
    }))
    assert res.status == 200, res.body
    assert seen == {"bot_user_id": ws.bot_user_id, "bot_id": ws.bot_id, "team_id": ws.team_id,
                    "bot_scopes": ["app_mentions:read", "chat:write"]}


def test_a_bolt_app_refuses_to_start_with_a_revoked_token(tidings):
    ws = tidings.make_workspace(bot_scopes=BOT_SCOPES)
    tidings.admin("DELETE", f"/apps/{ws.app_id}/installations/{ws.installation_id}", expect=200)
    with pytest.raises(BoltError) as e:
        App(client=WebClient(token=ws.bot_token, base_url=tidings.api_url), signing_secret=ws.signing_secret)
    assert "token_revoked" in str(e.value)
