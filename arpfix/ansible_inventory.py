"""Read an Ansible inventory and turn it into arpfix's raw inventory format.

Administrators already describe their servers in Ansible inventories, so arpfix reads them too.
There are two ways to read one, and both give the same result:

* with Ansible: when `ansible-inventory` is available we run `ansible-inventory -i SRC --list`
  (only the static `ini`, `yaml` and `toml` inventory plugins and the `host_group_vars` vars plugin
  are enabled, so nothing is executed and nothing talks to the network) and read its JSON;
* without Ansible: static INI and YAML inventories (a file or a directory of them) are parsed here,
  together with the `group_vars/` and `host_vars/` folders next to them, and variables are
  resolved with Ansible's precedence.

Either way we end up with the resolved variables of every host and the (flattened) members of
every group, which `_to_arpfix` maps onto arpfix's own keys (see docs/inventory.md). The result is
a plain dict, exactly what `yaml.safe_load` of an arpfix YAML file would give; the caller validates
it like any arpfix file. Nothing here decides whether a value is acceptable: odd values are passed
on so that the validator reports them with the host's line.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

import yaml

from arpfix.errors import UsageError
from arpfix.yamlsource import Located, load_yaml, read_text

try:  # libyaml is much faster for large inventories
    _YAML_LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _YAML_LOADER = yaml.SafeLoader

ANSIBLE_TIMEOUT = 120.0
STATIC_HINT = "make a static copy with `ansible-inventory -i SOURCE --list --yaml > static.yml`"
YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# files skipped in an inventory directory (Ansible's INVENTORY_IGNORE_EXTS default)
IGNORED_EXTENSIONS = (
    ".pyc",
    ".pyo",
    ".swp",
    ".bak",
    "~",
    ".rpm",
    ".md",
    ".txt",
    ".rst",
    ".orig",
    ".cfg",
    ".retry",
)
IGNORED_NAMES = ("group_vars", "host_vars", "vars_plugins")
TRUE_WORDS = frozenset(("y", "yes", "on", "1", "true", "t"))
FALSE_WORDS = frozenset(("n", "no", "off", "0", "false", "f"))

LINUX_CONNECTIONS = frozenset(("ssh", "smart", "paramiko", "paramiko_ssh"))
WINDOWS_CONNECTIONS = frozenset(("winrm", "psrp"))

# arpfix per-host variables: Ansible variable -> arpfix host key
HOST_KEYS = {
    "arpfix_method": "method",
    "arpfix_nic": "nic",
    "arpfix_windows_profile": "windows_profile",
    "arpfix_keep_bindings": "keep_bindings",
    "arpfix_arp_scope": "arp_scope",
    "arpfix_cloud": "cloud",
}
# arpfix top-level sections, normally set in group `all`
TOP_KEYS = {
    "arpfix_vips": "vips",
    "arpfix_load_balancer": "load_balancer",
    "arpfix_agent": "agent",
    "arpfix_profiles": "profiles",
}


def load_ansible_inventory(
    source: str, *, use_ansible: bool | None = None
) -> tuple[dict[str, Any], dict[str, int]]:
    """Read the Ansible inventory `source` (a file or a directory).

    Returns (raw, lines): raw is an arpfix inventory as plain data, lines maps each host name to
    the line of `source` that first defines it (0 when unknown, and always for a directory).
    use_ansible: None = run ansible-inventory when it is available, True = require it, False = never run it.
    Raises UsageError with one line on unreadable or broken input.
    """
    if not os.path.exists(source):
        raise UsageError(f"{source}: no such inventory file or directory")
    program = None if use_ansible is False else find_ansible_inventory()
    if use_ansible and program is None:
        raise UsageError("ansible-inventory was not found on PATH (install ansible-core)")
    if program is not None:
        hostvars, groups = run_ansible_inventory(program, source)
        try:  # for line numbers and host order only: no reason to refuse what Ansible read
            parsed = parse_inventory(source)
            lines, order = parsed.lines, list(parsed.host_vars)
        except (UsageError, OSError):
            lines, order = {}, []
    else:
        parsed = parse_inventory(source)
        hostvars, groups, lines = parsed.resolve(), parsed.flat_groups(), parsed.lines
        order = list(parsed.host_vars)
    # hosts in the order the inventory defines them (ansible-inventory sorts them by name)
    rank = {name: index for index, name in enumerate(order)}
    ordered = sorted(hostvars, key=lambda h: (rank.get(h, len(rank)), h))
    hostvars = {name: hostvars[name] for name in ordered}
    groups = {
        g: sorted(members, key=lambda h: (rank.get(h, len(rank)), h))
        for g, members in groups.items()
    }
    if os.path.isdir(source):
        lines = {}  # lines of the files inside would be misread as lines of the directory
    raw = _to_arpfix(hostvars, groups, source, lines)
    return raw, {name: lines.get(name, 0) for name in raw["hosts"]}


# -- the Ansible path -----------------------------------------------------------------------


def find_ansible_inventory() -> str | None:
    """ansible-inventory from PATH, or next to the running Python (a virtualenv's bin/)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    return beside if os.path.isfile(beside) and os.access(beside, os.X_OK) else None


def run_ansible_inventory(
    program: str, source: str, timeout: float = ANSIBLE_TIMEOUT
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Run `ansible-inventory -i SOURCE --list`; return (hostvars, flattened group members)."""
    with tempfile.TemporaryDirectory(prefix="arpfix-ansible-") as home:
        env = dict(os.environ)
        env.update(
            ANSIBLE_HOME=home,
            ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"),
            # static sources only: no scripts run, no cloud plugins talk to the network
            ANSIBLE_INVENTORY_ENABLED="ini,yaml,toml",
            ANSIBLE_VARS_ENABLED="host_group_vars",
            # a source no plugin could read is an error, not a silently empty inventory
            ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
            ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
            ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True",
            ANSIBLE_LOCALHOST_WARNING="False",
            ANSIBLE_DEPRECATION_WARNINGS="False",
            ANSIBLE_SYSTEM_WARNINGS="False",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
        )
        try:
            done = subprocess.run(
                [program, f"--inventory={source}", "--list"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UsageError(f"{source}: ansible-inventory took longer than {timeout:g}s") from None
        except OSError as exc:
            raise UsageError(f"{source}: cannot run {program}: {exc.strerror}") from None
    if done.returncode != 0:
        try:  # our own parser usually names the line; Ansible often does not
            parse_inventory(source)
        except UsageError as exc:
            raise UsageError(f"{exc} (ansible-inventory failed too)") from None
        raise UsageError(f"{source}: ansible-inventory failed: {_ansible_error(done.stderr)}")
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise UsageError(
            f"{source}: ansible-inventory printed something that is not JSON"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: unexpected output from ansible-inventory")
    meta = data.get("_meta") or {}
    hostvars: dict[str, dict[str, Any]] = {
        str(h): dict(v or {}) for h, v in (meta.get("hostvars") or {}).items()
    }
    direct: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for name, body in data.items():
        if name == "_meta" or not isinstance(body, dict):
            continue
        direct[name] = [str(h) for h in body.get("hosts") or []]
        children[name] = [str(c) for c in body.get("children") or []]
        for child in children[name]:
            direct.setdefault(child, [])
        for host in direct[name]:
            hostvars.setdefault(host, {})
    return hostvars, _flatten(direct, children)


def _ansible_error(stderr: bytes) -> str:
    """The most useful part of ansible-inventory's complaint, on one line."""
    lines = [
        line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()
    ]
    details = [
        line.split(" plugin: ", 1)[1]
        for line in lines
        if line.startswith("[WARNING]: Failed to parse") and " plugin: " in line
    ]
    errors = [line[len("[ERROR]:") :].strip() for line in lines if line.startswith("[ERROR]:")]
    errors += [line[len("ERROR!") :].strip() for line in lines if line.startswith("ERROR!")]
    message = "; ".join(details[-1:] + errors[:1]) or " ".join(lines[-2:]) or "no message"
    return message[:400]


# -- the direct path: static INI and YAML inventories ---------------------------------------


@dataclass
class _Group:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)
    priority: int = 1


@dataclass
class ParsedInventory:
    """Hosts and groups of a static inventory, before variables are resolved."""

    source: str
    basedir: str
    groups: dict[str, _Group] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)  # inline, per host
    lines: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.group("all")
        self.group("ungrouped")

    def group(self, name: str) -> _Group:
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = _Group(name)
        return group

    def add_host(self, name: str, group: str, port: int | None, line: int) -> None:
        if name not in self.host_vars:
            self.host_vars[name] = {}
            self.lines[name] = line
        members = self.group(group).hosts
        if name not in members:
            members.append(name)
        if port is not None:
            self.host_vars[name]["ansible_port"] = port

    def add_child(self, parent: str, child: str) -> None:
        if parent == child:
            raise UsageError(f"{self.source}: group '{parent}' cannot be its own child")
        children = self.group(parent).children
        if child not in children:
            children.append(child)
        self.group(child).parents.add(parent)

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        if key != "ansible_group_priority":
            self.group(group).vars[key] = value
            return
        try:  # not a variable: it orders groups of the same depth (as in Ansible)
            self.group(group).priority = int(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"{self.source}: group '{group}': ansible_group_priority must be a number"
            ) from None

    # -- resolution -----------------------------------------------------------------------
    def _direct_groups(self) -> dict[str, list[str]]:
        """Direct members per group; `ungrouped` holds exactly the hosts of no other group."""
        grouped = {
            h
            for name, g in self.groups.items()
            if name not in ("all", "ungrouped")
            for h in g.hosts
        }
        direct = {name: list(g.hosts) for name, g in self.groups.items()}
        direct["ungrouped"] = [h for h in self.host_vars if h not in grouped]
        direct["all"] = []
        return direct

    def flat_groups(self) -> dict[str, list[str]]:
        children = {name: list(g.children) for name, g in self.groups.items()}
        flat = _flatten(self._direct_groups(), children)
        flat["all"] = list(self.host_vars)
        return flat

    def _depths(self) -> dict[str, int]:
        """Ansible's group depth: 0 for `all`, one more than the deepest parent otherwise."""
        depths: dict[str, int] = {}

        def depth(name: str, trail: tuple[str, ...]) -> int:
            if name in depths:
                return depths[name]
            if name in trail:
                raise UsageError(
                    f"{self.source}: group '{name}' is its own ancestor"
                    f" ({' > '.join(trail + (name,))})"
                )
            parents = [p for p in self.groups[name].parents if p != name] or (
                ["all"] if name != "all" else []
            )
            value = 0 if name == "all" else 1 + max(depth(p, trail + (name,)) for p in parents)
            depths[name] = value
            return value

        for name in self.groups:
            depth(name, ())
        return depths

    def resolve(self) -> dict[str, dict[str, Any]]:
        """Every host's variables with Ansible's precedence (as `ansible-inventory --list`).

        Lowest first: inline vars of `all`; inline vars of the host's other groups, shallow groups
        first (then by ansible_group_priority and name); group_vars/all; group_vars/<group> in the
        same order; inline host vars; host_vars/<host>. Later layers replace whole variables.
        """
        flat = self.flat_groups()
        depths = self._depths()
        memberships: dict[str, list[str]] = {h: [] for h in self.host_vars}
        for name, members in flat.items():
            if name != "all":
                for host in members:
                    memberships[host].append(name)
        group_files = _VarsFolder(os.path.join(self.basedir, "group_vars"))
        host_files = _VarsFolder(os.path.join(self.basedir, "host_vars"))
        file_vars: dict[str, dict[str, Any]] = {}

        def of_group_file(name: str) -> dict[str, Any]:
            if name not in file_vars:
                file_vars[name] = group_files.load(name)
            return file_vars[name]

        all_inline = self.groups["all"].vars
        all_file = of_group_file("all")
        resolved: dict[str, dict[str, Any]] = {}
        for host, own in self.host_vars.items():
            ordered = sorted(
                memberships[host], key=lambda g: (depths[g], self.groups[g].priority, g)
            )
            result = dict(all_inline)
            for name in ordered:
                result.update(self.groups[name].vars)
            result.update(all_file)
            for name in ordered:
                result.update(of_group_file(name))
            result.update(own)
            result.update(host_files.load(host))
            resolved[host] = result
        return resolved


