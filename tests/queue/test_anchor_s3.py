"""Audit checkpoints in an S3-compatible bucket, against a local S3 server (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from hitl.errors import ConfigError
from hitl.keys import KeyRing
from hitl.queue.anchor_s3 import S3Anchor
from hitl.queue.audit import Checkpoint, open_anchor
from tests.redis_server import free_port

RING = KeyRing.generate()


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """A local S3 endpoint that answers like AWS (moto's server)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def anchor(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> S3Anchor:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HITL_S3_ENDPOINT_URL": s3_url,
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"audit-{free_port()}"
    boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=bucket)
    made = open_anchor(f"s3://{bucket}/prod/checkpoints")
    assert isinstance(made, S3Anchor)
    return made


def _cp(seq: int, chain: str = "hitl:audit") -> Checkpoint:
    return Checkpoint(seq, f"{seq:064x}", 1000.0 + seq, chain).signed(RING)


def test_checkpoints_round_trip_in_order(anchor: S3Anchor) -> None:
    """Each checkpoint is its own object; read returns them all, per chain in seq order."""
    for seq in (3, 1, 2):
        anchor.append(_cp(seq))
    anchor.append(_cp(1, "acme:audit"))
    assert [("acme:audit", 1), ("hitl:audit", 1), ("hitl:audit", 2), ("hitl:audit", 3)] == [
        (c.chain, c.seq) for c in anchor.read()
    ]
    assert all(c.verifies(RING.public()) for c in anchor.read())


def test_an_existing_checkpoint_is_never_overwritten(anchor: S3Anchor) -> None:
    """Writing the same key twice is refused by the bucket (If-None-Match), the first stays."""
    first = _cp(5)
    anchor.append(first)
    with pytest.raises(Exception, match="PreconditionFailed|412"):
        anchor.append(Checkpoint(5, "f" * 64, first.ts, first.chain).signed(RING))
    assert [first] == anchor.read()


def test_bad_url_is_a_configuration_error() -> None:
    """s3:// without a bucket says what is expected."""
    with pytest.raises(ConfigError, match="s3://bucket/prefix"):
        open_anchor("s3://")


def test_cli_anchors_in_s3_and_catches_a_wipe(
    anchor: S3Anchor,
    env: None,
    store: Any,
    r: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hitl audit checkpoint` writes to the bucket; after the chain is deleted from Redis,
    `hitl audit verify` reports the wipe instead of "OK: 0 entries"."""
    from hitl.cli import main
    from hitl.queue.audit import AuditEvent

    monkeypatch.setenv("HITL_AUDIT_ANCHOR", anchor.where)
    store.append_events([AuditEvent("x", None, "t"), AuditEvent("y", None, "t")])
    assert 0 == main(["audit", "checkpoint"])
    assert [2] == [c.seq for c in anchor.read()]
    r.delete("hitl:audit:{0}", "hitl:audit:{0}:head")
    capsys.readouterr()
    assert 1 == main(["audit", "verify"])
    assert "the chain was wiped" in capsys.readouterr().out
