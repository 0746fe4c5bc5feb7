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
    record, key = create(name, clock.now())
    click.echo(f"API key '{record.name}' created (prefix {record.prefix}). Store it now: it is not shown again.")
    click.echo(key)


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
def demo_data() -> None:
    """Load demo orders, returns, agents and an API key (idempotent: skips what exists)."""
    from .demo import load_demo_data
    for line in load_demo_data(clock.now()):
        click.echo(line)


@rma.command("settings")
def show_settings() -> None:
    """Print the configuration table (Markdown), as in the README."""
    from .config import SETTINGS
    click.echo("| variable | default | meaning |\n| --- | --- | --- |")
    for s in SETTINGS:
        default = ", ".join(s.default) if isinstance(s.default, list) else s.default
        if s.name == "DATABASE_URL":
            default = "sqlite:///instance/rma.sqlite3"
        click.echo(f"| `RMA_{s.name}` | {'`' + str(default) + '`' if default not in (None, '') else '—'} | {s.doc} |")


def register_cli(app: Flask) -> None:
    app.cli.add_command(rma)
