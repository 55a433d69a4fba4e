"""HTTPS from the configured certificate, and certificates renewed while serving."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry import tls
from registry.app import create_app
from registry.config import Config, ConfigError, TlsConfig
from registry.drivers.filesystem import FilesystemDriver
from registry.drivers.inmemory import InMemoryDriver


def write_certificate(directory: Path, serial: int) -> TlsConfig:
    """A self-signed certificate for 127.0.0.1 with `serial`, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, key_path = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsConfig(cert=str(cert), key=str(key_path))


async def served_serial(port: int) -> int:
    """The serial number of the certificate the server presents to a new connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


class TestTls:
    async def test_registry_answers_over_https_with_the_configured_certificate(
        self, tmp_path: Path
    ) -> None:
        config = write_certificate(tmp_path, serial=1)
        server = TestServer(create_app(Config(), InMemoryDriver()), scheme="https")
        await server.start_server(ssl=tls.server_context(config))
        try:
            trust = ssl.create_default_context(cafile=config.cert)
            async with aiohttp.ClientSession() as session:
                response = await session.get(server.make_url("/v2/"), ssl=trust)
                assert response.status == 200
        finally:
            await server.close()

    async def test_blob_from_a_directory_downloads_whole_over_https(self, tmp_path: Path) -> None:
        """The kernel cannot encrypt: the file is copied through the TLS layer instead."""
        config = write_certificate(tmp_path, serial=1)
        server = TestServer(
            create_app(Config(), FilesystemDriver(tmp_path / "root")), scheme="https"
        )
        await server.start_server(ssl=tls.server_context(config))
        data = os.urandom(3 * 1024 * 1024 + 5)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        trust = ssl.create_default_context(cafile=config.cert)
        try:
            async with aiohttp.ClientSession() as session:
                url = server.make_url(f"/v2/lib/tls/blobs/uploads/?digest={digest}")
                async with session.post(url, data=data, ssl=trust) as response:
                    assert response.status == 201
                url = server.make_url(f"/v2/lib/tls/blobs/{digest}")
                async with session.get(url, ssl=trust) as response:
                    assert await response.read() == data
                async with session.get(url, ssl=trust, headers={"Range": "bytes=7-"}) as response:
                    assert await response.read() == data[7:]
        finally:
            await server.close()

    async def test_renewed_certificate_is_served_to_new_connections(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tls, "RELOAD_INTERVAL", 0.05)
        config = write_certificate(tmp_path, serial=1)
        context = tls.server_context(config)
        app = create_app(Config(), InMemoryDriver())
        app.cleanup_ctx.append(tls.reloader(context, config))
        server = TestServer(app, scheme="https")
        await server.start_server(ssl=context)
        try:
            assert server.port is not None
            assert await served_serial(server.port) == 1
            write_certificate(tmp_path, serial=2)
            for _ in range(100):
                if await served_serial(server.port) == 2:
                    break
                await asyncio.sleep(0.05)
            assert await served_serial(server.port) == 2
        finally:
            await server.close()

    def test_unloadable_certificate_is_a_config_error(self, tmp_path: Path) -> None:
        (tmp_path / "cert.pem").write_text("not a certificate")
        (tmp_path / "key.pem").write_text("not a key")
        with pytest.raises(ConfigError, match=r"http\.tls"):
            tls.server_context(TlsConfig(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")))
