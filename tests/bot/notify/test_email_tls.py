"""Email over STARTTLS and implicit TLS, against aiosmtpd with a certificate the test makes;
certificates are verified (against HITL_SMTP_CA_FILE), and a server that insists on TLS
refuses a client configured without it."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hitl.bot.notify import EmailNotifier, NotifyError, NotifySettings
from tests.bot.notify.standins import _Mailbox
from tests.bot.notify.test_messages import message, record
from tests.redis_server import free_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    where = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def mailbox() -> _Mailbox:
    return _Mailbox()


def running(mailbox: _Mailbox, **kwargs: Any) -> Iterator[Controller]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


def settings(port: int, mode: str, ca: Path | None) -> NotifySettings:
    return NotifySettings(
        public_url="https://hitl.example.com",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_tls=mode,
        smtp_from="hitl@example.com",
        smtp_ca_file=str(ca) if ca else "",
    )


async def test_starttls_delivers_and_verifies_the_certificate(
    certificate: tuple[Path, Path], mailbox: _Mailbox
) -> None:
    """STARTTLS to a server that requires it; the message arrives."""
    ctx = server_context(certificate)
    for server in running(mailbox, tls_context=ctx, require_starttls=True):
        notifier = EmailNotifier(settings(server.port, "starttls", certificate[0]))
        sent = await notifier.send(message(record(), approve="https://h/a", reject="https://h/r"))
        assert "bob@example.com" == sent.address
    assert ["bob@example.com"] == [m["X-Envelope-To"] for m in mailbox.messages]


async def test_implicit_tls_delivers(certificate: tuple[Path, Path], mailbox: _Mailbox) -> None:
    """TLS from the first byte (port 465 style)."""
    for server in running(mailbox, ssl_context=server_context(certificate)):
        notifier = EmailNotifier(settings(server.port, "tls", certificate[0]))
        await notifier.send(message(record(), approve="https://h/a", reject="https://h/r"))
    assert 1 == len(mailbox.messages)


async def test_an_unknown_certificate_or_no_tls_is_a_failure(
    certificate: tuple[Path, Path], mailbox: _Mailbox
) -> None:
    """Without the CA the certificate does not verify; without TLS the server refuses; either
    way the send fails (to be retried, then failed over) and nothing is delivered."""
    ctx = server_context(certificate)
    for server in running(mailbox, tls_context=ctx, require_starttls=True):
        for mode, ca in (("starttls", None), ("none", certificate[0])):
            notifier = EmailNotifier(settings(server.port, mode, ca))
            with pytest.raises(NotifyError):
                await notifier.send(message(record(), approve="a", reject="r"))
    assert [] == mailbox.messages
