"""The shop's API keys from the command line: made with a name, listed without the key,
revoked by the prefix printed when they were made."""
from __future__ import annotations

from rma_service.models import ApiKey
from tests.conftest import count


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=["rma", *args])


def test_a_revoked_key_is_refused_at_once_here(app, client):
    made = _cli(app, "create-api-key", "shop backend")
    assert made.exit_code == 0, made.output
    key = made.output.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/api/v1/returns", headers=auth).status_code == 200

    listed = _cli(app, "list-api-keys")
    assert listed.exit_code == 0 and key[:10] in listed.output and "shop backend" in listed.output
    assert "active" in listed.output and key not in listed.output

    revoked = _cli(app, "revoke-api-key", key[:10])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.output and "within 60 s" in revoked.output
    resp = client.get("/api/v1/returns", headers=auth)
    assert resp.status_code == 401 and resp.get_json()["code"] == "unauthorized"
    assert "revoked" in _cli(app, "list-api-keys").output
    # Revoking again says so and changes nothing.
    assert _cli(app, "revoke-api-key", key).exit_code == 0


def test_unknown_short_or_blank_is_refused_and_nothing_changes(app):
    for args, message in ((("revoke-api-key", "rma_nothere"), "No API key matches"),
                          (("revoke-api-key", "rma_"), "prefix (10 characters"),
                          (("create-api-key", "   "), "Name the key")):
        result = _cli(app, *args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert count(app, ApiKey) == 0
