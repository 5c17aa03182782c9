"""Wire the engine together for a process: database, migrations, definitions from the workflows folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from engine.assignment import AssignmentListener
from engine.clock import utcnow
from engine.db import make_engine, migrate
from engine.definitions import DefinitionStore
from engine.instances import ChangeListener, Funnel
from engine.links import LinkStarter
from engine.service_metrics import TicketMetricsListener
from engine.settings import Settings
from engine.sla import SlaListener


def listeners(settings: Settings) -> list[ChangeListener]:
    """The reactions that run inside every instance change's transaction, in this order."""
    found: list[ChangeListener] = []
    found.append(AssignmentListener())  # who gets each opened task, explained (first: others see the owner)
    found.append(LinkStarter())  # outcomes that start follow-up work (a won deal its project)
    found.append(TicketMetricsListener())  # service requests: handling time, reopens, satisfaction
    found.append(SlaListener(settings.workflows_dir))  # timers held on our clock; SLA clocks and escalations
    return found


def open_funnel(settings: Settings, *, clock: Callable[[], datetime] = utcnow, sync: bool = True) -> Funnel:
    """Migrate the database, publish changed workflow files as new versions, return the engine."""
    engine = make_engine(settings.database_url, durable=settings.sqlite_durable)
    migrate(engine)
    store = DefinitionStore(engine, cache_size=settings.definition_cache_size)
    if sync:
        store.sync_folder(settings.workflows_dir)
    return Funnel(engine, store, clock=clock, listeners=listeners(settings),
                  workflow_cache_size=settings.workflow_cache_size)
