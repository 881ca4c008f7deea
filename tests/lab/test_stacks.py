"""Persistence through the host's own network stack, against the real daemons and tools.

NetworkManager 1.42 (Debian's package, run in a lab server with its own D-Bus) and ifupdown's
`ifup`: both unpacked from Debian packages, never installed on the machine (tests/lab/debtools.py);
systemd-networkd: the machine's own binary (or Debian's), run inside a lab server.
"Reboot" = runtime state flushed, then what boot runs: `sysctl --system`, then the stack
(NetworkManager or systemd-networkd starting, `ifup -a`). arpfix-vip.service is deliberately NOT run here, so the
stack alone must bring the VIP back.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import debtools
from test_linux import arpfix, sh, snapshot

from arpfix.exitcodes import Exit

pytestmark = pytest.mark.lab
NM_FILE = "/etc/NetworkManager/system-connections/arpfix-lo.nmconnection"
NETWORKD_FILE = "/etc/systemd/network/10-arpfix-lo.network"
FLUSH = ("ip addr del {vip}/32 dev lo 2>/dev/null; for d in all eth0; do echo 0 > /proc/sys/net/ipv4/conf/$d/arp_ignore;"
         " echo 0 > /proc/sys/net/ipv4/conf/$d/arp_announce; done; true")


def lo_addresses(lab, host):
    return set(sh(lab, host, "ip -o addr show dev lo | awk '{print $4}'").split())


@pytest.fixture(scope="module")
def nm_root():
    return debtools.extract(debtools.NM_PACKAGES)


def test_networkmanager_host_gets_a_loopback_profile_that_survives_a_reboot(lab_factory, nm_root):
    lab = lab_factory(hosts=2)
    vip = lab.status["vip"]
    for host in ("rs1", "rs2"):
        debtools.start_networkmanager(lab, host, nm_root)
    sh(lab, "rs2", "ip addr add 192.0.2.77/32 dev lo")  # a site address on lo: NetworkManager would wipe it
    before = {h: snapshot(lab, h) for h in ("rs1", "rs2")}

    plan = arpfix(lab, "plan", "--format", "json", check_code=Exit.PENDING).stdout
    assert f"file {NM_FILE}" in plan.split('"rs2"')[0] and plan.count(f"file {NM_FILE}") == 1
    arpfix(lab, "apply", "--yes", check_code=Exit.OK)
    # rs1: NetworkManager accepted and activated the profile; lo holds exactly 127.0.0.1, ::1 and the VIP
    profiles = sh(lab, "rs1", "nmcli -t -f NAME,TYPE,FILENAME connection show")
    assert f"arpfix-lo:loopback:{NM_FILE}" in profiles.splitlines()
    assert lo_addresses(lab, "rs1") == {"127.0.0.1/8", "::1/128", f"{vip}/32"}
    assert sh(lab, "rs1", f"stat -c %a {NM_FILE}").strip() == "600"
    # rs2: no profile (it would remove 192.0.2.77), a warning says so, the site address is intact
    assert sh(lab, "rs2", f"test -e {NM_FILE} && echo present || echo absent").strip() == "absent"
    assert "192.0.2.77/32" in lo_addresses(lab, "rs2")
    audit = arpfix(lab, "audit", "--format", "json", check_code=Exit.OK).stdout
    assert "not written: lo holds 192.0.2.77/32" in audit

    # reboot rs1: runtime flushed, sysctl --system, NetworkManager starts; nothing else runs
    debtools.stop_nm_daemon(lab, "rs1")
    sh(lab, "rs1", FLUSH.format(vip=vip) + "; sysctl -q --system >/dev/null 2>&1; true")
    assert f"{vip}/32" not in lo_addresses(lab, "rs1")
    debtools.start_nm_daemon(lab, "rs1", nm_root)
    assert f"{vip}/32" in lo_addresses(lab, "rs1")
    assert "lo:loopback:connected:arpfix-lo" in sh(lab, "rs1", "nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device")
    arpfix(lab, "audit", "--limit", "rs1", check_code=Exit.OK)

    # rollback while the profile is active on lo: a site address added since stays, NM forgets the profile
    sh(lab, "rs1", "ip addr add 192.0.2.88/32 dev lo")
    arpfix(lab, "rollback", "--yes", check_code=Exit.OK)
    assert lo_addresses(lab, "rs1") == {"127.0.0.1/8", "::1/128", "192.0.2.88/32"}
    assert "arpfix-lo" not in sh(lab, "rs1", "nmcli -t -f NAME connection show")
    sh(lab, "rs1", "ip addr del 192.0.2.88/32 dev lo")
    assert snapshot(lab, "rs1") == before["rs1"]
    assert snapshot(lab, "rs2") == before["rs2"]


def test_ifupdown_host_gets_the_vip_back_from_ifup(lab_factory):
    root = debtools.extract(("ifupdown",))
    lab = lab_factory(hosts=1)
    vip = lab.status["vip"]
    # a Debian ifupdown host: the stock interfaces file that sources interfaces.d
    sh(lab, "rs1", "mkdir -p /etc/network/interfaces.d /run/network && printf '%s\\n' "
                   "'source /etc/network/interfaces.d/*' '' 'auto lo' 'iface lo inet loopback' > /etc/network/interfaces")
    before = snapshot(lab, "rs1")
    arpfix(lab, "apply", "--yes", check_code=Exit.OK)
    assert f"up ip addr add {vip}/32 dev lo" in sh(lab, "rs1", "cat /etc/network/interfaces.d/arpfix")
    arpfix(lab, "audit", check_code=Exit.OK)
    # reboot: flush, sysctl --system, then networking.service's `ifup -a` (the real binary)
    sh(lab, "rs1", FLUSH.format(vip=vip) + "; rm -f /run/network/ifstate*; sysctl -q --system >/dev/null 2>&1; true")
    arpfix(lab, "audit", check_code=Exit.PENDING)
    ifup = lab.exec("rs1", [f"{root}/sbin/ifup", "-a", "--no-scripts"], check=False)
    assert ifup.returncode == 0, ifup.stderr
    assert f"{vip}/32" in lo_addresses(lab, "rs1")
    arpfix(lab, "audit", check_code=Exit.OK)
    arpfix(lab, "rollback", "--yes", check_code=Exit.OK)
    sh(lab, "rs1", "rm -rf /run/network")
    assert snapshot(lab, "rs1") == before


def test_networkd_host_gets_a_lo_network_that_survives_a_reboot(lab_factory):
    binary, libs = debtools.networkd()
    lab = lab_factory(hosts=1)
    vip = lab.status["vip"]
    debtools.start_networkd(lab, "rs1", binary, libs)  # a networkd host; nothing configures lo yet
    sh(lab, "rs1", "ip addr add 192.0.2.77/32 dev lo")  # a site address on lo
    before = snapshot(lab, "rs1")
    arpfix(lab, "apply", "--yes", check_code=Exit.OK)
    network = sh(lab, "rs1", f"cat {NETWORKD_FILE}")
    assert "[Match]\nName=lo\n" in network and f"Address={vip}/32\n" in network and "Label=lo:arpfix" in network
    arpfix(lab, "audit", check_code=Exit.OK)

    # reboot: networkd dies, runtime flushed, sysctl --system, networkd starts; nothing else runs
    debtools.stop_networkd(lab, "rs1")
    sh(lab, "rs1", FLUSH.format(vip=vip) + "; sysctl -q --system >/dev/null 2>&1; true")
    assert f"{vip}/32" not in lo_addresses(lab, "rs1")
    debtools.start_networkd(lab, "rs1", binary, libs)
    assert f"{vip}/32" in lo_addresses(lab, "rs1")
    assert f"{vip}/32 scope global lo:arpfix" in sh(lab, "rs1", "ip -o addr show dev lo")
    assert "192.0.2.77/32" in lo_addresses(lab, "rs1")  # networkd leaves other addresses on lo alone
    arpfix(lab, "audit", check_code=Exit.OK)

    # rollback, then another reboot: the VIP stays gone, the site address stays
    arpfix(lab, "rollback", "--yes", check_code=Exit.OK)
    debtools.stop_networkd(lab, "rs1")
    debtools.start_networkd(lab, "rs1", binary, libs)
    assert f"{vip}/32" not in lo_addresses(lab, "rs1") and "192.0.2.77/32" in lo_addresses(lab, "rs1")
    assert snapshot(lab, "rs1") == before
