"""Turn a NINA Advanced Sequencer file into one of our sequence documents plus a report.

Accepted: a template (`*.template.json`: one container, often a deep-sky object container),
a whole sequence (NINA's root container with its start, target and end areas) and a list of
containers (targets). Every NINA node gets a report entry: mapped, approximated (mapped with a
stated difference) or not mapped (with its path in the NINA document and its `$type`); a field
of a known node that we do not read is reported as not mapped too. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from sequences.document import SequenceDocument, error_issues, parse_document
from sequences.errors import DocumentError
from sequences.nina.mapping import (
    COMMON_FIELDS,
    CONDITIONS,
    ITEMS,
    ON_ERROR,
    TRIGGERS,
    Json,
    Mapped,
    Rule,
    Unmapped,
    coordinates,
    position_angle,
)
from sequences.nina.newtonsoft import NinaFormatError, NinaNode, collection, read_document

Status = Literal["mapped", "approximated", "not_mapped"]
CONTAINER_KINDS = frozenset({"sequential", "parallel", "target"})


@dataclass(frozen=True)
class ReportEntry:
    nina_path: str
    """Where in the NINA document (`Items[2].Items[0]`; empty for the top object)."""
    nina_type: str
    """NINA's class, without its assembly."""
    status: Status
    kinds: tuple[str, ...] = ()
    """Our node kinds it became."""
    note: str = ""


@dataclass
class ImportReport:
    entries: list[ReportEntry] = field(default_factory=list)

    def with_status(self, status: Status) -> list[ReportEntry]:
        return [e for e in self.entries if e.status == status]

    @property
    def not_mapped(self) -> list[ReportEntry]:
        return self.with_status("not_mapped")

    def to_dict(self) -> dict[str, Any]:
        counts = {s: len(self.with_status(s)) for s in ("mapped", "approximated", "not_mapped")}
        return {**counts, "entries": [asdict(e) for e in self.entries]}

    def lines(self) -> list[str]:
        """The report as text: counts, then the approximated and unmapped nodes by path."""
        out = [
            f"{len(self.with_status('mapped'))} mapped, "
            f"{len(self.with_status('approximated'))} approximated, "
            f"{len(self.not_mapped)} not mapped"
        ]
        for entry in self.entries:
            if entry.status == "mapped" and not entry.note:
                continue
            label = {"mapped": "note", "approximated": "approximated", "not_mapped": "NOT MAPPED"}
            ours = f" -> {', '.join(entry.kinds)}" if entry.kinds else ""
            out.append(
                f"  {label[entry.status]}: {entry.nina_path or '(top)'} "
                f"{entry.nina_type}{ours}: {entry.note}"
            )
        return out


@dataclass(frozen=True)
class NinaImport:
    document: SequenceDocument
    report: ImportReport


class NinaImportRefused(NinaFormatError):
    """Strict import: the file has nodes we do not map; `report` lists them."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        paths = ", ".join(f"{e.nina_path or '(top)'} ({e.nina_type})" for e in report.not_mapped)
        super().__init__(
            f"{len(report.not_mapped)} NINA node(s) or field(s) not mapped: {paths}; "
            "import without strict to get the rest, or remove them in NINA"
        )


class Mapper:
    """Walks NINA's tree through the tables of `sequences.nina.mapping`, recording a report."""

    def __init__(self) -> None:
        self.report = ImportReport()

    def item(self, n: NinaNode) -> list[Json]:
        return self._apply(n, ITEMS, node_fields=True)

    def items(self, n: NinaNode) -> list[Json]:
        return [node for child in n.children("Items") for node in self.item(child)]

    def container(self, n: NinaNode, kind: str) -> Json:
        """Our container of `kind` with NINA's items, triggers and conditions; a loop of one
        exposure (NINA's Smart Exposure, Take Many Exposures) becomes one `take_exposures`."""
        node: Json = {"kind": kind}
        name = str(n.get("Name") or "").strip()
        if name:
            node["name"] = name[:200]
        items = self.items(n)
        triggers = [t for c in n.children("Triggers") for t in self._apply(c, TRIGGERS)]
        conditions = [c for x in n.children("Conditions") for c in self._apply(x, CONDITIONS)]
        folded = _fold_exposure_loop(items, conditions) if kind == "sequential" else None
        if folded is not None:
            items, conditions = [folded], []
        for key, values in (("items", items), ("triggers", triggers), ("conditions", conditions)):
            if values:
                node[key] = values
        return node

    def target(self, n: NinaNode) -> Mapped:
        """A deep-sky object container -> our target container: name, coordinates and (when
        NINA centers and rotates to the target) the position angle."""
        node = self.container(n, "target")
        target = n.child("Target")
        notes = []
        name = str(target.get("TargetName") or "").strip() if target is not None else ""
        if not name:
            name = str(n.get("Name") or "").strip() or "Target"
            notes.append(f"no target name in NINA: named {name!r}")
        coords = coordinates(target.child("InputCoordinates")) if target is not None else None
        if coords is None or (coords["ra_hours"] == 0 and coords["dec_deg"] == 0):
            notes.append("coordinates RA 0h Dec 0 (a template placeholder?): set the target's")
        node["target_name"] = name[:200]
        node["coordinates"] = coords or {"ra_hours": 0.0, "dec_deg": 0.0}
        if target is not None and _rotates_to_target(n.data):
            node["rotation_deg"] = position_angle(target)
        return Mapped([node], "; ".join(notes))

    def _apply(
        self, n: NinaNode, table: dict[str, Rule], *, node_fields: bool = False
    ) -> list[Json]:
        rule = table.get(n.class_name)
        if rule is None:
            where = "a plugin" if not n.class_name.startswith("NINA.") else "not supported"
            self._record(n, "not_mapped", (), f"unknown NINA type ({where}): left out")
            return []
        try:
            mapped = rule.build(n, self)
        except Unmapped as e:
            self._record(n, "not_mapped", (), f"{e}: left out")
            return []
        if node_fields:
            for node in mapped.nodes:
                _node_fields(n, node)
        kinds = tuple(node["kind"] for node in mapped.nodes)
        self._record(n, "approximated" if mapped.note else "mapped", kinds, mapped.note)
        for key in sorted(set(n.data) - COMMON_FIELDS - rule.reads):
            value = n.data[key]
            if not key.startswith("$") and value not in (None, False, 0, "", [], {}):
                self.report.entries.append(
                    ReportEntry(
                        f"{n.path}.{key}" if n.path else key,
                        n.class_name,
                        "not_mapped",
                        (),
                        f"field {key} = {_short(value)} is not read",
                    )
                )
        return mapped.nodes

    def _record(self, n: NinaNode, status: Status, kinds: tuple[str, ...], note: str) -> None:
        self.report.entries.append(ReportEntry(n.path, n.class_name, status, kinds, note))


