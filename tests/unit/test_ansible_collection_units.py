"""The arpfix.dr collection's controller side without a play: how a script is handed to Ansible's
connection (Linux stdin to `sh -s`; Windows one encoded command, or arpfix's loader with the text on
stdin where cmd.exe's line limit would be passed), the task arguments validated by arpfix's own
inventory validator, and the modules' documentation as ansible-doc reads it. The real plays are in
tests/lab/test_ansible_collection.py."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ENCODED_PREFIX, AnsibleTransport, load_target
from arpfix.errors import TransportError, UsageError
from arpfix.settings import Host
from arpfix.transport.base import stdin_safe
from arpfix.transport.winrm import COMMAND_LINE_LIMIT, full_script

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = {"ok": True}


class FakeShell:
    def __init__(self, family: str) -> None:
        self.SHELL_FAMILY = family


class FakeConnection:
    def __init__(self, transport: str, family: str) -> None:
        self.transport = transport
        self._shell = FakeShell(family)


class FakeLoader:
    def get_basedir(self) -> str:
        return str(ROOT)


class FakeAction:
    """What AnsibleTransport uses of an ActionBase: _low_level_execute_command and _connection."""

    def __init__(self, transport: str = "ssh", family: str = "sh", fail: Exception | None = None) -> None:
        self._connection = FakeConnection(transport, family)
        self._loader = FakeLoader()
        self.calls: list[tuple[str, bytes, bool]] = []
        self.fail = fail

    def _low_level_execute_command(self, cmd: str, sudoable: bool = True, in_data: bytes | None = None) -> dict[str, Any]:
        self.calls.append((cmd, in_data or b"", sudoable))
        if self.fail:
            raise self.fail
        return {"rc": 0, "stdout": json.dumps(DOCUMENT) + "\n", "stderr": ""}


def host(platform: str) -> Host:
    return Host(name="h1", platform=platform, address=ipaddress.ip_address("192.0.2.10"), connect="192.0.2.10")


def decoded(command: str) -> str:
    assert command.startswith(ENCODED_PREFIX)
    return base64.b64decode(command[len(ENCODED_PREFIX):]).decode("utf-16-le")


def test_linux_scripts_go_on_stdin_to_sh_through_become():
    action = FakeAction()
    assert AnsibleTransport(action, host("linux")).run_script("echo '{}'\n") == DOCUMENT
    assert action.calls == [("sh -s", stdin_safe("echo '{}'\n").encode(), True)]


def test_a_short_windows_script_is_one_encoded_command_ansible_passes_through():
    action = FakeAction("winrm", "powershell")
    AnsibleTransport(action, host("windows")).run_script("Write-Output '{}'")
    [(command, stdin, sudoable)] = action.calls
    assert decoded(command) == full_script("Write-Output '{}'") and stdin == b"" and not sudoable


@pytest.mark.parametrize("connection", ["winrm", "ansible.builtin.winrm"])
def test_a_long_windows_script_goes_on_stdin_to_arpfix_loader(connection):
    script = "Write-Output 'x'\n" * 2000
    action = FakeAction(connection, "powershell")
    AnsibleTransport(action, host("windows")).run_script(script)
    [(command, stdin, _)] = action.calls
    assert len(command) <= COMMAND_LINE_LIMIT and "$input | Out-String | Set-Content" in decoded(command)
    assert base64.b64decode(stdin).decode("utf-8") == full_script(script)


def test_psrp_runs_even_a_long_script_as_one_command():
    script = "Write-Output 'x'\n" * 2000
    action = FakeAction("psrp", "powershell")
    AnsibleTransport(action, host("windows")).run_script(script)
    [(command, stdin, _)] = action.calls
    assert decoded(command) == full_script(script) and stdin == b""


def test_a_connection_failure_is_one_line_and_marks_the_host_unreachable():
    action = FakeAction(fail=AnsibleConnectionFailure("Failed to connect to the host via ssh:\nPermission denied"))
    transport = AnsibleTransport(action, host("linux"))
    with pytest.raises(TransportError) as caught:
        transport.run_script("true")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("h1: Failed to connect")
    assert transport.unreachable


VIP = {"name": "sharescan", "address": "192.0.2.100", "services": [{"protocol": "tcp", "port": 443}]}


def test_task_arguments_become_an_arpfix_inventory_for_the_task_host():
    inventory, target = load_target(FakeAction(), {"vips": [VIP], "method": "dummy"},
                                    {"inventory_hostname": "web01", "ansible_host": "192.0.2.41"})
    assert (target.name, target.platform, str(target.address), target.method) == ("web01", "linux", "192.0.2.41", "dummy")
    assert [str(v.address) for v in inventory.vips_for("web01")] == ["192.0.2.100"]
    _, target = load_target(FakeAction("winrm", "powershell"), {"vips": [VIP]},
                            {"inventory_hostname": "ss01", "ansible_host": "ss01.corp.example", "arpfix_address": "192.0.2.31"})
    assert (target.platform, str(target.address)) == ("windows", "192.0.2.31")


@pytest.mark.parametrize(("args", "task_vars", "message"), [
    ({"vips": [{**VIP, "address": "127.0.0.1"}]}, {"ansible_host": "192.0.2.41"}, "task arguments: vips[0].address"),
    ({"vips": [{**VIP, "name": "a;b"}]}, {"ansible_host": "192.0.2.41"}, "vips[0].name"),
    ({"vips": [{**VIP, "real_servers": ["x"]}]}, {"ansible_host": "192.0.2.41"}, "real_servers is not a task argument"),
    ({"vips": [VIP]}, {"ansible_host": "web01.corp.example"}, "set arpfix_address"),
    ({"vips": [VIP], "inventory": "inventory/sharescan.yml"}, {}, "give either inventory or vips"),
    ({}, {"ansible_host": "192.0.2.41"}, "give `vips`"),
    ({"inventory": "inventory/sharescan.yml"}, {}, "host 'web01x' is not in"),
])
def test_bad_task_arguments_are_arpfix_usage_errors(args, task_vars, message):
    with pytest.raises(UsageError) as caught:
        load_target(FakeAction(), args, {"inventory_hostname": "web01x", **task_vars})
    assert message in str(caught.value)


def test_an_arpfix_inventory_file_gives_the_task_host_its_settings():
    inventory, target = load_target(FakeAction(), {"inventory": "inventory/sharescan.yml"}, {"inventory_hostname": "ss01"})
    assert (target.platform, str(target.address)) == ("windows", "192.0.2.31")
    assert [v.name for v in inventory.vips_for("ss01")] == ["sharescan"]


def test_every_module_documents_itself_for_ansible_doc(tmp_path):
    modules = [f"arpfix.dr.{m}" for m in ("prepare", "audit", "rollback", "facts", "verify")]
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT), "ANSIBLE_HOME": str(tmp_path)}
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-j", *modules], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    docs = json.loads(done.stdout)
    assert set(docs) == set(modules)
    for name, doc in docs.items():
        assert "vips" in doc["doc"]["options"] and doc["examples"].strip(), name
    assert docs["arpfix.dr.audit"]["doc"]["options"]["fail_on_drift"]["default"] is True


def test_the_docs_show_the_playbook_the_tests_run():
    playbook = (ROOT / "ansible_collections" / "arpfix" / "dr" / "playbooks" / "sharescan.yml").read_text()
    assert f"```yaml\n{playbook}```" in (ROOT / "docs" / "ansible.md").read_text()


def test_the_stdin_loader_is_the_cli_loader_fed_from_stdin():
    """Same decoding, the same ConstrainedLanguage branch (tests/unit/test_winrm_loader.py checks
    it for the CLI's); only how the base64 reaches %TEMP% differs, and it parses as PowerShell."""
    from arpfix.transport.winrm import loader, stdin_loader
    from tests.unit.test_windows_script_syntax import grammar_errors

    text = stdin_loader()
    name = re.search(r"'(arpfix-[0-9a-f]{16}\.b64)'", text).group(1)
    fill = "$input | Out-String | Set-Content -LiteralPath $p -Encoding Ascii -NoNewline\n"
    assert text == loader(name, fill) and stdin_loader() != text  # a fresh name each time
    assert not grammar_errors(text)
