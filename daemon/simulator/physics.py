"""The simulated observatory's physics: what the `alpaca-simulators` package leaves out.

``python -m daemon.simulator.physics --host H --port P --config FILE`` runs the package's server
as its own ``alpaca_simulators.run_simulator`` does (same arguments), with these couplings
installed (their settings are top-level keys of the observatory config, ``observatory.yaml``):

- The rotator turns the camera: camera 0 renders with the rotation of rotator 0's mechanical
  position plus `rotator_camera_offset_deg`, in the sense that a plate solve's position angle
  (east of north) grows by as much as the rotator turns. The angle is taken at shutter open.
- The dust cover: camera 0's light frames see the sky only while cover 0 is OPEN. Otherwise
  they hold what a dark does (bias, dark current, read noise). A lit panel (calibrator READY)
  over a CLOSED cover lights them evenly: brightness / maxbrightness x exposure x
  `panel_flux_adu_s` ADU per unbinned pixel, a few percent less towards the corners, with shot
  noise, clipped at the full well. The state is taken at shutter open, and it is part of the
  frame cache's key, so a frame is never reused across a change of cover, panel or rotation.
- The shutter takes time: OpenShutter and CloseShutter report OPENING or CLOSING for
  `shutter_time_s`, then OPEN or CLOSED. AbortSlew stops a moving shutter where it is (ERROR).
- The cover takes time: OpenCover and CloseCover report MOVING for `cover_time_s`, then OPEN or
  CLOSED. HaltCover stops a moving cover where it is (UNKNOWN).
- The weather station's cloud cover is set in percent, as it is served (the package's setter
  takes 0..1).
- Every frame of camera 0 has its own noise: the package reuses a rendered frame for the same
  pointing, exposure and focus (its frame cache), so a tracked target's lights were identical
  to the last bit, which no real camera gives and which a stacker rightly drops as duplicates.
  Each frame gets a fresh draw of `FRAME_NOISE_ADU` of Gaussian read noise on top.

The dome's shutter and the roof do not hide the sky: light frames see it whatever they report.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import cabaret  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, FastAPI, Form, Path

from drivers.base import CalibratorState, CoverState, ShutterState

SETTINGS_DEFAULTS = {
    "rotator_camera_offset_deg": 0.0,
    "panel_flux_adu_s": 40000.0,
    "shutter_time_s": 2.0,
    "cover_time_s": 1.0,
}
FRAME_NOISE_ADU = 3.0
"""Read noise drawn anew for each frame of camera 0 (the rendered sky's noise is ~150 ADU)."""
VIGNETTING = 0.04
"""The panel's light in the frame's corners is this fraction below its centre's."""
CAMERA = 0
ROTATOR = 0
COVER = 0
ROTATION_SENSE = -1.0
"""cabaret turns the sky the other way round from the position angle a plate solve reports."""


_TRANSACTION = Form(0, alias="ClientTransactionID")


@dataclass(frozen=True)
class Settings:
    rotator_camera_offset_deg: float
    panel_flux_adu_s: float
    shutter_time_s: float
    cover_time_s: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """The physics keys of the observatory config; `ValueError` names a bad one."""
        values: dict[str, float] = {}
        for key, default in SETTINGS_DEFAULTS.items():
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            if key != "rotator_camera_offset_deg" and not 0 <= value < math.inf:
                raise ValueError(f"{key} must be zero or positive, got {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class LightPath:
    """What reaches camera 0's sensor during one exposure."""

    sky: bool
    panel_adu_s: float = 0.0
    """The lit panel's flux at the frame's centre (0 when off or the cover is not closed)."""

    @property
    def cache_key(self) -> str:
        return "_sky" if self.sky else f"_panel{self.panel_adu_s:g}"


_light_path: contextvars.ContextVar[LightPath | None] = contextvars.ContextVar(
    "light_path", default=None
)
"""Set while camera 0's exposure task runs; `asyncio.to_thread` carries it to the renderer."""


def light_path(cover: dict[str, Any], panel_flux_adu_s: float) -> LightPath:
    """The light path for a cover calibrator's state (the simulator's state fields)."""
    state = CoverState(cover.get("coverstate", CoverState.CLOSED.value))
    if state is CoverState.OPEN:
        return LightPath(sky=True)
    calibrator = CalibratorState(cover.get("calibratorstate", CalibratorState.NOT_PRESENT.value))
    if state is not CoverState.CLOSED or calibrator is not CalibratorState.READY:
        return LightPath(sky=False)
    fraction = cover.get("brightness", 0) / max(1, cover.get("maxbrightness", 255))
    return LightPath(sky=False, panel_adu_s=fraction * panel_flux_adu_s)


@functools.lru_cache(maxsize=4)
def vignetting(shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    """A flat field's gentle radial fall-off: 1 at the centre, 1 - `VIGNETTING` in the corners."""
    y, x = np.indices(shape, dtype=np.float64)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    r2 = ((y - cy) ** 2 + (x - cx) ** 2) / max(1.0, cy**2 + cx**2)
    return 1.0 - VIGNETTING * r2


def render_panel(
    camera: Any, exp_time: float, panel_adu_s: float, rng: np.random.Generator
) -> npt.NDArray[np.uint16]:
    """A frame of the lit panel through cabaret's detector model (as its `generate_image` makes
    a dark, with the panel's light in place of none): shot noise, defects, bias, dark current,
    read noise, binning, then ADU clipped at the full well."""
    electrons = vignetting(camera.shape) * (panel_adu_s * camera.gain * exp_time)
    image = rng.poisson(electrons).astype(np.float64)
    image = camera.apply_pre_base_defects(image, exp_time)
    image += camera.make_base_image(exp_time=exp_time, rng=rng)
    image = camera.apply_post_base_defects(image, exp_time)
    return camera.to_adu_image(camera.bin_image(image))  # type: ignore[no-any-return]


def with_own_noise(image: Any, rng: np.random.Generator) -> Any:
    """`image` (the frame the camera serves) plus a fresh `FRAME_NOISE_ADU` draw, in its own
    dtype and clipped to its range; a new array, so the frame cache keeps the rendered one."""
    pixels = np.asarray(image)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(FRAME_NOISE_ADU)
    noisy = pixels.astype(np.float32) + noise
    if np.issubdtype(pixels.dtype, np.integer):
        limits = np.iinfo(pixels.dtype)
        return np.clip(np.rint(noisy), limits.min, limits.max).astype(pixels.dtype)
    return noisy.astype(pixels.dtype)


def install(app: FastAPI, config: dict[str, Any]) -> None:
    """Install the couplings into the simulator's `app` (its modules are already imported)."""
    from alpaca_simulators.api import camera  # type: ignore[import-untyped]
    from alpaca_simulators.main import API_PREFIX  # type: ignore[import-untyped]
    from alpaca_simulators.state import (  # type: ignore[import-untyped]
        get_device_state,
        update_device_state,
    )

    settings = Settings.from_config(config)
    render_task = camera.exposure_task
    cache_key = camera.make_cache_key
    generate_image = cabaret.Observatory.generate_image

    async def exposure_task(device_number: int, duration: float, light: bool) -> None:
        if device_number != CAMERA:
            await render_task(device_number, duration, light)
            return
        mechanical = get_device_state("rotator", ROTATOR).get("mechanicalposition", 0.0)
        rotation = ROTATION_SENSE * (mechanical + settings.rotator_camera_offset_deg)
        update_device_state("camera", CAMERA, {"rotation": round(rotation % 360.0, 6)})
        path = light_path(get_device_state("covercalibrator", COVER), settings.panel_flux_adu_s)
        token = _light_path.set(path)
        try:
            await render_task(device_number, duration, light)
        finally:
            _light_path.reset(token)
        state = get_device_state("camera", CAMERA)
        if state.get("image_ready") and state.get("image_data") is not None:
            image = with_own_noise(state["image_data"], np.random.default_rng())
            update_device_state("camera", CAMERA, {"image_data": image})

    def make_cache_key(*args: Any, **kwargs: Any) -> str:
        path = _light_path.get()
        key: str = cache_key(*args, **kwargs)
        return key if path is None else key + path.cache_key

    def render(observatory: Any, *args: Any, **kwargs: Any) -> Any:
        path = _light_path.get()
        if path is None or path.sky or not kwargs.get("light", 1):
            return generate_image(observatory, *args, **kwargs)
        if path.panel_adu_s <= 0:
            return generate_image(observatory, *args, **{**kwargs, "light": 0})
        return render_panel(
            observatory.camera, kwargs["exp_time"], path.panel_adu_s, np.random.default_rng()
        )

    camera.exposure_task = exposure_task
    camera.make_cache_key = make_cache_key
    cabaret.Observatory.generate_image = render
    _replace_routes(app, _device_router(settings), API_PREFIX)


def _device_router(settings: Settings) -> APIRouter:
    """Dome shutter and dust cover endpoints whose motions take time, and the cloud cover's
    setter in percent (the package's takes 0..1, though it serves the value as percent)."""
    from alpaca_simulators.api.common import (  # type: ignore[import-untyped]
        AlpacaError,
        validate_device,
    )
    from alpaca_simulators.state import (
        get_device_state,
        get_server_transaction_id,
        update_device_state,
    )

    router = APIRouter()
    generations: dict[tuple[str, int], int] = {}

    def move(
        kind: str, number: int, moving: dict[str, Any], done: dict[str, Any], seconds: float
    ) -> None:
        """Report `moving` now and `done` after `seconds`, unless a newer command came."""
        generation = generations[kind, number] = generations.get((kind, number), 0) + 1
        update_device_state(kind, number, moving)

        def arrive() -> None:
            if generations[kind, number] == generation:
                update_device_state(kind, number, done)

        asyncio.get_running_loop().call_later(seconds, arrive)

    def stop(kind: str, number: int, stopped: dict[str, Any]) -> None:
        generations[kind, number] = generations.get((kind, number), 0) + 1
        update_device_state(kind, number, stopped)

    def reply(transaction: int) -> dict[str, int | str]:
        return {
            "ClientTransactionID": transaction,
            "ServerTransactionID": get_server_transaction_id(),
            "ErrorNumber": 0,
            "ErrorMessage": "",
        }

    def shutter_to(
        end: ShutterState, moving: ShutterState
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def command(
            device_number: int = Path(..., ge=0), transaction: int = _TRANSACTION
        ) -> dict[str, int | str]:
            validate_device("dome", device_number)
            state = get_device_state("dome", device_number).get("shutterstatus")
            if state not in (end.value, moving.value):
                move(
                    "dome",
                    device_number,
                    {"shutterstatus": moving.value},
                    {"shutterstatus": end.value},
                    settings.shutter_time_s,
                )
            return reply(transaction)

        return command

    def cover_to(end: CoverState) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def command(
            device_number: int = Path(..., ge=0), transaction: int = _TRANSACTION
        ) -> dict[str, int | str]:
            validate_device("covercalibrator", device_number)
            state = get_device_state("covercalibrator", device_number)
            heading = state.get("covermoving") and state.get("covertarget") == end.value
            if state.get("coverstate") != end.value and not heading:
                move(
                    "covercalibrator",
                    device_number,
                    {
                        "coverstate": CoverState.MOVING.value,
                        "covermoving": True,
                        "covertarget": end.value,
                    },
                    {"coverstate": end.value, "covermoving": False},
                    settings.cover_time_s,
                )
            return reply(transaction)

        return command

    async def abort_slew(
        device_number: int = Path(..., ge=0), transaction: int = _TRANSACTION
    ) -> dict[str, int | str]:
        """As the package's AbortSlew, and a moving shutter stops where it is."""
        validate_device("dome", device_number)
        state = get_device_state("dome", device_number)
        update_device_state(
            "dome", device_number, {"slewing": False, "slew_gen": state.get("slew_gen", 0) + 1}
        )
        if state.get("shutterstatus") in (ShutterState.OPENING.value, ShutterState.CLOSING.value):
            stop("dome", device_number, {"shutterstatus": ShutterState.ERROR.value})
        return reply(transaction)

    async def halt_cover(
        device_number: int = Path(..., ge=0), transaction: int = _TRANSACTION
    ) -> dict[str, int | str]:
        validate_device("covercalibrator", device_number)
        if get_device_state("covercalibrator", device_number).get("covermoving"):
            stop(
                "covercalibrator",
                device_number,
                {"coverstate": CoverState.UNKNOWN.value, "covermoving": False},
            )
        return reply(transaction)

    async def set_cloud_cover(
        device_number: int = Path(..., ge=0),
        percent: float = Form(..., alias="CloudCover"),
        transaction: int = _TRANSACTION,
    ) -> dict[str, int | str]:
        validate_device("observingconditions", device_number)
        if not 0.0 <= percent <= 100.0:
            raise AlpacaError(0x401, "CloudCover must be between 0 and 100 percent")
        update_device_state("observingconditions", device_number, {"cloudcover": percent})
        return reply(transaction)

    endpoints: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
        "/dome/{device_number}/openshutter": shutter_to(ShutterState.OPEN, ShutterState.OPENING),
        "/dome/{device_number}/closeshutter": shutter_to(ShutterState.CLOSED, ShutterState.CLOSING),
        "/dome/{device_number}/abortslew": abort_slew,
        "/covercalibrator/{device_number}/opencover": cover_to(CoverState.OPEN),
        "/covercalibrator/{device_number}/closecover": cover_to(CoverState.CLOSED),
        "/covercalibrator/{device_number}/haltcover": halt_cover,
        "/observingconditions/{device_number}/cloudcover": set_cloud_cover,
    }
    for path, endpoint in endpoints.items():
        router.add_api_route(path, endpoint, methods=["PUT"])
    return router


def _replace_routes(app: FastAPI, router: APIRouter, prefix: str) -> None:
    """Serve `router`'s endpoints in place of the app's on the same paths: routes match in
    order, so `router`'s go first."""
    count = len(app.router.routes)
    app.include_router(router, prefix=prefix)
    added = app.router.routes[count:]
    del app.router.routes[count:]
    app.router.routes[:0] = added


def main() -> None:
    """Parse run_simulator's arguments, load the config they name, install, serve."""
    import uvicorn
    from alpaca_simulators import run_simulator  # type: ignore[import-untyped]

    args = run_simulator.parse_args()
    if args.reload:
        raise SystemExit("--reload is not supported with the physics installed")
    os.environ["ASTRA_SIMULATORS_CONFIG"] = args.config
    from alpaca_simulators.config import Config  # type: ignore[import-untyped]
    from alpaca_simulators.main import app

    try:
        install(app, Config().load())
    except ValueError as e:
        raise SystemExit(f"{args.config}: {e}") from e
    uvicorn.run(app, host=args.host, port=args.port, timeout_keep_alive=args.timeout_keep_alive)


if __name__ == "__main__":
    main()
