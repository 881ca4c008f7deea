"""Do no harm (issue 15), on real lab servers set up the way each item describes: a host with a
Docker-like bridge and veth pairs, DMI files of a cloud, a UDP service bound to the wildcard
address, a route that picks a VIP as source, a site's catch-all systemd-networkd file with the real
networkd. Each test ends in a rollback that must bring the server back byte for byte.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from arpfix.exitcodes import Exit
from tests.lab import debtools
from tests.lab.lifecycle_tools import arp_answers, arpfix_json, failing_checks, hosts_of, sh

pytestmark = pytest.mark.lab


def changes_of(document, host):
    return [(c["subject"], c["action"]) for c in hosts_of(document)[host]["changes"]]


def warnings_of(document, host):
    return {f["check"]: f for f in hosts_of(document)[host]["findings"] if not f["ok"] and f["severity"] == "warning"}


def test_container_host_gets_the_nic_only_unless_the_inventory_says_all(lab, pristine):
    rs1_mac = lab.host("rs1")["mac"].lower()
    sh(lab, "rs1", "ip link add docker0 type bridge && ip link add veth1a2b3c type veth peer name veth1a2b3d"
                   " && ip link set veth1a2b3c master docker0")
    try:
        path = pristine.write()
        result = subprocess.run([sys.executable, "-m", "arpfix.cli", "plan", "-i", path], capture_output=True, text=True)
        assert "container networking detected (docker0, veth1a2b3c, veth1a2b3d)" in result.stderr
        code, plan = arpfix_json(path, "plan")
        subjects = [s for s, _ in changes_of(plan, "rs1")]
        assert "sysctl net.ipv4.conf.eth0.arp_ignore" in subjects
        assert not any(".all." in s for s in subjects)  # `all` untouched: containers keep their ARP
        assert any(".all." in s for s in (x for x, _ in changes_of(plan, "rs2")))  # a plain host still gets all
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        assert sh(lab, "rs1", "cat /proc/sys/net/ipv4/conf/all/arp_ignore /proc/sys/net/ipv4/conf/eth0/arp_ignore").split() \
            == ["0", "1"]
        assert "net.ipv4.conf.all" not in sh(lab, "rs1", "cat /etc/sysctl.d/90-arpfix.conf")
        code, audit = arpfix_json(path, "audit")
        assert hosts_of(audit)["rs1"]["status"] == "compliant", failing_checks(hosts_of(audit)["rs1"])
        assert "container networking detected" in warnings_of(audit, "rs1")["arp scope"]["detail"]
        assert rs1_mac not in arp_answers(lab, lab.status["vip"])  # the NIC's own value is enough
        # the inventory overrides the detection; the plan converges on it
        pristine.data["hosts"]["rs1"]["arp_scope"] = "all"
        code, plan = arpfix_json(pristine.write(), "plan")
        assert ("sysctl net.ipv4.conf.all.arp_ignore", "set") in changes_of(plan, "rs1")
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        pristine.data["hosts"]["rs1"]["arp_scope"] = "nic"
        code, plan = arpfix_json(pristine.write(), "plan")
        assert ("sysctl net.ipv4.conf.all.arp_ignore", "restore") in changes_of(plan, "rs1")
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        assert sh(lab, "rs1", "cat /proc/sys/net/ipv4/conf/all/arp_ignore").strip() == "0"
        assert arpfix_json(path, "rollback", "--yes")[0] == Exit.OK
    finally:
        sh(lab, "rs1", "ip link del veth1a2b3c 2>/dev/null; ip link del docker0 2>/dev/null; true")


@pytest.fixture
def fake_dmi(lab):
    """DMI files of a cloud on rs1: a tmpfs over /sys/class in rs1's own mount namespace."""
    def make(**values):
        files = " && ".join(f"printf '%s\\n' {json.dumps(v)} > /run/arpfix-test-sys/dmi/id/{k}" for k, v in values.items())
        sh(lab, "rs1", "umount /sys/class 2>/dev/null; rm -rf /run/arpfix-test-sys; mkdir -p /run/arpfix-test-sys/dmi/id && " + files
           + " && mount --bind /run/arpfix-test-sys /sys/class")
    yield make
    sh(lab, "rs1", "umount /sys/class 2>/dev/null; rm -rf /run/arpfix-test-sys; true")


