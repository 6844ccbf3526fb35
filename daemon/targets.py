"""Targets: find an object by name or coordinates, chart its field, add a framing to a template
or a plan.

Names come from two offline sources: OpenNGC (the `pyongc` package's SQLite file: Messier,
NGC, IC, their common names and cross identifiers, sizes and position angles) and a short table
of bright named stars (`BRIGHT_STARS`: no installed catalog carries star names; the Gaia /
Hipparcos catalog of `processing.catalog` has positions and magnitudes only). The chart's stars
come from that Gaia / Hipparcos catalog. Everything here blocks (file reads, numpy): call it
from a thread.
"""

from __future__ import annotations

import copy
import math
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from daemon import plans as plan_service
from daemon import templates as template_service
from daemon.db.models import NightPlanRow, SequenceTemplate
from daemon.errors import Conflict, Refused
from drivers.equipment import Equipment
from processing.catalog import load_gaia_stars
from sequences.coordinates import CoordinateError, parse_position

DSO_KINDS: dict[str, str] = {
    "*": "star",
    "**": "double star",
    "*Ass": "association of stars",
    "OCl": "open cluster",
    "GCl": "globular cluster",
    "Cl+N": "cluster with nebula",
    "G": "galaxy",
    "GPair": "galaxy pair",
    "GTrpl": "galaxy triplet",
    "GGroup": "galaxy group",
    "PN": "planetary nebula",
    "HII": "HII region",
    "DrkN": "dark nebula",
    "EmN": "emission nebula",
    "Neb": "nebula",
    "RfN": "reflection nebula",
    "SNR": "supernova remnant",
    "Nova": "nova",
    "Other": "other",
}
"""OpenNGC's object types as shown to users; "Dup" and "NonEx" rows are never results."""

