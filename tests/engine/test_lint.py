"""The workflow linter: a clear verdict for every file (MIWG references, bad inputs), never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import lint_expr
from engine.errors import Problem
from engine.lint import Verdict, format_verdicts, lint_document, lint_paths

REPO = Path(__file__).resolve().parents[2]
MIWG = REPO.parent / "shared" / "conformance" / "bpmn-miwg"
MIWG_FILES = sorted(MIWG.glob("*.bpmn"))
# The MIWG files that mark (one of) their processes isExecutable="true"; all others are descriptive only.
MIWG_EXECUTABLE = {
    "C.1.0.bpmn": ["bpmn-miwg-test-case-c.1.0"],
    "C.1.1.bpmn": ["handle-invoice"],
    "C.3.0.bpmn": ["_8170787a-3207-434d-9bea-4787059f444f"],
    "C.8.1.bpmn": ["VacationRequestProcess"],
    "C.9.0.bpmn": ["customer_onboarding_en"],
    "C.9.1.bpmn": ["requestDocument_en"],
    "C.9.2.bpmn": ["ManualCheck"],
}

# ------------------------------------------------------------------ factories

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"
                  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
                  xmlns:funnel="urn:funnel:1.0"
                  id="Definitions_deal" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="deal" name="Deal" isExecutable="true">
    <bpmn:extensionElements>
      <funnel:workflow title="Deal"><funnel:policy backward="never" skip="never"/></funnel:workflow>
    </bpmn:extensionElements>
"""
DIAGRAM = """  <bpmndi:BPMNDiagram id="Diagram_deal">
    <bpmndi:BPMNPlane id="Plane_deal" bpmnElement="deal"/>
  </bpmndi:BPMNDiagram>
"""
STRAIGHT = "start>qualify, qualify>won"


def user_task(task_id: str, name: str, order: int = 1) -> str:
    """A user task that is a proper stage (funnel:stage metadata)."""
    return f"""    <bpmn:userTask id="{task_id}" name="{name}">
      <bpmn:extensionElements>
        <funnel:stage name="{name}" order="{order}" probability="0.5">
          <funnel:criterion name="ready" test="ready == True" message="Confirm it is ready (ready)."/>
        </funnel:stage>
      </bpmn:extensionElements>
    </bpmn:userTask>
"""


def flows(spec: str) -> str:
    """Sequence flows from 'a>b, b>c' (id Flow_a_b); a third part 'a>b>cond' adds a condition."""
    out = []
    for edge in spec.split(","):
        source, target, *cond = edge.strip().split(">")
        body = (f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{cond[0]}'
                "</bpmn:conditionExpression>") if cond else ""
        out.append(f'    <bpmn:sequenceFlow id="Flow_{source}_{target}" sourceRef="{source}" '
                   f'targetRef="{target}">{body}</bpmn:sequenceFlow>\n')
    return "".join(out)


def bpmn(fragment: str = "", *, edges: str = STRAIGHT, diagram: bool = True) -> bytes:
    """A minimal executable funnel process (start, stage 'Qualify', end 'won') around `fragment`."""
    body = ('    <bpmn:startEvent id="start"/>\n' + user_task("qualify", "Qualify")
            + '    <bpmn:endEvent id="won"/>\n' + fragment + flows(edges))
    tail = "  </bpmn:process>\n" + (DIAGRAM if diagram else "") + "</bpmn:definitions>\n"
    return (HEAD + body + tail).encode()


def dmn(rules: str, *, hit_policy: str = "UNIQUE") -> bytes:
    """A DMN 1.3 decision 'discount' over amount and customer_tier, with the given rule rows."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="rules" name="Rules"
             namespace="http://example.com/dmn">
  <decision id="discount" name="Discount">
    <decisionTable id="discount_table" hitPolicy="{hit_policy}">
      <input id="in_amount" label="Amount">
        <inputExpression id="in_amount_expr" typeRef="number"><text>amount</text></inputExpression>
      </input>
      <input id="in_tier" label="Tier">
        <inputExpression id="in_tier_expr" typeRef="string"><text>customer_tier</text></inputExpression>
      </input>
      <output id="out_discount" name="discount" typeRef="number"/>
{rules}    </decisionTable>
  </decision>
</definitions>
""".encode()


