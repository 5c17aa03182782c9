"""Factories for tests: opportunity data that satisfies each stage, and workflow documents."""

from __future__ import annotations

from typing import Any

from engine.instances import Funnel
from engine.views import InstanceView

# The data that satisfies the exit criteria of each sales-funnel stage (index = stage order - 1).
FUNNEL_STAGE_DATA: list[dict[str, Any]] = [
    {"customer_name": "Acme Steel", "contact_name": "Dana Li", "need": "200 t of coil",
     "estimated_amount": 120000},
    {"budget_confirmed": True, "decision_maker": "CFO", "expected_close_date": "2027-02-01"},
    {"project_started": True, "requirements_documented": True, "competitors": ["Rival Co"]},
    {"proposal_submitted": True, "solution_review_passed": True, "final_amount": 115000},
]
WON = {"outcome": "won", "contract_number": "C-2026-001", "signed_amount": 114000}
LOST = {"outcome": "lost", "loss_reason": "price", "lost_to": "Rival Co"}
STAGES = ["Identify opportunity", "Qualification", "Development", "Proposal", "Sales outcome"]


def start_opportunity(funnel: Funnel, *, tier: str | None = "B", actor: str = "rep1",
                      **data: Any) -> InstanceView:
    return funnel.start("sales_funnel", data, actor=actor, customer_tier=tier)


def advance_to(funnel: Funnel, instance_id: int, order: int, *, actor: str = "rep1") -> InstanceView:
    """Advance with valid data until the instance is in stage `order` (1-based)."""
    view = funnel.get(instance_id)
    while view.stage_order is not None and view.stage_order < order:
        data = dict(FUNNEL_STAGE_DATA[view.stage_order - 1])
        if view.customer_tier == "D" and view.stage_order == 2:
            data["manager_approval"] = "approved by M. Manager"
        view = funnel.advance(instance_id, data, actor=actor)
    return view


BPMN_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:funnel="urn:funnel:1.0" id="Defs_{pid}" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="{pid}" name="{title}" isExecutable="true">
    <bpmn:extensionElements>
      <funnel:workflow title="{title}" amount="amount">
        <funnel:policy backward="{backward}" skip="{skip}"/>
      </funnel:workflow>
    </bpmn:extensionElements>
"""


def linear_workflow(*, pid: str = "two_step", title: str = "Two step", stages: int = 2,
                    criteria: dict[int, str] | None = None, backward: str = "never", skip: str = "never",
                    condition: str | None = None, script: str | None = None) -> bytes:
    """A minimal executable BPMN document: start -> N staged user tasks -> end.

    `criteria` maps a stage number to extra `funnel:criterion` XML; `condition` puts an exclusive
    gateway with that condition before the end; `script` adds a script task after the first stage.
    """
    criteria = criteria or {}
    parts = [BPMN_HEAD.format(pid=pid, title=title, backward=backward, skip=skip)]
    parts.append('    <bpmn:startEvent id="start"/>\n')
    previous = "start"
    for n in range(1, stages + 1):
        parts.append(
            f'    <bpmn:userTask id="stage{n}" name="Stage {n}"><bpmn:extensionElements>'
            f'<funnel:stage name="Stage {n}" order="{n}" probability="0.5">{criteria.get(n, "")}'
            "</funnel:stage></bpmn:extensionElements></bpmn:userTask>\n"
            f'    <bpmn:sequenceFlow id="f{n}" sourceRef="{previous}" targetRef="stage{n}"/>\n'
        )
        previous = f"stage{n}"
        if n == 1 and script is not None:
            parts.append(
                f'    <bpmn:scriptTask id="script1"><bpmn:script>{script}</bpmn:script></bpmn:scriptTask>\n'
                f'    <bpmn:sequenceFlow id="fs" sourceRef="stage1" targetRef="script1"/>\n'
            )
            previous = "script1"
    if condition is not None:
        parts.append(
            '    <bpmn:exclusiveGateway id="gw" default="fdefault"/>\n'
            f'    <bpmn:sequenceFlow id="fg" sourceRef="{previous}" targetRef="gw"/>\n'
            '    <bpmn:sequenceFlow id="fc" sourceRef="gw" targetRef="end">'
            f'<bpmn:conditionExpression>{condition}</bpmn:conditionExpression></bpmn:sequenceFlow>\n'
            '    <bpmn:sequenceFlow id="fdefault" sourceRef="gw" targetRef="end"/>\n'
        )
    else:
        parts.append(f'    <bpmn:sequenceFlow id="fend" sourceRef="{previous}" targetRef="end"/>\n')
    parts.append('    <bpmn:endEvent id="end"/>\n  </bpmn:process>\n</bpmn:definitions>\n')
    return "".join(parts).encode()
