"""What the Linux facts script greps for, written once: the script (templates/linux/facts.sh.j2,
as the Jinja global `patterns`) runs them with `grep -E`, arpfix.platforms.linux sorts the output with
the same texts compiled by Python's `re`. Each pattern is valid in both dialects: no POSIX classes
(Python has none), no backslash escapes (ERE has none); the blank in brackets is a space and a tab."""

# firewall rules that drop the DR traffic's replies (stateful "invalid" drops), nft and iptables syntax
FIREWALL_DROP = "ct state.*invalid.*drop|INVALID.*DROP"
# NAT REDIRECT rules for the VIP (the redirect method), nft and iptables syntax
REDIRECT_RULE = "daddr .*redirect| -d .*REDIRECT"
# a sysctl file's line that sets an ARP, rp_filter or DAD key (anchored at the start of the line)
SYSCTL_FILE_LINE = ("[ \t]*-?net[./]ipv[46][./]conf[./][^=]*[./]"
                    "(arp_ignore|arp_announce|rp_filter|accept_dad|dad_transmits)[ \t]*=")
# files that load REDIRECT rules at boot: constant globs, expanded by the remote shell
REDIRECT_BOOT_FILES = ("/etc/nftables.conf", "/etc/nftables.d/*.nft", "/etc/sysconfig/nftables.conf",
                       "/etc/iptables/rules.v4", "/etc/iptables/rules.v6")
# a systemd-networkd .network file's lines that decide which links it manages and what it keeps
NETWORKD_LINE = "[ \t]*(Name|KeepConfiguration|Unmanaged)[ \t]*="
