"""Linter checks for DMN decision tables: the engine's cells are Python, not FEEL, and two hit policies."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree
from SpiffWorkflow.dmn.parser.BpmnDmnParser import BpmnDmnParser

from engine.lint_common import Findings, Severity, label, local, sandbox_reasons
from engine.models.people import STRATEGIES

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
    if policy == "UNIQUE":
        _check_overlaps(findings, table, ns, columns)
    _check_strategies(findings, table, ns)
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


# ---------------------------------------------------------------- UNIQUE tables: can two rows both match?


@dataclass(frozen=True)
class Condition:
    """The values one cell accepts: any, a set, all but a set, a range (minus points), or unknown."""

    kind: str  # any | points | not_points | range | unknown
    points: frozenset[Any] = frozenset()
    low: Any = None
    low_closed: bool = False
    high: Any = None
    high_closed: bool = False


ANY = Condition("any")
UNKNOWN = Condition("unknown")
_FLIP = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


def condition(cell: str | None) -> Condition:
    """What a cell accepts, read the way SpiffWorkflow runs it (`"A"` is ==, `> 5` gets the input prefixed)."""
    text = (cell or "").strip()
    if not text or text == "-":
        return ANY
    if QUESTION.search(text):
        source = QUESTION.sub(" v ", text)
    else:
        try:
            ast.parse(text, mode="exec")
            source = f"v == ({text})"
        except SyntaxError:
            source = f"v {text}"
    try:
        return _condition(ast.parse(source.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return UNKNOWN


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(node)
        hash(value)
        return True, value
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False, None


def _condition(node: ast.AST) -> Condition:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        found = ANY
        for part in node.values:
            found = intersect(found, _condition(part))
        return found
    if not isinstance(node, ast.Compare):
        return UNKNOWN
    found, left = ANY, node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        found = intersect(found, _comparison(left, op, right))
        left = right
    return found


def _comparison(left: ast.AST, op: ast.cmpop, right: ast.AST) -> Condition:
    """One `v <op> literal` (or `literal <op> v`) as a Condition."""
    if isinstance(right, ast.Name) and right.id == "v" and type(op) in _FLIP:
        left, op, right = right, _FLIP[type(op)](), left
    if not (isinstance(left, ast.Name) and left.id == "v"):
        return UNKNOWN
    if isinstance(op, ast.In | ast.NotIn):
        if not isinstance(right, ast.Tuple | ast.List | ast.Set):
            return UNKNOWN  # `in "text"` is a substring test
        ok, values = _literal(ast.Tuple(elts=right.elts, ctx=ast.Load()))
        return Condition("points" if isinstance(op, ast.In) else "not_points", frozenset(values)) if ok else UNKNOWN
    ok, value = _literal(right)
    if not ok:
        return UNKNOWN
    if isinstance(op, ast.Eq | ast.Is):
        return Condition("points", frozenset([value]))
    if isinstance(op, ast.NotEq | ast.IsNot):
        return Condition("not_points", frozenset([value]))
    if isinstance(op, ast.Gt | ast.GtE):
        return Condition("range", low=value, low_closed=isinstance(op, ast.GtE))
    if isinstance(op, ast.Lt | ast.LtE):
        return Condition("range", high=value, high_closed=isinstance(op, ast.LtE))
    return UNKNOWN


def _inside(value: Any, c: Condition) -> bool:
    """Whether a value lies in a range; values that cannot be compared (text against a number) do not."""
    try:
        above = c.low is None or value > c.low or (c.low_closed and value == c.low)
        below = c.high is None or value < c.high or (c.high_closed and value == c.high)
    except TypeError:
        return False
    return bool(above and below) and value not in c.points


def _bound(a: Any, a_closed: bool, b: Any, b_closed: bool, *, tighter: str) -> tuple[Any, bool]:
    if a is None or b is None:
        return (b, b_closed) if a is None else (a, a_closed)
    if a == b:
        return a, a_closed and b_closed
    return (a, a_closed) if (a > b) == (tighter == "max") else (b, b_closed)


def intersect(a: Condition, b: Condition) -> Condition:
    """The values both conditions accept (UNKNOWN when the linter cannot tell)."""
    if a.kind == "any" or b.kind == "any":
        return b if a.kind == "any" else a
    if "unknown" in (a.kind, b.kind):
        return UNKNOWN
    if b.kind == "points":
        a, b = b, a
    if a.kind == "points":
        if b.kind == "points":
            return Condition("points", a.points & b.points)
        if b.kind == "not_points":
            return Condition("points", a.points - b.points)
        return Condition("points", frozenset(v for v in a.points if _inside(v, b)))
    if a.kind == "not_points" and b.kind == "not_points":
        return Condition("not_points", a.points | b.points)
    if b.kind == "not_points":
        a, b = b, a
    if a.kind == "not_points":
        return Condition("range", b.points | a.points, b.low, b.low_closed, b.high, b.high_closed)
    try:
        low = _bound(a.low, a.low_closed, b.low, b.low_closed, tighter="max")
        high = _bound(a.high, a.high_closed, b.high, b.high_closed, tighter="min")
    except TypeError:
        return Condition("points")  # a text range and a number range share nothing
    return Condition("range", a.points | b.points, low[0], low[1], high[0], high[1])


def empty(c: Condition) -> bool | None:
    """True when nothing satisfies the condition, False when something does, None when unknown."""
    if c.kind == "unknown":
        return None
    if c.kind == "points":
        return not c.points
    if c.kind != "range" or c.low is None or c.high is None:
        return False
    try:
        if c.low == c.high:
            return not (c.low_closed and c.high_closed) or c.low in c.points
        return bool(c.low > c.high)
    except TypeError:
        return True


def _check_overlaps(findings: Findings, table: etree._Element, ns: str | None, columns: list[str]) -> None:
    """Under UNIQUE at most one rule may match an input: report each pair of rules that provably can both."""
    rules = list(table.iterfind(f"{{{ns}}}rule"))
    cells = [[c.findtext(f"{{{ns}}}text") for c in rule.iterfind(f"{{{ns}}}inputEntry")] for rule in rules]
    parsed = [[condition(c) for c in row] for row in cells]
    reported = 0
    for j in range(len(rules)):
        for i in range(j):
            if not _can_both_match(parsed[i], parsed[j]):
                continue
            reported += 1
            if reported <= MAX_OVERLAPS:
                findings.add(rules[j], _overlap_message(table, (i, j), (rules[i], rules[j]), cells, columns),
                             severity="warning")
    if reported > MAX_OVERLAPS:
        findings.add(table, f"decision '{label(table.getparent())}': {reported - MAX_OVERLAPS} more pairs of "
                            "rules can both match the same input", severity="warning")


MAX_OVERLAPS = 10


def _can_both_match(first: list[Condition], second: list[Condition]) -> bool:
    """True only when every column provably shares a value (unknown cells are given the benefit of doubt)."""
    width = max(len(first), len(second))
    first = first + [ANY] * (width - len(first))
    second = second + [ANY] * (width - len(second))
    return all(empty(intersect(a, b)) is False for a, b in zip(first, second, strict=True))


def _overlap_message(table: etree._Element, pair: tuple[int, int], nodes: tuple[etree._Element, etree._Element],
                     cells: list[list[str | None]], columns: list[str]) -> str:
    i, j = pair
    ids = [n.get("id") or "?" for n in nodes]
    shown = []
    for k, name in enumerate(columns):
        a = (cells[i][k] if k < len(cells[i]) else None) or ""
        b = (cells[j][k] if k < len(cells[j]) else None) or ""
        if a.strip() or b.strip():
            shown.append(f"{name}: {a.strip() or 'any'} / {b.strip() or 'any'}")
    where = "; ".join(shown) if shown else "both match every input"
    return (f"decision '{label(table.getparent())}' has hit policy UNIQUE, but rule {i + 1} ({ids[0]}) and "
            f"rule {j + 1} ({ids[1]}) can both match the same input ({where}). SpiffWorkflow would silently "
            "take the first and assignment refuses the change: make their conditions exclude each other, or "
            "use hit policy COLLECT (assignment then takes the first matching rule)")


def _check_strategies(findings: Findings, table: etree._Element, ns: str | None) -> None:
    """An assignment table's `strategy` output must name a strategy the engine has (literal cells only)."""
    names = [o.get("name") or o.get("label") for o in table.iterfind(f"{{{ns}}}output")]
    if "strategy" not in names:
        return
    column = names.index("strategy")
    for number, rule in enumerate(table.iterfind(f"{{{ns}}}rule"), start=1):
        cells = list(rule.iterfind(f"{{{ns}}}outputEntry"))
        node = cells[column].find(f"{{{ns}}}text") if column < len(cells) else None
        value = _constant(node.text if node is not None else None)
        if node is not None and isinstance(value, str) and value not in STRATEGIES:
            findings.add(node, f"rule {number}, output 'strategy': {value!r} is not a strategy; use "
                               f"{' or '.join(STRATEGIES)} (or leave it empty for round_robin)")


def _constant(text: str | None) -> Any:
    """The value of a literal cell, None for an empty or computed one."""
    try:
        return ast.literal_eval((text or "").strip() or "None")
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None
