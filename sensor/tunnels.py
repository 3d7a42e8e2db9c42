"""Decapsulation: VXLAN (RFC 7348) and Geneve (RFC 8926) packets become the Ethernet frames they carry.

Cloud traffic mirroring delivers its copies this way (AWS VPC Traffic Mirroring: VXLAN to UDP 4789; Azure
virtual network TAP and many virtual switches: VXLAN or Geneve), and so do overlay networks. A sensor that
analysed the outer packets would see one UDP conversation between a mirror source and itself; the inner
frames are the traffic to learn from. Which UDP ports carry which tunnel is configuration
(``sensor.vxlan_ports``, ``sensor.geneve_ports``); an empty list turns a decapsulation off.

Pure functions over one packet: given the UDP payload, return the inner Ethernet frame or None (not a
well-formed header of that tunnel: the packet is then analysed as the UDP packet it is).
"""

from __future__ import annotations

VXLAN_HEADER = 8
GENEVE_BASE = 8
ETHERNET_MIN = 14
_GENEVE_ETHERNET = 0x6558  # Transparent Ethernet Bridging


def vxlan_inner(payload: bytes) -> bytes | None:
    """The frame inside a VXLAN header: flags byte with the I bit (a valid VNI), reserved bits zero."""
    if len(payload) < VXLAN_HEADER + ETHERNET_MIN or payload[0] & 0x08 == 0:
        return None
    return payload[VXLAN_HEADER:]


def geneve_inner(payload: bytes) -> bytes | None:
    """The Ethernet frame inside a Geneve header (version 0, protocol Transparent Ethernet Bridging)."""
    if len(payload) < GENEVE_BASE + ETHERNET_MIN or payload[0] >> 6 != 0:
        return None
    options = (payload[0] & 0x3F) * 4
    if int.from_bytes(payload[2:4], "big") != _GENEVE_ETHERNET:
        return None
    start = GENEVE_BASE + options
    if len(payload) < start + ETHERNET_MIN:
        return None
    return payload[start:]
