"""The sequence runner: walks a document, keeps the run state, applies retries and error behaviour.

- Every instruction runs in its own task, so *skip* cancels just it and *abort* cancels the run;
  cancellation reaches the device calls (an exposure is aborted on the camera).
- Between units of work (between items, and between the exposures of an exposure instruction)
  the runner checkpoints: triggers of the enclosing containers run, the containers' conditions
  are re-checked, a pause request waits there.
- Watched conditions (safety) are polled on wall time by a watcher task and interrupt their
  container at once, wherever it is.
- The end area always runs (shielded from cancellation), after success, failure or abort.
  Dome slaving that the run turned on stops when the run ends, whichever way.
- The state is journaled before and after every instruction; a runner built with a previous
  state skips what finished and continues with the rest. The state holds the run's facts
  (lights taken, last autofocus, guiding) and the context works on that same object, so
  every save journals them and a resumed run starts from the restored ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from sequences.base import Condition, Instruction, Node, Step
from sequences.context import EventSink, RunContext, Scope
from sequences.document import (
    AnyItem,
    Container,
    ParallelContainer,
    SequenceDocument,
    TargetContainer,
)
from sequences.frames import FrameType, SavedFrame
from sequences.model import Area, OnError, Status
from sequences.state import NodeState, RunState, RunStatus

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 2.0


class RunJournal(Protocol):
    async def save(self, state: RunState) -> None:
        """Persist the run state (called before and after every step)."""
        ...


class _Escalation(Exception):
    def __init__(self, behaviour: OnError, path: str) -> None:
        self.behaviour = behaviour
        self.path = path
        super().__init__(f"{behaviour} from {path}")


class _Interrupted(Exception):
    """A container's condition stopped holding; unwinds to that container."""

    def __init__(self, path: str) -> None:
        self.path = path


@dataclass
class _Active:
    container: Container
    path: str
    scope: Scope


