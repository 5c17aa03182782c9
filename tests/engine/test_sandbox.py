"""Tests for engine.sandbox: what workflow code may do, what it may not, and how it fails."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine.errors import ExpressionError
from engine.sandbox import (
    SAFE_FUNCTIONS,
    RestrictedEnvironment,
    _analyse,
    check,
    evaluate,
    execute,
    filled,
    make_script_engine,
)

# --- what is allowed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("2 ** 10", 1024),
        ("7 // 2, 7 % 2, -7 / 2", (3, 1, -3.5)),
        ("amount * 1.2", 120.0),
        ("divmod(17, 5)", (3, 2)),
        ("round(2.675, 2), round(7.5)", (2.67, 8)),
        ("1 << 4", 16),
        ("abs(-3) + max(1, 5) + min([4, 2])", 10),
        ("sum([1, 2, 3])", 6),
    ],
)
def test_given_numbers_when_evaluating_then_python_arithmetic(expression: str, expected: Any) -> None:
    assert evaluate(expression, {"amount": 100}) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount > 1000", False),
        ("0 < amount <= 100", True),
        ("stage == 'proposal' and not lost", True),
        ("stage in ('won', 'lost') or amount >= 100", True),
        ("stage != 'won' if amount else False", True),
    ],
)
def test_given_data_when_comparing_then_result_is_boolean(expression: str, expected: bool) -> None:
    assert evaluate(expression, {"amount": 100, "stage": "proposal", "lost": False}) is expected


def test_given_dicts_and_strings_when_calling_their_methods_then_they_work() -> None:
    # given
    names = {"deal": {"owner": " Ann "}, "tags": ["a", "b"], "code": "EU-West"}
    # when / then
    assert evaluate("deal.get('owner').strip().lower()", names) == "ann"
    assert evaluate("deal.get('missing', 'none')", names) == "none"
    assert evaluate("sorted(deal.keys())", names) == ["owner"]
    assert evaluate("code.startswith('EU') and code.split('-')[1].upper()", names) == "WEST"
    assert evaluate("', '.join(tags) + f' ({len(tags)})'", names) == "a, b (2)"
    assert evaluate("'%s-%03d' % (code, 7)", names) == "EU-West-007"


def test_given_collections_when_using_comprehensions_and_lambdas_then_they_work() -> None:
    # given
    items = [{"sku": "x", "qty": 2, "price": 5.0}, {"sku": "y", "qty": 1, "price": 20.0}]
    # when / then
    assert evaluate("sum(i['qty'] * i['price'] for i in items)", {"items": items}) == 30.0
    assert evaluate("{i['sku']: i['qty'] for i in items if i['qty'] > 1}", {"items": items}) == {"x": 2}
    assert evaluate("{i['sku'] for i in items}", {"items": items}) == {"x", "y"}
    assert evaluate("[(a, b) for a in range(2) for b in range(2)]", {}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert evaluate("sorted(items, key=lambda i: -i['price'])[0]['sku']", {"items": items}) == "y"
    assert evaluate("list(map(lambda i: i['qty'], filter(lambda i: i['price'] > 10, items)))",
                    {"items": items}) == [1]  # fmt: skip
    assert evaluate("any(i['qty'] > 1 for i in items) and all(filled(i['sku']) for i in items)",
                    {"items": items}) is True  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False), ("", False), ("   \n", False), ([], False), ({}, False), ((), False), (set(), False),
        ("x", True), (0, True), (False, True), (0.0, True), ([None], True), ({"a": None}, True),
    ],
)  # fmt: skip
def test_given_a_value_when_asking_filled_then_only_empty_values_are_not(value: Any, expected: bool) -> None:
    assert filled(value) is expected
    assert evaluate("filled(v)", {"v": value}) is expected


def test_given_safe_functions_then_only_the_whitelist_is_exposed() -> None:
    # given the documented whitelist
    expected = {"abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "len",
                "list", "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str", "sum",
                "tuple", "zip", "filled"}  # fmt: skip
    # then nothing else is reachable as a builtin
    assert set(SAFE_FUNCTIONS) == expected


# --- missing names ---------------------------------------------------------------------------------


def test_given_missing_as_none_when_a_name_is_absent_then_it_is_none() -> None:
    # when
    result = evaluate("filled(budget) or owner is None", {}, missing_as_none=True)
    # then
    assert result is True


def test_given_missing_as_none_then_builtins_and_local_names_are_not_replaced() -> None:
    assert evaluate("len([x for x in items if x])", {"items": [1, 0, 2]}, missing_as_none=True) == 2
    assert evaluate("(lambda v: v + 1)(2)", {}, missing_as_none=True) == 3
    assert evaluate("x", {"x": 5}, missing_as_none=True) == 5


def test_given_a_missing_name_without_missing_as_none_then_error_names_it() -> None:
    with pytest.raises(ExpressionError, match=r"^name 'foo' is not defined$"):
        evaluate("foo > 1", {})


# --- runtime errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("a/b", "ZeroDivisionError: division by zero in `a/b`"),
        ("d['nope']", "KeyError: 'nope' in `d['nope']`"),
        ("'a' + 1", "TypeError: can only concatenate str"),
        ("int('x')", "ValueError: invalid literal for int()"),
    ],
)
def test_given_failing_code_when_evaluated_then_error_says_why(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, {"a": 1, "b": 0, "d": {}})
    assert message in str(caught.value)


def test_given_a_script_failing_on_line_two_then_the_message_names_the_line() -> None:
    expected = r"^line 2: ZeroDivisionError: division by zero in `y = x / 0`$"
    with pytest.raises(ExpressionError, match=expected):
        execute("x = 1\ny = x / 0", {})


def test_given_unbounded_recursion_then_expression_error() -> None:
    with pytest.raises(ExpressionError, match="recursed too deeply"):
        execute("def f(n):\n    return f(n + 1)\nf(0)", {})


# --- forbidden constructs --------------------------------------------------------------------------

FORBIDDEN = [
    # (source, mode, fragment of the reason, line)
    ("import os", "exec", "imports are not allowed in workflow expressions (`import os`)", 1),
    ("x = 1\nfrom os import path", "exec", "imports are not allowed", 2),
    ("__import__('os').system('id')", "eval", "imports are not allowed", 1),
    ("open('/etc/passwd').read()", "eval", "`open()` is not available", 1),
    ("eval('1')", "eval", "`eval()` is not available", 1),
    ("exec('x = 1')", "eval", "`exec()` is not available", 1),
    ("compile('1', 'f', 'eval')", "eval", "`compile()` is not available", 1),
    ("getattr(x, 'y')", "eval", "`getattr()` is not available", 1),
    ("type(x)", "eval", "`type()` is not available", 1),
    ("globals()", "eval", "`globals()` is not available", 1),
    ("().__class__.__bases__[0].__subclasses__()", "eval", "attribute `__class__` is not allowed", 1),
    ("'{0.__class__}'.format(x)", "eval", "attribute `format` is not allowed", 1),
    ("'{a}'.format_map(d)", "eval", "attribute `format_map` is not allowed", 1),
    ("str.mro()", "eval", "attribute `mro` is not allowed", 1),
    ("(i for i in [1]).gi_frame.f_back.f_globals", "eval", "attribute `gi_frame` is not allowed", 1),
    ("(lambda: 0).__globals__", "eval", "attribute `__globals__` is not allowed", 1),
    ("(lambda: 0).__code__.co_code", "eval", "attribute `__code__` is not allowed", 1),
    ("(lambda: (yield))()", "eval", "`yield` is not allowed", 1),
    ("x._private", "eval", "attribute `_private` is not allowed", 1),
    ("__builtins__", "eval", "name `__builtins__` is not allowed", 1),
    ("def f(__x):\n    return __x", "exec", "name `__x` is not allowed", 1),
    ("class A:\n    pass", "exec", "class definitions are not allowed", 1),
    ("def f():\n    global x", "exec", "`global` is not allowed", 2),
    ("def f():\n    yield 1", "exec", "`yield` is not allowed", 2),
    ("async def f():\n    pass", "exec", "async code is not allowed", 1),
    ("with x:\n    pass", "exec", "`with` blocks are not allowed", 1),
    ("try:\n    x = 1\nexcept:\n    pass", "exec", "`try` blocks are not allowed", 1),
    ("match ():\n    case tuple(__class__=c):\n        pass", "exec", "attribute `__class__` is not", 2),
]


@pytest.mark.parametrize(("source", "mode", "fragment", "line"), FORBIDDEN)
def test_given_forbidden_code_when_checked_then_a_line_numbered_reason(
    source: str, mode: Any, fragment: str, line: int
) -> None:
    # when
    problems = check(source, mode=mode)
    # then
    assert any(p.startswith(f"line {line}: ") and fragment in p for p in problems), problems
    assert all(p.startswith("line ") for p in problems)


@pytest.mark.parametrize(("source", "mode", "fragment", "line"), FORBIDDEN)
def test_given_forbidden_code_when_run_then_expression_error_only(
    source: str, mode: str, fragment: str, line: int
) -> None:
    # when
    with pytest.raises(ExpressionError) as caught:
        if mode == "eval":
            evaluate(source, {"x": 1, "d": {}})
        else:
            execute(source, {"x": 1})
    # then: the exact type, never a raw exception, and nothing ran
    assert type(caught.value) is ExpressionError
    assert fragment in str(caught.value)


def test_given_clean_code_when_checked_then_no_problems() -> None:
    assert check("amount > 10 and filled(owner)") == []
    assert check("total = sum(i['qty'] for i in items)\nif total > 3:\n    big = True", mode="exec") == []
    assert check("type == 'enterprise'") == []  # a field may be named like a refused builtin


def test_given_bad_syntax_when_checked_then_a_line_numbered_syntax_problem() -> None:
    assert check("amount >") == ["line 1: invalid syntax: `amount >`"]
    assert check("x = 1\ny = (", mode="exec")[0].startswith("line 2: invalid syntax: ")
    assert check("x = 1")[0].startswith("line 1: invalid syntax")  # a statement is not an expression
    assert check("return 1", mode="exec") == ["line 1: invalid syntax: 'return' outside function"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_given_arbitrary_text_when_checked_then_a_list_is_returned(source: str) -> None:
    assert isinstance(check(source), list)
    assert isinstance(check(source, mode="exec"), list)


def test_given_pathological_nesting_when_checked_then_a_problem_not_a_crash() -> None:
    assert check("1" + "+1" * 100_000) != []
    assert check("(" * 300 + ")" * 300) != []
    assert check("\0") != []


# --- bounded time and size -------------------------------------------------------------------------


def test_given_an_endless_loop_when_executed_then_stopped_within_the_limit() -> None:
    # given
    started = time.monotonic()
    # when
    with pytest.raises(ExpressionError, match=r"the script ran longer than 1.0 s and was stopped"):
        execute("while True:\n    pass", {})
    # then
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "expression",
    [
        "sum(x * y for x in range(100000) for y in range(100000))",
        "[[y for y in range(100000)] for x in range(100000)]",
        "sorted(range(100000), key=lambda x: sum(range(100000)))",
    ],
)
def test_given_heavy_nested_iteration_then_stopped_by_the_time_limit(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=r"ran longer than 0\.3 s"):
        evaluate(expression, {}, time_limit=0.3)
    assert time.monotonic() - started < 1.0


def test_given_a_traced_run_then_the_previous_trace_function_is_restored() -> None:
    before = sys.gettrace()
    evaluate("[x for x in range(3)]", {})
    assert sys.gettrace() is before


def test_given_plain_expressions_then_no_tracing_and_compiled_once() -> None:
    # given an expression without loops
    source = "amount > 1000 and stage == 'proposal'"
    # when
    evaluate(source, {"amount": 1, "stage": "x"})
    hits = _analyse.cache_info().hits
    evaluate(source, {"amount": 2, "stage": "y"})
    # then it is neither traced nor recompiled
    analysed = _analyse(source, "eval")
    assert not isinstance(analysed, tuple) and getattr(analysed, "traced", True) is False
    assert _analyse.cache_info().hits > hits


@pytest.mark.parametrize(
    ("source", "mode"),
    [
        ("10**10**10", "eval"),
        ("2 ** 100000", "eval"),
        ("'a' * 10**10", "eval"),
        ("10**10 * [0]", "eval"),
        ("(2**100000 if False else 2**9999) * 2**999999", "eval"),
        ("1 << 10**9", "eval"),
        ("x = 10\nx **= 10**10", "exec"),
        ("s = 'ab'\ns *= 10**9", "exec"),
        ("d = {'k': [0]}\nd['k'] *= 10**9", "exec"),
        ("range(100_001)", "eval"),
        ("range(10**30)", "eval"),
        ("round(5, -10**9)", "eval"),
        ("sum([[0] * 1000] * 100000, [])", "eval"),
    ],
)
def test_given_an_enormous_single_operation_then_refused_fast(source: str, mode: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=r"too large|limited to|at most|only adds numbers"):
        evaluate(source, {}) if mode == "eval" else execute(source, {})
    assert time.monotonic() - started < 0.2


def test_given_modest_sizes_then_guarded_operators_keep_python_semantics() -> None:
    assert len(evaluate("range(100_000)", {})) == 100_000
    assert evaluate("'ab' * 3 + str(2 ** 0.5)[:3] + str((-1) ** 10**12)", {}) == "ababab1.41"
    assert evaluate("[0] * 3 == 3 * [0] and 3 * 2.5 == 7.5 and 10 ** -1 == 0.1", {}) is True
    names: dict[str, Any] = {"a": [1], "d": {"n": 3}}
    execute("b = a\na *= 2\nd['n'] *= 2\nd['n'] **= 2\nd['n'] <<= 1", names)
    assert names["b"] == [1, 1]  # in-place, as in Python
    assert names["d"] == {"n": 72}


# --- execute() -------------------------------------------------------------------------------------


def test_given_a_script_when_executed_then_names_hold_only_its_plain_data() -> None:
    # given
    names: dict[str, Any] = {"amount": 10, "obsolete": 1}
    # when
    execute(
        "total = amount * 2\ndel obsolete\ndef helper(v):\n    return v\n"
        "f = lambda: 1\ng = (i for i in [1])\nh = [lambda: 2]\nm = map(str, [1])\nl = len\n"
        "label = helper('ok')",
        names,
    )
    # then
    assert names == {"amount": 10, "total": 20, "label": "ok"}


def test_given_a_failing_script_then_names_are_unchanged() -> None:
    names: dict[str, Any] = {"a": 1}
    with pytest.raises(ExpressionError):
        execute("a = 2\nb = 1 / 0", names)
    assert names == {"a": 1}


# --- SpiffWorkflow integration ---------------------------------------------------------------------

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs"
                  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="proc" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="compute" scriptFormat="python">
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>SCRIPT</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:exclusiveGateway id="gw" default="small"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>big</bpmn:outgoing><bpmn:outgoing>small</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:endEvent id="end_big"><bpmn:incoming>big</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end_small"><bpmn:incoming>small</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="compute" />
    <bpmn:sequenceFlow id="f2" sourceRef="compute" targetRef="gw" />
    <bpmn:sequenceFlow id="big" sourceRef="gw" targetRef="end_big">
      <bpmn:conditionExpression>CONDITION</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="small" sourceRef="gw" targetRef="end_small" />
  </bpmn:process>
</bpmn:definitions>
"""


