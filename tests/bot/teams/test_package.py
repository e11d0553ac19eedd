"""teams/manifest.json, its icons, and ``hitl teams package`` building the zip Teams installs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hitl.bot.teams.bot import TEAMS_COMMANDS
from hitl.bot.teams.package import ICONS, png_size
from hitl.cli import main

TEAMS = Path(__file__).resolve().parents[3] / "teams"
APP_ID = "00000000-0000-4000-8000-0000000a9910"


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEAMS / "manifest.json").read_text(encoding="utf-8"))
    return data


def test_manifest_declares_the_bot_in_every_scope() -> None:
    """Schema 1.16 or later; one bot in personal, team and groupChat with the text commands."""
    m = manifest()
    major, minor = (int(p) for p in m["manifestVersion"].split("."))
    assert (major, minor) >= (1, 16)
    assert m["$schema"].endswith(f"v{m['manifestVersion']}/MicrosoftTeams.schema.json")
    [bot] = m["bots"]
    assert {"personal", "team", "groupChat"} == set(bot["scopes"])
    commands = [c["title"] for c in bot["commandLists"][0]["commands"]]
    assert list(TEAMS_COMMANDS) == commands
    assert len(m["description"]["short"]) <= 80 and len(m["name"]["short"]) <= 30


def test_icons_have_the_sizes_teams_requires() -> None:
    """color.png is 192x192, outline.png 32x32."""
    for name, size in ICONS.items():
        assert size == png_size((TEAMS / name).read_bytes())


def test_package_builds_the_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``hitl teams package`` fills in the app id and host and zips manifest and icons."""
    out = tmp_path / "app.zip"
    code = main(["teams", "package", "--app-id", APP_ID, "--host", "https://hitl.example.com/",
                 "--out", str(out), "--source", str(TEAMS), "--version", "2.0.1"])  # fmt: skip
    assert 0 == code
    assert str(out) in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert ["color.png", "manifest.json", "outline.png"] == sorted(archive.namelist())
        packed = json.loads(archive.read("manifest.json"))
    assert (APP_ID, APP_ID, "2.0.1", ["hitl.example.com"]) == (
        packed["id"],
        packed["bots"][0]["botId"],
        packed["version"],
        packed["validDomains"],
    )
    assert "{{" not in json.dumps(packed)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--app-id", "not-a-guid", "--host", "h.example.com"], "must be a GUID"),
     (["--app-id", APP_ID, "--host", "bad host/x"], "--host must be a host name"),
     (["--host", "h.example.com"], "must be a GUID")],
)  # fmt: skip
def test_package_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A wrong app id or host is a usage error (exit 2) saying what to fix; no zip is written."""
    out = tmp_path / "app.zip"
    assert 2 == main(["teams", "package", *args, "--out", str(out), "--source", str(TEAMS)])
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_package_checks_the_icons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An icon of the wrong size is refused."""
    source = tmp_path / "teams"
    source.mkdir()
    for name in ("manifest.json", "outline.png"):
        (source / name).write_bytes((TEAMS / name).read_bytes())
    (source / "color.png").write_bytes((TEAMS / "outline.png").read_bytes())
    code = main(["teams", "package", "--app-id", APP_ID, "--host", "h.example.com",
                 "--out", str(tmp_path / "a.zip"), "--source", str(source)])  # fmt: skip
    assert 2 == code
    assert "color.png must be a 192x192 PNG" in capsys.readouterr().err
