"""The Lambda functions' code package, built from the project's own files.

``lambda_package()`` returns ``deploy/target/lambda``: the packages the handlers import
(``pizzastream``, ``connectors``, ``etl``; ``.py`` files only), the schema files of the
database set-up (``stack/sql``, ``deploy/redshift``), the (empty) properties file
the functions start from (``conf/aws``), and ``requirements-lambda.txt`` installed for
Lambda's platform (CPython 3.11, manylinux x86_64, wheels only, as ``package.sh`` does for
MSF). It is rebuilt when any input changed since the last build, and reused otherwise, so a
synth does not reinstall the same wheels.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from deploy import certs

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
LAMBDA_DIR = DEPLOY_DIR / "target" / "lambda"
LAMBDA_REQUIREMENTS = DEPLOY_DIR / "requirements-lambda.txt"
LAMBDA_PACKAGES = ("pizzastream", "connectors", "etl")
PROPERTIES = Path("conf") / "aws" / "application_properties.json"
# The schema files the database set-up runs (connectors.dbsetup), at the same paths
# relative to the package as in the repository.
SQL_FILES = ("stack/sql/*.sql", "deploy/redshift/*.sql")


def _sql_files() -> list[Path]:
    return sorted(path for pattern in SQL_FILES for path in REPO_ROOT.glob(pattern))


def _sources() -> list[Path]:
    files = [LAMBDA_REQUIREMENTS, REPO_ROOT / PROPERTIES]
    for package in LAMBDA_PACKAGES:
        files += sorted((REPO_ROOT / package).rglob("*.py"))
    return files + _sql_files()


def _digest() -> str:
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def lambda_package(python: str = sys.executable) -> Path:
    bundle = certs.rds_ca_bundle()
    stamp = LAMBDA_DIR / ".inputs-sha256"
    digest = _digest()
    if stamp.exists() and stamp.read_text() == digest:
        _copy_bundle(bundle)
        return LAMBDA_DIR
    shutil.rmtree(LAMBDA_DIR, ignore_errors=True)
    LAMBDA_DIR.mkdir(parents=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(LAMBDA_DIR),
            "--platform",
            "manylinux2014_x86_64",
            "--implementation",
            "cp",
            "--python-version",
            "3.11",
            "--only-binary=:all:",
            "-r",
            str(LAMBDA_REQUIREMENTS),
        ],
        check=True,
    )
    for package in LAMBDA_PACKAGES:
        shutil.copytree(
            REPO_ROOT / package,
            LAMBDA_DIR / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    for path in _sql_files():
        target = LAMBDA_DIR / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (LAMBDA_DIR / PROPERTIES).parent.mkdir(parents=True)
    shutil.copy(REPO_ROOT / PROPERTIES, LAMBDA_DIR / PROPERTIES)
    _copy_bundle(bundle)
    stamp.write_text(digest)
    return LAMBDA_DIR


def _copy_bundle(bundle: Path) -> None:
    target = LAMBDA_DIR / certs.BUNDLE
    if not target.exists() or target.read_bytes() != bundle.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(bundle, target)
