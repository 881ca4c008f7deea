"""SSH transport (paramiko): strict host keys by default, one remote shell per host and run.

Scripts are sent on stdin to `sh -s` (or `sudo -n sh -s`), so nothing from them appears on a
command line or in the remote process list, and their length is not limited by ARG_MAX. The same
remote shell runs every script of one command (facts, then the change), one login per host.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import re
import secrets
import select
import sys
import threading
import time
import types
from typing import Any

from arpfix.errors import HostKeyError, TransportError
from arpfix.quoting import sh_quote
from arpfix.secrets import redact
from arpfix.settings import Host
from arpfix.transport.base import parse_json_output, stdin_safe


def _installed_version(package: str) -> str | None:
    """A package's version from its `NAME-VERSION.dist-info` folder beside it (pip's layout), or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.dirname(list(spec.submodule_search_locations)[0])
    prefix = package + "-"
    found = [entry.name[len(prefix):-len(".dist-info")] for entry in os.scandir(folder)
             if entry.name.startswith(prefix) and entry.name.endswith(".dist-info")]
    return found[0] if len(found) == 1 else None


def _load_paramiko() -> None:
    """Import paramiko without two imports arpfix does not need: `invoke` (about 60 ms; paramiko.config
    uses it only for ssh_config "Match exec", which arpfix never reads) and `importlib.metadata`
    (about 13 ms; paramiko's __init__ uses it only for its own version, which goes into its SSH
    banner). The version is read from paramiko's dist-info folder name instead; where that is not
    pip's layout, paramiko is imported as it is. The import system is left as it was."""
    hidden: dict[str, Any] = {}
    if "invoke" not in sys.modules:
        hidden["invoke"] = None
    version = _installed_version("paramiko") if "importlib.metadata" not in sys.modules else None
    if version is not None:
        metadata = types.ModuleType("importlib.metadata")

        def only_paramiko(name: str) -> str:
            if name != "paramiko":
                raise LookupError(name)
            return version

        metadata.version = only_paramiko  # type: ignore[attr-defined]
        hidden["importlib.metadata"] = metadata
    try:
        _import_paramiko_with(hidden)
    except Exception:  # noqa: BLE001 - a paramiko that wants more of importlib.metadata: the real one
        hidden.pop("importlib.metadata", None)
        _import_paramiko_with(hidden)


def _import_paramiko_with(stand_ins: dict[str, Any]) -> None:
    """Import paramiko with `stand_ins` in sys.modules, and take them out again, whatever happens."""
    sys.modules.update(stand_ins)
    try:
        import paramiko  # noqa: F401
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name, 0) is module:
                del sys.modules[name]


_load_paramiko()
import paramiko  # noqa: E402
from paramiko.hostkeys import HostKeyEntry, HostKeys, InvalidHostKey  # noqa: E402

_known_hosts_lock = threading.Lock()
READY_MARKER = b"ARPFIX-SHELL-READY\n"
WAKE = 0.5  # longest wait for a remote shell's output before the deadline and the connection are checked
READY_BOOTSTRAP = "printf 'ARPFIX-SHELL-READY\\n'; exec sh -s"


