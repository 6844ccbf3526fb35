"""The mapping tables from NINA's `$type` class names to our node kinds.

Each table maps a NINA class (without its assembly) to a rule: a function building our node
(as the JSON our document parses) and the NINA fields it reads. Fields outside those and the
common ones are reported when they hold a value, as they may change what the node does. A rule
raises `Unmapped` for a node we cannot express; the importer reports it with its path.
Facts about NINA's enums (error behaviour, comparison operators, tracking modes, time
providers) are from NINA's source.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from sequences.nina.newtonsoft import NinaNode

if TYPE_CHECKING:
    from sequences.nina.importer import Mapper

Json = dict[str, Any]


class Unmapped(Exception):
    """This NINA node has no equivalent here; the message says why (and what to do)."""


@dataclass
class Mapped:
    """Our nodes for one NINA node; `note` explains an approximation (empty: exact)."""

    nodes: list[Json]
    note: str = ""


Build = Callable[[NinaNode, "Mapper"], Mapped]


@dataclass(frozen=True)
class Rule:
    build: Build
    reads: frozenset[str] = frozenset()


COMMON_FIELDS = frozenset(
    {
        "Name",
        "Parent",
        "IsExpanded",
        "Expanded",
        "ErrorBehavior",
        "Attempts",
        "Strategy",
        "Items",
        "Triggers",
        "Conditions",
        "TriggerRunner",
        "CompletedIterations",
        "ExposureCount",
    }
)
"""Fields every node may carry that the importer handles itself or that are run state."""

ON_ERROR = {0: "continue", 1: "skip_container", 2: "abort", 3: "skip_to_end"}
"""NINA's InstructionErrorBehavior (ContinueOnError, SkipInstructionSetOnError, AbortOnError,
SkipToSequenceEndInstructions) -> our on_error."""

GREATER_THAN = (3, 4)
"""NINA's ComparisonOperatorEnum: EQUALS 0, LESS_THAN 1, LESS_THAN_OR_EQUAL 2, GREATER_THAN 3,
GREATER_THAN_OR_EQUAL 4, NOT_EQUAL 5."""

TRACKING_STOPPED = 5
"""NINA's TrackingMode: Sidereal, Lunar, Solar, King, Custom, Stopped."""

SUN_EVENTS: dict[str, tuple[str, float, str]] = {
    "SunsetProvider": ("dusk", -0.833, "sunset"),
    "CivilDuskProvider": ("dusk", -6.0, "civil dusk"),
    "NauticalDuskProvider": ("dusk", -12.0, "nautical dusk"),
    "DuskProvider": ("dusk", -18.0, "astronomical dusk"),
    "SunriseProvider": ("dawn", -0.833, "sunrise"),
    "CivilDawnProvider": ("dawn", -6.0, "civil dawn"),
    "NauticalDawnProvider": ("dawn", -12.0, "nautical dawn"),
    "DawnProvider": ("dawn", -18.0, "astronomical dawn"),
}
"""NINA's date-time providers of the sun -> (dusk or dawn, the sun's altitude, a name)."""

LOCAL_TIME_NOTE = (
    "NINA's times are the local time of the NINA computer; ours are UTC: check the time"
)


def one(node: Json, note: str = "") -> Mapped:
    return Mapped([node], note)


def _float(n: NinaNode, key: str, default: float = 0.0) -> float:
    value = n.get(key, default)
    try:
        return float(value if value is not None else default)
    except (TypeError, ValueError):
        raise Unmapped(f"{key} is not a number: {value!r}") from None


def _int(n: NinaNode, key: str, default: int = 0) -> int:
    return round(_float(n, key, default))


def coordinates(n: NinaNode | None) -> Json | None:
    """NINA's InputCoordinates (RA h/m/s; Dec d/m/s with `NegativeDec`, or a signed degree in
    files before NINA 3) -> our coordinates."""
    if n is None:
        return None
    ra_h = _float(n, "RAHours") + _float(n, "RAMinutes") / 60 + _float(n, "RASeconds") / 3600
    parts = [_float(n, k) for k in ("DecDegrees", "DecMinutes", "DecSeconds")]
    negative = bool(n.get("NegativeDec")) or any(p < 0 for p in parts)
    dec = abs(parts[0]) + abs(parts[1]) / 60 + abs(parts[2]) / 3600
    return {"ra_hours": ra_h % 24.0, "dec_deg": -dec if negative else dec}


