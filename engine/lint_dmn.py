"""Linter checks for DMN decision tables: the engine's cells are Python, not FEEL, and two hit policies."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping

from lxml import etree
from SpiffWorkflow.dmn.parser.BpmnDmnParser import BpmnDmnParser

from engine.lint_common import Findings, Severity, label, local, sandbox_reasons

HIT_POLICIES = ("UNIQUE", "COLLECT")
RANGE = re.compile(r"\s*([\[(\]])\s*([^.\s][^.]*?)\s*\.\.\s*([^.\s][^.]*?)\s*([\])\[])\s*")
FEEL_NOT = re.compile(r"\s*not\s*\((.*)\)\s*", re.DOTALL)
FEEL_FUNCTION = re.compile(
    r"\b(date and time|years and months duration|days and time duration|date|time|duration|"
    r"string length|upper case|lower case|starts with|ends with|list contains|substring)\s*\(")
FEEL_WORDS = {"true": "True", "false": "False", "null": "None"}
OPERATOR_START = re.compile(r"\s*(<=|>=|==|!=|<|>|in\b|not\s+in\b|is\b)")
QUESTION = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")  # a `?` outside quotes, as Spiff finds it
STRINGS = re.compile(r"\"[^\"]*\"|'[^']*'")


def check_decisions(findings: Findings, root: etree._Element) -> list[str]:
    """Hit policies and every cell of every decision table; returns the decision ids."""
    ns = etree.QName(root).namespace
    decisions = root.findall(f"{{{ns}}}decision")
    if not decisions:
        findings.add(root, "the file defines no decision: there is nothing to run; add a decision table")
    for extra in decisions[1:]:
        findings.add(extra, f"decision '{label(extra)}' is one too many: the engine reads one decision per "
                            "DMN file; move it to a file of its own")
    for decision in decisions:
        if decision.find(f"{{{ns}}}decisionTable") is None:
            findings.add(decision, f"decision '{label(decision)}' has no decision table (literal expressions "
                                   "and other decision logic are not supported): model it as a table")
    for table in root.iter(f"{{{ns}}}decisionTable"):
        findings.guarded("decision table", functools.partial(_check_table, findings, table, ns))
    return [d.get("id") or "?" for d in decisions]


def _check_table(findings: Findings, table: etree._Element, ns: str | None) -> None:
    policy = (table.get("hitPolicy") or "UNIQUE").strip().upper()
    name = label(table.getparent())
    if policy not in HIT_POLICIES:
        findings.add(table, f"decision '{name}' uses hit policy {policy}, which the engine does not "
                            "support: use UNIQUE (the first matching rule gives the result) or COLLECT "
                            "(every matching rule, each output as a list)")
    elif table.get("aggregation"):
        findings.add(table, f"decision '{name}' aggregates its COLLECT results ({table.get('aggregation')}), "
                            "which the engine ignores: drop the aggregation and compute it in a script")
    columns = [_column_name(c, ns) for c in table.iterfind(f"{{{ns}}}input")]
    for expression in table.iterfind(f"{{{ns}}}input/{{{ns}}}inputExpression/{{{ns}}}text"):
        for reason in sandbox_reasons((expression.text or "").strip() or "None"):
            findings.add(expression, f"the input expression of decision '{name}' is refused: {reason}")
    for number, rule in enumerate(table.iterfind(f"{{{ns}}}rule"), start=1):
        cells = [c for c in rule if local(c) in ("inputEntry", "outputEntry")]
        inputs = [c for c in cells if local(c) == "inputEntry"]
        for cell in cells:
            text_node = cell.find(f"{{{ns}}}text")
            node = text_node if text_node is not None else cell
            is_input = local(cell) == "inputEntry"
            where = f"rule {number}, output"
            if is_input:
                index = inputs.index(cell)
                where = f"rule {number}, column '{columns[index] if index < len(columns) else index + 1}'"
            for message, severity in cell_problems((node.text or "") if text_node is not None else "",
                                                   is_input=is_input):
                findings.add(node, f"{where}: {message}", severity=severity)


def _column_name(column: etree._Element, ns: str | None) -> str:
    text = column.find(f"{{{ns}}}inputExpression/{{{ns}}}text")
    expression = (text.text or "").strip() if text is not None else ""
    return column.get("label") or expression or label(column)


def cell_problems(text: str, *, is_input: bool) -> list[tuple[str, Severity]]:
    """FEEL-isms with their Python equivalent, else the sandbox's reasons; (message, severity) pairs."""
    cell = text.strip()
    if not cell:
        return []
    if cell == "-":
        if is_input:
            return [('"-" is FEEL for "any value": leave the cell empty (the engine accepts "-" too)',
                     "warning")]
        return [('"-" is FEEL, not a Python value: leave the cell empty or write a value', "error")]
    feel = _feel(cell, is_input=is_input)
    if feel:
        return [(feel, "error")]
    return [(reason if cell in reason else f"{reason} (in {cell!r})", "error")
            for reason in _sandbox(cell, is_input=is_input)]


