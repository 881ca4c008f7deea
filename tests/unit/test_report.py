"""JUnit output: any text from a host or a check reaches the XML as the same text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from arpfix.model import Finding, HostResult
from arpfix.report import junit

NASTY = ['quote " and \' apostrophe', "<tag> & </tag>", "line\nbreak\ttab\rreturn", "]]> --> <!--", "ünï ✓"]


@pytest.mark.parametrize("text", NASTY)
def test_junit_carries_any_text_unchanged(text):
    results = [
        HostResult(f"host {text}", "linux", "drift", findings=[
            Finding(f"check {text}", False, 1, 0, detail=f"detail {text}"),
            Finding("warn", False, 1, 0, detail=f"warning {text}", severity="warning"),
            Finding("fine", True, 1, 1),
        ]),
        HostResult("down", "linux", "error", error=f"cannot connect: {text}"),
    ]
    suite = ET.fromstring(junit(results, f"audit {text}").encode())
    assert suite.get("name") == f"audit {text}"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "1")
    cases = suite.findall("testcase")
    assert cases[0].get("classname") == f"host {text}" and cases[0].get("name") == f"check {text}"
    assert cases[0].find("failure").get("message") == f"detail {text}"
    assert cases[1].find("system-out").text == f"warning {text}"
    assert cases[2].find("failure") is None
    assert cases[3].find("error").get("message") == f"cannot connect: {text}"
