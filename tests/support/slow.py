"""Endpoints on loopback that answer slowly, to prove callers cut them off."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DRIP_SECONDS = 0.1


class SlowEndpoint:
    """An endpoint on loopback that reads each request, sends `prefix` at once, then
    `drip` one byte every DRIP_SECONDS (each within the read timeout), then `suffix`; over
    TLS when given a server context."""

    def __init__(
        self, prefix: bytes, drip: bytes, suffix: bytes = b"", tls: ssl.SSLContext | None = None
    ) -> None:
        self.prefix, self.drip, self.suffix, self._tls = prefix, drip, suffix, tls
        self.requests = 0
        self.hung_up = threading.Event()  # the caller closed the connection mid-answer
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> SlowEndpoint:
        self._threads[0].start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, connection: socket.socket) -> None:
        if self._tls is not None:
            try:
                connection = self._tls.wrap_socket(connection, server_side=True)
            except OSError:  # a handshake the caller abandoned
                connection.close()
                return
        with connection:
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:  # the caller gave up before sending its request
                    return
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            _, _, declared = head.lower().partition(b"content-length:")
            length = int(declared.split(b"\r\n")[0] or 0)
            while len(body) < length:
                body += connection.recv(65536)
            self.requests += 1
            try:
                connection.sendall(self.prefix)
                for byte in self.drip:
                    if self._stop.wait(DRIP_SECONDS):
                        return
                    connection.sendall(bytes([byte]))
                connection.sendall(self.suffix)
            except OSError:
                self.hung_up.set()


def loopback_tls_context(folder: Path) -> tuple[ssl.SSLContext, str]:
    """A server context with a self-signed certificate for 127.0.0.1, and the CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)