class _VarsFolder:
    """group_vars/ or host_vars/: NAME, NAME.yml, NAME.yaml, NAME.json (first found) or NAME/."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.entries = set(os.listdir(path)) if os.path.isdir(path) else set()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror}") from None

    def load(self, name: str) -> dict[str, Any]:
        if not self.entries or os.sep in name:
            return {}
        for candidate in (name, *(name + ext for ext in YAML_EXTENSIONS)):
            if candidate in self.entries:
                full = os.path.join(self.path, candidate)
                if os.path.isdir(full):
                    result: dict[str, Any] = {}
                    for file in _vars_dir_files(full):
                        result.update(_load_vars_file(file))
                    return result
                return _load_vars_file(full)
        return {}


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read directory: {exc.strerror}") from None


def _vars_dir_files(path: str) -> list[str]:
    """Files of a group_vars/NAME/ directory, sorted and recursive, as Ansible loads them."""
    found = []
    for entry in _listdir(path):
        if entry.startswith("."):
            continue
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            found.extend(_vars_dir_files(full))
        else:
            ext = os.path.splitext(entry)[1]
            if not ext or ext in YAML_EXTENSIONS:
                found.append(full)
    return found


def _load_vars_file(path: str) -> dict[str, Any]:
    text = read_text(path)
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        raise UsageError(
            f"{path}: vault-encrypted file; arpfix cannot read it (use {{env: VAR}} references)"
        )
    data = _load_yaml_text(text, path).data
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: variables file must be a mapping, not {type(data).__name__}")
    return {str(k): v for k, v in data.items()}


def _load_yaml_text(text: str, path: str) -> Located:
    for number, line in enumerate(text.splitlines(), 1):
        if "!vault" in line and not line.lstrip().startswith("#"):
            raise UsageError(
                f"{path}:{number}: vault-encrypted value; arpfix cannot read it"
                " (use {env: VAR} references)"
            )
    return load_yaml(text, path)


def parse_inventory(source: str) -> ParsedInventory:
    """Parse a static INI or YAML inventory file, or a directory of them (group_vars too)."""
    if os.path.isdir(source):
        inventory = ParsedInventory(source, source)
        files = _inventory_dir_files(source)
        if not files:
            raise UsageError(f"{source}: no inventory files in this directory")
        for file in files:
            _parse_file(inventory, file)
    else:
        inventory = ParsedInventory(source, os.path.dirname(os.path.abspath(source)))
        _parse_file(inventory, source)
    return inventory


def _inventory_dir_files(path: str) -> list[str]:
    files = []
    for entry in _listdir(path):
        if entry.startswith(".") or entry in IGNORED_NAMES or entry.endswith(IGNORED_EXTENSIONS):
            continue
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            files.extend(_inventory_dir_files(full))
        else:
            files.append(full)
    return files


def _parse_file(inventory: ParsedInventory, path: str) -> None:
    text = read_text(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in YAML_EXTENSIONS or not ext:
        try:
            located = _load_yaml_text(text, path)
        except UsageError:
            if ext:
                raise
            located = None
        if located is not None and isinstance(located.data, dict) and located.data:
            _parse_yaml(inventory, located, path, text)
            return
        if ext:
            raise UsageError(f"{path}:1: a YAML inventory must be a mapping of groups")
    if os.access(path, os.X_OK) and text.startswith("#!"):
        raise UsageError(f"{path}: inventory scripts are not run; {STATIC_HINT}")
    _parse_ini(inventory, text, path)


# INI ---------------------------------------------------------------------------------------


def _parse_ini(inventory: ParsedInventory, text: str, path: str) -> None:
    group, state = "ungrouped", "hosts"
    pending_vars: dict[str, int] = {}  # [g:vars] before g was declared
    pending_children: dict[str, tuple[int, list[str]]] = {}  # child -> (line, parents)
    declared = {"all", "ungrouped"}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            header = _section(line)
            if header is None:
                raise UsageError(f"{path}:{number}: invalid section {line!r}")
            group, state = header
            if state not in ("hosts", "children", "vars"):
                raise UsageError(
                    f"{path}:{number}: section [{group}:{state}] has unknown type '{state}'"
                )
            inventory.group(group)
            if state == "vars":
                if group not in declared and group not in pending_children:
                    pending_vars.setdefault(group, number)
            else:
                declared.add(group)
                pending_vars.pop(group, None)
                pending_children.pop(group, None)
            continue
        if state == "hosts":
            _ini_host_line(inventory, line, group, path, number)
        elif state == "vars":
            if "=" not in line:
                raise UsageError(f"{path}:{number}: expected key=value, got {line!r}")
            key, value = (part.strip() for part in line.split("=", 1))
            inventory.set_group_var(group, key, _ini_value(value))
        else:
            child = line.split("#", 1)[0].strip()
            if not child or any(c in child for c in ":] \t"):
                raise UsageError(f"{path}:{number}: expected a group name, got {line!r}")
            inventory.add_child(group, child)
            if child not in declared:
                pending_children.setdefault(child, (number, []))[1].append(group)
    for name, number in pending_vars.items():
        if name not in declared:
            raise UsageError(
                f"{path}:{number}: section [{name}:vars] is for a group that is never declared"
            )
    for name, (number, parents) in pending_children.items():
        if name not in declared:
            raise UsageError(
                f"{path}:{number}: section [{parents[-1]}:children] names undeclared group '{name}'"
            )


def _section(line: str) -> tuple[str, str] | None:
    """[name] or [name:type], optionally followed by a comment."""
    end = line.find("]")
    if end < 0:
        return None
    rest = line[end + 1 :].strip()
    if rest and not rest.startswith("#"):
        return None
    inner = line[1:end]
    name, _, kind = inner.partition(":")
    if not name or any(c.isspace() or c == "[" for c in inner) or (":" in inner and not kind):
        return None
    if kind and not all(c.isalnum() or c == "_" for c in kind):
        return None
    return name, kind or "hosts"


_SHELL_SPECIAL = frozenset("\"'\\#")
_SHELL_BLANKS = re.compile(r"[ \t\r\n]+")
_PLAIN_INT = re.compile(r"(?:0|-?[1-9][0-9]*)")
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")  # 10.1.2.3: never a Python literal
_LITERAL_WORDS = ("True", "False", "None")
_value_cache: dict[str, Any] = {}


def _ini_host_line(
    inventory: ParsedInventory, line: str, group: str, path: str, number: int
) -> None:
    if _SHELL_SPECIAL.isdisjoint(line):
        # no quotes, escapes or comments: shlex would only split at blanks (and it is slow)
        tokens = [token for token in _SHELL_BLANKS.split(line) if token]
    else:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: cannot parse host line: {exc}") from None
    if not tokens:
        return
    names, port = expand_host_pattern(tokens[0], f"{path}:{number}")
    variables = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise UsageError(
                f"{path}:{number}: expected key=value after the host name, got {token!r}"
            )
        key, value = token.split("=", 1)
        variables[key] = _ini_value(value)
    for name in names:
        inventory.add_host(name, group, port, number)
        inventory.host_vars[name].update(variables)


def _ini_value(text: str) -> Any:
    """An INI value as Ansible types it: a Python literal when it is one, else the text itself."""
    if text in _value_cache:
        return _value_cache[text]
    if _PLAIN_INT.fullmatch(text):
        value: Any = int(text)
    elif (
        text[:1].isalpha()
        and "'" not in text
        and '"' not in text
        and not text.startswith(_LITERAL_WORDS)
    ) or _DOTTED.fullmatch(text):
        value = text  # a name, a word, an address: literal_eval would refuse it
    else:
        value = _literal(text)
    immutable = isinstance(value, (str, int, float, bool)) or value is None
    if immutable and len(_value_cache) < 65536:
        _value_cache[text] = value
    return value


def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


# host patterns -----------------------------------------------------------------------------


def expand_host_pattern(pattern: str, where: str) -> tuple[list[str], int | None]:
    """`web[01:03]`, `db-[a:c]`, `n[1:10:2]`, `host:2222`, `[2001:db8::1]:22` -> names, port."""
    host, port = _split_port(pattern)
    if host.endswith(":") and port is None:
        raise UsageError(
            f"{where}: invalid host pattern {pattern!r} (a ':' must be followed by a port)"
        )
    if host.strip() == "---":
        raise UsageError(f"{where}: '---' is not a host (is this a YAML file?)")
    if "[" in host and not _is_ipv6(host):
        return _expand_ranges(host, where), port
    return [host], port


def _split_port(pattern: str) -> tuple[str, int | None]:
    if pattern.startswith("[") and "]:" in pattern:
        inner, _, port = pattern[1:].rpartition("]:")
        if port.isdigit() and _is_ipv6(inner):
            return inner, int(port)
    head, sep, port = pattern.rpartition(":")
    # a ':' inside a range (web[1:3]) is not a port separator, nor are an IPv6 address's
    if (
        sep
        and port.isdigit()
        and head
        and head.count("[") == head.count("]")
        and not _is_ipv6(pattern)
    ):
        return head, int(port)
    return pattern, None


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _expand_ranges(pattern: str, where: str) -> list[str]:
    start = pattern.find("[")
    end = pattern.find("]", start)
    if end < 0:
        raise UsageError(f"{where}: unterminated range in host pattern {pattern!r}")
    head, body, tail = pattern[:start], pattern[start + 1 : end], pattern[end + 1 :]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise UsageError(
            f"{where}: host range must be [begin:end] or [begin:end:step], got [{body}]"
        )
    begin, stop = bounds[0] or "0", bounds[1]
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise UsageError(f"{where}: host range step must be a number, got {bounds[2]!r}") from None
    if not stop:
        raise UsageError(f"{where}: host range [{body}] has no end")
    if step < 1:
        raise UsageError(f"{where}: host range step must be at least 1")
    letters = string.ascii_letters
    if len(begin) == 1 and len(stop) == 1 and begin in letters and stop in letters:
        first, last = letters.index(begin), letters.index(stop)
        if first > last:
            raise UsageError(f"{where}: host range [{body}] must have begin <= end")
        items = list(letters[first : last + 1 : step])
    elif begin.isdigit() and stop.isdigit():
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and width != len(stop):
            raise UsageError(
                f"{where}: host range [{body}]: zero-padded begin and end must have the same length"
            )
        items = [str(n).zfill(width) for n in range(int(begin), int(stop) + 1, step)]
    else:
        raise UsageError(f"{where}: invalid host range [{body}]")
    names = []
    for item in items:
        name = head + item + tail
        names.extend(_expand_ranges(name, where) if "[" in name else [name])
    return names


# YAML --------------------------------------------------------------------------------------


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Line of every mapping key (by path of scalar keys); load_yaml records values' lines."""
    try:
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError:  # pragma: no cover - load_yaml has already accepted the text
        return {}
    lines: dict[tuple[Any, ...], int] = {}
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(root, (), 0)]
    while stack:
        node, at, depth = stack.pop()
        if not isinstance(node, yaml.MappingNode) or depth > 16:
            continue
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value if key_node.tag.endswith(":str") else _scalar(key_node)
                lines.setdefault(at + (key,), key_node.start_mark.line + 1)
                stack.append((value_node, at + (key,), depth + 1))
    return lines


