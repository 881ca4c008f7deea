"""The tools bench/fleet.py compares, each told to make the change arpfix makes.

What "the change" is comes from arpfix itself: after arpfix's apply on a fresh server the benchmark
reads the three files it wrote (`Reference`), and every peer writes those bytes, with arpfix's modes
and owners, makes arpfix's folder (0700), sets the ARP sysctls named in arpfix's sysctl.d file, puts
the VIP on lo with arpfix's label and scope, and makes the enable link. Nothing of it is
hand-copied, so a change in arpfix's templates cannot make the peers do different work unnoticed
(and the snapshot comparison would catch it anyway).

Audit: every peer runs arpfix's own facts script on each server and collects its output (the same
reads, the same bytes over the wire); arpfix also evaluates what it read.

Peers live in their own virtual environments (`ensure_venvs`), never in arpfix's dependencies.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENVS = "/var/tmp/arpfix-bench-venvs"
# ansible-core 2.19 with Mitogen 0.3.54: Mitogen's strategy plugins support ansible-core up to 2.21
# (ansible_mitogen/mixins.py handles 2.21's result type); the same ansible-core for both runs, so
# the difference between them is Mitogen alone.
PEER_PACKAGES = {
    "ansible": ["ansible-core==2.19.14"],
    "mitogen": ["ansible-core==2.19.14", "mitogen==0.3.54"],
    "pyinfra": ["pyinfra==3.10.0"],
}
SYSCTL_FILE = "/etc/sysctl.d/90-arpfix.conf"
SCRIPT_FILE = "/usr/local/lib/arpfix/arpfix-vip-up"
UNIT_FILE = "/etc/systemd/system/arpfix-vip.service"
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/arpfix-vip.service"
FOLDER = "/usr/local/lib/arpfix"


def ensure_venvs(root: str = VENVS) -> dict[str, str]:
    """One venv per peer under ROOT (created and filled from PyPI once); name -> its bin dir."""
    bins = {}
    for name, packages in PEER_PACKAGES.items():
        venv = Path(root) / name
        marker = venv / ".bench-packages"
        if not marker.exists() or marker.read_text() != " ".join(packages):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
            marker.write_text(" ".join(packages))
        bins[name] = str(venv / "bin")
    bins["arpfix"] = install_arpfix(Path(root) / "arpfix")
    return bins


def installed_env() -> dict[str, str]:
    """The environment for the installed arpfix: no PYTHONPATH, which would put a checkout (run with
    `PYTHONPATH=checkout`, as a worktree run is) before the installed, byte-compiled package."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def install_arpfix(venv: Path) -> str:
    """arpfix as an administrator runs it: installed from this checkout with pip (not editable), so
    its modules are byte-compiled at install as the peers' are. From the checkout itself, with
    PYTHONDONTWRITEBYTECODE set (as on the project's machines), every run compiled arpfix's sources
    anew: about 30 % of a 1-host audit's CPU. Reinstalled on every benchmark run (the code changes)."""
    root = Path(__file__).resolve().parents[1]
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(root)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(root)],
                   check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    return str(venv / "bin")


def versions(bins: dict[str, str]) -> dict[str, str]:
    found = {}
    for name, packages in PEER_PACKAGES.items():
        found[name] = " + ".join(packages)
    found["openssh"] = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    found["python"] = sys.version.split()[0]
    found["arpfix"] = subprocess.run([f"{bins['arpfix']}/python", "-c", "import arpfix, paramiko; "
                                      "print(arpfix.__version__, 'installed at', arpfix.__file__, 'paramiko', "
                                      "paramiko.__version__)"], capture_output=True, text=True, cwd="/",
                                     env=installed_env()).stdout.strip()
    return found


