"""`nightowl import-nina`: bring N.I.N.A. files over.

    nightowl import-nina "Target.template.json" [--json] [--strict] [--name NAME] [--save]
    nightowl import-nina site.hrz          (a horizon: checked, its points printed)

A sequence file prints the report (every node not mapped, with its path in the NINA file and
its `$type`); `--json` prints the document too, `--save` stores it as a template in the
daemon's database (NIGHTOWL_DATA_DIR / NIGHTOWL_DATABASE_URL), as "Name (2)" when "Name" is
taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from sequences.errors import DocumentError

if TYPE_CHECKING:
    from daemon.db.models import SequenceTemplate
    from sequences.document import SequenceDocument

HORIZON_SUFFIXES = frozenset({".hrz", ".hzn", ".txt", ".hpts"})


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nina = commands.add_parser(
        "import-nina", help="import a NINA Advanced Sequencer file or a .hrz horizon"
    )
    nina.add_argument("file", type=Path, help="*.template.json, a saved sequence, or a .hrz")
    nina.add_argument("--json", action="store_true", help="print the report and document as JSON")
    nina.add_argument("--strict", action="store_true", help="refuse a file with unmapped nodes")
    nina.add_argument("--name", help="the template's name (default: NINA's container name)")
    nina.add_argument("--save", action="store_true", help="save it as a template")


def import_nina_command(args: argparse.Namespace) -> int:
    """Exit status 0; 1 with the reason on stderr for a file we cannot import."""
    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as e:
        return _fail(f"cannot read {path}: {e.strerror}")
    if path.suffix.lower() in HORIZON_SUFFIXES:
        return _horizon(path, data, as_json=args.json)
    from daemon.templates import read_nina

    try:
        imported = read_nina(data, name=args.name or None, strict=args.strict)
    except DocumentError as e:
        return _fail(f"{path}: cannot import:\n" + _issue_lines(e))
    report = imported.report
    saved = None
    if args.save:
        try:
            saved = _save(imported.document)
        except DocumentError as e:
            return _fail(f"not saved:\n{_issue_lines(e)}")
        except ValidationError as e:
            return _fail(f"not saved: invalid NIGHTOWL_* settings: {e}")
    if args.json:
        out = {
            "report": report.to_dict(),
            "document": imported.document.model_dump(mode="json"),
            "template_id": saved.id if saved is not None else None,
            "template_name": saved.name if saved is not None else None,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{path.name} -> {imported.document.name!r}")
    print("\n".join(report.lines()))
    if saved is not None:
        print(f"saved as template {saved.id}, {saved.name!r}")
    return 0


def _save(document: SequenceDocument) -> SequenceTemplate:
    """Save as a new template under a free name in the daemon's database."""
    from daemon.db.engine import make_engine
    from daemon.db.migrate import upgrade
    from daemon.settings import Settings
    from daemon.templates import save_imported

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        return save_imported(engine, document)
    finally:
        engine.dispose()


def _horizon(path: Path, data: bytes, *, as_json: bool) -> int:
    from sequences.astro import Horizon

    try:
        horizon = Horizon.from_text(data.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as e:
        return _fail(f"{path}: not a horizon file: {e}")
    points = list(zip(horizon.azimuths_deg, horizon.altitudes_deg, strict=True))
    if as_json:
        print(json.dumps({"points": [{"azimuth_deg": a, "altitude_deg": h} for a, h in points]}))
        return 0
    kind = "MountWizzard4 .hpts" if data.lstrip().startswith(b"[") else "NINA .hrz"
    print(f"{path.name}: a {kind} horizon of {len(points)} points (azimuth, altitude in deg):")
    for azimuth, altitude in points:
        print(f"  {azimuth:7.2f} {altitude:6.2f}")
    print(
        f"lowest {min(horizon.altitudes_deg):.1f} deg, highest {max(horizon.altitudes_deg):.1f} "
        "deg; linear between points, around north too.\n"
        f"To use it: NIGHTOWL_HORIZON_FILE={path.resolve()} (altitude waits and conditions "
        "without an altitude then follow it)"
    )
    return 0


def _issue_lines(error: DocumentError) -> str:
    return "\n".join(
        f"  {i.path + ': ' if i.path else ''}{i.message} ({i.fix})" for i in error.issues
    )


def _fail(message: str) -> int:
    print(f"nightowl import-nina: {message}", file=sys.stderr)
    return 1
