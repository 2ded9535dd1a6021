"""The POS stand-in's batches: spooled per store system, cut every interval, delivered to
S3 the way the contract warns a real POS delivers them.

A cut batch goes to the outbox (a local directory) with a delivery plan: when to put which
version of it under ``pos/landing/``. Faults are drawn per batch id from a seed, so a run
can be repeated:

- ``duplicate``: delivered, then the same batch again one interval later;
- ``truncate``: the gzip stream cut in half, the complete batch one interval later;
- ``short``: a tenth of the lines missing (manifest unchanged), complete one interval later;
- ``late``: held back ``late_s`` seconds (hours, on a real POS) before its only delivery.

A cut-short batch is followed by the complete one because that is how the POS recovers a
failed transfer; without it, those sales would be gone whatever the pipeline did. The plan
is on disk, so a restart still delivers what is due. Data goes up before the manifest,
which is what tells the ingestion a batch is there.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pizzastream.pos_batches import (
    DATA_SUFFIX,
    LANDING_PREFIX,
    MANIFEST_SUFFIX,
    BatchDigest,
    Manifest,
    SettledLine,
    batch_key,
)
from pizzastream.settings import PosSettings

log = logging.getLogger(__name__)

PLAN_SUFFIX = ".plan.json"
SHORT_SHARE_MISSING = 10  # a short delivery lacks 1/10 of the lines (at least one)


class Version(StrEnum):
    """What one delivery of a batch puts under ``pos/landing/``."""

    COMPLETE = "complete"
    TRUNCATED_GZIP = "truncated_gzip"
    SHORT = "short"


Step = tuple[float, Version]  # (due, epoch seconds; version)


@dataclass(frozen=True)
class Faults:
    """Shares of batches (0..1, together at most 1) that get each fault."""

    duplicate_share: float = 0.0
    truncate_share: float = 0.0
    short_share: float = 0.0
    late_share: float = 0.0
    late_s: float = 7200.0
    seed: int = 1

    @classmethod
    def from_settings(cls, pos: PosSettings) -> Faults:
        """From the typed ``Pos`` group (``pizzastream.settings.PosSettings``)."""
        return cls(
            pos.duplicate_share,
            pos.truncate_share,
            pos.short_share,
            pos.late_share,
            pos.late_s,
            seed=pos.fault_seed,
        )

    @classmethod
    def from_properties(cls, group: Mapping[str, str]) -> Faults:
        return cls(
            *(
                float(group.get(name, default))
                for name, default in (  # type: ignore[misc,arg-type]  # the five shares, then the seed by name
                    ("duplicate_share", 0),
                    ("truncate_share", 0),
                    ("short_share", 0),
                    ("late_share", 0),
                    ("late_s", 7200),
                )
            ),
            seed=int(group.get("fault_seed", 1)),
        )

    def plan(self, batch: str, now: float, interval_s: float) -> list[Step]:
        """The deliveries of one batch."""
        draw = random.Random(f"{self.seed}:{batch}").random()
        retry = now + interval_s
        for share, steps in (
            (self.duplicate_share, [(now, Version.COMPLETE), (retry, Version.COMPLETE)]),
            (self.truncate_share, [(now, Version.TRUNCATED_GZIP), (retry, Version.COMPLETE)]),
            (self.short_share, [(now, Version.SHORT), (retry, Version.COMPLETE)]),
            (self.late_share, [(now + self.late_s, Version.COMPLETE)]),
        ):
            if draw < share:
                return steps
            draw -= share
        return [(now, Version.COMPLETE)]


class Spool:
    """The open batch of one store system: gzipped lines on disk and their digest, so a
    15-minute batch at peak never sits in memory."""

    def __init__(self, directory: Path, system: int, systems: int):
        self.system = system
        self._path = directory / f"open-{system:02d}{DATA_SUFFIX}"
        self._file = gzip.open(self._path, "wb")  # noqa: SIM115 - the batch being written
        self._digest = BatchDigest(system, systems)

    def add(self, line: SettledLine) -> None:
        raw = line.to_json().encode() + b"\n"
        self._digest.add(raw)  # also proves the stand-in writes valid lines
        self._file.write(raw)

    def cut(self, batch: str, destination: Path) -> Manifest:
        """Closes the batch, moves its file to ``destination``; returns its manifest."""
        self._file.close()
        os.replace(self._path, destination)
        return self._digest.manifest(batch)


class Outbox:
    """Cut batches and their delivery plans, one ``<batch_id>`` file trio per batch."""

    def __init__(self, directory: Path, s3, bucket: str):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._s3 = s3
        self._bucket = bucket

    def data_path(self, batch: str) -> Path:
        return self.directory / f"{batch}{DATA_SUFFIX}"

    def add(self, manifest: Manifest, steps: list[Step]) -> None:
        """Registers a batch whose data is already at ``data_path``; the plan is written
        last and atomically, so a half-added batch is never delivered."""
        (self.directory / f"{manifest.batch_id}{MANIFEST_SUFFIX}").write_text(manifest.to_json())
        self._write_plan(manifest.batch_id, steps)

    def pump(self, now: float) -> list[tuple[str, Version]]:
        """Delivers every step that is due; returns ``(batch_id, version)`` delivered."""
        delivered = []
        for plan_path in sorted(self.directory.glob(f"*{PLAN_SUFFIX}")):
            batch = plan_path.name.removesuffix(PLAN_SUFFIX)
            steps = [(due, Version(version)) for due, version in json.loads(plan_path.read_text())]
            while steps and steps[0][0] <= now:
                self._deliver(batch, steps[0][1])
                delivered.append((batch, steps.pop(0)[1]))
                self._write_plan(batch, steps)
            if not steps:
                self._remove(batch)
        return delivered

    def pending(self) -> int:
        return sum(1 for _ in self.directory.glob(f"*{PLAN_SUFFIX}"))

    def _write_plan(self, batch: str, steps: list[Step]) -> None:
        temporary = self.directory / f"{batch}.plan.tmp"
        temporary.write_text(json.dumps(sorted(steps)))
        os.replace(temporary, self.directory / f"{batch}{PLAN_SUFFIX}")

    def _deliver(self, batch: str, version: Version) -> None:
        manifest = Manifest.from_json((self.directory / f"{batch}{MANIFEST_SUFFIX}").read_text())
        with tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            data = _version_file(self.data_path(batch), manifest, version, Path(scratch))
            self._s3.upload_file(
                str(data),
                self._bucket,
                batch_key(LANDING_PREFIX, manifest.store_system, batch, DATA_SUFFIX),
            )
        self._s3.put_object(
            Bucket=self._bucket,
            Body=manifest.to_json().encode(),
            Key=batch_key(LANDING_PREFIX, manifest.store_system, batch, MANIFEST_SUFFIX),
        )
        log.info("delivered %s (%s, %d lines)", batch, version, manifest.record_count)

    def _remove(self, batch: str) -> None:
        for suffix in (DATA_SUFFIX, MANIFEST_SUFFIX, PLAN_SUFFIX):
            (self.directory / f"{batch}{suffix}").unlink(missing_ok=True)


def _version_file(data: Path, manifest: Manifest, version: Version, scratch: Path) -> Path:
    """The file to upload for ``version``: the batch itself or a damaged copy of it."""
    if version == Version.COMPLETE:
        return data
    damaged = scratch / data.name
    if version == Version.TRUNCATED_GZIP:
        shutil.copyfile(data, damaged)
        os.truncate(damaged, data.stat().st_size // 2)
        return damaged
    missing = max(1, manifest.record_count // SHORT_SHARE_MISSING)
    keep = max(0, manifest.record_count - missing)
    with gzip.open(data, "rb") as source, gzip.open(damaged, "wb") as target:
        for _, line in zip(range(keep), source):
            target.write(line)
    return damaged
