"""Which addresses webhooks may reach: the SSRF guard, as Meilisearch's `--experimental-allowed-ip-networks`.

By default only globally reachable addresses are allowed: loopback, private, shared, link-local,
documentation, reserved and the like are refused. The setting lists networks (CIDRs) allowed besides,
or `any` to allow every address. Delivery checks each address a host name resolves to, and connects to
the address it checked (a name that resolves again to another address cannot slip past).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpPolicy:
    """Refuses non-global addresses unless one of `allowed` holds them; `allow_all` turns the guard off."""

    def __init__(self, allowed: Iterable[Network] = (), *, allow_all: bool = False) -> None:
        self.allowed = tuple(allowed)
        self.allow_all = allow_all

    @classmethod
    def parse(cls, setting: str | None) -> IpPolicy:
        """From the setting's text: CIDRs (or addresses) separated by commas, or `any`. ValueError names a bad one."""
        items = [item.strip() for item in (setting or "").split(",") if item.strip()]
        if any(item.lower() == "any" for item in items):
            return cls(allow_all=True)
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"--experimental-allowed-ip-networks: `{item}` is neither a network (`10.0.0.0/8`),"
                    " an address nor `any`"
                ) from None
        return cls(networks)

    def allows(self, address: Address) -> bool:
        if self.allow_all:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            return True
        return any(address.version == network.version and address in network for network in self.allowed)

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not be reached, or None."""
        if self.allows(address):
            return None
        return (
            f"the address `{address}` is not globally reachable; allow its network with"
            " --experimental-allowed-ip-networks"
        )

    def refuses_literal(self, host: str) -> str | None:
        """For a url's host: why it may not be reached when it is an address; None for a name (checked once resolved)."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        return self.refusal(address)
