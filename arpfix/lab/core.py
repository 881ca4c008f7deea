"""The arpfix lab: real Linux "servers" as network + mount namespaces on one machine.

Topology of a lab named NAME (every object carries NAME as prefix):

* netns ``NAME-seg`` holds bridge ``br0`` (one layer-2 segment);
* netns ``NAME-agent``, ``NAME-client``, ``NAME-rs1`` .. ``NAME-rsN``: one per lab host, each
  with a veth ``eth0`` whose peer (named after the host) is a port of ``br0``;
* root namespace: veth ``NAME-adm`` (the admin workstation, ``.1``) whose peer ``adm`` is a
  bridge port, so sshd on every host is reachable from where arpfix runs;
* each host also has a persistent mount namespace (bound to a file on a private tmpfs in the
  state dir) with its own ``/sys`` (sysfs of its netns) and overlayfs views of ``/etc``,
  ``/var/lib``, ``/run``, ``/usr/local``, ``/var/tmp`` and ``/root`` (with a stock ``.bashrc``): what is written "on a server"
  lands in the lab's tmpfs, never on the machine. The state dir itself is re-bound inside so
  it stays visible even when it lives under an overlaid directory;
* agent and real servers run a real OpenSSH sshd; real servers also run arpfix.lab.service on
  tcp/80 and tcp/443.

Every process the lab starts is recorded (PID) in ``STATE/lab.json``. ``lab_down`` also finds
leftovers after a crash by name: netns ``NAME-(seg|agent|client|rsN)``, link ``NAME-adm``,
mounts under the state dir.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from arpfix.errors import ArpfixError, UsageError

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
DEFAULT_NAME = "arpfix"
DEFAULT_HOSTS = 3
MAX_HOSTS = 200
STATE_ROOT = "/var/tmp/arpfix-lab"
REGISTRY = "/run/arpfix-lab"
SERVICE_PORTS = (80, 443)
OVERLAID = ("/etc", "/var/lib", "/run", "/usr/local", "/var/tmp", "/root")
# A lab server's root gets the stock Debian ~/.bashrc, as a freshly installed server has: the
# machine's own may start tools (pyenv, cargo) that would be paid again on every SSH session.
STOCK_ROOT_BASHRC = "# ~/.bashrc: executed by bash(1) for non-login shells (arpfix lab server: stock profile)"
SSHD = "/usr/sbin/sshd"
HOST_OCTET = {"admin": 1, "agent": 2, "client": 3}
RS_FIRST_OCTET = 11
VIP_OCTET = 250
READY_TIMEOUT = 15.0


@dataclass
class LabInfo:
    """What lab_up built; ``status`` is the same dict ``lab_status`` returns."""

    name: str
    state_dir: str
    subnet: str
    vip: str
    inventory_path: str
    status: dict[str, Any] = field(default_factory=dict)


# -- helpers -----------------------------------------------------------------------------------

def _run(argv: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, check=False, input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ArpfixError(f"lab: `{' '.join(argv[:4])} ...` failed: {detail[-1] if detail else proc.returncode}")
    return proc


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid lab name {name!r}: use 1-8 characters [a-z0-9], starting with a letter"
        )
    return name


def check_environment(build: bool = False) -> None:
    """Raise UsageError (one line) unless we may use (BUILD: and build) labs here."""
    if not sys.platform.startswith("linux"):
        raise UsageError("the lab needs Linux (network and mount namespaces)")
    if os.geteuid() != 0:
        raise UsageError("the lab needs root (it creates network namespaces, veths and mounts)")
    for tool in ("ip", "nsenter", "umount") + (("unshare", "mount", "ssh-keygen") if build else ()):
        if shutil.which(tool) is None:
            raise UsageError(f"the lab needs `{tool}` on PATH (packages: iproute2, util-linux, openssh-client)")
    if build and not os.access(SSHD, os.X_OK):
        raise UsageError(f"the lab needs OpenSSH sshd at {SSHD} (package openssh-server)")


def _registry_file(name: str) -> str:
    return os.path.join(REGISTRY, f"{name}.json")


def default_state_dir(name: str) -> str:
    return os.path.join(STATE_ROOT, name)


def state_dir_of(name: str) -> str:
    """Where lab NAME keeps its state (recorded at lab up; default otherwise)."""
    try:
        with open(_registry_file(name)) as fh:
            return str(json.load(fh)["state_dir"])
    except (OSError, ValueError, KeyError):
        return default_state_dir(name)


def _load_state(name: str) -> dict[str, Any]:
    path = os.path.join(state_dir_of(name), "lab.json")
    try:
        with open(path) as fh:
            return json.load(fh)  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise UsageError(f"no lab named {name!r} (run `arpfix lab up --name {name}`)") from None
    except (OSError, ValueError) as exc:
        raise ArpfixError(f"lab {name!r}: unreadable state {path}: {exc}") from None


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


class _Lock:
    """A machine-wide lock so two concurrent `lab up`s do not pick the same subnet."""

    def __enter__(self) -> None:
        os.makedirs(REGISTRY, exist_ok=True)
        self.fh = open(os.path.join(REGISTRY, ".lock"), "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _lab_netns(name: str) -> list[str]:
    """Existing network namespaces that belong to lab NAME."""
    pattern = re.compile(rf"^{re.escape(name)}-(seg|agent|client|rs\d+)$")
    proc = _run(["ip", "-j", "netns", "list"], check=False)
    try:
        entries = json.loads(proc.stdout or "[]")
    except ValueError:
        entries = []
    names = [e.get("name", "") for e in entries]
    if os.path.isdir("/run/netns"):
        names += os.listdir("/run/netns")
    return sorted({n for n in names if pattern.match(n)})


def _link_exists(link: str) -> bool:
    return os.path.exists(f"/sys/class/net/{link}") or _run(
        ["ip", "link", "show", "dev", link], check=False).returncode == 0


def _candidate_subnets() -> Iterator[ipaddress.IPv4Network]:
    for third in range(256):
        yield ipaddress.IPv4Network(f"10.213.{third}.0/24")
    for third in range(256):
        yield ipaddress.IPv4Network(f"172.31.{third}.0/24")


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("type") in ("broadcast",):
            continue
        try:
            used.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            pass
    for link in json.loads(_run(["ip", "-j", "-4", "addr"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    # Subnets recorded by other labs (even if their admin link is gone).
    if os.path.isdir(REGISTRY):
        for entry in os.listdir(REGISTRY):
            if entry.endswith(".json"):
                try:
                    with open(os.path.join(REGISTRY, entry)) as fh:
                        used.append(ipaddress.IPv4Network(json.load(fh)["subnet"]))
                except (OSError, ValueError, KeyError):
                    pass
    return used


def pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    seen = set()
    for net in _candidate_subnets():
        if net in seen:
            continue
        seen.add(net)
        if not any(net.overlaps(u) for u in used):
            return net
    raise ArpfixError("lab: no free private /24 found (tried 10.213.X.0/24 and 172.31.X.0/24)")


def _mac(subnet: ipaddress.IPv4Network, octet: int) -> str:
    a, b, c, _ = subnet.network_address.packed
    return f"02:af:{a:02x}:{b:02x}:{c:02x}:{octet:02x}"


def _wait(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    failed = []
    for what, proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            text = (err or b"").decode(errors="replace").strip().splitlines()
            failed.append(f"{what}: {text[-1] if text else 'exit ' + str(proc.returncode)}")
    if failed:
        raise ArpfixError(f"lab: {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))


# -- up ----------------------------------------------------------------------------------------

def _host_plan(name: str, hosts: int, subnet: ipaddress.IPv4Network) -> list[dict[str, Any]]:
    base = subnet.network_address
    plan: list[dict[str, Any]] = [
        {"name": "agent", "role": "agent", "octet": HOST_OCTET["agent"]},
        {"name": "client", "role": "client", "octet": HOST_OCTET["client"]},
    ] + [
        {"name": f"rs{i}", "role": "real-server", "octet": RS_FIRST_OCTET + i - 1}
        for i in range(1, hosts + 1)
    ]
    for h in plan:
        h["netns"] = f"{name}-{h['name']}"
        h["address"] = str(base + h["octet"])
        h["mac"] = _mac(subnet, h["octet"])
        h["ssh"] = h["role"] != "client"
    return plan


_HOST_SETUP = r"""
set -e
state="$1"; host="$2"; role="$3"; addr="$4"; run="$state/run"
exec 3<"$state" 4<"$run"
fs=/proc/self/fd/4/fs/$host
printf 'link set lo up\naddr add %s/24 dev eth0\nlink set eth0 up\n' "$addr" | ip -batch -
if [ "$role" = real-server ]; then
  for c in all default lo eth0; do
    echo 0 > /proc/sys/net/ipv4/conf/$c/arp_ignore
    echo 0 > /proc/sys/net/ipv4/conf/$c/arp_announce
  done
