"""Real network stacks for lab servers, without installing them on the machine.

Installing NetworkManager or ifupdown on the machine that runs the lab would change how that
machine boots (and on a systemd host, start NetworkManager at once). Instead the Debian packages
are downloaded (`apt-get download`: nothing is installed) and unpacked into a cache folder; lab
servers run the binaries from there, each in its own network, mount and D-Bus world:

* ``extract(packages)`` -> the unpacked root (cached under /var/tmp/arpfix-lab-tools);
* ``start_networkmanager(lab, host, root)``: a private D-Bus system bus in the host's /run and a
  NetworkManager that manages only ``lo`` (so the SSH path on eth0 is never touched), with
  ``nmcli`` / ``NetworkManager`` wrappers in the host's own /usr/local. It sees /sys read-only, as
  in a container: NetworkManager then does not wait for udev, which lab servers do not run.
The lab's `down` ends every process in the host's namespace, these included.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import time

import pytest

CACHE = "/var/tmp/arpfix-lab-tools"
NM_PACKAGES = ("network-manager", "libnm0", "libndp0", "libteamdctl0", "libmm-glib0", "libjansson4", "libnewt0.52",
               "libbluetooth3")
LIBDIR = "usr/lib/x86_64-linux-gnu"

DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

NM_CONF = """# arpfix lab: NetworkManager manages lo only, never the SSH path
[main]
plugins=keyfile
no-auto-default=*
[keyfile]
unmanaged-devices=except:interface-name:lo
"""


def _download(packages: tuple[str, ...], into: str) -> str:
    run = subprocess.run(["apt-get", "download", *packages], cwd=into, capture_output=True, text=True, check=False)
    return "" if run.returncode == 0 else (run.stderr.strip().splitlines() or ["apt-get download failed"])[-1]


def extract(packages: tuple[str, ...]) -> str:
    """Unpack the packages (downloaded once) into a cached root; skip the test when impossible."""
    key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    root = os.path.join(CACHE, f"{packages[0]}-{key}")
    if os.path.isfile(os.path.join(root, ".complete")):
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb to fetch " + ", ".join(packages))
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fetch-", dir=CACHE)
    try:
        problem = _download(packages, work)
        if problem:  # stale or missing package lists: refresh once
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
            problem = _download(packages, work)
        if problem:
            pytest.skip(f"cannot download {', '.join(packages)}: {problem}")
        staging = os.path.join(work, "root")
        for deb in sorted(glob.glob(os.path.join(work, "*.deb"))):
            subprocess.run(["dpkg-deb", "-x", deb, staging], check=True, capture_output=True)
        open(os.path.join(staging, ".complete"), "w").close()
        shutil.rmtree(root, ignore_errors=True)
        os.rename(staging, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root


def _wrapper(root: str, binary: str) -> str:
    return f'#!/bin/sh\nLD_LIBRARY_PATH={root}/{LIBDIR} exec {root}/{binary} "$@"\n'


def start_networkmanager(lab, host: str, root: str, timeout: float = 30.0) -> None:
    """Make lab server `host` a NetworkManager host (private D-Bus, NetworkManager on lo only)."""
    missing = subprocess.run(["sh", "-c", f"LD_LIBRARY_PATH={root}/{LIBDIR} ldd {root}/usr/sbin/NetworkManager"
                                          " | grep 'not found' || true"], capture_output=True, text=True).stdout
    if missing.strip():
        pytest.skip(f"NetworkManager from the package needs libraries this machine lacks: {missing.strip()}")
    dbus = shutil.which("dbus-daemon") or os.path.join(root, "usr/bin/dbus-daemon")
    if not os.access(dbus, os.X_OK):
        pytest.skip("dbus-daemon is missing (apt-get install dbus-daemon)")
    setup = (
        "set -e\nmkdir -p /run/dbus /etc/NetworkManager/system-connections /var/lib/NetworkManager /usr/local/bin "
        "/usr/local/sbin\n"
        f"cat > /etc/NetworkManager/NetworkManager.conf <<'EOF'\n{NM_CONF}EOF\n"
        f"cat > /run/dbus/arpfix-lab-bus.conf <<'EOF'\n{DBUS_CONF}EOF\n"
        f"cat > /usr/local/bin/nmcli <<'EOF'\n{_wrapper(root, 'usr/bin/nmcli')}EOF\n"
        f"cat > /usr/local/sbin/NetworkManager <<'EOF'\n{_wrapper(root, 'usr/sbin/NetworkManager')}EOF\n"
        "chmod 755 /usr/local/bin/nmcli /usr/local/sbin/NetworkManager\n"
        f"{dbus} --config-file=/run/dbus/arpfix-lab-bus.conf --fork --nopidfile >/dev/null\n"
    )
    lab.exec(host, ["sh", "-c", setup])
    start_nm_daemon(lab, host, root, timeout)


def start_nm_daemon(lab, host: str, root: str, timeout: float = 30.0) -> None:
    """Start (or, after `stop_nm_daemon`, restart: what a boot does) the host's NetworkManager."""
    _start_daemon(lab, host, "/usr/local/sbin/NetworkManager --debug --log-level=INFO", "/run/arpfix-lab-nm.log",
                  "nmcli -t -f RUNNING,STARTUP general 2>/dev/null || true",
                  lambda state: state.strip() == "running:started", f"NetworkManager did not start on {host}", timeout)


