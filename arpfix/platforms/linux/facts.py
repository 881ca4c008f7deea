"""Linux facts: the facts script's JSON normalised into the shape plan, audit and rollback read.

The effective value of arp_ignore / arp_announce / rp_filter on an interface is the larger of
`all` and the interface's own value (kernel ip-sysctl documentation).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from arpfix.platforms import linux_patterns as patterns
from arpfix.platforms.linux.common import ARP_KEYS, FILE_DIRS, FILE_PATHS, SYSCTL_DIR_PRIORITY, b64_text, to_int
from arpfix.settings import Host


def parse_sysctl_files(text: str) -> list[dict[str, Any]]:
    """`grep -H` lines `FILE:net.ipv4.conf.DEV.KEY = V` -> [{file, family, dev, key, value}]."""
    entries = []
    for line in text.splitlines():
        path, _, assignment = line.partition(":")
        name, _, value = assignment.partition("=")
        name = name.strip().lstrip("-").strip()
        if "/" in name and "." not in name.split("/")[0]:
            parts = name.split("/")
        else:
            parts = [p.replace("/", ".") for p in name.split(".")]
        if len(parts) < 5 or parts[0] != "net" or parts[2] != "conf":
            continue
        entries.append({
            "file": path, "family": parts[1], "dev": ".".join(parts[3:-1]), "key": parts[-1],
            "value": to_int(value.strip().split()[0]) if value.strip() else None,
        })
    return entries


def persisted_sysctls(entries: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int | None, str]]:
    """What `sysctl --system` would set at boot: (family, dev, key) -> (value, file).

    Files are read in the order systemd-sysctl uses: by file name across the sysctl.d folders
    (a name in /etc hides the same name in /run and /usr/lib), then /etc/sysctl.conf last.
    """
    by_name: dict[str, tuple[int, str]] = {}
    for entry in entries:
        path = entry["file"]
        folder, _, name = path.rpartition("/")
        if path == "/etc/sysctl.conf":
            continue
        rank = SYSCTL_DIR_PRIORITY.index(folder) if folder in SYSCTL_DIR_PRIORITY else 99
        if name not in by_name or rank < by_name[name][0]:
            by_name[name] = (rank, path)
    order = [by_name[name][1] for name in sorted(by_name)] + ["/etc/sysctl.conf"]
    result: dict[tuple[str, str, str], tuple[int | None, str]] = {}
    for path in order:
        for entry in entries:
            if entry["file"] == path:
                result[(entry["family"], entry["dev"], entry["key"])] = (entry["value"], path)
    return result


def parse_sysctl_values(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """`grep -H .` lines `/proc/sys/net/ipv4/conf/DEV/KEY:VALUE` -> (ipv4 {dev: {key: v}}, ipv6 ...)."""
    tables: dict[str, dict[str, dict[str, Any]]] = {"ipv4": {}, "ipv6": {}}
    for line in text.splitlines():
        path, _, value = line.rpartition(":")
        parts = path.split("/")
        if len(parts) != 8 or parts[:4] != ["", "proc", "sys", "net"] or parts[5] != "conf":
            continue
        family, dev, key = parts[4], parts[6], parts[7]
        if family in tables:
            tables[family].setdefault(dev, {})[key] = value.strip()
    return tables["ipv4"], tables["ipv6"]


# The facts script's grep for rules, split back into its kinds (the texts are the script's own).
# a temp file a killed write left beside one of arpfix's files (write_file's "$1.arpfix-tmp.$$")
TEMP_FILE = re.compile(r"/[A-Za-z0-9_./-]+\.arpfix-tmp\.[0-9]+")
FIREWALL_DROP = re.compile(patterns.FIREWALL_DROP)
REDIRECT_RULE = re.compile(patterns.REDIRECT_RULE)
SYSCTL_FILE_LINE = re.compile(patterns.SYSCTL_FILE_LINE)
REDIRECT_FILE_PREFIXES = tuple(path.split("*")[0] for path in patterns.REDIRECT_BOOT_FILES)


def split_combined(raw: dict[str, Any]) -> dict[str, Any]:
    """The facts script's combined reads, back into the keys they stand for: `ip_batch` (addresses,
    IPv4 default route) and `grep_lines` (sysctl values, sysctl files, REDIRECT boot files)."""
    raw = {**raw}
    batch = raw.pop("ip_batch", None)
    if isinstance(batch, list):
        raw["addresses"] = batch[0] if batch and isinstance(batch[0], list) else []
        raw["routes4"] = batch[1] if len(batch) > 1 and isinstance(batch[1], list) else []
    text = raw.pop("grep_lines", None)
    if isinstance(text, str):
        values, files, redirects, networkd = [], [], [], []
        for line in text.splitlines():
            path = line.partition(":")[0]
            if path.startswith("/proc/sys/"):
                values.append(line)
            elif path.endswith(".network"):
                networkd.append(line)
            elif path.startswith(REDIRECT_FILE_PREFIXES):
                if REDIRECT_RULE.search(line):
                    redirects.append(line)
            elif SYSCTL_FILE_LINE.match(line.partition(":")[2]):
                files.append(line)
        raw["sysctl_values"], raw["sysctl_files"], raw["redirect_files"], raw["networkd_lines"] = (
            "\n".join(values), "\n".join(files), "\n".join(redirects), "\n".join(networkd))
    return raw


def parse_facts(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalise the facts script's JSON into the shape plan and audit read."""
    raw = split_combined(raw)
    if "sysctl_values" in raw:
        raw = {**raw}
        raw["sysctl4"], raw["sysctl6"] = parse_sysctl_values(raw["sysctl_values"])
    interfaces: dict[str, dict[str, Any]] = {}
    for link in raw.get("addresses", []) or []:
        addrs = []
        for info in link.get("addr_info", []) or []:
            addrs.append({
                "family": 6 if info.get("family") == "inet6" else 4,
                "address": info.get("local"),
                "prefixlen": info.get("prefixlen"),
                "label": info.get("label"),
                "scope": info.get("scope"),
            })
        interfaces[link.get("ifname", "?")] = {
            "mac": link.get("address"),
            "kind": link.get("link_type"),
            "flags": link.get("flags", []),
            "addresses": addrs,
        }
    sysctl4 = {dev: {k: to_int(v.get(k)) for k in ARP_KEYS} for dev, v in (raw.get("sysctl4") or {}).items()}
    all_values = sysctl4.get("all", {})
    effective = {
        dev: {k: max(all_values.get(k) or 0, values.get(k) or 0) for k in ARP_KEYS}
        for dev, values in sysctl4.items() if dev not in ("all", "default")
    }
    journal_text = b64_text(raw.get("journal")) or ""
    journal = []
    for line in journal_text.splitlines():
        try:
            journal.append(json.loads(line))
        except ValueError:
            journal.append({"op": "corrupt", "line": line})
    files = {}
    for path, value in (raw.get("files") or {}).items():
        files[path] = value if isinstance(value, dict) else b64_text(value)
    listening = []
    # "listening_raw": `ss -Hltnu` lines (protocol is column 1, local address column 5);
    # "listening": the older "PROTOCOL LOCAL" pairs (captured cases keep that shape)
    pairs = [(p[0], p[4]) for p in (line.split() for line in (raw.get("listening_raw") or "").splitlines()) if len(p) >= 5]
    pairs += [(p[0], p[1]) for p in (line.split() for line in (raw.get("listening") or "").splitlines()) if len(p) == 2]
    for proto, local in pairs:
        address, _, port = local.rpartition(":")
        listening.append({"protocol": proto, "address": address.split("%")[0].strip("[]"), "port": to_int(port)})
    firewall_text, redirect_text = raw.get("firewall") or "", raw.get("redirect_rules") or ""
    for line in (raw.get("rule_lines") or "").splitlines():
        if FIREWALL_DROP.search(line):
            firewall_text += "\n" + line
        elif REDIRECT_RULE.search(line):
            redirect_text += "\n" + line
    default_route = (raw.get("routes4") or [{}])[0] if raw.get("routes4") else {}
    vips_present = [
        f"{a['address']}/{a['prefixlen']} on {name}"
        for name, iface in interfaces.items() for a in iface["addresses"]
        if name == "lo" and a["address"] not in ("127.0.0.1", "::1")
    ]
    return {
        "platform": "linux",
        "os": {"name": (raw.get("os") or {}).get("name"), "id": (raw.get("os") or {}).get("id"),
               "version": (raw.get("os") or {}).get("version"), "kernel": (raw.get("os") or {}).get("kernel")},
        "hostname": raw.get("hostname"),
        "interfaces": interfaces,
        "default_route": {"gateway": default_route.get("gateway"), "dev": default_route.get("dev")},
        "sysctl4": sysctl4,
        "effective4": effective,
        "sysctl6": {dev: {k: to_int(v) for k, v in values.items()} for dev, values in (raw.get("sysctl6") or {}).items()},
        "sysctl_files": parse_sysctl_files(raw.get("sysctl_files") or ""),
        "stack": raw.get("stack") if isinstance(raw.get("stack"), dict) else {},
        "listening": listening,
        "firewall": [line for line in firewall_text.splitlines() if line.strip()],
        "redirect_rules": [line.strip() for line in redirect_text.splitlines() if line.strip()],
        "redirect_files": [line.strip() for line in (raw.get("redirect_files") or "").splitlines() if line.strip()],
        "journal": journal,
        "last_run": last_run(journal),
        "dmi": {k: str(v).strip() for k, v in (raw.get("dmi") or {}).items()} if isinstance(raw.get("dmi"), dict) else {},
        "src_routes": [line.strip() for line in str(raw.get("src_routes") or "").splitlines() if line.strip()],
        "gateway_route": str(raw.get("gateway_route") or ""),
        "lb_routes": [line.strip() for line in str(raw.get("lb_routes") or "").splitlines() if line.strip()],
        "networkd": parse_networkd_lines(str(raw.get("networkd_lines") or "")),
        "dirs": {path: names for path, names in (raw.get("dirs") or {}).items()
                 if path in FILE_DIRS and isinstance(names, list)},
        "leftovers": [path for path in str(raw.get("leftovers") or "").splitlines()
                      if TEMP_FILE.fullmatch(path) and path.split(".arpfix-tmp.")[0] in FILE_PATHS],
        "files": files,
        "vips_present": vips_present,
        "applied": raw.get("applied", []),
    }


