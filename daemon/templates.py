"""Sequence templates: parsed and checked by the engine before they are saved, and what a
template would do tonight with the connected equipment."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.db.models import SequenceTemplate
from daemon.documents import NamedDocuments
from daemon.errors import NotFound
from drivers.equipment import Equipment
from sequences.clock import Clock
from sequences.document import SequenceDocument
from sequences.errors import DocumentError
from sequences.model import Issue
from sequences.nina.importer import ImportReport, NinaImport, NinaImportRefused, import_nina
from sequences.nina.newtonsoft import NinaFormatError
from sequences.timeline import TimelineEntry, predict
from sequences.triggers.meridian import MeridianFlip
from sequences.validation import sky_issues, validation_env

TEMPLATES = NamedDocuments(SequenceTemplate, "template", "document")
NAME_MAX = 200  # characters in a document's name (SequenceDocument.name)


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
    return TEMPLATES.parse(SequenceDocument, data)


def list_templates(engine: Engine) -> list[SequenceTemplate]:
    return TEMPLATES.list(engine)


def get_template(engine: Engine, template_id: int) -> SequenceTemplate:
    """`NotFound` for an unknown id."""
    return TEMPLATES.get(engine, template_id)


def template_document(engine: Engine, template_id: int) -> SequenceDocument:
    """A saved template's document, parsed; `NotFound` for an unknown id."""
    return load_document(get_template(engine, template_id).document)


def save_template(
    engine: Engine, document: SequenceDocument, template_id: int | None = None
) -> SequenceTemplate:
    """Create (no id) or replace a template; the name must be unique (`DocumentError`)."""
    return TEMPLATES.save(engine, document.name, document.model_dump(mode="json"), template_id)


@dataclass(frozen=True)
class ImportedTemplate:
    template: SequenceTemplate
    report: ImportReport


def read_nina(
    text: str | bytes, *, name: str | None = None, strict: bool = False, field: str = "nina"
) -> NinaImport:
    """A NINA Advanced Sequencer file as our document and its report; `DocumentError` (one
    issue per problem, under `field`) for a file that is not NINA's, or with `strict` for
    every node or field not mapped."""
    try:
        return import_nina(text, name=name, strict=strict)
    except NinaImportRefused as e:
        raise DocumentError(
            [
                Issue(
                    entry.nina_path or "(top)",
                    f"{entry.nina_type}: {entry.note}",
                    "remove it in NINA, or import without strict to leave it out",
                )
                for entry in e.report.not_mapped
            ],
            field,
        ) from e
    except NinaFormatError as e:
        raise DocumentError(
            [Issue("", str(e), "send a file saved by NINA's Advanced Sequencer")], field
        ) from e


def free_name(engine: Engine, name: str) -> str:
    """`name`, or the first of "name (2)", "name (3)", ... no template has yet (so importing
    a file twice makes a second template). Blocking."""
    taken = {row.name for row in list_templates(engine)}
    candidate, number = name, 2
    while candidate in taken:
        suffix = f" ({number})"
        candidate, number = name[: NAME_MAX - len(suffix)] + suffix, number + 1
    return candidate


def save_imported(engine: Engine, document: SequenceDocument) -> SequenceTemplate:
    """Save an imported document as a new template under a free name (see `free_name`)."""
    named = document.model_copy(update={"name": free_name(engine, document.name)})
    return save_template(engine, named)


def import_nina_template(
    engine: Engine, text: str | bytes, *, name: str | None = None, strict: bool = False
) -> ImportedTemplate:
    """Import a NINA file and save it as a new template under a free name. Blocking."""
    imported = read_nina(text, name=name, strict=strict)
    return ImportedTemplate(save_imported(engine, imported.document), imported.report)


def delete_template(engine: Engine, template_id: int) -> None:
    TEMPLATES.delete(engine, template_id)


def flip_minutes(engine: Engine, template_id: int) -> float | None:
    """Minutes after the meridian at which the template flips (None: no flip, or no such
    template). Blocking."""
    try:
        document = template_document(engine, template_id)
    except NotFound:
        return None
    for _, node in document.walk():
        for trigger in getattr(node, "triggers", []):
            if isinstance(trigger, MeridianFlip):
                return trigger.minutes_after_meridian
    return None


async def template_timeline(
    engine: Engine, equipment: Equipment, clock: Clock, template_id: int
) -> list[TimelineEntry]:
    """When each node would run if started now (on `clock`); no device moves."""
    document = await asyncio.to_thread(template_document, engine, template_id)
    env = await validation_env(equipment, clock)
    return predict(document, env, clock.now())


async def template_issues(
    engine: Engine,
    equipment: Equipment,
    clock: Clock,
    template_id: int,
    scripts_dir: Path | None,
) -> list[Issue]:
    """What would fail tonight with the connected equipment, and what the sky does to a run
    started now (the sun up, a target below its limit): empty, ready to run.
    `scripts_dir`: the folder run_command may start programs from."""
    document = await asyncio.to_thread(template_document, engine, template_id)
    env = await validation_env(equipment, clock, scripts_dir=scripts_dir)
    now = clock.now()
    found = await asyncio.to_thread(document.check, env)  # astropy's transforms: off the loop
    sky = await asyncio.to_thread(sky_issues, document, env, now)
    named = {i.path for i in found}  # a node's own check said it already
    return found + [i for i in sky if i.path not in named]
