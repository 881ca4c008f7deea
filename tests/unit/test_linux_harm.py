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


def test_the_route_towards_the_load_balancer_must_not_pick_a_vip():
    import ipaddress

    from arpfix.platforms.linux.harm import source_findings
    from arpfix.settings import Service, Vip

    vip = Vip("web", ipaddress.ip_address("10.0.0.250"), (Service("tcp", 80),), ("rs1",))
    facts = {"src_routes": [], "gateway_route": "10.0.0.1 dev eth0 src 10.0.0.11 uid 0 \\    cache",
             "lb_routes": ["10.0.0.5 dev eth0 src 10.0.0.250 uid 0 \\    cache"]}
    (finding,) = source_findings(facts, (vip,))
    assert finding.severity == "warning" and "towards the load balancer" in finding.detail and finding.fix
    facts["lb_routes"] = ["10.0.0.5 dev eth0 src 10.0.0.11 uid 0 \\    cache"]
    assert source_findings(facts, (vip,)) == []


def test_the_facts_script_asks_the_kernel_about_the_load_balancers_addresses(tmp_path):
    from arpfix.inventory import load_inventory
    from arpfix.platforms import get_platform

    path = tmp_path / "inventory.yml"
    path.write_text("hosts:\n  rs1: {platform: linux, address: 10.0.0.11}\n"
                    "vips:\n  - {name: web, address: 10.0.0.250, services: [{port: 80}], real_servers: [rs1]}\n"
                    "load_balancer: {name: lb, macs: ['02:00:00:00:00:01'], addresses: [10.0.0.5, 10.0.0.6]}\n")
    inventory = load_inventory(str(path))
    script = get_platform("linux").facts_script(inventory.hosts["rs1"], inventory)
    assert "ip -o route get '10.0.0.5'" in script and "ip -o route get '10.0.0.6'" in script
