"""Every name and string field of an inventory is a full match: no trailing newline, no control character.

A regex anchored with `$` accepts "rs1\\n" (`$` matches before a final newline); the value would then
reach a shell or PowerShell script with a line break in it. Each row below puts a hostile value into
one field of a valid inventory and expects `inventory check` to name that field.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from arpfix.exitcodes import Exit
from arpfix.inventory import InventoryError, load_inventory

BASE: dict[str, Any] = {
    "defaults": {"ssh": {"user": "admin", "key_file": "/k", "known_hosts": "/kh",
                         "password": {"env": "ARPFIX_PW"}}},
    "groups": {"web": {"hosts": ["rs1"]}},
    "hosts": {
        "rs1": {"platform": "linux", "address": "10.9.0.11", "nic": "eth0", "connect": "rs1.example.net"},
        "ss1": {"platform": "windows", "address": "10.9.0.21", "nic": "Ethernet 2",
                "keep_bindings": ["ms_server"],
                "winrm": {"scheme": "https", "auth": "ntlm", "user": "CORP\\svc",
                          "password": {"file": "/run/pw"}, "ca_bundle": "/ca.pem"}},
        "cert1": {"platform": "windows", "address": "10.9.0.22",
                  "winrm": {"auth": "certificate", "cert_pem": "/c.pem", "cert_key_pem": "/k.pem"}},
        "agent1": {"platform": "linux", "address": "10.9.0.2"},
    },
    "profiles": {"sharescan": [{"protocol": "tcp", "port": 443}]},
    "vips": [{"name": "ss", "address": "10.9.0.251", "profile": "sharescan", "real_servers": ["web", "ss1"]}],
    "load_balancer": {"name": "lb01", "macs": ["00:00:5e:00:01:01"]},
    "agent": {"host": "agent1", "interface": "eth0"},
}

# (where the value goes, the field name the error must carry)
FIELDS: list[tuple[tuple[Any, ...], str]] = [
    (("hosts", "rs1", "nic"), "hosts.rs1.nic"),
    (("hosts", "ss1", "nic"), "hosts.ss1.nic"),
    (("hosts", "rs1", "connect"), "hosts.rs1.connect"),
    (("hosts", "rs1", "address"), "hosts.rs1.address"),
    (("hosts", "ss1", "keep_bindings", 0), "hosts.ss1.keep_bindings[0]"),
    (("defaults", "ssh", "user"), "defaults.ssh.user"),
    (("defaults", "ssh", "key_file"), "defaults.ssh.key_file"),
    (("defaults", "ssh", "known_hosts"), "defaults.ssh.known_hosts"),
    (("defaults", "ssh", "password", "env"), "defaults.ssh.password.env"),
    (("hosts", "ss1", "winrm", "user"), "hosts.ss1.winrm.user"),
    (("hosts", "ss1", "winrm", "password", "file"), "hosts.ss1.winrm.password.file"),
    (("hosts", "ss1", "winrm", "ca_bundle"), "hosts.ss1.winrm.ca_bundle"),
    (("hosts", "cert1", "winrm", "cert_pem"), "hosts.cert1.winrm.cert_pem"),
    (("hosts", "cert1", "winrm", "cert_key_pem"), "hosts.cert1.winrm.cert_key_pem"),
    (("vips", 0, "name"), "vips[0].name"),
    (("vips", 0, "address"), "vips[0].address"),
    (("load_balancer", "name"), "load_balancer.name"),
    (("load_balancer", "macs", 0), "load_balancer.macs[0]"),
    (("agent", "interface"), "agent.interface"),
]
# Names that are mapping keys: the hostile value replaces the key.
KEYS: list[tuple[tuple[Any, ...], str, str]] = [
    (("hosts",), "agent1", "hosts."),
    (("groups",), "web", "groups."),
    (("profiles",), "sharescan", "profiles."),
]
HOSTILE = ["\n", "\r", "\t", "\x00", "\x1b[31m", "\x7f", "\u0085", "\u2028", "\u202e"]


def _set(document: dict[str, Any], where: tuple[Any, ...], suffix: str) -> None:
    node: Any = document
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = f"{node[where[-1]]}{suffix}"


def _rename(document: dict[str, Any], where: tuple[Any, ...], key: str, suffix: str) -> None:
    node: Any = document
    for part in where:
        node = node[part]
    node[key + suffix] = node.pop(key)


def _problems(tmp_path, document: dict[str, Any]) -> list[str]:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=False))
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    # one line per problem: a hostile value never breaks the message into more lines
    assert len(str(info.value).splitlines()) == len(info.value.problems)
    return info.value.problems  # type: ignore[return-value]


def test_the_base_inventory_is_valid(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(BASE))
    assert set(load_inventory(str(path)).hosts) == {"rs1", "ss1", "cert1", "agent1"}


@pytest.mark.parametrize("suffix", HOSTILE, ids=[repr(s) for s in HOSTILE])
@pytest.mark.parametrize("where, field", FIELDS, ids=[f for _, f in FIELDS])
def test_a_control_character_in_a_string_field_is_refused(tmp_path, where, field, suffix):
    document = copy.deepcopy(BASE)
    _set(document, where, suffix)
    problems = _problems(tmp_path, document)
    assert field in [p.field for p in problems], problems


@pytest.mark.parametrize("suffix", HOSTILE, ids=[repr(s) for s in HOSTILE])
@pytest.mark.parametrize("where, key, field", KEYS, ids=[f + k for _, k, f in KEYS])
def test_a_control_character_in_a_name_is_refused(tmp_path, where, key, field, suffix):
    document = copy.deepcopy(BASE)
    if key == "agent1":
        document["agent"] = {"host": "agent1" + suffix}
    _rename(document, where, key, suffix)
    problems = _problems(tmp_path, document)
    assert any(p.field.startswith(field) for p in problems), problems


def test_inventory_check_refuses_a_trailing_newline_in_one_clear_line(tmp_path):
    """Through the CLI: `"admin\\n"` as the SSH user is exit 2 with the file, line and field."""
    document = copy.deepcopy(BASE)
    _set(document, ("defaults", "ssh", "user"), "\n")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "arpfix.cli", "inventory", "check", "-i", str(path)],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == Exit.USAGE, result.stdout + result.stderr
    assert "defaults.ssh.user: invalid user name 'admin\\n'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_ansible_inventory_gets_the_same_full_match(tmp_path):
    """Ansible variables become arpfix fields and pass the same checks: ansible_user "root\\n" is refused."""
    path = tmp_path / "hosts.yml"
    path.write_text('all:\n  hosts:\n    rs1:\n      ansible_host: 10.1.0.11\n      ansible_user: "root\\n"\n'
                    "      arpfix_platform: linux\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(str(path))
    assert [p.field for p in info.value.problems] == ["hosts.rs1.ssh.user"]
    assert "invalid user name 'root\\n'" in str(info.value)