def rule(rule_id: str, amount: str, tier: str, out: str = "0.1") -> str:
    return (f'      <rule id="{rule_id}">\n'
            f'        <inputEntry id="{rule_id}_amount"><text>{amount}</text></inputEntry>\n'
            f'        <inputEntry id="{rule_id}_tier"><text>{tier}</text></inputEntry>\n'
            f'        <outputEntry id="{rule_id}_out"><text>{out}</text></outputEntry>\n'
            "      </rule>\n")


GOOD_DMN = dmn(rule("small", "&lt; 100", '"A"', "0.1") + rule("rest", "&gt;= 100", "", "0"))


def line_of(document: bytes, needle: str) -> int:
    """The 1-based line of the first occurrence of `needle`: lets tests assert lines without magic numbers."""
    text = document.decode()
    return text[: text.index(needle)].count("\n") + 1


def errors(verdict: Verdict) -> list[Problem]:
    return [p for p in verdict.problems if p.severity == "error"]


def only_error(verdict: Verdict) -> Problem:
    found = errors(verdict)
    assert len(found) == 1, "\n".join(str(p) for p in verdict.problems)
    return found[0]


# ------------------------------------------------------------------ the baseline


def test_given_the_minimal_factory_document_when_linted_then_it_is_ok() -> None:
    verdict = lint_document(bpmn(), "deal.bpmn")

    assert verdict.ok, verdict.problems
    assert verdict.problems == []
    assert verdict.kind == "bpmn"
    assert verdict.processes == ["deal"]


# ------------------------------------------------------------------ MIWG reference files


def test_the_miwg_folder_is_found_by_relative_path() -> None:
    assert len(MIWG_FILES) == 21


@pytest.mark.parametrize("path", MIWG_FILES, ids=lambda p: p.name)
def test_given_a_miwg_file_when_linted_then_a_complete_verdict_comes_quickly(path: Path) -> None:
    content = path.read_bytes()

    started = time.perf_counter()
    verdict = lint_document(content, path.name)
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0
    assert verdict.kind == "bpmn"
    assert verdict.processes == MIWG_EXECUTABLE.get(path.name, [])
    assert not verdict.ok  # none of them runs as is: descriptive, or blocked by real problems
    assert errors(verdict) and all(p.message for p in errors(verdict))
    for problem in verdict.problems:
        assert problem.file == path.name
        assert problem.element and problem.line, problem  # every MIWG problem is about an element
        assert "Traceback" not in problem.message and "could not complete" not in problem.message
    if path.name not in MIWG_EXECUTABLE:
        assert any("is descriptive, not executable" in p.message for p in verdict.problems)
        assert any(p.message.startswith("the file is not executable") for p in verdict.problems)
    assert verdict.problems == sorted(verdict.problems, key=lambda p: p.line or 0)


def _miwg(name: str) -> Verdict:
    return lint_document((MIWG / name).read_bytes(), name)


def _at(verdict: Verdict, element: str) -> list[str]:
    return [p.message for p in verdict.problems if p.element == element]


def test_given_a_plain_descriptive_model_then_only_its_descriptiveness_is_reported() -> None:
    verdict = _miwg("A.1.0.bpmn")

    assert [p.message for p in verdict.problems] == [
        'the file is not executable: none of its 1 process(es) has isExecutable="true", '
        "so the engine has nothing to run",
        'process \'WFP-6-\' is descriptive, not executable (no isExecutable="true"): the engine will not run '
        'it; to run it, set isExecutable="true" and give each user task its funnel:stage metadata',
    ]
    assert [p.line for p in verdict.problems] == [2, 3]


def test_given_a_collaboration_then_its_message_flows_to_plain_tasks_are_warnings() -> None:
    verdict = _miwg("A.4.0.bpmn")

    flow = [p for p in verdict.problems if p.element == "_b467921a-ef7b-44c5-bf78-fd624c400d17"]
    assert len(flow) == 1 and flow[0].severity == "warning" and flow[0].line == 97
    assert "connects 'Task 1' and 'Task 3' with another pool" in flow[0].message


def test_given_data_stores_then_each_is_named_as_unimplemented() -> None:
    b10, c11 = _miwg("B.1.0.bpmn"), _miwg("C.1.1.bpmn")

    assert _at(b10, "DS1373655174514") == [
        "data store 'Data Store Reference' has no implementation in the engine: keep the data in process "
        "variables (data objects) and remove the data store"]
    assert any("data store 'Financial Accounting System'" in m
               for m in _at(c11, "sid-14ef3d18-7218-4f57-98f0-bb595114754b"))
    assert len([p for p in _miwg("C.4.0.bpmn").problems if p.message.startswith("data store")]) == 3


