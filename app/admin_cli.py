"""``taina admin …``: local accounts for the admin dashboard, from the server's shell.

The first admin can only be made here (the API needs an admin to do anything), so this talks
to the database directly, with the same settings (``DATABASE_URL``, ``TAINA_DATA_DIR``) as the
server. Passwords come from ``--password``, else ``TAINA_ADMIN_PASSWORD``, else a hidden
prompt; prefer the last two, since a command line is visible to other local users.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.auth import ROLES, check_password_policy
from app.settings import Settings

PASSWORD_ENV = "TAINA_ADMIN_PASSWORD"
T = TypeVar("T")


def add_admin_commands(subparsers: Any) -> None:
    """Register ``taina admin create-user|set-password|list-users`` on the top-level parser."""
    admin = subparsers.add_parser("admin", help="manage admin dashboard accounts")
    sub = admin.add_subparsers(dest="admin_command", required=True)

    create = sub.add_parser("create-user", help="create a local account")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=list(reversed(ROLES)))
    create.add_argument("--password", default=None, help=f"(else ${PASSWORD_ENV}, else a prompt)")
    create.set_defaults(func=_cmd_create_user)

    reset = sub.add_parser("set-password", help="replace an account's password")
    reset.add_argument("--email", required=True)
    reset.add_argument("--password", default=None, help=f"(else ${PASSWORD_ENV}, else a prompt)")
    reset.set_defaults(func=_cmd_set_password)

    listing = sub.add_parser("list-users", help="list local accounts")
    listing.set_defaults(func=_cmd_list_users)


def _password(args: argparse.Namespace) -> str | None:
    """The new password, or None after telling the operator why there is none."""
    password = args.password or os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            print(
                f"No password given: use --password, set {PASSWORD_ENV}, or run interactively.",
                file=sys.stderr,
            )
            return None
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            print("The passwords do not match.", file=sys.stderr)
            return None
    problem = check_password_policy(password)
    if problem:
        print(problem, file=sys.stderr)
        return None
    return password


def _with_db(work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the deployment's database (migrated to head), run ``work(db)``, close it."""
    from app.storage import Database

    async def run() -> T:
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url)
        try:
            await db.migrate()
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _cmd_create_user(args: argparse.Namespace) -> int:
    from app.users import UserExists, create_user, validate_email

    try:
        email = validate_email(args.email)
    except ValueError:
        print(f"Not an e-mail address: {args.email}", file=sys.stderr)
        return 2
    password = _password(args)
    if password is None:
        return 2
    try:
        user = _with_db(lambda db: create_user(db, email, args.role, password, actor="cli"))
    except UserExists:
        print(
            f"An account for {email} already exists (use `taina admin set-password`).",
            file=sys.stderr,
        )
        return 1
    print(f"Created {user.role} account {user.email} (id {user.id}).")
    return 0


def _cmd_set_password(args: argparse.Namespace) -> int:
    from app.users import UnknownUser, set_password

    password = _password(args)
    if password is None:
        return 2
    try:
        _with_db(lambda db: set_password(db, args.email, password, actor="cli"))
    except UnknownUser:
        print(f"No account for {args.email}.", file=sys.stderr)
        return 1
    print(f"Password updated for {args.email.strip().lower()}.")
    return 0


def _cmd_list_users(args: argparse.Namespace) -> int:
    from app.users import list_users

    users = _with_db(list_users)
    if not users:
        print("No accounts yet: taina admin create-user --email you@example.org --role admin")
        return 0
    width = max(len(u.email) for u in users)
    for u in users:
        login = "password" if u.password_hash else "no local password"
        print(f"{u.id:>4}  {u.email:<{width}}  {u.role:<7}  {u.created_at:%Y-%m-%d}  {login}")
    return 0
