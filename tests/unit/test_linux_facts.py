"""The pieces of the Linux facts parser that encode kernel and systemd rules."""

from arpfix.platforms.linux import parse_facts, parse_sysctl_files, persisted_sysctls


def test_effective_value_is_the_larger_of_all_and_the_interface():
    facts = parse_facts({"sysctl4": {
        "all": {"arp_ignore": "1", "arp_announce": "0", "rp_filter": "0"},
        "eth0": {"arp_ignore": "0", "arp_announce": "2", "rp_filter": "1"},
        "eth1": {"arp_ignore": "8", "arp_announce": "0", "rp_filter": "0"},
    }})
    assert facts["effective4"]["eth0"] == {"arp_ignore": 1, "arp_announce": 2, "rp_filter": 1}
    assert facts["effective4"]["eth1"]["arp_ignore"] == 8


def test_sysctl_file_lines_in_dotted_and_slashed_form():
    text = (
        "/etc/sysctl.d/10-a.conf:net.ipv4.conf.all.arp_ignore = 1\n"
        "/etc/sysctl.conf:net/ipv4/conf/eth0.100/arp_announce=2\n"
        "/etc/sysctl.d/20-b.conf:-net.ipv4.conf.eth0/100.arp_ignore = 2\n"
    )
    entries = parse_sysctl_files(text)
    assert [(e["dev"], e["key"], e["value"]) for e in entries] == [
        ("all", "arp_ignore", 1), ("eth0.100", "arp_announce", 2), ("eth0.100", "arp_ignore", 2)]


def test_persisted_value_follows_systemd_sysctl_order():
    text = (
        "/usr/lib/sysctl.d/50-default.conf:net.ipv4.conf.all.arp_ignore = 0\n"
        "/etc/sysctl.d/90-arpfix.conf:net.ipv4.conf.all.arp_ignore = 1\n"
        "/run/sysctl.d/99-late.conf:net.ipv4.conf.all.arp_announce = 1\n"
        "/usr/lib/sysctl.d/99-late.conf:net.ipv4.conf.all.arp_announce = 2\n"
        "/etc/sysctl.conf:net.ipv4.conf.all.rp_filter = 2\n"
    )
    persisted = persisted_sysctls(parse_sysctl_files(text))
    assert persisted[("ipv4", "all", "arp_ignore")] == (1, "/etc/sysctl.d/90-arpfix.conf")
    # /run hides the same file name in /usr/lib
    assert persisted[("ipv4", "all", "arp_announce")] == (1, "/run/sysctl.d/99-late.conf")
    assert persisted[("ipv4", "all", "rp_filter")] == (2, "/etc/sysctl.conf")


def test_journal_lines_that_do_not_parse_are_kept_as_corrupt():
    import base64

    journal = base64.b64encode(b'{"op": "sysctl", "key": "k", "prev": "0", "new": "1"}\n{broken\n').decode()
    facts = parse_facts({"journal": journal})
    assert facts["journal"][0]["op"] == "sysctl"
    assert facts["journal"][1]["op"] == "corrupt"


def test_ifcfg_lo_block_is_idempotent_and_keeps_the_site_lines():
    from arpfix.platforms.linux import BLOCK_BEGIN, ifcfg_lo_with_vips

    site = "DEVICE=lo\nIPADDR=127.0.0.1\nIPADDR1=10.9.9.9\nNETMASK1=255.255.255.255\n"
    once = ifcfg_lo_with_vips(site, [("lo", "10.0.0.250/32", "lo:arpfix", "global")])
    assert once.startswith(site) and BLOCK_BEGIN in once
    assert "IPADDR2=10.0.0.250\nPREFIX2=32\nARPUPDATE=no\n" in once  # IPADDR1 is the site's
    assert ifcfg_lo_with_vips(once, [("lo", "10.0.0.250/32", "lo:arpfix", "global")]) == once
    assert ifcfg_lo_with_vips(once, []).count("IPADDR2") == 0


def test_networkmanager_keyfile_has_what_networkmanager_1_42_requires():
    """Each rule here is a refusal measured against the real daemon (tests/lab/test_stacks.py runs it)."""
    from arpfix.platforms.linux import nm_keyfile

    lo = {"interfaces": {"lo": {"addresses": [{"address": "127.0.0.1", "prefixlen": 8},
                                              {"address": "::1", "prefixlen": 128}]}}}
    v4 = (("lo", "10.0.0.250/32", "lo:arpfix", "global"),)
    text = nm_keyfile("rs1", lo, v4)
    assert "\n[loopback]\n" in text and "type=loopback" in text and "interface-name=lo" in text
    assert "address1=127.0.0.1/8\naddress2=10.0.0.250/32\n" in text
    assert "[ipv6]\nmethod=manual\naddress1=::1/128\n" in text  # never `ignore`, never manual without ::1
    assert nm_keyfile("rs1", lo, v4) == text and nm_keyfile("rs2", lo, v4) != text  # stable uuid per host
    both = nm_keyfile("rs1", lo, v4 + (("lo", "2001:db8::250/128", "", "global"),))
    assert "address1=::1/128\naddress2=2001:db8::250/128\n" in both
    no_v6 = nm_keyfile("rs1", {"interfaces": {"lo": {"addresses": [{"address": "127.0.0.1", "prefixlen": 8}]}}}, v4)
    assert "[ipv6]\nmethod=disabled\n" in no_v6


def test_listening_and_rule_lines_are_split_from_the_raw_commands():
    facts = parse_facts({
        "listening_raw": "tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*\n"
                         "udp   UNCONN 0      0      [fe80::1]%eth0:546           [::]:*",
        "rule_lines": "ct state invalid drop\nip daddr 10.0.0.5 tcp dport 80 redirect to :8080\n"
                      "-A PREROUTING -d 10.0.0.5/32 -p tcp -j REDIRECT --to-ports 8080",
    })
    assert facts["listening"] == [{"protocol": "tcp", "address": "0.0.0.0", "port": 22},
                                  {"protocol": "udp", "address": "fe80::1", "port": 546}]
    assert facts["firewall"] == ["ct state invalid drop"]
    assert facts["redirect_rules"] == ["ip daddr 10.0.0.5 tcp dport 80 redirect to :8080",
                                       "-A PREROUTING -d 10.0.0.5/32 -p tcp -j REDIRECT --to-ports 8080"]


def test_combined_reads_are_sorted_back_by_file():
    facts = parse_facts({
        "ip_batch": [[{"ifname": "lo", "addr_info": []}], [{"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"}]],
        "grep_lines": "/proc/sys/net/ipv4/conf/all/arp_ignore:1\n"
                      "/etc/sysctl.d/10-a.conf:net.ipv4.conf.all.arp_announce = 2\n"
                      "/etc/sysctl.conf:1 stray line that starts with a digit\n"
                      "/etc/nftables.conf:ip daddr 10.0.0.5 tcp dport 80 redirect to :8080\n"
                      "/etc/nftables.conf:net.ipv4.conf.all.arp_ignore = 0\n",
    })
    assert facts["sysctl4"]["all"]["arp_ignore"] == 1
    assert [(e["file"], e["key"], e["value"]) for e in facts["sysctl_files"]] == [("/etc/sysctl.d/10-a.conf", "arp_announce", 2)]
    assert facts["redirect_files"] == ["/etc/nftables.conf:ip daddr 10.0.0.5 tcp dport 80 redirect to :8080"]
    assert facts["default_route"] == {"gateway": "10.0.0.1", "dev": "eth0"} and "lo" in facts["interfaces"]