BRIGHT_STARS: tuple[tuple[str, str, float, float, float], ...] = (
    # name, Bayer designation, RA (h), Dec (deg), V magnitude; J2000
    ("Sirius", "alpha CMa", 6.752472, -16.716111, -1.46),
    ("Canopus", "alpha Car", 6.399194, -52.695661, -0.74),
    ("Rigil Kentaurus", "alpha Cen", 14.660139, -60.833889, -0.27),
    ("Arcturus", "alpha Boo", 14.261028, 19.182500, -0.05),
    ("Vega", "alpha Lyr", 18.615639, 38.783611, 0.03),
    ("Capella", "alpha Aur", 5.278167, 45.998056, 0.08),
    ("Rigel", "beta Ori", 5.242306, -8.201667, 0.13),
    ("Procyon", "alpha CMi", 7.655028, 5.225000, 0.34),
    ("Achernar", "alpha Eri", 1.628556, -57.236667, 0.46),
    ("Betelgeuse", "alpha Ori", 5.919528, 7.406944, 0.50),
    ("Hadar", "beta Cen", 14.063722, -60.373056, 0.61),
    ("Altair", "alpha Aql", 19.846389, 8.868333, 0.77),
    ("Acrux", "alpha Cru", 12.443306, -63.099167, 0.76),
    ("Aldebaran", "alpha Tau", 4.598667, 16.509167, 0.86),
    ("Antares", "alpha Sco", 16.490139, -26.431944, 0.96),
    ("Spica", "alpha Vir", 13.419889, -11.161389, 0.97),
    ("Pollux", "beta Gem", 7.755250, 28.026111, 1.14),
    ("Fomalhaut", "alpha PsA", 22.960833, -29.622222, 1.16),
    ("Deneb", "alpha Cyg", 20.690528, 45.280278, 1.25),
    ("Mimosa", "beta Cru", 12.795361, -59.688611, 1.25),
    ("Regulus", "alpha Leo", 10.139528, 11.967222, 1.35),
    ("Adhara", "epsilon CMa", 6.977083, -28.972222, 1.50),
    ("Castor", "alpha Gem", 7.576667, 31.888333, 1.58),
    ("Shaula", "lambda Sco", 17.560139, -37.103889, 1.62),
    ("Gacrux", "gamma Cru", 12.519444, -57.113222, 1.64),
    ("Bellatrix", "gamma Ori", 5.418861, 6.349722, 1.64),
    ("Elnath", "beta Tau", 5.438194, 28.607500, 1.65),
    ("Miaplacidus", "beta Car", 9.220000, -69.717222, 1.67),
    ("Alnilam", "epsilon Ori", 5.603556, -1.201944, 1.69),
    ("Alnair", "alpha Gru", 22.137222, -46.961111, 1.74),
    ("Alnitak", "zeta Ori", 5.679306, -1.942778, 1.77),
    ("Alioth", "epsilon UMa", 12.900472, 55.959722, 1.77),
    ("Dubhe", "alpha UMa", 11.062139, 61.750833, 1.79),
    ("Mirfak", "alpha Per", 3.405389, 49.861111, 1.79),
    ("Wezen", "delta CMa", 7.139861, -26.393333, 1.83),
    ("Kaus Australis", "epsilon Sgr", 18.402861, -34.384722, 1.85),
    ("Avior", "epsilon Car", 8.375222, -59.509444, 1.86),
    ("Alkaid", "eta UMa", 13.792333, 49.313333, 1.86),
    ("Menkalinan", "beta Aur", 5.992139, 44.947500, 1.90),
    ("Atria", "alpha TrA", 16.811083, -69.027778, 1.91),
    ("Alhena", "gamma Gem", 6.628528, 16.399167, 1.92),
    ("Peacock", "alpha Pav", 20.427472, -56.735000, 1.94),
    ("Polaris", "alpha UMi", 2.530194, 89.264167, 1.98),
    ("Mirzam", "beta CMa", 6.378333, -17.955833, 1.98),
    ("Alphard", "alpha Hya", 9.459778, -8.658611, 1.98),
    ("Hamal", "alpha Ari", 2.119556, 23.462500, 2.00),
    ("Diphda", "beta Cet", 0.726500, -17.986667, 2.04),
    ("Nunki", "sigma Sgr", 18.921083, -26.296667, 2.05),
    ("Mirach", "beta And", 1.162194, 35.620556, 2.05),
    ("Alpheratz", "alpha And", 0.139806, 29.090556, 2.06),
    ("Kochab", "beta UMi", 14.845111, 74.155556, 2.08),
    ("Rasalhague", "alpha Oph", 17.582222, 12.560000, 2.08),
    ("Saiph", "kappa Ori", 5.795944, -9.669722, 2.09),
    ("Almach", "gamma And", 2.064972, 42.329722, 2.10),
    ("Algol", "beta Per", 3.136139, 40.955556, 2.12),
    ("Denebola", "beta Leo", 11.817667, 14.571944, 2.14),
    ("Mizar", "zeta UMa", 13.398750, 54.925278, 2.23),
    ("Alphecca", "alpha CrB", 15.578139, 26.714722, 2.23),
    ("Mintaka", "delta Ori", 5.533444, -0.299167, 2.23),
    ("Sadr", "gamma Cyg", 20.370472, 40.256667, 2.23),
    ("Eltanin", "gamma Dra", 17.943444, 51.488889, 2.23),
    ("Schedar", "alpha Cas", 0.675139, 56.537222, 2.24),
    ("Caph", "beta Cas", 0.152972, 59.149722, 2.28),
    ("Merak", "beta UMa", 11.030694, 56.382500, 2.37),
    ("Enif", "epsilon Peg", 21.736444, 9.875000, 2.39),
    ("Scheat", "beta Peg", 23.062917, 28.082778, 2.42),
    ("Phecda", "gamma UMa", 11.897167, 53.694722, 2.44),
    ("Markab", "alpha Peg", 23.079361, 15.205278, 2.49),
    ("Menkar", "alpha Cet", 3.037972, 4.089722, 2.53),
    ("Unukalhai", "alpha Ser", 15.737806, 6.425556, 2.63),
    ("Vindemiatrix", "epsilon Vir", 13.036278, 10.959167, 2.83),
    ("Alcyone", "eta Tau", 3.791389, 24.105000, 2.87),
    ("Albireo", "beta Cyg", 19.512028, 27.959722, 3.05),
    ("Megrez", "delta UMa", 12.257083, 57.032500, 3.31),
    ("Thuban", "alpha Dra", 14.073167, 64.375833, 3.65),
)
"""The brightest named stars (IAU names), for finding them by name."""