def _start_daemon(lab, host: str, command: str, log: str, probe: str, ready, failure: str, timeout: float) -> None:
    """Start `command` in lab server `host` in a mount namespace of its own where /sys is read-only
    (as in a container: the daemon does not wait for udev, which lab servers do not run); wait until
    `ready(output of probe)`, else fail with the end of the daemon's log."""
    daemon = f"mount --bind /sys /sys && mount -o remount,ro,bind /sys && exec {command}"
    lab.exec(host, ["sh", "-c", f"nohup unshare -m --propagation private sh -c '{daemon}' >{log} 2>&1 &"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(lab.exec(host, ["sh", "-c", probe]).stdout):
            return
        time.sleep(0.2)
    raise AssertionError(f"{failure}: {lab.exec(host, ['sh', '-c', f'tail -25 {log}'], check=False).stdout}")


def _kill_in_host(lab, host: str, comm: str) -> list[str]:
    """SIGKILL every `comm` process in the network namespace of lab server `host` (lab servers
    share the machine's PID namespace); the pids killed."""
    pids = lab.exec(host, ["sh", "-c", f"for p in $(pgrep -x {comm}); do "
                                       "[ \"$(readlink /proc/$p/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ] "
                                       "&& echo $p; done; true"]).stdout.split()
    for pid in pids:
        os.kill(int(pid), 9)
    return pids


def stop_nm_daemon(lab, host: str) -> None:
    """SIGKILL, as a power cut would: NetworkManager gets no chance to tidy lo on the way down."""
    pids = _kill_in_host(lab, host, "NetworkManager")
    # a restart must find the D-Bus name free: wait until the process is gone and the bus knows it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gone = not any(os.path.exists(f"/proc/{pid}") for pid in pids)
        state = lab.exec(host, ["sh", "-c", "nmcli -t -f RUNNING general 2>/dev/null || true"]).stdout.strip()
        if gone and state != "running":
            return
        time.sleep(0.1)
    raise AssertionError(f"NetworkManager on {host} still holds its D-Bus name 10 s after SIGKILL")


# -- systemd-networkd ------------------------------------------------------------------------

def networkd() -> tuple[str, str]:
    """(systemd-networkd binary, LD_LIBRARY_PATH): the machine's own if it has one (it is not
    running in the lab servers' world), else unpacked from Debian's systemd package."""
    for path in ("/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-networkd"):
        if os.access(path, os.X_OK):
            return path, ""
    root = extract(("systemd",))
    return os.path.join(root, "lib/systemd/systemd-networkd"), os.path.join(root, LIBDIR, "systemd")


def start_networkd(lab, host: str, binary: str, libs: str, timeout: float = 20.0) -> None:
    """Start (what a boot does) systemd-networkd in lab server `host`: its own /run/systemd/netif,
    the systemd-network user in the host's own /etc if missing, /sys read-only (no udev to wait
    for, as in a container). Waits until networkd has settled lo."""
    setup = ("set -e\nmkdir -p /run/systemd/netif /etc/systemd/network\n"
             "getent group systemd-network >/dev/null || echo 'systemd-network:x:64998:' >> /etc/group\n"
             "getent passwd systemd-network >/dev/null || "
             "echo 'systemd-network:x:64998:64998::/run/systemd:/usr/sbin/nologin' >> /etc/passwd\n"
             "chown -R systemd-network:systemd-network /run/systemd/netif\n")
    lab.exec(host, ["sh", "-c", setup])
    libs_env = f"LD_LIBRARY_PATH={libs} " if libs else ""
    _start_daemon(lab, host, f"env SYSTEMD_LOG_LEVEL=debug {libs_env}{binary}", "/run/arpfix-lab-networkd.log",
                  "cat /run/systemd/netif/links/1 2>/dev/null; true",
                  lambda state: "ADMIN_STATE=configured" in state or "ADMIN_STATE=unmanaged" in state,
                  f"systemd-networkd did not settle lo on {host}", timeout)


def stop_networkd(lab, host: str) -> None:
    """SIGKILL (a power cut), then wait until the process is gone; the link state files go too."""
    pids = _kill_in_host(lab, host, "systemd-network")
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"systemd-networkd on {host} survived SIGKILL")
        time.sleep(0.05)
    lab.exec(host, ["sh", "-c", "rm -rf /run/systemd/netif/links /run/systemd/netif/state"])