def _scalar(node: Any) -> Any:
    try:
        return yaml.SafeLoader("").construct_object(node)
    except yaml.YAMLError:  # pragma: no cover
        return node.value


def _parse_yaml(inventory: ParsedInventory, located: Located, path: str, text: str) -> None:
    data = located.data
    key_lines = _key_lines(text)
    if "plugin" in data:
        raise UsageError(f"{path}: inventory plugin configurations are not read; {STATIC_HINT}")

    def section(body: dict[str, Any], key: str, group: str, at: tuple[Any, ...]) -> dict[Any, Any]:
        value = body.get(key)
        if value is None:
            return {}
        if isinstance(value, str):
            return {value: None}
        if not isinstance(value, dict):
            line = located.line_of(at + (key,))
            raise UsageError(f"{path}:{line}: '{key}' of group '{group}' must be a mapping")
        return value

    def walk(group: str, body: Any, at: tuple[Any, ...]) -> None:
        inventory.group(group)
        if body is None:
            return
        if not isinstance(body, dict):
            return  # Ansible skips (with a warning) a group that is not a mapping
        for part in body:  # in document order, like Ansible: later definitions win
            if part == "vars":
                for key, value in section(body, "vars", group, at).items():
                    inventory.set_group_var(group, str(key), value)
            elif part == "children":
                for child, child_body in section(body, "children", group, at).items():
                    child = str(child)
                    walk(child, child_body, at + ("children", child))
                    inventory.add_child(group, child)
            elif part == "hosts":
                for pattern, host_body in section(body, "hosts", group, at).items():
                    add_hosts(group, pattern, host_body, at)
            # other keys: Ansible warns and skips them

    def add_hosts(group: str, pattern: Any, host_body: Any, at: tuple[Any, ...]) -> None:
        line = key_lines.get(at + ("hosts", pattern)) or located.line_of(at + ("hosts", pattern))
        if not isinstance(pattern, str):
            raise UsageError(
                f"{path}:{line}: host pattern {pattern!r} must be text (quote numbers)"
            )
        if host_body is not None and not isinstance(host_body, dict):
            raise UsageError(f"{path}:{line}: variables of host '{pattern}' must be a mapping")
        names, port = expand_host_pattern(pattern, f"{path}:{line}")
        for name in names:
            inventory.add_host(name, group, port, line)
            inventory.host_vars[name].update({str(k): v for k, v in (host_body or {}).items()})

    for group, body in data.items():
        walk(str(group), body, (group,))


