"""NINA Advanced Sequencer documents as Newtonsoft writes them, built in tests (a known
mapping), and where the real NINA files of other people are."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count
from typing import Any

from tests.realdata import REALDATA

REAL = REALDATA / "nina"
NINA_FILES = sorted(REAL.glob("**/*.json")) if REAL.is_dir() else []
ids = count(1)


def node(cls: str, **fields: Any) -> dict[str, Any]:
    """A NINA object as Newtonsoft writes it (NINA 3 assembly names)."""
    assembly = "NINA.Sequencer" if cls.startswith("NINA.Sequencer") else cls.split(".")[0]
    return {"$id": str(next(ids)), "$type": f"{cls}, {assembly}", **fields}


def values(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "$id": str(next(ids)),
        "$type": "System.Collections.ObjectModel.ObservableCollection`1",
        "$values": list(items),
    }


def container(
    cls: str,
    *items: dict[str, Any],
    triggers: Sequence[dict[str, Any]] = (),
    conditions: Sequence[dict[str, Any]] = (),
    **fields: Any,
) -> dict[str, Any]:
    return node(
        cls,
        Items=values(*items),
        Triggers=values(*triggers),
        Conditions=values(*conditions),
        **fields,
    )


def coordinates(
    ra: tuple[float, float, float], dec: tuple[float, float, float], negative: bool
) -> dict[str, Any]:
    return node(
        "NINA.Astrometry.InputCoordinates",
        RAHours=ra[0],
        RAMinutes=ra[1],
        RASeconds=ra[2],
        NegativeDec=negative,
        DecDegrees=dec[0],
        DecMinutes=dec[1],
        DecSeconds=dec[2],
    )


def dso(
    name: str,
    coords: dict[str, Any],
    *items: dict[str, Any],
    position_angle: float = 0.0,
    **kw: Any,
) -> dict[str, Any]:
    target = node(
        "NINA.Astrometry.InputTarget",
        TargetName=name,
        PositionAngle=position_angle,
        InputCoordinates=coords,
    )
    return container(
        "NINA.Sequencer.Container.DeepSkyObjectContainer", *items, Target=target, Name=name, **kw
    )


def smart_exposure(
    count: int, exposure_s: float, filter_name: str, dither_after: int
) -> dict[str, Any]:
    filter_info = node("NINA.Core.Model.Equipment.FilterInfo", _name=filter_name, _position=1)
    return container(
        "NINA.Sequencer.SequenceItem.Imaging.SmartExposure",
        node("NINA.Sequencer.SequenceItem.FilterWheel.SwitchFilter", Filter=filter_info),
        node(
            "NINA.Sequencer.SequenceItem.Imaging.TakeExposure",
            ExposureTime=exposure_s,
            Gain=-1,
            Offset=-1,
            ImageType="LIGHT",
            Binning=node("NINA.Core.Model.Equipment.BinningMode", X=1, Y=1),
        ),
        triggers=[
            node("NINA.Sequencer.Trigger.Guider.DitherAfterExposures", AfterExposures=dither_after)
        ],
        conditions=[
            node("NINA.Sequencer.Conditions.LoopCondition", Iterations=count, CompletedIterations=0)
        ],
        Name="Smart Exposure",
    )