fi
mkdir -p MKDIRS
MOUNTS
mount --no-canonicalize --rbind /proc/self/fd/3 "$state"
mount -t sysfs "LABNAME-$host-sys" /sys
mkdir -m 0755 -p /run/sshd
hostname "$host"
echo "$host" > /etc/hostname
printf '%s\n' "STOCKBASHRC" > /root/.bashrc
"""


def _host_setup_script(name: str) -> str:
    """Shell run by `nsenter --net=... unshare --mount=... --uts=...` (args: state host role addr).

    Runs under `set -e`, so nothing after a failed overlay mount touches the machine's files."""
    mkdirs, mounts = [], []
    for d in OVERLAID:
        key = d.replace("/", "_")
        mkdirs += [f'"$fs/up{key}"', f'"$fs/wk{key}"']
        mounts.append(f'mount -t overlay "{name}-${{host}}{key}" '
                      f'-o "lowerdir={d},upperdir=$fs/up{key},workdir=$fs/wk{key}" {d}')
    return (_HOST_SETUP.replace("MKDIRS", " ".join(mkdirs)).replace("MOUNTS", "\n".join(mounts))
            .replace("LABNAME", name).replace("STOCKBASHRC", STOCK_ROOT_BASHRC))


def _sshd_config(state: str, host: dict[str, Any]) -> str:
    hdir = os.path.join(state, "hosts", host["name"])
    return "\n".join([
        "# arpfix lab sshd for " + host["name"],
        "Port 22",
        f"ListenAddress {host['address']}",
        f"HostKey {hdir}/ssh_host_ed25519_key",
        f"PidFile {hdir}/sshd.pid",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        f"AuthorizedKeysFile {state}/authorized_keys",
        "StrictModes no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "MaxStartups 100:30:200",
        "MaxSessions 50",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
        "",
    ])


