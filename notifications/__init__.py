"""E-mail notifications: Jinja2 templates, the outbox and the SMTP sender (arrive with the SLA issue)."""
