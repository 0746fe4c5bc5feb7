"""Fixtures of the admin view's tests: an admin agent, and a client signed in as them."""
from __future__ import annotations

import pytest

from tests.e2e.admin_support import login, make_agent


@pytest.fixture
def admin(app):
    make_agent(app)
    return "alex@example.com"


@pytest.fixture
def signed_in(client, admin, order):
    resp = login(client)
    assert resp.status_code == 302
    return client
