"""Sequence templates in the database: parsed and checked by the engine before they are saved."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.db.models import SequenceTemplate
from sequences.document import SequenceDocument, error_issues, parse_document
from sequences.errors import DocumentError
from sequences.model import Issue


class TemplateNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Example:
    file: str
    document: dict[str, Any]


def example_documents() -> list[Example]:
    """The example sequences installed with the `sequences` package (``examples/*.json``),
    by file name: starting points for new templates. Blocking: reads files."""
    folder = files("sequences").joinpath("examples")
    found = [
        Example(entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    ]
    return sorted(found, key=lambda e: e.file)


def load_document(data: dict[str, Any]) -> SequenceDocument:
    """Parse a document; `DocumentError` lists every problem with its node path."""
    try:
        return parse_document(data)
    except ValidationError as e:
        raise DocumentError(error_issues(e)) from e


def list_templates(engine: Engine) -> list[SequenceTemplate]:
    with Session(engine) as db:
        return list(db.scalars(select(SequenceTemplate).order_by(SequenceTemplate.name)))


def get_template(engine: Engine, template_id: int) -> SequenceTemplate:
    with Session(engine) as db:
        row = db.get(SequenceTemplate, template_id)
        if row is None:
            raise TemplateNotFound(template_id)
        return row


def save_template(
    engine: Engine, document: SequenceDocument, template_id: int | None = None
) -> SequenceTemplate:
    """Create (no id) or replace a template; the name must be unique (`DocumentError`)."""
    data = document.model_dump(mode="json")
    try:
        with Session(engine, expire_on_commit=False) as db, db.begin():
            if template_id is None:
                row = SequenceTemplate(name=document.name, document=data)
                db.add(row)
            else:
                found = db.get(SequenceTemplate, template_id)
                if found is None:
                    raise TemplateNotFound(template_id)
                row = found
                row.name, row.document = document.name, data
            db.flush()
            return row
    except IntegrityError as e:
        raise DocumentError(
            [Issue("name", f"a template named {document.name!r} exists", "choose another name")]
        ) from e


def delete_template(engine: Engine, template_id: int) -> None:
    with Session(engine) as db, db.begin():
        row = db.get(SequenceTemplate, template_id)
        if row is None:
            raise TemplateNotFound(template_id)
        db.delete(row)
