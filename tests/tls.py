"""Test certificates made with the ``openssl`` CLI, and a TLS proxy in front of influxd."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

LEAF = """basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""


@dataclass(frozen=True)
class Pki:
    """A self-signed CA, a server certificate for 127.0.0.1 and a client certificate.

    Attributes:
        ca: the CA certificate (the bundle clients trust).
        other_ca: an unrelated CA, which signed nothing here.
        server_cert, server_key: for 127.0.0.1, signed by ``ca``.
        client_cert, client_key: CN ``screenaware-client``, signed by ``ca``.
        client_combined: the client certificate and its key in one file.
        client_key_encrypted: the client key, encrypted with a passphrase.
    """

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_combined: Path
    client_key_encrypted: Path


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl(
        directory,
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=ScreenAware test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(directory: Path, name: str, cn: str, usage: str, san: str) -> None:
    (directory / f"{name}.ext").write_text(LEAF.format(usage=usage, san=san))
    _openssl(
        directory,
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
    )  # fmt: skip
    _openssl(
        directory,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
    )  # fmt: skip


def make_pki(directory: Path) -> Pki:
    """Write the certificates and keys of :class:`Pki` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _leaf(directory, "server", "127.0.0.1", "serverAuth", "subjectAltName = IP:127.0.0.1")
    _leaf(directory, "client", "screenaware-client", "clientAuth", "")
    combined = directory / "client-combined.pem"
    combined.write_text(
        (directory / "client.pem").read_text() + (directory / "client.key").read_text()
    )
    _openssl(
        directory,
        "pkey", "-in", "client.key", "-aes256", "-passout", "pass:secret",
        "-out", "client-encrypted.key",
    )  # fmt: skip
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_combined=combined,
        client_key_encrypted=directory / "client-encrypted.key",
    )


@dataclass
class TlsProxy:
    """A TLS server on 127.0.0.1 that forwards the decrypted bytes to influxd.

    Attributes:
        url: its ``https://`` URL.
        peers: the subject CN of each client certificate presented, per connection.
    """

    url: str = ""
    peers: list[str | None] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tls_proxy(
    pki: Pki, target_port: int, *, require_client_cert: bool
) -> AsyncIterator[TlsProxy]:
    """Serve TLS with ``pki``'s server certificate in the running loop, in front of influxd.

    Args:
        pki: the certificates.
        target_port: influxd's plain HTTP port.
        require_client_cert: refuse clients without a certificate signed by ``pki.ca``.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    state = TlsProxy()
    open_writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in cert["subject"]) if cert else {}
        state.peers.append(subject.get("commonName"))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        open_writers.extend((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    state.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        # Connections still open (kept alive by a client) end with the server.
        for writer in open_writers:
            writer.close()
        await server.wait_closed()