def parse_networkd_lines(text: str) -> dict[str, dict[str, Any]]:
    """`FILE:Name=...` lines of .network files -> {file: {"names": [...], "keep": str, "unmanaged": str}}.

    A file in /etc hides one of the same name in /run and /usr/lib (systemd.network(5))."""
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        path, _, assignment = line.partition(":")
        key, _, value = assignment.partition("=")
        entry = out.setdefault(path, {"names": [], "keep": "", "unmanaged": ""})
        key = key.strip()
        if key == "Name":
            entry["names"] += value.split()
        elif key == "KeepConfiguration":
            entry["keep"] = value.strip()
        elif key == "Unmanaged":
            entry["unmanaged"] = value.strip()
    by_name: dict[str, str] = {}
    for path in sorted(out, key=lambda p: ("/etc/" not in p, "/run/" not in p)):
        by_name.setdefault(path.rsplit("/", 1)[-1], path)
    return {path: out[path] for path in by_name.values()}


def last_run(journal: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest run in the journal (its begin entry) with `finished` false when no end follows it:
    that run was cut (connection lost, host rebooted, script killed) part-way."""
    for index in range(len(journal) - 1, -1, -1):
        entry = journal[index]
        if entry.get("op") == "begin":
            finished = any(e.get("op") == "end" and e.get("run") == entry.get("run") for e in journal[index + 1:])
            return {"action": entry.get("action"), "time": entry.get("time"), "run": entry.get("run"),
                    "finished": finished or "run" not in entry}  # journals before 0.x had no end entries
    return None


def nic_for(facts: dict[str, Any], host: Host) -> str | None:
    """The interface that holds the host's own address (never assumed by name)."""
    if host.nic:
        return host.nic
    for name, iface in facts.get("interfaces", {}).items():
        for addr in iface["addresses"]:
            try:
                if addr["address"] and ipaddress.ip_address(addr["address"]) == host.address:
                    return name
            except ValueError:
                continue
    return None


