"""Load and validate inventories (arpfix YAML, or Ansible) into frozen settings.

Validation runs before anything connects and reports every error of a file at once, each as
`FILE:LINE: FIELD: what is wrong (what is allowed)`. Values that later reach shell or PowerShell
code (names, addresses, interface and adapter names, ports) are restricted here to what their
target accepts; quoting (arpfix.quoting) is the second wall.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import ipaddress
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from arpfix.errors import UsageError
from arpfix.secrets import SecretRef
from arpfix.settings import (
    AgentSettings,
    Host,
    Inventory,
    LoadBalancer,
    Service,
    SshSettings,
    Vip,
    WinrmSettings,
)
from arpfix.yamlsource import Located, Path, load_yaml, read_text

# Every pattern is a full match: checked with fullmatch() and anchored with \A...\Z, never `$`
# (which matches before a final newline, so "rs1\n" would pass). The anchors keep a caller that
# uses .match() (cli.py's MAC check) just as strict.
HOST_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
VIP_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
LINUX_IFNAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
WINDOWS_ADAPTER = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9 _.()#-]{0,63}\Z")
DNS_NAME = re.compile(r"\A(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?\Z")
SSH_USER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
WINRM_USER = re.compile(r"\A[A-Za-z0-9_.@\\ -]{1,104}\Z")
ENV_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
MAC = re.compile(r"\A[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
BINDING = re.compile(r"\Ams_[a-z0-9_]{1,32}\Z")
# Unicode categories refused in any text field: control (Cc: NUL, newline, tab, ESC, DEL, NEL),
# format (Cf: bidi overrides that make a value display as something else), line/paragraph separators.
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

TOP_KEYS = ("defaults", "groups", "hosts", "vips", "load_balancer", "agent", "profiles")
VAR_KEYS = ("platform", "ssh", "winrm", "method", "nic", "windows_profile", "keep_bindings", "arp_scope", "cloud")
HOST_KEYS = VAR_KEYS + ("address", "connect", "groups")
GROUP_KEYS = ("hosts", "children", "vars")
VIP_KEYS = ("name", "address", "services", "profile", "real_servers", "affinity")
SERVICE_KEYS = ("protocol", "port", "real_port")
PLATFORMS = ("linux", "windows")
METHODS = ("loopback", "host-scope", "dummy", "redirect")
ARP_SCOPES = ("all", "nic")  # unset: all, or nic where container networking is detected
CLOUDS = ("auto", "none", "aws", "gcp", "azure")  # auto: detected from the host's DMI data
WINDOWS_PROFILES = ("loadbalancer.org", "microsoft")
WINRM_AUTH = ("ntlm", "kerberos", "credssp", "certificate", "basic")
AFFINITIES = ("none", "source-ip")

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FieldRule:
    """How one key of an ssh or winrm section is checked (one row of the tables below)."""

    kind: str  # text | port | number | boolean | secret | choice
    pattern: re.Pattern[str] | None = None  # text: the full-match pattern (None: any one-line text)
    what: str = ""  # text: what the pattern describes, for the message
    low: float = 0.0  # number: the allowed range
    high: float = 0.0
    allowed: tuple[str, ...] = ()  # choice: the allowed values


SSH_FIELDS: dict[str, FieldRule] = {
    "user": FieldRule("text", SSH_USER, "user name"),
    "port": FieldRule("port"),
    "key_file": FieldRule("text"),
    "known_hosts": FieldRule("text"),
    "sudo": FieldRule("boolean"),
    "password": FieldRule("secret"),
    "passphrase": FieldRule("secret"),
    "connect_timeout": FieldRule("number", low=0.1, high=3600),
    "command_timeout": FieldRule("number", low=0.1, high=86400),
    "proxy_command": FieldRule("text"),
}
WINRM_FIELDS: dict[str, FieldRule] = {
    "scheme": FieldRule("choice", allowed=("https", "http")),
    "port": FieldRule("port"),
    "auth": FieldRule("choice", allowed=WINRM_AUTH),
    "user": FieldRule("text", WINRM_USER, "user name"),
    "password": FieldRule("secret"),
    "ca_bundle": FieldRule("text"),
    "cert_validation": FieldRule("boolean"),
    "cert_pem": FieldRule("text"),
    "cert_key_pem": FieldRule("text"),
    "connect_timeout": FieldRule("number", low=0.1, high=3600),
    "operation_timeout": FieldRule("number", low=1, high=86400),
}
SSH_KEYS = tuple(SSH_FIELDS)
WINRM_KEYS = tuple(WINRM_FIELDS)


@dataclass(frozen=True)
class InventoryProblem:
    line: int
    field: str
    message: str


class InventoryError(UsageError):
    """All problems of one inventory file; str() is one line per problem."""

    def __init__(self, source: str, problems: list[InventoryProblem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line, p.field))
        lines = []
        for problem in self.problems:
            where = f"{source}:{problem.line}" if problem.line else source
            prefix = f"{problem.field}: " if problem.field else ""
            lines.append(f"{where}: {prefix}{problem.message}")
        super().__init__("\n".join(lines))


def _dotted(path: Path) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            # a name with a control character is shown escaped: one problem stays one line
            name = repr(part) if has_control_character(str(part)) else str(part)
            parts.append(("." if parts else "") + name)
    return "".join(parts)


class _Validator:
    def __init__(self, located: Located, allow_plaintext_secrets: bool) -> None:
        self.doc = located
        self.allow_plaintext = allow_plaintext_secrets
        self.problems: list[InventoryProblem] = []

    # -- reporting ------------------------------------------------------------------------
    def error(self, path: Path, message: str) -> None:
        self.problems.append(InventoryProblem(self.doc.line_of(path), _dotted(path), message))

    def keys(self, mapping: dict[Any, Any], allowed: tuple[str, ...], path: Path) -> None:
        for key in mapping:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f" (allowed: {', '.join(allowed)})"
                self.error(path + (key,), f"unknown key {_quoted(key)}{hint}")

    def mapping(self, value: Any, path: Path, required: bool = False) -> dict[Any, Any]:
        if value is None:
            if required:
                self.error(path, "is required")
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {_kind(value)}")
            return {}
        return value

    def sequence(self, value: Any, path: Path) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"must be a list, not {_kind(value)}")
            return []
        return value

    def text(self, value: Any, path: Path, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        """A text value: a full match of `pattern`, or (no pattern) non-empty text without control characters."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(path, f"must be text, not {_kind(value)}")
            return None
        text = str(value)
        if pattern is not None:
            if not pattern.fullmatch(text):
                self.error(path, f"invalid {what or 'value'} {text!r}")
                return None
            return text
        if not text or has_control_character(text):
            self.error(path, f"must be non-empty text on one line without control characters, not {text!r}")
            return None
        return text

    def choice(self, value: Any, path: Path, allowed: tuple[str, ...]) -> str | None:
        if value is None:
            return None
        if value not in allowed:
            hint = _did_you_mean(value, allowed)
            self.error(path, f"unknown value {value!r} (allowed: {', '.join(allowed)}){hint}")
            return None
        return str(value)

    def port(self, value: Any, path: Path) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.error(path, f"port must be a whole number from 1 to 65535, not {value!r}")
            return None
        return value

    def number(self, value: Any, path: Path, low: float, high: float) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.error(path, f"must be a number from {low:g} to {high:g}, not {value!r}")
            return None
        return float(value)

    def boolean(self, value: Any, path: Path) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, not {value!r}")
            return None
        return value

    def address(self, value: Any, path: Path) -> IPAddr | None:
        if value is None:
            self.error(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(path, f"must be an IPv4 or IPv6 address, not {_kind(value)}")
            return None
        if isinstance(value, str) and has_control_character(value):
            self.error(path, f"invalid IP address {value!r}")
            return None
        try:
            return ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
        except ValueError:
            self.error(path, f"invalid IP address {value!r}")
            return None

    def secret(self, value: Any, path: Path) -> SecretRef | None:
        if value is None:
            return None
        if isinstance(value, str):
            if self.allow_plaintext:
                return SecretRef("plaintext", "inventory", value)
            self.error(
                path,
                "plaintext secrets are refused; use {env: VAR}, {file: PATH} or {prompt: true}"
                " (or --allow-plaintext-secrets)",
            )
            return None
        if not isinstance(value, dict) or len(value) != 1:
            self.error(path, "must be one of {env: VAR}, {file: PATH}, {prompt: true}")
            return None
        (kind, source), = value.items()
        if kind == "env":
            if not isinstance(source, str) or not ENV_NAME.fullmatch(source):
                self.error(path + ("env",), f"invalid environment variable name {source!r}")
                return None
            return SecretRef("env", source)
        if kind == "file":
            name = self.text(source, path + ("file",))
            return SecretRef("file", name) if name else None
        if kind == "prompt":
            if source is not True:
                self.error(path + ("prompt",), "must be true")
                return None
            return SecretRef("prompt", _dotted(path))
        self.error(path + (kind,), f"unknown secret source '{kind}' (allowed: env, file, prompt)")
        return None

    # -- sections -------------------------------------------------------------------------
    def host_vars(self, raw: dict[Any, Any], path: Path, allowed: tuple[str, ...]) -> dict[str, Any]:
        """Check one layer of host variables; return only valid ones (raw values)."""
        self.keys(raw, allowed, path)
        checked: dict[str, Any] = {}
        if "platform" in raw:
            platform = self.choice(raw["platform"], path + ("platform",), PLATFORMS)
            if platform:
                checked["platform"] = platform
        if "method" in raw:
            method = self.choice(raw["method"], path + ("method",), METHODS)
            if method:
                checked["method"] = method
        for key, choices in (("arp_scope", ARP_SCOPES), ("cloud", CLOUDS)):
            if key in raw:
                value = self.choice(raw[key], path + (key,), choices)
                if value:
                    checked[key] = value
        if "windows_profile" in raw:
            profile = self.choice(raw["windows_profile"], path + ("windows_profile",), WINDOWS_PROFILES)
            if profile:
                checked["windows_profile"] = profile
        if "nic" in raw:
            nic = self.text(raw["nic"], path + ("nic",))
            if nic:
                checked["nic"] = (nic, path + ("nic",))
        if "keep_bindings" in raw:
            bindings = []
            for index, item in enumerate(self.sequence(raw["keep_bindings"], path + ("keep_bindings",))):
                name = self.text(item, path + ("keep_bindings", index), BINDING, "binding component id")
                if name:
                    bindings.append(name)
            checked["keep_bindings"] = tuple(bindings)
        if "ssh" in raw:
            checked["ssh"] = self.section(self.mapping(raw["ssh"], path + ("ssh",)), SSH_FIELDS, path + ("ssh",))
        if "winrm" in raw:
            checked["winrm"] = self.section(self.mapping(raw["winrm"], path + ("winrm",)), WINRM_FIELDS, path + ("winrm",))
        return checked

    def section(self, raw: dict[Any, Any], rules: dict[str, FieldRule], path: Path) -> dict[str, Any]:
        """Check an ssh or winrm mapping against its table of field rules; return only valid values."""
        self.keys(raw, tuple(rules), path)
        out: dict[str, Any] = {}
        for key, rule in rules.items():
            if key in raw:
                value = self.field(rule, raw[key], path + (key,))
                if value is not None:
                    out[key] = value
        return out

    def field(self, rule: FieldRule, value: Any, path: Path) -> Any:
        if rule.kind == "text":
            return self.text(value, path, rule.pattern, rule.what)
        if rule.kind == "port":
            return self.port(value, path)
        if rule.kind == "number":
            return self.number(value, path, rule.low, rule.high)
        if rule.kind == "boolean":
            return self.boolean(value, path)
        if rule.kind == "secret":
            return self.secret(value, path)
        return self.choice(value, path, rule.allowed)


def has_control_character(text: str) -> bool:
    """True when the text holds a character of CONTROL_CATEGORIES (newline, tab, ESC, NUL, bidi ...)."""
    return any(unicodedata.category(char) in CONTROL_CATEGORIES for char in text)


def _quoted(name: Any) -> str:
    """'name' for a message; escaped (repr) when it is not plain text, so the message stays one line."""
    if isinstance(name, str) and not has_control_character(name):
        return f"'{name}'"
    return repr(name)


def _did_you_mean(word: Any, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), candidates, n=1)
    return f"; did you mean {_quoted(close[0])}?" if close else ""


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "text"


