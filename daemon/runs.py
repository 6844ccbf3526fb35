"""Sequence runs in the daemon: the SQLite-backed sinks of the engine and the run manager.

One run at a time drives the equipment (there is one camera). A run copies its document from
the template, so editing a template never changes a run. Its state is journaled into its row
before and after every step; at startup, runs a crash left `running` or `paused` become
`interrupted` and can be resumed (automatically with ``NIGHTOWL_RESUME_RUNS=true``): frames
already stored are counted, never re-taken.

Daemons sharing a database (one per telescope) each mark and resume only their own runs (a
run's `owner`, the daemon's profile name); another daemon's runs are listed, never driven.

A graceful daemon shutdown interrupts the running run the same way (resumable) instead of
running its end area: a restart should continue the night, not park in the middle of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from daemon.capture import CaptureRequest, CaptureService
from daemon.db.engine import owned_by_engine, owner_of
from daemon.db.models import Event, Frame, SequenceRun
from daemon.errors import Conflict, NotFound, Refused
from daemon.events import record_event
from daemon.fits_headers import TargetInfo
from daemon.templates import get_template, load_document
from drivers.equipment import Equipment
from sequences import instantiate
from sequences.clock import Clock
from sequences.context import RunContext
from sequences.document import SequenceDocument
from sequences.errors import DocumentError
from sequences.frames import ExposureSpec, RunTag, SavedFrame, TargetRef
from sequences.model import Issue
from sequences.runner import SequenceRunner
from sequences.state import RunState, RunStatus
from sequences.validation import validation_env

log = logging.getLogger(__name__)


class RunConflict(Conflict):
    """Another run is active, or the run is not in a state that allows the action."""

    def detail(self) -> Any:
        return {"error": "RunConflict", "message": str(self)}


class RunBlocked(Conflict):
    """Validation found what would fail: fix the issues, or start with `ignore_issues`."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("the sequence would fail: fix these or pass ignore_issues")
        self.issues = issues

    def detail(self) -> Any:
        return {
            "message": str(self),
            "issues": [{"path": i.path, "message": i.message, "fix": i.fix} for i in self.issues],
        }


class CaptureSink:
    """`sequences.frames.FrameSink` over the capture service and the frame table."""

    def __init__(self, capture: CaptureService, engine: Engine) -> None:
        self._capture = capture
        self._engine = engine

    async def capture(
        self,
        spec: ExposureSpec,
        count: int,
        *,
        target: TargetRef | None = None,
        tag: RunTag | None = None,
        between: Callable[[int], Awaitable[None]] | None = None,
        on_saved: Callable[[SavedFrame], Awaitable[None]] | None = None,
    ) -> list[SavedFrame]:
        info = None
        if target is not None:
            position = target.position
            info = TargetInfo(
                target.name,
                position.ra_deg if position else None,
                position.dec_deg if position else None,
            )
        request = CaptureRequest(spec, count, info, tag)
        return await self._capture.capture(request, between=between, on_saved=on_saved)

    async def count_taken(self, tag: RunTag) -> int:
        def count() -> int:
            with Session(self._engine) as db:
                query = select(func.count(Frame.id)).where(
                    Frame.run_id == tag.run_id, Frame.node_path == tag.node_path
                )
                return int(db.scalar(query) or 0)

        return await asyncio.to_thread(count)


@dataclass
class RunEventBus:
    """Live run events for subscribers (server-sent events); the database keeps the history."""

    _queues: dict[int, set[asyncio.Queue[dict[str, Any]]]] = field(default_factory=dict)

    def publish(self, run_id: int, event: dict[str, Any]) -> None:
        for queue in self._queues.get(run_id, set()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: int) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._queues.setdefault(run_id, set()).add(queue)
        try:
            yield queue
        finally:
            self._queues[run_id].discard(queue)


