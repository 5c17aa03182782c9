"""E-mail templates: every part renders, times are in the recipient's zone, HTML is escaped, keys are strict."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest

from notifications.render import TemplateNotFound, duration, link, local_time, names, render, restore, store

DEADLINE = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def recipient(time_zone: str = "Europe/Berlin", name: str = "Anna Schmidt") -> dict[str, str]:
    return {"name": name, "email": "anna@example.com", "time_zone": time_zone}


def item(**overrides: Any) -> dict[str, Any]:
    return {"kind": "opportunity", "title": "Acme Steel: 200 t of coil", "ref": "instance 42",
            "url": "https://funnel.example/api/instances/42", "stage": "Qualification", **overrides}


def escalation(**overrides: Any) -> dict[str, Any]:
    return {"recipient": recipient(), "item": item(), "customer": {"name": "Acme Steel", "tier": "A"},
            "sla": {"name": "first response", "deadline": DEADLINE, "business_seconds_left": 2 * 3600 + 15 * 60},
            "level": 0, "also_told": ["Sam South"], **overrides}


def chase(**overrides: Any) -> dict[str, Any]:
    return {"recipient": recipient("America/New_York"), "item": item(kind="routing slip", title="Rival price cut"),
            "department": "Logistics", "since": datetime(2026, 11, 20, 8, 30, tzinfo=UTC), "chase": 1,
            "sender": "Alice Market", **overrides}


def alert(**overrides: Any) -> dict[str, Any]:
    return {"recipient": recipient("Europe/Rome"), "item": item(),
            "team": {"name": "sales_south", "title": "Sales south"},
            "task": {"name": "Qualify the opportunity", "stage": "Qualification"},
            "reason": "Nobody in sales_south can take it: carol: inactive; erin: absent until 7 Dec.",
            "created_at": DEADLINE, **overrides}


def test_the_shipped_templates_are_the_three_documented_ones() -> None:
    assert names() == ("assignment_alert", "chase", "escalation")


def test_given_a_warning_then_the_deadline_is_in_the_recipients_zone_with_business_time_left() -> None:
    # when
    mail = render("escalation", escalation())
    # then 14:00 UTC is 15:00 in Berlin (CET in November)
    assert mail.subject == ('[Warning] First response for opportunity "Acme Steel: 200 t of coil" (tier A) '
                            "due Mon 23 Nov 2026 15:00 CET (Europe/Berlin)")
    for part in (mail.text, mail.html):
        assert "Mon 23 Nov 2026 15:00 CET (Europe/Berlin)" in part
        assert "2 h 15 min of business time left" in part
        assert "Acme Steel, tier A" in part
        assert "Sam South" in part and "Qualification" in part
    assert "Hello Anna Schmidt," in mail.text
    assert "Open it: https://funnel.example/api/instances/42" in mail.text
    assert '<a href="https://funnel.example/api/instances/42">' in mail.html


def test_given_the_same_deadline_then_each_recipient_reads_it_in_their_own_zone() -> None:
    tokyo = render("escalation", escalation(recipient=recipient("Asia/Tokyo")))
    new_york = render("escalation", escalation(recipient=recipient("America/New_York")))
    assert "Mon 23 Nov 2026 23:00 JST (Asia/Tokyo)" in tokyo.text
    assert "Mon 23 Nov 2026 09:00 EST (America/New_York)" in new_york.text
    assert "Mon 23 Nov 2026 14:00 UTC" in render("escalation", escalation(recipient=recipient("UTC"))).text


@pytest.mark.parametrize(("level", "label", "sentence"), [
    (1, "[Breached]", "has been missed"),
    (3, "[Escalation level 3]", "this is escalation level 3"),
])
def test_given_a_breach_then_overdue_time_and_level_are_stated(level: int, label: str, sentence: str) -> None:
    sla = {"name": "resolution", "deadline": DEADLINE, "business_seconds_left": -(65 * 60)}
    mail = render("escalation", escalation(level=level, sla=sla, also_told=[]))
    assert mail.subject.startswith(label) and mail.subject.endswith("is overdue")
    assert sentence in mail.text
    assert "overdue by 1 h 5 min of business time" in mail.text
    assert "Also told:  nobody else" in mail.text


def test_given_markup_in_the_data_then_html_is_escaped_and_text_is_not() -> None:
    # given a customer and title that look like HTML
    mail = render("escalation", escalation(customer={"name": "<b>Evil</b> & Co", "tier": "B"},
                                           item=item(title='"><script>x()</script>')))
    # then
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; Co, tier B" in mail.html
    assert "<b>Evil</b> & Co, tier B" in mail.text


def test_given_a_non_numeric_level_then_the_shared_macros_print_no_markup() -> None:
    mail = render("escalation", escalation(level="<i>2</i>"))
    assert "<i>" not in mail.html and "<title>Warning: " in mail.html


def test_given_a_missing_key_then_rendering_names_it() -> None:
    context = escalation()
    del context["also_told"]
    with pytest.raises(jinja2.UndefinedError, match="also_told"):
        render("escalation", context)
    with pytest.raises(jinja2.UndefinedError, match="url"):
        render("chase", chase(item={"kind": "slip", "title": "t", "ref": "r", "stage": None}))


def test_given_an_unknown_template_then_the_error_lists_the_known_ones() -> None:
    with pytest.raises(TemplateNotFound, match="escalation"):
        render("escalaton", escalation())


def test_given_a_department_that_has_not_answered_then_the_chase_says_which_since_when_and_where() -> None:
    mail = render("chase", chase(chase=2))
    assert mail.subject == ('Reminder 2: Logistics has not answered "Rival price cut" '
                            "since Fri 20 Nov 2026 03:30 EST (America/New_York)")
    for part in (mail.text, mail.html):
        assert "Alice Market sent this routing slip to" in part
        assert "reminder number 2" in part
        assert "https://funnel.example/api/instances/42" in part


def test_given_an_empty_pool_then_the_alert_names_team_task_instance_and_why() -> None:
    mail = render("assignment_alert", alert())
    assert mail.subject == 'Nobody can take "Qualify the opportunity" in Sales south: Acme Steel: 200 t of coil'
    for part in (mail.text, " ".join(mail.html.split())):
        assert "Sales south" in part and "instance 42" in part
        assert "carol: inactive; erin: absent until 7 Dec." in " ".join(part.split())
        assert "Mon 23 Nov 2026 15:00 CET (Europe/Rome)" in part
    no_team = render("assignment_alert", alert(team={"name": None, "title": None}))
    assert "Team:      none" in no_team.text and "in " not in no_team.subject.split(":")[0]


def test_filters_and_links() -> None:
    assert duration(-59) == "less than a minute"
    assert duration(3600) == "1 h" and duration(45 * 60) == "45 min" and duration(-(26 * 3600 + 60)) == "26 h 1 min"
    assert local_time(DEADLINE, "Not/AZone") == "Mon 23 Nov 2026 14:00 UTC"
    with pytest.raises(ValueError, match="aware"):
        local_time(datetime(2026, 1, 1), "UTC")
    assert link("https://x.example/", "/api/instances/1") == "https://x.example/api/instances/1"


@pytest.mark.parametrize("template,context", [("escalation", escalation()), ("chase", chase()),
                                              ("assignment_alert", alert())])
def test_given_a_context_stored_as_json_then_it_renders_exactly_as_the_original(template: str,
                                                                               context: dict[str, Any]) -> None:
    # when the context goes through JSON, as the outbox stores it
    stored = json.loads(json.dumps(store(context)))
    # then it comes back equal, datetimes aware, and renders the same three parts
    assert restore(stored) == context
    assert render(template, restore(stored)) == render(template, context)


def test_given_a_context_json_cannot_hold_then_store_names_the_key() -> None:
    with pytest.raises(TypeError, match=r"item\.when: a naive datetime"):
        store({"item": {"when": datetime(2026, 11, 23, 9, 0)}})
    with pytest.raises(TypeError, match=r"also_told\[1\]: a set cannot be stored"):
        store({"also_told": ["ann", {"sam"}]})
    with pytest.raises(TypeError, match=r"sla\.business_seconds_left: nan is not a number JSON can hold"):
        store({"sla": {"business_seconds_left": float("nan")}})
    with pytest.raises(TypeError, match=r"reserved"):
        store({"sla": {"$datetime": "2026-11-23T09:00:00+00:00"}})