def _own_coordinates(n: NinaNode) -> Json | None:
    """None when the node takes its target's coordinates (`Inherited` / `HasDsoParent`)."""
    if n.get("Inherited") or n.get("HasDsoParent"):
        return None
    data = n.child("Data")
    return coordinates(n.child("Coordinates") or (data.child("Coordinates") if data else None))


def _with_own_coordinates(node: Json, n: NinaNode) -> Json:
    """`node` with the NINA node's own coordinates, unless it takes its target's."""
    own = _own_coordinates(n)
    if own is not None:
        node["coordinates"] = own
    return node


def _data(n: NinaNode) -> NinaNode:
    data = n.child("Data")
    if data is None:
        raise Unmapped("it has no Data (its altitude settings)")
    return data


def _provider(n: NinaNode) -> str:
    provider = n.child("SelectedProvider")
    return provider.short_type if provider is not None else "TimeProvider"


def _clock_time(n: NinaNode) -> str:
    total = (_int(n, "Hours") * 60 + _int(n, "Minutes") + _int(n, "MinutesOffset")) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}:{_int(n, 'Seconds') % 60:02d}"


# --- instructions ---------------------------------------------------------------------------


def _annotation(n: NinaNode, m: Mapper) -> Mapped:
    text = str(n.get("Text") or "").strip()
    if not text:
        raise Unmapped("an empty annotation")
    return one({"kind": "annotation", "text": text[:2000]})


def _cool(n: NinaNode, m: Mapper) -> Mapped:
    duration_s = _float(n, "Duration") * 60
    node = {"kind": "cool_camera", "set_point_c": _float(n, "Temperature")}
    note = ""
    if duration_s > 3600:
        note = f"NINA ramps over {duration_s / 60:g} min; ours at most 60 min"
    node["duration_s"] = min(duration_s, 3600.0)
    return one(node, note)


def _warm(n: NinaNode, m: Mapper) -> Mapped:
    duration_s = _float(n, "Duration") * 60
    note = (
        f"NINA warms over {duration_s / 60:g} min; ours at most 60 min" if duration_s > 3600 else ""
    )
    return one({"kind": "warm_camera", "duration_s": min(duration_s, 3600.0)}, note)


def _tracking(n: NinaNode, m: Mapper) -> Mapped:
    mode = _int(n, "TrackingMode")
    note = (
        "" if mode in (0, TRACKING_STOPPED) else "tracks at the sidereal rate (NINA: mode {mode})"
    )
    return one({"kind": "set_tracking", "on": mode != TRACKING_STOPPED}, note.format(mode=mode))


def _slew(kind: str) -> Build:
    def build(n: NinaNode, m: Mapper) -> Mapped:
        node: Json = {"kind": kind}
        _with_own_coordinates(node, n)
        return one(node)

    return build


def _center_and_rotate(n: NinaNode, m: Mapper) -> Mapped:
    center: Json = {"kind": "center"}
    _with_own_coordinates(center, n)
    if n.get("Inherited"):
        # Our center turns the rotator to the target's rotation_deg (set from NINA's target).
        return one(center)
    angle = position_angle(n)
    return Mapped([center, {"kind": "rotate_to", "position_angle_deg": angle}])


def position_angle(n: NinaNode) -> float:
    """NINA 3's `PositionAngle`, or 360 - `Rotation` in older files (as NINA converts it)."""
    if n.get("PositionAngle") is not None:
        return _float(n, "PositionAngle") % 360.0
    return (360.0 - _float(n, "Rotation")) % 360.0


def _start_guiding(n: NinaNode, m: Mapper) -> Mapped:
    note = (
        "NINA forces a new calibration here; ours keeps the existing one"
        if n.get("ForceCalibration")
        else ""
    )
    return one({"kind": "start_guiding"}, note)


