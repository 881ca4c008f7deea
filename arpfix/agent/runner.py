"""`arpfix agent run`: the foreground loop.

Start: take over stale state (a previous agent killed with SIGKILL leaves its table, its VIP
addresses and its state file: the table keeps forwarding and wanted VIPs stay claimed until the new
ruleset replaces them in one transaction), resolve the real servers' MACs, probe and claim the VIPs,
load the data plane, then check health every interval and rewrite the slot tables when health or drains
change. SIGTERM/SIGINT: remove everything installed (table, VIP addresses, state file), exit 0.
SIGHUP: reload the inventory and apply the difference. SIGUSR1: re-read the control file (drains).
In a pair (arpfix.agent.keepalived) keepalived owns the VIPs: the agent claims none, writes the
heartbeat keepalived's track script reads each round, and logs its role on SIGUSR2 (notify script).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from arpfix.agent import config as cfg
from arpfix.agent import keepalived, nft, scheduler, vip
from arpfix.agent.health import Checker
from arpfix.errors import ArpfixError

DEFAULT_STATE_DIR = "/run/arpfix-agent"


def state_dir(path: str | None = None) -> str:
    return path or os.environ.get("ARPFIX_AGENT_STATE_DIR") or DEFAULT_STATE_DIR


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Agent:
    def __init__(self, inventory: str, agent: str | None = None, dataplane: str = "auto", probe_only: bool = False,
                 force_claim: bool = False, state: str | None = None, interval: float = 1.0, rise: int = 2,
                 fall: int = 2, check_port: int | None = None, log: Callable[[str], None] | None = None,
                 dr_check: bool = False):
        self.inventory_path = inventory
        self.agent_name = agent
        self.requested = dataplane
        self.probe_only = probe_only
        self.force_claim = force_claim
        self.dir = state_dir(state)
        self.state_file = os.path.join(self.dir, "agent.json")
        self.control_file = os.path.join(self.dir, "control.json")
        self.interval, self.rise, self.fall, self.check_port = interval, rise, fall, check_port
        self.dr_check = dr_check
        self.log = log or (lambda line: print(f"arpfix-agent: {line}", file=sys.stderr, flush=True))
        self.claims: list[vip.Claim] = []
        self.tables: dict[str, list[str | None]] = {}
        self._adopted_vips: list[dict[str, Any]] = []  # a dead agent's VIP entries, kept until write_state
        self._predecessor: dict[str, list[str | None]] = {}  # a dead agent's slot tables, compared once
        self.up: dict[str, dict[str, bool]] = {}
        self.drained: set[str] = set()
        self.mode = ""
        self.forwarder: Any = None
        self.checker: Checker | None = None
        self.wake = threading.Event()
        self.flags: set[str] = set()
        self.config: cfg.AgentConfig | None = None
        self.agent_mac = ""
        self._next_arp = 0.0
        self._role = ""

    # -- setup -----------------------------------------------------------------------------
    def _load_config(self, config: cfg.AgentConfig | None = None) -> cfg.AgentConfig:
        """Inventory -> config with the servers' MACs resolved on the segment."""
        config = config or cfg.build(cfg.load(self.inventory_path), self.agent_name)
        self.agent_mac = cfg.interface_mac(config.interface)
        macs = cfg.resolve_macs(config)
        for name, mac in macs.items():
            if mac is None:
                self.log(f"real server {name} ({config.servers[name].address}) did not answer ARP; not forwarding to it")
        return config.with_macs(macs)

    def _checker(self, config: cfg.AgentConfig) -> Checker:
        targets = []
        for server in config.servers.values():
            ports = {self.check_port} if self.check_port else {
                s.port for v in config.vips if server.name in v.servers for s in v.services if s.protocol == "tcp"}
            targets += [(server.name, str(server.address), port) for port in sorted(ports)]
        dr_paths: dict[tuple[str, int], list[tuple[str, str, str]]] = {}
        if self.dr_check:
            for v in config.vips:
                if v.address.version != 4:
                    continue
                for name in v.servers:
                    server = config.servers[name]
                    if not server.mac:
                        continue
                    for service in v.services:
                        if service.protocol == "tcp":
                            dr_paths.setdefault((name, service.port), []).append(
                                (config.interface, str(v.address), server.mac))
        return Checker(targets, rise=self.rise, fall=self.fall, timeout=min(1.0, max(0.2, self.interval)),
                       dr_paths=dr_paths)

    def recover_stale(self, wanted: cfg.AgentConfig) -> None:
        """Take over what an agent that died without cleaning up (SIGKILL, a crash) left behind.

        Its nft table keeps forwarding until this agent's first full load replaces it in one
        transaction, and its VIP addresses that the inventory still wants stay where they are: a
        crash and restart does not interrupt traffic. Every other address it claimed is removed."""
        old = read_json(self.state_file)
        if not old:
            if nft.delete():
                self.log(f"removed stale nft table netdev {nft.TABLE} (no state file describes it)")
            return
        pid = int(old.get("pid", 0))
        if pid and pid != os.getpid() and pid_alive(pid) and old.get("netns") == _netns_id():
            raise ArpfixError(f"an agent is already running (pid {pid}, state {self.state_file})")
        keep = {(str(v.address), wanted.interface) for v in wanted.vips}
        # In a pair the VIPs are keepalived's: an address a single agent once claimed may be
        # keepalived's now, so it is neither adopted nor removed.
        for item in old.get("claims", []) if not wanted.peer else ():
            stale = vip.Claim(item["address"], item["interface"], int(item["prefix"]))
            if (stale.address, stale.interface) in keep and vip.present(stale.address, stale.interface):
                self.claims.append(stale)
                self.log(f"adopted stale VIP {stale.address} on {stale.interface} (pid {pid} left it)")
            elif vip.release(stale):
                self.log(f"removed stale VIP {stale.address} from {stale.interface}")
        if nft.exists():
            self.log(f"adopted stale nft table netdev {nft.TABLE}: it forwards until the new ruleset replaces it")
        # The slot table is a pure function of the healthy servers (arpfix.agent.scheduler), so the
        # new agent computes the dead one's table again: no flow changes server across the restart.
        # The dead agent's table is kept only to say so (or how many slots its successor moved).
        wanted_vips = {v.name: v for v in wanted.vips}
        for item in old.get("vips", []):
            v, table = wanted_vips.get(item.get("name")), item.get("slot_table")
            if v is None or item.get("address") != str(v.address) or not isinstance(table, list) \
                    or len(table) != scheduler.SLOTS:
                continue
            self._predecessor[v.name] = [n if n in v.servers else None for n in table]
            self._adopted_vips.append(item)
        self.write_partial()

    def _choose_mode(self) -> str:
        """auto: nft when the kernel accepts the agent's ruleset (`nft --check`: validated by the
        kernel, nothing changes, so a data plane still forwarding is never disturbed), else afpacket."""
        if self.requested != "auto":
            return self.requested
        try:
            nft.load(nft.render(self.config, self.agent_mac, {}, mode="nft"), check_only=True)  # type: ignore[arg-type]
            return "nft"
        except ArpfixError as exc:
            self.log(f"nft data plane unavailable ({exc}); using the afpacket fallback")
            return "afpacket"

    def probe(self, config: cfg.AgentConfig) -> dict[str, set[str]]:
        return {str(v.address): vip.probe(config.interface, self.agent_mac, str(v.address)) for v in config.vips}

    # -- scheduling ------------------------------------------------------------------------
    def _compute(self) -> tuple[dict[str, list[str | None]], dict[str, list[str]]]:
        assert self.config and self.checker
        tables, flush = {}, {}
        up_now: dict[str, dict[str, bool]] = {}
        for v in self.config.vips:
            ports = [s.port for s in v.services if s.protocol == "tcp"]
            if self.check_port:
                ports = [self.check_port]
            health = {n: bool(self.config.servers[n].mac) and self.checker.server_up(n, ports) for n in v.servers}
            up_now[v.name] = health
            weights = {n: self.config.servers[n].weight for n in v.servers if health[n] and n not in self.drained}
            tables[v.name] = scheduler.assign(weights)
            was = self.up.get(v.name, {})
            flush[v.name] = [n for n in v.servers if was.get(n) and not health[n]]
        self.up = up_now
        return tables, flush

    def _apply(self, full: bool = False) -> None:
        assert self.config
        tables, flush = self._compute()
        if not full and tables == self.tables and not any(flush.values()):
            return
        if self.mode == "nft":
            text = nft.render(self.config, self.agent_mac, tables) if full else \
                nft.render_update(self.config, tables, flush)
            nft.load(text)
        else:
            if full:
                nft.load(nft.render(self.config, self.agent_mac, tables, mode="afpacket"))
            for index, v in enumerate(self.config.vips):
                failed = [self.config.servers[n].mac for n in flush.get(v.name, []) if self.config.servers[n].mac]
                self.forwarder.set_table(index, [self.config.servers[n].mac if n else None for n in tables[v.name]],
                                         unpin=failed)
        for v in self.config.vips:
            before = self.tables.get(v.name)
            inherited = self._predecessor.pop(v.name, None)
            if inherited is not None:
                changed = scheduler.moved(inherited, tables[v.name])
                self.log(f"slot table of VIP {v.name}: " + ("the same as the previous agent's" if not changed
                         else f"{changed} slots differ from the previous agent's (health or drains differ)"))
            if before != tables[v.name]:
                live = sorted({n for n in tables[v.name] if n})
                self.log(f"VIP {v.name}: serving with {', '.join(live) or 'no server'}"
                         + (f" ({scheduler.moved(before, tables[v.name])} slots moved)" if before else ""))
        self.tables = tables

    # -- state -----------------------------------------------------------------------------
    def write_state(self) -> None:
        assert self.config
        vips = []
        for vip_index, v in enumerate(self.config.vips):
            table = self.tables.get(v.name, [])
            pinned = self.forwarder.pinned(vip_index) if self.forwarder is not None else None
            servers = []
            for index, name in enumerate(v.servers):
                s = self.config.servers[name]
                servers.append({"name": name, "index": index, "address": str(s.address), "mac": s.mac,
                                "weight": s.weight, "up": self.up.get(v.name, {}).get(name, False),
                                "drained": name in self.drained, "slots": sum(1 for n in table if n == name)})
                if pinned is not None and s.mac:
                    servers[-1]["pinned_flows"] = pinned.get(s.mac.lower(), 0)
            vips.append({"name": v.name, "address": str(v.address), "affinity": v.affinity,
                         "services": [str(s) for s in v.services], "servers": servers,
                         "slot_digest": scheduler.digest(table),  # equal on both nodes of a healthy pair
                         "slot_table": table})  # read back by the next start after a crash
        data = {"pid": os.getpid(), "netns": _netns_id(), "dataplane": self.mode, "interface": self.config.interface,
                "agent": self.config.agent, "agent_mac": self.agent_mac, "inventory": os.path.abspath(self.inventory_path),
                "table": nft.TABLE, "claims": [asdict(c) for c in self.claims], "vips": vips, "updated": time.time(),
                "health": [{"server": t.server, "port": t.port, "up": t.up, "error": t.last_error}
                           for t in (self.checker.targets.values() if self.checker else [])]}
        if self.config.peer:
            found = keepalived.role(self.dir)
            data["pair"] = {"peer": self.config.peer, "peer_address": str(self.config.peer_address),
                            "vrrp_id": self.config.vrrp_id, "priority": self.config.priority,
                            "role": found[0] if found else "unknown", "role_since": found[1] if found else None}
        if self.forwarder is not None:
            data["afpacket_counters"] = {k: {"packets": c[0], "bytes": c[1]} for k, c in self.forwarder.counters.items()}
        write_json(self.state_file, data)

    def _read_control(self) -> None:
        control = read_json(self.control_file) or {}
        drained = set(control.get("drained", []))
        if drained != self.drained:
            self.log(f"drained: {', '.join(sorted(drained)) or 'none'}")
        self.drained = drained

    # -- lifecycle -------------------------------------------------------------------------
    def _signal(self, signum: int, _frame: Any) -> None:
        names = {int(signal.SIGHUP): "reload", int(signal.SIGUSR1): "control", int(signal.SIGUSR2): "role"}
        self.flags.add(names.get(int(signum), "stop"))
        self.wake.set()

    def run_probe_only(self) -> int:
        config = self._load_config()
        answers = self.probe(config)
        checker = self._checker(config)
        checker.round()
        ok = True
        for address, macs in answers.items():
            if macs:
                ok = False
                print(f"VIP {address}: answered by {', '.join(sorted(macs))} (another owner; the agent would refuse)")
            else:
                print(f"VIP {address}: free (no other MAC answers)")
        for target in checker.targets.values():
            mac = config.servers[target.server].mac or "no ARP answer"
            print(f"server {target.server} {target.address}:{target.port} [{mac}]: "
                  f"{'up' if target.up else 'down (' + target.last_error + ')'}")
        checker.close()
        return 0 if ok else 1

    def run(self) -> int:
        if self.probe_only:
            return self.run_probe_only()
        validated = cfg.build(cfg.load(self.inventory_path), self.agent_name)  # usage errors: touch nothing
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, self._signal)
        self._lock = _netns_lock()  # before the try: if another agent runs, touch nothing of its
        self.recover_stale(validated)
        try:
            self.config = self._load_config(validated)
            if self.config.peer:
                self.log(f"pair with {self.config.peer} ({self.config.peer_address}): keepalived owns the VIPs, "
                         "this agent forwards")
            else:
                self._claim_all()
            self.mode = self._choose_mode()
            self._read_control()
            self.checker = self._checker(self.config)
            self.checker.round()
            if self.mode == "afpacket":
                self._start_forwarder()
            self._apply(full=True)
            self.write_state()
            self._heartbeat()
            self.log(f"running: {self.mode} data plane on {self.config.interface}, pid {os.getpid()}")
            self._loop()
        finally:
            self.teardown()
        return 0

    def _claim_all(self) -> None:
        assert self.config
        for v in self.config.vips:
            address = str(v.address)
            if any(c.address == address and c.interface == self.config.interface for c in self.claims):
                continue  # adopted from an agent that died; already ours
            if not vip.present(address, self.config.interface):
                others = vip.probe(self.config.interface, self.agent_mac, address)
                if others and not self.force_claim:
                    raise ArpfixError(f"VIP {address} is already answered on {self.config.interface} by "
                                      f"{', '.join(sorted(others))}; refusing to claim it (use --force-claim)")
            self.claims.append(vip.claim(self.config.interface, self.agent_mac, address, self.force_claim))
            self.write_partial()

    def write_partial(self) -> None:
        """Record claims as soon as they exist, so a crash right after can be cleaned up."""
        write_json(self.state_file, {"pid": os.getpid(), "netns": _netns_id(), "table": nft.TABLE,
                                     "claims": [asdict(c) for c in self.claims], "vips": self._adopted_vips})

    def _start_forwarder(self) -> None:
        from arpfix.agent import afpacket

        assert self.config
        entries = [(i, str(v.address), [(s.protocol, s.port) for s in v.services], v.affinity)
                   for i, v in enumerate(self.config.vips)]
        macs = {n: s.mac for n, s in self.config.servers.items() if s.mac}
        self.forwarder = afpacket.Forwarder(self.config.interface, self.agent_mac, afpacket.listeners(entries), macs)
        self.forwarder.start()

    def _loop(self) -> None:
        assert self.checker
        next_check = time.monotonic() + self.interval
        while True:
            self.wake.wait(max(0.0, next_check - time.monotonic()))
            self.wake.clear()
            flags, self.flags = self.flags, set()
            if "stop" in flags:
                self.log("stopping")
                return
            if "reload" in flags:
                self._reload()
            if "control" in flags:
                self._read_control()
                self._apply()
            if "role" in flags:
                self._log_role()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.interval
                self.checker.round()
                self._apply(full=self._retry_macs())
            if self.forwarder is not None and self.forwarder.error:
                raise ArpfixError(self.forwarder.error)
            self.write_state()
            self._heartbeat()

    def _heartbeat(self) -> None:
        """Pair: tell keepalived's track script that this node can forward (its data plane is
        loaded and every VIP has a server), or stop saying so and let the peer take the VIPs."""
        assert self.config
        if not self.config.peer:
            return
        if all(any(self.tables.get(v.name, [])) for v in self.config.vips):
            keepalived.heartbeat(self.dir, self.mode)
        else:
            keepalived.clear_heartbeat(self.dir)

    def _log_role(self) -> None:
        found = keepalived.role(self.dir)
        if found and found[0] != self._role:
            self.log(f"keepalived: this node is now {found[0]}" + (f" (was {self._role})" if self._role else ""))
            self._role = found[0]

    def _retry_macs(self) -> bool:
        """Every 10 s, ask again for servers that did not answer ARP; True when one now has a MAC."""
        assert self.config
        missing = [n for n, s in self.config.servers.items() if not s.mac]
        if not missing or time.monotonic() < self._next_arp:
            return False
        self._next_arp = time.monotonic() + 10
        found: dict[str, str | None] = {
            n: m for n, m in cfg.resolve_macs(self.config, timeout=0.3).items() if n in missing and m}
        if not found:
            return False
        self.log(f"resolved {', '.join(f'{n} [{m}]' for n, m in sorted(found.items()))}")
        self.config = self.config.with_macs(found)
        if self.forwarder is not None:
            self.forwarder.add_servers({n: m for n, m in found.items() if m})
        return True

    def _reload(self) -> None:
        try:
            new = self._load_config()
        except ArpfixError as exc:
            self.log(f"reload failed, keeping the running configuration: {exc}")
            return
        old = self.config
        assert old
        new_vips = {str(v.address) for v in new.vips} if not new.peer else set()
        for c in list(self.claims):
            if c.address not in new_vips or c.interface != new.interface:
                vip.release(c)
                self.claims.remove(c)
        self.config = new
        for v in new.vips if not new.peer else ():
            if not any(c.address == str(v.address) for c in self.claims):
                others = vip.probe(new.interface, self.agent_mac, str(v.address))
                if others and not self.force_claim:
                    self.log(f"reload: VIP {v.address} answered by {', '.join(sorted(others))}; not claiming it")
                    continue
                self.claims.append(vip.claim(new.interface, self.agent_mac, str(v.address), self.force_claim))
        if self.checker:
            self.checker.close()
        self.checker = self._checker(new)
        self.checker.round()
        # Same structure (VIPs, services, servers, MACs): only slot maps change and pins survive.
        structural = nft.render(old, self.agent_mac, {}, self.mode) != nft.render(new, self.agent_mac, {}, self.mode)
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder.join(timeout=2)
            self._start_forwarder()
        self._apply(full=structural or self.mode == "afpacket")
        self.log(f"reloaded {self.inventory_path} ({'new ruleset' if structural else 'slot tables only'})")

    def teardown(self) -> None:
        """Remove all we installed; safe to call twice and after a partial start."""
        keepalived.clear_heartbeat(self.dir)  # first: keepalived hands the VIPs to the peer at once
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder.join(timeout=2)
        nft.delete()
        for c in self.claims:
            vip.release(c)
        self.claims = []
        if self.checker:
            self.checker.close()
        try:
            os.unlink(self.state_file)
        except FileNotFoundError:
            pass


def _netns_lock() -> socket.socket:
    """One agent per network namespace: an abstract unix socket is per namespace and vanishes
    with its process, even after SIGKILL."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        lock.bind("\0arpfix-agent")
    except OSError:
        lock.close()
        raise ArpfixError("an arpfix agent is already running in this network namespace") from None
    return lock


def _netns_id() -> str:
    """Identifies the network namespace (the same state dir may serve agents in several)."""
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""
