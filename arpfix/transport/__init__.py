"""Transports: how a rendered script reaches a host. Imported lazily (paramiko, pywinrm are slow)."""

from __future__ import annotations

from dataclasses import dataclass

from arpfix.settings import Host
from arpfix.transport.base import Transport


@dataclass(frozen=True)
class TransportOptions:
    trust_on_first_use: bool = False  # SSH: record unknown host keys (changed keys are still refused)
    insecure: bool = False  # WinRM: allow cert_validation false and Basic over HTTP


def make_transport(host: Host, options: TransportOptions) -> Transport:
    if host.platform == "windows":
        from arpfix.transport.winrm import WinrmTransport

        return WinrmTransport(host, insecure=options.insecure)  # type: ignore[return-value]
    from arpfix.transport.ssh import SshTransport

    return SshTransport(host, trust_on_first_use=options.trust_on_first_use)
