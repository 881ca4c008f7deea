#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for arpfix and run the demo or the tests (as root).
#   bash dev.sh demo    # install, then run `arpfix lab demo` on the built-in lab
#   bash dev.sh test    # install, then run the whole test suite (lab tests need root)
set -euo pipefail
cd "$(dirname "$0")"
action=${1:-test}; shift || true
APT_PACKAGES=(openssh-server openssh-client iproute2 nftables arping tcpdump iputils-ping procps util-linux
              psmisc socat iperf3 python3-venv python3-pip sudo
              keepalived  # the agent pair's VRRP (tests/lab/test_agent_pair.py)
              strace  # counts the facts script's writes (tests/lab/test_ssh_shell.py)
              mono-mcs)  # mono-mcs: compiles the Windows Add-Type C# as C# 5 in a unit test
need=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "dev.sh: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"
case "$action" in
  demo) exec .venv/bin/arpfix lab demo "$@" ;;
  test) exec .venv/bin/python -m pytest -q "$@" ;;
  *) echo "usage: bash dev.sh demo|test [args...]" >&2; exit 2 ;;
esac
