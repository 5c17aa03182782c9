"""`funnel users ...`: the admin commands that create users and issue, list and revoke their API tokens.

A token is printed once, alone on standard output (so scripts can capture it); everything else goes to
standard error. Only its SHA-256 hash is stored (engine.auth).
"""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from engine.errors import FunnelError, NotFound
from engine.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Users and their API tokens (admin commands).")
ACTOR = "cli"


def _engine() -> Engine:
    from engine.db import make_engine, migrate

    settings = get_settings()
    engine = make_engine(settings.database_url, durable=settings.sqlite_durable)
    migrate(engine)
    return engine


def _fail(err: FunnelError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    raise typer.Exit(2)


def _issue(engine: Engine, login: str, label: str | None) -> None:
    from engine import auth
    from engine.clock import utcnow

    issued = auth.issue(engine, login, actor=ACTOR, now=utcnow(), label=label)
    typer.echo(f"token for {login} (key {issued.key}); it is shown only now:", err=True)
    typer.echo(issued.token)


def _join_team(engine: Engine, login: str, team: str, roles: list[str]) -> None:
    """Create the team if needed; a manager becomes its manager (if it has none), others join its rotation."""
    from engine import people

    manages = "manager" in roles
    try:
        current = people.get_team(engine, team)
    except NotFound:
        current = people.create_team(engine, team, title=team.replace("_", " ").title(),
                                     manager=login if manages else None)
        typer.echo(f"created team {team}", err=True)
    if manages and current.manager is None:
        people.update_team(engine, team, manager=login)
        typer.echo(f"{login} manages team {team}", err=True)
    if (set(roles) - {"manager", "process_owner", "admin"} or not manages) and login not in current.members:
        people.add_member(engine, team, login)
        typer.echo(f"{login} joined team {team}", err=True)


@app.command()
def add(
    login: Annotated[str, typer.Argument(help="login, e.g. alice")],
    role: Annotated[list[str], typer.Option("--role", help="rep, manager, service_desk, process_owner, admin "
                                                           "(repeat for several)")],
    team: Annotated[str | None, typer.Option(help="team to join (created if missing; managers manage it)")] = None,
    email: Annotated[str | None, typer.Option(help="e-mail address for escalations")] = None,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    time_zone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
    label: Annotated[str | None, typer.Option(help="what the token is for")] = None,
) -> None:
    """Create the user if missing (with these roles) and print a new API token for them."""
    from engine import people, people_checks

    try:
        people_checks.login(login)  # before an e-mail address is made from it
        engine = _engine()
        try:
            user = people.get_user(engine, login)
            typer.echo(f"user {login} exists (roles: {', '.join(user.roles)}); roles left unchanged", err=True)
        except NotFound:
            people.create_user(engine, login, display_name=name or login, email=email or f"{login}@funnel.invalid",
                               time_zone=time_zone, roles=role)
            typer.echo(f"created user {login} with role(s) {', '.join(role)}", err=True)
        if team:
            _join_team(engine, login, team, list(people.get_user(engine, login).roles))
        _issue(engine, login, label)
    except FunnelError as err:
        _fail(err)


@app.command()
def token(
    login: Annotated[str, typer.Argument(help="an existing user's login")],
    label: Annotated[str | None, typer.Option(help="what the token is for")] = None,
) -> None:
    """Print another API token for an existing, active user."""
    try:
        _issue(_engine(), login, label)
    except FunnelError as err:
        _fail(err)


@app.command()
def tokens(login: Annotated[str, typer.Argument(help="an existing user's login")]) -> None:
    """List a user's tokens (key, label, created, revoked); secrets are never shown again."""
    from engine import auth

    try:
        for t in auth.tokens_of(_engine(), login):
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
            typer.echo(f"{t.key}  {t.created_at:%Y-%m-%d %H:%M}  {state}  {t.label or ''}".rstrip())
    except FunnelError as err:
        _fail(err)


@app.command()
def revoke(key: Annotated[str, typer.Argument(help="the token's key (shown by 'funnel users tokens')")]) -> None:
    """Revoke a token at once: calls with it get 401 from now on."""
    from engine import auth
    from engine.clock import utcnow

    try:
        view = auth.revoke(_engine(), key, now=utcnow())
        typer.echo(f"token {view.key} of {view.login} is revoked")
    except FunnelError as err:
        _fail(err)
