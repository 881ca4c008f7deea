"""The journal fold's "keep" reasons: a file someone changed since arpfix wrote it says so; "no
backup" is said only where arpfix's own content is still there but the earlier content was never
backed up."""

from __future__ import annotations

import hashlib

from arpfix.platforms.linux.ownership import give_back, owned

PATH = "/etc/sysconfig/network-scripts/ifcfg-lo"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def kept(backup, current):
    journal = [{"op": "file", "path": PATH, "prev_sha": sha("site"), "backup": backup, "new_sha": sha("arpfix")}]
    facts = {"journal": journal, "files": {PATH: current}}
    return [(c.action, c.detail) for c, _ in give_back(owned(facts), facts)]


def test_a_file_changed_since_arpfix_wrote_it_says_so():
    assert kept("/var/lib/arpfix/backup/1-ifcfg-lo", "the admin's edit") == [("keep", "changed since arpfix wrote it: kept")]


def test_no_backup_is_said_only_where_arpfix_content_is_still_there():
    assert kept("", "arpfix") == [("keep", "no backup of its earlier content: kept")]
    assert kept("/var/lib/arpfix/backup/1-ifcfg-lo", "arpfix")[0][0] == "restore"
