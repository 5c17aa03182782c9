"""The linter behind `funnel validate PATH...`: every problem of a workflow file, saying what to fix.

It never raises: whatever the bytes (not XML, empty, garbage, entity bombs), the answer is a Verdict.
Structure checks live in lint_bpmn, expression and timer checks in lint_expr, decision tables in lint_dmn.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lxml import etree
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser.process import VALIDATOR

from engine import lint_assignment, lint_bpmn, lint_dmn, lint_expr
from engine.errors import Problem
from engine.lint_common import BPMN_NS, NS, Findings, element_id, short_tags
from engine.spiff import parse_sources, problem_from_spiff, xml_parser
from engine.stages import parse_workflow_meta

MAX_BYTES = 20_000_000  # far beyond any real workflow file; refusing protects memory
SUFFIXES = (".bpmn", ".dmn")
PROCESS_CHECKS: tuple[tuple[str, Callable[[Findings, etree._Element], None]], ...] = (
    ("structure", lint_bpmn.check_blockers),
    ("expression", lint_expr.check_expressions),
    ("timer", lint_expr.check_timers),
    ("loop", lint_bpmn.check_loops),
)

__all__ = ["Verdict", "format_verdicts", "lint_document", "lint_paths"]


@dataclass
class Verdict:
    """What the linter says about one file."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    kind: str = "unknown"  # "bpmn" | "dmn" | "unknown"

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kind": self.kind, "ok": self.ok, "processes": list(self.processes),
                "problems": [p.to_dict() for p in self.problems]}


def lint_document(content: bytes, filename: str, *, companions: Mapping[str, bytes] | None = None) -> Verdict:
    """Check one BPMN or DMN document; `companions` are the DMN files its business rule tasks may call."""
    findings = Findings(file=filename)
    verdict = Verdict(file=filename)
    try:
        root = _parse(findings, content)
        if root is not None:
            verdict.kind = _kind(findings, root)
            if verdict.kind == "bpmn":
                verdict.processes = _lint_bpmn(findings, root, content, companions or {})
            elif verdict.kind == "dmn" and not findings.problems:
                verdict.processes = _lint_dmn(findings, root)
    except Exception as err:
        findings.add(None, f"the linter could not complete ({type(err).__name__}: {err}); "
                           "fix the problems listed and validate again")
    one_line = [replace(p, message=re.sub(r"\s*\n\s*", " ", p.message)) for p in findings.problems]
    verdict.problems = sorted(one_line, key=lambda p: p.line or 0)
    return verdict


def _parse(findings: Findings, content: bytes) -> etree._Element | None:
    """The document's root, or None with the reason it cannot be read."""
    if len(content) > MAX_BYTES:
        findings.add(None, f"the file is {len(content):,} bytes, too large to be a workflow file")
        return None
    if not content.strip():
        findings.add(None, "the file is empty: save the process or decision from the modeler again")
        return None
    try:
        root = etree.fromstring(content, xml_parser())
    except etree.XMLSyntaxError as err:
        text = str(err.msg or err)
        if "limit exceeded" in text.lower() and "entit" not in text.lower():
            findings.add(None, "the file holds a text or attribute of more than 10 MB, far more than any "
                               "workflow needs: remove it", line=err.lineno or None)
        elif "entit" in text.lower():
            findings.add(None, "the file declares XML entities that expand without bound (an entity bomb): "
                               "BPMN and DMN files never need a DOCTYPE, remove it", line=err.lineno or None)
        else:
            findings.add(None, f"the file is not well-formed XML: {text}", line=err.lineno or None)
        return None
    if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
        findings.add(None, "the file has a DOCTYPE declaration; BPMN and DMN files never need one and its "
                           "entities are not expanded: remove it", line=1)
        return None
    return root


def _kind(findings: Findings, root: etree._Element) -> str:
    """bpmn, dmn or unknown, by the namespace of the root element."""
    name = etree.QName(root)
    if name.localname == "definitions" and name.namespace == BPMN_NS:
        return "bpmn"
    if name.localname == "definitions" and name.namespace in DMN_SCHEMAS:
        return "dmn"
    if "omg.org/spec/DMN" in (name.namespace or ""):
        findings.add(root, f"DMN version {name.namespace} is not supported: save the decision as DMN 1.3 "
                           "(or 1.2/1.1)")
        return "dmn"
    findings.add(root, f"not a BPMN or DMN file: its root element is <{name.localname}>"
                       + (f" in namespace {name.namespace}" if name.namespace else " without a namespace"))
    return "unknown"


def _schema_errors(findings: Findings, root: etree._Element, schema: etree.XMLSchema, what: str) -> bool:
    """Validate against the XSD and report every error with its line; True when valid."""
    tree = copy.deepcopy(root)
    if what == "BPMN 2.0":
        VALIDATOR.preprocess(tree)  # the same tweak SpiffWorkflow makes for bpmn.js correlation properties
    if schema.validate(tree):
        return True
    ns = {k: v for k, v in {**NS, **tree.nsmap}.items() if k}
    for entry in schema.error_log:
        node = None
        try:
            found = tree.xpath(entry.path, namespaces=ns) if entry.path else []
            node = found[0] if isinstance(found, list) and found else None
        except Exception:
            node = None
        findings.add(None, f"the file breaks the {what} schema: {short_tags(entry.message)}",
                     element=element_id(node) if isinstance(node, etree._Element) else None,
                     line=entry.line or None)
    return False


@functools.cache
def _dmn_schema(namespace: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(DMN_SCHEMAS[namespace]))