def test_given_miwg_timers_then_unquoted_and_empty_ones_are_errors() -> None:
    c30, c91, b10 = _miwg("C.3.0.bpmn"), _miwg("C.9.1.bpmn"), _miwg("B.1.0.bpmn")

    assert _at(c30, "Bpmn_FormalExpression_8pPK4BqGEeWDuOtG0oS24A") == [
        'timer expression PT2H is not quoted: write "PT2H" (timer expressions are Python)']
    assert [(p.line, p.message) for p in c91.problems if "not quoted" in p.message] == [
        (46, 'timer expression R6/P1D is not quoted: write "R6/P1D" (timer expressions are Python)'),
        (52, 'timer expression P7D is not quoted: write "P7D" (timer expressions are Python)'),
    ]
    empty = [p for p in b10.problems if "timeDate" in p.message]
    assert len(empty) == 1 and empty[0].line == 23 and "is empty" in empty[0].message


def test_given_miwg_backward_loops_then_the_closing_flow_is_named() -> None:
    verdict = _miwg("C.1.0.bpmn")

    loop = [p for p in verdict.problems if "forms a loop" in p.message]
    assert [(p.element, p.line) for p in loop] == [("reviewSuccessful", 628)]
    assert loop[0].message.startswith(
        "sequence flow reviewSuccessful from 'Review successful?' back to 'Approve Invoice' forms a loop")


def test_given_miwg_executable_files_then_engine_and_stage_problems_appear() -> None:
    c30, c92, c91 = _miwg("C.3.0.bpmn"), _miwg("C.9.2.bpmn"), _miwg("C.9.1.bpmn")

    assert _at(c30, "_cd6f230f-13c3-4027-aa3e-57de601a1ab2") == [
        "the engine cannot load it: Exactly one start event is required in a SubWorkflow Task; found 0."]
    assert any("multiinstance task must specify a cardinality" in m
               for m in _at(c92, "CallActivity_RequestDocument"))
    assert any("has no stage metadata" in m for m in _at(c91, "UserTask_CallCustomer"))
    assert any(m.startswith("receive task 'Wait for answer' waits for a message")
               for m in _at(c91, "ReceiveTask_WaitForDocument"))


def test_given_foreign_expression_languages_then_the_hint_names_them() -> None:
    c10, c90 = _miwg("C.1.0.bpmn"), _miwg("C.9.0.bpmn")

    assert any("JUEL/EL expression" in m for m in _at(c10, "sid-0ed8a0cb-f28a-4689-bbd8-77dafd0ccfa0"))
    assert any('the leading "=" marks a FEEL expression' in m
               for m in _at(c90, "SequenceFlow_ApplicationAccepted"))


def test_given_unsupported_bpmn_elements_then_each_is_named() -> None:
    assert any("compensation events are not supported" in p.message for p in _miwg("C.6.0.bpmn").problems)
    assert any("link events are not supported" in p.message for p in _miwg("B.2.0.bpmn").problems)
    manual = [p for p in _miwg("C.4.0.bpmn").problems if p.message.startswith("manual task")]
    assert len(manual) == 3


# ------------------------------------------------------------------ hand-made bad inputs


@pytest.mark.parametrize(("content", "message", "line"), [
    (b"", "the file is empty: save the process or decision from the modeler again", None),
    (b"   \n\t ", "the file is empty: save the process or decision from the modeler again", None),
    (b"<bpmn:definitions xmlns:bpmn='http://www.omg.org/spec/BPMN/20100524/MODEL'>\n<oops>",
     "the file is not well-formed XML: Premature end of data in tag oops line 2, line 2, column 7", 2),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00garbage",
     "the file is not well-formed XML: Start tag expected, '<' not found, line 1, column 1", 1),
], ids=["empty", "blank", "malformed", "binary"])
def test_given_unreadable_bytes_when_linted_then_one_clear_error(content: bytes, message: str,
                                                                  line: int | None) -> None:
    verdict = lint_document(content, "broken.bpmn")

    assert verdict.kind == "unknown"
    assert [(p.message, p.line, p.element) for p in verdict.problems] == [(message, line, None)]


