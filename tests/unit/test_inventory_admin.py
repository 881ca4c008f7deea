"""Inventories as an administrator writes them: read as Ansible reads them, nothing silently ignored,
files checked before anything connects, messages that name the mistake."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from arpfix import ansible_inventory as ai
from arpfix.errors import UsageError
from arpfix.exitcodes import Exit
from arpfix.inventory import load_inventory, select_hosts

HERE = os.path.dirname(os.path.abspath(__file__))
UNGROUPED = os.path.join(HERE, "ansible_fixtures", "ungrouped", "hosts")
ANSIBLE = ai.find_ansible_inventory()
VIPS = ('[all:vars]\narpfix_vips=[{"name": "v", "address": "192.0.2.250", "services": [{"port": 80}], '
        '"real_servers": ["web"]}]\n')


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "arpfix.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


# -- INI detection ----------------------------------------------------------------------------

@pytest.mark.parametrize("use_ansible", [False, pytest.param(True, marks=pytest.mark.skipif(
    ANSIBLE is None, reason="ansible-inventory is not installed"))])
def test_an_ini_file_whose_first_line_is_an_ungrouped_host_is_read_as_ini(monkeypatch, use_ansible):
    if not use_ansible:
        monkeypatch.setattr(ai, "find_ansible_inventory", lambda: None)
    inventory = load_inventory(UNGROUPED)
    assert list(inventory.hosts) == ["rs1", "rs2"]
    assert str(inventory.hosts["rs1"].address) == "192.0.2.11" and inventory.hosts["rs1"].nic == "eth0"
    assert inventory.hosts["rs2"].ssh.user == "deploy" and inventory.hosts["rs2"].ssh.sudo is True


@pytest.mark.skipif(ANSIBLE is None, reason="ansible-inventory is not installed")
def test_the_ungrouped_fixture_is_what_ansible_inventory_lists():
    hostvars, groups = ai.run_ansible_inventory(ANSIBLE, UNGROUPED)
    parsed = ai.parse_inventory(UNGROUPED)
    assert parsed.resolve() == hostvars
    assert sorted(parsed.flat_groups()["ungrouped"]) == sorted(groups["ungrouped"]) == ["rs1", "rs2"]


def test_detection_follows_the_extension_first(tmp_path):
    # .ini is INI even when its text would also be a YAML mapping; .yml is never INI-by-content
    ini = tmp_path / "hosts.ini"
    ini.write_text("rs1 ansible_host=192.0.2.11\n")
    assert list(load_inventory(str(ini)).hosts) == ["rs1"]
    yml = tmp_path / "hosts.yml"
    yml.write_text("rs1 ansible_host=192.0.2.11\n")
    with pytest.raises(UsageError, match="must be a mapping, not text"):
        load_inventory(str(yml))


# -- Ansible variables arpfix cannot honour are never silently ignored --------------------------

def write(tmp_path, text, name="hosts.ini"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_proxy_jump_becomes_a_proxy_command(tmp_path):
    from arpfix.transport.ssh import proxy_command

    path = write(tmp_path, "[web]\nrs1 ansible_host=192.0.2.11 ansible_ssh_common_args='-o ProxyJump=admin@bastion:2222'\n"
                           "rs2 ansible_host=192.0.2.12 ansible_ssh_common_args='-J bastion'\n"
                           "rs3 ansible_host=192.0.2.13 ansible_ssh_extra_args='-o \"ProxyCommand=nc -X connect %h %p\"'\n"
                 + VIPS)
    hosts = load_inventory(path).hosts
    assert hosts["rs1"].ssh.proxy_command == "ssh -p 2222 -W '[%h]:%p' admin@bastion"
    assert hosts["rs2"].ssh.proxy_command == "ssh -W '[%h]:%p' bastion"
    assert hosts["rs3"].ssh.proxy_command == "nc -X connect %h %p"
    assert proxy_command(hosts["rs1"].ssh.proxy_command, "192.0.2.11", 22, "root") == \
        "ssh -p 2222 -W '[192.0.2.11]:22' admin@bastion"
    assert proxy_command("x %% %r@%h:%p %z", "h", 2, "u") == "x % u@h:2 %z"


def test_other_ssh_options_are_refused_with_one_line(tmp_path):
    path = write(tmp_path, "[web]\nrs1 ansible_host=192.0.2.11 ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n" + VIPS)
    with pytest.raises(UsageError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"{path}:2: host 'rs1': ansible_ssh_common_args: -o StrictHostKeyChecking: ")
    assert "--trust-on-first-use" in message


def test_become_user_other_than_root_is_refused(tmp_path):
    path = write(tmp_path, "[web]\nrs1 ansible_host=192.0.2.11 ansible_become=true ansible_become_user=postgres\n"
                           "rs2 ansible_host=192.0.2.12 ansible_become=true ansible_become_user=root\n" + VIPS)
    with pytest.raises(UsageError) as caught:
        load_inventory(path)
    assert str(caught.value) == (f"{path}:2: host 'rs1': ansible_become_user=postgres: arpfix's scripts must run "
                                 "as root; it cannot become another user")


LOCAL = "[web]\nrs1 ansible_host=192.0.2.11\n[control]\nlocalhost ansible_connection=local\n" + VIPS


def test_a_local_connection_host_is_skipped_with_a_note(tmp_path):
    path = write(tmp_path, LOCAL)
    inventory = load_inventory(path)
    assert list(inventory.hosts) == ["rs1"]
    assert inventory.skipped == (("localhost", ("control",)),)
    result = cli("inventory", "check", "-i", path)
    assert result.returncode == Exit.OK, result.stderr
    assert "note: " in result.stderr and "host 'localhost' is skipped: ansible_connection=local" in result.stderr
    limited = cli("inventory", "check", "-i", path, "--limit", "web")
    assert limited.returncode == Exit.OK and "localhost" not in limited.stderr  # --limit leaves it out
    only = cli("inventory", "check", "-i", path, "--limit", "control")
    assert only.returncode == Exit.USAGE and "matches only hosts arpfix skips (ansible_connection=local)" in only.stderr
    assert select_hosts(inventory, ["rs1"])[0].name == "rs1"


# -- files the inventory names ------------------------------------------------------------------

def test_inventory_check_reports_a_missing_key_file_with_file_and_line(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text("defaults:\n  platform: linux\ngroups:\n  web:\n    hosts: [rs1, rs2]\n"
                    "    vars:\n      ssh: {key_file: /nonexistent/deploy_key}\n"
                    "hosts:\n  rs1: {address: 192.0.2.11}\n  rs2: {address: 192.0.2.12}\n"
                    f"  win1: {{platform: windows, address: 192.0.2.21, winrm: {{ca_bundle: {tmp_path}/ca.pem}}}}\n")
    result = cli("inventory", "check", "-i", str(path))
    assert result.returncode == Exit.USAGE
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"arpfix: error: {path}:7: groups.web.vars.ssh.key_file: /nonexistent/deploy_key: no such file (hosts rs1, rs2)",
        f"arpfix: error: {path}:11: hosts.win1.winrm.ca_bundle: {tmp_path}/ca.pem: no such file (host win1)",
    ]
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    key = tmp_path / "deploy_key"
    key.write_text("key\n")
    path.write_text(path.read_text().replace("/nonexistent/deploy_key", str(key)))
    assert cli("inventory", "check", "-i", str(path)).returncode == Exit.OK


def test_a_key_file_that_is_a_directory(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text(f"hosts:\n  rs1: {{platform: linux, address: 192.0.2.11, ssh: {{key_file: {tmp_path}}}}}\n")
    result = cli("inventory", "check", "-i", str(path))
    assert result.returncode == Exit.USAGE and f"{path}:2: hosts.rs1.ssh.key_file: " in result.stderr
    assert "is a directory, not a file" in result.stderr


# -- messages that name the mistake -------------------------------------------------------------

def test_a_tab_in_yaml_is_called_a_tab(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text("hosts:\n\trs1: {platform: linux, address: 192.0.2.11}\n")
    with pytest.raises(UsageError) as caught:
        load_inventory(str(path))
    assert str(caught.value).startswith(f"{path}:2: not valid YAML: a tab at column 1: YAML indents with spaces only")


def test_agent_host_typo_gets_did_you_mean(tmp_path):
    path = tmp_path / "site.yml"
    path.write_text("hosts:\n  agent1: {platform: linux, address: 192.0.2.2}\nagent: {host: agnet1}\n")
    with pytest.raises(UsageError) as caught:
        load_inventory(str(path))
    assert str(caught.value) == f"{path}:3: agent.host: unknown host 'agnet1'; did you mean 'agent1'?"
