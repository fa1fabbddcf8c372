"""`flask users ...` to manage accounts, `flask bootstrap` to prepare a deployment."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from flask_migrate import upgrade

from .auth import Account, create_user, ensure_admin, forget, hash_password
from .models import Campaign, User, db

users = AppGroup("users", help="Manage portal users.")


def _find(username: str) -> User:
    user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    return user


@users.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="May see and manage every campaign.")
@click.password_option(help="Asked for when not given.")
def create(username: str, admin: bool, password: str) -> None:
    if not 1 <= len(username) <= 64:
        raise click.ClickException("A user name has 1 to 64 characters.")
    if db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none():
        raise click.ClickException(f"A user named {username!r} already exists.")
    create_user(username, password, is_admin=admin)
    click.echo(f"Created {'admin ' if admin else ''}user {username}.")


@users.command("list")
def list_users() -> None:
    for user in db.session.execute(db.select(User).order_by(User.username)).scalars():
        count = db.session.execute(db.select(db.func.count()).select_from(Campaign)
                                   .filter_by(owner_id=user.id)).scalar_one()
        click.echo(f"{user.username}\t{'admin' if user.is_admin else 'user'}\t{count} campaigns")


@users.command("delete")
@click.argument("username")
@click.confirmation_option(prompt="Delete this user and all their campaigns?")
def delete(username: str) -> None:
    from . import campaigns

    user = _find(username)
    account = Account(user.id, user.username, user.is_admin)
    for campaign_id in db.session.execute(db.select(Campaign.id).filter_by(owner_id=user.id)).scalars().all():
        campaigns.delete(account, campaign_id)
    db.session.delete(user)
    db.session.commit()
    forget(username)
    click.echo(f"Deleted user {username}.")


@users.command("passwd")
@click.argument("username")
@click.password_option(help="Asked for when not given.")
def passwd(username: str, password: str) -> None:
    user = _find(username)
    user.password_hash = hash_password(password)
    db.session.commit()
    forget(username)
    click.echo(f"Changed the password of {username}.")


def bootstrap() -> str | None:
    """Bring the schema up to date and create the first admin; a generated password, if any."""
    upgrade()
    return ensure_admin()


@click.command("bootstrap")
@with_appcontext
def bootstrap_command() -> None:
    """Migrate the database and create the first admin if there is no user yet."""
    from flask import current_app

    generated = bootstrap()
    if generated:
        click.echo(f"Created admin user {current_app.config['ADMIN_USER']!r} "
                   f"with password: {generated}\n(printed once; it is stored only as a hash)")


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(bootstrap_command)
