"""Platforms (linux, windows): facts, plan, audit and scripts for one kind of host."""

from __future__ import annotations

from typing import Any


def get_platform(name: str) -> Any:
    if name == "windows":
        from arpfix.platforms.windows import WindowsPlatform

        return WindowsPlatform()
    from arpfix.platforms.linux import LinuxPlatform

    return LinuxPlatform()