def _workflow(script: str, condition: str = "total &gt; 100", **data: Any) -> BpmnWorkflow:
    """A start -> script -> gateway workflow running on the sandboxed engine."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(BPMN.replace("SCRIPT", script).replace("CONDITION", condition).encode())
    workflow = BpmnWorkflow(parser.get_spec("proc"), script_engine=make_script_engine(time_limit=0.3))
    workflow.get_tasks()[0].data.update(data)
    return workflow


def _reached(workflow: BpmnWorkflow) -> set[str]:
    """Names of the end events that completed."""
    completed = workflow.get_tasks(state=TaskState.COMPLETED)
    return {t.task_spec.name for t in completed if t.task_spec.name.startswith("end_")}


@pytest.mark.parametrize(("amount", "end"), [(80, "end_big"), (20, "end_small")])
def test_given_spiff_workflow_when_run_then_script_and_gateway_use_the_sandbox(amount: int, end: str) -> None:
    # given
    workflow = _workflow("total = amount * 2\nhelper = lambda: 1", amount=amount)
    # when
    workflow.do_engine_steps()
    # then
    assert workflow.is_completed()
    assert _reached(workflow) == {end}
    assert workflow.data == {"amount": amount, "total": amount * 2}


@pytest.mark.parametrize(
    ("script", "condition", "fragment"),
    [
        ("import os", "True", "imports are not allowed"),
        ("total = 1", "__import__('os')", "imports are not allowed"),
        ("while True:\n    pass", "True", "ran longer than 0.3 s"),
        ("total = ().__class__", "True", "attribute `__class__` is not allowed"),
    ],
)
def test_given_hostile_workflow_code_when_run_then_the_engine_reports_an_expression_error(
    script: str, condition: str, fragment: str
) -> None:
    # given
    workflow = _workflow(script, condition)
    # when
    with pytest.raises(Exception) as caught:
        workflow.do_engine_steps()
    # then: Spiff wraps it, but the sandbox error and its message survive
    error = caught.value
    cause = error if isinstance(error, ExpressionError) else error.__context__
    assert isinstance(cause, ExpressionError)
    assert fragment in str(error)


def test_given_restricted_environment_then_task_data_wins_and_extras_do_not_leak() -> None:
    # given
    env = RestrictedEnvironment()
    context: dict[str, Any] = {"a": 1, "shared": "task"}
    external = {"shared": "external", "obj": 5}
    # when / then
    assert env.evaluate("(a, shared, obj)", context, external) == (1, "task", 5)
    assert env.execute("b = obj + a\nobj = 7\nshared = 'changed'", context, external) is True
    assert context == {"a": 1, "shared": "changed", "b": 6}
    with pytest.raises(ExpressionError, match="service tasks are not supported"):
        env.call_service(context, operation_name="http/GetRequest")


def test_given_the_script_engine_when_validating_then_syntax_and_sandbox_errors_differ() -> None:
    # given
    engine = make_script_engine()
    # when / then: DMN's engine relies on SyntaxError for cells such as "> 5"
    engine.validate("'gold'")
    with pytest.raises(SyntaxError):
        engine.validate("> 5")
    engine.validate("v > 5")
    with pytest.raises(ExpressionError, match="imports are not allowed"):
        engine.validate("__import__('os')")


DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">
  <decision id="tier" name="Tier">
    <decisionTable id="t" hitPolicy="UNIQUE">
      <input id="i1" label="Amount"><inputExpression id="ie1"><text>amount</text></inputExpression></input>
      <output id="o1" label="Tier" name="tier" />
      <rule id="r1"><inputEntry id="e1"><text>&gt;= 1000</text></inputEntry>
        <outputEntry id="oe1"><text>"gold"</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="e2"><text>CELL</text></inputEntry>
        <outputEntry id="oe2"><text>"silver"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>"""
