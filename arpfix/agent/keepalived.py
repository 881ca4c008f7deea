"""The pair: keepalived (VRRP) owns the VIPs, the agent on each node only forwards.

`files` renders, for one node, keepalived's configuration and the two scripts it calls: the track
script (check.sh: MASTER only while this node's agent runs and its table is loaded) and the notify
script (notify.sh: the role goes to the agent's state directory, the agent is woken with SIGUSR2).
Both nodes compute the same slot table for the same healthy servers (arpfix.agent.scheduler), so a
flow keeps its server when the VIPs move. Gratuitous ARP and unsolicited NA are keepalived's: on
becoming MASTER and every garp_master_refresh seconds (vrrp.c vrrp_send_link_update sends GARP for
IPv4 and unsolicited NA for IPv6 addresses, advertised and excluded alike).
"""

from __future__ import annotations

import os
import re

from arpfix.agent.config import IFNAME, AgentConfig
from arpfix.errors import UsageError

# keepalived strings are not shell-quoted: the state directory must be a plain absolute path.
PLAIN_PATH = re.compile(r"\A/[A-Za-z0-9_./-]{0,200}\Z")
ROUTER_ID = re.compile(r"\A[A-Za-z0-9_-]{1,60}\Z")
ROLES = ("MASTER", "BACKUP", "FAULT", "STOP")


def files(config: AgentConfig, state_dir: str, advert_int: float = 1.0, garp_refresh: int = 10,
          check_interval: int = 1) -> dict[str, str]:
    """{file name: text} for this node: keepalived.conf, check.sh, notify.sh (all in state_dir)."""
    from arpfix.templating import render

    if config.peer is None or config.peer_address is None:
        raise UsageError("not a pair: give the inventory `agent: {hosts: [a, b]}` (docs/agent.md)")
    if not PLAIN_PATH.match(state_dir) or ".." in state_dir.split("/"):
        raise UsageError(f"state directory {state_dir!r} must be an absolute path of letters, digits and _./-")
    if not IFNAME.match(config.interface):
        raise UsageError(f"invalid interface name {config.interface!r}")
    if not ROUTER_ID.match(config.agent):
        raise UsageError(f"agent host name {config.agent!r} cannot name a keepalived router_id")
    if config.address.version != config.peer_address.version:
        raise UsageError("the two nodes of the pair need addresses of the same family (VRRP unicast)")
    family = config.address.version
    primary, excluded = [], []
    for vip in config.vips:
        entry = (f"{vip.address}/32 dev {config.interface}" if vip.family == 4
                 else f"{vip.address}/128 dev {config.interface}")
        if vip.family == 4 and len(f"{config.interface}:afx") <= 15:
            entry += f" label {config.interface}:afx"
        (primary if vip.family == family else excluded).append(entry)
    # VRRPv3 (RFC 5798) allows sub-second adverts (centiseconds); v2 whole seconds only.
    version = 3 if advert_int != int(advert_int) or family == 6 else 2
    values = {"node": config.agent, "peer": config.peer, "dir": state_dir, "interface": config.interface,
              "vrrp_id": config.vrrp_id, "priority": config.priority, "advert_int": f"{advert_int:g}",
              "version": version, "address": str(config.address), "peer_address": str(config.peer_address),
              "primary": primary, "excluded": excluded, "garp_delay": 2, "garp_refresh": garp_refresh,
              "check_interval": check_interval, "stale": max(3, 3 * check_interval)}
    return {"keepalived.conf": render("agent/keepalived.conf.j2", **values),
            "check.sh": render("agent/keepalived-check.sh.j2", **values),
            "notify.sh": render("agent/keepalived-notify.sh.j2", **values)}


def write(config: AgentConfig, state_dir: str, **options: float) -> list[str]:
    """Write this node's keepalived files into state_dir (atomically each); their paths."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    written = []
    for name, text in files(config, state_dir, **options).items():  # type: ignore[arg-type]
        path = os.path.join(state_dir, name)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755 if name.endswith(".sh") else 0o644)
        os.replace(tmp, path)
        written.append(path)
    return written


def role(state_dir: str) -> tuple[str, float] | None:
    """(role, since epoch) as keepalived last reported it through notify.sh, or None."""
    try:
        with open(os.path.join(state_dir, "role")) as handle:
            parts = handle.read().split()
    except OSError:
        return None
    if len(parts) != 2 or parts[0] not in ROLES or not parts[1].isdigit():
        return None
    return parts[0], float(parts[1])


def heartbeat(state_dir: str, mode: str) -> None:
    """The line check.sh reads: this agent's pid, the time, the data plane (written every round)."""
    import time

    path = os.path.join(state_dir, "ready")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{os.getpid()} {int(time.time())} {mode}\n")
    os.replace(tmp, path)


def clear_heartbeat(state_dir: str) -> None:
    try:
        os.unlink(os.path.join(state_dir, "ready"))
    except FileNotFoundError:
        pass
