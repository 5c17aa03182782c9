"""Definition versions: load workflow files, store each executable process by content hash, cache specs.

New instances start on the newest version of a workflow; a running instance keeps the version it
started on because its row points at the stored version (source, parsed spec and stage metadata),
never at the file on disk.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import lint
from engine.clock import utcnow
from engine.db import read_session
from engine.errors import DefinitionError, NotFound, Problem
from engine.models import DefinitionVersion
from engine.spiff import ParsedSpecs, parse_sources, xml_parser
from engine.stages import NS, WorkflowMeta, parse_workflow_meta

MAX_DEFINITION_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class SourceDefinition:
    """One executable process as found in a file, with the DMN documents it may call."""

    workflow: str
    source_name: str
    bpmn: bytes
    dmn: Mapping[str, bytes]

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256(self.bpmn)
        for name in sorted(self.dmn):
            digest.update(b"\0" + name.encode() + b"\0" + self.dmn[name])
        return digest.hexdigest()


@dataclass(frozen=True)
class LoadedDefinition:
    """A stored version ready to run: its row id, parsed specs, metadata and the DMN files it calls."""

    id: int
    workflow: str
    version: int
    content_hash: str
    specs: ParsedSpecs
    meta: WorkflowMeta
    dmn: Mapping[str, str]


def read_sources(bpmn_name: str, bpmn: bytes, dmn: Mapping[str, bytes]) -> list[SourceDefinition]:
    """Lint one BPMN document (with its DMN companions); return its executable processes or raise."""
    if len(bpmn) > MAX_DEFINITION_BYTES:
        raise DefinitionError([Problem(bpmn_name, f"the file is larger than {MAX_DEFINITION_BYTES} bytes")])
    verdict = lint.lint_document(bpmn, bpmn_name, companions=dmn)
    if not verdict.ok:
        raise DefinitionError([p for p in verdict.problems if p.severity == "error"])
    return [SourceDefinition(pid, bpmn_name, bpmn, dict(dmn)) for pid in verdict.processes]


def read_folder(folder: Path) -> list[SourceDefinition]:
    """Every executable process in `folder`; every problem in every file is reported together."""
    if not folder.is_dir():
        raise DefinitionError([Problem(str(folder), "the workflows folder does not exist")])
    dmn = {p.name: p.read_bytes() for p in sorted(folder.glob("*.dmn"))}
    found: list[SourceDefinition] = []
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.bpmn")):
        try:
            found.extend(read_sources(str(path), path.read_bytes(), dmn))
        except DefinitionError as err:
            problems.extend(err.problems)
    if problems:
        raise DefinitionError(problems)
    return found


def build(source: SourceDefinition) -> tuple[ParsedSpecs, WorkflowMeta]:
    """Parse specs and stage metadata of one process (the source was linted already)."""
    specs = parse_sources({source.source_name: source.bpmn}, source.dmn, process_ids=[source.workflow])
    root = etree.fromstring(source.bpmn, xml_parser())
    process = root.find(f"bpmn:process[@id='{source.workflow}']", NS)
    if process is None:
        raise DefinitionError([Problem(source.source_name, f"process '{source.workflow}' not found")])
    meta, problems = parse_workflow_meta(process, source.source_name)
    if problems:
        raise DefinitionError(problems)
    return specs[source.workflow], meta


class DefinitionStore:
    """Stores versions in the database and keeps a bounded cache of parsed specs by version id."""

    def __init__(self, engine: Engine, *, cache_size: int = 64) -> None:
        self.engine = engine
        self.cache_size = cache_size
        self._cache: OrderedDict[int, LoadedDefinition] = OrderedDict()
        self._lock = Lock()

    def publish(self, source: SourceDefinition) -> LoadedDefinition:
        """Store `source` as a new version unless the newest version has the same content."""
        specs, meta = build(source)
        with Session(self.engine) as session:
            latest = self._latest_row(session, source.workflow)
            if latest is not None and latest.content_hash == source.content_hash:
                return self.get(latest.id)  # type: ignore[arg-type]
            row = DefinitionVersion(
                workflow=source.workflow,
                version=(latest.version + 1) if latest else 1,
                content_hash=source.content_hash,
                source_name=Path(source.source_name).name,
                bpmn=source.bpmn.decode("utf-8"),
                dmn={k: v.decode("utf-8") for k, v in source.dmn.items()},
                spec=specs.to_dict(),
                meta=meta.to_dict(),
                created_at=utcnow(),
            )
            session.add(row)
            try:
                session.commit()
            except sa.exc.IntegrityError:
                session.rollback()  # another process published the same version first: use theirs
                latest = self._latest_row(session, source.workflow)
                assert latest is not None and latest.id is not None
                return self.get(latest.id)
            session.refresh(row)
            assert row.id is not None
            loaded = LoadedDefinition(row.id, row.workflow, row.version, row.content_hash, specs, meta,
                                      dict(row.dmn))
        self._remember(loaded)
        return loaded

    def sync_folder(self, folder: Path) -> list[LoadedDefinition]:
        """Publish every executable process of `folder` (no-op for unchanged files)."""
        return [self.publish(source) for source in read_folder(folder)]

    def latest(self, workflow: str) -> LoadedDefinition:
        with read_session(self.engine) as session:
            row = self._latest_row(session, workflow)
        if row is None or row.id is None:
            raise NotFound(f"no workflow named '{workflow}'; known: {', '.join(self.names()) or 'none'}")
        return self.get(row.id)

    def names(self) -> list[str]:
        with read_session(self.engine) as session:
            return list(session.exec(select(DefinitionVersion.workflow).distinct().order_by("workflow")))

    def versions(self) -> list[DefinitionVersion]:
        with read_session(self.engine) as session:
            stmt = select(DefinitionVersion).order_by("workflow", "version")
            return list(session.exec(stmt))

    def get(self, version_id: int) -> LoadedDefinition:
        """The parsed version, from the cache or rebuilt from its stored spec (never from the file)."""
        with self._lock:
            hit = self._cache.get(version_id)
            if hit is not None:
                self._cache.move_to_end(version_id)
                return hit
        with read_session(self.engine) as session:
            row = session.get(DefinitionVersion, version_id)
        if row is None:
            raise NotFound(f"definition version {version_id} does not exist")
        loaded = LoadedDefinition(
            version_id, row.workflow, row.version, row.content_hash,
            ParsedSpecs.from_dict(row.workflow, row.spec), WorkflowMeta.from_dict(row.meta), dict(row.dmn),
        )
        self._remember(loaded)
        return loaded

    def _remember(self, loaded: LoadedDefinition) -> None:
        with self._lock:
            self._cache[loaded.id] = loaded
            self._cache.move_to_end(loaded.id)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    @staticmethod
    def _latest_row(session: Session, workflow: str) -> DefinitionVersion | None:
        stmt: Any = (
            select(DefinitionVersion)
            .where(DefinitionVersion.workflow == workflow)
            .order_by(sa.desc(col(DefinitionVersion.version)))
            .limit(1)
        )
        return session.exec(stmt).first()
