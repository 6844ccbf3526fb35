"""Named JSON documents in the database: sequence templates and night plans share this.

Both are a row with a unique `name` and a validated `document`, created, listed, read,
replaced and deleted the same way; each resource's service names its table, its noun for
messages and the request field its problems are reported under.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.db.models import NamedDocument
from daemon.errors import NotFound
from sequences.document import error_issues
from sequences.errors import DocumentError
from sequences.model import Issue

R = TypeVar("R", bound=NamedDocument)
M = TypeVar("M", bound=BaseModel)


class NamedDocuments(Generic[R]):
    def __init__(self, table: type[R], noun: str, field: str) -> None:
        """`noun` names a row in messages ("template"); `field` is the request body field
        whose problems a `DocumentError` reports ("document", "plan")."""
        self.table = table
        self.noun = noun
        self.field = field

    def parse(self, model: type[M], data: dict[str, Any]) -> M:
        """Validate `data`; `DocumentError` lists every problem with its path."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise DocumentError(error_issues(e), field=self.field) from e

    def list(self, engine: Engine) -> list[R]:
        with Session(engine) as db:
            return list(db.scalars(select(self.table).order_by(self.table.name)))

    def get(self, engine: Engine, row_id: int) -> R:
        """The row; `NotFound` for an unknown id."""
        with Session(engine) as db:
            row = db.get(self.table, row_id)
            if row is None:
                raise NotFound(f"no {self.noun} {row_id}")
            return row

    def save(
        self,
        engine: Engine,
        name: str,
        document: dict[str, Any],
        row_id: int | None = None,
        **columns: Any,
    ) -> R:
        """Create (no id) or replace a row; `NotFound` for an unknown id, `DocumentError` when
        another row has the name."""
        try:
            with Session(engine, expire_on_commit=False) as db, db.begin():
                if row_id is None:
                    row = self.table()
                    db.add(row)
                else:
                    found = db.get(self.table, row_id)
                    if found is None:
                        raise NotFound(f"no {self.noun} {row_id}")
                    row = found
                for key, value in {"name": name, "document": document, **columns}.items():
                    setattr(row, key, value)
                db.flush()
                return row
        except IntegrityError as e:
            raise DocumentError(
                [Issue("name", f"a {self.noun} named {name!r} exists", "choose another name")],
                field=self.field,
            ) from e

    def delete(self, engine: Engine, row_id: int) -> None:
        """`NotFound` for an unknown id."""
        with Session(engine) as db, db.begin():
            row = db.get(self.table, row_id)
            if row is None:
                raise NotFound(f"no {self.noun} {row_id}")
            db.delete(row)
