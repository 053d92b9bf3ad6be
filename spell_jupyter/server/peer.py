"""Is an HTTP client on this host, running as this server's user?

Such a client may have files copied on disk (uploads, `spell cp`) instead of sent over HTTP: it
could read and write them itself, so the server grants it nothing new. Linux only: the owner of
the client's end of a TCP connection is read from /proc/net/tcp[6], as identd does; psutil can
only answer through a scan of every process's open files.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
Endpoint = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _endpoint(address: str, port: int) -> Endpoint:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip, port


def _proc_endpoint(field: str) -> Endpoint:
    """`0100007F:1F90` (words in host byte order) -> (127.0.0.1, 8080)."""
    hex_ip, hex_port = field.split(":")
    raw = bytes.fromhex(hex_ip)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return _endpoint(socket.inet_ntop(family, raw), int(hex_port, 16))


def socket_owner(client: Endpoint, server: Endpoint) -> int | None:
    """The uid owning the local socket at `client` connected to `server`, or None when no
    socket of this network namespace is (the client is on another host or in a container)."""
    for table in PROC_TABLES:
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 8:
                continue
            if _proc_endpoint(fields[1]) == client and _proc_endpoint(fields[2]) == server:
                return int(fields[7])
    return None


def is_same_user_here(sock: socket.socket | None) -> bool:
    """Whether the peer of this accepted connection runs on this host as this process's user."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        peer, ours = sock.getpeername(), sock.getsockname()
    except OSError:
        return False
    owner = socket_owner(_endpoint(peer[0], peer[1]), _endpoint(ours[0], ours[1]))
    return owner is not None and owner == os.getuid()
