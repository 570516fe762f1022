"""The federation's CA, the SuperLink certificate and SuperNode keys (no Flower, no network)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.fl import pki
from app.fl.flower_auth import FlowerSecurity, connection_entry
from app.fl.pki import ensure_ca, ensure_node_keys, ensure_server_tls


def test_server_certificate_is_signed_by_the_ca_for_its_hosts(tmp_path: Path) -> None:
    # Execute
    tls = ensure_server_tls(tmp_path, ("127.0.0.1", "superlink.example"))

    # Assert: the chain verifies, the names are the asked ones, keys are private
    ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the server signs every handshake: P-256 (cheaper); the CA keeps P-384
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert ca.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    for key in (tmp_path / "pki" / "ca" / "ca.key", tls.key):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700


def test_files_are_reused_and_reissued_only_for_other_hosts(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path)
    ca_bytes, cert_bytes = first.ca.read_bytes(), first.cert.read_bytes()

    again = ensure_server_tls(tmp_path).cert.read_bytes()
    other = ensure_server_tls(tmp_path, ("10.0.0.5",))

    assert again == cert_bytes and ensure_ca(tmp_path)[0].read_bytes() == ca_bytes
    assert other.cert.read_bytes() != cert_bytes and other.ca.read_bytes() == ca_bytes


def test_a_server_key_on_another_curve_is_reissued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a certificate issued before server keys moved to P-256
    monkeypatch.setattr(pki, "_SERVER_CURVE", ec.SECP384R1())
    old = ensure_server_tls(tmp_path, name="kafka").cert.read_bytes()
    monkeypatch.undo()

    # Execute
    new = ensure_server_tls(tmp_path, name="kafka")

    # Assert
    cert = x509.load_pem_x509_certificate(new.cert.read_bytes())
    key = serialization.load_pem_private_key(new.key.read_bytes(), None)
    assert new.cert.read_bytes() != old
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert key.public_key() == cert.public_key()
    assert ensure_server_tls(tmp_path, name="kafka").cert.read_bytes() == new.cert.read_bytes()


def test_supernode_keys_are_ec_in_the_openssh_format_flower_reads(tmp_path: Path) -> None:
    keys = ensure_node_keys(tmp_path, "silo-3")
    private = serialization.load_ssh_private_key(keys.private.read_bytes(), None)
    public = serialization.load_ssh_public_key(keys.public.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert public == private.public_key()
    assert keys.private.stat().st_mode & 0o777 == 0o600
    assert ensure_node_keys(tmp_path, "silo-3") == keys  # reused, not regenerated
    assert keys.private.read_bytes() == ensure_node_keys(tmp_path, "silo-3").private.read_bytes()


def test_flower_flags_secure_by_default_insecure_only_when_asked(tmp_path: Path) -> None:
    secure = FlowerSecurity.create(tmp_path)
    keys = secure.node_keys(tmp_path, 0)
    args = secure.superlink_args()
    assert "--enable-supernode-auth" in args and "--insecure" not in args
    assert secure.supernode_args(keys)[:2] == ["--root-certificates", str(secure.tls.ca)]  # type: ignore[union-attr]
    assert "insecure" not in connection_entry("127.0.0.1:1", secure)
    insecure = FlowerSecurity.create(tmp_path / "x", insecure=True)
    assert insecure.superlink_args() == ["--insecure"] and insecure.node_keys(tmp_path, 0) is None
    assert connection_entry("127.0.0.1:1", insecure)["insecure"] is True
