"""`nightowl run`: a sequence document run headless against the configured equipment.

The same runtime as the daemon (database, frame store, run journal), so the frames and the
run are there for the API and the web UI afterwards. Progress goes to stdout, one event per
line. Ctrl-C aborts the run (its end area, e.g. park, still runs); a second Ctrl-C interrupts
it without the end area (resumable from the daemon).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from daemon.app import connect_and_prepare, open_runtime
from daemon.runs import drop_targets
from daemon.settings import Settings
from daemon.templates import load_document
from sequences.document import SequenceDocument
from sequences.errors import DocumentError
from sequences.state import RunStatus
from sequences.validation import validation_env


def run_document(
    settings: Settings, path: Path, targets: Sequence[Sequence[str]], ignore_issues: bool
) -> int:
    """Run the document at `path`; the exit status is 0 when the run completed."""
    try:
        document = _load(path, targets)
    except (OSError, ValueError, DocumentError) as e:
        print(f"nightowl run: {path}: {e}")
        return 2
    return asyncio.run(_run(settings, document, ignore_issues))


def _load(path: Path, targets: Sequence[Sequence[str]]) -> SequenceDocument:
    data = json.loads(path.read_text(encoding="utf-8"))
    document = load_document(data)
    drops = []
    for name, ra, dec in targets:
        try:
            drops.append({"name": name, "ra_hours": float(ra), "dec_deg": float(dec)})
        except ValueError as e:
            raise ValueError(
                f"--target {name} {ra} {dec}: RA (hours) and Dec (deg) are numbers"
            ) from e
    try:
        return drop_targets(document, drops)
    except ValidationError as e:
        raise ValueError(f"--target: {e.errors()[0]['msg']}") from e


async def _run(settings: Settings, document: SequenceDocument, ignore_issues: bool) -> int:
    async with open_runtime(settings) as runtime:
        await connect_and_prepare(runtime.equipment, settings.resolved_solver_cache_dir)
        env = await validation_env(
            runtime.equipment, runtime.clock, scripts_dir=settings.scripts_dir
        )
        issues = document.check(env)
        for issue in issues:
            print(f"problem: {issue.path}: {issue.message} (fix: {issue.fix})")
        if any(issue.forbidden for issue in issues):
            print("nightowl run: not started (a setting forbids it; --ignore-issues cannot)")
            return 2
        if issues and not ignore_issues:
            print("nightowl run: not started (fix the problems or pass --ignore-issues)")
            return 2
        run_id = await runtime.runs.start(document)
        print(f"run {run_id}: {document.name}", flush=True)
        loop = asyncio.get_running_loop()
        stops = 0
        interrupting: list[asyncio.Task[None]] = []

        def stop() -> None:
            nonlocal stops
            stops += 1
            action = "abort" if stops == 1 else "interrupt"
            print(f"\n{action}ing the run", flush=True)
            if stops == 1:
                runtime.runs.control(run_id, "abort")
            else:
                interrupting.append(loop.create_task(runtime.runs.shutdown()))

        loop.add_signal_handler(signal.SIGINT, stop)
        async with runtime.runs.bus.subscribe(run_id) as events:
            finished = asyncio.create_task(runtime.runs.wait(run_id))
            while not finished.done():
                getting = asyncio.create_task(events.get())
                await asyncio.wait({getting, finished}, return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    _print(getting.result())
                else:
                    getting.cancel()
            while not events.empty():
                _print(events.get_nowait())
        loop.remove_signal_handler(signal.SIGINT)
        status = finished.result()
        print(f"run {run_id}: {status.value}")
        return 0 if status is RunStatus.COMPLETED else 1


def _print(event: dict[str, object]) -> None:
    data = event.get("data")
    node = data.get("node") if isinstance(data, dict) else None
    where = f" [{node or event['path']}]" if event.get("path") else ""
    line = f"{str(event['time'])[11:19]} UTC {event['level']:7s} {event['message']}{where}"
    print(line, flush=True)