def _feel(cell: str, *, is_input: bool) -> str | None:
    """The FEEL construct in a cell and the Python to write instead (None when there is none)."""
    if match := RANGE.fullmatch(cell):
        low, lo, hi, high = match.groups()
        left = "<=" if low == "[" else "<"
        right = "<=" if high == "]" else "<"
        return (f"{cell} is a FEEL range; cells are Python: write {lo} {left} ? {right} {hi} "
                "(? stands for the input value)")
    if match := FEEL_NOT.fullmatch(cell):
        inner = match.group(1).strip()
        python = f"not in ({inner})" if _is_tuple(inner) else f"!= {inner}"
        return f"{cell} is FEEL negation; cells are Python: write {python}"
    if match := FEEL_FUNCTION.search(STRINGS.sub('""', cell)):
        return (f"{match.group(1)}(...) is a FEEL function that Python cells do not have: compare with an "
                'ISO text instead (e.g. > "2025-01-31") or prepare the value in a script task')
    if is_input and _is_tuple(cell):
        elements = ast.parse(cell, mode="eval").body.elts  # type: ignore[attr-defined]
        items = ", ".join(ast.get_source_segment(cell, e) or ast.unparse(e) for e in elements)
        return (f"{cell} is a FEEL list, but in Python it is a tuple and never equals a single value: "
                f"write in ({items})")
    words = sorted({w for w in re.findall(r"\b[a-z]+\b", STRINGS.sub('""', cell)) if w in FEEL_WORDS})
    if words:
        fixes = ", ".join(f"{w} -> {FEEL_WORDS[w]}" for w in words)
        return f"{cell} uses FEEL words; Python writes them capitalised: {fixes}"
    return None


def _is_tuple(text: str) -> bool:
    try:
        return isinstance(ast.parse(text.strip(), mode="eval").body, ast.Tuple)
    except SyntaxError:
        return False


def _sandbox(cell: str, *, is_input: bool) -> list[str]:
    """Check a cell the way SpiffWorkflow's DMN engine will run it (`v > 100` for `> 100`)."""
    if not is_input:
        return sandbox_reasons(cell)
    if QUESTION.search(cell):
        return sandbox_reasons(QUESTION.sub("v", cell))
    plain = sandbox_reasons(cell)
    if not plain:
        return []
    prefixed = sandbox_reasons(f"v {cell}")
    if not prefixed:
        return []
    return prefixed if OPERATOR_START.match(cell) else plain


def spiff_parse(content_root: etree._Element, filename: str) -> None:
    """Let SpiffWorkflow read the tables the way the engine will; raises what it finds."""
    parser = BpmnDmnParser()
    parser.add_dmn_xml(content_root, filename=filename)
    for dmn_parser in parser.dmn_parsers.values():
        dmn_parser.parse()


def loadable(companions: Mapping[str, bytes], xml_parser: etree.XMLParser) -> dict[str, bytes]:
    """The companion DMN files that load on their own: a broken one is reported in its own verdict."""
    return {name: content for name, content in companions.items() if _loads(name, content, xml_parser)}


def _loads(name: str, content: bytes, xml_parser: etree.XMLParser) -> bool:
    try:
        root = etree.fromstring(content, xml_parser)
        dmn = "omg.org/spec/DMN" in (etree.QName(root).namespace or "")
        if root.getroottree().docinfo.internalDTD is None and dmn and local(root) == "definitions":
            spiff_parse(root, name)
            return True
    except Exception:
        return False
    return False
