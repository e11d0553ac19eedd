"""Audit checkpoints in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2...).

``HITL_AUDIT_ANCHOR=s3://bucket/prefix``; the endpoint of a non-AWS store comes from
``HITL_S3_ENDPOINT_URL`` and credentials from the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or the instance role. Each checkpoint is its own
object, ``<prefix>/<chain>/<seq>-<ms>.json``, written once and never overwritten: turn on S3
Object Lock (compliance mode) on the bucket and not even the service can delete them. Needs the
``s3`` extra (``pip install 'hitl-bot[s3]'``, which brings boto3).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hitl.errors import AuditError, ConfigError
from hitl.queue.audit import Checkpoint

__all__ = ["S3Anchor"]


class S3Anchor:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError(
                    "HITL_AUDIT_ANCHOR is an s3:// URL but boto3 is not installed: "
                    "pip install 'hitl-bot[s3]'"
                ) from None
            endpoint = os.environ.get("HITL_S3_ENDPOINT_URL") or None
            client = boto3.client("s3", endpoint_url=endpoint)
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> S3Anchor:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"HITL_AUDIT_ANCHOR {url!r}: expected s3://bucket/prefix")
        return cls(bucket, prefix)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, checkpoint: Checkpoint) -> str:
        chain = checkpoint.chain.replace("/", "_") or "chain"
        name = f"{checkpoint.seq:020d}-{int(checkpoint.ts * 1000):015d}.json"
        return "/".join(p for p in (self.prefix, chain, name) if p)

    def append(self, checkpoint: Checkpoint) -> None:
        body = json.dumps(checkpoint.to_json(), sort_keys=True).encode()
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(checkpoint),
            Body=body,
            ContentType="application/json",
            IfNoneMatch="*",  # never overwrite an existing checkpoint
        )

    def read(self) -> list[Checkpoint]:
        out: list[Checkpoint] = []
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                try:
                    out.append(Checkpoint.from_json(json.loads(body)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise AuditError(
                        f"{self.where}: {item['Key']} is not a checkpoint ({exc})"
                    ) from None
        return sorted(out, key=lambda c: (c.chain, c.seq))
