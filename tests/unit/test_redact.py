"""What goes to the logs about people and endpoints (rma_service/redact.py)."""
from __future__ import annotations

import pytest

from rma_service.redact import for_log


@pytest.mark.parametrize("text, shown", [
    ("550 5.1.1 <ada.lovelace+returns@example.com>: Recipient address rejected",
     "550 5.1.1 <***@example.com>: Recipient address rejected"),
    ("https://hooks.shop.test/rma?token=abc123&x=1", "https://hooks.shop.test/rma?***"),
    ("https://user:pa55@hooks.shop.test/rma", "https://***@hooks.shop.test/rma"),
    ("Max retries exceeded with url: /hook?token=abc123 (Caused by NewConnectionError)",
     "Max retries exceeded with url: /hook?*** (Caused by NewConnectionError)"),
    ("HTTP 503 at 2026-12-01T10:00:00Z, attempt 3/8", "HTTP 503 at 2026-12-01T10:00:00Z, attempt 3/8"),
    ("https://hooks.shop.test/rma", "https://hooks.shop.test/rma"),
])
def test_addresses_and_url_secrets_are_masked(text, shown):
    assert for_log(text) == shown


def test_any_object_is_turned_into_text():
    assert for_log(ConnectionRefusedError(111, "refused by bob@shop.test")) == "[Errno 111] refused by ***@shop.test"