def test_given_an_xml_file_of_another_kind_then_it_is_not_a_bpmn_or_dmn_file() -> None:
    content = b'<?xml version="1.0"?>\n<project xmlns="http://maven.apache.org/POM/4.0.0" id="p"/>'

    problem = only_error(lint_document(content, "pom.bpmn"))

    assert problem.message == ("not a BPMN or DMN file: its root element is <project> in namespace "
                               "http://maven.apache.org/POM/4.0.0")
    assert (problem.element, problem.line) == ("p", 2)


def test_given_a_billion_laughs_bomb_then_it_is_refused_fast_and_never_expanded() -> None:
    levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    content = (f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY l0 "lol">{levels}]>\n'
               '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">'
               "<bpmn:documentation>&l9;</bpmn:documentation></bpmn:definitions>").encode()

    started = time.perf_counter()
    verdict = lint_document(content, "bomb.bpmn")

    assert time.perf_counter() - started < 1.0
    problem = only_error(verdict)
    assert "entit" in problem.message and "remove it" in problem.message
    assert problem.line is not None and problem.element is None


def test_given_a_harmless_doctype_then_it_is_still_refused() -> None:
    content = b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY who "me">]>\n' + bpmn().split(b"\n", 1)[1]

    problem = only_error(lint_document(content, "doctype.bpmn"))

    assert problem.message.startswith("the file has a DOCTYPE declaration")


def test_given_a_huge_attribute_then_the_verdict_comes_without_a_crash() -> None:
    content = bpmn(f'    <bpmn:task id="big" name="{"x" * 12_000_000}"/>\n')

    started = time.perf_counter()
    problem = only_error(lint_document(content, "huge.bpmn"))

    assert time.perf_counter() - started < 1.0
    assert problem.message.startswith("the file holds a text or attribute of more than 10 MB")
    assert problem.line == line_of(content, 'id="big"')