# -- shared: groups and variables -> arpfix raw format --------------------------------------


def _flatten(direct: dict[str, list[str]], children: dict[str, list[str]]) -> dict[str, list[str]]:
    """Members of every group including those of its descendants, in first-seen order."""
    flat: dict[str, list[str]] = {}

    def members(name: str, trail: frozenset[str]) -> list[str]:
        if name in flat:
            return flat[name]
        result = dict.fromkeys(direct.get(name, []))
        for child in children.get(name, []):
            if child not in trail:
                result.update(dict.fromkeys(members(child, trail | {name})))
        flat[name] = list(result)
        return flat[name]

    for name in set(direct) | set(children):
        members(name, frozenset())
    return flat


def _boolean(value: Any) -> Any:
    """Ansible's idea of a boolean; anything else is passed on for the validator to refuse."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    return value


def _port(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
        return True
    except ValueError:
        return False


def _first(value: Any) -> Any:
    """ansible_winrm_transport may be a list or a comma-separated string: take the first."""
    if isinstance(value, list):
        return value[0] if value else None
    if isinstance(value, str) and "," in value:
        return value.split(",")[0].strip()
    return value


def _connection(hv: dict[str, Any]) -> str:
    return str(hv.get("ansible_connection", "ssh")).rsplit(".", 1)[-1]  # ansible.builtin.ssh -> ssh


def _platform(hv: dict[str, Any]) -> str | None:
    if "arpfix_platform" in hv:
        return hv["arpfix_platform"]
    connection = _connection(hv)
    if connection in WINDOWS_CONNECTIONS:
        return "windows"
    if connection in LINUX_CONNECTIONS:
        return "linux"
    return None  # local, docker, ...: the validator asks for arpfix_platform


SSH_ARG_VARIABLES = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
SSH_OPTION_HINTS = {
    "stricthostkeychecking": " (arpfix always checks host keys; --trust-on-first-use records unknown ones)",
    "userknownhostsfile": " (set arpfix_ssh: {known_hosts: PATH})",
}


def _ssh_arguments(hv: dict[str, Any], problems: list[str]) -> str | None:
    """The ProxyCommand that ansible_ssh_common_args / ansible_ssh_extra_args ask for (ProxyJump
    and -J become `ssh -W %h:%p JUMP`, as OpenSSH does it); any other ssh option is refused."""
    proxy = None
    for variable in SSH_ARG_VARIABLES:
        text = hv.get(variable)
        if text is None or str(text).strip() == "":
            continue
        try:
            words = shlex.split(str(text))
        except ValueError as exc:
            problems.append(f"{variable}: cannot parse: {exc}")
            continue
        index = 0
        while index < len(words):
            word = words[index]
            if word in ("-o", "-J") and index + 1 < len(words):
                option = words[index + 1] if word == "-o" else f"ProxyJump={words[index + 1]}"
                index += 2
            elif word.startswith("-o") and len(word) > 2:
                option, index = word[2:], index + 1
            elif word.startswith("-J") and len(word) > 2:
                option, index = f"ProxyJump={word[2:]}", index + 1
            else:
                problems.append(f"{variable}: {word!r}: arpfix cannot honour this ssh argument "
                                "(it supports -o ProxyJump=..., -J and -o ProxyCommand=...)")
                index += 1
                continue
            key, sep, value = option.partition("=")
            if not sep:
                key, _, value = option.strip().partition(" ")
            key, value = key.strip(), value.strip()
            if key.lower() == "proxycommand" and value:
                proxy = value
            elif key.lower() == "proxyjump" and value:
                proxy = _jump_command(value)
            else:
                hint = SSH_OPTION_HINTS.get(key.lower(), " (it supports ProxyJump and ProxyCommand)")
                problems.append(f"{variable}: -o {key}: arpfix cannot honour this ssh option{hint}")
    return proxy


def _jump_command(jumps: str) -> str:
    """ProxyJump [user@]host[:port][,...] as the ProxyCommand OpenSSH itself would run."""
    hops = [hop.strip() for hop in jumps.split(",") if hop.strip()]
    last = hops[-1]
    user, at, hostport = last.rpartition("@")
    host, port = hostport, ""
    if hostport.startswith("[") and "]" in hostport:
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif hostport.count(":") == 1:
        host, port = hostport.split(":")
    words = ["ssh"] + (["-J", ",".join(hops[:-1])] if len(hops) > 1 else []) + (["-p", port] if port else [])
    words += ["-W", "[%h]:%p", f"{user}{at}{host}"]
    return shlex.join(words)


def _become(hv: dict[str, Any], problems: list[str]) -> None:
    """arpfix's scripts run as root, reached through sudo: other become users and methods are refused."""
    # checked even where ansible_become is not set here: a play's `become: true` would use them
    user = hv.get("ansible_become_user")
    if user is not None and str(user) != "root":
        problems.append(f"ansible_become_user={user}: arpfix's scripts must run as root; it cannot become another user")
    method = hv.get("ansible_become_method")
    if method is not None and str(method).rsplit(".", 1)[-1] != "sudo":
        problems.append(f"ansible_become_method={method}: arpfix becomes root only through sudo")


