"""``flask rma demo-data``: a newcomer's first look at the service is a populated one, and
it reads like real traffic (the API's lists newest first)."""
from __future__ import annotations

from rma_service import clock
from rma_service.demo import load_demo_data
from rma_service.models import Return
from tests.conftest import NOW, count


def test_demo_returns_list_newest_first(app, client):
    with app.app_context(), clock.frozen(NOW):
        lines = list(load_demo_data(NOW))
    key = next(line.split(": ", 1)[1] for line in lines if line.startswith("API key"))
    seen, cursor = [], None
    while True:
        resp = client.get("/api/v1/returns", query_string={"limit": 7, **({"cursor": cursor} if cursor else {})},
                          headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 200
        page = resp.get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == count(app, Return) >= 10
    created = [r["created_at"] for r in seen]
    assert created == sorted(created, reverse=True)
    assert len({r["status"] for r in seen}) >= 4  # requested/authorized, received, triaged, refunded/closed
    with app.app_context(), clock.frozen(NOW):
        assert list(load_demo_data(NOW)) == ["Demo data is already loaded."]
