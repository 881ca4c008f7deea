"""Per-host failures through the real CLI (arpfix.cli.main): one clear line per host, exit 1.

Windows goes over real pywinrm to the WS-Man test server; Linux uses a fake transport (no sshd in
the unit suite), since what is tested is what arpfix does with the JSON, not how it arrived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arpfix import cli, operations
from arpfix.exitcodes import Exit
from tests.winrm.conftest import PASSWORD, USER

CASES = Path(__file__).resolve().parents[1] / "unit"
WINDOWS_RAW = json.loads((CASES / "windows_cases" / "fresh_server2019.json").read_text())["raw"]
LINUX_CASE = json.loads((CASES / "linux_cases" / "fresh_kernel_defaults.json").read_text())

# Windows facts with one value of the wrong shape: a string or list where an object belongs.
WINDOWS_SHAPES = {
    "os as a string": {"os": "Windows Server 2019"},
    "os as a list": {"os": ["Windows Server 2019"]},
    "adapters as a string": {"adapters": "Ethernet"},
    "addresses as a list of strings": {"addresses": ["192.0.2.11"]},
    "interfaces as a number": {"interfaces": 12},
    "firewall as a list of strings": {"firewall": ["arpfix-sharescan-tcp"]},
}
LINUX_SHAPES = {
    "os as a string": {"os": "Debian 12"},
    "addresses as a dict": {"addresses": {"ifname": "lo"}},
    "addresses as a number": {"addresses": 5},
    "routes4 as a dict": {"routes4": {"dst": "default"}},
    "sysctl_values as a list": {"sysctl_values": ["net.ipv4.conf.all.arp_ignore = 0"]},
    "files as a list": {"files": ["/etc/sysctl.d/90-arpfix.conf"]},
    "journal as a dict": {"journal": {"entries": []}},
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code), out, err


def windows_inventory(tmp_path, port: int) -> str:
    path = tmp_path / "inventory.yml"
    path.write_text(
        "hosts:\n"
        "  ss1:\n"
        "    platform: windows\n"
        "    address: 192.0.2.11\n"
        "    connect: 127.0.0.1\n"
        f"    winrm: {{scheme: http, port: {port}, auth: basic, user: {USER}, "
        "password: {env: ARPFIX_TEST_WINRM_PW}, connect_timeout: 3, operation_timeout: 20}\n"
        "vips:\n"
        "  - {name: sharescan, address: 192.0.2.100, services: [{port: 443}, {port: 80}], real_servers: [ss1]}\n"
    )
    return str(path)


@pytest.fixture
def winrm_password(monkeypatch) -> None:
    monkeypatch.setenv("ARPFIX_TEST_WINRM_PW", PASSWORD)


def facts_answer(document: dict[str, Any]):
    payload = json.dumps(document) + "\r\n"
    return lambda script: (payload, "", 0)


@pytest.mark.parametrize("command", ["facts", "plan", "audit"])
@pytest.mark.parametrize("shape", list(WINDOWS_SHAPES), ids=list(WINDOWS_SHAPES))
def test_windows_facts_of_the_wrong_shape_are_one_clear_line(wsman, tmp_path, capsys, winrm_password,
                                                             command, shape):
    server = wsman(facts_answer({**WINDOWS_RAW, **WINDOWS_SHAPES[shape]}), auth="basic")
    inventory = windows_inventory(tmp_path, server.port)
    code, out, err = run_cli(capsys, command, "-i", inventory, "--insecure", "--format", "json")
    assert code == Exit.FAILED, out + err
    (host,) = json.loads(out)["hosts"]
    assert host["status"] == "error"
    assert host["error"].startswith("unexpected facts from ss1: "), host["error"]
    assert "internal error" not in host["error"] and "\n" not in host["error"]
    assert PASSWORD not in out + err


def test_windows_apply_answer_of_the_wrong_shape_is_one_clear_line(wsman, tmp_path, capsys, winrm_password):
    """The apply script's own answer is parsed too: a wrong shape there is the same clear line."""
    answers = [WINDOWS_RAW, {"applied": ["loopback adapter"], "adapters": "Loopback"}]
    server = wsman(lambda script: (json.dumps(answers.pop(0)) + "\r\n", "", 0), auth="basic")
    inventory = windows_inventory(tmp_path, server.port)
    code, out, err = run_cli(capsys, "apply", "-i", inventory, "--insecure", "--format", "json", "--yes")
    assert code == Exit.FAILED, out + err
    (host,) = json.loads(out)["hosts"]
    assert host["error"].startswith("unexpected facts from ss1: "), host["error"]
    assert len(server.scripts) == 2  # facts, then the apply script whose answer was wrong


class FakeTransport:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.closed = False

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self.document

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("command", ["facts", "plan", "audit", "rollback"])
@pytest.mark.parametrize("shape", list(LINUX_SHAPES), ids=list(LINUX_SHAPES))
def test_linux_facts_of_the_wrong_shape_are_one_clear_line(tmp_path, capsys, monkeypatch, command, shape):
    transports: list[FakeTransport] = []

    def make_transport(host, options):
        transports.append(FakeTransport({**LINUX_CASE["raw_facts"], **LINUX_SHAPES[shape]}))
        return transports[-1]

    monkeypatch.setattr(operations, "make_transport", make_transport)
    path = tmp_path / "inventory.yml"
    path.write_text(LINUX_CASE["inventory"])
    extra = ["--yes"] if command == "rollback" else []
    code, out, err = run_cli(capsys, command, "-i", str(path), "--format", "json", *extra)
    assert code == Exit.FAILED, out + err
    (host,) = json.loads(out)["hosts"]
    assert host["status"] == "error"
    assert host["error"].startswith("unexpected facts from rs1: "), host["error"]
    assert "\n" not in host["error"]
    assert all(t.closed for t in transports)  # the connection is closed on this failure too


def test_apply_cut_off_mid_script_says_the_outcome_is_unknown_and_to_audit(wsman, tmp_path, capsys, winrm_password):
    """The server vanishes while the apply script runs: one line that says what is known and what to do."""
    server = wsman(auth="basic")

    def handler(script: str) -> tuple[str, str, int]:
        if len(server.scripts) == 2:  # the apply script: the connection drops before its answer
            server.die_on_receive = True
        return json.dumps(WINDOWS_RAW) + "\r\n", "", 0

    server.handler = handler
    inventory = windows_inventory(tmp_path, server.port)
    code, out, err = run_cli(capsys, "apply", "-i", inventory, "--insecure", "--yes")
    assert code == Exit.FAILED, out + err
    line = next(line for line in out.splitlines() if line.startswith("ss1"))
    assert "connection lost during the script" in line
    assert "the remote script may still be running or may have been stopped" in line
    assert "run 'arpfix audit --limit ss1'" in line
    assert PASSWORD not in out + err
