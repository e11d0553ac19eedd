"""``hitl keys``: make, rotate and publish the service's Ed25519 signing keys.

::

    hitl keys generate /run/secrets/hitl-keys.json   # once; give it to hitl serve + hitl worker
    hitl keys public /run/secrets/hitl-keys.json     # HITL_PUBLIC_KEY for agents (cannot sign)
    hitl keys rotate /run/secrets/hitl-keys.json     # a new active key; old ones still verify
    hitl keys retire /run/secrets/hitl-keys.json KID # drop an old key once nothing needs it

Private key files are written with mode 0600, atomically. Agents get only ``hitl keys public``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hitl.keys import KeyRing

__all__ = ["add_subparser"]


def _out(args: argparse.Namespace, human: str, data: Any) -> int:
    print(json.dumps(data, indent=2) if args.json else human)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    ring = KeyRing.generate()
    ring.save(args.file)
    public = ring.public()
    return _out(
        args,
        f"wrote {args.file} (mode 0600) with key {ring.active}\n"
        f"service and worker: HITL_SIGNING_KEY_FILE={args.file}\n"
        f"agents (verify only): HITL_PUBLIC_KEY={public.to_env()}",
        {"file": args.file, "active": ring.active, "public": public.to_json()},
    )


def cmd_rotate(args: argparse.Namespace) -> int:
    ring = KeyRing.load(args.file).rotated()
    ring.save(args.file, overwrite=True)
    public = ring.public()
    return _out(
        args,
        f"{args.file}: new active key {ring.active}; earlier keys still verify "
        f"({', '.join(k for k in sorted(ring.keys) if k != ring.active)})\n"
        f"give agents the new set first: HITL_PUBLIC_KEY={public.to_env()}\n"
        "then restart hitl serve and hitl worker (they read the file when it changes)",
        {"file": args.file, "active": ring.active, "public": public.to_json()},
    )


def cmd_retire(args: argparse.Namespace) -> int:
    ring = KeyRing.load(args.file).retired(args.kid)
    ring.save(args.file, overwrite=True)
    return _out(
        args,
        f"{args.file}: removed {args.kid}; decisions and checkpoints it signed no longer verify "
        "with this file's public keys (keep an old public key set to check old exports)",
        {"file": args.file, "active": ring.active, "public": ring.public().to_json()},
    )


def cmd_public(args: argparse.Namespace) -> int:
    public = KeyRing.load(args.file).public()
    return _out(args, public.to_env(), public.to_json())


def add_subparser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("keys", help="Ed25519 signing keys: generate, rotate, retire, public")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    g = ksub.add_parser("generate", parents=[common], help="a new keyring file (mode 0600)")
    g.add_argument("file")
    g.set_defaults(func=cmd_generate)
    r = ksub.add_parser("rotate", parents=[common], help="add a new active key")
    r.add_argument("file")
    r.set_defaults(func=cmd_rotate)
    t = ksub.add_parser("retire", parents=[common], help="remove an old (inactive) key")
    t.add_argument("file")
    t.add_argument("kid")
    t.set_defaults(func=cmd_retire)
    u = ksub.add_parser("public", parents=[common], help="the public keys, for agents")
    u.add_argument("file")
    u.set_defaults(func=cmd_public)
