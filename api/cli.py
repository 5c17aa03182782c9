"""The `funnel` command: serve, validate, migrate, demo. Calls the same engine as the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli_users import app as users_app
from engine.errors import FunnelError
from engine.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Sales-funnel workflow engine.")
app.add_typer(users_app, name="users")  # users and API tokens (api/cli_users.py)


def _fail(err: FunnelError) -> None:
    typer.echo(f"error: {err.message}", err=True)
    raise typer.Exit(2)


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="files or folders of .bpmn/.dmn")]) -> None:
    """Lint workflow files: 'ok' or each problem with file, line and element. Exit 1 on problems."""
    from engine import lint

    verdicts = lint.lint_paths(paths)
    typer.echo(lint.format_verdicts(verdicts))
    raise typer.Exit(0 if all(v.ok for v in verdicts) else 1)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from engine.db import make_engine
    from engine.db import migrate as run

    settings = get_settings()
    run(make_engine(settings.database_url, durable=settings.sqlite_durable))
    typer.echo(f"database at {settings.database_url} is up to date")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    demo: Annotated[bool, typer.Option(help="seed the demo data set if the database is empty")] = False,
    ticker: Annotated[bool, typer.Option(help="also run the ticker (timers, escalations, e-mail)")] = True,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="worker processes (default FUNNEL_WORKERS, 1)")
                       ] = None,
) -> None:
    """Run the HTTP service on the configured database with the shipped workflows loaded."""
    from api import serving
    from engine import demo as demo_data
    from engine.bootstrap import open_funnel

    settings = get_settings()
    try:
        funnel = open_funnel(settings)
        seeded = demo_data.seed(funnel) if demo else 0
    except FunnelError as err:
        _fail(err)
        return
    bind_host, bind_port = host or settings.host, port or settings.port
    typer.echo(f"database: {settings.database_url}")
    typer.echo(f"workflows: {', '.join(funnel.definitions.names())} (from {settings.workflows_dir})")
    if seeded:
        from engine import auth

        token = auth.issue(funnel.engine, "admin", actor="demo", now=funnel.clock(), label="demo").token
        typer.echo(f"demo data: {seeded} opportunities created; roster, customers and teams seeded")
        typer.echo(f"demo admin token (shown once): {token}")
        typer.echo(f"  try: curl -H 'Authorization: Bearer {token}' http://{host or settings.host}:"
                   f"{port or settings.port}/api/instances")
    processes = workers or settings.workers
    typer.echo(f"listening on http://{bind_host}:{bind_port}  (API docs: http://{bind_host}:{bind_port}/docs)"
               f"; {processes} worker process(es), {'each with a ticker' if ticker else 'no ticker'}")
    funnel.engine.dispose()  # the workers open their own (api.serving); this one's work is done
    serving.serve(host=bind_host, port=bind_port, workers=processes, ticker=ticker)


@app.command()
def scheduler(
    once: Annotated[bool, typer.Option(help="one pass: fire what is due, send what is pending, exit")] = False,
) -> None:
    """Run the ticker alone (timers, escalations, e-mail) for deployments with several processes."""
    from api import scheduler as background
    from engine.bootstrap import open_funnel

    settings = get_settings()
    try:
        funnel = open_funnel(settings, sync=False)  # fires what the API processes published
    except FunnelError as err:
        _fail(err)
        return
    ticker = background.Ticker(funnel, settings)
    if once:
        typer.echo(ticker.run_once().summary())
        return
    typer.echo(f"scheduler {ticker.worker_id}: tick every {settings.tick_seconds}s on {settings.database_url}")
    background.run_forever(ticker)
    typer.echo("scheduler stopped")


def main() -> None:
    try:
        app()
    except FunnelError as err:  # commands catch their own; this is the backstop (e.g. a bad FUNNEL_* setting)
        typer.echo(f"error: {err.message}", err=True)
        sys.exit(2)