def _arpfix_host(name: str, hv: dict[str, Any], problems: list[str] | None = None) -> dict[str, Any]:
    """One host's resolved Ansible variables -> an arpfix `hosts.<name>` entry.

    Variables arpfix cannot honour (another become user, ssh options but ProxyJump/ProxyCommand)
    are added to `problems`, never silently ignored."""
    problems = problems if problems is not None else []
    entry: dict[str, Any] = {}
    platform = _platform(hv)
    if platform is not None:
        entry["platform"] = platform

    target = hv.get("ansible_host", hv.get("ansible_ssh_host"))
    if "arpfix_address" in hv:
        entry["address"] = hv["arpfix_address"]
        connect = target if target is not None else name
        if str(connect) != str(hv["arpfix_address"]):
            entry["connect"] = connect
    else:
        where = target if target is not None else name
        entry["address"] = where  # not an IP: left as it is for the validator to report
        if not _is_ip(where):
            entry["connect"] = where

    remote = "winrm" if platform == "windows" else "ssh"
    settings: dict[str, Any] = {}
    user = hv.get("ansible_user", hv.get("ansible_ssh_user"))
    if user is not None:
        settings["user"] = user
    port = hv.get("ansible_port", hv.get("ansible_ssh_port"))
    if port is not None:
        settings["port"] = _port(port)
    password = hv.get(
        "ansible_password", hv.get("ansible_ssh_pass", hv.get("ansible_winrm_password"))
    )
    if "arpfix_password_env" in hv:
        settings["password"] = {"env": hv["arpfix_password_env"]}
    elif "arpfix_password_file" in hv:
        settings["password"] = {"file": hv["arpfix_password_file"]}
    elif password is not None:
        settings["password"] = password  # plaintext: the validator refuses it unless allowed
    if remote == "ssh":
        key = hv.get("ansible_ssh_private_key_file", hv.get("ansible_private_key_file"))
        if key is not None:
            settings["key_file"] = key
        if "ansible_become" in hv:
            settings["sudo"] = _boolean(hv["ansible_become"])
        _become(hv, problems)
        proxy = _ssh_arguments(hv, problems)
        if proxy is not None:
            settings["proxy_command"] = proxy
    else:
        _winrm_settings(hv, settings)
    extra = hv.get(f"arpfix_{remote}")
    if isinstance(extra, dict):
        settings.update(extra)
    elif extra is not None:
        settings = extra  # not a mapping: the validator says so
    if settings:
        entry[remote] = settings

    for variable, key in HOST_KEYS.items():
        if variable in hv:
            value = hv[variable]
            if key == "keep_bindings" and isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            entry[key] = value
    return entry