def sudo_failure(stderr: str, user: str) -> str | None:
    """One line for what `sudo -n` said when it refused, or None when it was not sudo's refusal.

    The texts are sudo's own (sudo 1.9, C locale), from `sudo -n` and, after "a password is required",
    `sudo -n -l`: the user is not in sudoers, sudoers allows the user only other commands ("User X may
    run the following commands" without NOPASSWD: ALL), a password is needed, or sudo is not installed."""
    if "not in the sudoers file" in stderr or "may not run sudo" in stderr:
        return f"{user} may not use sudo on this host (not in sudoers); add {user} to sudoers or log in as root"
    if "is not allowed to execute" in stderr or "not allowed to run" in stderr or (
            "may run the following commands" in stderr and not re.search(r"\bNOPASSWD: ALL\b", stderr)
            and not re.search(r"\)\s+ALL\s*$", stderr, re.MULTILINE)):  # "(root) ALL": all, with a password
        return (f"sudo allows {user} only some commands, and not `sh` as root, which arpfix needs to run its scripts: "
                f"allow `{user} ALL=(root) NOPASSWD: /bin/sh` or log in as root")
    if "password is required" in stderr:
        return (f"sudo needs a password for {user}: arpfix runs `sudo -n` (no prompt); allow NOPASSWD for {user} "
                "in sudoers, or log in as root")
    if "sudo: not found" in stderr or "sudo: command not found" in stderr:
        return "sudo is not installed on this host; install it or log in as root (set ssh sudo: false)"
    return None


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """A known_hosts file read once per run and indexed by host name.

    paramiko's HostKeys scans every line for each lookup, and its loader checks each new line
    against all earlier ones: per connection that is O(lines^2), for a fleet O(hosts^3). Lines are
    parsed as paramiko does (HostKeyEntry.from_line); a line it cannot parse is skipped, also one with
    a corrupt key (paramiko's loader would raise there)."""

    def __init__(self, path: str) -> None:
        self.plain: dict[str, dict[str, paramiko.PKey]] = {}
        self.hashed: list[tuple[str, paramiko.PKey]] = []
        with open(path, encoding="utf-8", errors="replace") as handle:
            for lineno, line in enumerate(handle, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    entry = HostKeyEntry.from_line(line, lineno)
                except (paramiko.SSHException, InvalidHostKey):
                    continue  # as OpenSSH does (paramiko's own loader would stop at a bad key)
                if entry is None:
                    continue
                for name in entry.hostnames:
                    if name.startswith("|1|"):
                        self.hashed.append((name, entry.key))
                    else:
                        self.plain.setdefault(name, {}).setdefault(entry.key.get_name(), entry.key)

    def lookup(self, name: str) -> dict[str, paramiko.PKey]:
        """Key type -> key for `name` (first line wins per type, as in paramiko)."""
        found = dict(self.plain.get(name, {}))
        for hashed, key in self.hashed:
            if key.get_name() not in found and HostKeys.hash_host(name, hashed) == hashed:
                found[key.get_name()] = key
        return found


_known_hosts_cache: dict[str, tuple[tuple[int, int, int], KnownHosts]] = {}
_key_lock = threading.Lock()
_key_cache: dict[tuple[str, tuple[int, int, int], str], paramiko.PKey] = {}


def private_key(path: str, passphrase: str | None) -> paramiko.PKey | None:
    """The key file parsed once per run and shared by every connection (paramiko's `key_filename`
    reads and parses it for each connection, trying each key type in turn), with its certificate
    (`PATH-cert.pub`) where there is one, as paramiko loads it. None where it cannot be read here:
    the caller then hands paramiko the file name, so every error is paramiko's own, as before."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    secret = hashlib.sha256((passphrase or "").encode()).hexdigest()  # no secret kept as a key
    cache_key = (path, (stat.st_mtime_ns, stat.st_size, stat.st_ino), secret)
    with _key_lock:
        key = _key_cache.get(cache_key)
        if key is None:
            try:
                # from_path wants the password as bytes (from_private_key_file took str)
                key = paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
            except Exception:  # noqa: BLE001 - paramiko reports the problem itself when it tries the file
                return None
            _key_cache[cache_key] = key
        return key


class _Transport(paramiko.Transport):
    # paramiko's thread wakes every 0.1 s on an idle connection to look whether it was closed; close()
    # does not wait for it (the socket is closed and the thread ends at its next wake-up), so a longer
    # wait only means fewer wake-ups: 50 idle connections woke about 500 times a second
    _active_check_timeout = 1.0


def prefer_aead(*args: Any, **kwargs: Any) -> paramiko.Transport:
    """A paramiko Transport that offers AES-GCM first (then paramiko's own order).

    paramiko's default puts aes*-ctr with hmac-sha2 first; its HMAC check compares the MAC byte by
    byte in Python (`util.constant_time_bytes_eq`), the largest per-packet cost of a connection here.
    AES-GCM (RFC 5647, OpenSSH's aes128-gcm@openssh.com since 6.2) authenticates inside
    cryptography's C code and needs no separate MAC; it is not affected by the Terrapin prefix
    truncation (CVE-2023-48795, which concerns chacha20-poly1305 and EtM MACs). A server without it
    negotiates the next cipher of paramiko's list."""
    transport = _Transport(*args, **kwargs)
    options = transport.get_security_options()
    ciphers = tuple(options.ciphers)
    aead = tuple(name for name in ciphers if name.endswith("-gcm@openssh.com"))
    options.ciphers = aead + tuple(name for name in ciphers if name not in aead)
    return transport


def known_hosts(path: str) -> KnownHosts:
    """The parsed file, shared by every connection of this run until the file changes (TOFU appends)."""
    stat = os.stat(path)
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    with _known_hosts_lock:
        cached = _known_hosts_cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = _known_hosts_cache[path] = (stamp, KnownHosts(path))
        return cached[1]


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
        self._channel: paramiko.Channel | None = None

    # -- connection --------------------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        if self.client is not None:
            return self.client
        settings = self.settings
        known_hosts_path = os.path.expanduser(settings.known_hosts)
        client = paramiko.SSHClient()
        try:
            # only this host's keys: paramiko checks the server's key against these
            name = self.host.connect if settings.port == 22 else f"[{self.host.connect}]:{settings.port}"
            for key_type, key in known_hosts(known_hosts_path).lookup(name).items():
                client.get_host_keys().add(name, key_type, key)
        except FileNotFoundError:
            if not self.trust_on_first_use:
                raise HostKeyError(
                    f"{self.host.name}: known_hosts file {known_hosts_path} does not exist; "
                    "create it or use --trust-on-first-use"
                ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyError(f"{self.host.name}: cannot read known_hosts {known_hosts_path}: {exc}") from None
        client.set_missing_host_key_policy(_StrictPolicy(known_hosts_path, self.trust_on_first_use))
        kwargs: dict[str, Any] = {
            "hostname": self.host.connect,
            "port": settings.port,
            "username": settings.user,
            "timeout": settings.connect_timeout,
            "banner_timeout": settings.connect_timeout,
            "auth_timeout": settings.connect_timeout,
            "allow_agent": True,
            "look_for_keys": settings.key_file is None,
            "transport_factory": prefer_aead,
        }
        if settings.passphrase:
            kwargs["passphrase"] = settings.passphrase.resolve("SSH key passphrase")
        if settings.password:
            kwargs["password"] = settings.password.resolve("SSH password")
        if settings.key_file:
            path = os.path.expanduser(settings.key_file)
            # paramiko unlocks the key with the password where no passphrase is given
            key = private_key(path, kwargs.get("passphrase", kwargs.get("password")))
            if key is not None:
                kwargs["pkey"] = key
            else:
                kwargs["key_filename"] = path
        name = self.host.name
        try:
            if settings.proxy_command:
                kwargs["sock"] = paramiko.ProxyCommand(
                    proxy_command(settings.proxy_command, self.host.connect, settings.port, settings.user))
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
        except TimeoutError:
            client.close()
            raise TransportError(
                f"{name}: connection to {self.host.connect}:{settings.port} timed out after {settings.connect_timeout:g}s"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            via = f" through proxy_command {settings.proxy_command!r}" if settings.proxy_command else ""
            where = f"{self.host.connect}:{settings.port}{via}"
            raise TransportError(redact(f"{name}: cannot connect to {where}: {reason}")) from None
        self.client = client
        return client

    # -- running -----------------------------------------------------------------------------
    # One remote shell per host and run: `sh -s` on one channel, fed one script after another.
    # Each script runs in a subshell with stdin from /dev/null and is followed by a marker that
    # carries its exit status, so facts -> (plan in Python) -> change costs one login, not two.
    def _open_shell(self, limit: float) -> paramiko.Channel:
        client = self._connect()
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(f"{self.host.name}: connection lost")
        # The login shell's startup files (~/.bashrc) run before our command and may read stdin:
        # scripts are sent only after the remote shell says it is ready, so nothing can swallow them.
        command = f"sh -c {sh_quote(READY_BOOTSTRAP)}"
        if self.settings.sudo and self.settings.user != "root":
            command = f"sudo -n sh -c {sh_quote(READY_BOOTSTRAP)}"
        channel = transport.open_session(timeout=self.settings.connect_timeout)
        channel.settimeout(limit)
        channel.exec_command(command)
        stdout, stderr = bytearray(), bytearray()
        deadline = time.monotonic() + limit
        while READY_MARKER not in stdout:
            if not self._receive(channel, stdout, stderr):
                if channel.exit_status_ready() or channel.closed or channel.eof_received:
                    err = stderr.decode("utf-8", "replace")
                    channel.close()
                    reason = sudo_failure(err, self.settings.user) if self.settings.sudo else None
                    if reason and "password is required" in err:
                        # `sudo -n` asks for the password before it says what is allowed: sudo -l tells
                        # (without a password where any sudoers entry of the user is NOPASSWD)
                        reason = sudo_failure(err + "\n" + self._sudo_list(transport), self.settings.user) or reason
                    if reason:
                        raise TransportError(f"{self.host.name}: {reason}")
                    tail = (err.strip().splitlines() or ["no output"])[-1]
                    raise TransportError(redact(f"{self.host.name}: the remote shell did not start ({tail})"))
                if time.monotonic() > deadline:
                    channel.close()
                    raise TransportError(f"{self.host.name}: the remote shell did not start within {limit:g}s")
                select.select([channel], [], [], WAKE)
        return channel

    def _sudo_list(self, transport: paramiko.Transport) -> str:
        """What `sudo -n -l` says for the login user (output and errors), or "" when it cannot run."""
        try:
            channel = transport.open_session(timeout=self.settings.connect_timeout)
            channel.settimeout(self.settings.connect_timeout)
            channel.exec_command("LC_ALL=C sudo -n -l 2>&1")
            out = bytearray()
            while True:
                chunk = channel.recv(65536)
                if not chunk:
                    break
                out += chunk
            channel.close()
            return out.decode("utf-8", "replace")
        except (paramiko.SSHException, OSError, EOFError):
            return ""

    @staticmethod
    def _receive(channel: paramiko.Channel, stdout: bytearray, stderr: bytearray) -> bool:
        got = False
        while channel.recv_ready():
            stdout += channel.recv(65536)
            got = True
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
            got = True
        return got

    def run_raw(self, script: str, *, timeout: float | None = None) -> tuple[str, str, int]:
        """Run a script on this host's remote shell, return (stdout, stderr, exit code).

        Bounded by the command timeout; a timeout or a lost connection ends the remote shell."""
        limit = timeout if timeout is not None else self.settings.command_timeout
        name = self.host.name
        try:
            if self._channel is None or self._channel.closed or self._channel.exit_status_ready():
                self._close_channel()
                self._channel = self._open_shell(limit)
            channel = self._channel
            channel.settimeout(limit)
            marker = f"ARPFIX-DONE-{secrets.token_hex(8)}"
            channel.sendall(
                f"{stdin_safe(script)}"
                f"printf '\\n{marker} %s\\n' \"$?\"; printf '\\n{marker}\\n' >&2\n".encode())
            out_marker, err_marker = ("\n" + marker + " ").encode(), ("\n" + marker + "\n").encode()
            stdout, stderr = bytearray(), bytearray()
            out_seen = False  # the output's marker has arrived (stderr's may still be on its way)
            deadline = time.monotonic() + limit
            transport = channel.get_transport()
            while True:
                if self._receive(channel, stdout, stderr):
                    at = stdout.find(out_marker)
                    out_seen = at >= 0
                    if out_seen and stdout.find(b"\n", at + len(out_marker)) >= 0 and err_marker in stderr:
                        break
                    if time.monotonic() <= deadline:
                        continue
                elif channel.closed or channel.eof_received or channel.exit_status_ready():
                    self._receive(channel, stdout, stderr)
                    if stdout.find(out_marker) >= 0 and err_marker in stderr:
                        break
                    code = channel.recv_exit_status() if channel.exit_status_ready() else -1
                    self._close_channel()
                    if code == -1:
                        raise TransportError(f"{name}: connection lost before the script finished")
                    tail = (stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
                    raise TransportError(
                        redact(f"{name}: the remote shell ended (exit {code}) before the script finished: {tail}"))
                if time.monotonic() > deadline:
                    self._close_channel()
                    raise TransportError(f"{name}: remote script timed out after {limit:g}s")
                if transport is None or not transport.is_active():
                    self._close_channel()
                    raise TransportError(f"{name}: connection lost while the script ran")
                # the channel's file descriptor is ready on output, end of output and close; not on
                # stderr, so once the output's marker is in, stderr's is looked for every 10 ms
                select.select([channel], [], [], 0.01 if out_seen else WAKE)
        except TransportError:
            raise
        except TimeoutError:
            self._close_channel()
            raise TransportError(f"{name}: remote script timed out after {limit:g}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._close_channel()
            raise TransportError(redact(f"{name}: connection lost: {exc or type(exc).__name__}")) from None
        at = stdout.find(out_marker)
        status_line = stdout[at + len(out_marker):].split(b"\n", 1)[0]
        exit_code = int(status_line) if status_line.strip().isdigit() else 1
        out = stdout[:at].decode("utf-8", "replace")
        err = stderr[: stderr.find(err_marker)].decode("utf-8", "replace")
        return out, err, exit_code

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - closing a dead channel must never mask the real error
                pass

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        out, err, exit_code = self.run_raw(script, timeout=timeout)
        return parse_json_output(self.host.name, out, redact(err), exit_code)

    def close(self) -> None:
        if self._channel is not None:
            try:
                self._channel.shutdown_write()  # the remote `sh -s` sees end of input and exits
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass
        self._close_channel()
        if self.client is not None:
            self.client.close()
            self.client = None


def proxy_command(template: str, host: str, port: int, user: str) -> str:
    """An OpenSSH-style ProxyCommand with its tokens filled in (%h host, %p port, %r user, %% a
    percent sign); paramiko runs the result (split like a shell would, never through a shell)."""
    tokens = {"h": host, "p": str(port), "r": user, "%": "%"}
    out, index = [], 0
    while index < len(template):
        char = template[index]
        if char == "%" and index + 1 < len(template) and template[index + 1] in tokens:
            out.append(tokens[template[index + 1]])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