def _lint_bpmn(findings: Findings, root: etree._Element, content: bytes, companions: Mapping[str, bytes]
               ) -> list[str]:
    """All BPMN checks; returns the ids of the executable processes."""
    valid = False

    def schema() -> None:
        nonlocal valid
        valid = _schema_errors(findings, root, VALIDATOR.validator, "BPMN 2.0")

    findings.guarded("schema", schema)
    processes = root.findall("bpmn:process", NS)
    runnable = [p for p in processes if lint_bpmn.executable(p)]
    for process in processes:
        before = findings.errors()
        for check, action in PROCESS_CHECKS:
            findings.guarded(check, functools.partial(action, findings, process))
        if not lint_bpmn.executable(process):
            lint_bpmn.describe_descriptive(findings, process, findings.errors() - before)
    findings.guarded("data store", lambda: lint_bpmn.check_data_stores(findings, root))
    findings.guarded("message flow", lambda: lint_bpmn.check_message_flows(findings, root))
    if not runnable:
        lint_bpmn.describe_nothing_to_run(findings, root, len(processes))
    ids = [p.get("id") or "?" for p in runnable]
    if runnable and valid:
        findings.guarded("engine", lambda: _engine_load(findings, root, content, ids, companions))
    for process in runnable:
        findings.guarded("stage metadata", functools.partial(_stage_metadata, findings, process))
        findings.guarded("assignment", functools.partial(
            lint_assignment.check_references, findings, process, companions))
    findings.guarded("diagram", lambda: lint_bpmn.check_diagram(findings, root))
    return ids


def _stage_metadata(findings: Findings, process: etree._Element) -> None:
    findings.problems.extend(parse_workflow_meta(process, findings.file)[1])


def _engine_load(findings: Findings, root: etree._Element, content: bytes, ids: list[str],
                 companions: Mapping[str, bytes]) -> None:
    """Load the file as the engine will; its first refusal is reported unless a check already said it."""
    try:
        parse_sources({findings.file: content}, lint_dmn.loadable(companions, xml_parser()), process_ids=ids)
    except Exception as err:
        _add_engine_problem(findings, root, problem_from_spiff(err, findings.file))


def _add_engine_problem(findings: Findings, root: etree._Element, problem: Problem) -> None:
    flagged = {p.element for p in findings.problems if p.severity == "error" and p.element}
    if problem.element in flagged:
        return
    if "Data Store" in problem.message and any("data store" in p.message for p in findings.problems):
        return
    line = problem.line
    if line is None and problem.element:
        found = root.xpath("//*[@id=$id]", id=problem.element)
        first = found[0] if isinstance(found, list) and found else None
        line = first.sourceline if isinstance(first, etree._Element) else None
    where = "" if problem.file == findings.file else f" (in {problem.file})"
    findings.problems.append(replace(problem, file=findings.file, line=line,
                                     message=f"the engine cannot load it{where}: {problem.message}"))


def _lint_dmn(findings: Findings, root: etree._Element) -> list[str]:
    """All DMN checks; returns the decision ids."""
    valid = False

    def schema() -> None:
        nonlocal valid
        valid = _schema_errors(findings, root, _dmn_schema(etree.QName(root).namespace or ""), "DMN")

    findings.guarded("schema", schema)
    decisions: list[str] = []

    def tables() -> None:
        decisions.extend(lint_dmn.check_decisions(findings, root))

    findings.guarded("decision", tables)
    if valid and len(decisions) == 1:  # SpiffWorkflow trips over several decisions; reported above
        findings.guarded("engine", lambda: _engine_load_dmn(findings, root))
    return decisions


def _engine_load_dmn(findings: Findings, root: etree._Element) -> None:
    try:
        lint_dmn.spiff_parse(copy.deepcopy(root), findings.file)
    except Exception as err:
        _add_engine_problem(findings, root, problem_from_spiff(err, findings.file))


def lint_paths(paths: Iterable[str | Path]) -> list[Verdict]:
    """Lint files and folders (every *.bpmn and *.dmn below a folder, sorted)."""
    verdicts: list[Verdict] = []
    for given in paths:
        path = Path(given)
        try:
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            elif path.is_file():
                files = [path]
            else:
                verdicts.append(_unreadable(str(given), "no such file or folder"))
                continue
        except OSError as err:
            verdicts.append(_unreadable(str(given), f"cannot be read: {err}"))
            continue
        verdicts.extend(_lint_file(p) for p in files)
    return verdicts


def _unreadable(file: str, message: str) -> Verdict:
    return Verdict(file=file, problems=[Problem(file=file, message=message)])


def _lint_file(path: Path) -> Verdict:
    """Read one file (and, for BPMN, the DMN files beside it) and lint it."""
    try:
        content = path.read_bytes()
        companions: dict[str, bytes] = {}
        if path.suffix.lower() == ".bpmn":
            for dmn in sorted(path.parent.glob("*.dmn")):
                companions[str(dmn)] = dmn.read_bytes()
    except OSError as err:
        return _unreadable(str(path), f"the file cannot be read: {err}")
    return lint_document(content, str(path), companions=companions)


def format_verdicts(verdicts: list[Verdict]) -> str:
    """Human text: 'file: ok' or one line per problem, then a one-line summary."""
    lines: list[str] = []
    for verdict in verdicts:
        if verdict.ok:
            lines.append(f"{verdict.file}: ok")
        for problem in verdict.problems:
            where = verdict.file + (f":{problem.line}" if problem.line else "")
            where += f" [{problem.element}]" if problem.element else ""
            lines.append(f"{where} {problem.severity}: {problem.message}")
    failed = sum(1 for v in verdicts if not v.ok)
    lines.append(f"{len(verdicts)} file(s) checked, {failed} with problems")
    return "\n".join(lines)
