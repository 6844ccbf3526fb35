"""Autofocus runs for the API: run on the profile's camera and focuser, keep every report.

Each report is stored twice: a row in ``autofocus_run`` (for listing and graphs) and a JSON file
under ``DATA_DIR/autofocus/`` (for people and other tools), as NINA keeps its AF reports.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from daemon.db.models import AutofocusRun
from sequences.autofocus import AutofocusReport


def report_dict(report: AutofocusReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["exposures"] = report.exposures
    return data


def save_report(
    engine: Engine, folder: Path, report: AutofocusReport, filter_name: str | None
) -> int:
    """Store the report as a row and as JSON; returns the row id. Blocking."""
    started = datetime.now(UTC)
    data = report_dict(report)
    with Session(engine) as db, db.begin():
        row = AutofocusRun(
            started_at=started,
            filter_name=filter_name,
            start_position=report.start_position,
            final_position=report.final_position,
            best_hfr_px=report.fit.best_hfr_px if report.fit else None,
            success=report.success,
            reason=report.reason or None,
            report=json.loads(json.dumps(data, default=str)),
        )
        db.add(row)
        db.flush()
        run_id = row.id
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{started:%Y-%m-%dT%H-%M-%S}_{run_id}.json"
    (folder / name).write_text(json.dumps({"id": run_id, **data}, indent=2, default=str))
    return run_id
