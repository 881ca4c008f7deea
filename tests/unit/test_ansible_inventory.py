"""Reading Ansible inventories: our own parser, ansible-inventory, and the mapping onto arpfix.

The fixtures under ansible_fixtures/ are read three ways and must agree: by our parser
(use_ansible=False), through `ansible-inventory --list` (use_ansible=True), and, for the
resolved variables themselves, compared with what real ansible-inventory prints.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpfix import ansible_inventory as ai
from arpfix.ansible_inventory import expand_host_pattern, load_ansible_inventory, parse_inventory
from arpfix.errors import UsageError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "ansible_fixtures")
ROOT = os.path.dirname(os.path.dirname(HERE))
MIXED_INI = os.path.join(FIXTURES, "mixed", "hosts.ini")
MIXED_YAML = os.path.join(FIXTURES, "mixed", "hosts.yml")
DIRECTORY = os.path.join(FIXTURES, "directory")
TYPING = os.path.join(FIXTURES, "typing", "hosts.ini")
ORDER_INI = os.path.join(FIXTURES, "order", "hosts.ini")
ORDER_YAML = os.path.join(FIXTURES, "order", "hosts.yml")
EXAMPLE = os.path.join(ROOT, "inventory", "ansible-example", "hosts.ini")
SOURCES = [MIXED_INI, MIXED_YAML, DIRECTORY, TYPING, ORDER_INI, ORDER_YAML, EXAMPLE]
IDS = ["mixed-ini", "mixed-yaml", "directory", "typing", "order-ini", "order-yaml", "example"]

ANSIBLE = ai.find_ansible_inventory()
needs_ansible = pytest.mark.skipif(ANSIBLE is None, reason="ansible-inventory is not installed")


_LISTED: dict[str, tuple[dict, dict]] = {}


def _listed(program: str, source: str, timeout: float = ai.ANSIBLE_TIMEOUT) -> tuple[dict, dict]:
    """ansible-inventory --list of source, run once per test session (it takes about a second)."""
    if source not in _LISTED:
        _LISTED[source] = ai.run_ansible_inventory(program, source, timeout)
    hostvars, groups = _LISTED[source]
    return {h: dict(v) for h, v in hostvars.items()}, {g: list(m) for g, m in groups.items()}


def _sorted_groups(groups: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: sorted(members) for name, members in groups.items()}


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# -- the two paths agree with each other and with real Ansible ------------------------------


@needs_ansible
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_our_variables_are_what_ansible_inventory_lists(source):
    parsed = parse_inventory(source)
    hostvars, groups = _listed(ANSIBLE, source)
    assert parsed.resolve() == hostvars
    assert _sorted_groups(parsed.flat_groups()) == _sorted_groups(groups)


@needs_ansible
@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_both_paths_give_the_same_inventory(source, monkeypatch):
    monkeypatch.setattr(ai, "run_ansible_inventory", _listed)
    direct = load_ansible_inventory(source, use_ansible=False)
    through_ansible = load_ansible_inventory(source, use_ansible=True)
    assert direct == through_ansible
    assert list(direct[0]["hosts"]) == list(through_ansible[0]["hosts"])  # same order too


def test_ini_and_yaml_twins_give_the_same_inventory():
    assert (
        load_ansible_inventory(MIXED_INI, use_ansible=False)[0]
        == load_ansible_inventory(MIXED_YAML, use_ansible=False)[0]
    )


def test_default_uses_ansible_when_available(monkeypatch):
    calls = []
    real = ai.run_ansible_inventory

    def spy(program, source, timeout=ai.ANSIBLE_TIMEOUT):
        calls.append(source)
        return real(program, source, timeout)

    monkeypatch.setattr(ai, "run_ansible_inventory", spy)
    monkeypatch.setattr(ai, "find_ansible_inventory", lambda: None)
    load_ansible_inventory(EXAMPLE)
    assert calls == []
    with pytest.raises(UsageError, match="ansible-inventory was not found"):
        load_ansible_inventory(EXAMPLE, use_ansible=True)


# -- value typing (checked against ansible-inventory above) ---------------------------------


def test_ini_values_are_typed_like_ansible():
    hv = parse_inventory(TYPING).resolve()["h1"]
    # host lines: shlex-split, then ast.literal_eval, else the text itself
    assert hv["int"] == 22 and hv["neg"] == -5 and hv["hex"] == 16 and hv["under"] == 1000
    assert hv["yes"] == "yes" and hv["false"] == "false"  # only Python literals become booleans
    assert hv["true"] is True and hv["none"] is None
    assert hv["dq"] == "double quoted" and hv["sq"] == "single" and hv["spaced"] == "a b"
    assert hv["float"] == 1.5 and hv["exp"] == 1000.0
    assert hv["list"] == [1, 2] and hv["tuple"] == [1, 2] and hv["dict"] == {"a": 1}
    assert hv["empty"] == "" and hv["octalish"] == "010" and hv["dots"] == "..."
    assert hv["complex"] == "1j" and hv["bytes"] == "bx" and hv["tuplestr"] == "(1,"
    assert hv["eq"] == "a=b" and hv["unicode"] == "héllo"
    assert hv["path"] == "C:\\temp" and hv["user"] == "CORP\\svc"
    assert hv["hash"] == "x" and "rest" not in hv  # '#' starts a comment, even inside a word
    # [group:vars]: split at the first '=', stripped, then the same literal_eval (no shlex)
    assert hv["g_int"] == 22 and hv["g_yes"] == "yes" and hv["g_true"] is True
    assert hv["g_dq"] == "double quoted" and hv["g_spaced"] == "a b c"
    assert hv["g_comment"] == 22 and hv["g_textcomment"] == "abc # a comment"
    assert hv["g_list"] == [1, "two"] and hv["g_backslash"] == "CORP\\svc"
    assert hv["g_empty"] == "" and hv["g_eq"] == "a=b"


_VALUE_TEXT = st.one_of(
    st.text(alphabet="0123456789.-+_xeEjabTrueFalsNn '\"[](){}:,#\\=é ", max_size=12),
    st.from_regex(r"(True|False|None|[0-9]{1,3}(\.[0-9]{1,3}){0,4})( ?#.*)?", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(_VALUE_TEXT)
def test_fast_value_typing_equals_literal_eval(text):
    ai._value_cache.clear()
    expected = ai._literal(text)
    assert ai._ini_value(text) == expected and type(ai._ini_value(text)) is type(expected)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=1 \t'\"#\\", min_size=1, max_size=20))
def test_fast_host_line_split_equals_shlex(line):
    import shlex

    try:
        expected = shlex.split("h " + line, comments=True)
    except ValueError:
        return
    inventory = ai.ParsedInventory("x", ".")
    try:
        ai._ini_host_line(inventory, "h " + line, "g", "x", 1)
    except UsageError:
        assert any("=" not in token for token in expected[1:])
        return
    assert inventory.host_vars["h"] == {
        k: ai._literal(v) for k, v in (t.split("=", 1) for t in expected[1:])
    }


# -- precedence ------------------------------------------------------------------------------


def test_precedence_follows_ansible():
    hv = parse_inventory(MIXED_INI).resolve()
    # group_vars/all.yml beats [linux:vars] and [web:vars]; group_vars/web.yml beats all.yml
    assert hv["web01"]["ansible_become"] is True
    assert hv["db-x"]["ansible_become"] is False
    # inline group vars: child (web) beats parent (linux); group_vars/web.yml beats both
    assert hv["web02"]["arpfix_method"] == "dummy"
    assert hv["db-a"]["arpfix_method"] == "loopback"
    # inline host vars beat group_vars files (the range's :2222 port vs nothing), host_vars win
    assert hv["web01"]["ansible_port"] == 2222
    assert hv["web02"]["ansible_port"] == 2022
    # host var beats [all:vars] and [web:vars]
    assert hv["web01"]["ansible_user"] == "deploy" and hv["db-a"]["ansible_user"] == "root"
    # a group_vars/NAME/ directory: files in sorted order, later ones win
    assert hv["web01"]["arpfix_ssh"] == {"known_hosts": "~/.ssh/known_hosts"}
    # host_vars as NAME (no extension), NAME.yml, NAME.json and NAME/ directory
    assert [hv[h]["arpfix_address"] for h in ("web01", "web02", "web03")] == [
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
    ]
    assert hv["ss01"]["arpfix_keep_bindings"] == ["ms_server"]
    assert hv["ss01"]["ansible_winrm_scheme"] == "http"


def test_later_definitions_win_and_groups_sort_by_depth_then_name():
    for source in (ORDER_INI, ORDER_YAML):
        hv = parse_inventory(source).resolve()
        assert hv["h1"] == {"g": "zeta", "x": "from-zeta", "y": 2}
        assert hv["h2"]["x"] == "deep"
    assert parse_inventory(ORDER_INI).resolve()["h2"]["g"] == "deep"
    assert parse_inventory(ORDER_YAML).resolve()["h2"]["g"] == "deep-again"  # `deep` redefined


def test_group_priority_orders_groups_of_the_same_depth(tmp_path):
    source = _write(
        tmp_path,
        "hosts.ini",
        "[a]\nh1\n[b]\nh1\n[a:vars]\nx=a\nansible_group_priority=5\n[b:vars]\nx=b\n",
    )
    assert parse_inventory(source).resolve()["h1"]["x"] == "a"


# -- mapping onto arpfix ---------------------------------------------------------------------


def test_mapping_of_linux_hosts():
    raw, _ = load_ansible_inventory(MIXED_INI, use_ansible=False)
    web01 = raw["hosts"]["web01"]
    assert web01 == {
        "platform": "linux",
        "address": "192.0.2.11",
        "connect": "web01",  # Ansible connects to the inventory name when there is no ansible_host
        "ssh": {
            "user": "deploy",
            "port": 2222,
            "key_file": "~/.ssh/deploy_ed25519",
            "sudo": True,
            "known_hosts": "~/.ssh/known_hosts",
        },
        "method": "dummy",
        "nic": "eth1",
        "windows_profile": "loadbalancer.org",
    }
    assert raw["hosts"]["db-x"]["address"] == "192.0.2.40" and "connect" not in raw["hosts"]["db-x"]
    assert (
        raw["hosts"]["db-x"]["ssh"]["port"] == 22 and raw["hosts"]["db-x"]["ssh"]["sudo"] is False
    )
    # a name and no arpfix_address: passed on as it is, so the validator reports it
    assert raw["hosts"]["n5"]["address"] == "n.example.com"
    assert raw["hosts"]["n5"]["connect"] == "n.example.com"


def test_mapping_of_windows_hosts():
    raw, _ = load_ansible_inventory(MIXED_INI, use_ansible=False)
    ss01, ss02 = raw["hosts"]["ss01"], raw["hosts"]["ss02"]
    assert ss02 == {
        "platform": "windows",
        "address": "192.0.2.32",
        "connect": "ss02.corp.example",
        "winrm": {
            "user": "CORP\\svc-arpfix",
            "port": 5986,
            "password": {"env": "ARPFIX_WINRM_PASSWORD"},
            "auth": "ntlm",
            "cert_validation": False,
            "ca_bundle": "/etc/ssl/certs/corp-ca.pem",
        },
        "windows_profile": "microsoft",
        "keep_bindings": ["ms_msclient", "ms_server"],
    }
    assert ss01["winrm"]["scheme"] == "http" and ss01["winrm"]["port"] == 5985
    assert "ssh" not in ss01


def test_mapping_of_psrp_hosts():
    raw, _ = load_ansible_inventory(DIRECTORY, use_ansible=False)
    assert raw["hosts"]["win1"] == {
        "platform": "windows",
        "address": "198.51.100.21",
        "winrm": {
            "user": "svc-arpfix@CORP.EXAMPLE",
            "port": 5986,
            "auth": "kerberos",
            "scheme": "https",
            "cert_validation": True,
            "ca_bundle": "/etc/ssl/certs/ca.pem",
        },
    }
    assert raw["hosts"]["rs1"]["ssh"] == {"user": "arpfix", "sudo": True}
    assert raw["agent"] == {"host": "rs1"}


def test_top_level_sections_and_groups():
    raw, _ = load_ansible_inventory(MIXED_INI, use_ansible=False)
    assert set(raw) == {"groups", "hosts", "vips", "load_balancer", "agent", "profiles"}
    assert raw["agent"] == {"host": "db-x"}  # a plain name becomes {host: NAME}
    assert [vip["name"] for vip in raw["vips"]] == ["web", "db"]
    assert raw["load_balancer"]["macs"] == ["00:00:5e:00:01:01"]
    assert raw["profiles"]["web"][0] == {"protocol": "tcp", "port": 80}
    assert "all" not in raw["groups"] and "ungrouped" not in raw["groups"]
    assert raw["groups"]["linux"] == {
        "hosts": ["web01", "web02", "web03", "db-a", "db-b", "db-c", "db-x", "n1", "n5", "n9"]
    }
    assert raw["groups"]["stride"] == {"hosts": ["n1", "n5", "n9"]}


def test_passwords(tmp_path):
    source = _write(
        tmp_path,
        "hosts.ini",
        "a ansible_host=192.0.2.1 ansible_password=s3cret\n"
        "b ansible_host=192.0.2.2 ansible_ssh_pass=s3cret arpfix_password_env=B_PASS\n"
        "c ansible_host=192.0.2.3 arpfix_password_file=/run/secrets/c\n",
    )
    hosts = load_ansible_inventory(source, use_ansible=False)[0]["hosts"]
    assert hosts["a"]["ssh"]["password"] == "s3cret"  # plaintext: the validator refuses it
    assert hosts["b"]["ssh"]["password"] == {"env": "B_PASS"}
    assert hosts["c"]["ssh"]["password"] == {"file": "/run/secrets/c"}


@pytest.mark.parametrize(
    "line, platform",
    [
        ("h ansible_connection=winrm", "windows"),
        ("h ansible_connection=ansible.builtin.psrp", "windows"),
        ("h ansible_connection=paramiko", "linux"),
        ("h", "linux"),
        ("h ansible_connection=winrm arpfix_platform=linux", "linux"),
        ("h ansible_connection=docker", None),
    ],
)
def test_platform(tmp_path, line, platform):
    source = _write(tmp_path, "hosts.ini", line + " ansible_host=192.0.2.9\n")
    assert (
        load_ansible_inventory(source, use_ansible=False)[0]["hosts"]["h"].get("platform")
        == platform
    )


@pytest.mark.parametrize(
    "value, expected",
    [("ntlm", "ntlm"), ("kerberos,ntlm", "kerberos"), ("['credssp', 'ntlm']", "credssp")],
)
def test_winrm_transport_first_of_a_list(tmp_path, value, expected):
    source = _write(
        tmp_path,
        "hosts.ini",
        f'h ansible_host=192.0.2.9 ansible_connection=winrm "ansible_winrm_transport={value}"\n',
    )
    assert (
        load_ansible_inventory(source, use_ansible=False)[0]["hosts"]["h"]["winrm"]["auth"]
        == expected
    )


def test_top_level_value_must_be_the_same_for_every_host(tmp_path):
    source = _write(
        tmp_path,
        "hosts.ini",
        "[a]\nh1\n[b]\nh2\n[a:vars]\narpfix_agent=h1\n[b:vars]\narpfix_agent=h2\n",
    )
    with pytest.raises(UsageError, match="arpfix_agent differs between hosts 'h1' and 'h2'"):
        load_ansible_inventory(source, use_ansible=False)


def test_lab_example_validates():
    from arpfix.inventory import load_inventory

    inventory = load_inventory(EXAMPLE)
    assert sorted(inventory.hosts) == ["agent", "rs1", "rs2", "rs3"]
    assert inventory.groups["real_servers"] == ("rs1", "rs2", "rs3")
    rs1 = inventory.hosts["rs1"]
    assert (rs1.platform, str(rs1.address), rs1.ssh.user) == ("linux", "10.213.0.11", "root")
    assert rs1.ssh.key_file == "/var/tmp/arpfix-lab/arpfix/id_ed25519"
    assert inventory.agent is not None and inventory.agent.host == "agent"
    assert inventory.vips[0].real_servers == ("rs1", "rs2", "rs3")


# -- line numbers ----------------------------------------------------------------------------


def test_line_numbers():
    _, ini = load_ansible_inventory(MIXED_INI, use_ansible=False)
    assert ini["web01"] == ini["web03"] == 6 and ini["db-x"] == 16 and ini["ss02"] == 32
    _, yml = load_ansible_inventory(MIXED_YAML, use_ansible=False)
    assert yml["web02"] == 13 and yml["db-x"] == 23 and yml["n9"] == 31 and yml["ss01"] == 35
    _, directory = load_ansible_inventory(DIRECTORY, use_ansible=False)
    assert set(directory.values()) == {0}  # lines of files inside a directory are not reported


# -- host patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, names, port",
    [
        ("web[01:03]", ["web01", "web02", "web03"], None),
        ("db-[a:c]", ["db-a", "db-b", "db-c"], None),
        ("n[1:10:2]", ["n1", "n3", "n5", "n7", "n9"], None),
        ("n[:2]", ["n0", "n1", "n2"], None),
        (
            "r[1:2]-[a:b].example",
            ["r1-a.example", "r1-b.example", "r2-a.example", "r2-b.example"],
            None,
        ),
        ("web[1:2]:2222", ["web1", "web2"], 2222),
        ("host:22", ["host"], 22),
        ("192.0.2.1:2200", ["192.0.2.1"], 2200),
        ("2001:db8::1", ["2001:db8::1"], None),
        ("[2001:db8::1]:22", ["2001:db8::1"], 22),
        ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], None),
    ],
)
def test_host_patterns(pattern, names, port):
    assert expand_host_pattern(pattern, "here") == (names, port)


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("web[01:3]", "same length"),
        ("web[1:]", "no end"),
        ("web[1:3:0]", "at least 1"),
        ("web[1:2:3:4]", "begin:end"),
        ("web[c:a]", "begin <= end"),
        ("web[1:3", "unterminated"),
        ("web:", "followed by a port"),
    ],
)
def test_bad_host_patterns(pattern, message):
    with pytest.raises(UsageError, match=message):
        expand_host_pattern(pattern, "here")


# -- broken input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("hosts.ini", "[web]\nh1 x='unterminated\n", r"hosts.ini:2: cannot parse host line"),
        (
            "hosts.ini",
            "[web:vars]\na=1\n",
            r"hosts.ini:1: section \[web:vars\] is for a group that is never declared",
        ),
        ("hosts.ini", "[web:children]\ndb\n", r"hosts.ini:2: .*undeclared group 'db'"),
        ("hosts.ini", "[web:oops]\n", r"hosts.ini:1: section \[web:oops\] has unknown type"),
        ("hosts.ini", "[web servers]\n", r"hosts.ini:1: invalid section"),
        ("hosts.ini", "[web]\nh1 novalue\n", r"hosts.ini:2: expected key=value"),
        ("hosts.ini", "[web:vars]\n[web]\n[web:vars]\njunk\n", r"hosts.ini:4: expected key=value"),
        ("hosts.yml", "all:\n  hosts: [a, b\n", r"hosts.yml:3: not valid YAML"),
        (
            "hosts.yml",
            "plugin: aws_ec2\n",
            r"inventory plugin configurations are not read; make a static copy",
        ),
        ("hosts.yml", "all:\n  hosts:\n    42: {}\n", r"hosts.yml:3: host pattern 42 must be text"),
        (
            "hosts.yml",
            "all:\n  vars:\n    p: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n",
            r"hosts.yml:3: vault-encrypted",
        ),
        ("hosts.yml", "- a\n- b\n", r"hosts.yml:1: a YAML inventory must be a mapping"),
    ],
)
def test_broken_inventories_name_file_and_line(tmp_path, name, text, message):
    source = _write(tmp_path, name, text)
    with pytest.raises(UsageError, match=message):
        load_ansible_inventory(source, use_ansible=False)


@needs_ansible
def test_broken_inventory_through_ansible_names_the_line(tmp_path):
    source = _write(tmp_path, "hosts.ini", "[web]\nh1 x='unterminated\n")
    with pytest.raises(
        UsageError, match=r"hosts.ini:2: cannot parse host line.*ansible-inventory failed too"
    ):
        load_ansible_inventory(source, use_ansible=True)


def test_broken_vars_files(tmp_path):
    source = _write(tmp_path, "hosts.ini", "h1\n")
    _write(tmp_path, "group_vars/all.yml", "- not\n- a mapping\n")
    with pytest.raises(UsageError, match=r"all.yml:1: variables file must be a mapping"):
        load_ansible_inventory(source, use_ansible=False)
    _write(tmp_path, "group_vars/all.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    with pytest.raises(UsageError, match=r"all.yml: vault-encrypted file"):
        load_ansible_inventory(source, use_ansible=False)


def test_missing_source(tmp_path):
    with pytest.raises(UsageError, match="no such inventory"):
        load_ansible_inventory(str(tmp_path / "nope.ini"))


def test_scripts_are_not_run(tmp_path):
    source = _write(tmp_path, "inventory.sh", "#!/bin/sh\necho '{}'\n")
    os.chmod(source, 0o755)
    with pytest.raises(UsageError, match="scripts are not run"):
        load_ansible_inventory(source, use_ansible=False)


def test_ungrouped_and_all(tmp_path):
    source = _write(
        tmp_path,
        "hosts.yml",
        "all:\n  hosts:\n    lone: {ansible_host: 192.0.2.5}\n"
        "  children:\n    empty:\n    g:\n      hosts: {m: }\n",
    )
    raw, lines = load_ansible_inventory(source, use_ansible=False)
    assert raw["groups"] == {"empty": {"hosts": []}, "g": {"hosts": ["m"]}}
    assert list(raw["hosts"]) == ["lone", "m"] and lines == {"lone": 3, "m": 7}


# -- speed -----------------------------------------------------------------------------------


def test_thousand_host_ini_parses_fast(tmp_path):
    lines = ["[all:vars]", "ansible_user=root", ""]
    for group in range(10):
        lines.append(f"[g{group}]")
        for index in range(100):
            n = group * 100 + index
            lines.append(
                f"h{n:04d} ansible_host=10.1.{n // 250}.{n % 250 + 1}"
                " ansible_port=22 arpfix_nic=eth0"
            )
        lines.append(f"[g{group}:vars]\nansible_become=true")
    lines.append("[all_groups:children]\n" + "\n".join(f"g{g}" for g in range(10)))
    source = _write(tmp_path, "hosts.ini", "\n".join(lines) + "\n")
    started = time.perf_counter()
    raw, host_lines = load_ansible_inventory(source, use_ansible=False)
    elapsed = time.perf_counter() - started
    assert len(raw["hosts"]) == 1000 and len(raw["groups"]["all_groups"]["hosts"]) == 1000
    assert raw["hosts"]["h0999"]["ssh"] == {"user": "root", "port": 22, "sudo": True}
    assert host_lines["h0000"] == 5
    assert elapsed < 0.5, f"1,000 hosts took {elapsed:.3f}s"


def test_validator_reports_names_and_plaintext_at_the_host_line(tmp_path):
    from arpfix.inventory import load_inventory

    with pytest.raises(UsageError) as caught:
        load_inventory(MIXED_INI)
    assert "hosts.ini:15: hosts.db-a.address" in str(caught.value)
    assert "hosts.ini:19: hosts.n9.address" in str(caught.value)
    source = _write(
        tmp_path, "hosts.ini", "[web]\n\nweb1 ansible_host=192.0.2.1 ansible_password=s3cret\n"
    )
    with pytest.raises(UsageError) as caught:
        load_inventory(source)
    assert "hosts.ini:3: hosts.web1.ssh.password" in str(caught.value)
    assert "s3cret" not in str(caught.value)