@dataclass
class Reference:
    """What arpfix wrote on a fresh server: the peers' instructions."""

    sysctl_conf: bytes
    script: bytes
    unit: bytes
    vip: str
    label: str
    scope: str
    sysctls: list[tuple[str, str]]  # ("net.ipv4.conf.eth0.arp_ignore", "1"), from arpfix's sysctl.d file

    @classmethod
    def from_server(cls, read: Any, snapshot_text: str, vip: str) -> Reference:
        sysctl_conf = read(SYSCTL_FILE)
        sysctls = re.findall(r"^(net\.ipv4\.conf\.[\w.-]+) = (\d+)$", sysctl_conf.decode(), re.M)
        match = re.search(rf"^lo\s+inet {re.escape(vip)}/32 (?:brd \S+ )?scope (\w+) ([^\s\\]+)", snapshot_text, re.M)
        if not sysctls or not match:
            raise SystemExit(f"arpfix's end state is not what the benchmark expects:\n{snapshot_text}")
        return cls(sysctl_conf, read(SCRIPT_FILE), read(UNIT_FILE), vip, match.group(2), match.group(1), sysctls)

    def write_files(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (("90-arpfix.conf", self.sysctl_conf), ("arpfix-vip-up", self.script),
                           ("arpfix-vip.service", self.unit)):
            (folder / name).write_bytes(data)

    def vip_guard(self) -> str:
        """Shell: the VIP on lo unless it is there; prints `changed` when it added it."""
        vip = f"{self.vip}/32"
        return (f"ip -o addr show dev lo | awk '{{print $4}}' | grep -qxF {vip} || "
                f"{{ ip addr add {vip} dev lo label {shlex.quote(self.label)} scope {self.scope} && echo changed; }}")

    def sysctl_guard(self) -> str:
        """Shell: each runtime sysctl written only when it differs; prints `changed` per write. (`read`
        reads a byte at a time and /proc/sys answers only at offset 0: it sees no newline and returns
        1, with the value read.)"""
        pairs = " ".join(f"{k.replace('.', '/')}={v}" for k, v in self.sysctls)
        return (f"for kv in {pairs}; do k=${{kv%=*}}; v=${{kv#*=}}; read -r now < /proc/sys/$k || :; "
                "[ \"$now\" = \"$v\" ] || { echo \"$v\" > /proc/sys/$k && echo changed; }; done")


# -- the OpenSSH floor -----------------------------------------------------------------------------

def _heredoc(name: str, data: bytes, tag: str) -> str:
    text = data.decode()
    if not text.endswith("\n") or tag in text:
        raise SystemExit(f"{name}: cannot be sent in a here-document")
    return f"{name}() {{ cat <<'{tag}'\n{text}{tag}\n}}\n"


def floor_apply_script(ref: Reference) -> str:
    """One guarded POSIX sh script: every step checks first and changes only what differs (so the
    second run changes nothing), the same end state as arpfix's apply."""
    files = ((SYSCTL_FILE, "644", "want_sysctl"), (SCRIPT_FILE, "755", "want_script"), (UNIT_FILE, "644", "want_unit"))
    out = ["set -e", "umask 022",
           _heredoc("want_sysctl", ref.sysctl_conf, "ARPFIX_BENCH_EOF"),
           _heredoc("want_script", ref.script, "ARPFIX_BENCH_EOF"),
           _heredoc("want_unit", ref.unit, "ARPFIX_BENCH_EOF"),
           ref.sysctl_guard(), ref.vip_guard(),
           f"[ -d {FOLDER} ] || mkdir -m 0700 {FOLDER}",
           f"[ \"$(stat -c %a:%U:%G {FOLDER})\" = 700:root:root ] || {{ chmod 0700 {FOLDER}; chown root:root {FOLDER}; }}"]
    for path, mode, want in files:
        out.append(f"{want} | cmp -s - {path} || {{ {want} > {path}.new && chmod {mode} {path}.new && "
                   f"chown root:root {path}.new && mv -f {path}.new {path}; }}")
        out.append(f"[ \"$(stat -c %a:%U:%G {path})\" = {mode}:root:root ] || {{ chmod {mode} {path}; chown root:root {path}; }}")
    out.append(f"[ \"$(readlink {WANTS_LINK})\" = {UNIT_FILE} ] || ln -sfn {UNIT_FILE} {WANTS_LINK}")
    return "\n".join(out) + "\n"


def ssh_argv(address: str, key: str, known_hosts: str) -> list[str]:
    return ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "ControlMaster=no", "-i", key, f"root@{address}", "sh", "-s"]


# -- Ansible (plain and with Mitogen) ---------------------------------------------------------------

ANSIBLE_AUDIT = """\
- hosts: real_servers
  gather_facts: false
  tasks:
    - name: read what arpfix audit reads (arpfix's own facts script, on stdin as arpfix sends it)
      ansible.builtin.command:
        cmd: sh -s
        stdin: "{{ lookup('ansible.builtin.file', 'facts.sh') }}"
      changed_when: false
"""

