"""CLI conventions: exit codes, one-line errors, fast --help, no host contacted on bad input."""

from __future__ import annotations

import os
import subprocess
import sys

from arpfix.exitcodes import Exit

GOOD = """\
hosts:
  rs1: {platform: linux, address: 10.9.0.11, ssh: {password: {env: ARPFIX_TEST_PW}}}
vips:
  - {name: v, address: 10.9.0.250, services: [{port: 80}], real_servers: [rs1]}
"""


def arpfix(*args, env=None, input=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "arpfix.cli", *args], capture_output=True, text=True,
                          env=full_env, input=input, timeout=60)


def test_version_and_help():
    result = arpfix("--version")
    assert result.returncode == 0 and "arpfix" in result.stdout
    result = arpfix("--help")
    assert result.returncode == 0
    for command in ("plan", "apply", "audit", "rollback", "facts", "inventory", "lab", "agent"):
        assert command in result.stdout


def test_help_does_not_import_paramiko_or_winrm():
    code = ("import sys; from arpfix.cli import cli; from click.testing import CliRunner; "
            "CliRunner().invoke(cli, ['--help']); "
            "print(sorted(m for m in ('paramiko', 'winrm', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inventory_error_is_exit_2_with_file_and_line_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("hosts:\n  rs1: {platform: linux, address: 300.1.1.1}\n")
    result = arpfix("plan", "-i", str(path))
    assert result.returncode == Exit.USAGE
    assert f"{path}:2: hosts.rs1.address: invalid IP address" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_inventory_and_env_variable(tmp_path):
    result = arpfix("audit", "-i", str(tmp_path / "nope.yml"))
    assert result.returncode == Exit.USAGE and "no such inventory file" in result.stderr
    path = tmp_path / "ok.yml"
    path.write_text(GOOD)
    result = arpfix("inventory", "check", env={"ARPFIX_INVENTORY": str(path)})
    assert result.returncode == Exit.OK and "1 host " in result.stdout


def test_limit_that_matches_nothing_is_a_usage_error(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text(GOOD)
    result = arpfix("plan", "-i", str(path), "--limit", "web*")
    assert result.returncode == Exit.USAGE and "matches no host" in result.stderr


def test_apply_without_a_terminal_needs_yes(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text(GOOD)
    result = arpfix("apply", "-i", str(path), input="")
    assert result.returncode == Exit.USAGE and "--yes" in result.stderr


def test_unreachable_host_is_exit_1_and_a_result_not_a_crash(tmp_path):
    # 127.0.0.1 on a closed port: refused at once, no traffic leaves the machine
    path = tmp_path / "inv.yml"
    path.write_text(GOOD.replace("address: 10.9.0.11,", "address: 10.9.0.11, connect: 127.0.0.2,")
                    .replace("ssh: {", "ssh: {port: 1, known_hosts: /dev/null, "))
    result = arpfix("audit", "-i", str(path), "--format", "json", env={"ARPFIX_TEST_PW": "canary-pw-1234"})
    assert result.returncode == Exit.FAILED, result.stderr
    import json

    document = json.loads(result.stdout)
    assert document["hosts"][0]["status"] == "error"
    assert "127.0.0.2:1" in document["hosts"][0]["error"]
    assert "canary-pw-1234" not in result.stdout + result.stderr


def test_inventory_show_never_prints_secrets(tmp_path):
    path = tmp_path / "inv.yml"
    path.write_text(GOOD.replace("{env: ARPFIX_TEST_PW}", "plain-canary-secret"))
    result = arpfix("inventory", "show", "-i", str(path), "--allow-plaintext-secrets", "--format", "json")
    assert result.returncode == 0
    assert "plain-canary-secret" not in result.stdout
    assert "inventory (plaintext)" in result.stdout
