"""Screenshots of every page of the web UI, at a desktop's 1400 px and a phone's 390 px.

    .venv/bin/python docs/screenshots.py            # writes docs/ui/<page>-desktop.png, -phone.png

Starts `nightowl serve` on the embedded simulators with a simulated clock (a November night),
gives each page something to show (a short run of M31, a template, a plan, a stacked night),
then opens each page in Debian's Chromium through Playwright. The README shows the results.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from daemon.simulator.rig import free_port

PAGES = (
    "dashboard",
    "imaging",
    "framing",
    "templates",
    "plans",
    "nights",
    "processing",
    "equipment",
    "logs",
)
VIEWPORTS = {"desktop": (1400, 1000), "phone": (390, 844)}
M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
CHROMIUM = "/usr/bin/chromium"


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what} after {timeout_s:.0f} s")


@contextmanager
def daemon(data_dir: Path) -> Iterator[str]:
    """`nightowl serve` on a free port, with the simulators, until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "NIGHTOWL_PORT": str(port),
        "NIGHTOWL_DATA_DIR": str(data_dir),
        "NIGHTOWL_CLOCK": "simulated",
        "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z",
        "NIGHTOWL_PROCESS_AFTER_RUN": "false",  # the night is queued below, with its picture
    }
    log = (data_dir / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait(healthy, 120, "the daemon")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def short_night(count: int) -> dict[str, Any]:
    return {
        "name": f"M31, {count} lights",
        "start": {"items": [{"kind": "unpark"}]},
        "targets": [
            {
                "kind": "target",
                "target_name": "M31",
                "coordinates": M31,
                "items": [
                    {"kind": "slew"},
                    {"kind": "take_exposures", "count": count, "exposure_s": 2.0},
                ],
            }
        ],
        "end": {"items": [{"kind": "park"}]},
    }


def give_the_pages_something(url: str) -> None:
    """A template, a finished run, a plan and a processing job of that run's night."""
    client = httpx.Client(base_url=url, timeout=60, event_hooks={"response": [_raise_for_status]})

    def connected() -> bool:
        devices = client.get("/api/equipment").json()["devices"]
        return bool(devices) and all(d["connected"] for d in devices)

    _wait(connected, 120, "the simulated equipment")
    document = short_night(6)
    template = client.post("/api/templates", json={"document": document}).json()
    run = client.post("/api/runs", json={"template_id": template["id"], "ignore_issues": True})
    run_id = run.json()["id"]
    _wait(
        lambda: client.get(f"/api/runs/{run_id}").json()["status"] in ("completed", "failed"),
        300,
        "the run",
    )
    plan = {
        "name": "M31 this month",
        "template_id": template["id"],
        "targets": [
            {
                "name": "M31",
                "coordinates": M31,
                "priority": 1,
                "goals": [
                    {"filter_name": "L", "exposure_s": 120, "count": 60},
                    {"filter_name": "R", "exposure_s": 180, "count": 20},
                ],
            }
        ],
    }
    client.post("/api/plans", json={"plan": plan})
    session = client.get("/api/sessions").json()[0]
    job = client.post("/api/processing/jobs", json={"session_id": session["id"]}).json()
    _wait(
        lambda: (
            client.get(f"/api/processing/jobs/{job['id']}").json()["state"] in ("done", "failed")
        ),
        900,
        "the processing job",
    )


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        response.read()
        raise SystemExit(f"{response.request.method} {response.url}: {response.text}")


def _frame_m31(page: Page) -> None:
    page.locator("#framing-query").fill("M31")
    page.get_by_role("button", name="Find").click()
    page.locator("svg circle").first.wait_for()


def _first_plan(page: Page) -> None:
    page.get_by_text("M31 this month").first.click()
    page.locator("svg").first.wait_for()


def _histogram(page: Page) -> None:
    page.locator("#histogram svg").wait_for(timeout=60_000)


PREPARE: dict[str, Callable[[Page], None]] = {
    "framing": _frame_m31,
    "plans": _first_plan,
    "imaging": _histogram,
}
"""What a page is shown with: a target framed, a plan opened, a frame's histogram drawn."""


def _shrink(path: Path) -> None:
    """256 colours: the dark pages lose nothing visible and the files a third of their size."""
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def shoot(url: str, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for kind, (width, height) in VIEWPORTS.items():
            context = browser.new_context(base_url=url, viewport={"width": width, "height": height})
            page: Page = context.new_page()
            for name in PAGES:
                page.goto(f"/#/{name}")
                page.wait_for_load_state("networkidle")
                PREPARE.get(name, lambda _: None)(page)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1500)  # live charts and previews draw after their data
                path = out_dir / f"{name}-{kind}.png"
                page.screenshot(path=str(path), full_page=True)
                _shrink(path)
                written.append(path)
            context.close()
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ui")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightowl-shots-") as tmp, daemon(Path(tmp)) as url:
        give_the_pages_something(url)
        for path in shoot(url, args.out):
            print(path)


if __name__ == "__main__":
    main()
