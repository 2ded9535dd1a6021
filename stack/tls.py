"""A self-signed certificate authority and a server certificate for the local Redis, made
at stack start: ElastiCache with in-transit encryption speaks only TLS, so the local server
does too, and every client verifies the server against this CA (``Redis.tls_ca_file``),
hostname included (the certificate names 127.0.0.1 and localhost).

Files (PEM): ``ca.crt`` at the configured path, ``redis.crt`` and ``redis.key`` beside it.
Made once and kept while valid, so running clients keep trusting a restarted server.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=30)
RENEW_BEFORE = timedelta(days=1)


def server_files(ca_cert: Path) -> tuple[Path, Path]:
    """The server certificate and key that go with ``ca_cert``."""
    return ca_cert.with_name("redis.crt"), ca_cert.with_name("redis.key")


def ensure_certificates(ca_cert: Path, host: str) -> None:
    """Makes the CA and the server certificate for ``host`` unless valid ones exist."""
    cert, key = server_files(ca_cert)
    if all(p.exists() for p in (ca_cert, cert, key)) and _still_valid(cert, host):
        return
    ca_cert.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pizzastream local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        # Client too: nodes of a cluster (tests/redis_cluster.py) present it to each
        # other on their TLS cluster bus.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _still_valid(cert_path: Path, host: str) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.not_valid_after_utc - RENEW_BEFORE < datetime.now(UTC):
        return False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return host in {str(n) for n in names.get_values_for_type(x509.IPAddress)} | set(
        names.get_values_for_type(x509.DNSName)
    )
