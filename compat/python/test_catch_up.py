"""The catch-up feed through slack_sdk: `WebClient.api_call("tidings.events.list", …)` with an
app-level token carrying `events:read`, walking pages by `response_metadata.next_cursor`."""

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


def test_slack_sdk_walks_the_feed_oldest_first(tidings):
    tidings.workspace(bot_events=["message.channels"], bot_scopes=["channels:history"], channel="C01", app="A01")
    ids = [tidings.publish("T01", {"type": "message", "channel": "C01", "user": "U01", "text": f"m{i}"}) for i in range(5)]
    _, tok = tidings.admin("POST", "/apps/A01/tokens", {"scopes": ["events:read"]}, expect=201)
    client = WebClient(token=tok["token"], base_url=tidings.api_url)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "oldest": 0}
        if cursor:
            params["cursor"] = cursor
        page = client.api_call("tidings.events.list", params=params)
        assert page["ok"] is True
        for e in page["events"]:
            assert e["envelope"]["type"] == "event_callback"
            assert set(e["delivery"]) == {"id", "status"}
            seen.append(e["envelope"]["event_id"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids


def test_slack_sdk_sees_invalid_cursor_as_an_api_error(tidings):
    tidings.workspace(bot_events=["message.channels"], bot_scopes=["channels:history"], channel="C01", app="A01")
    _, tok = tidings.admin("POST", "/apps/A01/tokens", {"scopes": ["events:read"]}, expect=201)
    client = WebClient(token=tok["token"], base_url=tidings.api_url)
    try:
        client.api_call("tidings.events.list", params={"cursor": "bm90LW1pbmU="})
        raise AssertionError("expected invalid_cursor")
    except SlackApiError as e:
        assert e.response["error"] == "invalid_cursor"