class SequenceRunner:
    def __init__(
        self,
        document: SequenceDocument,
        ctx: RunContext,
        journal: RunJournal,
        state: RunState | None = None,
        *,
        watch_interval_s: float = WATCH_INTERVAL_S,
    ) -> None:
        self.document = document
        self.ctx = ctx
        self.state = state or RunState()
        ctx.facts = self.state.facts
        self._journal = journal
        self._watch_interval_s = watch_interval_s
        self._active: list[_Active] = []
        self._resume = asyncio.Event()
        self._resume.set()
        self._current: asyncio.Task[None] | None = None
        self._main: asyncio.Task[None] | None = None
        self._skip_requested = False
        self._pause_cancel = False
        self._current_instruction: Instruction | None = None
        self._save_lock = asyncio.Lock()
        self._interrupt: str | None = None
        self._labels = node_labels(document)
        ctx.events = _NamedEvents(ctx.events, self._labels)
        self._aborted = False
        self._interrupted = False
        self._in_trigger = False

    # -- control -----------------------------------------------------------------------------

    def pause(self) -> None:
        """Pause at the next checkpoint (after the current exposure); a wait (for the sky, a
        time, safety) pauses at once and starts over after the resume. Until the pause takes
        effect, `state.pause_requested` says it is on its way."""
        self._resume.clear()
        if self.state.status is RunStatus.RUNNING:
            self.state.pause_requested = True
        current, task = self._current_instruction, self._current
        if current is not None and current.pausable and task is not None and not task.done():
            self._pause_cancel = True
            task.cancel()

    def resume(self) -> None:
        self._resume.set()
        self.state.pause_requested = False
        if self.state.status is RunStatus.PAUSED:
            self.state.status = RunStatus.RUNNING

    async def journal(self) -> None:
        """Save the state now (after a control request changed it)."""
        await self._save()

    def skip_current(self) -> bool:
        """Cancel the running instruction; the run goes on with the next one."""
        if self._current is None or self._current.done():
            return False
        self._skip_requested = True
        self._current.cancel()
        return True

    def abort(self) -> None:
        """Stop the run; the end area still runs."""
        self._aborted = True
        self._resume.set()
        if self._main is not None:
            self._main.cancel()

    def interrupt(self) -> None:
        """Stop without the end area, resumable later (the daemon is shutting down)."""
        self._interrupted = True
        self._resume.set()
        if self._main is not None:
            self._main.cancel()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> RunStatus:
        """Run to the end; returns the final status. Cancelling it aborts (end area shielded)."""
        self.state.status = RunStatus.RUNNING
        await self._save()
        await self._emit("info", f"run started: {self.document.name}")
        failed_runner: BaseException | None = None
        watcher = asyncio.create_task(self._watch())
        try:
            self._main = asyncio.create_task(self._main_areas())
            if self._aborted or self._interrupted:  # asked for while the run was starting
                self._main.cancel()
            try:
                await self._main
            except _Escalation as e:
                await self._emit(
                    "warning",
                    f"{e.behaviour} after {self._label(e.path)}: going to the end area",
                    path=e.path,
                )
                if e.behaviour is OnError.ABORT:
                    self._aborted = True
            except asyncio.CancelledError:
                if not (self._aborted or self._interrupted):
                    raise
            except Exception as e:  # the runner is the supervisor: make it visible
                log.exception("run failed")
                failed_runner = e
                await self._emit("error", f"run failed: {e}")
            if not self._interrupted:
                await asyncio.shield(self._end_area())
        except asyncio.CancelledError:
            if not self._interrupted:
                self._aborted = True
                await asyncio.shield(self._end_area())
            raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if self.ctx.dome_slaving is not None:
                await asyncio.shield(self.ctx.dome_slaving.stop())
            if self._interrupted:
                self.state.status = RunStatus.INTERRUPTED
            elif failed_runner is not None:
                self.state.status = RunStatus.FAILED
            elif self._aborted:
                self.state.status = RunStatus.ABORTED
            else:
                self.state.status = RunStatus.COMPLETED
            self.state.current = None
            self.state.pause_requested = False
            await asyncio.shield(self._save())
            await asyncio.shield(self._emit("info", f"run {self.state.status}"))
        return self.state.status

    async def _main_areas(self) -> None:
        if self.state.area is None:
            self.state.area = Area.START
        elif self.state.area != Area.END:
            await self._reconcile()
        await self._container(self.document.start, "start", Scope())
        self.state.area = Area.TARGETS
        for i, target in enumerate(self.document.targets):
            await self._container(target, f"targets[{i}]", Scope())

    async def _reconcile(self) -> None:
        """A resumed run: do the setup again (`Instruction.redo_on_resume`: connect, unpark,
        cool, slew, center, guide) in the start area and in the targets not finished, since a
        crash or power cut may have left the devices elsewhere; frames are not re-taken."""
        unfinished = ["start"] + [
            f"targets[{i}]"
            for i in range(len(self.document.targets))
            if not self.state.node(f"targets[{i}]").status.finished
        ]
        redo: list[str] = []
        for path, node in self.document.walk():
            state = self.state.nodes.get(path)
            if (
                isinstance(node, Instruction)
                and node.redo_on_resume
                and state is not None
                and state.status is Status.SUCCEEDED
                and any(path == top or path.startswith(top + ".") for top in unfinished)
            ):
                redo.append(path)
        for path in redo:
            self.state.nodes[path] = NodeState()
            parts = path.split(".")
            for depth in range(1, len(parts)):  # the containers above it run again
                self.state.node(".".join(parts[:depth])).status = Status.PENDING
        if redo:
            names = ", ".join(self._label(p) for p in redo)
            await self._emit("info", f"resuming: setting up again ({names})")
        await self._save()

    async def _end_area(self) -> None:
        self._resume.set()
        self.state.area = Area.END
        try:
            await self._container(self.document.end, "end", Scope())
        except _Escalation as e:
            await self._emit(
                "error", f"end area stopped after a failure of {self._label(e.path)}", path=e.path
            )

    # -- containers ----------------------------------------------------------------------------

    async def _container(self, container: Container, path: str, scope: Scope) -> None:
        node = self.state.node(path)
        if node.status.finished:
            return
        if isinstance(container, TargetContainer):
            scope = Scope(target=container.target_ref())
        await self._set(node, path, Status.RUNNING)
        active = _Active(container, path, scope)
        self._active.append(active)
        try:
            await self._loop(container, path, scope)
            await self._set(node, path, Status.SUCCEEDED)
        except _Interrupted as e:
            if e.path != path:
                raise
            await self._emit("info", f"{container.label}: condition no longer holds", path=path)
            await self._set(node, path, Status.SUCCEEDED)
        except _Escalation as e:
            if e.behaviour is not OnError.SKIP_CONTAINER:
                await self._set(node, path, Status.FAILED)
                raise
            await self._set(node, path, Status.FAILED)
            await self._emit("warning", f"skipped the rest of {container.label}", path=path)
        except asyncio.CancelledError:
            if self._interrupt == path:
                self._interrupt = None
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                await self._emit("warning", f"{container.label}: interrupted", path=path)
                await self._set(node, path, Status.SUCCEEDED)
            else:
                if not self._interrupted:  # an interrupted run resumes this container later
                    await self._set(node, path, Status.CANCELLED)
                raise
        finally:
            self._active.remove(active)

    async def _loop(self, container: Container, path: str, scope: Scope) -> None:
        while True:
            if not await self._conditions_hold(container, path, scope):
                return
            if path in self.state.passes_ended:  # a new pass: forget the last one's states
                self.state.reset_below(path)
                self.state.passes_ended.remove(path)
            await self._items(container, path, scope)
            if not container.conditions:
                return
            for i, condition in enumerate(container.conditions):
                condition.iteration_done(self._condition_state(path, i))
            self.state.iterations[path] = self.state.iterations.get(path, 0) + 1
            self.state.passes_ended.append(path)
            await self._save()

    async def _items(self, container: Container, path: str, scope: Scope) -> None:
        if isinstance(container, ParallelContainer):
            try:
                async with asyncio.TaskGroup() as group:
                    for i, item in enumerate(container.items):
                        group.create_task(self._item(item, f"{path}.items[{i}]", scope))
            except* (_Escalation, _Interrupted) as group_error:
                raise group_error.exceptions[0] from None
            return
        for i, item in enumerate(container.items):
            if i > 0:
                await self.checkpoint()
            await self._item(item, f"{path}.items[{i}]", scope)

    async def _item(self, item: AnyItem, path: str, scope: Scope) -> None:
        if isinstance(item, Container):
            await self._container(item, path, scope)
        else:
            await self._instruction(item, path, scope)

    # -- instructions --------------------------------------------------------------------------

    async def _instruction(self, instruction: Instruction, path: str, scope: Scope) -> None:
        node = self.state.node(path)
        if node.status.finished:
            return
        while node.attempts < instruction.attempts:
            node.attempts += 1
            node.error = None
            self._pause_cancel = False
            self.state.current = path
            await self._set(node, path, Status.RUNNING)
            await self._emit("info", f"{instruction.label} started", path=path)
            step = Step(
                path=path,
                attempt=node.attempts,
                scope=scope,
                counters=node.counters,
                checkpoint=self.checkpoint,
                on_frame=self._frame_saved,
                on_exposure=self._exposure_done,
            )
            self._skip_requested = False
            self._current_instruction = instruction
            self._current = asyncio.create_task(self._prepared(instruction, step))
            if instruction.pausable and self.paused:
                # Paused while this wait was starting (after `current` was saved, before the
                # task existed): it pauses now, as it would have a moment later.
                self._pause_cancel = True
                self._current.cancel()
            try:
                await self._current
            except asyncio.CancelledError:
                if self._skip_requested and not self._aborted:
                    await self._set(node, path, Status.SKIPPED)
                    await self._emit("warning", f"{instruction.label} skipped", path=path)
                    return
                if self._pause_cancel and not self._stopping():
                    # A paused wait: it starts over after the resume, as the same attempt.
                    self._pause_cancel = False
                    node.attempts -= 1
                    try:
                        await self._hold_if_paused(instruction.label)
                    except asyncio.CancelledError:
                        if not self._interrupted:
                            await self._set(node, path, Status.CANCELLED)
                        raise
                    continue
                self._current.cancel()
                with contextlib.suppress(BaseException):
                    await self._current  # let the device abort finish before moving on
                if not self._interrupted:  # an interrupted run starts this node over later
                    await self._set(node, path, Status.CANCELLED)
                raise
            except (_Interrupted, _Escalation):
                raise
            except Exception as e:  # the runner is the supervisor: failures become state
                node.error = f"{type(e).__name__}: {e}" if not str(e) else str(e)
                await self._emit(
                    "error",
                    f"{instruction.label} failed (attempt {node.attempts}/"
                    f"{instruction.attempts}): {node.error}",
                    path=path,
                )
                await self._save()
                if node.attempts < instruction.attempts and instruction.retry_delay_s > 0:
                    await asyncio.sleep(instruction.retry_delay_s)
                continue
            finally:
                self._current = None
                self._current_instruction = None
            await self._set(node, path, Status.SUCCEEDED)
            await self._emit("info", f"{instruction.label} done", path=path)
            return
        await self._set(node, path, Status.FAILED)
        if instruction.on_error is not OnError.CONTINUE:
            raise _Escalation(instruction.on_error, path)

    async def _prepared(self, instruction: Instruction, step: Step) -> None:
        """`prepare`, its counters saved, then `execute`."""
        await instruction.prepare(self.ctx, step)
        await self._save()
        await instruction.execute(self.ctx, step)

    # -- checkpoints, triggers, conditions -----------------------------------------------------

    async def checkpoint(self) -> None:
        """Between units of work: pause requests, triggers, then the conditions of every
        enclosing container (innermost last)."""
        await self._hold_if_paused()
        if self._in_trigger:
            return
        await self._run_triggers()
        for active in list(self._active):
            if not await self._conditions_hold(active.container, active.path, active.scope):
                raise _Interrupted(active.path)

    async def _hold_if_paused(self, during: str | None = None) -> None:
        """Wait here while a pause is asked for (`during`: the wait it interrupted)."""
        if self._resume.is_set():
            return
        self.state.status = RunStatus.PAUSED
        self.state.pause_requested = False
        await self._save()
        await self._emit("info", f"paused during {during}" if during else "paused")
        await self._resume.wait()
        self.state.status = RunStatus.RUNNING
        await self._save()
        await self._emit("info", "resumed")

    def _stopping(self) -> bool:
        """Whether the run itself is being cancelled (abort, stop, a watched condition)."""
        task = asyncio.current_task()
        cancelling = task is not None and task.cancelling() > 0
        return cancelling or self._aborted or self._interrupted

    async def _run_triggers(self) -> None:
        self._in_trigger = True
        try:
            for active in list(self._active):
                for i, trigger in enumerate(active.container.triggers):
                    tpath = f"{active.path}.triggers[{i}]"
                    tstate = self.state.triggers.setdefault(tpath, {})
                    if not await trigger.should_run(self.ctx, tstate, active.scope):
                        continue
                    await self._emit("info", f"trigger {trigger.label}", path=tpath)
                    try:
                        await trigger.run(self.ctx, tstate, active.scope)
                    except Exception as e:  # a failed trigger is reported, the run goes on
                        await self._emit(
                            "error", f"trigger {trigger.label} failed: {e}", path=tpath
                        )
                    await self._save()
        finally:
            self._in_trigger = False

    def _exposure_done(self, frame_type: FrameType) -> None:
        for active in self._active:
            for i, trigger in enumerate(active.container.triggers):
                tpath = f"{active.path}.triggers[{i}]"
                trigger.exposure_done(self.state.triggers.setdefault(tpath, {}), frame_type)

    async def _frame_saved(self, frame: SavedFrame) -> None:
        for active in self._active:
            for i, trigger in enumerate(active.container.triggers):
                tpath = f"{active.path}.triggers[{i}]"
                trigger.frame_saved(self.state.triggers.setdefault(tpath, {}), frame)
        await self._save()  # the instruction's frame counter

    async def _conditions_hold(self, container: Container, path: str, scope: Scope) -> bool:
        for i, condition in enumerate(container.conditions):
            if not await condition.holds(self.ctx, self._condition_state(path, i), scope):
                await self._emit(
                    "info", f"condition {condition.label} ended {container.label}", path=path
                )
                return False
        return True

    def _condition_state(self, path: str, index: int) -> dict[str, object]:
        return self.state.conditions.setdefault(f"{path}.conditions[{index}]", {})

    async def _watch(self) -> None:
        """Poll watched conditions of the active containers on wall time; interrupt on failure."""
        while True:
            await asyncio.sleep(self._watch_interval_s)
            for active in list(self._active):
                watched = [(i, c) for i, c in enumerate(active.container.conditions) if c.watched]
                for i, condition in watched:
                    try:
                        holds = await condition.holds(
                            self.ctx, self._condition_state(active.path, i), active.scope
                        )
                    except Exception as e:
                        log.warning("watched condition %s failed to answer: %s", condition, e)
                        holds = False
                    if not holds:
                        await self._interrupt_container(active, condition)
                        break

    async def _interrupt_container(self, active: _Active, condition: Condition) -> None:
        await self._emit(
            "warning",
            f"{condition.label} no longer holds: interrupting {active.container.label}",
            path=active.path,
        )
        self._interrupt = active.path
        if self.state.area == Area.END:
            return
        if self._main is not None:
            self._main.cancel()

    # -- journal -----------------------------------------------------------------------------

    async def _set(self, node: NodeState, path: str, status: Status) -> None:
        now = self.ctx.clock.now().isoformat()
        node.status = status
        if status is Status.RUNNING:
            node.started_at = node.started_at or now
        elif status.finished:
            node.ended_at = now
        await self._save()

    async def _save(self) -> None:
        async with self._save_lock:  # in order: the last state asked for is the one kept
            await self._journal.save(self.state)

    def _label(self, path: str) -> str:
        """The node at `path` for people: its kind and name ("take_exposures 'Ha'")."""
        return self._labels.get(path, path)

    async def _emit(self, level: str, message: str, *, path: str | None = None) -> None:
        getattr(log, "warning" if level == "warning" else level, log.info)("%s", message)
        await self.ctx.events.emit(level, message, path=path)


