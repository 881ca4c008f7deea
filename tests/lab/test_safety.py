"""Safety on the lab: secrets never leak, concurrent runs serialise, hostile values stay literals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from arpfix.exitcodes import Exit
from arpfix.platforms.linux import LinuxPlatform, Step
from arpfix.templating import render

pytestmark = pytest.mark.lab
CANARY = "canary-Secret-7f3a9e"


def arpfix(inventory, *args, env=None):
    return subprocess.run([sys.executable, "-m", "arpfix.cli", *args, "-i", inventory], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **(env or {})})


def test_a_canary_secret_appears_in_no_output_journal_or_state_file(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    inventory = yaml.safe_load(open(lab.inventory_path))
    inventory["defaults"]["ssh"]["password"] = {"env": "ARPFIX_CANARY"}
    inventory["defaults"]["ssh"]["passphrase"] = {"env": "ARPFIX_CANARY"}
    path = str(tmp_path / "inventory.yml")
    yaml.safe_dump(inventory, open(path, "w"))
    env = {"ARPFIX_CANARY": CANARY}
    outputs = []
    for args in (("inventory", "show"), ("inventory", "show", "--format", "json"), ("facts", "--format", "json"),
                 ("plan", "--show-script"), ("plan", "--format", "json", "--show-script"), ("apply", "--yes", "-v"),
                 ("audit", "--format", "junit"), ("audit", "--format", "json", "-vv"), ("verify", "--format", "json"),
                 ("rollback", "--yes", "--format", "json")):
        result = arpfix(path, *args, env=env)
        assert result.returncode in (Exit.OK, Exit.PENDING, Exit.VERIFY_FAILED), (args, result.stderr)
        outputs.append(result.stdout + result.stderr)
    # a failing run too: the host refuses, and the error message must not carry the secret
    inventory["defaults"]["ssh"]["port"] = 1
    yaml.safe_dump(inventory, open(path, "w"))
    result = arpfix(path, "audit", env=env)
    assert result.returncode == Exit.FAILED
    outputs.append(result.stdout + result.stderr)
    for output in outputs:
        assert CANARY not in output
    for host in ("rs1", "rs2"):
        found = lab.exec(host, ["sh", "-c", f"grep -rl {CANARY} /var/lib/arpfix /etc /usr/local/lib 2>/dev/null; true"]).stdout
        assert found.strip() == ""
        modes = lab.exec(host, ["sh", "-c", "stat -c '%a %n' /var/lib/arpfix /var/lib/arpfix/journal* 2>/dev/null; true"]).stdout
        for line in modes.splitlines():
            assert line.split()[0] in ("700", "600"), line


def test_two_runs_at_once_serialise_on_the_host_lock(lab_factory):
    lab = lab_factory(hosts=1)
    runs = [subprocess.Popen([sys.executable, "-m", "arpfix.cli", "apply", "--yes", "--format", "json",
                              "-i", lab.inventory_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == Exit.OK for run in runs), outputs
    statuses = sorted(json.loads(out)["hosts"][0]["status"] for out, _ in outputs)
    assert "changed" in statuses
    journal = lab.exec("rs1", ["cat", "/var/lib/arpfix/journal.jsonl"]).stdout.splitlines()
    entries = [json.loads(line) for line in journal]  # every line parses: never corrupted
    mutations = [e for e in entries if e["op"] not in ("begin", "end")]
    keys = [(e["op"], e.get("key") or e.get("path") or e.get("addr")) for e in mutations]
    assert len(keys) == len(set(keys)), "a change was journaled twice"
    result = subprocess.run([sys.executable, "-m", "arpfix.cli", "rollback", "--yes", "-i", lab.inventory_path],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == Exit.OK
    assert lab.exec("rs1", ["cat", "/proc/sys/net/ipv4/conf/all/arp_ignore"]).stdout.strip() == "0"


HOSTILE = ["it's", "$(touch /tmp/arpfix-pwned)", "`touch /tmp/arpfix-pwned`", "a;touch /tmp/arpfix-pwned",
           "a\ntouch /tmp/arpfix-pwned", "é中\\\"", "x" * 3000]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_in_every_template_argument_stay_literal(lab, value):
    """Render the apply and rollback primitives with hostile arguments and run them on a lab server:
    each fails or acts on the literal value, and nothing the value spells out is executed."""
    steps = [Step("set_sysctl", (f"net/ipv4/conf/{value}/arp_ignore", "1")),
             Step("add_addr", (value, "10.255.255.1/32", value, "host")),
             Step("write_file", (f"/tmp/arpfix-literal-{len(value)}", "aGVsbG8=", "600", value, value)),
             Step("write_file", (f"/tmp/arpfix-dirs/{value}/x", "aGVsbG8=", "600", value, value)),  # make_dirs, hostile
             Step("make_link", (f"/tmp/arpfix-link-{len(value)}", value)),
             Step("add_dummy", (value,))]
    for step in steps:
        script = render("linux/apply.sh.j2", steps=[step], version=value, lock_wait=5, step_delay="")
        lab.exec("rs1", ["sh", "-c", script], check=False)
        rollback = render("linux/rollback.sh.j2", steps=[Step("undo_sysctl", (value, value, value)),
                                                         Step("undo_addr", (value, value)),
                                                         Step("undo_dummy", (value,)),
                                                         Step("undo_file", (value, value, value, value)),
                                                         Step("undo_link", (value, value)),
                                                         Step("undo_dir", (value,))],
                          version=value, lock_wait=5, step_delay="")
        lab.exec("rs1", ["sh", "-c", rollback], check=False)
    assert lab.exec("rs1", ["sh", "-c", "ls /tmp/arpfix-pwned 2>/dev/null; true"]).stdout == ""
    assert not os.path.exists("/tmp/arpfix-pwned")
    # the journal stays valid JSON whatever the values were
    journal = lab.exec("rs1", ["sh", "-c", "cat /var/lib/arpfix/journal.jsonl 2>/dev/null; true"]).stdout
    for line in journal.splitlines():
        json.loads(line)
    lab.exec("rs1", ["sh", "-c", "rm -rf /var/lib/arpfix /tmp/arpfix-literal-* /tmp/arpfix-link-* /tmp/arpfix-dirs"])
    assert LinuxPlatform().name == "linux"
