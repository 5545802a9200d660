"""Keep LSL discovery on this machine (or wherever ``[lsl] resolve_scope`` says).

liblsl's default discovery multicasts/broadcasts to the whole site; pedstream must not. liblsl reads
its configuration exactly once, lazily, when the first LSL object is created, so the settings must be
in place before then. :func:`configure_lsl` does three things:

1. renders an ``lsl_api.cfg`` (INI) from the arguments::

       [ports]
       IPv6 = disable                  ; "allow" when ipv6=True
       PortRange = 1024                ; ports 16572.. that outlets bind and discovery queries
       [multicast]
       ResolveScope = machine          ; machine | link | site | organization | global
       MachineAddresses = {127.0.0.1}  ; only with scope "machine" (drops the IPv6 FF31:: group)
       ListenAddress = 127.0.0.1       ; where the discovery (UDP multicast) server binds
       Interfaces = {127.0.0.1}        ; local interfaces discovery queries are sent from
       [lab]
       KnownPeers = {127.0.0.1}
       SessionID = default             ; streams are only visible within one session id
       [log]
       level = -1                      ; liblsl verbosity: -2 errors ... 0 info ... 9

2. writes it to a private file (``$XDG_CACHE_HOME/pedstream/lsl_api-<hash>.cfg``) and points
   ``LSLAPICFG`` at it, so child processes (``pedstream replay`` started by the demo) inherit it;
3. hands the same text to liblsl in this process with ``pylsl.set_config_content`` (which takes
   precedence over any file) when the installed pylsl offers it, else relies on ``LSLAPICFG``.

With ``log.level >= 0`` liblsl logs ``Configuration loaded from content`` (or the file path) on the
first LSL call, which is how the test suite checks the config is really the one in use. Note that
liblsl still binds its TCP data acceptor on all interfaces; with scope ``machine`` nothing is *sent*
beyond loopback (discovery queries go only to 127.0.0.1).

Why ``PortRange``: on one machine with scope ``machine``, discovery reaches an outlet in one of two
ways: the query to ``127.0.0.1:16571`` (the "multicast" port every outlet binds with SO_REUSEADDR;
for a unicast address the kernel hands the datagram to ONE of those sockets), or the unicast query
that the resolver sends to every port ``16572 .. 16572 + PortRange`` of each known peer. An outlet
binds its unicast UDP responder to the first free port of that range and, once the range is full,
to a random port nobody queries. With liblsl's default range of 32 a resolver therefore finds at
most 33 outlets on this machine (measured: 33 of 50, 36 of 200), whatever the wait. ``port_range``
(default 1024) sets the range, so up to about that many outlets on one machine are found (every
outlet of this machine using the same range; a resolve wave sends one small datagram per port).

Calling :func:`configure_lsl` again with the same settings is a no-op; with different settings after
the first call it raises :class:`~pedstream.errors.ConfigError` (liblsl cannot be re-configured).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pedstream.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import LSLSection

__all__ = ["configure_lsl", "configure_lsl_from", "ensure_lsl_configured", "render_lsl_config", "lsl_configured",
           "SCOPES"]

log = logging.getLogger(__name__)

SCOPES = ("machine", "link", "site", "organization", "global")

_applied: str | None = None  # the config text handed to liblsl in this process


def _set(values: Iterable[str]) -> str:
    return "{" + ", ".join(values) + "}"


def render_lsl_config(
    *,
    scope: str = "machine",
    known_peers: Iterable[str] = ("127.0.0.1",),
    interfaces: Iterable[str] = ("127.0.0.1",),
    ipv6: bool = False,
    port_range: int = 1024,
    session_id: str = "default",
    log_level: int = -1,
) -> str:
    """The ``lsl_api.cfg`` text for these settings (see the module docstring for the layout)."""
    if scope not in SCOPES:
        raise ConfigError([("lsl.resolve_scope", f"must be one of {', '.join(SCOPES)} (got {scope!r})")])
    if not -3 <= int(log_level) <= 9:
        raise ConfigError([("lsl.log_level", f"must be between -3 and 9 (got {log_level})")])
    if not session_id or any(c in session_id for c in "\n\r[]="):
        raise ConfigError([("lsl.session_id", f"must be a non-empty single word (got {session_id!r})")])
    if not 32 <= int(port_range) <= 16384:
        raise ConfigError([("lsl.port_range", f"must be between 32 and 16384 (got {port_range})")])
    interfaces = [str(i) for i in interfaces]
    lines = ["[ports]", f"IPv6 = {'allow' if ipv6 else 'disable'}", f"PortRange = {int(port_range)}", "",
             "[multicast]", f"ResolveScope = {scope}"]
    if scope == "machine":
        lines.append("MachineAddresses = {127.0.0.1}" if not ipv6 else
                     "MachineAddresses = {127.0.0.1, FF31:113D:6FDD:2C17:A643:FFE2:1BD1:3CD2}")
    if interfaces:
        if len(interfaces) == 1:
            lines.append(f"ListenAddress = {interfaces[0]}")
        lines.append(f"Interfaces = {_set(interfaces)}")
    lines += ["", "[lab]", f"KnownPeers = {_set(str(p) for p in known_peers)}", f"SessionID = {session_id}",
              "", "[log]", f"level = {int(log_level)}", ""]
    return "\n".join(lines)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pedstream"


def lsl_configured() -> str | None:
    """The config text applied in this process, or None if :func:`configure_lsl` was not called."""
    return _applied


def configure_lsl(
    *,
    scope: str = "machine",
    known_peers: Iterable[str] = ("127.0.0.1",),
    interfaces: Iterable[str] = ("127.0.0.1",),
    ipv6: bool = False,
    port_range: int = 1024,
    session_id: str = "default",
    log_level: int = -1,
    directory: str | Path | None = None,
) -> Path:
    """Apply the LSL network settings to this process (and its children). Returns the cfg path.

    Must run before the first LSL object (outlet, inlet, resolver) is created in this process.
    """
    global _applied
    text = render_lsl_config(scope=scope, known_peers=known_peers, interfaces=interfaces, ipv6=ipv6,
                             port_range=port_range, session_id=session_id, log_level=log_level)
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    folder = Path(directory) if directory is not None else _cache_dir()
    path = folder / f"lsl_api-{digest}.cfg"
    if _applied is not None:
        if _applied != text:
            raise ConfigError([("lsl", "liblsl is already configured in this process with other settings; "
                                       "it reads its configuration only once")], source="lsl")
        os.environ["LSLAPICFG"] = str(path) if path.is_file() else os.environ.get("LSLAPICFG", "")
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError([("lsl", f"cannot write {path}: {exc.strerror or exc}")], source="lsl") from exc
    os.environ["LSLAPICFG"] = str(path)
    import pylsl

    setter = getattr(pylsl, "set_config_content", None)
    if setter is not None:
        try:
            setter(text)
        except NotImplementedError:  # old liblsl: the env var is all we have
            setter = None
    _applied = text
    log.info("LSL configured (%s): scope=%s, session=%s", path, scope, session_id)
    return path


def configure_lsl_from(section: "LSLSection") -> Path:
    """:func:`configure_lsl` with the values of the ``[lsl]`` config section."""
    return configure_lsl(scope=section.resolve_scope, known_peers=section.known_peers,
                         interfaces=section.interfaces, ipv6=section.ipv6,
                         port_range=section.port_range, session_id=section.session_id,
                         log_level=section.log_level)


def ensure_lsl_configured() -> None:
    """Called by every pedstream code path before it creates an LSL object: if nobody configured
    LSL in this process yet, apply the safe defaults (scope ``machine``, loopback only) rather than
    liblsl's site-wide discovery."""
    if _applied is None:
        log.info("LSL not configured explicitly: applying the machine-only defaults")
        configure_lsl()