def test_aws_is_refused_gcp_and_azure_warn_and_the_inventory_overrides(lab, pristine, fake_dmi):
    path = pristine.write()
    fake_dmi(sys_vendor="Amazon EC2", product_name="m5.large", bios_vendor="Amazon EC2")
    code, plan = arpfix_json(path, "plan")
    rs1 = hosts_of(plan)["rs1"]
    assert code == Exit.PENDING and rs1["status"] == "blocked"
    assert any("AWS VPC" in c["detail"] for c in rs1["changes"])
    code, audit = arpfix_json(path, "audit")
    assert "cloud" in failing_checks(hosts_of(audit)["rs1"])
    pristine.data["hosts"]["rs1"]["cloud"] = "none"  # a site that knows better
    assert hosts_of(arpfix_json(pristine.write(), "plan")[1])["rs1"]["status"] == "pending"
    del pristine.data["hosts"]["rs1"]["cloud"]
    pristine.write()
    fake_dmi(sys_vendor="Google", product_name="Google Compute Engine")
    code, audit = arpfix_json(path, "audit")
    assert "guest agent" in warnings_of(audit, "rs1")["cloud"]["detail"]
    fake_dmi(sys_vendor="Microsoft Corporation", product_name="Virtual Machine",
             chassis_asset_tag="7783-7084-3265-9085-8269-3286-77")
    code, audit = arpfix_json(path, "audit")
    assert "Floating IP" in warnings_of(audit, "rs1")["cloud"]["fix"]
    # an on-premises Hyper-V guest (same vendor and product, no Azure asset tag) is no cloud
    fake_dmi(sys_vendor="Microsoft Corporation", product_name="Virtual Machine", chassis_asset_tag="None")
    assert "cloud" not in warnings_of(arpfix_json(path, "audit")[1], "rs1")


def test_a_udp_service_on_the_wildcard_address_is_warned_with_the_fix(lab, pristine):
    pristine.vip()["services"] = [{"protocol": "tcp", "port": 80}, {"protocol": "udp", "port": 5353}]
    path = pristine.write()
    listener = subprocess.Popen(lab.exec_argv("rs1") + [sys.executable, "-c",
                                "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                                "s.bind(('0.0.0.0', 5353)); time.sleep(60)"])
    try:
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        code, audit = arpfix_json(path, "audit", "-v")
        warning = warnings_of(audit, "rs1")[f"udp/5353 reply source on {lab.status['vip']}"]
        assert "replies from the server's own address" in warning["detail"] and "IP_PKTINFO" in warning["fix"]
        junit = subprocess.run([sys.executable, "-m", "arpfix.cli", "audit", "-i", path, "--format", "junit"],
                               capture_output=True, text=True).stdout
        assert 'name="fix"' in junit and "IP_PKTINFO" in junit  # CI shows the fix
        assert "udp/5353 reply source" not in warnings_of(audit, "rs2")  # nothing listens there
    finally:
        listener.kill()
        listener.wait()


def test_a_route_that_makes_the_server_send_from_the_vip_is_reported(lab, pristine):
    vip = lab.status["vip"]
    gateway = vip.rsplit(".", 1)[0] + ".1"  # the lab's admin address (a route lookup sends nothing)
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    sh(lab, "rs1", f"ip route add default via {gateway} dev eth0 src {vip}")
    try:
        code, audit = arpfix_json(path, "audit")
        warning = warnings_of(audit, "rs1")["source address"]
        assert warning["actual"] == vip and "replies go to the load balancer" in warning["detail"]
        assert "source address" not in warnings_of(audit, "rs2")
    finally:
        sh(lab, "rs1", "ip route del default 2>/dev/null; true")


def test_a_site_catch_all_networkd_file_is_reported_before_it_strips_lo(lab, pristine):
    binary, libs = debtools.networkd()
    # a site catch-all (everything but the NIC, so the test keeps its SSH), sorted before arpfix's file
    sh(lab, "rs1", "mkdir -p /etc/systemd/network && printf '[Match]\\nName=!eth0\\n' > /etc/systemd/network/00-site-all.network")
    try:
        debtools.start_networkd(lab, "rs1", binary, libs)
        path = pristine.write()
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        code, audit = arpfix_json(path, "audit")
        warning = warnings_of(audit, "rs1")["systemd-networkd"]
        assert "00-site-all.network matches lo" in warning["detail"] and "Name=!lo" in warning["fix"]
        sh(lab, "rs1", "printf '[Match]\\nName=!eth0 !lo\\n' > /etc/systemd/network/00-site-all.network")
        assert "systemd-networkd" not in warnings_of(arpfix_json(path, "audit")[1], "rs1")
    finally:
        debtools.stop_networkd(lab, "rs1")
        sh(lab, "rs1", "rm -f /etc/systemd/network/00-site-all.network; true")
