"""End states for bench/fleet.py: every tool must leave every server exactly as arpfix does.

The strict per-server snapshot is tests/lab/lifecycle_tools.snapshot (sysctls of every interface,
lo's addresses, the links, each file arpfix could write with its bytes, mode and owner, the
folders, every sysctl file): reused here, so the benchmark and the lifecycle tests judge a server by
the same list. On top of it, `identities` records inode and modification times, so "apply again"
must leave the files untouched, not merely rewrite the same bytes.

Also here: the reset between rounds (done inside the lab host, not over SSH, and proven by
comparing with the snapshot taken when the lab was new) and the route check that keeps every
tool inside the lab.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))

from lifecycle_tools import FILE_DIRS, FILE_PATHS, snapshot  # noqa: E402

from arpfix.lab.core import run_in  # noqa: E402

# Inode and times (mtime, ctime) of every path arpfix could write: a tool that rewrites or
# chmods a file on "apply again" changes them even when the bytes stay the same.
IDENTITY = "for p in {paths}; do [ -e \"$p\" ] || [ -L \"$p\" ] || continue; stat -c '%n %i %.9Y %.9Z' \"$p\"; done; true"

# Back to the state a fresh lab server is in (the lab sets these four ARP sysctls to 0): used
# between rounds, then proven by the snapshot. /var/lib/arpfix is arpfix's journal (a fresh
# server has none) and /root/.ansible Ansible's remote temp folder.
RESET = """
for c in all default lo {nic}; do
  echo 0 > /proc/sys/net/ipv4/conf/$c/arp_ignore; echo 0 > /proc/sys/net/ipv4/conf/$c/arp_announce
done
ip addr del {vip}/32 dev lo 2>/dev/null
rm -f {files}
rmdir /usr/local/lib/arpfix 2>/dev/null
rm -rf /var/lib/arpfix /root/.ansible
true
"""


class LabView:
    """The one method lifecycle_tools.snapshot needs: run a command inside a lab host."""

    def __init__(self, name: str) -> None:
        self.name = name

    def exec(self, host: str, cmd: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        kwargs.setdefault("timeout", 60)
        return run_in(self.name, host, cmd, check=check, **kwargs)


def _each(hosts: Iterable[str], work: Any) -> dict[str, Any]:
    hosts = list(hosts)
    # 4 at a time: each is an nsenter and a shell with a few dozen short processes
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(hosts, pool.map(work, hosts)))


def snapshots(lab: LabView, hosts: Iterable[str]) -> dict[str, str]:
    return _each(hosts, lambda host: snapshot(lab, host))


def identities(lab: LabView, hosts: Iterable[str]) -> dict[str, str]:
    script = IDENTITY.format(paths=" ".join(FILE_PATHS + FILE_DIRS))
    return _each(hosts, lambda host: lab.exec(host, ["sh", "-c", script]).stdout)


def reset(lab: LabView, hosts: Iterable[str], vip: str, nic: str) -> None:
    script = RESET.format(nic=nic, vip=vip, files=" ".join(FILE_PATHS))
    _each(hosts, lambda host: lab.exec(host, ["sh", "-c", script]))


def differences(expected: dict[str, str], actual: dict[str, str], what: str) -> str | None:
    """None when every host matches; else how many differ and the unified diff of the first."""
    wrong = [h for h in expected if expected[h] != actual.get(h)]
    if not wrong:
        return None
    first = wrong[0]
    diff = difflib.unified_diff(expected[first].splitlines(), actual.get(first, "").splitlines(),
                                f"{first}: {what}", f"{first}: this tool", lineterm="", n=1)
    return f"{len(wrong)} of {len(expected)} server(s) differ from {what}; first, {first}:\n" + "\n".join(diff)


def read_file(lab: LabView, host: str, path: str) -> bytes:
    return subprocess.run(lab_argv(lab, host) + ["cat", path], check=True, capture_output=True, timeout=30).stdout


def lab_argv(lab: LabView, host: str) -> list[str]:
    from arpfix.lab.core import lab_exec_argv

    return lab_exec_argv(lab.name, host)


def check_routes(addresses: Iterable[str], admin_link: str, subnet: str) -> None:
    """Refuse (SystemExit) unless every address is in the lab's subnet and the kernel routes it out
    of the lab's admin veth: a stale inventory on another subnet would otherwise send SSH out of
    the default route."""
    network = ipaddress.ip_network(subnet)
    for address in addresses:
        if ipaddress.ip_address(address) not in network:
            raise SystemExit(f"refusing: target {address} is outside the lab's subnet {subnet}")
        proc = subprocess.run(["ip", "-j", "route", "get", address], capture_output=True, text=True, check=False)
        try:
            routes = json.loads(proc.stdout or "[]")
        except ValueError:
            routes = []
        devices = {r.get("dev") for r in routes}
        if proc.returncode != 0 or devices != {admin_link}:
            raise SystemExit(f"refusing: {address} routes via {sorted(d or '?' for d in devices) or proc.stderr.strip()}, "
                             f"not the lab's link {admin_link}")


def inventory_addresses(path: str) -> list[str]:
    """Every host address in an arpfix inventory file (what arpfix will be pointed at)."""
    import yaml

    with open(path) as handle:
        data = yaml.safe_load(handle)
    return [str(h["address"]) for h in data.get("hosts", {}).values()]
