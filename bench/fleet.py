#!/usr/bin/env python3
"""Fleet speed: arpfix vs an equivalent Ansible playbook vs the OpenSSH floor, on lab servers.

For each N, one lab of N real servers; per round, the three tools run alternately on the same
servers (audit: read the same state; apply: make the same changes, then undo them):
  1. arpfix audit / arpfix apply + arpfix rollback
  2. ansible-playbook (forks = N, gather_facts off, pipelining on, same key and known_hosts)
  3. the floor: N parallel `ssh` processes, one command each (read the state / make the changes)
Prints wall-time medians, the ratios arpfix/floor and ansible/arpfix, and arpfix's peak memory.
A benchmark prints figures; it asserts nothing and is not run by CI.

Usage (root): python bench/fleet.py [--sizes 10,25,50] [--rounds 3] [--skip-ansible]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arpfix.lab.core import lab_down, lab_status, lab_up  # noqa: E402
from arpfix.templating import render  # noqa: E402

AUDIT_PLAYBOOK = """\
- hosts: real_servers
  gather_facts: false
  tasks:
    - name: read ARP sysctls, lo addresses and arpfix files (the same reads as arpfix audit)
      ansible.builtin.shell: |
        for f in /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce /proc/sys/net/ipv4/conf/*/rp_filter; do echo "$f $(cat $f)"; done
        ip -j addr show; ip -j route show default; ss -Hltnu
        grep -H -E 'arp_(ignore|announce)' /etc/sysctl.conf /etc/sysctl.d/*.conf 2>/dev/null || true
        cat /etc/sysctl.d/90-arpfix.conf /etc/systemd/system/arpfix-vip.service 2>/dev/null || true
      changed_when: false
"""

# The end state every tool's apply reaches (and its rollback removes): the ARP sysctls on `all` and
# the NIC, the sysctl drop-in, the VIP on lo, and the boot-time re-apply (script, unit, enable link).
VIP_UP = "#!/bin/sh\\nip -o addr show dev lo | grep -q ' {vip}/32 ' || ip addr add {vip}/32 dev lo label lo:arpfix\\n"
UNIT = ("[Unit]\\nDescription=VIPs on lo for DR\\nAfter=network-online.target\\n[Service]\\nType=oneshot\\n"
        "ExecStart=/usr/local/lib/arpfix/arpfix-vip-up\\n[Install]\\nWantedBy=multi-user.target\\n")
WANTS = "/etc/systemd/system/multi-user.target.wants/arpfix-vip.service"

APPLY_PLAYBOOK = """\
- hosts: real_servers
  gather_facts: false
  tasks:
    - name: ARP sysctls at runtime (ansible.posix.sysctl is not in ansible-core; sysctl -w is what it runs)
      ansible.builtin.command: sysctl -w {{{{ item }}}}
      loop: [net.ipv4.conf.all.arp_ignore=1, net.ipv4.conf.all.arp_announce=2, net.ipv4.conf.eth0.arp_ignore=1, net.ipv4.conf.eth0.arp_announce=2]
    - name: ARP sysctls persisted
      ansible.builtin.copy:
        dest: /etc/sysctl.d/90-arpfix.conf
        content: "net.ipv4.conf.all.arp_ignore = 1\\nnet.ipv4.conf.all.arp_announce = 2\\n"
        mode: "0644"
    - name: VIP on lo
      ansible.builtin.shell: ip -o addr show dev lo | grep -q ' {vip}/32 ' || ip addr add {vip}/32 dev lo label lo:arpfix
    - name: boot-time script
      ansible.builtin.copy: {{dest: /usr/local/lib/arpfix/arpfix-vip-up, mode: "0755", content: "{vip_up}"}}
    - name: boot-time unit
      ansible.builtin.copy: {{dest: /etc/systemd/system/arpfix-vip.service, mode: "0644", content: "{unit}"}}
    - name: enable it
      ansible.builtin.file: {{path: {wants}, src: /etc/systemd/system/arpfix-vip.service, state: link}}
"""

ROLLBACK_PLAYBOOK = """\
- hosts: real_servers
  gather_facts: false
  tasks:
    - name: remove the VIP
      ansible.builtin.shell: ip addr del {vip}/32 dev lo 2>/dev/null || true
    - name: ARP sysctls back
      ansible.builtin.shell: |
        for k in all/arp_ignore all/arp_announce eth0/arp_ignore eth0/arp_announce; do echo 0 > /proc/sys/net/ipv4/conf/$k; done
    - name: remove the files
      ansible.builtin.file: {{path: "{{{{ item }}}}", state: absent}}
      loop: [/etc/sysctl.d/90-arpfix.conf, /usr/local/lib/arpfix/arpfix-vip-up, /etc/systemd/system/arpfix-vip.service, {wants}]
"""

FLOOR_APPLY = ("for k in all eth0; do echo 1 > /proc/sys/net/ipv4/conf/$k/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/$k/arp_announce; done;"
               " printf 'net.ipv4.conf.all.arp_ignore = 1\\nnet.ipv4.conf.all.arp_announce = 2\\n' > /etc/sysctl.d/90-arpfix.conf;"
               " ip addr add {vip}/32 dev lo label lo:arpfix; mkdir -p /usr/local/lib/arpfix /etc/systemd/system/multi-user.target.wants;"
               " printf \"{vip_up}\" > /usr/local/lib/arpfix/arpfix-vip-up; chmod 755 /usr/local/lib/arpfix/arpfix-vip-up;"
               " printf '{unit}' > /etc/systemd/system/arpfix-vip.service; ln -s /etc/systemd/system/arpfix-vip.service {wants}")
FLOOR_ROLLBACK = ("ip addr del {vip}/32 dev lo; for k in all eth0; do echo 0 > /proc/sys/net/ipv4/conf/$k/arp_ignore;"
                  " echo 0 > /proc/sys/net/ipv4/conf/$k/arp_announce; done;"
                  " rm -f /etc/sysctl.d/90-arpfix.conf /usr/local/lib/arpfix/arpfix-vip-up /etc/systemd/system/arpfix-vip.service {wants}")


def fill(template: str, vip: str) -> str:
    return template.format(vip=vip, vip_up=VIP_UP.format(vip=vip), unit=UNIT, wants=WANTS)


LIVE: list[subprocess.Popen] = []


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Popen in a process group of its own, so an interrupted benchmark can end it with its children
    (ansible-playbook's workers, ssh)."""
    process = subprocess.Popen(argv, start_new_session=True, **kwargs)
    LIVE.append(process)
    return process


def end_spawned() -> None:
    for process in LIVE:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    LIVE.clear()


def run_timed(argv: list[str], *, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,),
              stdin: str | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one command."""
    start = time.perf_counter()
    process = spawn(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out, err = process.communicate(stdin)
    elapsed = time.perf_counter() - start
    if process.returncode not in ok:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({process.returncode}): {err.strip()[-500:] or out[-500:]}")
    return elapsed, 0


def peak_rss_of(argv: list[str], ok: tuple[int, ...]) -> tuple[float, int]:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = spawn(argv, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            output.seek(0)
            text = output.read().decode()
            problems = [line for line in text.splitlines() if " error " in line or " failed " in line or "Error" in line]
            raise SystemExit(f"{' '.join(argv[3:6])} failed ({code}):\n" + "\n".join(problems[:20] or [text[-1500:]]))
    return elapsed, usage.ru_maxrss


def floor(hosts: list[dict], key: str, known_hosts: str, command: str | None, script: str | None) -> float:
    start = time.perf_counter()
    processes = []
    for host in hosts:
        argv = ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
                f"UserKnownHostsFile={known_hosts}", "-i", key, f"root@{host['ssh_address']}"]
        argv += [command] if command else ["sh", "-s"]
        processes.append(spawn(argv, stdin=subprocess.PIPE if script else subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for process in processes:
        process.communicate(script)
        if process.returncode != 0:
            raise SystemExit(f"ssh failed: {process.stderr.read() if process.stderr else ''}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,25,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--name", default="afxbench")
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: children ended, lab removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    arpfix = [sys.executable, "-m", "arpfix.cli"]
    ansible = shutil.which("ansible-playbook") or str(Path(sys.executable).parent / "ansible-playbook")
    if not args.skip_ansible and not os.access(ansible, os.X_OK):
        raise SystemExit("ansible-playbook not found: pip install ansible-core (or --skip-ansible)")
    facts_script = render("linux/facts.sh.j2", embedded=False)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        lab_down(args.name)
        lab_up(args.name, size)
        try:
            status = lab_status(args.name)
            inventory, vip = status["inventory"], status["vip"]
            key, known_hosts = status["ssh"]["key"], status["ssh"]["known_hosts"]
            servers = [h for h in status["hosts"] if h["role"] == "real-server"]
            work = Path(tempfile.mkdtemp(prefix="afxbench-"))
            (work / "hosts.ini").write_text(
                "[real_servers]\n" + "".join(f"{h['name']} ansible_host={h['ssh_address']}\n" for h in servers)
                + f"[all:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n"
                f"ansible_ssh_common_args='-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'\n"
                "ansible_python_interpreter=/usr/bin/python3\n")
            (work / "ansible.cfg").write_text(f"[defaults]\nforks = {size}\nhost_key_checking = True\n"
                                              "gathering = explicit\nretry_files_enabled = False\n"
                                              f"local_tmp = {work}/tmp\n[ssh_connection]\npipelining = True\n")
            (work / "audit.yml").write_text(AUDIT_PLAYBOOK)
            (work / "apply.yml").write_text(fill(APPLY_PLAYBOOK, vip))
            (work / "rollback.yml").write_text(fill(ROLLBACK_PLAYBOOK, vip))
            env = {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "ANSIBLE_HOME": str(work / "home")}
            times: dict[str, list[float]] = {k: [] for k in ("arpfix audit", "ansible audit", "floor audit",
                                                             "arpfix apply", "ansible apply", "floor apply",
                                                             "arpfix rollback", "ansible rollback", "floor rollback")}
            peak = 0
            forks = ["--forks", str(size)]
            for _ in range(args.rounds):
                elapsed, rss = peak_rss_of(arpfix + ["audit", "-q", "-i", inventory] + forks, (0, 3))
                times["arpfix audit"].append(elapsed)
                peak = max(peak, rss)
                if not args.skip_ansible:
                    times["ansible audit"].append(run_timed([ansible, "-i", str(work / "hosts.ini"), str(work / "audit.yml")], env=env)[0])
                times["floor audit"].append(floor(servers, key, known_hosts, None, facts_script))
                elapsed, rss = peak_rss_of(arpfix + ["apply", "--yes", "-q", "-i", inventory] + forks, (0,))
                times["arpfix apply"].append(elapsed)
                peak = max(peak, rss)
                elapsed, rss = peak_rss_of(arpfix + ["rollback", "--yes", "-q", "-i", inventory] + forks, (0,))
                times["arpfix rollback"].append(elapsed)
                if not args.skip_ansible:
                    times["ansible apply"].append(run_timed([ansible, "-i", str(work / "hosts.ini"), str(work / "apply.yml")], env=env)[0])
                    times["ansible rollback"].append(run_timed([ansible, "-i", str(work / "hosts.ini"), str(work / "rollback.yml")], env=env)[0])
                times["floor apply"].append(floor(servers, key, known_hosts, fill(FLOOR_APPLY, vip), None))
                times["floor rollback"].append(floor(servers, key, known_hosts, fill(FLOOR_ROLLBACK, vip), None))
            medians = {k: statistics.median(v) for k, v in times.items() if v}
            for job in ("audit", "apply", "rollback"):
                a, f = medians[f"arpfix {job}"], medians[f"floor {job}"]
                s = medians.get(f"ansible {job}")
                rows.append({"N": size, "job": job, "arpfix_s": round(a, 3), "floor_s": round(f, 3),
                             "ansible_s": round(s, 3) if s else None, "arpfix/floor": round(a / f, 2),
                             "ansible/arpfix": round(s / a, 2) if s else None, "arpfix_peak_mib": round(peak / 1024, 1)})
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(work, ignore_errors=True)
        finally:
            end_spawned()
            lab_down(args.name)
    from tabulate import tabulate

    print()
    print(tabulate([list(r.values()) for r in rows], headers=list(rows[0]), tablefmt="github"))


if __name__ == "__main__":
    main()