def _switch_filter(n: NinaNode, m: Mapper) -> Mapped:
    info = n.child("Filter")
    name = str(info.get("_name") or "").strip() if info is not None else ""
    if not name:
        raise Unmapped("no filter is chosen in NINA (a template placeholder): nothing to switch")
    return one({"kind": "switch_filter", "filter_name": name[:50]})


FRAME_TYPES = frozenset({"LIGHT", "DARK", "FLAT", "BIAS", "DARKFLAT"})


def _exposure(n: NinaNode, m: Mapper) -> Mapped:
    notes = []
    exposure_s = _float(n, "ExposureTime")
    if exposure_s <= 0:
        exposure_s = 1.0
        notes.append("NINA's exposure time is 0 s (not set in the template): 1 s put in; set it")
    image_type = str(n.get("ImageType") or "LIGHT").upper()
    frame_type = image_type if image_type in FRAME_TYPES else "LIGHT"
    if frame_type != image_type:
        notes.append(f"image type {image_type} taken as LIGHT")
    node: Json = {"kind": "take_exposures", "count": 1, "exposure_s": exposure_s}
    if frame_type != "LIGHT":
        node["frame_type"] = frame_type
    for key, ours in (("Gain", "gain"), ("Offset", "offset")):
        value = _int(n, key, -1)
        if value >= 0:
            node[ours] = value
    binning = n.child("Binning")
    if binning is not None:
        x, y = _int(binning, "X", 1), _int(binning, "Y", 1)
        if x != y:
            notes.append(f"binning {x}x{y} taken as {x}x{x}")
        if x > 1:
            node["binning"] = min(x, 8)
    return one(node, "; ".join(notes))


def _external_script(n: NinaNode, m: Mapper) -> Mapped:
    script = str(n.get("Script") or "").strip()
    if not script:
        raise Unmapped("no script is set")
    try:
        words = [w.strip('"') for w in shlex.split(script, posix=False)]
    except ValueError as e:
        raise Unmapped(f"cannot split the command line {script!r}: {e}") from e
    program = words[0]
    is_windows = "\\" in program or (len(program) > 1 and program[1] == ":")
    name = (PureWindowsPath(program) if is_windows else PurePosixPath(program)).name
    return one(
        {"kind": "run_command", "argv": [name, *words[1:]]},
        f"NINA ran {script!r}; ours runs {name!r} only from the scripts folder "
        "(NIGHTOWL_SCRIPTS_DIR): put it there",
    )


def _wait_for_time(n: NinaNode, m: Mapper) -> Mapped:
    provider = _provider(n)
    if provider == "TimeProvider":
        return one({"kind": "wait_for_time", "at": _clock_time(n)}, LOCAL_TIME_NOTE)
    if provider not in SUN_EVENTS:
        raise Unmapped(f"waiting for {provider} has no equivalent")
    event, altitude, label = SUN_EVENTS[provider]
    offset = _int(n, "MinutesOffset")
    note = (
        f"NINA waits {offset:+d} min after {label}; ours waits for {label} itself" if offset else ""
    )
    direction = "setting" if event == "dusk" else "rising"
    return one(
        {"kind": "wait_for_sun_altitude", "altitude_deg": altitude, "direction": direction}, note
    )


def _wait_above_horizon(n: NinaNode, m: Mapper) -> Mapped:
    node: Json = {"kind": "wait_for_altitude", "above": {"offset_deg": _float(_data(n), "Offset")}}
    _with_own_coordinates(node, n)
    return one(node)


def _wait_for_altitude(n: NinaNode, m: Mapper) -> Mapped:
    data = _data(n)
    below = n.get("AboveOrBelow") == "<" or _int(data, "Comparator", 3) not in GREATER_THAN
    if below:
        raise Unmapped("waiting until the target sinks below an altitude has no equivalent")
    node: Json = {"kind": "wait_for_altitude", "above": {"altitude_deg": _float(data, "Offset")}}
    _with_own_coordinates(node, n)
    return one(node)


def _wait_for_sun(n: NinaNode, m: Mapper) -> Mapped:
    data = _data(n)
    # NINA waits while the sun is above the altitude for GREATER_THAN, else while below it.
    direction = "setting" if _int(data, "Comparator") == 3 else "rising"
    return one(
        {
            "kind": "wait_for_sun_altitude",
            "altitude_deg": _float(data, "Offset"),
            "direction": direction,
        }
    )


