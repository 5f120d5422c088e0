"""apps.event.authorizations.list through slack_sdk's pagination iterator."""

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
import pytest

USERS = 300


def test_the_iterator_walks_every_page_of_more_than_250_authorizations(tidings):
    users = [f"U{i:05d}" for i in range(USERS)]
    tidings.admin("POST", "/teams", {"id": "T01", "name": "Acme", "domain": "acme"}, expect=201)
    for u in users:
        tidings.admin("POST", "/teams/T01/users", {"id": u, "name": u.lower()}, expect=201)
    tidings.admin("POST", "/apps", {"id": "A01", "name": "A", "bot_events": ["message.channels"], "user_events": ["message.channels"]}, expect=201)
    bot = None
    for i, u in enumerate(users):
        _, inst = tidings.admin(
            "POST", "/apps/A01/installations",
            {"team_id": "T01", "installer_user_id": u, "bot_scopes": ["channels:history"] if i == 0 else [], "user_scopes": ["channels:history"]},
            expect=201,
        )
        bot = bot or inst.get("bot_user_id")
    tidings.admin("PUT", "/teams/T01/conversations/C01", {"name": "all", "kind": "public", "members": users + [bot]}, expect=201)
    event_id = tidings.publish("T01", {"type": "message", "channel": "C01", "user": users[0], "text": "hi"})
    _, ev = tidings.admin("GET", f"/events/{event_id}")
    event_context = ev["deliveries"][0]["envelope"]["event_context"]
    _, tok = tidings.admin("POST", "/apps/A01/tokens", {"scopes": ["authorizations:read"]}, expect=201)

    client = WebClient(token=tok["token"], base_url=tidings.api_url)
    pages = 0
    seen = []
    for page in client.apps_event_authorizations_list(event_context=event_context, limit=100):
        pages += 1
        seen.extend(page["authorizations"])
    assert pages == 4
    assert len(seen) == USERS + 1
    assert seen[0]["is_bot"] is True and seen[0]["user_id"] == bot
    assert len({a["user_id"] for a in seen}) == USERS + 1
    assert set(seen[0]) == {"enterprise_id", "team_id", "user_id", "is_bot", "is_enterprise_install"}


def test_a_forged_event_context_is_refused(tidings):
    tidings.workspace(bot_scopes=["chat:write"])
    _, tok = tidings.admin("POST", "/apps/A01/tokens", {"scopes": ["authorizations:read"]}, expect=201)
    with pytest.raises(SlackApiError) as e:
        WebClient(token=tok["token"], base_url=tidings.api_url).apps_event_authorizations_list(event_context="4-eyJldCI6Im1lc3NhZ2UifQ")
    assert e.value.response["error"] == "invalid_event_context"
