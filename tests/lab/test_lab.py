"""The lab itself: namespaces, real sshd, separate filesystems and sysctls, service, teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from arpfix.errors import UsageError
from arpfix.lab import core

pytestmark = pytest.mark.lab

ARPFIX = [sys.executable, "-m", "arpfix.cli"]


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARPFIX, "lab", *args], check=False, capture_output=True, text=True, timeout=60, **kwargs)


def ssh(lab, address: str, command: str = "true") -> subprocess.CompletedProcess[str]:
    s = lab.status["ssh"]
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={s['known_hosts']}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=5", "-i", s["key"], f"{s['user']}@{address}", command],
        check=False, capture_output=True, text=True, timeout=30)


def ask(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        data = b""
        while chunk := conn.recv(1024):
            data += chunk
    return data.decode()


def leftovers(name: str, state_dir: str, pids: list[int]) -> list[str]:
    found = [f"netns {n}" for n in core._lab_netns(name)]
    links = subprocess.run(["ip", "-j", "link"], check=False, capture_output=True, text=True).stdout
    found += [f"link {link['ifname']}" for link in json.loads(links) if link["ifname"].startswith(f"{name}-")]
    found += [f"pid {p}" for p in pids if core._alive(p)]
    with open("/proc/self/mountinfo") as fh:
        found += [f"mount {line.split()[4]}" for line in fh
                  if state_dir in line or f" {name}-" in line]
    if os.path.exists(state_dir):
        found.append(f"state dir {state_dir}")
    if os.path.exists(core._registry_file(name)):
        found.append("registry entry")
    return found


def recorded_pids(lab) -> list[int]:
    return [p for h in lab.status["hosts"] for p in h["pids"].values()]


def test_lab_has_the_documented_shape(lab):
    st = lab.status
    roles = [h["role"] for h in st["hosts"]]
    assert roles.count("real-server") == 3 and roles.count("agent") == 1 and roles.count("client") == 1
    for key in ("name", "state_dir", "subnet", "admin_address", "inventory", "vip", "services", "ssh", "hosts"):
        assert key in st
    assert st["services"] == [{"protocol": "tcp", "port": 80}, {"protocol": "tcp", "port": 443}]
    assert set(st["ssh"]) >= {"user", "key", "known_hosts"}
    for h in st["hosts"]:
        assert set(h) >= {"name", "role", "netns", "address", "mac", "ssh_address", "ssh_port"}
        assert h["netns"] == f"{lab.name}-{h['name']}" and h["running"]
    assert st["vip"].endswith(".250") and st["admin_address"].endswith(".1")
    assert lab.host("rs1")["address"].endswith(".11") and lab.host("agent")["address"].endswith(".2")
    assert lab.up_seconds < 10, f"lab up took {lab.up_seconds:.1f}s"

    result = cli("status", "--name", lab.name, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hosts"] == json.loads(json.dumps(st))["hosts"]
    table = cli("status", "--name", lab.name)
    assert table.returncode == 0 and "rs3" in table.stdout and st["vip"] in table.stdout


def test_inventory_is_valid_and_describes_the_lab(lab):
    from arpfix.inventory import load_inventory

    inv = load_inventory(lab.inventory_path)
    assert sorted(inv.hosts) == ["agent", "rs1", "rs2", "rs3"]
    assert str(inv.hosts["rs2"].address) == lab.host("rs2")["address"]
    assert inv.hosts["rs1"].ssh.known_hosts == lab.status["ssh"]["known_hosts"]


def test_sshd_accepts_the_lab_key_with_strict_host_checking(lab):
    for h in lab.hosts_by_role("real-server") + lab.hosts_by_role("agent"):
        result = ssh(lab, h["ssh_address"], "cat /etc/hostname; cat /proc/sys/net/ipv4/conf/all/arp_ignore")
        assert result.returncode == 0, f"{h['name']}: {result.stderr}"
        assert result.stdout.split() == [h["name"], "0"]
    assert lab.host("client")["ssh_address"] is None


def test_each_host_has_its_own_filesystem_view(lab):
    probe = "/etc/arpfix-probe"
    assert not os.path.exists(probe)
    lab.exec("rs1", ["sh", "-c", f"echo rs1-was-here > {probe}; mkdir -p /var/lib/arpfix-probe"])
    assert lab.exec("rs1", ["cat", probe]).stdout == "rs1-was-here\n"
    assert lab.exec("rs2", ["cat", probe], check=False).returncode != 0
    assert not os.path.exists(probe) and not os.path.exists("/var/lib/arpfix-probe")
    # Over SSH it is the same view as lab exec.
    assert ssh(lab, lab.host("rs1")["ssh_address"], f"cat {probe}").stdout == "rs1-was-here\n"
    lab.exec("rs1", ["rm", "-rf", probe, "/var/lib/arpfix-probe"])


def test_sysctls_and_links_are_per_host_and_start_at_defaults(lab):
    key = "/proc/sys/net/ipv4/conf/{}/arp_ignore"
    with open(key.format("all")) as fh:
        machine = fh.read()
    for h in lab.hosts_by_role("real-server"):
        script = "cat /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce | sort -u"
        out = lab.exec(h["name"], ["sh", "-c", script]).stdout
        assert out.split() == ["0"], h["name"]
        links = lab.exec(h["name"], ["ls", "/sys/class/net"]).stdout.split()
        assert sorted(links) == ["eth0", "lo"]
        mac = lab.exec(h["name"], ["cat", "/sys/class/net/eth0/address"]).stdout.strip()
        assert mac == h["mac"]
    lab.exec("rs1", ["sh", "-c", f"echo 1 > {key.format('all')}"])
    try:
        assert lab.exec("rs1", ["cat", key.format("all")]).stdout == "1\n"
        assert lab.exec("rs2", ["cat", key.format("all")]).stdout == "0\n"
        with open(key.format("all")) as fh:
            assert fh.read() == machine
    finally:
        lab.exec("rs1", ["sh", "-c", f"echo 0 > {key.format('all')}"])


def test_the_service_answers_with_host_and_local_address(lab):
    for h in lab.hosts_by_role("real-server"):
        for port in (80, 443):
            assert ask(h["address"], port) == f"{h['name']} {h['address']}:{port}\n"
    # From the client namespace, across the bridge.
    rs3 = lab.host("rs3")["address"]
    code = (f"import socket;s=socket.create_connection(('{rs3}',80),timeout=5);"
            "print(s.recv(100).decode(),end='')")
    assert lab.exec("client", [sys.executable, "-c", code]).stdout == f"rs3 {rs3}:80\n"


def test_exec_passes_exit_codes_signals_and_runs_arpfix(lab):
    assert lab.exec("rs1", ["sh", "-c", "exit 7"], check=False).returncode == 7
    assert cli("exec", "--name", lab.name, "rs2", "--", "sh", "-c", "exit 7").returncode == 7
    result = cli("exec", "--name", lab.name, "rs2", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert result.returncode == 0 and lab.host("rs2")["address"] + "/24" in result.stdout
    result = cli("exec", "--name", lab.name, "agent", "--", "arpfix", "--version")
    assert result.returncode == 0 and "arpfix" in result.stdout, result.stderr

    proc = subprocess.Popen([*ARPFIX, "lab", "exec", "--name", lab.name, "rs1", "--", "sleep", "30"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until the process has become `sleep`
        try:
            with open(f"/proc/{proc.pid}/comm") as fh:
                if fh.read().strip() == "sleep":
                    break
        except OSError:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_user_errors_are_one_line_with_exit_2(lab):
    with pytest.raises(UsageError, match="already exists"):
        core.lab_up(lab.name, 1)
    for args in (["up", "--name", lab.name], ["up", "--name", "Bad-Name"], ["status", "--name", "nolab1"],
                 ["exec", "--name", lab.name, "rs99", "--", "true"], ["up", "--hosts", "201"]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 4, result.stderr
    if subprocess.run(["which", "setpriv"], check=False, capture_output=True).returncode == 0:
        result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *ARPFIX,
                                 "lab", "status", "--name", lab.name],
                                check=False, capture_output=True, text=True, timeout=30, cwd="/")
        if "No module named" not in result.stderr:  # the checkout may not be readable by nobody
            assert result.returncode == 2 and "needs root" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr


def test_two_labs_coexist_and_down_removes_everything_even_after_a_crash(lab, lab_factory):
    other = lab_factory(hosts=1)
    assert other.status["subnet"] != lab.status["subnet"]
    assert ask(other.host("rs1")["address"], 80).startswith("rs1 ")
    assert ask(lab.host("rs1")["address"], 80).startswith("rs1 ")
    # Build a third one through the CLI, then "crash" it: kill -9 every process it started.
    name = other.name[:-1] + ("x" if other.name[-1] != "x" else "y")
    state_dir = os.path.join(os.path.dirname(other.state_dir), f"cli-{name}")
    try:
        result = cli("up", "--name", name, "--hosts", "2", "--state-dir", state_dir)
        assert result.returncode == 0, result.stderr
        st = json.loads(cli("status", "--name", name, "--format", "json").stdout)
        pids = [p for h in st["hosts"] for p in h["pids"].values()]
        lab.exec("rs1", ["true"])  # the other labs are untouched
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # A process started inside a host (not recorded anywhere) is found by its namespace.
        stray = subprocess.Popen(core.lab_exec_argv(name, "rs2") + ["sleep", "60"])
        assert leftovers(name, state_dir, pids)
    finally:
        result = cli("down", "--name", name)
    assert result.returncode == 0, result.stderr
    assert stray.wait(timeout=10) != 0
    assert leftovers(name, state_dir, pids) == []
    again = cli("down", "--name", name)
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    # The first two labs still work.
    assert ask(other.host("rs1")["address"], 443) == f"rs1 {other.host('rs1')['address']}:443\n"
    assert ssh(lab, lab.host("rs2")["ssh_address"]).returncode == 0

    core.lab_down(other.name)
    assert leftovers(other.name, other.state_dir, recorded_pids(other)) == []
    core.lab_down(other.name)  # idempotent (the fixture calls it once more)
