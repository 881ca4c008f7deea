"""Helpers for day-two tests on the lab: a strict snapshot of everything arpfix could touch on a
server, inventory edits, and the CLI run the way an administrator runs it (a subprocess).

The snapshot covers: the ARP, rp_filter and DAD sysctls of every interface (IPv4 and IPv6), every
address on lo with its scope and label, the links (a dummy interface arpfix made), every file and
folder arpfix could write with its content, mode and owner, the folders it could make, any temp
file a cut write left, and every sysctl file under /etc (a site file the test added included).
Only what arpfix could touch: the lab's /etc lies over the machine's, which other work may change.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from typing import Any

import yaml

# Written out here, not imported: the test must not take its list from the code it tests.
FILE_PATHS = ("/etc/sysctl.d/90-arpfix.conf", "/etc/systemd/system/arpfix-vip.service",
              "/etc/systemd/system/multi-user.target.wants/arpfix-vip.service", "/usr/local/lib/arpfix/arpfix-vip-up",
              "/etc/systemd/network/10-arpfix-lo.network", "/etc/systemd/network/00-00-arpfix-dummy.network",
              "/etc/network/interfaces.d/arpfix",
              "/etc/NetworkManager/system-connections/arpfix-lo.nmconnection", "/etc/sysconfig/network-scripts/ifcfg-lo")
FILE_DIRS = ("/etc/NetworkManager", "/etc/NetworkManager/system-connections", "/etc/network", "/etc/network/interfaces.d",
             "/etc/sysconfig", "/etc/sysconfig/network-scripts", "/etc/sysctl.d", "/etc/systemd", "/etc/systemd/network",
             "/etc/systemd/system", "/etc/systemd/system/multi-user.target.wants", "/usr/local/lib/arpfix")

SNAPSHOT = r"""
for f in /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce /proc/sys/net/ipv4/conf/*/rp_filter \
         /proc/sys/net/ipv6/conf/*/accept_dad /proc/sys/net/ipv6/conf/*/dad_transmits; do
  [ -e "$f" ] && echo "$f=$(cat "$f")"
done
ip -o addr show dev lo | awk '{$1=""; $2=""; sub(/ valid_lft.*/, ""); print "lo" $0}'
ip -o link show | awk -F': ' '{print "link", $2}' | sed 's/@.*//'
for p in PATHS; do
  for q in "$p" "$p".arpfix-tmp.*; do
    [ -e "$q" ] || [ -L "$q" ] || continue
    stat -c '%F %a %U:%G %N' "$q"
    [ -f "$q" ] && [ ! -L "$q" ] && sha256sum "$q"
  done
done
for d in DIRS; do [ -d "$d" ] && stat -c '%F %a %U:%G %n' "$d"; done
for f in /etc/sysctl.conf /etc/sysctl.d/*.conf; do [ -f "$f" ] && sha256sum "$f"; done
ls -a /var/lib/arpfix/backup 2>/dev/null | sed 's/^/backup /'
true
"""


def snapshot(lab: Any, host: str) -> str:
    script = SNAPSHOT.replace("PATHS", " ".join(FILE_PATHS)).replace("DIRS", " ".join(FILE_DIRS))
    return lab.exec(host, ["sh", "-c", script]).stdout


def sh(lab: Any, host: str, script: str) -> str:
    return lab.exec(host, ["sh", "-c", script]).stdout


def arpfix(inventory_path: str, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arpfix.cli", *args, "-i", inventory_path],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def arpfix_json(inventory_path: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """(exit code, the JSON document) of one command with --format json."""
    result = arpfix(inventory_path, *args, "--format", "json", env=env)
    try:
        return result.returncode, json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"arpfix {' '.join(args)}: no JSON (exit {result.returncode})\n{result.stdout}\n{result.stderr}") from None


def hosts_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in document["hosts"]}


class Inventory:
    """The lab's inventory, edited in memory and written to a file of the test's own."""

    def __init__(self, lab: Any, path: str) -> None:
        with open(lab.inventory_path) as handle:
            self.base = yaml.safe_load(handle)
        self.data = copy.deepcopy(self.base)
        self.path = path
        self.lab = lab

    def vip(self, name: str = "lab") -> dict[str, Any]:
        return next(v for v in self.data["vips"] if v["name"] == name)

    def write(self) -> str:
        with open(self.path, "w") as handle:
            yaml.safe_dump(self.data, handle, sort_keys=False)
        return self.path

    def set_method(self, host: str, method: str) -> None:
        self.data["hosts"][host]["method"] = method

    def add_vip(self, name: str, address: str, servers: list[str], port: int = 80) -> None:
        self.data["vips"].append({"name": name, "address": address, "services": [{"protocol": "tcp", "port": port}],
                                  "real_servers": servers})

    def remove_vip(self, name: str) -> None:
        self.data["vips"] = [v for v in self.data["vips"] if v["name"] != name]


def failing_checks(host_json: dict[str, Any]) -> list[str]:
    return [f["check"] for f in host_json.get("findings", []) if not f["ok"] and f["severity"] == "error"]


def arp_answers(lab: Any, vip: str) -> set[str]:
    """Every MAC that answers who-has VIP, asked from the lab client (two requests, about 1 s)."""
    out = lab.exec("client", ["arping", "-c", "2", "-W", "0.3", "-w", "1", "-I", "eth0", vip], check=False).stdout
    return {m.lower() for m in re.findall(r"([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})", out)
            if m.lower() not in ("ff:ff:ff:ff:ff:ff",)}
