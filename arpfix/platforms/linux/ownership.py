"""What arpfix owns on a Linux host, read from its journal, and how to give each piece back. Pure.

The journal is a write-ahead log: every change arpfix makes is an entry written before the change,
with the value it replaced. Folded per resource (a sysctl, an address, the dummy interface, a file,
a link, a folder), it says what arpfix set last and what was there before arpfix. An entry marked
`"undo": true` gives a resource back (convergence or rollback); it ends that resource's history.

Giving back walks a resource's entries newest first from its current value: an entry whose new
value is the current one is undone (its previous value becomes current); one whose previous value
is already current was undone before (a cut rollback); any other value is someone else's and
stops the walk. So undo restores what was there before arpfix, and where an administrator changed
a value between two of arpfix's changes, that administrator's value; where the current value is
not arpfix's any more, it is kept. Convergence (a resource the inventory no longer wants) and
rollback (every resource) use the same records and the same primitives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arpfix.model import Change
from arpfix.platforms.linux.common import (
    Step,
    address_form,
    file_sha,
    has_address,
    sysctl_name_of_path,
    sysctl_now,
    to_int,
)

# rollback order: VIPs go first (the sysctls that hide them from ARP stay until they are gone),
# then the interface that held them, boot files and links, the folders they were in, sysctls last
KIND_ORDER = ("addr", "iface", "symlink", "file", "dir", "sysctl")


@dataclass(frozen=True)
class Owned:
    """One resource arpfix changed and has not given back.

    state: "ours" (still what arpfix set: can be given back), "restored" (already back to what was
    there before), "changed" (someone changed it since: kept), "gone" (it no longer exists).
    """

    kind: str
    key: str
    state: str
    arpfix_value: str  # what arpfix set last (a sysctl value, a file's sha256, an address)
    previous: str  # what giving it back restores ("absent": remove it)
    order: int  # journal position of the resource's first entry
    step: Step | None
    entry: dict[str, Any]  # the newest entry (dev, label, target, backup ...)
    why: str = ""  # why a "changed" record is kept, where it is not simply "changed since"


def _key(entry: dict[str, Any]) -> tuple[str, str] | None:
    op = entry.get("op")
    if op == "sysctl":
        return ("sysctl", str(entry.get("key", "")))
    if op == "addr":
        return ("addr", f"{entry.get('dev', '')} {entry.get('addr', '')}")
    if op == "link" and entry.get("dev"):
        return ("iface", str(entry["dev"]))
    if op in ("file", "symlink", "dir"):
        return (op, str(entry.get("path", "")))
    return None


def histories(journal: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]:
    """(kind, key) -> the resource's entries since its last undo, oldest first."""
    out: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for index, entry in enumerate(journal):
        key = _key(entry)
        if key is None:
            continue
        if entry.get("undo"):
            out.pop(key, None)
        else:
            out.setdefault(key, []).append((index, entry))
    return out


def _walk(value: str, entries: list[dict[str, Any]], prev: str, new: str) -> tuple[str, dict[str, Any] | None]:
    """(value before arpfix, the oldest entry undone) walking back from arpfix's last value."""
    undone = None
    for entry in reversed(entries):
        if value == str(entry.get(new)):
            value, undone = str(entry.get(prev)), entry
        elif value == str(entry.get(prev)):
            continue
        else:
            break
    return value, undone


def owned(facts: dict[str, Any]) -> list[Owned]:
    """Every resource the journal says arpfix owns, with the step that gives it back, in undo order."""
    records: list[Owned] = []
    now = sysctl_now(facts)
    interfaces = facts.get("interfaces", {})
    files = facts.get("files", {})
    dirs = facts.get("dirs", {})
    for (kind, key), history in histories(facts.get("journal", [])).items():
        entries = [entry for _, entry in history]
        order, last = history[0][0], entries[-1]
        if kind == "sysctl":
            arpfix_value = str(last.get("new"))
            current = now.get(key)
            if current is None:
                records.append(Owned(kind, key, "gone", arpfix_value, "", order, None, last))
                continue
            previous, _ = _walk(arpfix_value, entries, "prev", "new")
            state = "ours" if current == arpfix_value else ("restored" if current == previous else "changed")
            step = Step("undo_sysctl", (key, arpfix_value, previous)) if state == "ours" else None
            records.append(Owned(kind, key, state, arpfix_value, previous, order, step, last))
        elif kind == "addr":
            dev, cidr = str(last.get("dev")), str(last.get("addr"))
            state = "ours" if has_address(facts, dev, cidr) else "restored"
            step = Step("undo_addr", (dev, cidr)) if state == "ours" else None
            records.append(Owned(kind, key, state, cidr, "absent", order, step, last))
        elif kind == "iface":
            state = "ours" if key in interfaces else "restored"
            records.append(Owned(kind, key, state, "present", "absent", order,
                                 Step("undo_dummy", (key,)) if state == "ours" else None, last))
        elif kind == "symlink":
            current_link = files.get(key)
            target = str(last.get("target"))
            if isinstance(current_link, dict) and current_link.get("link") == target:
                state = "ours"
            else:
                state = "restored" if current_link is None else "changed"
            records.append(Owned(kind, key, state, target, "absent", order,
                                 Step("undo_link", (key, target)) if state == "ours" else None, last))
        elif kind == "file":
            arpfix_sha = str(last.get("new_sha"))
            current = file_sha(facts, key)
            previous, undone = _walk(arpfix_sha, entries, "prev_sha", "new_sha")
            backup = str((undone or {}).get("backup") or "")
            why = ""
            if current != arpfix_sha:
                state = "restored" if current == previous else "changed"
            elif previous != "absent" and not backup:
                state, why = "changed", "no backup of its earlier content"  # nothing to restore it from
            else:
                state = "ours"
            step = Step("undo_file", (key, arpfix_sha, backup, previous)) if state == "ours" else None
            records.append(Owned(kind, key, state, arpfix_sha, previous, order, step, last, why))
        elif kind == "dir":
            state = "ours" if key in dirs else "restored"
            records.append(Owned(kind, key, state, "created", "absent", order,
                                 Step("undo_dir", (key,)) if state == "ours" else None, last))
    records.sort(key=lambda r: (KIND_ORDER.index(r.kind), -r.order if r.kind != "dir" else -len(r.key)))
    return records


