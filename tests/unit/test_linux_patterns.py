"""The facts script greps with the patterns of arpfix/platforms/linux_patterns.py (ERE, real grep) and
arpfix sorts the output with the same texts in Python: both dialects must agree on every line."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from arpfix.platforms import linux_patterns as patterns
from arpfix.templating import render

LINES = [
    "net.ipv4.conf.all.arp_ignore = 1",
    "net/ipv4/conf/eth0/arp_announce=2",
    "\t net.ipv4.conf.default.rp_filter\t= 0",
    "-net.ipv6.conf.lo.accept_dad = 0",
    "net.ipv6.conf.all.dad_transmits =0",
    "# net.ipv4.conf.all.arp_ignore = 1",
    "net.ipv4.conf.all.forwarding = 1",
    "net.ipv4.ip_forward = 1",
    "x net.ipv4.conf.all.arp_ignore = 1",
    "\t\tct state invalid counter drop",
    "-A INPUT -m conntrack --ctstate INVALID -j DROP",
    "ct state established,related accept",
    "ip daddr 10.0.0.250 tcp dport 80 redirect to :80",
    "-A PREROUTING -d 10.0.0.250/32 -p tcp -j REDIRECT",
    "-A PREROUTING -s 10.0.0.250/32 -j ACCEPT",
    "",
    "net.ipv4.conf.eth0.arp_ignore\t=\t1 # trailing",
]


def grep(pattern: str, lines: list[str]) -> list[str]:
    done = subprocess.run(["grep", "-E", pattern], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=10)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.splitlines()


@pytest.mark.skipif(not shutil.which("grep"), reason="needs grep")
@pytest.mark.parametrize("name, anchored", [("FIREWALL_DROP", False), ("REDIRECT_RULE", False),
                                            ("SYSCTL_FILE_LINE", True)])
def test_grep_and_python_agree_on_every_line(name, anchored):
    text = getattr(patterns, name)
    compiled = re.compile(text)
    by_python = [line for line in LINES if (compiled.match(line) if anchored else compiled.search(line))]
    assert by_python, f"{name} matches none of the sample lines: the test would prove nothing"
    assert len(by_python) < len(LINES)
    assert grep(("^" if anchored else "") + text, LINES) == by_python


def test_the_facts_script_runs_these_texts():
    script = render("linux/facts.sh.j2", embedded=False)
    for text in (patterns.FIREWALL_DROP, patterns.REDIRECT_RULE, patterns.SYSCTL_FILE_LINE):
        assert text in script
    for path in patterns.REDIRECT_BOOT_FILES:
        assert f" {path} " in script or f" {path}\n" in script
