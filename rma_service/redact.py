"""What the service writes to its logs about people and endpoints: enough to find the row,
not the data. Mail addresses keep only their domain (``***@example.com``); URLs lose their
query string and any user:password (a shop may put a token there). The rows themselves keep
the full values (``mail_messages.last_error``, ``webhook_deliveries.last_error``)."""
from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+=?^_`{|}~-]+@(?=[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# A URL, or the path requests quotes in its errors ("Max retries exceeded with url: /hook?…").
_URL_QUERY = re.compile(r"(https?://[^\s?#'\"<>]*|/[^\s?#'\"<>]*)[?#][^\s'\"<>)]*")
_URL_USERINFO = re.compile(r"(https?://)[^/\s@'\"<>]+@")


def for_log(text: object) -> str:
    """``text`` with mail addresses and URL secrets masked."""
    masked = _URL_USERINFO.sub(r"\1***@", str(text))
    masked = _URL_QUERY.sub(r"\1?***", masked)
    return _EMAIL.sub("***@", masked)
