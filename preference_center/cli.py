"""The `preference-center` command (Flask's CLI with our commands)."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext
from werkzeug.serving import run_simple

from . import actors, config, ledger, logs, staff
from .commands import DomainError, access
from .config import ConfigError
from .extensions import db


def register(app: Flask) -> None:
    """Attach our commands to the app's CLI group."""
    app.cli.add_command(create_user)
    app.cli.add_command(create_token)
    app.cli.add_command(ledger_group)
    app.cli.add_command(run)
    app.cli.add_command(worker)
    app.cli.add_command(beat)
    app.cli.add_command(settings_command)
    from .retention import retention_command

    app.cli.add_command(retention_command)
    app.cli.add_command(sendgrid_group)


@click.command("create-user")
@click.argument("email")
@click.option("--role", type=click.Choice(staff.ROLES), required=True)
@click.option("--password", help="Omit to be prompted (or to get a generated one when not on a terminal).")
@with_appcontext
def create_user(email: str, role: str, password: str | None) -> None:
    """Create a staff user for /admin."""
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password, generated = secrets.token_urlsafe(15), True
    try:
        user = access.create_user(actors.CLI, email, role, password)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"created {role} {user.email}")
    if generated:
        click.echo(f"password (shown once): {password}")


@click.command("create-token")
@click.argument("name")
@click.option("--admin", is_flag=True, help="an admin token: may read every system message, not only its own")
@with_appcontext
def create_token(name: str, admin: bool) -> None:
    """Create an API token and print it once."""
    try:
        _token, plaintext = access.create_token(actors.CLI, name, admin=admin)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(plaintext)


@click.group("ledger")
def ledger_group() -> None:
    """The consent ledger."""


@ledger_group.command("verify")
def ledger_verify() -> None:
    """Check the hash chain; exit 1 and list problems if anything was tampered with."""
    result = ledger.verify()
    if result.ok:
        click.echo(f"ledger OK: {result.checked} events, head {result.head_hash}")
        return
    click.echo(f"ledger BROKEN: {len(result.problems)} problem(s) in {result.checked} events", err=True)
    for problem in result.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(1)


@ledger_group.command("settle")
@with_appcontext
def ledger_settle() -> None:
    """Chain every waiting one-click opt-out into the ledger now (the worker does it every PC_SETTLE_SECONDS)."""
    from . import optouts

    click.echo(f"settled {optouts.settle_all()} one-click opt-out(s)")


@click.command("settings")
@click.option("--write", is_flag=True, help="rewrite the tables in README.md and docs/configuration.md")
def settings_command(write: bool) -> None:
    """Print the configuration table generated from the settings registry (or write it into the docs)."""
    if not write:
        click.echo(config.markdown_table(), nl=False)
        return
    for name in config.DOCUMENTS:
        path = config.PROJECT_ROOT / name
        path.write_text(config.with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        click.echo(f"wrote the settings table into {name}")


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


@click.command("worker")
@click.option("--concurrency", "-c", type=int, default=None)
@click.option("--pool", default=None, help="prefork (default on a server broker), threads or solo")
def worker(concurrency: int | None, pool: str | None) -> None:
    """Start a Celery worker (same settings as the site)."""
    args = ["worker", "--loglevel", current_app.config["PC_LOG_LEVEL"]]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    if pool:
        args += ["--pool", pool]
    os.execv(sys.executable, _celery(*args))


@click.command("beat")
def beat() -> None:
    """Start the Celery scheduler (starts due campaigns, finds lost batches, retention)."""
    os.execv(sys.executable, _celery("beat", "--loglevel", current_app.config["PC_LOG_LEVEL"], "--schedule",
                                     os.path.join(current_app.instance_path, "celerybeat-schedule")))


def base_url_for(host: str, port: int) -> str:
    """The links' base URL when PC_BASE_URL is unset: this server's own address."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


@click.command("run")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int, help="links use this port too unless PC_BASE_URL is set")
@with_appcontext
def run(host: str, port: int) -> None:
    """Start the site, a worker and the scheduler together (the embedded default)."""
    app = current_app._get_current_object()
    overrides = {}
    if not config.is_set("PC_BASE_URL"):
        # Mailed links must point at this server, whichever port it got; the worker builds them too.
        app.config["PC_BASE_URL"] = overrides["PC_BASE_URL"] = base_url_for(host, port)
    logs.configure(app.config)
    level = app.config["PC_LOG_LEVEL"]
    children = [
        subprocess.Popen(_celery("worker", "--beat", "--loglevel", level, "--pool", "threads",
                                 "--concurrency", "4", "--schedule",
                                 os.path.join(current_app.instance_path, "celerybeat-schedule")),
                         env=config.environment(overrides)),
    ]

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.time() + 10
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    base = current_app.config["PC_BASE_URL"]
    click.echo(f"Preference Center on http://{host}:{port}  (links use {base}); outbox at {base}/outbox")
    try:
        # app.run() refuses to block inside the flask CLI; serve directly.
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        stop()


def _make_app() -> Flask:
    from . import create_app

    return create_app()


def main() -> None:
    group = FlaskGroup(create_app=_make_app, add_default_commands=False,
                       help="Preference Center: email preferences, consent ledger and sending.")
    group.add_command(shell_command)
    group.add_command(routes_command)
    try:
        group.main(prog_name="preference-center")
    except ConfigError as exc:
        # A configuration that cannot run safely: one clear line, not a traceback.
        click.echo(f"preference-center: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()


@click.group("sendgrid")
def sendgrid_group() -> None:
    """SendGrid sync: import SendGrid's lists; push our opt-outs (the worker does it every few seconds)."""


@sendgrid_group.command("pull")
@with_appcontext
def sendgrid_pull() -> None:
    """Import SendGrid's bounces, spam reports and unsubscribes (source sendgrid-import); safe to run again."""
    from .commands import sendgrid_import
    from .outbound import sendgrid_sync

    if not current_app.config.get("PC_SENDGRID_API_KEY"):
        raise click.ClickException("set PC_SENDGRID_API_KEY first")
    lists = sendgrid_sync.pull()
    counts = sendgrid_import.import_lists(lists)
    db.session.commit()
    click.echo(f"read {len(lists.bounces)} bounces, {len(lists.spam_reports)} spam reports, "
               f"{len(lists.unsubscribes)} unsubscribes, {sum(map(len, lists.groups.values()))} group "
               "unsubscribes; " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing new"))


@sendgrid_group.command("push")
@with_appcontext
def sendgrid_push() -> None:
    """Push queued opt-outs and suppressions to SendGrid now."""
    from .outbound import sendgrid_sync

    if not sendgrid_sync.enabled():
        raise click.ClickException("set PC_SENDGRID_SYNC=1 and PC_SENDGRID_API_KEY first")
    result = sendgrid_sync.push()
    click.echo(f"pushed {result.pushed} in {result.calls} calls; {result.failed} waiting to retry")