def _move_focuser(n: NinaNode, m: Mapper) -> Mapped:
    return one({"kind": "move_focuser", "position": max(0, _int(n, "Position"))})


def _move_focuser_relative(n: NinaNode, m: Mapper) -> Mapped:
    steps = _int(n, "RelativePosition")
    if steps < 0:
        raise Unmapped("our move_focuser moves outward only when relative")
    return one({"kind": "move_focuser", "position": steps, "relative": True})


def _toggle_light(n: NinaNode, m: Mapper) -> Mapped:
    return one({"kind": "calibrator_on" if n.get("OnOff") else "calibrator_off"})


def _brightness(n: NinaNode, m: Mapper) -> Mapped:
    brightness = _int(n, "Brightness")
    if brightness <= 0:
        return one({"kind": "calibrator_off"}, "brightness 0: the panel is turned off")
    return one(
        {"kind": "calibrator_on", "brightness": brightness},
        "ours also lights the panel (NINA sets the brightness only)",
    )


def _set_switch(n: NinaNode, m: Mapper) -> Mapped:
    return one(
        {"kind": "set_switch", "channel": _int(n, "SwitchIndex"), "value": _float(n, "Value")}
    )


def _flats(source: str) -> Build:
    def build(n: NinaNode, m: Mapper) -> Mapped:
        count = 25
        for condition in n.children("Conditions"):
            if condition.short_type == "LoopCondition":
                count = max(1, _int(condition, "Iterations", 25))
        return one(
            {"kind": "take_flats", "count": min(count, 1000), "source": source},
            f"NINA's {n.short_type} with its own steps -> our flat wizard ({source}); "
            "its exposure and brightness are found anew",
        )

    return build


def _constant(kind: str, **fields: Any) -> Build:
    def build(n: NinaNode, m: Mapper) -> Mapped:
        return one({"kind": kind, **fields})

    return build


def _refuse(reason: str) -> Build:
    def build(n: NinaNode, m: Mapper) -> Mapped:
        raise Unmapped(reason)

    return build


def _container(kind: str) -> Build:
    def build(n: NinaNode, m: Mapper) -> Mapped:
        return one(m.container(n, kind))

    return build


def _target(n: NinaNode, m: Mapper) -> Mapped:
    return m.target(n)


SEQ = "NINA.Sequencer."
ITEM = SEQ + "SequenceItem."
CONTAINER_READS = frozenset({"Target", "ExposureInfoList", "ExposureInfoListExpanded"})

