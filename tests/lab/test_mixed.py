"""One inventory, both platforms, one command: the ShareScan example against the WS-Man test server
(real pywinrm over real HTTP) for its Windows servers and the lab (real sshd) for its Linux server.
Also: an Ansible inventory of the lab's hosts works end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from arpfix.exitcodes import Exit
from tests.winrm.wsman_server import WsmanServer

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "unit" / "windows_cases" / "fresh_server2019.json"


def arpfix(*args, env=None):
    return subprocess.run([sys.executable, "-m", "arpfix.cli", *args], capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def test_sharescan_example_plans_windows_and_linux_in_one_run(lab_factory, tmp_path):
    lab = lab_factory(hosts=1)
    raw = json.loads(CASE.read_text())["raw"]
    scripts: dict[str, list[str]] = {"ss01": [], "ss02": []}
    servers = {}
    for name, address in (("ss01", "192.0.2.11"), ("ss02", "192.0.2.12")):
        facts = json.dumps(raw).replace("192.0.2.11", address)

        def handler(script, facts=facts, name=name):
            scripts[name].append(script)
            return facts + "\r\n", "", 0

        servers[name] = WsmanServer(handler, auth="basic", users={"arpfix": "pw-for-test-1"}).start()
    try:
        example = yaml.safe_load((ROOT / "inventory" / "sharescan.yml").read_text())
        lab_inventory = yaml.safe_load(open(lab.inventory_path))
        example["defaults"]["winrm"].update(scheme="http", auth="basic", user="arpfix",
                                            password={"env": "ARPFIX_TEST_WINRM"})
        example["defaults"]["ssh"] = lab_inventory["defaults"]["ssh"]
        for name, server in servers.items():
            example["hosts"][name].update(address="192.0.2.11" if name == "ss01" else "192.0.2.12",
                                          connect="127.0.0.1", winrm={"port": server.port})
        example["hosts"]["web01"] = lab_inventory["hosts"]["rs1"]
        example["hosts"]["probe01"] = lab_inventory["hosts"]["agent"]
        example["vips"][0]["address"] = lab.status["vip"]
        example["load_balancer"] = None
        del example["load_balancer"]
        path = tmp_path / "mixed.yml"
        path.write_text(yaml.safe_dump(example))

        result = arpfix("inventory", "check", "-i", str(path))
        assert result.returncode == Exit.OK, result.stderr
        env = {"ARPFIX_TEST_WINRM": "pw-for-test-1"}
        # Basic over HTTP is refused without --insecure ...
        result = arpfix("plan", "-i", str(path), "--format", "json", env=env)
        hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
        assert result.returncode == Exit.FAILED and hosts["ss01"]["status"] == "error"
        assert hosts["web01"]["status"] == "pending"
        # ... and with it, one command plans both platforms
        result = arpfix("plan", "-i", str(path), "--format", "json", "--insecure", env=env)
        assert result.returncode == Exit.PENDING, result.stderr + result.stdout
        hosts = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
        assert {hosts[n]["status"] for n in ("ss01", "ss02", "web01")} == {"pending"}
        assert hosts["ss01"]["platform"] == "windows" and hosts["web01"]["platform"] == "linux"
        assert any(c["subject"] == "loopback adapter" for c in hosts["ss02"]["changes"])
        assert any("arp_ignore" in c["subject"] for c in hosts["web01"]["changes"])
        assert scripts["ss01"] and scripts["ss02"], "the facts scripts reached the WS-Man servers"
        assert "pw-for-test-1" not in result.stdout + result.stderr
    finally:
        for server in servers.values():
            server.stop()


def test_an_ansible_inventory_of_the_lab_works(lab, tmp_path):
    status = lab.status
    lines = ["[real_servers]"]
    lines += [f"{h['name']} ansible_host={h['address']}" for h in lab.hosts_by_role("real-server")]
    lines += ["[probes]", f"agent ansible_host={lab.host('agent')['address']}", "[all:vars]", "ansible_user=root",
              f"ansible_ssh_private_key_file={status['ssh']['key']}",
              f"arpfix_ssh={{'known_hosts': '{status['ssh']['known_hosts']}'}}"]
    (tmp_path / "hosts.ini").write_text("\n".join(lines) + "\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump({
        "arpfix_vips": [{"name": "lab", "address": status["vip"], "services": [{"protocol": "tcp", "port": 80}],
                         "real_servers": ["real_servers"]}],
        "arpfix_agent": "agent",
    }))
    result = arpfix("inventory", "show", "-i", str(tmp_path / "hosts.ini"), "--format", "json")
    assert result.returncode == Exit.OK, result.stderr
    shown = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    assert shown["rs1"]["platform"] == "linux" and shown["rs1"]["ssh"]["user"] == "root"
    result = arpfix("facts", "-i", str(tmp_path / "hosts.ini"), "--format", "json")
    assert result.returncode == Exit.OK, result.stderr
    assert {h["status"] for h in json.loads(result.stdout)["hosts"]} == {"ok"}
    result = arpfix("plan", "-i", str(tmp_path / "hosts.ini"))
    assert result.returncode == Exit.PENDING