def _winrm_settings(hv: dict[str, Any], settings: dict[str, Any]) -> None:
    psrp = str(hv.get("ansible_connection", "")).rsplit(".", 1)[-1] == "psrp"
    prefix = "ansible_psrp_" if psrp else "ansible_winrm_"
    transport = hv.get(prefix + ("auth" if psrp else "transport"))
    if transport is not None:
        settings["auth"] = _first(transport)
    scheme = hv.get(prefix + ("protocol" if psrp else "scheme"))
    if scheme is not None:
        settings["scheme"] = scheme
    if psrp and "port" not in settings and "ansible_psrp_port" in hv:
        settings["port"] = _port(hv["ansible_psrp_port"])
    validation = hv.get(prefix + ("cert_validation" if psrp else "server_cert_validation"))
    if validation is not None:
        text = str(validation).strip().lower()
        settings["cert_validation"] = {"ignore": False, "validate": True}.get(
            text, _boolean(validation)
        )
    ca = hv.get(prefix + ("ca_path" if psrp else "ca_trust_path"))
    if ca is not None:
        settings["ca_bundle"] = ca
    for ours, theirs in (("cert_pem", "cert_pem"), ("cert_key_pem", "cert_key_pem")):
        if prefix + theirs in hv:
            settings[ours] = hv[prefix + theirs]
    timeout = hv.get(prefix + ("operation_timeout" if psrp else "operation_timeout_sec"))
    if timeout is not None:
        settings["operation_timeout"] = timeout