@dataclass(frozen=True)
class TargetMatch:
    """One answer to a search: a deep-sky object, a named star or typed coordinates."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    ra_hours: float
    dec_deg: float
    size_arcmin: tuple[float, float] | None
    """Major and minor axis; None when the catalog gives no size (stars, some objects)."""
    position_angle_deg: float | None
    """Of the major axis, east of north."""
    magnitude: float | None


@dataclass(frozen=True)
class ChartStar:
    ra_hours: float
    dec_deg: float
    magnitude: float


@dataclass(frozen=True)
class Chart:
    stars: list[ChartStar]
    objects: list[TargetMatch]


@dataclass(frozen=True)
class CameraField:
    """The main camera's field on the sky (unbinned): from its sensor and the focal length the
    mount reports."""

    width_px: int
    height_px: int
    pixel_size_um: float
    focal_length_mm: float
    pixel_scale_arcsec: float
    width_deg: float
    height_deg: float


@dataclass(frozen=True)
class FramedTarget:
    """A target as framed: its centre (J2000) and the camera's position angle."""

    name: str
    ra_hours: float
    dec_deg: float
    rotation_deg: float | None


@dataclass(frozen=True)
class _Dso:
    match: TargetMatch
    keys: frozenset[str]
    """Normalised designations that find it exactly (``M31``, ``NGC224``, ``PGC2557``...)."""
    common: tuple[str, ...]
    """Lower-case common names."""


def search(query: str, limit: int) -> list[TargetMatch]:
    """Objects whose designation, common name or star name matches `query`; text that reads
    as coordinates answers one "coordinates" match instead. Best first: exact designations,
    then names that start with the query, then names that contain it, brighter first."""
    text = query.strip()
    if not text:
        return []
    try:
        position = parse_position(text)
    except CoordinateError:
        pass
    else:
        return [
            TargetMatch(
                name=text,
                aliases=(),
                kind="coordinates",
                ra_hours=position.ra_hours,
                dec_deg=position.dec_deg,
                size_arcmin=None,
                position_angle_deg=None,
                magnitude=None,
            )
        ]
    key = _designation_key(text)
    lower = " ".join(text.lower().split())
    by_key, named = _deep_sky_index()
    ranked: list[tuple[int, float, str, TargetMatch]] = [
        (0, _mag_order(dso.match), dso.match.name, dso.match) for dso in by_key.get(key, ())
    ]
    for dso in named:
        if key in dso.keys:
            continue
        if any(name == lower for name in dso.common):
            rank = 1
        elif any(name.startswith(lower) for name in dso.common):
            rank = 2
        elif len(lower) >= 3 and any(lower in name for name in dso.common):
            rank = 3
        else:
            continue
        ranked.append((rank, _mag_order(dso.match), dso.match.name, dso.match))
    for star in _named_stars():
        names = [n.lower() for n in (star.name, *star.aliases)]
        if lower in names or key in {_designation_key(n) for n in names}:
            rank = 1
        elif any(n.startswith(lower) for n in names):
            rank = 2
        else:
            continue
        ranked.append((rank, _mag_order(star), star.name, star))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked[:limit]]


def chart(
    ra_hours: float, dec_deg: float, radius_deg: float, mag_limit: float, max_stars: int
) -> Chart:
    """Stars brighter than `mag_limit` (Gaia G; Hipparcos V for the brightest) within
    `radius_deg` of the centre, at most `max_stars` of the brightest, and the deep-sky objects
    whose centre lies within the radius plus their own half size."""
    stars = _stars_by_dec()
    lo, hi = np.searchsorted(stars["dec_deg"], [dec_deg - radius_deg, dec_deg + radius_deg])
    band = stars[lo:hi]
    band = band[band["g_mag"] <= mag_limit]
    separation = _separation_deg(ra_hours * 15.0, dec_deg, band["ra_deg"], band["dec_deg"])
    near = band[separation <= radius_deg]
    near = near[np.argsort(near["g_mag"], kind="stable")[:max_stars]]
    chart_stars = [
        ChartStar(float(ra) / 15.0, float(dec), round(float(mag), 2))
        for ra, dec, mag in zip(near["ra_deg"], near["dec_deg"], near["g_mag"], strict=True)
    ]
    objects = []
    for dso in _deep_sky():
        m = dso.match
        reach = radius_deg + (m.size_arcmin[0] / 120.0 if m.size_arcmin else 0.0)
        if abs(m.dec_deg - dec_deg) > reach:
            continue
        if _separation_deg(ra_hours * 15.0, dec_deg, m.ra_hours * 15.0, m.dec_deg) <= reach:
            objects.append(m)
    objects.sort(key=lambda m: -(m.size_arcmin[0] if m.size_arcmin else 0.0))
    return Chart(chart_stars, objects[:200])


