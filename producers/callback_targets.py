"""Where callbacks may go: the public internet, not this host, its network or a cloud's
metadata service.

A producer's ``callback_url`` is checked twice:

* when the message (or payment) is accepted (``producers/validation.py``
  ``check_callback_url``): an address written in the URL, ``localhost`` and names that can
  only be local (one label, ``.localhost``, ``.local``, ``.internal``) are refused with a clear
  error;
* when the dispatcher connects (``producers/http/callbacks.py``): the name is resolved, every
  address it resolves to is checked, and the POST goes to the checked address (``Host`` and
  TLS server name stay the URL's), so a name that resolves to a private address, or changes
  between the check and the connection, never reaches one.

Refused: loopback, link-local (169.254/16 with the metadata address, fe80::/10), private
(10/8, 172.16/12, 192.168/16, fc00::/7), shared CGNAT (100.64/10), unspecified, multicast,
reserved and documentation ranges (anything ``ipaddress`` does not call global), the cloud
metadata addresses, and IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4, Teredo) when that address is refused.

The operator allows private targets per producer (``gonets token private-callbacks``; the
demo producer of ``make run`` has it), or per call in the Python API
(``allow_private_callback=True``); the record then carries ``callback_private`` and the
dispatcher connects to such addresses for it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: metadata services that sit at otherwise global addresses, or that deserve their own word
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",     # AWS ECS task metadata
    "fd00:ec2::254",     # AWS over IPv6
    "100.100.100.200",   # Alibaba Cloud
    "192.0.0.192",       # Oracle Cloud
))
#: names that resolve only inside a host or a network (RFC 6761/6762, cloud internal DNS)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class Refused(ValueError):
    """A callback target this producer may not reach; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    for net in _NAT64:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: Address) -> str | None:
    """What kind of address a callback may not go to ``ip`` is (None: it may go there)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            kind = _kind(inner)
            if kind is not None:
                return f"{kind} ({inner}) in an IPv6 form"
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a host's address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved address"
    return None


def address_refusal(ip: Address) -> str | None:
    """Why a callback may not go to ``ip`` (None: it may)."""
    kind = _kind(ip)
    return None if kind is None else f"{ip} is {kind}"


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def host_refusal(host: str) -> str | None:
    """Why a callback may not go to ``host`` as written, without asking DNS (None: it may,
    as far as its name tells; the dispatcher checks what it resolves to)."""
    h = host.lower().rstrip(".")
    ip = _literal(h)
    if ip is not None:
        return address_refusal(ip)
    try:  # the forms inet_aton reads that ipaddress does not: 2130706433, 0x7f.1, 127.1
        return address_refusal(ipaddress.IPv4Address(socket.inet_aton(h)))
    except (OSError, ValueError):
        pass
    if h == "localhost" or h.endswith(LOCAL_SUFFIXES):
        return f"{host} is a local name"
    if "." not in h:
        return f"{host} is a one-label name, which only a local network resolves"
    return None


@dataclass(frozen=True)
class Pinned:
    """Where to connect: the URL with the checked address in place of the name, and what
    keeps the request the name's (``Host``; the TLS server name, httpx's ``sni_hostname``)."""

    url: str
    host_header: str
    sni_hostname: str | None


#: how names are resolved: ``socket.getaddrinfo``'s signature (a seam for tests)
Resolver = Callable[..., list[Any]]


def pin(url: str, *, allow_private: bool = False,
        resolve: Resolver = socket.getaddrinfo) -> Pinned:
    """Resolve ``url``'s host and check every address it resolves to; raises ``Refused``
    (an address or name it may not reach) or ``OSError`` (the name does not resolve)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host_header = parts.netloc.rsplit("@", 1)[-1]
    why = None if allow_private else host_refusal(host)
    if why is not None:
        raise Refused(why)
    if _literal(host) is not None:
        return Pinned(url, host_header, None)  # checked above
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = resolve(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0])
                                   for i in infos))
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for ip in addresses if not allow_private else ():
        kind = _kind(ip)
        if kind is not None:  # any of them: the next connection could take that one
            raise Refused(f"{host} resolves to {ip}, {kind}")
    ip = addresses[0]
    ip_host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{ip_host}:{parts.port}" if parts.port else ip_host
    if "@" in parts.netloc:  # credentials in the URL go with it (httpx sends them)
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    sni = host if parts.scheme == "https" else None
    return Pinned(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), host_header,
                  sni)
