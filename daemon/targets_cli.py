"""`nightowl target`: find an object by name, or read typed coordinates, offline.

    nightowl target M31                     matches: name, kind, RA and Dec in both forms, size
    nightowl target orion nebula --json     the same as JSON (the API's fields)
    nightowl target "00 42 44.3 +41 16 09"  the coordinates echoed in both forms

The names come from `daemon.targets.search` (OpenNGC and the bright named stars), as on the
Framing page. A query that matches nothing exits with status 1 and says what it looked for.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.targets import TargetMatch

ASKED_FOR = (
    "a Messier, NGC or IC number (M31, NGC 7000), a common name (Orion Nebula), a bright "
    "star (Vega) or coordinates (00 42 44.3 +41 16 09)"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    target = commands.add_parser(
        "target", help="find an object by name or read coordinates (both forms printed)"
    )
    target.add_argument("query", nargs="+", help="a name (M31, Vega, orion nebula) or coordinates")
    target.add_argument("--json", action="store_true", help="print the matches as JSON")
    target.add_argument(
        "--limit", type=int, default=10, help="print at most this many matches (default 10)"
    )


def target_command(args: argparse.Namespace) -> int:
    """Exit status 0 with the matches on stdout; 1 with the reason on stderr for none.
    (Written to the streams directly: this is the command's console output.)"""
    from daemon.targets import search

    query = " ".join(args.query).strip()
    if args.limit < 1:
        sys.stderr.write("nightowl target: --limit must be 1 or more\n")
        return 2
    matches = search(query, args.limit) if query else []
    if not matches:
        sys.stderr.write(f"nightowl target: nothing matches {query!r}: give {ASKED_FOR}\n")
        return 1
    if args.json:
        text = json.dumps([_as_json(m) for m in matches], indent=2, ensure_ascii=False)
    else:
        text = "\n".join(_lines(m) for m in matches)
    sys.stdout.write(text + "\n")
    return 0


def _as_json(match: TargetMatch) -> dict[str, Any]:
    from sequences.coordinates import format_dec, format_ra

    return {
        "name": match.name,
        "aliases": list(match.aliases),
        "kind": match.kind,
        "ra_hours": match.ra_hours,
        "dec_deg": match.dec_deg,
        "ra_hms": format_ra(match.ra_hours),
        "dec_dms": format_dec(match.dec_deg),
        "size_arcmin": None if match.size_arcmin is None else list(match.size_arcmin),
        "position_angle_deg": match.position_angle_deg,
        "magnitude": match.magnitude,
    }


def _lines(match: TargetMatch) -> str:
    """Three lines per match: name and kind; RA and Dec in both forms; size and magnitude."""
    from sequences.coordinates import format_dec, format_ra

    head = match.name
    if match.aliases:
        head += f" ({', '.join(match.aliases)})"
    position = (
        f"  RA {format_ra(match.ra_hours)} = {match.ra_hours:.5f} h   "
        f"Dec {format_dec(match.dec_deg)} = {match.dec_deg:+.5f}°"
    )
    facts = []
    if match.size_arcmin is not None:
        major, minor = match.size_arcmin
        facts.append(f"size {major:g}′ × {minor:g}′")
    if match.position_angle_deg is not None:
        facts.append(f"PA {match.position_angle_deg:g}°")
    if match.magnitude is not None:
        facts.append(f"mag {match.magnitude:g}")
    lines = [f"{head}  [{match.kind}]", position]
    if facts:
        lines.append(f"  {', '.join(facts)}")
    return "\n".join(lines)