def _inventory(state: str, vip: str, plan: list[dict[str, Any]]) -> dict[str, Any]:
    servers = [h for h in plan if h["role"] == "real-server"]
    hosts: dict[str, Any] = {}
    for h in plan:
        if h["ssh"]:
            hosts[h["name"]] = {"platform": "linux", "address": h["address"]}
    return {
        "defaults": {"ssh": {
            "user": "root",
            "key_file": os.path.join(state, "id_ed25519"),
            "known_hosts": os.path.join(state, "known_hosts"),
        }},
        "groups": {"real_servers": {"hosts": [h["name"] for h in servers]}},
        "hosts": hosts,
        "vips": [{
            "name": "lab",
            "address": vip,
            "services": [{"protocol": "tcp", "port": p} for p in SERVICE_PORTS],
            "real_servers": ["real_servers"],
        }],
        "agent": {"host": "agent", "interface": "eth0"},
    }


def lab_exists(name: str) -> bool:
    state = state_dir_of(name)
    return (
        os.path.exists(_registry_file(name))
        or os.path.exists(os.path.join(state, "lab.json"))
        or bool(_lab_netns(name))
        or _link_exists(f"{name}-adm")
    )


def lab_up(name: str = DEFAULT_NAME, hosts: int = DEFAULT_HOSTS, state_dir: str | None = None) -> LabInfo:
    """Build lab NAME with HOSTS real servers. UsageError if it already exists."""
    check_name(name)
    check_environment(build=True)
    if not 1 <= hosts <= MAX_HOSTS:
        raise UsageError(f"--hosts must be between 1 and {MAX_HOSTS}, not {hosts}")
    state = os.path.abspath(state_dir or default_state_dir(name))
    with _Lock():
        if lab_exists(name):
            raise UsageError(f"lab {name!r} already exists; run `arpfix lab down --name {name}` first")
        if os.path.exists(state) and os.listdir(state):
            raise UsageError(f"state dir {state} exists and is not empty; remove it or pick another --state-dir")
        subnet = pick_subnet()
        os.makedirs(REGISTRY, exist_ok=True)
        _write_json(_registry_file(name), {"state_dir": state, "subnet": str(subnet)})
    try:
        return _build(name, hosts, state, subnet)
    except BaseException as exc:
        try:
            lab_down(name)
        except Exception:  # noqa: BLE001, S110 - report the original failure, not the cleanup's
            pass
        if isinstance(exc, ArpfixError):
            raise
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ArpfixError(f"lab up failed: {exc}") from exc


