"""`anomascope users`: reader accounts: add, list, disable, unlock."""

from __future__ import annotations

import argparse
import json
import sys

from anomascope.app.cli.common import CommandError, add_db_argument
from anomascope.engine.methods import Registry

HELP = "reader accounts: add, list, disable, unlock"
DESCRIPTION = (
    "Passwords are stored as argon2id hashes. Accounts are disabled, never deleted: the "
    "audit trail names their readers. Once one exists, serve asks every reader to sign in. Disabling an "
    "account ends its sessions at once. After ANOMASCOPE_SIGNIN_LOCK_AFTER (default 10) failed sign-ins "
    "in a row an account is locked until unlocked here."
)


def cmd_users(args: argparse.Namespace) -> int:
    import getpass

    from anomascope.storage import Database, add_user, disable_user, list_users, unlock_user

    if args.action != "list" and not args.name:
        raise CommandError(f"users {args.action} needs the reader's name")
    db = Database(args.db)
    actor = f"cli:{getpass.getuser()}"
    if args.action == "add":
        user = add_user(db, args.name, _new_password(args.password_stdin), actor)
        print(json.dumps({"added": user.name}))
    elif args.action == "disable":
        print(json.dumps({"disabled": disable_user(db, args.name, actor).name}))
    elif args.action == "unlock":
        print(json.dumps({"unlocked": unlock_user(db, args.name, actor).name}))
    else:
        for user in list_users(db):
            print(
                json.dumps(
                    {
                        "name": user.name,
                        "active": user.active,
                        "locked": user.locked,
                        "failed_sign_ins": user.failed_sign_ins,
                        "created": user.created.isoformat(),
                    }
                )
            )
    return 0


def _new_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two passwords differ; nothing was saved")
    return first


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], methods: Registry) -> None:
    p = subparsers.add_parser("users", help=HELP, description=DESCRIPTION)
    p.add_argument("action", choices=["add", "list", "disable", "unlock"])
    p.add_argument("name", nargs="?", help="the reader's name (add, disable, unlock)")
    p.add_argument("--password-stdin", action="store_true", help="add: read the password from the first line of stdin")
    add_db_argument(p)
    p.set_defaults(run=cmd_users)
