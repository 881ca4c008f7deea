"""Suite-wide rules. With ARPFIX_REQUIRE_LAB=1 (CI), a skipped lab test is a failure."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ARPFIX_REQUIRE_LAB") == "1" and item.get_closest_marker("lab"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"lab test skipped but ARPFIX_REQUIRE_LAB=1 (CI needs the lab): {reason}"