def _build(name: str, count: int, state: str, subnet: ipaddress.IPv4Network) -> LabInfo:
    base = subnet.network_address
    admin = str(base + HOST_OCTET["admin"])
    vip = str(base + VIP_OCTET)
    plan = _host_plan(name, count, subnet)
    seg = f"{name}-seg"
    adm = f"{name}-adm"
    run = os.path.join(state, "run")
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - t0, 3)

    os.makedirs(state, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)
    os.makedirs(run, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=0700", f"{name}-labrun", run])
    _run(["mount", "--make-private", run])
    os.makedirs(os.path.join(run, "ns"))
    state_record: dict[str, Any] = {
        "name": name, "state_dir": state, "subnet": str(subnet), "admin_address": admin,
        "admin_link": adm, "seg_netns": seg, "vip": vip,
        "services": [{"protocol": "tcp", "port": p} for p in SERVICE_PORTS],
        "created": time.time(), "hosts": [],
    }
    _write_json(os.path.join(state, "lab.json"), state_record)

    # Keys: client key pair and one host key per sshd host, generated in parallel.
    keygens = [("ssh-keygen client", subprocess.Popen(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"arpfix-lab-{name}",
         "-f", os.path.join(state, "id_ed25519")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))]
    for h in plan:
        hdir = os.path.join(state, "hosts", h["name"])
        os.makedirs(hdir)
        if h["ssh"]:
            keygens.append((f"ssh-keygen {h['name']}", subprocess.Popen(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-{h['name']}",
                 "-f", os.path.join(hdir, "ssh_host_ed25519_key")],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
            with open(os.path.join(hdir, "sshd_config"), "w") as fh:
                fh.write(_sshd_config(state, h))

    mark("keygen started")
    # Network: namespaces, bridge, veths (created straight into their namespaces).
    lines = [f"netns add {seg}"] + [f"netns add {h['netns']}" for h in plan]
    _run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
    lines = [f"link add br0 netns {seg} type bridge stp_state 0 forward_delay 0"]
    lines += [
        f"link add eth0 address {h['mac']} netns {h['netns']} type veth peer name {h['name']} netns {seg}"
        for h in plan
    ]
    lines += [
        f"link add {adm} address {_mac(subnet, 1)} type veth peer name adm netns {seg}",
        f"addr add {admin}/24 dev {adm}",
        f"link set {adm} up",
    ]
    _run(["ip", "-batch", "-"], input="\n".join(lines) + "\n")
    lines = ["link set lo up", "link set br0 up", "link set adm master br0 up"]
    lines += [f"link set {h['name']} master br0 up" for h in plan]
    _run(["ip", "-n", seg, "-batch", "-"], input="\n".join(lines) + "\n")

    mark("network")
    # Per host: addresses, sysctls, persistent mount namespace with overlays (in parallel).
    script = _host_setup_script(name)
    setups = []
    for h in plan:
        h["mnt_ns"] = os.path.join(run, "ns", f"{h['name']}.mnt")
        h["uts_ns"] = os.path.join(run, "ns", f"{h['name']}.uts")
        open(h["mnt_ns"], "w").close()
        open(h["uts_ns"], "w").close()
        setups.append((f"setup {h['name']}", subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{h['netns']}", "unshare", f"--mount={h['mnt_ns']}",
             f"--uts={h['uts_ns']}", "--propagation", "private", "sh", "-c", script, "sh", state, h["name"], h["role"],
             h["address"]],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    _wait(setups)
    mark("host setup")
    _wait(keygens)
    mark("keygen")

    # Authorized keys, known_hosts.
    with open(os.path.join(state, "id_ed25519.pub")) as fh:
        client_pub = fh.read().strip()
    with open(os.path.join(state, "authorized_keys"), "w") as fh:
        fh.write(client_pub + "\n")
    known = []
    for h in plan:
        if h["ssh"]:
            with open(os.path.join(state, "hosts", h["name"], "ssh_host_ed25519_key.pub")) as fh:
                keytype, key = fh.read().split()[:2]
            known.append(f"{h['address']} {keytype} {key}")
    with open(os.path.join(state, "known_hosts"), "w") as fh:
        fh.write("\n".join(known) + "\n")

    # Processes: sshd (agent, real servers) and the TCP service (real servers).
    service_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "service.py")
    for h in plan:
        h["pids"] = {}
        hdir = os.path.join(state, "hosts", h["name"])
        prefix = _enter(h) + ["--"]
        if h["ssh"]:
            h["pids"]["sshd"] = _spawn(prefix + [SSHD, "-D", "-e", "-f", os.path.join(hdir, "sshd_config")],
                                       os.path.join(hdir, "sshd.log"))
        if h["role"] == "real-server":
            h["pids"]["service"] = _spawn(
                prefix + [sys.executable, "-I", "-S", service_py, h["name"]] + [str(p) for p in SERVICE_PORTS],
                os.path.join(hdir, "service.log"))
    mark("spawned")
    state_record["hosts"] = [{k: v for k, v in h.items() if k != "octet"} for h in plan]
    _write_json(os.path.join(state, "lab.json"), state_record)

    inventory_path = os.path.join(state, "inventory.yml")
    with open(inventory_path, "w") as fh:
        fh.write(f"# arpfix lab {name!r}: generated by `arpfix lab up`; removed by `arpfix lab down`\n")
        yaml.safe_dump(_inventory(state, vip, plan), fh, sort_keys=False, default_flow_style=None)

    _wait_ready(plan, state)
    mark("ready")
    state_record["timings"] = timings
    _write_json(os.path.join(state, "lab.json"), state_record)
    status = lab_status(name)
    return LabInfo(name=name, state_dir=state, subnet=str(subnet), vip=vip,
                   inventory_path=inventory_path, status=status)


def _enter(h: dict[str, Any]) -> list[str]:
    argv = ["nsenter", f"--mount={h['mnt_ns']}", f"--net=/run/netns/{h['netns']}"]
    if h.get("uts_ns"):
        argv.append(f"--uts={h['uts_ns']}")
    return argv


def _spawn(argv: list[str], log: str) -> int:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                start_new_session=True, close_fds=True)
    # nsenter execs its command (no PID namespace), so this PID is sshd / the service itself.
    return proc.pid


def _wait_ready(plan: list[dict[str, Any]], state: str) -> None:
    pending = {(h["address"], 22, h["name"], "sshd", h["pids"]["sshd"]) for h in plan if h["ssh"]}
    pending |= {(h["address"], p, h["name"], "service", h["pids"]["service"])
                for h in plan if h["role"] == "real-server" for p in SERVICE_PORTS}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        for item in sorted(pending):
            address, port, host, what, pid = item
            try:
                with socket.create_connection((address, port), timeout=0.5):
                    pending.discard(item)
            except OSError:
                if not _alive(pid):
                    log = os.path.join(state, "hosts", host, f"{what}.log")
                    raise ArpfixError(f"lab: {what} on {host} exited during start (see {log})") from None
        if pending:
            if time.monotonic() > deadline:
                address, port, host, what, _ = min(pending)
                raise ArpfixError(f"lab: {what} on {host} ({address}:{port}) not ready after {READY_TIMEOUT:.0f}s")
            time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# -- status / exec -----------------------------------------------------------------------------

def lab_status(name: str = DEFAULT_NAME) -> dict[str, Any]:
    """The lab's description (the JSON of `arpfix lab status --format json`)."""
    check_name(name)
    check_environment()
    st = _load_state(name)
    state = st["state_dir"]
    hosts = []
    for h in st["hosts"]:
        pids = h.get("pids", {})
        hosts.append({
            "name": h["name"],
            "role": h["role"],
            "netns": h["netns"],
            "address": h["address"],
            "mac": h["mac"],
            "ssh_address": h["address"] if h["ssh"] else None,
            "ssh_port": 22 if h["ssh"] else None,
            "mount_ns": h.get("mnt_ns"),
            "pids": pids,
            "running": all(_alive(p) for p in pids.values()) and os.path.exists(f"/run/netns/{h['netns']}"),
        })
    return {
        "name": st["name"],
        "state_dir": state,
        "subnet": st["subnet"],
        "admin_address": st["admin_address"],
        "admin_link": st["admin_link"],
        "segment_netns": st["seg_netns"],
        "inventory": os.path.join(state, "inventory.yml"),
        "vip": st["vip"],
        "services": st["services"],
        "ssh": {
            "user": "root",
            "key": os.path.join(state, "id_ed25519"),
            "known_hosts": os.path.join(state, "known_hosts"),
        },
        "hosts": hosts,
    }


def _host(name: str, host: str) -> dict[str, Any]:
    st = _load_state(name)
    for h in st["hosts"]:
        if h["name"] == host:
            return h  # type: ignore[no-any-return]
    known = ", ".join(h["name"] for h in st["hosts"][:8]) + (" ..." if len(st["hosts"]) > 8 else "")
    raise UsageError(f"lab {name!r} has no host {host!r} (hosts: {known})")


def lab_exec_argv(name: str, host: str, cwd: str | None = None) -> list[str]:
    """argv prefix that runs a command inside HOST's network and filesystem view."""
    check_name(name)
    h = _host(name, host)
    argv = _enter(h)
    if cwd:
        argv.append(f"--wd={cwd}")
    return argv + ["--"]


def exec_env() -> dict[str, str]:
    """Environment for commands in a lab host: ours, with this Python's bin dir on PATH."""
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if bindir not in path.split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + path
    return env


def run_in(name: str, host: str, cmd: list[str], check: bool = True,
           **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run CMD inside HOST (captured text output unless overridden)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("env", exec_env())
    return subprocess.run(lab_exec_argv(name, host) + list(cmd), check=check, **kwargs)


# -- down --------------------------------------------------------------------------------------

def _mounts_under(path: str) -> list[str]:
    path = path.rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mountpoint = line.split()[4].encode().decode("unicode_escape")
            if mountpoint == path or mountpoint.startswith(path + "/"):
                found.append(mountpoint)
    return found


def _kill(pids: set[int], grace: float = 2.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pid_in_lab(pid: int, netns_inodes: set[int], state: str) -> bool:
    """A recorded PID is only killed while it still is one of ours (PID reuse after a crash)."""
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino in netns_inodes:
            return True
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return state.encode() in fh.read()
    except OSError:
        return False


def lab_down(name: str = DEFAULT_NAME) -> list[str]:
    """Remove everything of lab NAME; idempotent, also after a crash. Returns what was removed."""
    check_name(name)
    check_environment()
    removed: list[str] = []
    state = os.path.abspath(state_dir_of(name))
    netns = _lab_netns(name)
    inodes = set()
    for ns in netns:
        try:
            inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
        except OSError:
            pass

    # 1. Processes: recorded PIDs (if still ours), then anything left in the lab's namespaces.
    pids: set[int] = set()
    try:
        with open(os.path.join(state, "lab.json")) as fh:
            for h in json.load(fh).get("hosts", []):
                pids |= {int(p) for p in h.get("pids", {}).values()}
    except (OSError, ValueError):
        pass
    pids = {p for p in pids if _pid_in_lab(p, inodes, state)}
    for ns in netns:
        out = _run(["ip", "netns", "pids", ns], check=False).stdout
        pids |= {int(p) for p in out.split() if p.isdigit()}
    pids.discard(os.getpid())
    if pids:
        _kill(pids)
        removed.append(f"{len(pids)} process(es)")

    # 2. Mounts under the state dir (mount-namespace files, the tmpfs), deepest first.
    for _ in range(3):
        mounts = _mounts_under(state)
        if not mounts:
            break
        for mp in sorted(mounts, key=len, reverse=True):
            if _run(["umount", mp], check=False).returncode != 0:
                _run(["umount", "-l", mp], check=False)
            removed.append(f"mount {mp}")

    # 3. Network: namespaces (their veths go with them) and the admin link.
    for ns in netns:
        if _run(["ip", "netns", "del", ns], check=False).returncode == 0:
            removed.append(f"netns {ns}")
    adm = f"{name}-adm"
    if _link_exists(adm):
        _run(["ip", "link", "del", adm], check=False)
        removed.append(f"link {adm}")

    # 4. Files: the state dir (only if it looks like a lab state dir) and the registry entry.
    looks_like_ours = os.path.isdir(state) and (
        os.path.exists(os.path.join(state, "lab.json")) or state == default_state_dir(name)
        or not os.listdir(state))
    if looks_like_ours and not _mounts_under(state):
        shutil.rmtree(state, ignore_errors=True)
        removed.append(f"state dir {state}")
    try:
        os.unlink(_registry_file(name))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(STATE_ROOT)  # only when empty; REGISTRY keeps its lock file (on /run, a tmpfs)
    except OSError:
        pass
    leftovers = _lab_netns(name) + ([adm] if _link_exists(adm) else []) + _mounts_under(state)
    if leftovers:
        raise ArpfixError(f"lab down {name!r}: could not remove {', '.join(leftovers)}")
    return removed
