"""SSH transport (paramiko): strict host keys by default, one script per round trip.

The script is sent on stdin to `sh -s` (or `sudo -n sh -s`), so nothing from it appears on a
command line or in the remote process list, and its length is not limited by ARG_MAX.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from typing import Any

import paramiko

from arpfix.errors import HostKeyError, TransportError
from arpfix.quoting import sh_quote
from arpfix.secrets import redact
from arpfix.settings import Host
from arpfix.transport.base import parse_json_output

_known_hosts_lock = threading.Lock()
READY_MARKER = b"ARPFIX-SHELL-READY\n"
READY_BOOTSTRAP = "printf 'ARPFIX-SHELL-READY\\n'; exec sh -s"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a host key."""
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown key: refuse (naming the fingerprint), or record it when trust on first use is on."""

    def __init__(self, known_hosts: str, trust_on_first_use: bool) -> None:
        self.known_hosts = known_hosts
        self.trust_on_first_use = trust_on_first_use

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.trust_on_first_use:
            raise HostKeyError(
                f"{hostname}: host key not in {self.known_hosts} (presented {key.get_name()} "
                f"{fingerprint(key)}); verify it and add it, or use --trust-on-first-use"
            )
        with _known_hosts_lock:
            directory = os.path.dirname(self.known_hosts)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            with open(self.known_hosts, "a", encoding="utf-8") as handle:
                os.chmod(self.known_hosts, 0o600)
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class SshTransport:
    def __init__(self, host: Host, *, trust_on_first_use: bool = False) -> None:
        self.host = host
        self.settings = host.ssh
        self.trust_on_first_use = trust_on_first_use
        self.client: paramiko.SSHClient | None = None

    # -- connection --------------------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        if self.client is not None:
            return self.client
        settings = self.settings
        known_hosts = os.path.expanduser(settings.known_hosts)
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(known_hosts)
        except FileNotFoundError:
            if not self.trust_on_first_use:
                raise HostKeyError(
                    f"{self.host.name}: known_hosts file {known_hosts} does not exist; "
                    "create it or use --trust-on-first-use"
                ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"{self.host.name}: cannot read known_hosts {known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_StrictPolicy(known_hosts, self.trust_on_first_use))
        kwargs: dict[str, Any] = {
            "hostname": self.host.connect,
            "port": settings.port,
            "username": settings.user,
            "timeout": settings.connect_timeout,
            "banner_timeout": settings.connect_timeout,
            "auth_timeout": settings.connect_timeout,
            "allow_agent": True,
            "look_for_keys": settings.key_file is None,
        }
        if settings.key_file:
            kwargs["key_filename"] = os.path.expanduser(settings.key_file)
        if settings.passphrase:
            kwargs["passphrase"] = settings.passphrase.resolve("SSH key passphrase")
        if settings.password:
            kwargs["password"] = settings.password.resolve("SSH password")
        name = self.host.name
        try:
            client.connect(**kwargs)
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{name}: host key CHANGED (presented {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"known_hosts has {fingerprint(exc.expected_key)}); refusing to connect"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise TransportError(f"{name}: authentication failed for user {settings.user!r}") from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise TransportError(
                f"{name}: connection to {self.host.connect}:{settings.port} timed out after {settings.connect_timeout:g}s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise TransportError(redact(f"{name}: cannot connect to {self.host.connect}:{settings.port}: {reason}")) from None
        self.client = client
        return client

    # -- running -----------------------------------------------------------------------------
    def run_raw(self, script: str, *, timeout: float | None = None) -> tuple[str, str, int]:
        """Run a script, return (stdout, stderr, exit code). Bounded by the command timeout."""
        client = self._connect()
        limit = timeout if timeout is not None else self.settings.command_timeout
        # The login shell's startup files (~/.bashrc) run before our command and may read stdin: the
        # script is sent only after the remote shell says it is ready, so nothing can swallow it.
        command = f"sh -c {sh_quote(READY_BOOTSTRAP)}"
        if self.settings.sudo and self.settings.user != "root":
            command = f"sudo -n sh -c {sh_quote(READY_BOOTSTRAP)}"
        name = self.host.name
        try:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                raise TransportError(f"{name}: connection lost")
            channel = transport.open_session(timeout=self.settings.connect_timeout)
            channel.settimeout(limit)
            channel.exec_command(command)
            stdout, stderr = bytearray(), bytearray()
            deadline = time.monotonic() + limit
            while READY_MARKER not in stdout:
                if channel.recv_ready():
                    stdout += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                elif channel.exit_status_ready():
                    break
                elif time.monotonic() > deadline:
                    channel.close()
                    raise TransportError(f"{name}: the remote shell did not start within {limit:g}s")
                else:
                    channel.status_event.wait(0.01)
            if READY_MARKER in stdout:
                del stdout[: stdout.index(READY_MARKER) + len(READY_MARKER)]  # drop login noise
                channel.sendall(script.encode("utf-8"))
            channel.shutdown_write()
            while True:
                if channel.recv_ready():
                    stdout += channel.recv(65536)
                    continue
                if channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                    continue
                # sshd may send exit-status before the last output: finish only at end of stream
                if (channel.eof_received or channel.closed) and channel.exit_status_ready() \
                        and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    channel.close()
                    raise TransportError(f"{name}: remote script timed out after {limit:g}s")
                if transport is None or not transport.is_active():
                    raise TransportError(f"{name}: connection lost while the script ran")
                channel.status_event.wait(0.05)
            exit_code = channel.recv_exit_status()
            # drain anything that arrived with the exit status
            while channel.recv_ready():
                stdout += channel.recv(65536)
            while channel.recv_stderr_ready():
                stderr += channel.recv_stderr(65536)
            channel.close()
        except TransportError:
            raise
        except (socket.timeout, TimeoutError):
            raise TransportError(f"{name}: remote script timed out after {limit:g}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(redact(f"{name}: connection lost: {exc or type(exc).__name__}")) from None
        if exit_code == -1:
            raise TransportError(f"{name}: connection lost before the script finished")
        out = stdout.decode("utf-8", "replace")
        err = stderr.decode("utf-8", "replace")
        if exit_code != 0 and "sudo" in command and "password is required" in err:
            raise TransportError(f"{name}: sudo needs a password; allow NOPASSWD for arpfix's user")
        return out, err, exit_code

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        out, err, exit_code = self.run_raw(script, timeout=timeout)
        return parse_json_output(self.host.name, out, redact(err), exit_code)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