class RunEvents:
    """`sequences.context.EventSink`: events into the event table and onto the live bus."""

    def __init__(self, engine: Engine, run_id: int, bus: RunEventBus) -> None:
        self._engine = engine
        self._run_id = run_id
        self._bus = bus

    async def emit(
        self,
        level: str,
        message: str,
        *,
        path: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        event_id = await asyncio.to_thread(
            record_event,
            self._engine,
            level,
            "sequence",
            message,
            data,
            run_id=self._run_id,
            node_path=path,
        )
        self._bus.publish(
            self._run_id,
            {
                "id": event_id,
                "time": datetime.now(UTC).isoformat(),
                "level": level,
                "message": message,
                "path": path,
                "data": data or {},
            },
        )


class RunRowJournal:
    """`sequences.runner.RunJournal`: the run state into the run's row."""

    def __init__(self, engine: Engine, run_id: int) -> None:
        self._engine = engine
        self._run_id = run_id

    async def save(self, state: RunState) -> None:
        data, status = state.to_json(), state.status.value
        ended = datetime.now(UTC) if state.status.finished else None

        def write() -> None:
            with Session(self._engine) as db, db.begin():
                db.execute(
                    update(SequenceRun)
                    .where(SequenceRun.id == self._run_id)
                    .values(state=data, status=status, ended_at=ended)
                )

        await asyncio.to_thread(write)


def drop_targets(
    document: SequenceDocument, targets: Sequence[Mapping[str, Any]]
) -> SequenceDocument:
    """One copy of the template's first target container per dropped target (keys: name,
    ra_hours, dec_deg, optional rotation_deg): `sequences.instantiate.drop_targets`."""
    specs = [
        instantiate.TargetSpec(t["name"], t["ra_hours"], t["dec_deg"], t.get("rotation_deg"))
        for t in targets
    ]
    return instantiate.drop_targets(document, specs)


RunRow = SequenceRun
"""A run as stored: document, journaled state, status and times."""


def list_runs(engine: Engine) -> list[SequenceRun]:
    """Every run, newest first. Blocking."""
    with Session(engine) as db:
        return list(db.scalars(select(SequenceRun).order_by(SequenceRun.id.desc())))


def get_run(engine: Engine, run_id: int) -> SequenceRun:
    """`NotFound` for an unknown id. Blocking."""
    with Session(engine) as db:
        row = db.get(SequenceRun, run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        return row


def run_events(engine: Engine, run_id: int, after_id: int, limit: int) -> list[Event]:
    """The run's events after `after_id`, oldest first; `NotFound` for an unknown run.
    Blocking."""
    with Session(engine) as db:
        if db.get(RunRow, run_id) is None:
            raise NotFound(f"no run {run_id}")
        query = (
            select(Event)
            .where(Event.run_id == run_id, Event.id > after_id)
            .order_by(Event.id)
            .limit(limit)
        )
        return list(db.scalars(query))


ContextFactory = Callable[[int, RunEvents], RunContext]
"""Builds the run context (equipment, clock, sinks, solver) for a run id."""


@dataclass
class _Active:
    run_id: int
    runner: SequenceRunner
    task: asyncio.Task[RunStatus]


class RunManager:
    def __init__(
        self,
        engine: Engine,
        context_factory: ContextFactory,
        clock: Clock,
        on_finished: Callable[[int, RunStatus], Awaitable[None]] | None = None,
        scripts_dir: Path | None = None,
    ) -> None:
        """`on_finished(run_id, status)` runs after a run ends (not when it is interrupted
        by a stop of the daemon): the hand-off of the night to the processing worker.
        `scripts_dir`: the folder run_command may start programs from (None: none)."""
        self._engine = engine
        self._scripts_dir = scripts_dir
        self._context_factory = context_factory
        self._clock = clock
        self._on_finished = on_finished
        self.bus = RunEventBus()
        self._active: _Active | None = None
        self._no_hand_off: set[int] = set()

    @property
    def active_run_id(self) -> int | None:
        if self._active is None or self._active.task.done():
            return None
        return self._active.run_id

    @property
    def dome_slaved(self) -> bool:
        """Whether the active run keeps the dome aimed at the mount's pointing."""
        if self.active_run_id is None or self._active is None:
            return False
        return self._active.runner.ctx.dome_slaving is not None

    async def start(
        self, document: SequenceDocument, template_id: int | None = None, *, hand_off: bool = True
    ) -> int:
        """Create a run of `document` and start it; `RunConflict` when another one is active.

        `hand_off=False` skips `on_finished` for this run: a night plan hands its night over
        once, when the night ends, not after each target's run."""
        self._refuse_if_busy()

        def create() -> int:
            with Session(self._engine) as db, db.begin():
                row = SequenceRun(
                    template_id=template_id,
                    name=document.name,
                    document=document.model_dump(mode="json"),
                    state=RunState().to_json(),
                    status=RunStatus.PENDING.value,
                )
                db.add(row)
                db.flush()
                return row.id

        run_id = await asyncio.to_thread(create)
        if not hand_off:
            self._no_hand_off.add(run_id)
        self._launch(run_id, document, RunState())
        return run_id

    async def start_checked(
        self,
        equipment: Equipment,
        *,
        template_id: int | None,
        document: dict[str, Any] | None,
        targets: Sequence[Mapping[str, Any]] = (),
        ignore_issues: bool = False,
    ) -> int:
        """Start a run of a saved template or of a document, `targets` dropped in, once it
        validates against the connected equipment and tonight's sky.

        `Refused` unless exactly one of template_id and document is given, `NotFound` for an
        unknown template, `DocumentError` for a malformed document or one a setting forbids
        (even with `ignore_issues`), `RunBlocked` with the issues (unless `ignore_issues`),
        `RunConflict` while another run is active."""
        if (template_id is None) == (document is None):
            raise Refused(None, "give exactly one of template_id or document")
        if template_id is not None:
            data = (await asyncio.to_thread(get_template, self._engine, template_id)).document
        else:
            assert document is not None
            data = document
        parsed = drop_targets(load_document(data), targets)
        env = await validation_env(equipment, self._clock, scripts_dir=self._scripts_dir)
        # Off the loop: checking targets against the sky runs astropy's transforms (~1 s
        # on a busy machine), which would hold every device and request meanwhile.
        issues = await asyncio.to_thread(parsed.check, env)
        if forbidden := [i for i in issues if i.forbidden]:
            raise DocumentError(forbidden)
        if issues and not ignore_issues:
            raise RunBlocked(issues)
        return await self.start(parsed, template_id)

    async def resume(self, run_id: int) -> None:
        """Continue an interrupted run where it stopped; `NotFound` for an unknown run,
        `RunConflict` when it is not interrupted or another run is active."""

        def load() -> tuple[dict[str, Any], dict[str, Any], str]:
            with Session(self._engine) as db:
                row = db.get(SequenceRun, run_id)
                if row is None:
                    raise NotFound(f"no run {run_id}")
                if row.owner != owner_of(self._engine):
                    raise RunConflict(
                        f"run {run_id} belongs to the daemon of profile {row.owner!r}; "
                        "resume it there"
                    )
                return row.document, row.state, row.status

        document_data, state_data, status = await asyncio.to_thread(load)
        self._refuse_if_busy()
        if status != RunStatus.INTERRUPTED.value:
            raise RunConflict(f"run {run_id} is {status}; only an interrupted run can resume")
        state = RunState.from_json(state_data)
        state.prepare_resume()
        document = SequenceDocument.model_validate(document_data)
        self._launch(run_id, document, state)

    async def request(self, run_id: int, action: str) -> None:
        """An action asked over the API: resume an interrupted run, or pause, resume, skip or
        abort the active one. `NotFound` for an unknown run, `RunConflict` when the run is not
        in a state that allows the action."""
        if action == "resume" and self.active_run_id != run_id:
            await self.resume(run_id)
            return
        if self.active_run_id != run_id:
            await asyncio.to_thread(get_run, self._engine, run_id)
        self.control(run_id, action)
        if action in ("pause", "resume") and self._active is not None:
            await self._active.runner.journal()  # the answer shows the pause on its way

    def control(self, run_id: int, action: str) -> None:
        """pause, resume, skip or abort the active run."""
        if self._active is None or self._active.run_id != run_id or self._active.task.done():
            raise RunConflict(f"run {run_id} is not running")
        runner = self._active.runner
        if action == "pause":
            runner.pause()
        elif action == "resume":
            runner.resume()
        elif action == "skip":
            if not runner.skip_current():
                raise RunConflict("no instruction is running to skip")
        elif action == "abort":
            runner.abort()
        else:
            raise ValueError(f"unknown action {action!r}")

    async def mark_interrupted(self) -> list[int]:
        """At startup: this daemon's runs a crash left pending (created, not yet journaled),
        running or paused become interrupted, so they can be resumed. Other daemons' runs
        sharing the database are left alone."""

        def mark() -> list[int]:
            with Session(self._engine) as db, db.begin():
                unfinished = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED]
                rows = db.scalars(
                    select(SequenceRun)
                    .where(
                        SequenceRun.status.in_(unfinished),
                        owned_by_engine(SequenceRun.owner, self._engine),
                    )
                    .order_by(SequenceRun.id)
                ).all()
                for row in rows:
                    row.status = RunStatus.INTERRUPTED.value
                    row.state = {**row.state, "status": RunStatus.INTERRUPTED.value}
                return [row.id for row in rows]

        return await asyncio.to_thread(mark)

    async def shutdown(self) -> None:
        """Interrupt the active run (resumable); its end area does not run."""
        if self._active is None or self._active.task.done():
            return
        self._active.runner.interrupt()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._active.task

    async def wait(self, run_id: int) -> RunStatus:
        """Wait for the active run `run_id` to finish (tests, the CLI)."""
        if self._active is None or self._active.run_id != run_id:
            raise RunConflict(f"run {run_id} is not running")
        return await self._active.task

    def _refuse_if_busy(self) -> None:
        if self.active_run_id is not None:
            raise RunConflict(f"run {self.active_run_id} is active; abort it or wait")

    def _launch(self, run_id: int, document: SequenceDocument, state: RunState) -> None:
        events = RunEvents(self._engine, run_id, self.bus)
        ctx = self._context_factory(run_id, events)
        runner = SequenceRunner(document, ctx, RunRowJournal(self._engine, run_id), state)
        task = asyncio.create_task(self._run(run_id, runner), name=f"run {run_id}")
        self._active = _Active(run_id, runner, task)
        task.add_done_callback(self._finished)

    async def _run(self, run_id: int, runner: SequenceRunner) -> RunStatus:
        status = await runner.run()
        if (
            self._on_finished is not None
            and status is not RunStatus.INTERRUPTED
            and run_id not in self._no_hand_off
        ):
            try:
                await self._on_finished(run_id, status)
            except Exception:  # the hand-off must not turn a finished run into a failed one
                log.exception("after run %d", run_id)
        return status

    def _finished(self, task: asyncio.Task[RunStatus]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("run task failed", exc_info=task.exception())