def test_given_an_unquoted_timer_then_the_fix_is_spelled_out() -> None:
    content = bpmn('    <bpmn:intermediateCatchEvent id="wait" name="Wait">\n'
                   "      <bpmn:timerEventDefinition><bpmn:timeDuration>PT4H</bpmn:timeDuration>"
                   "</bpmn:timerEventDefinition>\n    </bpmn:intermediateCatchEvent>\n",
                   edges="start>wait, wait>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message == ('timer expression PT4H is not quoted: write "PT4H" '
                               "(timer expressions are Python)")
    assert (problem.element, problem.line) == ("wait", line_of(content, "<bpmn:timerEventDefinition>"))


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("timeDuration", '"four hours"', 'the timeDuration of timer \'Wait\' is "four hours", which is not an '
                                     'ISO 8601 duration: write a duration such as "PT4H" or "P1DT2H"'),
    ("timeDuration", "'P'", "the timeDuration of timer 'Wait' is 'P', which is not an ISO 8601 duration"),
    ("timeDate", '"next monday"', 'is "next monday", which is not an ISO 8601 date and time'),
    ("timeCycle", '"PT1H"', 'is "PT1H", which is not an ISO 8601 repetition (R<count>/<duration>)'),
])
def test_given_a_quoted_timer_that_is_not_iso_then_it_is_an_error(kind: str, text: str,
                                                                   expected: str) -> None:
    content = bpmn(f'    <bpmn:intermediateCatchEvent id="wait" name="Wait">\n'
                   f"      <bpmn:timerEventDefinition><bpmn:{kind}>{text}</bpmn:{kind}>"
                   "</bpmn:timerEventDefinition>\n    </bpmn:intermediateCatchEvent>\n",
                   edges="start>wait, wait>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert expected in problem.message
    assert (problem.element, problem.line) == ("wait", line_of(content, "<bpmn:timerEventDefinition>"))


@pytest.mark.parametrize(("kind", "text"), [
    ("timeDuration", '"PT4H"'), ("timeDuration", "'P1DT2H'"), ("timeDate", '"2025-01-31T09:00:00+01:00"'),
    ("timeCycle", '"R3/PT1H"'),
])
def test_given_a_quoted_iso_timer_then_it_is_fine(kind: str, text: str) -> None:
    content = bpmn(f'    <bpmn:intermediateCatchEvent id="wait">\n'
                   f"      <bpmn:timerEventDefinition><bpmn:{kind}>{text}</bpmn:{kind}>"
                   "</bpmn:timerEventDefinition>\n    </bpmn:intermediateCatchEvent>\n",
                   edges="start>wait, wait>qualify, qualify>won")

    verdict = lint_document(content, "deal.bpmn")

    assert verdict.ok and verdict.problems == []


def test_given_a_computed_timer_then_it_is_a_warning_that_it_cannot_be_checked() -> None:
    content = bpmn('    <bpmn:intermediateCatchEvent id="wait" name="Wait">\n'
                   "      <bpmn:timerEventDefinition><bpmn:timeDuration>reminder_after</bpmn:timeDuration>"
                   "</bpmn:timerEventDefinition>\n    </bpmn:intermediateCatchEvent>\n",
                   edges="start>wait, wait>qualify, qualify>won")

    verdict = lint_document(content, "deal.bpmn")

    assert verdict.ok
    assert [p.severity for p in verdict.problems] == ["warning"]
    assert "cannot be checked before run time" in verdict.problems[0].message


GATEWAY = '    <bpmn:exclusiveGateway id="check" name="Check" default="Flow_check_won"/>\n'


@pytest.mark.parametrize(("condition", "reason"), [
    ("import os", "imports are not allowed in workflow expressions (`import os`)"),
    ("__import__('os')", "imports are not allowed in workflow expressions (`__import__`)"),
    ("().__class__.__bases__[0].__subclasses__()", "attribute `__class__` is not allowed"),
], ids=["import", "dunder-import", "subclasses"])
def test_given_a_malicious_condition_then_the_sandbox_reason_is_quoted(condition: str, reason: str) -> None:
    content = bpmn(GATEWAY + '    <bpmn:endEvent id="lost"/>\n',
                   edges=f"start>qualify, qualify>check, check>won, check>lost>{condition}")

    verdict = lint_document(content, "deal.bpmn")

    refused = [p for p in errors(verdict) if p.element == "Flow_check_lost"]
    assert refused and all(p.line == line_of(content, 'id="Flow_check_lost"') for p in refused)
    assert refused[0].message.startswith("the condition of sequence flow 'Flow_check_lost' is refused: ")
    assert reason in refused[0].message
    assert not verdict.ok


def test_given_a_script_that_opens_a_file_then_it_is_refused() -> None:
    content = bpmn('    <bpmn:scriptTask id="peek" name="Peek">\n'
                   "      <bpmn:script>data = 1\nsecret = open('/etc/passwd').read()</bpmn:script>\n"
                   "    </bpmn:scriptTask>\n", edges="start>peek, peek>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message == ("the script of script task 'Peek' is refused: line 2: `open()` is not "
                               "available in workflow expressions (in 'data = 1 ...')")
    assert (problem.element, problem.line) == ("peek", line_of(content, "secret = open"))


LOOPING_TASK = """    <bpmn:userTask id="each" name="Each">
      <bpmn:extensionElements>
        <funnel:stage name="Each" order="2" probability="0.5"/>
        <spiffworkflow:preScript>PRE</spiffworkflow:preScript>
        <spiffworkflow:postScript>POST</spiffworkflow:postScript>
      </bpmn:extensionElements>
      <bpmn:multiInstanceLoopCharacteristics>
        <bpmn:loopCardinality>CARDINALITY</bpmn:loopCardinality>
        <bpmn:completionCondition>COMPLETION</bpmn:completionCondition>
      </bpmn:multiInstanceLoopCharacteristics>
    </bpmn:userTask>
"""
SAFE = {"PRE": "count = 0", "POST": "count = count + 1", "CARDINALITY": "3", "COMPLETION": "count &gt; 2"}


@pytest.mark.parametrize(("slot", "what", "bad", "reason"), [
    ("PRE", "pre-script", "import os", "imports are not allowed"),
    ("POST", "post-script", "x = ().__class__", "attribute `__class__` is not allowed"),
    ("CARDINALITY", "loop cardinality", "open('x')", "`open()` is not available"),
    ("COMPLETION", "completion condition", "__import__('os')", "imports are not allowed"),
])
def test_given_unsafe_task_scripts_or_loop_expressions_then_each_is_refused(
        slot: str, what: str, bad: str, reason: str) -> None:
    fragment = LOOPING_TASK
    for name, safe in SAFE.items():
        fragment = fragment.replace(name, bad if name == slot else safe)
    content = bpmn(fragment, edges="start>each, each>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message.startswith(f"the {what} of user task 'Each' is refused: ")
    assert reason in problem.message
    assert (problem.element, problem.line) == ("each", line_of(content, bad))


def test_given_a_backward_sequence_flow_then_the_loop_is_named_by_its_closing_flow() -> None:
    content = bpmn(GATEWAY, edges="start>qualify, qualify>check, check>won, check>qualify>retry == True")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message == (
        "sequence flow Flow_check_qualify from 'Check' back to 'Qualify' forms a loop; loops through "
        "sequence flows deepen the task tree without bound (the engine stalls after ~500 turns): use a "
        "standard loop or multi-instance activity instead")
    assert problem.element == "Flow_check_qualify"
    assert problem.line == line_of(content, 'id="Flow_check_qualify"')


def test_given_a_loop_inside_a_subprocess_then_it_is_found_too() -> None:
    sub = ('    <bpmn:subProcess id="work" name="Work">\n'
           '      <bpmn:startEvent id="s"/><bpmn:task id="a" name="A"/><bpmn:task id="b" name="B"/>'
           '<bpmn:endEvent id="e"/>\n'
           '      <bpmn:sequenceFlow id="s_a" sourceRef="s" targetRef="a"/>'
           '<bpmn:sequenceFlow id="a_b" sourceRef="a" targetRef="b"/>\n'
           '      <bpmn:sequenceFlow id="b_a" sourceRef="b" targetRef="a"/>\n'
           '    </bpmn:subProcess>\n')
    content = bpmn(sub, edges="start>work, work>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message.startswith("sequence flow b_a from 'B' back to 'A' forms a loop")
    assert (problem.element, problem.line) == ("b_a", line_of(content, 'id="b_a"'))


def test_given_a_user_task_without_stage_metadata_then_it_is_an_error() -> None:
    content = bpmn('    <bpmn:userTask id="call" name="Call customer"/>\n',
                   edges="start>call, call>qualify, qualify>won")

    problem = only_error(lint_document(content, "deal.bpmn"))

    assert problem.message == ("user task 'Call customer' has no stage metadata: add a funnel:stage element "
                               "with name, order and probability (see workflows/README.md)")
    assert (problem.element, problem.line) == ("call", line_of(content, 'id="call"'))


def test_given_a_schema_violation_then_every_schema_error_is_reported_with_its_line() -> None:
    content = bpmn('    <bpmn:task id="odd" colour="red"/>\n    <bpmn:task id="odder" size="2"/>\n',
                   edges="start>qualify, qualify>won")

    schema = [p for p in lint_document(content, "deal.bpmn").problems if "schema" in p.message]

    assert [(p.element, p.line) for p in schema] == [("odd", line_of(content, 'id="odd"')),
                                                     ("odder", line_of(content, 'id="odder"'))]
    assert "The attribute 'colour' is not allowed" in schema[0].message
    assert schema[0].message.startswith("the file breaks the BPMN 2.0 schema: Element 'bpmn:task'")


def test_given_a_descriptive_process_then_the_verdict_is_not_executable() -> None:
    content = bpmn().replace(b'isExecutable="true"', b'isExecutable="false"')

    verdict = lint_document(content, "deal.bpmn")

    assert not verdict.ok and verdict.processes == []
    assert [p.element for p in verdict.problems] == ["Definitions_deal", "deal"]
    assert "is descriptive, not executable" in verdict.problems[1].message


def test_given_only_a_collaboration_then_there_is_nothing_to_run() -> None:
    content = b"""<?xml version="1.0"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="only" targetNamespace="x">
  <bpmn:collaboration id="c"><bpmn:participant id="p" name="Customer"/></bpmn:collaboration>
</bpmn:definitions>"""

    verdict = lint_document(content, "talk.bpmn")

    problem = only_error(verdict)
    assert problem.message == ("the file defines no process (it holds only: collaboration): there is "
                               'nothing to run; add a bpmn:process with isExecutable="true"')
    assert (problem.element, problem.line) == ("only", 2)
    assert [p.message for p in verdict.problems if p.severity == "warning"] == [
        "the file has no diagram; a modeler will show nothing"]


def test_given_no_diagram_then_a_warning_does_not_fail_the_file() -> None:
    verdict = lint_document(bpmn(diagram=False), "deal.bpmn")

    assert verdict.ok
    assert [(p.severity, p.message, p.element) for p in verdict.problems] == [
        ("warning", "the file has no diagram; a modeler will show nothing", "Definitions_deal")]


def test_given_a_check_that_breaks_then_the_verdict_says_so_instead_of_raising(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(lint_expr, "check_timers", broken)
    monkeypatch.setattr("engine.lint.PROCESS_CHECKS", (("timer", broken),))

    verdict = lint_document(bpmn(), "deal.bpmn")

    assert [p.message for p in verdict.problems] == [
        "the timer check could not complete (RuntimeError: boom); fix the other problems and validate again"]


# ------------------------------------------------------------------ DMN


def test_given_a_python_decision_table_then_it_is_ok() -> None:
    verdict = lint_document(GOOD_DMN, "rules.dmn")

    assert verdict.ok and verdict.problems == []
    assert (verdict.kind, verdict.processes) == ("dmn", ["discount"])


def test_given_hit_policy_first_then_the_supported_ones_are_named() -> None:
    content = dmn(rule("small", "&lt; 100", '"A"'), hit_policy="FIRST")

    problem = only_error(lint_document(content, "rules.dmn"))

    assert problem.message == ("decision 'Discount' uses hit policy FIRST, which the engine does not "
                               "support: use UNIQUE (the first matching rule gives the result) or COLLECT "
                               "(every matching rule, each output as a list)")
    assert (problem.element, problem.line) == ("discount_table", line_of(content, 'hitPolicy="FIRST"'))


@pytest.mark.parametrize(("amount", "tier", "out", "element", "message"), [
    ("[1..10]", '"A"', "0.1", "r_amount",
     "rule 1, column 'Amount': [1..10] is a FEEL range; cells are Python: write 1 &lt;= ? &lt;= 10 "
     "(? stands for the input value)"),
    ("(1..10]", '"A"', "0.1", "r_amount", "write 1 &lt; ? &lt;= 10"),
    ("&lt; 100", '"A","B"', "0.1", "r_tier",
     """rule 1, column 'Tier': "A","B" is a FEEL list, but in Python it is a tuple and never equals a """
     """single value: write in ("A", "B")"""),
    ("&lt; 100", '"A", "B"', "0.1", "r_tier", 'write in ("A", "B")'),
    ("&lt; 100", 'not("C")', "0.1", "r_tier",
     """not("C") is FEEL negation; cells are Python: write != "C\""""),
    ('date("2025-01-01")', '"A"', "0.1", "r_amount", "date(...) is a FEEL function"),
    ("&lt; 100", '"A"', "true", "r_out", "rule 1, output: true uses FEEL words; Python writes them "
                                         "capitalised: true -&gt; True"),
    ("&lt; 100", '"A"', "null", "r_out", "null -&gt; None"),
    ("&lt; 100", '"A"', "__import__('os')", "r_out", "imports are not allowed"),
    ("&gt; ().__class__", '"A"', "0.1", "r_amount", "attribute `__class__` is not allowed"),
], ids=["range", "open-range", "list", "spaced-list", "not", "date", "true", "null", "import", "dunder"])
def test_given_feel_or_unsafe_cells_then_each_names_the_python_to_write(
        amount: str, tier: str, out: str, element: str, message: str) -> None:
    content = dmn(rule("r", amount, tier, out))

    problem = only_error(lint_document(content, "rules.dmn"))

    expected = message.replace("&lt;", "<").replace("&gt;", ">")
    assert expected in problem.message
    assert problem.element == element
    assert problem.line == line_of(content, f'id="{element}"')


def test_given_a_dash_input_cell_then_a_warning_asks_for_an_empty_cell() -> None:
    content = dmn(rule("r", "-", '"A"'))

    verdict = lint_document(content, "rules.dmn")

    assert verdict.ok
    assert [(p.severity, p.element) for p in verdict.problems] == [("warning", "r_amount")]
    assert "leave the cell empty" in verdict.problems[0].message


def test_given_operator_and_question_mark_cells_then_they_are_python() -> None:
    content = dmn(rule("a", "&gt;= 100", 'in ("A", "B")') + rule("b", "1 &lt; ? &lt; 5", 'not in ("C",)'))

    assert lint_document(content, "rules.dmn").problems == []


def test_given_two_decisions_in_one_file_then_the_extra_one_is_named() -> None:
    extra = (b'  <decision id="other" name="Other">\n    <decisionTable id="other_table">\n'
             b'      <input id="o_in"><inputExpression id="o_expr"><text>x</text></inputExpression></input>\n'
             b'      <output id="o_out" name="y"/>\n    </decisionTable>\n  </decision>\n</definitions>')
    content = GOOD_DMN.replace(b"</definitions>", extra)

    problem = only_error(lint_document(content, "rules.dmn"))

    assert problem.message == ("decision 'Other' is one too many: the engine reads one decision per DMN "
                               "file; move it to a file of its own")
    assert (problem.element, problem.line) == ("other", line_of(content, 'id="other"'))


def test_given_an_unsupported_dmn_version_then_it_says_which_to_save_as() -> None:
    content = GOOD_DMN.replace(b"https://www.omg.org/spec/DMN/20191111/MODEL/",
                               b"https://www.omg.org/spec/DMN/20230324/MODEL/")

    problem = only_error(lint_document(content, "rules.dmn"))

    assert "is not supported: save the decision as DMN 1.3" in problem.message
    assert (problem.element, problem.line) == ("rules", line_of(content, "namespace="))


def _rule_task_process(decision: str) -> bytes:
    task = (f'    <bpmn:businessRuleTask id="price" name="Price"><bpmn:extensionElements>'
            f"<spiffworkflow:calledDecisionId>{decision}</spiffworkflow:calledDecisionId>"
            "</bpmn:extensionElements></bpmn:businessRuleTask>\n")
    return bpmn(task, edges="start>price, price>qualify, qualify>won")


def test_given_a_business_rule_task_then_its_decision_comes_from_the_companions() -> None:
    content = _rule_task_process("discount")

    assert lint_document(content, "deal.bpmn", companions={"rules.dmn": GOOD_DMN}).ok
    missing = only_error(lint_document(content, "deal.bpmn"))
    assert missing.message.startswith(
        'the engine cannot load it: No DMN Diagram available with id "discount"')
    assert (missing.element, missing.line) == ("price", line_of(content, 'id="price"'))


# ------------------------------------------------------------------ paths and output


def test_given_a_folder_then_every_bpmn_and_dmn_below_is_linted_with_dmn_companions(tmp_path: Path) -> None:
    (tmp_path / "deal.bpmn").write_bytes(_rule_task_process("discount"))
    (tmp_path / "rules.dmn").write_bytes(GOOD_DMN)
    (tmp_path / "notes.txt").write_text("not a workflow")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "broken.bpmn").write_bytes(b"<nope")

    verdicts = lint_paths([tmp_path])

    assert [Path(v.file).relative_to(tmp_path).as_posix() for v in verdicts] == [
        "deal.bpmn", "old/broken.bpmn", "rules.dmn"]
    assert [v.ok for v in verdicts] == [True, False, True]
    assert [v.kind for v in verdicts] == ["bpmn", "unknown", "dmn"]


def test_given_a_missing_path_then_its_verdict_says_no_such_file_or_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.bpmn"

    verdicts = lint_paths([missing, str(missing)])

    assert [(v.file, v.ok, [p.message for p in v.problems]) for v in verdicts] == [
        (str(missing), False, ["no such file or folder"])] * 2


def test_format_verdicts_shows_ok_files_problem_lines_and_a_summary() -> None:
    good = lint_document(bpmn(diagram=False), "good.bpmn")
    rules = dmn(rule("r", "[1..10]", '"A"'), hit_policy="FIRST")
    bad = lint_document(rules, "rules.dmn")
    empty = lint_document(b"", "empty.bpmn")

    text = format_verdicts([good, bad, empty])

    root_line = line_of(bpmn(), "targetNamespace=")  # lxml gives a start tag's line as the line where it ends
    cell_line = line_of(rules, 'id="r_amount"')
    assert text.splitlines() == [
        "good.bpmn: ok",
        f"good.bpmn:{root_line} [Definitions_deal] warning: the file has no diagram; "
        "a modeler will show nothing",
        f"rules.dmn:5 [discount_table] error: {bad.problems[0].message}",
        f"rules.dmn:{cell_line} [r_amount] error: {bad.problems[1].message}",
        "empty.bpmn error: the file is empty: save the process or decision from the modeler again",
        "3 file(s) checked, 2 with problems",
    ]


def test_verdict_to_dict_is_plain_data() -> None:
    verdict = lint_document(dmn(rule("r", "-", '"A"')), "rules.dmn")

    assert verdict.to_dict() == {
        "file": "rules.dmn", "kind": "dmn", "ok": True, "processes": ["discount"],
        "problems": [p.to_dict() for p in verdict.problems],
    }


def test_every_shipped_workflow_validates() -> None:
    verdicts = lint_paths([REPO / "workflows"])

    assert verdicts, "workflows/ holds no .bpmn or .dmn file"
    assert all(v.ok for v in verdicts), format_verdicts(verdicts)
