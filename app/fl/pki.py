"""The federation's local CA, the SuperLink's TLS certificate and SuperNode key pairs.

Generated with the ``cryptography`` package under ``<data_dir>/pki`` (directories 0700,
private keys 0600)::

    pki/ca/ca.pem, ca.key                   the federation's CA (its key stays with the operator)
    pki/superlink/server.pem, server.key    the SuperLink's TLS certificate, signed by the CA
    pki/kafka/server.pem, server.key        the local Kafka broker's TLS certificate
                                            (server keys are EC P-256, the CA's P-384)
    pki/supernodes/<name>/node.key, node.pub  one SuperNode's EC P-384 key pair (OpenSSH
                                            format, as Flower reads them)

Nothing here assumes one host or one Kafka cluster for every site: a member bank's site
generates its own ``supernodes/<name>`` pair (the private key never leaves the site) and
needs only the CA certificate ``ca.pem``; the operator needs only the site's ``node.pub``
to register it with ``flwr supernode register``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_DAYS",
    "SERVER_DAYS",
    "NodeKeys",
    "ServerTLS",
    "ensure_ca",
    "ensure_node_keys",
    "ensure_server_tls",
    "pki_dir",
]

logger = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)
_CURVE = ec.SECP384R1()
# A TLS server signs every handshake (CertificateVerify): P-256 signs ~2x faster than P-384
# in the broker's JVM and the CA's P-384 signature still vouches for the key.
_SERVER_CURVE = ec.SECP256R1()
_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """The files a TLS server (the SuperLink) and its clients need."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class NodeKeys:
    """A SuperNode's key pair: ``private`` for ``--auth-supernode-private-key``,
    ``public`` for ``flwr supernode register``."""

    private: Path
    public: Path


def pki_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "pki"


def _private_dir(path: Path) -> Path:
    """``path`` and its parents up to ``pki/``, created with mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in (path, *path.parents):
        part.chmod(0o700)
        if part.name == "pki":
            break
    return path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (a key is never world-readable)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.chmod(mode)
    tmp.replace(path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedstream"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _valid(cert_path: Path) -> x509.Certificate | None:
    """The certificate if it exists and is not about to expire."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert if cert.not_valid_after_utc - _RENEW_BEFORE > _now() else None


def ensure_ca(data_dir: Path) -> tuple[Path, Path]:
    """The CA's certificate and key (created on first use); returns ``(ca.pem, ca.key)``."""
    ca_dir = _private_dir(pki_dir(data_dir) / "ca")
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca.key"
    if key_path.exists() and _valid(cert_path) is not None:
        return cert_path, key_path
    key = ec.generate_private_key(_CURVE)
    name = _name("fedstream federation CA")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA384())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("created the federation CA in %s", ca_dir)
    return cert_path, key_path


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def ensure_server_tls(
    data_dir: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), name: str = "superlink"
) -> ServerTLS:
    """The TLS certificate of server ``name`` (the SuperLink, the Kafka broker) for ``hosts``
    (re-issued when missing, expiring, for other hosts or on another curve; its key is EC
    P-256), signed by the CA of
    :func:`ensure_ca`; it lives in ``pki/<name>/``."""
    ca_cert_path, ca_key_path = ensure_ca(data_dir)
    out_dir = _private_dir(pki_dir(data_dir) / name)
    cert_path, key_path = out_dir / "server.pem", out_dir / "server.key"
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    wanted = set(_san(hosts))
    current = _valid(cert_path)
    if current is not None and key_path.exists() and current.issuer == ca_cert.subject:
        have = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        key_now = current.public_key()
        on_curve = isinstance(key_now, ec.EllipticCurvePublicKey) and isinstance(
            key_now.curve, type(_SERVER_CURVE)
        )
        if set(have) == wanted and on_curve:
            return ServerTLS(ca_cert_path, cert_path, key_path)
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key_path} is not an EC private key")
    key = ec.generate_private_key(_SERVER_CURVE)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"fedstream {name}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA384())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("issued the %s certificate for %s", name, ", ".join(hosts))
    return ServerTLS(ca_cert_path, cert_path, key_path)


def ensure_node_keys(data_dir: Path, name: str) -> NodeKeys:
    """The EC P-384 key pair of SuperNode ``name`` (created on first use)."""
    node_dir = _private_dir(pki_dir(data_dir) / "supernodes" / name)
    private, public = node_dir / "node.key", node_dir / "node.pub"
    if private.exists() and public.exists():
        return NodeKeys(private, public)
    key = ec.generate_private_key(_CURVE)
    _write(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n",
        0o644,
    )
    logger.info("created the key pair of SuperNode %s", name)
    return NodeKeys(private, public)
