"""The linter finds UNIQUE decision tables in which two rules can match the same input, naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from engine.lint import format_verdicts, lint_document, lint_paths
from engine.lint_assignment import check_references
from engine.lint_common import NS, Findings
from engine.lint_dmn import condition, empty, intersect
from tests.conftest import WORKFLOWS
from tests.people_factories import assigned_workflow, decision


def table(*rows: tuple[str, str], policy: str = "UNIQUE") -> bytes:
    """A decision over (amount, tier) with one row per (amount cell, tier cell)."""
    return decision("discount", ["amount", "customer_tier"],
                    [([a, t], {"team": '"t"'}) for a, t in rows], policy=policy)


def warnings(document: bytes) -> list[str]:
    verdict = lint_document(document, "rules.dmn")
    assert verdict.ok, verdict.problems  # ambiguity is advice: the file still loads
    return [p.message for p in verdict.problems if p.severity == "warning"]


@pytest.mark.parametrize(("rows", "pair", "detail"), [
    ([(">= 100", '"A"'), (">= 100", '"A"')], (1, 2), 'amount: >= 100 / >= 100; customer_tier: "A" / "A"'),
    ([("< 100", '"A"'), ("", "")], (1, 2), 'amount: < 100 / any; customer_tier: "A" / any'),
    ([("", ""), ("< 5", '"B"')], (1, 2), "amount: any / < 5"),
    ([("> 50", 'in ("A", "B")'), ("<= 100", '"B"')], (1, 2), 'customer_tier: in ("A", "B") / "B"'),
    ([("10 < ? <= 20", ""), ("20", "")], (1, 2), "amount: 10 < ? <= 20 / 20"),
    ([("", 'not in ("A",)'), ("", '"C"')], (1, 2), 'customer_tier: not in ("A",) / "C"'),
    ([("", ""), ("", "")], (1, 2), "both match every input"),
    ([("< 10", ""), (">= 10", '"A"'), (">= 20", '"A"')], (2, 3), "amount: >= 10 / >= 20"),
], ids=["identical", "catch-all-after", "catch-all-first", "in-and-range", "question-mark", "not-in", "empty",
        "third-row"])
def test_given_two_rules_that_can_both_match_then_a_warning_names_both(
        rows: list[tuple[str, str]], pair: tuple[int, int], detail: str) -> None:
    [message] = warnings(table(*rows))
    first, second = pair
    assert (f"decision 'discount' has hit policy UNIQUE, but rule {first} (r{first}) and rule {second} "
            f"(r{second}) can both match the same input") in message
    assert detail in message
    assert "make their conditions exclude each other, or use hit policy COLLECT" in message


def test_given_the_warning_then_it_points_at_the_later_rule() -> None:
    document = table((">= 100", '"A"'), (">= 100", '"A"'))
    [problem] = lint_document(document, "rules.dmn").problems
    text = document.decode()
    assert problem.element == "r2"
    assert problem.line == text[: text.index('<rule id="r2">')].count("\n") + 1


@pytest.mark.parametrize("rows", [
    [("< 100", '"A"'), (">= 100", '"A"')],
    [("<= 100", ""), ("> 100", "")],
    [("", '"A"'), ("", '"B"')],
    [("", 'in ("A", "B")'), ("", 'not in ("A", "B")')],
    [("1 < ? < 5", ""), ("5 <= ? < 9", "")],
    [('> "2025-01-31"', ""), ("< 5", "")],
    [("", "tier_of(customer)"), ("", '"A"')],  # a computed cell: the linter cannot tell, so it keeps quiet
    [("", "is None"), ("", "is not None")],
], ids=["split-amount", "split-closed", "tiers", "in-not-in", "ranges-touching", "text-vs-number", "unknown",
        "none"])
def test_given_rules_that_exclude_each_other_then_no_warning(rows: list[tuple[str, str]]) -> None:
    assert warnings(table(*rows)) == []


def test_given_collect_then_overlaps_are_intended_and_not_reported() -> None:
    assert warnings(table(("< 100", '"A"'), ("", ""), policy="COLLECT")) == []


def test_given_many_overlapping_rules_then_ten_are_named_and_the_rest_counted() -> None:
    found = warnings(table(*[("", "")] * 6))  # 15 pairs
    assert len(found) == 11
    assert "decision 'discount': 5 more pairs of rules can both match the same input" in found


def test_given_a_folder_with_an_ambiguous_table_when_validated_then_the_report_names_it(tmp_path: Path) -> None:
    (tmp_path / "rules.dmn").write_bytes(table(("", '"A"'), ("> 5", "")))
    report = format_verdicts(lint_paths([tmp_path]))
    assert "rules.dmn" in report and "[r2] warning:" in report and "rule 1 (r1) and rule 2 (r2)" in report


def test_given_the_shipped_assignment_tables_then_they_lint_clean() -> None:
    verdicts = lint_paths(sorted(WORKFLOWS.glob("assignment*.dmn")))
    assert [(v.file, v.problems) for v in verdicts] == [(str(p), []) for p in sorted(WORKFLOWS.glob("assignment*.dmn"))]


# ---------------------------------------------------------------- the cell algebra is sound

VALUES = st.one_of(st.integers(-3, 12), st.sampled_from(["A", "B", "C", None]))
CELLS = st.one_of(
    st.just(""),
    st.integers(-2, 10).map(str),
    st.sampled_from(['"A"', '"B"', 'in ("A", "B")', 'not in ("A",)', "is None", "is not None", '!= "C"']),
    st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.integers(-2, 10)).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(st.integers(-2, 5), st.integers(0, 10)).map(lambda t: f"{t[0]} < ? <= {t[1]}"),
)


def accepts(cell: str, value: object) -> bool:
    """What SpiffWorkflow does with a cell, in plain Python (a failing comparison does not match)."""
    text = cell.strip()
    if not text:
        return True
    try:
        if "?" in text:
            return bool(eval(text.replace("?", "v"), {}, {"v": value}))
        try:
            compile(text, "<cell>", "eval")
            return bool(eval(f"v == ({text})", {}, {"v": value}))
        except SyntaxError:
            return bool(eval(f"v {text}", {}, {"v": value}))
    except TypeError:
        return False


@settings(max_examples=400, deadline=None)
@given(CELLS, CELLS, VALUES)
def test_given_any_two_cells_when_a_value_satisfies_both_then_the_linter_never_calls_them_disjoint(
        a: str, b: str, value: object) -> None:
    if accepts(a, value) and accepts(b, value):
        assert empty(intersect(condition(a), condition(b))) is not True, (a, b, value)


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("> 5", "< 10", True), ("> 5", "<= 5", False), (">= 5", "<= 5", True), ('"A"', "", True),
    ('in ("A", "B")', 'not in ("A", "B")', False), ("1 < ? < 3", "2", True), ("1 < ? < 3", "3", False),
])
def test_given_two_cells_then_their_overlap_is_decided(a: str, b: str, overlap: bool) -> None:
    assert empty(intersect(condition(a), condition(b))) is (not overlap)


def test_given_an_assignment_table_with_an_unknown_strategy_then_the_cell_is_named() -> None:
    document = decision("assign_x", ["region"], [(['"north"'], {"team": '"t"', "strategy": '"random"'}),
                                                  (['"south"'], {"team": '"t"', "strategy": "pick()"})])
    problems = lint_document(document, "assign.dmn").problems
    assert [(p.severity, p.element) for p in problems] == [("error", "r1_strategy")]
    assert problems[0].message == ("rule 1, output 'strategy': 'random' is not a strategy; use round_robin or "
                                   "least_loaded (or leave it empty for round_robin)")


def test_given_an_assignment_naming_a_missing_decision_then_the_reference_check_names_it() -> None:
    process = etree.fromstring(assigned_workflow(decision_id="assign_typo")).find("bpmn:process", NS)
    findings = Findings(file="routed.bpmn")
    check_references(findings, process, {"a.dmn": table(("", '"A"'))})
    [problem] = findings.problems
    assert problem.message == ("funnel:assignment names decision 'assign_typo', which no DMN file beside the "
                               "workflow defines (decisions found: discount): add it or correct the id")
    findings = Findings(file="routed.bpmn")
    check_references(findings, process, {"a.dmn": decision("assign_typo", [], [([], {"team": '"t"'})])})
    assert findings.problems == []