ITEMS: dict[str, Rule] = {
    SEQ + "Container.SequentialContainer": Rule(_container("sequential")),
    SEQ + "Container.ParallelContainer": Rule(_container("parallel")),
    SEQ + "Container.StartAreaContainer": Rule(_container("sequential")),
    SEQ + "Container.TargetAreaContainer": Rule(_container("sequential")),
    SEQ + "Container.EndAreaContainer": Rule(_container("sequential")),
    SEQ + "Container.DeepSkyObjectContainer": Rule(_target, CONTAINER_READS),
    ITEM + "Imaging.SmartExposure": Rule(_container("sequential")),
    ITEM + "Imaging.TakeManyExposures": Rule(_container("sequential")),
    ITEM + "Imaging.TakeExposure": Rule(
        _exposure, frozenset({"ExposureTime", "Gain", "Offset", "Binning", "ImageType"})
    ),
    ITEM + "Imaging.TakeSubframeExposure": Rule(_refuse("we take full frames only")),
    ITEM + "Camera.CoolCamera": Rule(_cool, frozenset({"Temperature", "Duration"})),
    ITEM + "Camera.WarmCamera": Rule(_warm, frozenset({"Duration"})),
    ITEM + "Camera.DewHeater": Rule(_refuse("no dew heater control: use set_switch")),
    ITEM + "Camera.SetReadoutMode": Rule(_refuse("no readout mode setting")),
    ITEM + "Camera.SetUSBLimit": Rule(_refuse("no USB limit setting (an ASCOM driver option)")),
    ITEM + "Connect.ConnectAllEquipment": Rule(_constant("connect_equipment")),
    ITEM + "Connect.DisconnectAllEquipment": Rule(_constant("disconnect_equipment")),
    ITEM + "Telescope.UnparkScope": Rule(_constant("unpark")),
    ITEM + "Telescope.ParkScope": Rule(_constant("park")),
    ITEM + "Telescope.SetTracking": Rule(_tracking, frozenset({"TrackingMode"})),
    ITEM + "Telescope.SlewScopeToRaDec": Rule(
        _slew("slew"), frozenset({"Inherited", "Coordinates"})
    ),
    ITEM + "Telescope.SlewScopeToAltAz": Rule(_refuse("no slew to alt/az: slew to a target")),
    ITEM + "Telescope.FindHome": Rule(_refuse("no find-home instruction")),
    ITEM + "Platesolving.Center": Rule(_slew("center"), frozenset({"Inherited", "Coordinates"})),
    ITEM + "Platesolving.CenterAndRotate": Rule(
        _center_and_rotate, frozenset({"Inherited", "Coordinates", "PositionAngle", "Rotation"})
    ),
    ITEM + "Platesolving.SolveAndSync": Rule(
        _refuse("no solve-and-sync instruction: center does solve and sync")
    ),
    ITEM + "Platesolving.SolveAndRotate": Rule(_refuse("no solve-and-rotate: use rotate_to")),
    ITEM + "Autofocus.RunAutofocus": Rule(_constant("autofocus")),
    ITEM + "Guider.StartGuiding": Rule(_start_guiding, frozenset({"ForceCalibration"})),
    ITEM + "Guider.StopGuiding": Rule(_constant("stop_guiding")),
    ITEM + "Guider.Dither": Rule(_constant("dither")),
    ITEM + "FilterWheel.SwitchFilter": Rule(_switch_filter, frozenset({"Filter"})),
    ITEM + "Focuser.MoveFocuserAbsolute": Rule(_move_focuser, frozenset({"Position"})),
    ITEM + "Focuser.MoveFocuserRelative": Rule(
        _move_focuser_relative, frozenset({"RelativePosition"})
    ),
    ITEM + "FlatDevice.OpenCover": Rule(_constant("open_cover")),
    ITEM + "FlatDevice.CloseCover": Rule(_constant("close_cover")),
    ITEM + "FlatDevice.ToggleLight": Rule(_toggle_light, frozenset({"OnOff"})),
    ITEM + "FlatDevice.SetBrightness": Rule(_brightness, frozenset({"Brightness"})),
    ITEM + "FlatDevice.TrainedFlatExposure": Rule(_flats("panel"), frozenset({"KeepPanelClosed"})),
    ITEM + "FlatDevice.AutoBrightnessFlat": Rule(
        _flats("panel"),
        frozenset(
            {
                "KeepPanelClosed",
                "MinBrightness",
                "MaxBrightness",
                "HistogramTargetPercentage",
                "HistogramTolerancePercentage",
            }
        ),
    ),
    ITEM + "FlatDevice.AutoExposureFlat": Rule(
        _flats("panel"),
        frozenset(
            {
                "KeepPanelClosed",
                "MinExposure",
                "MaxExposure",
                "HistogramTargetPercentage",
                "HistogramTolerancePercentage",
            }
        ),
    ),
    ITEM + "FlatDevice.SkyFlat": Rule(_flats("sky")),
    ITEM + "FlatDevice.TrainedDarkFlatExposure": Rule(_refuse("no dark-flat instruction")),
    ITEM + "Dome.OpenDomeShutter": Rule(_constant("open_roof")),
    ITEM + "Dome.CloseDomeShutter": Rule(_constant("close_roof")),
    ITEM + "Dome.ParkDome": Rule(_constant("park_dome")),
    ITEM + "Dome.EnableDomeSynchronization": Rule(_constant("slave_dome", on=True)),
    ITEM + "Dome.DisableDomeSynchronization": Rule(_constant("slave_dome", on=False)),
    ITEM + "Switch.SetSwitchValue": Rule(_set_switch, frozenset({"SwitchIndex", "Value"})),
    ITEM + "SafetyMonitor.WaitUntilSafe": Rule(_constant("wait_until_safe")),
    ITEM + "Utility.Annotation": Rule(_annotation, frozenset({"Text"})),
    ITEM + "Utility.ExternalScript": Rule(_external_script, frozenset({"Script"})),
    ITEM + "Utility.MessageBox": Rule(
        _refuse("waits for someone to click OK: an unattended run has no one to")
    ),
    ITEM + "Utility.WaitForTime": Rule(
        _wait_for_time,
        frozenset({"Hours", "Minutes", "Seconds", "MinutesOffset", "SelectedProvider"}),
    ),
    ITEM + "Utility.WaitForTimeSpan": Rule(_refuse("no wait for a duration: use wait_for_time")),
    ITEM + "Utility.WaitUntilAboveHorizon": Rule(
        _wait_above_horizon, frozenset({"Data", "HasDsoParent"})
    ),
    ITEM + "Utility.WaitForAltitude": Rule(
        _wait_for_altitude, frozenset({"Data", "HasDsoParent", "AboveOrBelow", "Comparator"})
    ),
    ITEM + "Utility.WaitForSunAltitude": Rule(_wait_for_sun, frozenset({"Data"})),
    ITEM + "Utility.WaitForMoonAltitude": Rule(_refuse("no moon conditions")),
    ITEM + "Utility.SaveSequence": Rule(_refuse("templates are saved in the database")),
}
"""NINA instruction and container classes -> our instructions and containers."""