def _merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win; ssh and winrm mappings merge key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ("ssh", "winrm"):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def validate(
    located: Located, *, allow_plaintext_secrets: bool = False, default_ssh: dict[str, Any] | None = None
) -> Inventory:
    """Turn a parsed document into an Inventory, or raise InventoryError with every problem."""
    v = _Validator(located, allow_plaintext_secrets)
    doc = located.data
    if doc is None:
        raise InventoryError(located.source, [InventoryProblem(1, "", "the inventory is empty")])
    if not isinstance(doc, dict):
        raise InventoryError(
            located.source,
            [InventoryProblem(located.line_of(()), "", f"the inventory must be a mapping, not {_kind(doc)}")],
        )
    v.keys(doc, TOP_KEYS, ())

    defaults = v.host_vars(v.mapping(doc.get("defaults"), ("defaults",)), ("defaults",), VAR_KEYS)

    # groups: members and vars
    raw_groups = v.mapping(doc.get("groups"), ("groups",))
    raw_hosts = v.mapping(doc.get("hosts"), ("hosts",), required=True)
    group_members: dict[str, list[str]] = {}
    group_children: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}
    for name, body in raw_groups.items():
        path = ("groups", name)
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            v.error(path, f"invalid group name {name!r}")
            continue
        if name in raw_hosts:
            v.error(path, f"group '{name}' has the same name as a host")
        body = v.mapping(body, path)
        v.keys(body, GROUP_KEYS, path)
        members = []
        for index, member in enumerate(v.sequence(body.get("hosts"), path + ("hosts",))):
            if not isinstance(member, str):
                v.error(path + ("hosts", index), f"must be a host name, not {_kind(member)}")
            elif member not in raw_hosts:
                hint = _did_you_mean(member, [str(h) for h in raw_hosts])
                v.error(path + ("hosts", index), f"unknown host {member!r}{hint}")
            else:
                members.append(member)
        group_members[name] = members
        children = []
        for index, child in enumerate(v.sequence(body.get("children"), path + ("children",))):
            if child not in raw_groups:
                v.error(path + ("children", index), f"unknown group {child!r}")
            else:
                children.append(child)
        group_children[name] = children
        group_vars[name] = v.host_vars(v.mapping(body.get("vars"), path + ("vars",)), path + ("vars",), VAR_KEYS)

    # host -> groups (direct), from both sides
    host_groups: dict[str, list[str]] = {str(h): [] for h in raw_hosts}
    for group, members in group_members.items():
        for member in members:
            host_groups[member].append(group)
    for name, body in raw_hosts.items():
        if isinstance(body, dict) and "groups" in body:
            for index, group in enumerate(v.sequence(body["groups"], ("hosts", name, "groups"))):
                if group not in raw_groups:
                    v.error(("hosts", name, "groups", index), f"unknown group {group!r}")
                elif group not in host_groups[name]:
                    host_groups[name].append(group)
                    group_members.setdefault(group, []).append(name)

    # expand children: a host in a child group is in the parent too; child vars beat parent vars
    depth = _group_depths(group_children, v)
    group_order = {name: index for index, name in enumerate(raw_groups)}
    expanded_groups: dict[str, set[str]] = {}

    def members_of(group: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if group in expanded_groups:
            return expanded_groups[group]
        result = set(group_members.get(group, []))
        for child in group_children.get(group, []):
            if child not in seen:
                result |= members_of(child, seen | {group})
        expanded_groups[group] = result
        return result

    for group in raw_groups:
        if isinstance(group, str):
            members_of(group)

    hosts: dict[str, Host] = {}
    seen_addresses: dict[IPAddr, str] = {}
    for name, body in raw_hosts.items():
        path = ("hosts", name)
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            v.error(path, f"invalid host name {name!r} (letters, digits, '_', '.', '-'; at most 63)")
            continue
        body = v.mapping(body, path, required=True)
        own = v.host_vars(body, path, HOST_KEYS)
        memberships = sorted(
            (g for g, members in expanded_groups.items() if name in members),
            key=lambda g: (depth.get(g, 0), group_order.get(g, 0)),
        )
        layers = [(("defaults",), defaults)] + [(("groups", g, "vars"), group_vars.get(g, {})) for g in memberships]
        layers.append((path, own))
        resolved = _merge([layer for _, layer in layers])
        address = v.address(body.get("address"), path + ("address",))
        if address is not None:
            if address in seen_addresses:
                v.error(path + ("address",), f"address {address} is also host '{seen_addresses[address]}'")
            else:
                seen_addresses[address] = name
            if address.is_loopback or address.is_unspecified or address.is_multicast:
                v.error(path + ("address",), f"{address} cannot be a server's own address")
        connect = body.get("connect")
        if connect is not None:
            text = v.text(connect, path + ("connect",))
            if text and not (DNS_NAME.fullmatch(text) or _is_ip(text)):
                v.error(path + ("connect",), f"invalid host name or address {text!r}")
                connect = None
            else:
                connect = text
        platform = resolved.get("platform")
        if platform is None and "platform" not in body:
            v.error(path + ("platform",), "is required (linux or windows), here or in a group or defaults")
        nic = None
        if "nic" in resolved:
            nic, nic_path = resolved["nic"]
            pattern = WINDOWS_ADAPTER if platform == "windows" else LINUX_IFNAME
            if not pattern.fullmatch(nic) or nic in (".", ".."):
                what = "Windows adapter name" if platform == "windows" else "Linux interface name"
                v.error(nic_path, f"invalid {what} {nic!r}")
                nic = None
        if address is None or platform is None:
            continue
        try:
            ssh = SshSettings(**resolved.get("ssh", {}))
            winrm_values = dict(resolved.get("winrm", {}))
            if "port" not in winrm_values and winrm_values.get("scheme") == "http":
                winrm_values["port"] = 5985
            winrm = WinrmSettings(**winrm_values)
        except TypeError as exc:  # pragma: no cover - keys are checked above
            v.error(path, str(exc))
            continue
        hosts[name] = Host(
            name=name,
            platform=platform,
            address=address,
            connect=str(connect) if connect else str(address),
            groups=tuple(memberships),
            ssh=ssh,
            winrm=winrm,
            method=resolved.get("method", "loopback"),
            nic=nic,
            windows_profile=resolved.get("windows_profile", "loadbalancer.org"),
            keep_bindings=resolved.get("keep_bindings", ()),
            arp_scope=resolved.get("arp_scope"),
            cloud=resolved.get("cloud", "auto"),
            line=located.line_of(path),
            files=_named_files(located, layers, platform, resolved),
        )
        if platform == "windows" and resolved.get("method", "loopback") != "loopback":
            v.error(path + ("method",), "Windows hosts support only the 'loopback' method")

    profiles = _profiles(v, v.mapping(doc.get("profiles"), ("profiles",)))
    vips = _vips(v, doc.get("vips"), hosts, raw_hosts, expanded_groups, profiles, seen_addresses)
    load_balancer = _load_balancer(v, doc.get("load_balancer"))
    agent = _agent(v, doc.get("agent"), hosts, raw_hosts)

    if v.problems:
        raise InventoryError(located.source, v.problems)
    return Inventory(
        path=located.source,
        hosts=hosts,
        groups={g: tuple(h for h in hosts if h in members) for g, members in expanded_groups.items()},
        vips=tuple(vips),
        load_balancer=load_balancer,
        agent=agent,
    )


FILE_FIELDS = {"linux": (("ssh", "key_file"),),
               "windows": (("winrm", "ca_bundle"), ("winrm", "cert_pem"), ("winrm", "cert_key_pem"))}


def _named_files(located: Located, layers: list[tuple[Path, dict[str, Any]]], platform: str,
                 resolved: dict[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """The local files a host's settings name, each with the line of the layer that sets it."""
    out = []
    for section, key in FILE_FIELDS.get(platform, ()):
        value = resolved.get(section, {}).get(key)
        if not value:
            continue
        origin = next(layer_path for layer_path, layer in reversed(layers) if key in layer.get(section, {}))
        out.append((_dotted(origin + (section, key)), str(value), located.line_of(origin + (section, key))))
    return tuple(out)


def check_files(inventory: Inventory, hosts: list[Host]) -> None:
    """`inventory check`: every key file, CA bundle and client certificate the selected hosts name
    can be read here; InventoryError (exit 2) with file:line otherwise, before anything connects.
    One line per file, at the first place that names it, with the hosts that use it."""
    found: dict[str, tuple[int, str, str, list[str]]] = {}  # path -> (line, field, problem, hosts)
    for host in hosts:
        for field, path, line in host.files:
            if path in found:
                found[path][3].append(host.name)
                continue
            full = os.path.expanduser(path)
            if not os.path.exists(full):
                message = "no such file"
            elif os.path.isdir(full) and not field.endswith("ca_bundle"):  # a CA directory is fine (requests)
                message = "is a directory, not a file"
            elif not os.access(full, os.R_OK):
                message = "not readable by this user"
            else:
                message = ""
            found[path] = (line, field, message, [host.name])
    problems = []
    for path, (line, field, message, users) in found.items():
        if message:
            who = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
            problems.append(InventoryProblem(line, field, f"{path}: {message} ({'host' if len(users) == 1 else 'hosts'} {who})"))
    if problems:
        raise InventoryError(inventory.path, problems)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _group_depths(children: dict[str, list[str]], v: _Validator) -> dict[str, int]:
    """Depth of each group below its top-most parent; a cycle is an error."""
    parents: dict[str, list[str]] = {}
    for parent, kids in children.items():
        for kid in kids:
            parents.setdefault(kid, []).append(parent)
    depth: dict[str, int] = {}

    def walk(group: str, trail: tuple[str, ...]) -> int:
        if group in depth:
            return depth[group]
        if group in trail:
            v.error(("groups", group, "children"), f"group cycle: {' -> '.join(trail + (group,))}")
            return 0
        value = max((walk(p, trail + (group,)) + 1 for p in parents.get(group, [])), default=0)
        depth[group] = value
        return value

    for group in children:
        walk(group, ())
    return depth


def _services(v: _Validator, raw: Any, path: Path) -> list[Service]:
    services = []
    for index, item in enumerate(v.sequence(raw, path)):
        item_path = path + (index,)
        body = v.mapping(item, item_path, required=True)
        v.keys(body, SERVICE_KEYS, item_path)
        protocol = v.choice(body.get("protocol", "tcp"), item_path + ("protocol",), ("tcp", "udp"))
        if "port" not in body:
            v.error(item_path + ("port",), "is required")
        port = v.port(body.get("port"), item_path + ("port",))
        real_port = v.port(body.get("real_port"), item_path + ("real_port",))
        if port is not None and real_port is not None and real_port != port:
            v.error(
                item_path + ("real_port",),
                f"real-server port {real_port} differs from VIP port {port}: DR mode cannot translate ports",
            )
        if protocol and port:
            services.append(Service(protocol, port))
    return services


def _profiles(v: _Validator, raw: dict[Any, Any]) -> dict[str, list[Service]]:
    profiles = {}
    for name, body in raw.items():
        if not isinstance(name, str) or not VIP_NAME.fullmatch(name):
            v.error(("profiles", name), f"invalid profile name {name!r}")
            continue
        profiles[name] = _services(v, body, ("profiles", name))
    return profiles


def _vips(
    v: _Validator,
    raw: Any,
    hosts: dict[str, Host],
    raw_hosts: dict[Any, Any],
    groups: dict[str, set[str]],
    profiles: dict[str, list[Service]],
    host_addresses: dict[IPAddr, str],
) -> list[Vip]:
    vips: list[Vip] = []
    seen_names: set[str] = set()
    seen_addresses: dict[IPAddr, str] = {}
    for index, item in enumerate(v.sequence(raw, ("vips",))):
        path: Path = ("vips", index)
        body = v.mapping(item, path, required=True)
        v.keys(body, VIP_KEYS, path)
        name = v.text(body.get("name"), path + ("name",), VIP_NAME, "VIP name")
        if "name" not in body:
            v.error(path + ("name",), "is required")
        if name in seen_names:
            v.error(path + ("name",), f"duplicate VIP name {name!r}")
        address = v.address(body.get("address"), path + ("address",))
        if address is not None:
            problem = _vip_address_problem(address)
            if problem:
                v.error(path + ("address",), problem)
            if address in host_addresses:
                v.error(path + ("address",), f"VIP {address} is the own address of host '{host_addresses[address]}'")
            if address in seen_addresses:
                v.error(path + ("address",), f"VIP {address} is also VIP '{seen_addresses[address]}'")
            seen_addresses[address] = name or "?"
        services = _services(v, body.get("services"), path + ("services",))
        if "profile" in body:
            profile = body["profile"]
            if profile not in profiles:
                v.error(path + ("profile",), f"unknown profile {profile!r} (defined: {', '.join(profiles) or 'none'})")
            else:
                services += [s for s in profiles[profile] if s not in services]
        if not services and "services" not in body and "profile" not in body:
            v.error(path + ("services",), "a VIP needs at least one service (services or profile)")
        members: dict[str, None] = {}  # ordered, O(1) membership
        raw_members = v.sequence(body.get("real_servers"), path + ("real_servers",))
        if not raw_members:
            v.error(path + ("real_servers",), "is required: host or group names")
        for member_index, member in enumerate(raw_members):
            if not isinstance(member, str):
                v.error(path + ("real_servers", member_index), f"must be a host or group name, not {_kind(member)}")
                continue
            if member in raw_hosts:
                names = [member]
            elif member in groups:
                names = [h for h in raw_hosts if h in groups[member]]
            else:
                candidates = [str(h) for h in raw_hosts] + list(groups)
                hint = _did_you_mean(member, candidates)
                v.error(path + ("real_servers", member_index), f"unknown host or group {member!r}{hint}")
                continue
            for host_name in names:
                members.setdefault(host_name)
        affinity = v.choice(body.get("affinity", "none"), path + ("affinity",), AFFINITIES) or "none"
        if name and address is not None:
            seen_names.add(name)
            vips.append(Vip(name, address, tuple(services), tuple(m for m in members if m in hosts), affinity))
    return vips


def _vip_address_problem(address: IPAddr) -> str:
    for attribute, what in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute):
            return f"VIP {address} is a {what} address"
    if isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address("255.255.255.255"):
        return "VIP is the broadcast address"
    return ""


def _load_balancer(v: _Validator, raw: Any) -> LoadBalancer | None:
    if raw is None:
        return None
    body = v.mapping(raw, ("load_balancer",))
    v.keys(body, ("name", "macs", "addresses"), ("load_balancer",))
    name = v.text(body.get("name", "load-balancer"), ("load_balancer", "name"), HOST_NAME, "name")
    macs = []
    for index, mac in enumerate(v.sequence(body.get("macs"), ("load_balancer", "macs"))):
        text = v.text(mac, ("load_balancer", "macs", index), MAC, "MAC address (aa:bb:cc:dd:ee:ff)")
        if text:
            macs.append(text.lower())
    addresses = []  # the load balancer's own addresses: the real servers' route to them is audited
    for index, value in enumerate(v.sequence(body.get("addresses", []), ("load_balancer", "addresses"))):
        address = v.address(value, ("load_balancer", "addresses", index))
        if address is not None:
            addresses.append(str(address))
    return LoadBalancer(name or "load-balancer", tuple(macs), tuple(addresses))


def _agent(v: _Validator, raw: Any, hosts: dict[str, Host], raw_hosts: dict[Any, Any]) -> AgentSettings | None:
    if raw is None:
        return None
    body = v.mapping(raw, ("agent",))
    v.keys(body, ("host", "hosts", "interface", "vrrp_id"), ("agent",))
    if "hosts" in body:  # a keepalived pair (docs/agent.md)
        if "host" in body:
            v.error(("agent", "host"), "give either host (one agent) or hosts (a pair), not both")
            return None
        names = v.sequence(body["hosts"], ("agent", "hosts"))
        if len(names) != 2:
            v.error(("agent", "hosts"), "must name exactly two hosts (the pair)")
            return None
        path_names = [(("agent", "hosts", i), name) for i, name in enumerate(names)]
    else:
        path_names = [(("agent", "host"), body.get("host"))]
    for path, name in path_names:
        if name is None:
            v.error(path, "is required: the Linux host that runs probes and the agent")
            return None
        if not isinstance(name, str):
            v.error(path, f"must be a host name, not {_kind(name)}")
            return None
        if name not in raw_hosts:
            v.error(path, f"unknown host {name!r}{_did_you_mean(name, [str(h) for h in raw_hosts])}")
            return None
        if name in hosts and hosts[name].platform != "linux":
            v.error(path, f"the agent host must be a linux host; '{name}' is {hosts[name].platform}")
    members = tuple(str(name) for _path, name in path_names)
    if len(set(members)) != len(members):
        v.error(("agent", "hosts"), "must name two different hosts")
    interface = v.text(body.get("interface"), ("agent", "interface"), LINUX_IFNAME, "Linux interface name")
    vrrp_id = v.number(body.get("vrrp_id"), ("agent", "vrrp_id"), 1, 255)
    if vrrp_id is not None and vrrp_id != int(vrrp_id):
        v.error(("agent", "vrrp_id"), f"must be a whole number from 1 to 255, not {body.get('vrrp_id')!r}")
    return AgentSettings(members[0], interface, members, int(vrrp_id) if vrrp_id is not None else 51)


# -- loading --------------------------------------------------------------------------------


def _looks_like_ansible(path: str, data: Any) -> bool:
    if os.path.isdir(path):
        return True
    if isinstance(data, dict) and data:
        if "all" in data:
            return True
        # Ansible YAML: every top-level value is a group {hosts, children, vars}
        return not any(key in TOP_KEYS for key in data) and all(
            isinstance(value, dict) and value and set(value) <= {"hosts", "children", "vars"}
            for value in data.values()
        )
    return False


def load_inventory(
    path: str, *, allow_plaintext_secrets: bool = False, inventory_format: str = "auto"
) -> Inventory:
    """Load an arpfix YAML or Ansible inventory and validate it; UsageError (exit 2) on any problem."""
    if inventory_format not in ("auto", "arpfix", "ansible"):
        raise UsageError(f"unknown inventory format {inventory_format!r}")
    located: Located | None = None
    extension = os.path.splitext(path)[1].lower()
    # Ansible's order: the extension first (its yaml plugin reads only .yml/.yaml/.json or no
    # extension; .ini is INI), then the content (YAML that is not a mapping is tried as INI)
    if inventory_format == "arpfix" or (inventory_format == "auto" and not os.path.isdir(path)
                                        and extension not in INI_EXTENSIONS):
        text = read_text(path)
        try:
            located = load_yaml(text, path)
        except UsageError:
            if inventory_format == "arpfix" or not _maybe_ini(text):
                raise
            located = None
        if (located is not None and inventory_format == "auto" and extension not in YAML_EXTENSIONS
                and isinstance(located.data, str) and _maybe_ini(text)):
            located = None  # `rs1 ansible_host=...` on the first line: one YAML string, an INI host to Ansible
    if located is not None and (inventory_format == "arpfix" or not _looks_like_ansible(path, located.data)):
        return validate(located, allow_plaintext_secrets=allow_plaintext_secrets)
    from arpfix.ansible_inventory import load_ansible_inventory

    raw, host_lines = load_ansible_inventory(path)
    skipped = raw.pop("_skipped", {})
    lines: dict[Path, int] = {("hosts", name): line for name, line in host_lines.items() if line}
    inventory = validate(Located(raw, lines, path), allow_plaintext_secrets=allow_plaintext_secrets)
    if not skipped:
        return inventory
    return dataclasses.replace(inventory, skipped=tuple((name, tuple(groups)) for name, groups in skipped.items()))


INI_EXTENSIONS = (".ini",)
YAML_EXTENSIONS = (".yml", ".yaml", ".json")


def _maybe_ini(text: str) -> bool:
    if re.search(r"^\s*\[[^\]]+\]\s*$", text, re.MULTILINE) or "=" in text:
        return True
    # a bare list of host names, one a line (what ansible-inventory reads as ungrouped hosts)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", ";"))]
    return bool(lines) and all(re.fullmatch(r"[A-Za-z0-9_.:\[\]-]+", line) for line in lines)


def skipped_notes(inventory: Inventory, limit: tuple[str, ...] | list[str] | None) -> list[str]:
    """One note per host the loader left out (ansible_connection=local) that --limit selects."""
    patterns = [p.strip() for item in limit or () for p in item.split(",") if p.strip()]
    notes = []
    for name, groups in inventory.skipped:
        if patterns and not any(fnmatch.fnmatchcase(n, p) for p in patterns for n in (name, *groups)):
            continue
        notes.append(f"{inventory.path}: host '{name}' is skipped: ansible_connection=local "
                     "(arpfix reaches hosts over SSH or WinRM only)")
    return notes


def select_hosts(inventory: Inventory, limit: tuple[str, ...] | list[str] | None) -> list[Host]:
    """Hosts whose name or one of whose groups matches any pattern (globs); all when no limit.

    A pattern that matches nothing is a usage error, so a typo never silently selects no host.
    """
    if not limit:
        return list(inventory.hosts.values())
    patterns = [p.strip() for item in limit for p in item.split(",") if p.strip()]
    chosen: set[str] = set()
    for pattern in patterns:
        matched = {name for name in inventory.hosts if fnmatch.fnmatchcase(name, pattern)}
        for group, members in inventory.groups.items():
            if fnmatch.fnmatchcase(group, pattern):
                matched.update(members)
        if not matched:
            if any(fnmatch.fnmatchcase(n, pattern) for name, groups in inventory.skipped for n in (name, *groups)):
                raise UsageError(f"--limit {pattern!r} matches only hosts arpfix skips (ansible_connection=local) "
                                 f"in {inventory.path}")
            raise UsageError(f"--limit {pattern!r} matches no host or group in {inventory.path}")
        chosen |= matched
    return [host for name, host in inventory.hosts.items() if name in chosen]
