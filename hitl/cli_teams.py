"""``hitl teams package``: the Teams app package to upload in Teams (or the Teams admin center).

::

    hitl teams package --app-id $MICROSOFT_APP_ID --host hitl.example.com
    hitl teams package --app-id ... --host ... --out dist/hitl-teams.zip --source teams/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["add_subparser"]


def cmd_package(args: argparse.Namespace) -> int:
    from hitl.bot.teams.package import build_package

    out = build_package(
        Path(args.source),
        app_id=args.app_id or os.environ.get("MICROSOFT_APP_ID", ""),
        host=args.host,
        out=Path(args.out),
        teams_app_id=args.teams_app_id or "",
        version=args.version or "",
    )
    print(f"wrote {out}: upload it in Teams (Apps -> Manage your apps -> Upload an app)")
    return 0


def add_subparser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("teams", help="the Microsoft Teams app")
    tsub = p.add_subparsers(dest="teams_command", required=True)
    pkg = tsub.add_parser("package", help="build the Teams app package (a zip)")
    pkg.add_argument("--app-id", help="the bot's Microsoft App ID (default $MICROSOFT_APP_ID)")
    pkg.add_argument("--host", required=True, help="the host hitl serve answers on (no https://)")
    pkg.add_argument("--out", default="hitl-teams.zip", help="the zip to write")
    pkg.add_argument("--source", default="teams", help="the folder with manifest.json and icons")
    pkg.add_argument("--teams-app-id", help="the Teams app's own id (default: the app id)")
    pkg.add_argument("--version", help="the app version in the manifest (default: as written)")
    pkg.set_defaults(func=cmd_package)