def camera_field(equipment: Equipment) -> CameraField:
    """The connected camera's field with the mount's focal length; `Conflict` naming what is
    missing (no camera connected, no focal length)."""
    camera = equipment.camera
    if camera is None or not camera.connected:
        raise Conflict("no camera is connected: connect it, or type the sensor's size")
    mount = equipment.mount
    focal_m = mount.info.focal_length_m if mount is not None and mount.connected else None
    if not focal_m:
        raise Conflict("the focal length is unknown (the mount reports none): type it")
    info = camera.info
    pixel_um = float(info.pixel_size_x_um)
    focal_mm = float(focal_m) * 1000.0
    scale = 206.264806 * pixel_um / focal_mm
    return CameraField(
        width_px=info.width_px,
        height_px=info.height_px,
        pixel_size_um=pixel_um,
        focal_length_mm=focal_mm,
        pixel_scale_arcsec=scale,
        width_deg=math.degrees(2.0 * math.atan(info.width_px * pixel_um / 2000.0 / focal_mm)),
        height_deg=math.degrees(2.0 * math.atan(info.height_px * pixel_um / 2000.0 / focal_mm)),
    )


def add_to_template(
    engine: Engine, template_id: int, targets: list[FramedTarget]
) -> SequenceTemplate:
    """Append one target container per framed target to a template. Each is a copy of the
    template's first target container (items, triggers, conditions) with the new name, centre
    and rotation, its items' own coordinates dropped so they take the new target's; without
    one, a slew, a centering and ten 120 s exposures. `NotFound`, or `DocumentError` when the
    result is not a valid document."""
    row = template_service.get_template(engine, template_id)
    document = copy.deepcopy(row.document)
    default: dict[str, Any] = {
        "kind": "target",
        "items": [
            {"kind": "slew"},
            {"kind": "center"},
            {"kind": "take_exposures", "count": 10, "exposure_s": 120.0},
        ],
    }
    model: dict[str, Any] = next(
        (t for t in document.get("targets", []) if t.get("kind") == "target"), default
    )
    for target in targets:
        container = copy.deepcopy(model)
        container["name"] = target.name
        container["target_name"] = target.name
        container["coordinates"] = {"ra_hours": target.ra_hours, "dec_deg": target.dec_deg}
        container["rotation_deg"] = target.rotation_deg
        container["items"] = [_own_coordinates_dropped(i) for i in container.get("items", [])]
        document.setdefault("targets", []).append(container)
    parsed = template_service.load_document(document)
    return template_service.save_template(engine, parsed, template_id)


def add_to_plan(
    engine: Engine,
    plan_id: int,
    targets: list[FramedTarget],
    goals: list[dict[str, Any]] | None,
) -> NightPlanRow:
    """Append the framed targets to a plan, with `goals` or else the plan's first target's.
    `NotFound`; `Refused` for a name the plan already has; `DocumentError` for a plan that
    is then invalid."""
    row = plan_service.get_plan(engine, plan_id)
    document = copy.deepcopy(row.document)
    existing = document.get("targets", [])
    names = {t.get("name") for t in existing}
    default_goals = existing[0].get("goals") if existing else None
    for target in targets:
        if target.name in names:
            raise Refused("name", f"the plan already has a target named {target.name!r}")
        names.add(target.name)
        entry: dict[str, Any] = {
            "name": target.name,
            "coordinates": {"ra_hours": target.ra_hours, "dec_deg": target.dec_deg},
            "goals": goals or default_goals or [],
        }
        if target.rotation_deg is not None:
            entry["rotation_deg"] = target.rotation_deg
        existing.append(entry)
    document["targets"] = existing
    plan = plan_service.load_plan(document)
    return plan_service.save_plan(engine, plan, row.enabled, plan_id)


