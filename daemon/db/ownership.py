"""Rows made before their daemon had an owner (databases from before sharing, tools without
one) are taken over by the first daemon that starts on them."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from daemon.db.engine import owner_of
from daemon.db.models import NightPlanRow, ProcessingJob, SequenceRun

_OWNED = (SequenceRun, ProcessingJob, NightPlanRow)


def adopt_unowned(engine: Engine) -> dict[str, int]:
    """Give the runs, processing jobs and night plans without an owner to `engine`'s owner;
    returns how many of each table were taken (nothing for an engine without one). Blocking."""
    owner = owner_of(engine)
    if owner is None:
        return {}
    taken: dict[str, int] = {}
    with Session(engine) as db, db.begin():
        for model in _OWNED:
            result = db.execute(
                update(model).where(model.owner.is_(None)).values(owner=owner),
                execution_options={"synchronize_session": False},
            )
            taken[model.__tablename__] = int(getattr(result, "rowcount", 0) or 0)
    return taken
