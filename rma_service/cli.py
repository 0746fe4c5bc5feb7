"""``flask --app wsgi rma …`` commands."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from . import clock
from .errors import ApiError

rma = AppGroup("rma", help="RMA service commands.")


@rma.command("create-api-key")
@click.argument("name")
def create_api_key(name: str) -> None:
    """Create an API key for the shop backend; prints the key alone on the last line."""
    from .services.apikeys import create_api_key as create
    try:
        record, key = create(name, clock.now())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"API key '{record.name}' created (prefix {record.prefix}). Store it now: it is not shown again.")
    click.echo(key)


@rma.command("list-api-keys")
def list_api_keys() -> None:
    """The shop's API keys: prefix, name, created, revoked (never the key: only its hash is kept)."""
    from .services.apikeys import list_api_keys as keys
    for record in keys():
        revoked = f"revoked {clock.rfc3339(record.revoked_at)}" if record.revoked_at else "active"
        click.echo(f"{record.prefix}  {record.name}  created {clock.rfc3339(record.created_at)}  {revoked}")


@rma.command("revoke-api-key")
@click.argument("key_or_prefix")
def revoke_api_key(key_or_prefix: str) -> None:
    """Revoke a key (a leaked one, a retired integration), given by its prefix or whole."""
    from .services.apikeys import CACHE_SECONDS, revoke_api_key as revoke
    try:
        record = revoke(key_or_prefix, clock.now())
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"API key '{record.name}' ({record.prefix}) revoked {clock.rfc3339(record.revoked_at)}; "
               f"running workers refuse it within {CACHE_SECONDS:.0f} s.")


@rma.command("create-agent")
@click.argument("email")
@click.option("--name", required=True, help="Display name (customers see a dispute handler's name).")
@click.option("--role", type=click.Choice(["agent", "admin"]), default="agent", show_default=True)
@click.option("--disputes", is_flag=True, help="The agent handles disputes.")
@click.option("--password", envvar="RMA_AGENT_PASSWORD", prompt=True, hide_input=True,
              confirmation_prompt=True, help="Read from RMA_AGENT_PASSWORD or prompted.")
def create_agent(email: str, name: str, role: str, disputes: bool, password: str) -> None:
    """Create a support agent."""
    from .services.agents import create_agent as create
    try:
        agent = create(email, name, role, password, disputes, clock.now())
    except ApiError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"Agent {agent.email} ({agent.role}{', disputes' if agent.handles_disputes else ''}) created.")


@rma.command("demo-data")
@click.option("--force", is_flag=True, help="Load them even when RMA_ENV is production.")
def demo_data(force: bool) -> None:
    """Load demo orders, returns, agents and an API key (idempotent: skips what exists).

    Refused in production without ``--force``: the demo admin's password is in the README."""
    from .demo import load_demo_data
    if current_app.config["RMA"]["ENV"] == "production" and not force:
        raise click.ClickException(
            "RMA_ENV is production: demo data would add an admin agent whose password is public "
            "and fake orders and returns. Nothing was written. Pass --force to load them anyway.")
    for line in load_demo_data(clock.now()):
        click.echo(line)


@rma.command("settings")
def show_settings() -> None:
    """Print the configuration table (Markdown), as in the README."""
    from .config import SETTINGS
    click.echo("| variable | default | meaning |\n| --- | --- | --- |")
    for s in SETTINGS:
        default = ", ".join(map(str, s.default)) if isinstance(s.default, list) else s.default
        if s.name == "DATABASE_URL":
            default = "sqlite:///instance/rma.sqlite3"
        click.echo(f"| `RMA_{s.name}` | {'`' + str(default) + '`' if default not in (None, '') else '—'} | {s.doc} |")


@rma.command("scheduler")
def scheduler() -> None:
    """Run the reminder and delivery jobs on their intervals until SIGTERM/SIGINT.
    Any number of schedulers may run against one database."""
    from .scheduler import run_scheduler
    run_scheduler(current_app._get_current_object())


@rma.command("run-jobs")
@click.option("--once", is_flag=True, help="Run every job once and exit (required; `rma scheduler` runs them forever).")
@click.option("--now", "now_text", metavar="RFC3339",
              help="Run as if it were this moment (replay after downtime, check a schedule).")
@click.option("--job", "names", multiple=True, metavar="NAME", help="Run only this job (repeatable).")
def run_jobs(once: bool, now_text: str | None, names: tuple[str, ...]) -> None:
    """Run the scheduler's jobs once and print what each did (`deliver_webhooks: 3`)."""
    from .jobs import JOBS_BY_NAME, run_once
    if not once:
        raise click.UsageError("pass --once (to run the jobs continuously, use `flask rma scheduler`)")
    unknown = [n for n in names if n not in JOBS_BY_NAME]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}; jobs: {', '.join(JOBS_BY_NAME)}", param_hint="--job")
    try:
        now = clock.parse_rfc3339(now_text) if now_text else clock.now()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None
    failed = False
    for name, outcome in run_once(now, names or None):
        if isinstance(outcome, Exception):
            failed = True
            click.echo(f"{name}: error: {type(outcome).__name__}: {outcome}")
        else:
            click.echo(f"{name}: {outcome}")
    if failed:
        raise SystemExit(1)


def register_cli(app: Flask) -> None:
    app.cli.add_command(rma)