def import_nina(text: str | bytes, *, name: str | None = None, strict: bool = False) -> NinaImport:
    """Our document and the report for a NINA file's text.

    Raises NinaFormatError when the text is not a NINA sequence file (message: where and
    what), NinaImportRefused with `strict` when anything is not mapped, and DocumentError
    when the mapped values fall outside our limits (its issues name the fields).
    """
    data, refs = read_document(text)
    mapper = Mapper()
    start: Json = {"kind": "sequential", "name": "Start"}
    end: Json = {"kind": "sequential", "name": "End"}
    if isinstance(data, list) or "$values" in data:
        top_name = None
        targets = _as_targets([node for n in collection(data, "", refs) for node in mapper.item(n)])
    else:
        root = NinaNode(data, "", refs)
        top_name = str(root.get("Name") or "").strip() or None
        if root.short_type == "SequenceRootContainer":
            targets = []
            for area in root.children("Items"):
                if area.short_type == "StartAreaContainer":
                    start = {**mapper.container(area, "sequential"), "name": "Start"}
                elif area.short_type == "EndAreaContainer":
                    end = {**mapper.container(area, "sequential"), "name": "End"}
                else:
                    targets += _as_targets(mapper.items(area))
            mapper.report.entries.insert(0, ReportEntry("", root.class_name, "mapped"))
        else:
            targets = _as_targets(mapper.item(root))
    if strict and mapper.report.not_mapped:
        raise NinaImportRefused(mapper.report)
    document = {
        "name": (name or top_name or "Imported from NINA")[:200],
        "description": "Imported from a N.I.N.A. Advanced Sequencer file",
        "start": start,
        "targets": targets,
        "end": end,
    }
    try:
        return NinaImport(parse_document(document), mapper.report)
    except ValidationError as e:
        raise DocumentError(error_issues(e)) from e


def _as_targets(nodes: list[Json]) -> list[Json]:
    """Containers stay targets; instructions between them are grouped into sequential ones."""
    targets: list[Json] = []
    loose: list[Json] = []
    for node in nodes:
        if node["kind"] in CONTAINER_KINDS:
            if loose:
                targets.append({"kind": "sequential", "items": loose})
                loose = []
            targets.append(node)
        else:
            loose.append(node)
    if loose:
        targets.append({"kind": "sequential", "items": loose})
    return targets


def _fold_exposure_loop(items: list[Json], conditions: list[Json]) -> Json | None:
    """[switch_filter..., take_exposures x1] looped N times -> take_exposures x N with the
    filter (the same frames; triggers count them the same way)."""
    if len(conditions) != 1 or conditions[0]["kind"] != "loop_count" or not items:
        return None
    *filters, exposure = items
    if exposure["kind"] != "take_exposures" or exposure["count"] != 1:
        return None
    if any(
        f["kind"] != "switch_filter" or set(f) - {"kind", "filter_name", "on_error", "attempts"}
        for f in filters
    ):
        return None
    folded = {**exposure, "count": min(conditions[0]["count"], 10_000)}
    if filters:
        folded["filter_name"] = filters[-1]["filter_name"]
    return folded


def _node_fields(n: NinaNode, node: Json) -> None:
    """NINA's attempts and error behaviour on our instruction or container."""
    attempts = n.get("Attempts")
    if isinstance(attempts, int) and attempts > 1:
        node["attempts"] = min(attempts, 20)
    behavior = n.get("ErrorBehavior")
    node["on_error"] = ON_ERROR.get(behavior if isinstance(behavior, int) else 0, "continue")


def _rotates_to_target(data: Any) -> bool:
    """Whether a Center and Rotate below takes the target's angle (NINA then rotates to it)."""
    if isinstance(data, list):
        return any(_rotates_to_target(v) for v in data)
    if not isinstance(data, dict):
        return False
    if "CenterAndRotate," in str(data.get("$type", "")) and data.get("Inherited"):
        return True
    return any(_rotates_to_target(v) for k, v in data.items() if k != "Parent")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
