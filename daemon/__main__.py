"""The `nightowl` command (also `python -m daemon`).

    nightowl serve   run the daemon's HTTP API (default command)
    nightowl sim     run the Alpaca simulator rig alone, e.g. for a daemon elsewhere

Settings come from ``NIGHTOWL_*`` environment variables (see `daemon.settings.Settings`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.settings import Settings
from drivers.profile import ProfileError, load_profile

log = logging.getLogger("nightowl")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nightowl", description=__doc__.splitlines()[0])
    parser.set_defaults(command="serve", host=None, port=None)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the daemon's HTTP API")
    serve.add_argument("--host", help="listen address (NIGHTOWL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (NIGHTOWL_PORT, default 8000)")
    sim = commands.add_parser("sim", help="run the Alpaca simulator rig in the foreground")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=11111, help="listen port (default 11111)")
    sim.add_argument("--run-dir", type=Path, default=None, help="default: DATA_DIR/simulator")
    return parser


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        lines = [
            f"  NIGHTOWL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in e.errors()
        ]
        sys.exit("nightowl: invalid settings:\n" + "\n".join(lines))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from daemon.app import create_app

    settings = _settings(host=args.host, port=args.port)
    if settings.equipment_profile is not None:
        try:
            load_profile(settings.equipment_profile)
        except ProfileError as e:
            sys.exit(f"nightowl: {e}\n  (NIGHTOWL_EQUIPMENT_PROFILE)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


def sim(args: argparse.Namespace) -> None:
    from daemon.simulator.rig import SimulatorError, SimulatorRig

    settings = _settings()
    rig = SimulatorRig(
        run_dir=args.run_dir or settings.data_dir / "simulator",
        cache_dir=settings.resolved_cache_dir,
        host=args.host,
        port=args.port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        rig.start()
    except SimulatorError as e:
        sys.exit(f"nightowl sim: {e}")
    print(f"Alpaca simulators serving on {rig.url} (Ctrl-C stops them)", flush=True)
    try:
        while not stop.wait(1.0):
            if not rig.running:
                sys.exit(f"nightowl sim: the simulator exited; see {rig.log_path}")
    finally:
        rig.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "sim":
        sim(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
