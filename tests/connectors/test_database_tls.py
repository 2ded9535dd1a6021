"""TLS to Aurora and Redshift as deployed: ``sslmode=verify-full`` with ``sslrootcert``.

The CA bundle every package carries (``deploy/certs.py``) holds Amazon's RDS CAs. The
connection settings (``pizzastream.config.tls_settings``: ``postgres_dsn`` for libpq,
``jdbc_url`` for pgjdbc) are checked against a real server: a throwaway PostgreSQL cluster
started here with ``ssl=on``, TLS-only, and a certificate for ``localhost``/``127.0.0.1``
signed by a CA made here with the ``openssl`` CLI (never the shared local stack's server).
With ``verify-full``, libpq (psycopg) and pgjdbc connect with the right CA and refuse a
wrong CA or a name the certificate does not carry.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from connectors import aurora
from deploy import certs
from jobs.runtime import DEPENDENCIES_JAR
from pizzastream import config, settings
from pizzastream.config import jdbc_url, postgres_dsn, tls_settings
from stack.services import PG_BIN, PG_SUPERUSER

REPO_ROOT = config.REPO_ROOT
JDBC_PROBE = REPO_ROOT / "tests" / "jvm" / "JdbcProbe.java"
SERVER_NAME = "localhost"
OTHER_ADDRESS = "127.0.0.2"  # also this server, but not a name its certificate carries


# --- the bundle ---------------------------------------------------------------------------


def test_the_bundle_is_amazons_rds_cas():
    bundle = certs.rds_ca_bundle()
    assert bundle == certs.DEPLOY_DIR / "target" / certs.BUNDLE
    parsed = certs.certificates(bundle.read_bytes())  # refuses anything but CA certificates
    subjects = [cert.subject.rfc4514_string() for cert in parsed]
    rds = [s for s in subjects if "O=Amazon Web Services\\, Inc." in s and "OU=Amazon RDS" in s]
    assert len(rds) >= 50, subjects
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        assert any(f"CN=Amazon RDS {region} Root CA" in s for s in rds), region
    # The roots ACM certificates (Redshift's endpoints) chain to.
    assert any(s.startswith("CN=Amazon Root CA 1,") for s in subjects)


def test_certificates_refuses_a_leaf_certificate(tmp_path):
    ca = _ca(tmp_path, "ca")
    leaf = _server_certificate(tmp_path, ca)
    with pytest.raises(ValueError, match="not a CA certificate"):
        certs.certificates(leaf.read_bytes())


# --- the settings ---------------------------------------------------------------------------


def test_a_relative_sslrootcert_is_under_the_application_root_of_the_process_that_connects():
    db = {
        "host": "h",
        "port": "5432",
        "dbname": "d",
        "user": "u",
        "password": "p",
        "sslmode": "verify-full",
        "sslrootcert": "certs/rds-ca-bundle.pem",
    }
    bundle = REPO_ROOT / "certs" / "rds-ca-bundle.pem"
    assert tls_settings({"Aurora": db}, "Aurora") == [
        ("sslmode", "verify-full"),
        ("sslrootcert", str(bundle)),
    ]
    assert postgres_dsn({"Aurora": db}).endswith(
        f" password=p sslmode=verify-full sslrootcert={bundle}"
    )
    # pgjdbc gets the copy inside the jar: the application root exists only where the job
    # started, the jar on every TaskManager
    assert jdbc_url({"Aurora": db}) == (
        "jdbc:postgresql://h:5432/d?sslmode=verify-full&sslfactory=pizzastream.flink."
        "PemTrustFactory&sslfactoryarg=classpath:certs/rds-ca-bundle.pem"
    )
    db["sslrootcert"] = "/etc/ssl/ca.pem"
    assert jdbc_url({"Aurora": db}).endswith("&sslfactoryarg=/etc/ssl/ca.pem")
    assert tls_settings({"Aurora": db}, "Aurora")[1] == ("sslrootcert", "/etc/ssl/ca.pem")
    assert tls_settings({"Aurora": {"host": "h"}}, "Aurora") == []


def test_redshift_connections_ask_for_the_groups_sslmode():
    from connectors.warehouse import redshift_jdbc_url

    db = {"host": "wg.example", "port": "5439", "dbname": "dev", "user": "u", "password": "p"}
    assert redshift_jdbc_url({"Warehouse": db}) == "jdbc:redshift://wg.example:5439/dev"
    db.update(sslmode="verify-full", sslrootcert="certs/rds-ca-bundle.pem")
    assert redshift_jdbc_url({"Warehouse": db}) == (
        "jdbc:redshift://wg.example:5439/dev?ssl=true&sslmode=verify-full"
    )


# --- a real server ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> Path:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN=pizzastream {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return directory / f"{name}.crt"


def _server_certificate(directory: Path, ca: Path) -> Path:
    """``server.crt``/``server.key`` for localhost and 127.0.0.1, signed by ``ca``."""
    (directory / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        f"/CN={SERVER_NAME}",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        str(ca),
        "-CAkey",
        str(ca.with_suffix(".key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
        cwd=directory,
    )
    return directory / "server.crt"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TlsServer:
    """A PostgreSQL 15 cluster in a temporary directory that accepts TLS only."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.data = root / "data"
        self.ca = _ca(root, "ca")
        self.wrong_ca = _ca(root, "wrong-ca")
        _server_certificate(root, self.ca)

    def _pg(self, program: str, *args: str) -> None:
        argv = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:  # initdb refuses root
            argv = ["runuser", "-u", PG_SUPERUSER, "--", *argv]
        subprocess.run(
            argv, check=True, capture_output=True, cwd=self.root, stdin=subprocess.DEVNULL
        )

    def start(self) -> None:
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            PG_SUPERUSER,
            "-E",
            "UTF8",
            "--no-locale",
            "--auth-local=trust",
        )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.0/8 trust\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
        )
        for name in ("server.crt", "server.key"):
            shutil.copy(self.root / name, self.data / name)
            (self.data / name).chmod(0o600)
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_SUPERUSER)
            for path in [self.data, *self.data.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
        options = (
            f"-c listen_addresses='127.0.0.1,{OTHER_ADDRESS}' -p {self.port} "
            f"-k {self.root} -c ssl=on -c ssl_cert_file=server.crt "
            "-c ssl_key_file=server.key"
        )
        self._pg(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
        )

    def stop(self) -> None:
        self._pg("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def props(
        self, sslrootcert: Path | str, host: str = "127.0.0.1", sslmode: str = "verify-full"
    ) -> dict[str, dict[str, str]]:
        return {
            "Aurora": {
                "host": host,
                "port": str(self.port),
                "dbname": "postgres",
                "user": PG_SUPERUSER,
                "password": "unused",
                "sslmode": sslmode,
                "sslrootcert": str(sslrootcert),
            }
        }


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pizzastream-tls-pg-"))
    root.chmod(0o755)  # the postgres account reads the directory when we are root
    if os.geteuid() == 0:
        account = pwd.getpwnam(PG_SUPERUSER)
        os.chown(root, account.pw_uid, account.pw_gid)
    tls = TlsServer(root, _free_port())
    try:
        tls.start()
        yield tls
    finally:
        if (tls.data / "postmaster.pid").exists():
            tls.stop()
        shutil.rmtree(root, ignore_errors=True)


def _encrypted(props) -> bool:
    with aurora.connect(props) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    (ssl,) = row
    return ssl


def test_libpq_verify_full_connects_with_the_right_ca(server):
    assert _encrypted(server.props(server.ca)) is True
    assert _encrypted(server.props(server.ca, host=SERVER_NAME)) is True


def test_libpq_resolves_the_deployed_relative_path_against_the_application_root(
    server, tmp_path, monkeypatch
):
    (tmp_path / "certs").mkdir()
    shutil.copy(server.ca, tmp_path / certs.BUNDLE)
    # The root is pizzastream.settings' (config re-exports it), where the path is resolved.
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    assert _encrypted(server.props(certs.BUNDLE)) is True


def test_libpq_verify_full_refuses_a_wrong_ca_and_a_wrong_name(server):
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        _encrypted(server.props(server.wrong_ca))
    # The RDS bundle loads (a file libpq cannot read fails otherwise) and does not vouch
    # for this server.
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        _encrypted(server.props(certs.rds_ca_bundle()))
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        _encrypted(server.props(server.ca, host=OTHER_ADDRESS))
    # What verify-full adds to verify-ca: the name.
    assert _encrypted(server.props(server.ca, host=OTHER_ADDRESS, sslmode="verify-ca")) is True


def _jdbc(props, classpath: Path | None = None) -> subprocess.CompletedProcess:
    db = props["Aurora"]
    jars = str(DEPENDENCIES_JAR) + (f":{classpath}" if classpath else "")
    return subprocess.run(
        ["java", "-cp", jars, str(JDBC_PROBE), jdbc_url(props), db["user"], db["password"]],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pgjdbc_verify_full_connects_with_the_right_ca_only(server):
    right = _jdbc(server.props(server.ca))
    assert (right.returncode, right.stdout.strip()) == (0, "ssl=true"), right.stderr
    wrong = _jdbc(server.props(server.wrong_ca))
    assert wrong.returncode == 1 and "PKIX path" in wrong.stderr, wrong.stderr
    # pgjdbc reads the whole RDS bundle (Java's parser accepts its certificates) and finds
    # no CA of this server's in it.
    rds = _jdbc(server.props(certs.rds_ca_bundle()))
    assert rds.returncode == 1 and "PKIX path" in rds.stderr, rds.stderr
    name = _jdbc(server.props(server.ca, host=OTHER_ADDRESS))
    assert name.returncode == 1 and "hostname" in name.stderr.lower(), name.stderr


def test_pgjdbc_reads_a_relative_sslrootcert_from_the_classpath(server, tmp_path):
    """A relative ``sslrootcert`` is the copy inside the jar (deploy/pom.xml packs
    ``certs/``): here a directory on the classpath holds the test CA under that name."""
    (tmp_path / "certs").mkdir()
    shutil.copy(server.ca, tmp_path / "certs" / "test-ca.pem")
    right = _jdbc(server.props("certs/test-ca.pem"), classpath=tmp_path)
    assert (right.returncode, right.stdout.strip()) == (0, "ssl=true"), right.stderr
    missing = _jdbc(server.props("certs/test-ca.pem"))
    assert missing.returncode == 1 and "no resource certs/test-ca.pem" in missing.stderr, (
        missing.stderr
    )
