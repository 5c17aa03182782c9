"""Wire the engine together for a process: database, migrations, definitions from the workflows folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from engine.clock import utcnow
from engine.db import make_engine, migrate
from engine.definitions import DefinitionStore
from engine.instances import ChangeListener, Funnel
from engine.settings import Settings


def listeners(settings: Settings) -> list[ChangeListener]:
    """The reactions that run inside every instance change's transaction, in this order."""
    found: list[ChangeListener] = []
    return found


def open_funnel(settings: Settings, *, clock: Callable[[], datetime] = utcnow, sync: bool = True) -> Funnel:
    """Migrate the database, publish changed workflow files as new versions, return the engine."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    store = DefinitionStore(engine, cache_size=settings.definition_cache_size)
    if sync:
        store.sync_folder(settings.workflows_dir)
    return Funnel(engine, store, clock=clock, listeners=listeners(settings))
