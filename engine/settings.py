"""Configuration from the environment (FUNNEL_*), read once and passed down; defaults need no server."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import FunnelError

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting the engine, API and CLI read; documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_", env_file=None, extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{REPO_ROOT / 'var' / 'funnel.sqlite3'}",
        description="SQLAlchemy URL; sqlite:///path (default) or postgresql+psycopg://user@host/db",
    )
    sqlite_durable: bool = Field(
        default=True,
        description="SQLite: every commit survives a power cut (synchronous=FULL); false: NORMAL, ~0.2 ms faster "
                    "per commit, a power cut may lose the last commits",
    )
    workflows_dir: Path = Field(default=REPO_ROOT / "workflows", description="folder of *.bpmn / *.dmn")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1, le=64,
                         description="processes `funnel serve` runs (one core each), each with a ticker beside it")
    definition_cache_size: int = Field(default=64, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="largest request body the API reads")
    workflow_cache_size: int = Field(default=512, ge=0, description="restored workflows kept in memory (0 = off)")
    # e-mail (notifications/): with no SMTP host, mail waits in the outbox until one is configured
    smtp_host: str = Field(default="", description="SMTP server; empty = do not send yet")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_tls: str = Field(default="none", pattern="^(none|starttls|ssl)$")
    smtp_user: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_from: str = Field(default="funnel@localhost", description="From address, may be 'Name <addr>'")
    base_url: str = Field(default="http://127.0.0.1:8000", description="how links in e-mails start")
    tick_seconds: float = Field(default=0.1, gt=0, le=60, description="ticker interval (due within it: waited for)")
    delivery_seconds: float = Field(default=2.0, gt=0, le=3600, description="outbox delivery interval")


class SettingsError(FunnelError):
    """A FUNNEL_* setting (environment variable) that cannot be used: which one, what it holds, what it must be."""

    code = "invalid_setting"


@lru_cache
def get_settings() -> Settings:
    """The settings from the environment; SettingsError (not pydantic's traceback) when one is unusable."""
    try:
        return Settings()
    except ValidationError as err:
        wrong = [f"{_env_name(e['loc'])}={e['input']!r}: {e['msg']}" for e in err.errors()]
        raise SettingsError("invalid setting(s): " + "; ".join(wrong)) from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    return "FUNNEL_" + "_".join(str(part) for part in loc).upper()
