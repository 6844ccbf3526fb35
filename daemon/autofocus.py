"""Autofocus: one service for the API's "focus now" and for sequences' autofocus instructions
and triggers, so both hold the camera while they run and both keep their report.

Each report is stored twice: a row in ``autofocus_run`` (for listing and graphs) and a JSON file
under ``DATA_DIR/autofocus/`` (for people and other tools), as NINA keeps its AF reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureService
from daemon.db.models import AutofocusRun
from daemon.errors import Conflict
from daemon.events import record_event
from drivers.equipment import Equipment
from processing.io import write_atomic
from sequences.autofocus import AutofocusConfig, AutofocusReport, FocusPoint, run_autofocus


@dataclass(frozen=True)
class RecordedAutofocus:
    id: int
    report: AutofocusReport


class AutofocusService:
    """`sequences.autofocus.AutofocusRunner` for runs, and the API's autofocus."""

    def __init__(
        self, engine: Engine, equipment: Equipment, capture: CaptureService, folder: Path
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._capture = capture
        self._folder = folder

    async def run(self, config: AutofocusConfig) -> RecordedAutofocus:
        """Autofocus now on the profile's camera and focuser and keep the report (a failed
        fit too). `Conflict` without a connected camera and focuser, `CaptureBusy` while
        another task uses the camera."""
        camera, focuser = self._equipment.camera, self._equipment.focuser
        if camera is None or focuser is None or not camera.connected or not focuser.connected:
            raise Conflict("autofocus needs a connected camera and focuser")
        async with self._capture.camera_reserved("an autofocus"):
            report = await run_autofocus(camera, focuser, config, self._sample_event)
        wheel = self._equipment.filter_wheel
        filter_name = (
            (await wheel.status()).filter_name if wheel is not None and wheel.connected else None
        )
        run_id = await asyncio.to_thread(self._save, report, filter_name)
        return RecordedAutofocus(run_id, report)

    async def autofocus(self, config: AutofocusConfig) -> AutofocusReport:
        return (await self.run(config)).report

    async def _sample_event(self, point: FocusPoint) -> None:
        """One event per sample (source "autofocus", `data.sample`), so a page draws the
        V-curve while it is built."""
        hfr = "no stars" if point.hfr_px is None else f"HFR {point.hfr_px:.2f} px"
        await asyncio.to_thread(
            record_event,
            self._engine,
            "debug",
            "autofocus",
            f"autofocus sample at {point.position}: {hfr}, {point.star_count} stars",
            {"sample": dataclasses.asdict(point)},
        )

    def list_runs(self) -> list[AutofocusRun]:
        """Every kept run, newest first. Blocking."""
        with Session(self._engine) as db:
            query = select(AutofocusRun).order_by(AutofocusRun.started_at.desc())
            return list(db.scalars(query))

    def _save(self, report: AutofocusReport, filter_name: str | None) -> int:
        started = datetime.now(UTC)
        data = report_dict(report)
        with Session(self._engine) as db, db.begin():
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
        self._folder.mkdir(parents=True, exist_ok=True)
        name = f"{started:%Y-%m-%dT%H-%M-%S}_{run_id}.json"
        text = json.dumps({"id": run_id, **data}, indent=2, default=str)
        write_atomic(self._folder / name, text.encode())
        return run_id


def report_dict(report: AutofocusReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    data["exposures"] = report.exposures
    return data
