"""Do-no-harm rules (issue 15) as pure functions: cloud identifiers as the DMI files hold them
(cloud-init's ds-identify reads the same ones), systemd.network Name= matching, the ARP scope."""

from __future__ import annotations

import pytest

from arpfix.platforms.linux.harm import _networkd_matches, arp_scope, container_interfaces, detect_cloud
from arpfix.settings import Host


def host(**kw):
    import ipaddress

    return Host(name="rs1", platform="linux", address=ipaddress.ip_address("10.0.0.11"), connect="10.0.0.11", **kw)


@pytest.mark.parametrize("dmi, cloud", [
    ({"sys_vendor": "Amazon EC2", "product_name": "m5.large", "bios_vendor": "Amazon EC2"}, "aws"),  # Nitro
    ({"sys_vendor": "Xen", "product_name": "HVM domU", "bios_version": "4.11.amazon", "uuid": "ec2e1916-9099-7caf"}, "aws"),
    ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
      "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "azure"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine", "chassis_asset_tag": "None"}, "none"),
    ({"sys_vendor": "VMware, Inc.", "product_name": "VMware Virtual Platform"}, "none"),
    ({}, "none"),
])
def test_cloud_from_dmi(dmi, cloud):
    assert detect_cloud({"dmi": dmi}, host())[0] == cloud


def test_the_inventory_overrides_the_detected_cloud():
    assert detect_cloud({"dmi": {"sys_vendor": "Amazon EC2"}}, host(cloud="none"))[0] == "none"
    assert detect_cloud({"dmi": {}}, host(cloud="gcp"))[0] == "gcp"


@pytest.mark.parametrize("patterns, device, matches", [
    (["*"], "lo", True), (["en*", "eth*"], "lo", False), (["!eth0"], "lo", True), (["!eth0", "!lo"], "lo", False),
    (["lo"], "lo", True), ([], "lo", False), (["arpfix?"], "arpfix0", True),
])
def test_networkd_name_matching(patterns, device, matches):
    assert _networkd_matches(patterns, device) is matches


def test_arp_scope_is_nic_where_containers_are_and_the_inventory_decides():
    facts = {"interfaces": {"lo": {}, "eth0": {}, "docker0": {}, "veth12ab": {}, "cali0f3": {}}}
    assert container_interfaces(facts) == ["cali0f3", "docker0", "veth12ab"]
    assert arp_scope(facts, host())[0] == "nic"
    assert arp_scope(facts, host(arp_scope="all"))[0] == "all"
    assert arp_scope({"interfaces": {"lo": {}, "eth0": {}}}, host())[0] == "all"