def _own_coordinates_dropped(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("kind") in ("slew", "center"):
        return {k: v for k, v in item.items() if k != "coordinates"}
    return item


def _mag_order(match: TargetMatch) -> float:
    return match.magnitude if match.magnitude is not None else 99.0


def _separation_deg(ra1_deg: float, dec1_deg: float, ra2_deg: Any, dec2_deg: Any) -> Any:
    """Great-circle distance (haversine: exact at the small separations of a chart)."""
    ra1, dec1 = np.radians(ra1_deg), np.radians(dec1_deg)
    ra2, dec2 = np.radians(ra2_deg), np.radians(dec2_deg)
    a = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


_CATALOG_NUMBER = re.compile(r"^(M|MESSIER|NGC|IC)0*(\d+)([A-Z]?)$")


def _designation_key(text: str) -> str:
    """``"M 31"``, ``"Messier 31"``, ``"NGC 0224"``, ``"ngc224"`` -> ``M31``, ``NGC224``."""
    key = re.sub(r"[\s_]+", "", text.upper())
    found = _CATALOG_NUMBER.match(key)
    if found is None:
        return key
    catalog = "M" if found[1] in ("M", "MESSIER") else found[1]
    return f"{catalog}{int(found[2])}{found[3]}"


def _pretty(designation: str) -> str:
    """``NGC0224`` -> ``NGC 224``, ``IC0434`` -> ``IC 434``; others as they are."""
    found = re.match(r"^(NGC|IC)0*(\d+)(.*)$", designation)
    return f"{found[1]} {int(found[2])}{found[3]}" if found else designation


def _opengc_path() -> Path:
    return Path(str(files("pyongc").joinpath("ongc.db")))


@cache
def _deep_sky() -> tuple[_Dso, ...]:
    """OpenNGC's objects, read once (~14,000 rows). Duplicate records are left out; their
    designations find the object they duplicate."""
    with sqlite3.connect(f"file:{_opengc_path()}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT name, type, ra, dec, majax, minax, pa, vmag, bmag, messier, ngc, ic, "
            "commonnames FROM objects WHERE ra IS NOT NULL AND dec IS NOT NULL"
        ).fetchall()
        identifiers = db.execute("SELECT name, identifier FROM objIdentifiers").fetchall()
    extra_keys: dict[str, set[str]] = {}
    for name, identifier in identifiers:
        extra_keys.setdefault(name, set()).add(_designation_key(identifier))
    duplicates: dict[str, set[str]] = {}
    objects: list[tuple[str, TargetMatch, set[str], tuple[str, ...]]] = []
    for name, kind, ra, dec, majax, minax, pa, vmag, bmag, messier, ngc, ic, common in rows:
        if kind == "Dup":
            original = f"NGC{ngc}" if ngc else f"IC{ic}" if ic else None
            if original:
                duplicates.setdefault(original, set()).add(_designation_key(name))
            continue
        if kind not in DSO_KINDS:
            continue
        commons = tuple(c.strip() for c in (common or "").split(",") if c.strip())
        designation = _pretty(name)
        label = f"M{int(messier)}" if messier else designation
        aliases = tuple(
            dict.fromkeys(
                a
                for a in (designation, *_cross(ngc, "NGC"), *_cross(ic, "IC"), *commons)
                if a != label
            )
        )
        size = (float(majax), float(minax if minax is not None else majax)) if majax else None
        match = TargetMatch(
            name=label,
            aliases=aliases,
            kind=DSO_KINDS[kind],
            ra_hours=math.degrees(ra) / 15.0,
            dec_deg=math.degrees(dec),
            size_arcmin=size,
            position_angle_deg=float(pa) if pa is not None else None,
            magnitude=vmag if vmag is not None else bmag,
        )
        keys = {_designation_key(name), _designation_key(label)} | extra_keys.get(name, set())
        keys |= {_designation_key(a) for a in aliases if a not in commons}
        objects.append((name, match, keys, tuple(c.lower() for c in commons)))
    return tuple(
        _Dso(match, frozenset(keys | duplicates.get(name, set())), common)
        for name, match, keys, common in objects
    )


def _cross(numbers: str | None, catalog: str) -> list[str]:
    """OpenNGC's cross references (``"0224"``, ``"0185,0147"``) as designations."""
    return [f"{catalog} {int(n)}" for n in (numbers or "").split(",") if n.strip().isdigit()]


@cache
def _deep_sky_index() -> tuple[dict[str, list[_Dso]], tuple[_Dso, ...]]:
    """Objects by each of their designations, and those that have common names."""
    by_key: dict[str, list[_Dso]] = {}
    for dso in _deep_sky():
        for key in dso.keys:
            by_key.setdefault(key, []).append(dso)
    return by_key, tuple(dso for dso in _deep_sky() if dso.common)


@cache
def _named_stars() -> tuple[TargetMatch, ...]:
    return tuple(
        TargetMatch(name, (bayer,), "star", ra, dec, None, None, mag)
        for name, bayer, ra, dec, mag in BRIGHT_STARS
    )


@cache
def _stars_by_dec() -> np.ndarray:
    """The Gaia / Hipparcos catalog sorted by declination (a chart reads one band of it)."""
    stars = load_gaia_stars()
    return stars[np.argsort(stars["dec_deg"], kind="stable")]