def _to_arpfix(
    hostvars: dict[str, dict[str, Any]],
    groups: dict[str, list[str]],
    source: str,
    lines: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The arpfix raw inventory. Hosts with ansible_connection=local are left out and listed under
    the key `_skipped` ({name: groups}; arpfix.inventory turns it into a note); variables arpfix
    cannot honour are refused, one line per host and variable."""
    lines = lines or {}
    local = {name for name, hv in hostvars.items() if _connection(hv) == "local"}
    raw: dict[str, Any] = {}
    raw["groups"] = {
        name: {"hosts": [m for m in members if m not in local]}
        for name, members in sorted(groups.items())
        if name not in ("all", "ungrouped")
    }
    refused: list[str] = []
    raw["hosts"] = {}
    for name, hv in hostvars.items():
        if name in local:
            continue
        problems: list[str] = []
        raw["hosts"][name] = _arpfix_host(name, hv, problems)
        line = lines.get(name, 0)
        where = f"{source}:{line}" if line else source
        refused += [f"{where}: host '{name}': {problem}" for problem in problems]
    if refused:
        raise UsageError("\n".join(refused))
    if local:
        raw["_skipped"] = {
            name: [g for g, members in sorted(groups.items()) if name in members and g not in ("all", "ungrouped")]
            for name in hostvars if name in local
        }
    for variable, key in TOP_KEYS.items():
        seen: dict[str, Any] = {}
        for host, hv in hostvars.items():
            if variable in hv:
                seen[host] = hv[variable]
        if not seen:
            continue
        values = list(seen.values())
        first_host, first = next(iter(seen.items()))
        for host, value in seen.items():
            if value != first:
                raise UsageError(
                    f"{source}: {variable} differs between hosts '{first_host}' and '{host}';"
                    " set it once, in group 'all' (group_vars/all.yml)"
                )
        value = values[0]
        if key == "agent" and isinstance(value, str):
            value = {"host": value}
        raw[key] = value
    return raw
