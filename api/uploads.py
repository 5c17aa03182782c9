"""Workflow file uploads: a multipart form (one or more .bpmn/.dmn files) or the raw file as the body.

Multipart is read with the standard library's MIME parser (the body is already bounded by BodyLimit),
so no extra dependency is needed; anything that is not a readable upload is an InvalidInput (422).
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidInput

SUFFIXES = (".bpmn", ".dmn")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,150}")
# The OpenAPI request body of the upload routes (they read the body themselves).
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "a .bpmn file (and the .dmn files it calls) as multipart/form-data, or one file as the body",
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary", "description": "a .bpmn or .dmn file"}},
            "required": ["file"]}},
        "application/xml": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


@dataclass
class Upload:
    """The uploaded workflow documents by file name, BPMN and DMN apart, in upload order."""

    bpmn: dict[str, bytes] = field(default_factory=dict)
    dmn: dict[str, bytes] = field(default_factory=dict)


def read_upload(body: bytes, content_type: str, *, filename: str | None) -> Upload:
    """Split a request body into the workflow files it carries; the default raw file name is upload.bpmn."""
    if not body.strip():
        raise InvalidInput("the request has no file: upload a .bpmn file (multipart field 'file', or the "
                           "file itself as the body)", "file")
    files = _multipart(body, content_type) if content_type.lower().startswith("multipart/") else [
        (filename or "upload.bpmn", body)]
    upload = Upload()
    for name, content in files:
        clean = _name(name)
        target = upload.bpmn if clean.lower().endswith(".bpmn") else upload.dmn
        if clean in target:
            raise InvalidInput(f"the file name {clean!r} appears twice in the upload", "file")
        target[clean] = content
    return upload


def _multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    if "boundary=" not in content_type.lower():
        raise InvalidInput("multipart/form-data needs a boundary parameter in Content-Type", "file")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InvalidInput("the multipart body could not be read; send a multipart/form-data form", "file")
    files: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        name = part.get_filename() or ""
        payload = part.get_payload(decode=True)
        if not name or not isinstance(payload, bytes):
            continue  # a plain form field: not a file
        files.append((name, payload))
    if not files:
        raise InvalidInput("the form has no file part: send the .bpmn as field 'file' with a filename", "file")
    return files


def _name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not _SAFE_NAME.fullmatch(base) or not base.lower().endswith(SUFFIXES):
        raise InvalidInput(f"file name {name[:100]!r} must be a plain name ending in .bpmn or .dmn", "filename")
    return base
