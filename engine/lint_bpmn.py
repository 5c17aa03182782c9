"""Linter checks for the structure of BPMN processes: what the engine cannot run, and why."""

from __future__ import annotations

from lxml import etree

from engine.lint_common import BPMN_NS, NS, Findings, label, local

FLOW_NODES = frozenset({
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "subProcess", "adHocSubProcess", "transaction", "callActivity",
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
})
CONTAINERS = ("process", "subProcess", "transaction", "adHocSubProcess")
UNSUPPORTED = {
    "complexGateway": "complex gateways are not supported by the engine: use exclusive, inclusive or "
                      "parallel gateways",
    "compensateEventDefinition": "compensation events are not supported by the engine: model the undo "
                                 "work as ordinary tasks on an error or escalation path",
    "linkEventDefinition": "link events are not supported by the engine (they would not connect): "
                           "draw the sequence flow directly",
}
CATCHING = ("startEvent", "intermediateCatchEvent")
THROWING = ("intermediateThrowEvent", "endEvent")
LOOP_ADVICE = ("loops through sequence flows deepen the task tree without bound (the engine stalls after "
               "~500 turns): use a standard loop or multi-instance activity instead")


def _spiff_ext(node: etree._Element, name: str) -> etree._Element | None:
    return node.find(f"bpmn:extensionElements/spiffworkflow:{name}", NS)


def check_blockers(findings: Findings, process: etree._Element) -> None:
    """Elements the engine cannot run as drawn: reasons a process cannot simply be switched on."""
    for node in process.iter(f"{{{BPMN_NS}}}*"):
        tag = local(node)
        name = label(node)
        if tag in UNSUPPORTED:
            findings.add(node, UNSUPPORTED[tag])
        elif tag == "serviceTask":
            why = ("has no implementation (no spiffworkflow:serviceTaskOperator), and the engine calls no "
                   "outside services anyway" if _spiff_ext(node, "serviceTaskOperator") is None
                   else "would call an outside service, which the engine refuses at run time")
            findings.add(node, f"service task '{name}' {why}: make it a script task or a user task")
        elif tag == "businessRuleTask" and _spiff_ext(node, "calledDecisionId") is None:
            findings.add(node, f"business rule task '{name}' names no decision table "
                               "(spiffworkflow:calledDecisionId): add the id of a DMN decision")
        elif tag == "manualTask":
            findings.add(node, f"manual task '{name}' is work the engine cannot follow: make it a user "
                               "task with funnel:stage metadata, or remove it")
        elif tag == "receiveTask":
            findings.add(node, f"receive task '{name}' waits for a message from another participant; the "
                               "engine delivers no messages, so an instance would wait there forever")
        elif tag == "sendTask":
            findings.add(node, f"send task '{name}' sends a message that no participant of this engine "
                               "receives", severity="warning")
        elif tag == "messageEventDefinition":
            _message_event(findings, node)


def _message_event(findings: Findings, definition: etree._Element) -> None:
    event = definition.getparent()
    tag, name = local(event), label(event)
    if tag == "startEvent" and local(event.getparent()) == "process":
        findings.add(event, f"message start event '{name}' waits for a message, but the engine starts "
                            "instances itself: use a plain start event")
    elif tag in CATCHING:
        findings.add(event, f"event '{name}' waits for a message from another participant; the engine "
                            "delivers no messages, so an instance would wait there forever")
    elif tag == "boundaryEvent":
        findings.add(event, f"boundary event '{name}' waits for a message the engine never delivers, so "
                            "it never fires", severity="warning")
    elif tag in THROWING:
        findings.add(event, f"event '{name}' sends a message that no participant of this engine receives",
                     severity="warning")


def check_data_stores(findings: Findings, root: etree._Element) -> None:
    """The engine (like SpiffWorkflow without a registered class) has no data store implementations."""
    for store in root.iterfind("bpmn:dataStore", NS):
        findings.add(store, f"data store '{label(store)}' has no implementation in the engine: keep the "
                            "data in process variables (data objects) and remove the data store")


