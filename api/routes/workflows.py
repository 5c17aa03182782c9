"""Workflow definitions: list the stored versions, lint an uploaded file, publish a new version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.auth import FunnelDep, UserDep
from api.errors import responses
from api.schemas import NO_NUL
from api.schemas_reference import LintProblemOut, PublishedOut, ValidationOut, VerdictOut, WorkflowVersionOut
from api.uploads import REQUEST_BODY, Upload, read_upload
from engine import lint, permissions
from engine.definitions import SourceDefinition, read_sources
from engine.errors import DefinitionError, InvalidInput, NotFound, Problem
from engine.instances import Funnel

router = APIRouter(prefix="/api/workflows", tags=["workflows"])
FileName = Annotated[str | None, Query(min_length=1, max_length=150, pattern=NO_NUL,
                                       description="name of a raw (non-multipart) upload; default upload.bpmn")]


async def _upload(request: Request, filename: FileName = None) -> Upload:
    """The uploaded files (the body is bounded by the BodyLimit middleware)."""
    return read_upload(await request.body(), request.headers.get("content-type", ""), filename=filename)


UploadDep = Annotated[Upload, Depends(_upload)]


@router.get("", responses=responses())
def workflows(f: FunnelDep, user: UserDep) -> list[WorkflowVersionOut]:
    """Every stored version of every workflow: stages, exit criteria, policies, outcomes, SLA policy."""
    out = []
    for row in f.definitions.versions():
        meta: dict[str, Any] = row.meta
        out.append(WorkflowVersionOut(
            workflow=row.workflow, version=row.version, id=row.id or 0, content_hash=row.content_hash,
            source=row.source_name, title=meta.get("title"), policy=meta.get("policy"),
            stages=meta.get("stages", []), outcomes=meta.get("outcomes", []), sla=meta.get("sla"),
            created_at=row.created_at))
    return out


@router.post("/validate", responses=responses(413, 422), openapi_extra={"requestBody": REQUEST_BODY})
def validate(user: UserDep, upload: UploadDep) -> ValidationOut:
    """Lint uploaded .bpmn/.dmn files: the same verdicts as `funnel validate` (a .bpmn sees the uploaded .dmn)."""
    verdicts = [lint.lint_document(content, name, companions=upload.dmn) for name, content in upload.bpmn.items()]
    verdicts += [lint.lint_document(content, name) for name, content in upload.dmn.items()]
    shaped = [VerdictOut(file=v.file, kind=v.kind, ok=v.ok, processes=v.processes,
                         problems=[LintProblemOut.model_validate(p.to_dict()) for p in v.problems]) for v in verdicts]
    return ValidationOut(ok=all(v.ok for v in verdicts), verdicts=shaped)


@router.post("", status_code=201, responses=responses(403, 413, 422), openapi_extra={"requestBody": REQUEST_BODY})
def publish(user: UserDep, upload: UploadDep, f: FunnelDep) -> list[PublishedOut]:
    """Publish each executable process of the uploaded .bpmn as a new version (process owners); a file that does
    not validate is refused with all its problems and nothing is published."""
    permissions.check_publish(user)
    if not upload.bpmn:
        raise InvalidInput("upload at least one .bpmn file (the .dmn files it calls may come with it)", "file")
    sources: list[SourceDefinition] = []
    problems: list[Problem] = []
    for name, content in upload.bpmn.items():
        try:
            sources.extend(read_sources(name, content, upload.dmn))
        except DefinitionError as err:
            problems.extend(err.problems)
    if problems:
        raise DefinitionError(problems)
    out = []
    for source in sources:
        previous = _latest_version(f, source.workflow)
        loaded = f.definitions.publish(source)
        out.append(PublishedOut(workflow=loaded.workflow, version=loaded.version, id=loaded.id,
                                content_hash=loaded.content_hash, new=loaded.version != previous))
    return out


def _latest_version(f: Funnel, workflow: str) -> int | None:
    try:
        return f.definitions.latest(workflow).version
    except NotFound:
        return None
