"""Schemathesis hooks for the operator API run (scripts/schemathesis).

Two things the OpenAPI document cannot say, so the generated data stays meaningful and the
test traffic stays on this machine:

- `cursor` (format `cursor`) is opaque and made by the server: the base64url (no padding)
  of `v1:` and the last key of the previous page. Random strings are not cursors, so valid
  ones are generated (keys of digits, which every list accepts, the delivery log too).
- A Request URL is verified by POSTing to it. Every URL a case would send is rewritten to
  a closed loopback port, so the server never resolves or contacts a host a fuzzer made
  up (the run also happens in a network namespace with loopback only, when it can).
"""

import base64

import schemathesis
from hypothesis import strategies as st

# Port 9 (discard) on loopback: nothing listens there, so verification fails at once (and
# without `delivery.allow_private_targets` the SSRF policy refuses it before connecting).
LOOPBACK_URL = "http://127.0.0.1:9/slack/events"


def _cursor(key: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{key}".encode()).decode().rstrip("=")


schemathesis.openapi.format(
    "cursor",
    st.integers(min_value=0, max_value=2**62).map(lambda n: _cursor(str(n))),
)


def _confine(value):
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return LOOPBACK_URL
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if isinstance(body, dict) and "request_url" in body:
        body["request_url"] = _confine(body["request_url"])