class _NamedEvents:
    """The run's event sink, adding the node's name for people (`data["node"]`) to every
    event that carries a node path (kept for machines)."""

    def __init__(self, inner: EventSink, labels: dict[str, str]) -> None:
        self._inner = inner
        self._labels = labels

    async def emit(
        self,
        level: str,
        message: str,
        *,
        path: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if path is not None:
            label = self._labels.get(path)
            data = {"node": label, **(data or {})} if label else data
        await self._inner.emit(level, message, path=path, data=data)


def node_labels(document: SequenceDocument) -> dict[str, str]:
    """Every node's, trigger's and condition's label by its path."""
    labels: dict[str, str] = {}
    for path, node in document.walk():
        labels[path] = node_label(node)
        if isinstance(node, Container):
            for i, trigger in enumerate(node.triggers):
                labels[f"{path}.triggers[{i}]"] = trigger.label
            for i, condition in enumerate(node.conditions):
                labels[f"{path}.conditions[{i}]"] = condition.label
    return labels


def node_label(node: Node) -> str:
    """A node for people: its kind and name, a target container by its target."""
    if isinstance(node, TargetContainer) and not node.name:
        return f"target {node.target_name!r}"
    return node.label


@contextlib.asynccontextmanager
async def running(runner: SequenceRunner) -> AsyncIterator[asyncio.Task[RunStatus]]:
    """Run in a background task for the duration of the block (tests, the daemon)."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        if not task.done():
            runner.abort()
            with contextlib.suppress(asyncio.CancelledError):
                await task