# --- triggers -------------------------------------------------------------------------------


def _dither_after(n: NinaNode, m: Mapper) -> Mapped:
    after = _int(n, "AfterExposures", 1)
    note = f"NINA's AfterExposures {after} taken as 1" if after < 1 else ""
    return one(
        {"kind": "dither_after_exposures", "after_exposures": min(max(after, 1), 1000)}, note
    )


def _af_hfr(n: NinaNode, m: Mapper) -> Mapped:
    note = "one HFR trend for all filters (NINA: per filter)" if n.get("TrendPerFilter") else ""
    return one(
        {
            "kind": "autofocus_after_hfr_increase",
            "percent": min(max(_float(n, "Amount", 10.0), 0.1), 500.0),
            "sample_size": min(max(_int(n, "SampleSize", 3), 1), 50),
        },
        note,
    )


def _af_temperature(n: NinaNode, m: Mapper) -> Mapped:
    delta = min(max(_float(n, "Amount", 1.0), 0.1), 30.0)
    return one({"kind": "autofocus_after_temperature_change", "delta_c": delta})


def _af_time(n: NinaNode, m: Mapper) -> Mapped:
    minutes = min(max(_float(n, "Amount", 60.0), 1.0), 24 * 60.0)
    return one({"kind": "autofocus_after_time", "minutes": minutes})


def _af_exposures(n: NinaNode, m: Mapper) -> Mapped:
    exposures = min(max(_int(n, "AfterExposures", 30), 1), 10_000)
    return one({"kind": "autofocus_after_exposures", "exposures": exposures})


def _center_after_drift(n: NinaNode, m: Mapper) -> Mapped:
    return one(
        {
            "kind": "center_after_drift",
            "after_exposures": min(max(_int(n, "AfterExposures", 5), 1), 1000),
            "threshold_arcmin": min(max(_float(n, "DistanceArcMinutes", 1.0), 0.01), 60.0),
        }
    )