ANSIBLE_APPLY = """\
- hosts: real_servers
  gather_facts: false
  tasks:
    - name: ARP sysctls at runtime (ansible.posix.sysctl is not in ansible-core; written only where they differ)
      ansible.builtin.shell: {sysctl_guard}
      register: sysctls
      changed_when: "'changed' in sysctls.stdout"
    - name: sysctl drop-in, arpfix's bytes
      ansible.builtin.copy: {{src: files/90-arpfix.conf, dest: {sysctl_file}, owner: root, group: root, mode: "0644"}}
    - name: VIP on lo
      ansible.builtin.shell: {vip_guard}
      register: vip
      changed_when: "'changed' in vip.stdout"
    - name: arpfix's folder (0700; on a fresh server it does not exist)
      ansible.builtin.file: {{path: {folder}, state: directory, owner: root, group: root, mode: "0700"}}
    - name: boot-time script
      ansible.builtin.copy: {{src: files/arpfix-vip-up, dest: {script_file}, owner: root, group: root, mode: "0755"}}
    - name: boot-time unit
      ansible.builtin.copy: {{src: files/arpfix-vip.service, dest: {unit_file}, owner: root, group: root, mode: "0644"}}
    - name: enabled at boot
      ansible.builtin.file: {{src: {unit_file}, dest: {wants}, state: link}}
"""


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_ansible(work: Path, ref: Reference, facts_script: str, targets: list[dict[str, str]], key: str,
                  known_hosts: str, forks: int, mitogen_bin: str | None) -> None:
    work.mkdir(parents=True, exist_ok=True)
    ref.write_files(work / "files")
    (work / "facts.sh").write_text(facts_script)
    (work / "hosts.ini").write_text(
        "[real_servers]\n" + "".join(f"{t['name']} ansible_host={t['address']}\n" for t in targets)
        + f"[all:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'\n"
        "ansible_python_interpreter=/usr/bin/python3\n")
    strategy = ""
    if mitogen_bin:
        plugins = subprocess.run([f"{mitogen_bin}/python", "-c", "import ansible_mitogen, os; "
                                  "print(os.path.join(os.path.dirname(ansible_mitogen.__file__), 'plugins', 'strategy'))"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        strategy = f"strategy_plugins = {plugins}\nstrategy = mitogen_linear\n"
    (work / "ansible.cfg").write_text(
        f"[defaults]\nforks = {forks}\nhost_key_checking = True\ngathering = explicit\nretry_files_enabled = False\n"
        f"local_tmp = {work}/tmp\nremote_tmp = ~/.ansible/tmp\n{strategy}"
        # the SSH masters' sockets in this run's own folder: never one left by another run
        f"[ssh_connection]\npipelining = True\ncontrol_path_dir = {work}/cp\n")
    (work / "audit.yml").write_text(ANSIBLE_AUDIT)
    (work / "apply.yml").write_text(ANSIBLE_APPLY.format(
        sysctl_guard=_yaml_str(ref.sysctl_guard()), vip_guard=_yaml_str(ref.vip_guard()), sysctl_file=SYSCTL_FILE,
        folder=FOLDER, script_file=SCRIPT_FILE, unit_file=UNIT_FILE, wants=WANTS_LINK))


def ansible_env(work: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(work / "ansible.cfg"), "ANSIBLE_HOME": str(work / "home"),
            "ANSIBLE_NOCOLOR": "1"}


# -- pyinfra ----------------------------------------------------------------------------------------

PYINFRA_INVENTORY = """\
KEY, KNOWN_HOSTS = {key!r}, {known_hosts!r}
real_servers = [(address, {{"ssh_user": "root", "ssh_key": KEY, "ssh_known_hosts_file": KNOWN_HOSTS,
                            "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False}})
                for address in {addresses!r}]
"""

# pyinfra's temporary upload files go where the lab keeps a server's own files (/var/tmp is per
# server there; /tmp is the machine's)
PYINFRA_CONFIG = 'TEMP_DIR = "/var/tmp"\n'

PYINFRA_AUDIT = """\
from pyinfra.operations import server

server.shell(name="read what arpfix audit reads (arpfix's own facts script)", commands=[open({facts!r}).read()])
"""

PYINFRA_APPLY = """\
from pyinfra.operations import files, server

for key, value in {sysctls!r}:
    server.sysctl(name=f"sysctl {{key}}", key=key, value=int(value), persist=False)
files.put(name="sysctl drop-in", src={files!r} + "/90-arpfix.conf", dest={sysctl_file!r}, user="root", group="root", mode="644")
server.shell(name="VIP on lo", commands=[{vip_guard!r}])
files.directory(name="arpfix's folder", path={folder!r}, user="root", group="root", mode="700")
files.put(name="boot-time script", src={files!r} + "/arpfix-vip-up", dest={script_file!r}, user="root", group="root", mode="755")
files.put(name="boot-time unit", src={files!r} + "/arpfix-vip.service", dest={unit_file!r}, user="root", group="root", mode="644")
files.link(name="enabled at boot", path={wants!r}, target={unit_file!r})
"""


def write_pyinfra(work: Path, ref: Reference, facts_script: str, targets: list[dict[str, str]], key: str,
                  known_hosts: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    ref.write_files(work / "files")
    (work / "facts.sh").write_text(facts_script)
    (work / "inventory.py").write_text(PYINFRA_INVENTORY.format(key=key, known_hosts=known_hosts,
                                                                addresses=[t["address"] for t in targets]))
    (work / "config.py").write_text(PYINFRA_CONFIG)
    (work / "audit.py").write_text(PYINFRA_AUDIT.format(facts=str(work / "facts.sh")))
    (work / "apply.py").write_text(PYINFRA_APPLY.format(
        sysctls=ref.sysctls, files=str(work / "files"), sysctl_file=SYSCTL_FILE, vip_guard=ref.vip_guard(), folder=FOLDER,
        script_file=SCRIPT_FILE, unit_file=UNIT_FILE, wants=WANTS_LINK))


# -- the command lines ------------------------------------------------------------------------------

@dataclass
class Invocation:
    argvs: list[list[str]]
    env: dict[str, str] | None = None
    stdin: str | None = None
    ok: tuple[int, ...] = (0,)


class Tools:
    """Invocations per tool and job for one lab."""

    names = ("arpfix", "floor", "ansible", "mitogen", "pyinfra")
    jobs = ("audit", "apply", "apply again", "rollback")

    def __init__(self, work: Path, bins: dict[str, str], inventory: str, targets: list[dict[str, str]], key: str,
                 known_hosts: str, facts_script: str) -> None:
        self.work, self.bins, self.inventory, self.targets = work, bins, inventory, targets
        self.key, self.known_hosts, self.facts_script = key, known_hosts, facts_script
        self.floor_apply = ""

    def prepare(self, ref: Reference) -> None:
        forks = len(self.targets)
        write_ansible(self.work / "ansible", ref, self.facts_script, self.targets, self.key, self.known_hosts, forks, None)
        write_ansible(self.work / "mitogen", ref, self.facts_script, self.targets, self.key, self.known_hosts, forks,
                      self.bins["mitogen"])
        write_pyinfra(self.work / "pyinfra", ref, self.facts_script, self.targets, self.key, self.known_hosts)
        self.floor_apply = floor_apply_script(ref)

    def has(self, tool: str, job: str) -> bool:
        # only arpfix has a rollback: the peers would need a hand-written undo that knows the old values
        return job != "rollback" or tool == "arpfix"

    def invocation(self, tool: str, job: str) -> Invocation:
        forks = str(len(self.targets))
        if tool == "arpfix":
            verb = {"apply again": "apply"}.get(job, job)
            argv = [f"{self.bins['arpfix']}/arpfix", verb, "-q", "-i", self.inventory, "--forks", forks]
            return Invocation([argv + (["--yes"] if verb != "audit" else [])], env=installed_env(),
                              ok=(0, 3) if job == "audit" else (0,))
        if tool == "floor":
            script = self.facts_script if job == "audit" else self.floor_apply
            return Invocation([ssh_argv(t["address"], self.key, self.known_hosts) for t in self.targets], stdin=script)
        playbook = "audit" if job == "audit" else "apply"
        if tool in ("ansible", "mitogen"):
            work = self.work / tool
            argv = [f"{self.bins[tool]}/ansible-playbook", "-i", str(work / "hosts.ini"), str(work / f"{playbook}.yml")]
            return Invocation([argv], env=ansible_env(work))
        work = self.work / "pyinfra"
        argv = [f"{self.bins['pyinfra']}/pyinfra", "-y", "--parallel", forks, "--config", str(work / "config.py"),
                str(work / "inventory.py"), str(work / f"{playbook}.py")]
        return Invocation([argv], env={**os.environ, "PYINFRA_PROGRESS": "off"})
