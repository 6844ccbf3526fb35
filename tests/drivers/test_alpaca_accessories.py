"""Focuser, filter wheel and safety monitor drivers against the real simulator."""

from __future__ import annotations

import pytest

from drivers.equipment import Equipment


async def test_focuser_moves_to_an_absolute_position(equipment: Equipment) -> None:
    focuser = equipment.focuser
    assert focuser is not None
    start = (await focuser.status()).position
    target = start + 1234 if start + 1234 <= focuser.info.max_step else start - 1234
    await focuser.move_to(target)
    status = await focuser.status()
    assert status.position == target
    assert not status.is_moving
    await focuser.move_to(start)
    assert (await focuser.status()).position == start


async def test_focuser_refuses_a_position_past_its_travel(equipment: Equipment) -> None:
    focuser = equipment.focuser
    assert focuser is not None
    with pytest.raises(ValueError, match=r"position must be within 0\.\.60000"):
        await focuser.move_to(focuser.info.max_step + 1)


async def test_filter_wheel_selects_by_name(equipment: Equipment) -> None:
    wheel = equipment.filter_wheel
    assert wheel is not None
    assert wheel.info.names == ("L", "R", "G", "B", "Ha", "OIII", "SII")
    await wheel.select("oiii")
    status = await wheel.status()
    assert (status.position, status.filter_name) == (5, "OIII")
    await wheel.select("L")
    assert (await wheel.status()).filter_name == "L"


async def test_filter_wheel_names_the_choices_for_an_unknown_filter(
    equipment: Equipment,
) -> None:
    wheel = equipment.filter_wheel
    assert wheel is not None
    with pytest.raises(ValueError, match=r"'Z' is not in this wheel: \['L', 'R'"):
        await wheel.select("Z")


async def test_safety_monitor_reports_safe(equipment: Equipment) -> None:
    monitor = equipment.safety_monitor
    assert monitor is not None
    assert (await monitor.status()).is_safe is True
