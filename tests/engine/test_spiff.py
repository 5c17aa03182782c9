"""Contract tests of the SpiffWorkflow adapter: the library behaviour the engine relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.spiff import ParsedSpecs, SpiffError, Workflow, parse_sources
from tests.conftest import WORKFLOWS
from tests.factories import FUNNEL_STAGE_DATA, linear_workflow

FIXTURE = Path(__file__).parent / "fixtures" / "sales_funnel_at_development.json"


def funnel_specs() -> ParsedSpecs:
    return parse_sources({"sales_funnel.bpmn": (WORKFLOWS / "sales_funnel.bpmn").read_bytes()}, {})["sales_funnel"]


def ready_names(wf: Workflow) -> list[str]:
    return [t.task_spec.name for t in wf.ready_human_tasks()]


def test_given_state_stored_by_an_earlier_release_when_restored_then_it_runs_on() -> None:
    # given a serialized spec and state kept from SpiffWorkflow 3.2.0
    stored = json.loads(FIXTURE.read_text())
    specs = ParsedSpecs.from_dict("sales_funnel", stored["specs"])
    # when
    wf = Workflow.restore(specs, stored["state"])
    # then it is at Development with the data gathered so far, and can complete it
    assert ready_names(wf) == ["development"]
    assert wf.data()["decision_maker"] == "CFO"
    wf.complete(wf.ready_human_tasks()[0], FUNNEL_STAGE_DATA[2])
    assert ready_names(wf) == ["proposal"]


def test_given_a_workflow_when_serialized_then_the_spec_is_left_out_and_restores_identically() -> None:
    specs = funnel_specs()
    wf = Workflow.start(specs, {"a": 1})
    state = wf.state()
    assert "spec" not in state and "subprocess_specs" not in state
    assert Workflow.restore(specs, state).state() == state
    assert Workflow.restore(ParsedSpecs.from_dict("sales_funnel", specs.to_dict()), state).state() == state


def test_given_a_workflow_mid_way_when_stored_compactly_then_restoring_loses_nothing() -> None:
    from engine.spiff import SERIALIZER

    # given a funnel two stages in, with data on its tasks
    specs = funnel_specs()
    wf = Workflow.start(specs, {})
    for data in FUNNEL_STAGE_DATA[:2]:
        wf.complete(wf.ready_human_tasks()[0], data)
    # when its state is stored (ids and default fields left out) and restored
    state = wf.state()
    task = next(iter(state["tasks"].values()))
    assert "id" not in task and "typename" not in task
    restored = Workflow.restore(specs, state)
    # then Spiff's own full serialization of both is the same
    full = {k: v for k, v in SERIALIZER.to_dict(wf.wf).items() if k not in ("spec", "subprocess_specs")}
    again = {k: v for k, v in SERIALIZER.to_dict(restored.wf).items() if k not in ("spec", "subprocess_specs")}
    assert again == full


def spiffs_own_state(wf: Workflow) -> dict[str, object]:
    """What `Workflow.state` stood for: Spiff's full serialization with its two spec entries dropped, compacted."""
    from engine.spiff import SERIALIZER, _compact

    dct = SERIALIZER.to_dict(wf.wf)
    dct.pop("spec")
    dct.pop("subprocess_specs")
    dct[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
    _compact(dct)
    return dct


@pytest.mark.parametrize("name", ["sales_funnel", "service_request", "routing_slip", "project_funding"])
def test_given_a_shipped_workflow_when_its_state_is_taken_then_it_is_spiffs_own_less_the_specs(name: str) -> None:
    # given each shipped workflow started, and the funnel also two stages in
    sources = {p.name: p.read_bytes() for p in WORKFLOWS.glob("*.bpmn")}
    dmn = {p.name: p.read_bytes() for p in WORKFLOWS.glob("*.dmn")}
    specs = parse_sources(sources, dmn)[name]
    wf = Workflow.start(specs, {"departments": ["sales", "quality"], "category": "delivery", "priority": "high"})
    stops = [wf.state()]
    if name == "sales_funnel":
        for data in FUNNEL_STAGE_DATA[:2]:
            wf.complete(wf.ready_human_tasks()[0], data)
    # when / then: the same document, key for key and in the same order, as Spiff's serializer gives
    state, own = wf.state(), spiffs_own_state(wf)
    assert state == own and list(state) == list(own)
    assert json.dumps(state) == json.dumps(own)
    assert Workflow.restore(specs, state).state() == state and stops[0]["typename"] == own["typename"]


def test_given_a_completed_stage_when_reset_to_it_then_it_is_ready_again_with_current_data() -> None:
    wf = Workflow.start(funnel_specs(), {})
    wf.complete(wf.ready_human_tasks()[0], {"x": 1})
    wf.complete(wf.ready_human_tasks()[0], {"y": 2})
    assert wf.reset_to("identify_opportunity", {"z": 3})
    assert ready_names(wf) == ["identify_opportunity"]
    assert {"x": 1, "y": 2, "z": 3}.items() <= wf.data().items()
    assert not wf.reset_to("proposal", {})  # never ran


def test_given_a_gateway_with_no_matching_condition_when_stepping_then_a_spiff_error_not_a_crash() -> None:
    wf = Workflow.start(funnel_specs(), {})
    for data in FUNNEL_STAGE_DATA:
        wf.complete(wf.ready_human_tasks()[0], data)
    with pytest.raises(SpiffError, match="failed"):
        wf.complete(wf.ready_human_tasks()[0], {"outcome": "undecided"})


def test_given_a_sandboxed_condition_when_it_is_hostile_at_run_time_then_it_is_refused() -> None:
    # the linter refuses such files; this proves the runtime sandbox holds even if one slipped through
    specs = parse_sources({"x.bpmn": linear_workflow(stages=1, condition="().__class__")}, {})["two_step"]
    wf = Workflow.start(specs, {})
    with pytest.raises(SpiffError, match="not allowed"):
        wf.complete(wf.ready_human_tasks()[0], {})


def test_given_state_whose_keys_were_reordered_when_restored_then_no_data_is_lost() -> None:
    # Spiff stores task data as deltas against the parent; JSONB and sort_keys reorder the tasks.
    specs = funnel_specs()
    wf = Workflow.start(specs, {})
    wf.complete(wf.ready_human_tasks()[0], {"x": 1})
    shuffled = json.loads(json.dumps(wf.state(), sort_keys=True))
    shuffled["tasks"] = dict(reversed(list(shuffled["tasks"].items())))
    assert Workflow.restore(specs, shuffled).data()["x"] == 1
