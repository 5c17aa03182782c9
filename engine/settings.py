"""Configuration from the environment (FUNNEL_*), read once and passed down; defaults need no server."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting the engine, API and CLI read; documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="FUNNEL_", env_file=None, extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{REPO_ROOT / 'var' / 'funnel.sqlite3'}",
        description="SQLAlchemy URL; sqlite:///path (default) or postgresql+psycopg://user@host/db",
    )
    workflows_dir: Path = Field(default=REPO_ROOT / "workflows", description="folder of *.bpmn / *.dmn")
    host: str = "127.0.0.1"
    port: int = 8000
    definition_cache_size: int = Field(default=64, ge=1)


@lru_cache
def get_settings() -> Settings:
    return Settings()
