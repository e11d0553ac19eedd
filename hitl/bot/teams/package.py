"""The Teams app package: ``teams/manifest.json`` and its two icons, filled in and zipped.

Teams installs an app from a zip holding ``manifest.json``, ``color.png`` (192x192) and
``outline.png`` (32x32, white on transparent). The manifest in the repository has placeholders
for what only the operator knows: the bot's Microsoft App ID and the host ``hitl serve`` answers
on (``hitl teams package`` fills them in)::

    path = build_package(Path("teams"), app_id="00000000-...", host="hitl.example.com",
                         out=Path("hitl-teams.zip"))
"""

from __future__ import annotations

import json
import re
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Any

from hitl.errors import InvalidRequest

__all__ = ["ICONS", "MIN_MANIFEST_VERSION", "build_package", "png_size"]

ICONS = {"color.png": (192, 192), "outline.png": (32, 32)}
MIN_MANIFEST_VERSION = (1, 16)
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?$")
_PNG = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, or None when ``data`` is not one."""
    if len(data) < 24 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _guid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise InvalidRequest(
            f"{what} must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}",
            [(what, "not a GUID")],
        ) from None


def _fill(template: str, values: dict[str, str]) -> dict[str, Any]:
    text = template
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    left = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)))
    if left:
        raise InvalidRequest(f"manifest.json has placeholders nobody fills: {', '.join(left)}")
    data: dict[str, Any] = json.loads(text)
    return data


def _check(manifest: dict[str, Any]) -> None:
    try:
        major, minor = (int(p) for p in str(manifest.get("manifestVersion", "0.0")).split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) < MIN_MANIFEST_VERSION:
        raise InvalidRequest("manifest.json: manifestVersion must be 1.16 or later")
    bots = manifest.get("bots") or []
    scopes = set(bots[0].get("scopes", [])) if bots else set()
    if not {"personal", "team", "groupChat"} <= scopes:
        raise InvalidRequest("manifest.json: the bot needs the scopes personal, team and groupChat")


def build_package(
    source: Path,
    *,
    app_id: str,
    host: str,
    out: Path,
    teams_app_id: str = "",
    version: str = "",
) -> Path:
    """Write the app package to ``out`` from ``source`` (the folder with the manifest and the
    icons); ``teams_app_id`` defaults to the bot's app id. Raises :class:`InvalidRequest` saying
    what to fix."""
    app_id = _guid(app_id, "the app id (MICROSOFT_APP_ID)")
    teams_app_id = _guid(teams_app_id or app_id, "the Teams app id")
    host = host.strip().removeprefix("https://").rstrip("/")
    if not _HOST.match(host):
        raise InvalidRequest(f"--host must be a host name like hitl.example.com, got {host!r}")
    try:
        template = (source / "manifest.json").read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {source / 'manifest.json'}: {exc.strerror}") from None
    manifest = _fill(template, {"MICROSOFT_APP_ID": app_id, "TEAMS_APP_ID": teams_app_id,
                                "HOST": host})  # fmt: skip
    if version:
        manifest["version"] = version
    _check(manifest)
    icons: dict[str, bytes] = {}
    for name, size in ICONS.items():
        try:
            data = (source / name).read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {source / name}: {exc.strerror}") from None
        if png_size(data) != size:
            raise InvalidRequest(f"{name} must be a {size[0]}x{size[1]} PNG")
        icons[name] = data
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for name, data in icons.items():
            archive.writestr(name, data)
    return out