def give_back(records: list[Owned], facts: dict[str, Any], *, keep_changed: bool = True) -> list[tuple[Change, Step | None]]:
    """The plan that gives `records` back: one change each ("keep" where someone changed it since).

    A folder goes only when nothing is left in it after the files this plan removes."""
    out: list[tuple[Change, Step | None]] = []
    removed = {r.key for r in records if r.kind in ("file", "symlink") and r.state == "ours" and r.previous == "absent"}
    removed |= set(facts.get("leftovers", []))  # every run removes these first
    removed_dirs: set[str] = set()
    for record in records:
        change = describe(record)
        if record.kind == "dir" and record.state == "ours":
            left = [name for name in facts.get("dirs", {}).get(record.key, [])
                    if f"{record.key}/{name}" not in removed | removed_dirs]
            if left:
                if keep_changed:
                    out.append((Change(f"folder {record.key}", "keep", "not empty", "not empty",
                                       f"arpfix created it; now holds {', '.join(sorted(left)[:3])}"), None))
                continue
            removed_dirs.add(record.key)
        if record.state == "ours":
            out.append((change, record.step))
        elif record.state == "changed" and keep_changed:
            out.append((change, None))
    return out


def describe(record: Owned) -> Change:
    """What giving the record back does, as a plan change."""
    if record.kind == "sysctl":
        name = "sysctl " + sysctl_name_of_path(record.key)
        if record.state == "changed":
            return Change(name, "keep", None, None, f"changed since arpfix set {record.arpfix_value}: kept")
        return Change(name, "restore", to_int(record.arpfix_value), to_int(record.previous),
                      "value before arpfix")
    if record.kind == "addr":
        dev, cidr = record.key.split(" ", 1)
        return Change(f"address {cidr} on {dev}", "remove", cidr, None, "added by arpfix")
    if record.kind == "iface":
        return Change(f"interface {record.key}", "delete", "present", None, "created by arpfix")
    if record.kind == "symlink":
        if record.state == "changed":
            return Change(f"link {record.key}", "keep", "changed", "changed", "changed since arpfix made it: kept")
        return Change(f"link {record.key}", "delete", record.arpfix_value, None, "made by arpfix")
    if record.kind == "file":
        if record.state == "changed":
            return Change(f"file {record.key}", "keep", "changed", "changed",
                          f"{record.why or 'changed since arpfix wrote it'}: kept")
        if record.previous == "absent":
            return Change(f"file {record.key}", "delete", "arpfix content", "absent", "written by arpfix")
        return Change(f"file {record.key}", "restore", "arpfix content", "previous", "content before arpfix")
    return Change(f"folder {record.key}", "delete", "empty", None, "created by arpfix")


def unwanted(records: list[Owned], facts: dict[str, Any], *, sysctls: set[str], addresses: set[tuple[str, str, str, str]],
             iface: bool, files: set[str], links: set[str]) -> list[Owned]:
    """The records the desired state no longer has (arpfix gives these back during apply).

    An address the desired state wants in another scope is unwanted too: it is
    removed and added again in the wanted form."""
    wanted_forms = {(dev, cidr): (label, scope) for dev, cidr, label, scope in addresses}
    out = []
    for record in records:
        if record.kind == "sysctl":
            keep = record.key in sysctls
        elif record.kind == "addr":
            dev, cidr = record.key.split(" ", 1)
            form = wanted_forms.get((dev, cidr))
            held = address_form(facts, dev, cidr)
            keep = form is not None and (held is None or held[1] == form[1])  # the scope decides
        elif record.kind == "iface":
            keep = iface
        elif record.kind == "file":
            keep = record.key in files
        elif record.kind == "symlink":
            keep = record.key in links
        else:  # a folder stays while a wanted file lives below it
            keep = any(path.startswith(record.key + "/") for path in files | links)
        if not keep:
            out.append(record)
    return out