RULE_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs" targetNamespace="x"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core">
  <bpmn:process id="proc" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:businessRuleTask id="rule"><bpmn:extensionElements>
        <spiffworkflow:calledDecisionId>tier</spiffworkflow:calledDecisionId></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:businessRuleTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="rule" />
    <bpmn:sequenceFlow id="f2" sourceRef="rule" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>"""


def _decide(cell: str, amount: int) -> BpmnWorkflow:
    """Run a one-decision workflow whose second rule has the given input cell."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_str(RULE_BPMN.encode())
    parser.add_dmn_str(DMN.replace("CELL", cell).encode())
    workflow = BpmnWorkflow(parser.get_spec("proc"), script_engine=make_script_engine())
    workflow.get_tasks()[0].data["amount"] = amount
    workflow.do_engine_steps()
    return workflow


@pytest.mark.parametrize(("amount", "tier"), [(1500, "gold"), (10, "silver")])
def test_given_a_dmn_table_when_decided_then_cells_run_in_the_sandbox(amount: int, tier: str) -> None:
    assert _decide("&lt; 1000", amount).data["tier"] == tier


def test_given_a_hostile_dmn_cell_when_decided_then_an_expression_error_surfaces() -> None:
    with pytest.raises(Exception, match="imports are not allowed") as caught:
        _decide("__import__('os')", 10)
    assert isinstance(caught.value.__context__, ExpressionError)