def check_message_flows(findings: Findings, root: etree._Element) -> None:
    """Message flows that touch plain elements: the other pool will never answer."""
    owners = {n.get("id"): n for p in root.iterfind("bpmn:process", NS) for n in p.iter() if n.get("id")}
    for flow in root.iterfind("bpmn:collaboration/bpmn:messageFlow", NS):
        ends = [owners.get(flow.get("sourceRef")), owners.get(flow.get("targetRef"))]
        plain = [f"'{label(n)}'" for n in ends if n is not None and not _speaks_messages(n)]
        if plain:  # pools and message elements are not repeated here: they are reported on their own
            findings.add(flow, f"message flow '{label(flow)}' connects {' and '.join(plain)} with another "
                               "pool; the engine runs one process alone, so that exchange will not happen",
                         severity="warning")


def _speaks_messages(node: etree._Element) -> bool:
    if local(node) in ("sendTask", "receiveTask"):
        return True
    return node.find("bpmn:messageEventDefinition", NS) is not None


def check_loops(findings: Findings, process: etree._Element) -> None:
    """Every sequence-flow cycle, per process and per sub-process, named by the flow that closes it."""
    containers = [process, *(n for n in process.iter(*(f"{{{BPMN_NS}}}{c}" for c in CONTAINERS[1:])))]
    for container in containers:
        _loops_in(findings, container)


def _loops_in(findings: Findings, container: etree._Element) -> None:
    nodes = {c.get("id"): c for c in container if local(c) in FLOW_NODES and c.get("id")}
    edges: dict[str, list[tuple[str, etree._Element | None]]] = {}
    for child in container:
        if local(child) == "sequenceFlow":
            edges.setdefault(child.get("sourceRef") or "", []).append((child.get("targetRef") or "", child))
        elif local(child) == "boundaryEvent" and child.get("attachedToRef"):
            edges.setdefault(child.get("attachedToRef") or "", []).append((child.get("id") or "", None))
    starts = [i for i, n in nodes.items() if local(n) == "startEvent"]
    roots = starts + [i for i, n in nodes.items() if local(n) != "boundaryEvent"] + list(nodes)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(edges.get(root, [])))]
        while stack:
            here, pending = stack[-1]
            step = next(pending, None)
            if step is None:
                state[here] = 2
                stack.pop()
                continue
            target, flow = step
            if state.get(target) == 1 and flow is not None:
                back = f"'{label(nodes.get(target))}'" if target in nodes else f"'{target}'"
                findings.add(flow, f"sequence flow {flow.get('id')} from '{label(nodes.get(here))}' back to "
                                   f"{back} forms a loop; {LOOP_ADVICE}")
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(edges.get(target, []))))


def executable(process: etree._Element) -> bool:
    return (process.get("isExecutable") or "").strip().lower() == "true"


def describe_descriptive(findings: Findings, process: etree._Element, blockers: int) -> None:
    """The verdict on a process the engine will not run, and what stands between it and running."""
    pid = process.get("id") or "?"
    text = (f"process '{pid}' is descriptive, not executable (no isExecutable=\"true\"): "
            "the engine will not run it")
    if blockers:
        text += (f"; switching it on would not be enough: {blockers} other problem(s) reported inside it "
                 "stand in the way")
    else:
        text += '; to run it, set isExecutable="true" and give each user task its funnel:stage metadata'
    findings.add(process, text)


def describe_nothing_to_run(findings: Findings, root: etree._Element, processes: int) -> None:
    """A file-level verdict when no process in the file would run."""
    if processes:
        findings.add(root, f"the file is not executable: none of its {processes} process(es) has "
                           'isExecutable="true", so the engine has nothing to run')
        return
    kinds = sorted({local(c) for c in root if local(c) in ("collaboration", "choreography", "conversation")})
    only = f" (it holds only: {', '.join(kinds)})" if kinds else ""
    findings.add(root, f"the file defines no process{only}: there is nothing to run; add a bpmn:process "
                       'with isExecutable="true"')


def check_diagram(findings: Findings, root: etree._Element) -> None:
    if root.find("bpmndi:BPMNDiagram", NS) is None:
        findings.add(root, "the file has no diagram; a modeler will show nothing", severity="warning")

