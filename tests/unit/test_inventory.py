"""Inventory loading: resolution and every class of error, each with file, line and field."""

from __future__ import annotations

import textwrap

import pytest

from arpfix.errors import UsageError
from arpfix.inventory import InventoryError, load_inventory, select_hosts

GOOD = """\
defaults:
  ssh: {user: admin, key_file: /k, sudo: true}
groups:
  web:
    hosts: [rs1, rs2]
    vars: {ssh: {port: 2200}, method: host-scope}
  edge:
    children: [web]
    vars: {ssh: {user: edge}, method: dummy}
hosts:
  rs1: {platform: linux, address: 10.9.0.11}
  rs2: {platform: linux, address: 10.9.0.12, ssh: {port: 22}}
  ss1:
    platform: windows
    address: 10.9.0.21
    winrm: {scheme: http, auth: ntlm, user: 'CORP\\svc', password: {env: WINPW}}
  agent1: {platform: linux, address: 10.9.0.2}
profiles:
  sharescan: [{protocol: tcp, port: 443}, {protocol: tcp, port: 80}]
vips:
  - {name: web, address: 10.9.0.250, services: [{protocol: tcp, port: 80}], real_servers: [web]}
  - {name: ss, address: 10.9.0.251, profile: sharescan, real_servers: [ss1, rs1], affinity: source-ip}
  - {name: ss6, address: "fd09::251", profile: sharescan, real_servers: [ss1]}
load_balancer: {name: lb01, macs: ["00:00:5E:00:01:01"]}
agent: {host: agent1}
"""


def write(tmp_path, text, name="inv.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(tmp_path, text):
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, text))
    return str(info.value).splitlines()


def test_precedence_host_over_child_group_over_parent_over_defaults(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    rs1, rs2 = inv.hosts["rs1"], inv.hosts["rs2"]
    assert rs1.ssh.port == 2200 and rs2.ssh.port == 22  # host beats group
    assert rs1.ssh.user == "edge"  # parent group beats defaults
    assert rs1.ssh.sudo is True and rs1.ssh.key_file == "/k"  # defaults merge key by key
    assert rs1.method == "host-scope"  # child group (web) beats parent (edge)
    assert inv.hosts["ss1"].winrm.port == 5985  # http scheme implies its port
    assert str(inv.hosts["ss1"].winrm.password) == "<secret from environment variable WINPW>"


def test_vips_resolve_groups_profiles_and_families(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    web, ss, ss6 = inv.vips
    assert web.real_servers == ("rs1", "rs2")
    assert [str(s) for s in ss.services] == ["tcp/443", "tcp/80"] and ss.affinity == "source-ip"
    assert ss6.family == 6
    assert [v.name for v in inv.vips_for("rs1")] == ["web", "ss"]
    assert inv.real_servers == ["rs1", "rs2", "ss1"]
    assert inv.load_balancer.macs == ("00:00:5e:00:01:01",)


def test_every_error_of_a_file_at_once_with_line_and_field(tmp_path):
    lines = problems(tmp_path, """\
        hosts:
          rs1: {platform: linx, address: 10.9.0.300}
          rs2: {platform: linux, address: 10.9.0.12, nic: "eth0;reboot"}
          rs3: {platform: linux, address: 10.9.0.12}
        vips:
          - {name: v, address: 10.9.0.12, services: [{port: 80, real_port: 8080}], real_servers: [rs9]}
        """)
    text = "\n".join(lines)
    assert "inv.yml:2: hosts.rs1.platform: unknown value 'linx' (allowed: linux, windows); did you mean 'linux'?" in text
    assert "inv.yml:2: hosts.rs1.address: invalid IP address '10.9.0.300'" in text
    assert "inv.yml:3: hosts.rs2.nic: invalid Linux interface name 'eth0;reboot'" in text
    assert "inv.yml:4: hosts.rs3.address: address 10.9.0.12 is also host 'rs2'" in text
    assert "VIP 10.9.0.12 is the own address of host 'rs2'" in text
    assert "DR mode cannot translate ports" in text
    assert "unknown host or group 'rs9'" in text
    assert len(lines) == 7


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.5", "loopback"), ("169.254.1.1", "link-local"), ("224.0.0.5", "multicast"),
    ("0.0.0.0", "unspecified"), ("::1", "loopback"), ("fe80::1", "link-local"), ("240.0.0.1", "reserved"),
])
def test_vip_ranges_refused(tmp_path, address, reason):
    lines = problems(tmp_path, f"""\
        hosts: {{rs1: {{platform: linux, address: 10.9.0.11}}}}
        vips: [{{name: v, address: "{address}", services: [{{port: 80}}], real_servers: [rs1]}}]
        """)
    assert any(reason in line and "vips[0].address" in line for line in lines)


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    lines = problems(tmp_path, """\
        host:
          rs1: {platform: linux, address: 10.9.0.11}
        """)
    assert any("unknown key 'host'; did you mean 'hosts'?" in line for line in lines)


def test_plaintext_password_refused_unless_allowed(tmp_path):
    text = """\
        hosts:
          ss1: {platform: windows, address: 10.9.0.21, winrm: {password: s3cret-canary}}
        """
    lines = problems(tmp_path, text)
    assert any("plaintext secrets are refused" in line for line in lines)
    assert not any("s3cret-canary" in line for line in lines)
    inv = load_inventory(write(tmp_path, text, "ok.yml"), allow_plaintext_secrets=True)
    assert "s3cret-canary" not in repr(inv.hosts["ss1"])


@pytest.mark.parametrize("content, message", [
    ("", "the inventory is empty"),
    ("- a\n- b\n", "must be a mapping, not a list"),
    ("hosts: [\n", "not valid YAML"),
    ("a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "alias bomb"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", "nests"),
])
def test_broken_files_end_in_one_usage_error(tmp_path, content, message):
    path = tmp_path / "broken.yml"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        load_inventory(str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_binary_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "bin.yml"
    path.write_bytes(b"hosts:\n  a: 1\n\x00\x01\x02")
    with pytest.raises(UsageError, match=r"bin.yml:3: not a text file"):
        load_inventory(str(path))


def test_limit_matches_hosts_and_groups_with_globs(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    assert [h.name for h in select_hosts(inv, ("web",))] == ["rs1", "rs2"]
    assert [h.name for h in select_hosts(inv, ("ss*,agent1",))] == ["ss1", "agent1"]
    with pytest.raises(UsageError, match="matches no host"):
        select_hosts(inv, ("nope*",))
