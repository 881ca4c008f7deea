"""Clouds on Windows (issue 15): the facts script's Win32_ComputerSystem / Win32_SystemEnclosure
values decide, as the DMI files do on Linux. AWS blocks the plan; GCP and Azure are warnings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.unit.test_windows_cases import PLATFORM, build

CASE = json.loads((Path(__file__).parent / "windows_cases" / "fresh_server2019.json").read_text())


def facts_with(dmi):
    return PLATFORM.parse_facts({**CASE["raw"], "dmi": dmi})


def test_aws_blocks_a_windows_plan_with_the_reason():
    host, inventory = build(CASE)
    changes = PLATFORM.plan(facts_with({"sys_vendor": "Amazon EC2", "product_name": "m5.large"}), host, inventory)
    assert [(c.subject, c.action) for c in changes] == [("cloud", "blocked")]
    assert "AWS VPC" in changes[0].detail
    override = dataclasses.replace(host, cloud="none")
    assert PLATFORM.plan(facts_with({"sys_vendor": "Amazon EC2"}), override, inventory)[0].subject != "cloud"


@pytest.mark.parametrize("dmi, words", [
    ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "guest agent"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
      "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "Floating IP"),
])
def test_gcp_and_azure_warn_without_blocking(dmi, words):
    host, inventory = build(CASE)
    facts = facts_with(dmi)
    cloud = [f for f in PLATFORM.audit(facts, host, inventory) if f.check == "cloud"]
    assert cloud and cloud[0].severity == "warning" and words in cloud[0].detail + cloud[0].fix
    assert all(c.subject != "cloud" for c in PLATFORM.plan(facts, host, inventory))


def test_an_on_premises_hyper_v_guest_is_no_cloud():
    host, inventory = build(CASE)
    facts = facts_with({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine", "chassis_asset_tag": "None"})
    assert not [f for f in PLATFORM.audit(facts, host, inventory) if f.check == "cloud"]
