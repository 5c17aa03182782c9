"""Rendering of e-mails from Jinja2 templates in notifications/templates (HTML and plain text).

Contract:
    render(template: str, context: Mapping[str, Any]) -> Rendered(subject, text, html)
        `template` is a base name such as "escalation" or "assignment_alert"; files are
        templates/<name>.subject.j2, <name>.txt.j2 and <name>.html.j2 (autoescaped).
"""