TRIGGER = SEQ + "Trigger."
TRIGGERS: dict[str, Rule] = {
    TRIGGER + "Guider.DitherAfterExposures": Rule(_dither_after, frozenset({"AfterExposures"})),
    TRIGGER + "Guider.RestoreGuiding": Rule(_constant("restart_guiding_when_lost")),
    TRIGGER + "MeridianFlip.MeridianFlipTrigger": Rule(_constant("meridian_flip")),
    TRIGGER + "Autofocus.AutofocusAfterHFRIncreaseTrigger": Rule(
        _af_hfr, frozenset({"Amount", "SampleSize", "TrendPerFilter"})
    ),
    TRIGGER + "Autofocus.AutofocusAfterTemperatureChangeTrigger": Rule(
        _af_temperature, frozenset({"Amount"})
    ),
    TRIGGER + "Autofocus.AutofocusAfterTimeTrigger": Rule(_af_time, frozenset({"Amount"})),
    TRIGGER + "Autofocus.AutofocusAfterExposures": Rule(
        _af_exposures, frozenset({"AfterExposures"})
    ),
    TRIGGER + "Autofocus.AutofocusAfterFilterChange": Rule(
        _constant("autofocus_after_filter_change")
    ),
    TRIGGER + "Platesolving.CenterAfterDriftTrigger": Rule(
        _center_after_drift, frozenset({"AfterExposures", "DistanceArcMinutes", "Coordinates"})
    ),
    TRIGGER + "Dome.SynchronizeDomeTrigger": Rule(
        _refuse("dome slaving is on or off for the run: use slave_dome")
    ),
}
"""NINA trigger classes -> our triggers (NINA's other settings live in its profile)."""


# --- conditions -----------------------------------------------------------------------------


def _loop(n: NinaNode, m: Mapper) -> Mapped:
    count = _int(n, "Iterations", 1)
    note = f"NINA's {count} iterations taken as 1" if count < 1 else ""
    return one({"kind": "loop_count", "count": min(max(count, 1), 100_000)}, note)


def _until_time(n: NinaNode, m: Mapper) -> Mapped:
    provider = _provider(n)
    if provider == "TimeProvider":
        return one({"kind": "loop_until_time", "until": _clock_time(n)}, LOCAL_TIME_NOTE)
    if provider not in SUN_EVENTS:
        raise Unmapped(f"looping until {provider} has no equivalent")
    event, altitude, _ = SUN_EVENTS[provider]
    return one(
        {
            "kind": "loop_until_time",
            "until": event,
            "twilight_deg": altitude,
            "offset_min": float(min(max(_int(n, "MinutesOffset"), -600), 600)),
        }
    )


def _above_horizon(n: NinaNode, m: Mapper) -> Mapped:
    node: Json = {
        "kind": "while_above_altitude",
        "above": {"offset_deg": _float(_data(n), "Offset")},
    }
    _with_own_coordinates(node, n)
    return one(node)


def _above_altitude(n: NinaNode, m: Mapper) -> Mapped:
    node: Json = {
        "kind": "while_above_altitude",
        "above": {"altitude_deg": _float(_data(n), "Offset")},
    }
    _with_own_coordinates(node, n)
    return one(node, "NINA also goes on while the target is still rising below the altitude")


def _sun_altitude(n: NinaNode, m: Mapper) -> Mapped:
    data = _data(n)
    if _int(data, "Comparator") not in GREATER_THAN:
        raise Unmapped("looping while the sun is above an altitude has no equivalent")
    return one({"kind": "while_sun_below", "altitude_deg": _float(data, "Offset")})


CONDITION = SEQ + "Conditions."
CONDITIONS: dict[str, Rule] = {
    CONDITION + "LoopCondition": Rule(_loop, frozenset({"Iterations"})),
    CONDITION + "TimeCondition": Rule(
        _until_time, frozenset({"Hours", "Minutes", "Seconds", "MinutesOffset", "SelectedProvider"})
    ),
    CONDITION + "TimeSpanCondition": Rule(_refuse("no loop for a duration: use loop_until_time")),
    CONDITION + "AboveHorizonCondition": Rule(_above_horizon, frozenset({"Data", "HasDsoParent"})),
    CONDITION + "AltitudeCondition": Rule(_above_altitude, frozenset({"Data", "HasDsoParent"})),
    CONDITION + "SunAltitudeCondition": Rule(_sun_altitude, frozenset({"Data"})),
    CONDITION + "SafetyMonitorCondition": Rule(_constant("while_safe")),
    CONDITION + "MoonAltitudeCondition": Rule(_refuse("no moon conditions")),
    CONDITION + "MoonIlluminationCondition": Rule(_refuse("no moon conditions")),
}
"""NINA condition classes -> our conditions."""
