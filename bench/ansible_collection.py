#!/usr/bin/env python3
"""One play of the arpfix.dr collection against the CLI on the same lab servers (issue 17).

Per round, alternating: `arpfix apply` + `arpfix audit` against the docs' example playbook
(ansible_collections/arpfix/dr/playbooks/sharescan.yml: prepare, then audit), and `arpfix
rollback` against the playbook's rollback (`--tags rollback`). Same servers, same forks (= N), same
key and known_hosts, the same VIP and services (the CLI's inventory is made from the playbook's
vars). The collection is built and installed with ansible-galaxy first. Prints medians and the
ratio collection / CLI; asserts nothing.

Usage (root): python bench/ansible_collection.py [--hosts 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arpfix.lab.core import lab_down, lab_status, lab_up  # noqa: E402

PLAYBOOK = ROOT / "ansible_collections" / "arpfix" / "dr" / "playbooks" / "sharescan.yml"
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode not in ok:
        sys.exit(f"{' '.join(argv[:3])} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="afxbans")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="arpfix-bench-ansible-"))
    env = {**os.environ, "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_COLLECTIONS_PATH": str(work / "installed"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"), "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=5s",
           "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(PLAYBOOK.parents[1]), "--output-path", str(work)],
                   check=True, capture_output=True, env=env)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(work / "arpfix-dr-0.1.0.tar.gz"), "-p",
                    str(work / "installed")], check=True, capture_output=True, env=env)
    lab_down(args.name)
    lab_up(args.name, args.hosts)
    try:
        status = lab_status(args.name)
        servers = [h for h in status["hosts"] if h["role"] == "real-server"]
        ssh = status["ssh"]
        (work / "hosts.yml").write_text(yaml.safe_dump({"all": {"vars": {"sharescan_vip": status["vip"]}, "children": {
            "sharescan": {"hosts": {h["name"]: {"ansible_host": h["address"]} for h in servers}, "vars": {
                "ansible_user": "root", "ansible_ssh_private_key_file": ssh["key"],
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh['known_hosts']} -o StrictHostKeyChecking=yes"}}}}}))
        play = yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]
        base = yaml.safe_load(Path(status["inventory"]).read_text())
        names = [h["name"] for h in servers]
        (work / "cli.yml").write_text(yaml.safe_dump({
            "defaults": base["defaults"], "hosts": {n: base["hosts"][n] for n in names}, "profiles": play["sharescan_profiles"],
            "vips": [{**play["sharescan_vips"][0], "address": status["vip"], "real_servers": names}]}))
        cli = [sys.executable, "-m", "arpfix.cli"]
        inv = ["-i", str(work / "cli.yml"), "--forks", str(args.hosts), "-q"]
        book = [str(BIN / "ansible-playbook"), "-i", str(work / "hosts.yml"), str(PLAYBOOK), "-f", str(args.hosts)]
        times: dict[str, list[float]] = {k: [] for k in ("cli prepare+audit", "play prepare+audit", "cli rollback", "play rollback")}
        for _ in range(args.rounds):
            times["cli prepare+audit"].append(timed(cli + ["apply", "--yes", *inv], env) + timed(cli + ["audit", *inv], env))
            times["cli rollback"].append(timed(cli + ["rollback", "--yes", *inv], env))
            times["play prepare+audit"].append(timed(book, env))
            times["play rollback"].append(timed(book + ["--tags", "rollback"], env))
        medians = {k: statistics.median(v) for k, v in times.items()}
        print(f"{args.hosts} lab servers, forks {args.hosts}, medians of {args.rounds} rounds:")
        for job in ("prepare+audit", "rollback"):
            c, p = medians[f"cli {job}"], medians[f"play {job}"]
            print(f"  {job:14} CLI {c:6.2f}s   collection play {p:6.2f}s   collection / CLI {p / c:5.2f}")
    finally:
        lab_down(args.name)


if __name__ == "__main__":
    main()
