"""Build frames and capture files byte by byte (struct only), so tests need no capture tools."""

from __future__ import annotations

import ipaddress
import struct

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def ip_bytes(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1, frag: int = 0) -> bytes:
    total = 20 + len(payload)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, ident, frag, 64, proto, 0, ip_bytes(src), ip_bytes(dst)
    )
    return ipv4_checksummed(hdr) + payload


def ipv4_checksummed(header: bytes) -> bytes:
    """The IPv4 header with its checksum filled in (RFC 1071), as a real sender writes it."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]


def ipv6(src: str, dst: str, nh: int, payload: bytes, ext: bytes = b"", ext_nh: int | None = None) -> bytes:
    first = nh if ext_nh is None else ext_nh
    body = ext + payload
    return struct.pack("!IHBB16s16s", 0x60000000, len(body), first, 64, ip_bytes(src), ip_bytes(dst)) + body


def tcp(
    sport: int, dport: int, seq: int, ack: int, flags: str, payload: bytes = b"", window: int = 65535
) -> bytes:
    bits = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}
    f = sum(bits[c] for c in flags)
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, f, window, 0, 0)
        + payload
    )


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(itype: int, code: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BBHHH", itype, code, 0, 1, 1) + payload


def ether(
    src_mac: bytes, dst_mac: bytes, l3: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()
) -> bytes:
    """An Ethernet frame; ``vlans`` (outer first) adds 802.1ad/802.1Q tags; short frames get padding."""
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if (i == 0 and len(vlans) > 1) else 0x8100
        tags += struct.pack("!HH", tpid, vid)
    frame = dst_mac + src_mac + tags + struct.pack("!H", ethertype) + l3
    if len(frame) < 60:
        frame += b"\x00" * (60 - len(frame))  # Ethernet padding: must not count as payload
    return frame


def pcap_bytes(
    packets: list[tuple[float, bytes]], linktype: int = 1, nanos: bool = False, big: bool = False
) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in packets:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nanos else 1e6))
        out.append(struct.pack(e + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def pcapng_bytes(
    packets: list[tuple[int, float, bytes]], interfaces: list[tuple[int, int]], big: bool = False
) -> bytes:
    """``packets``: (interface index, ts, frame); ``interfaces``: (linktype, tsresol exponent of 10)."""
    e = ">" if big else "<"

    def block(btype: int, body: bytes) -> bytes:
        body = _pad4(body)
        length = 12 + len(body)
        return struct.pack(e + "II", btype, length) + body + struct.pack(e + "I", length)

    out = [block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, resol in interfaces:
        opts = struct.pack(e + "HH", 9, 1) + _pad4(bytes([resol])) + struct.pack(e + "HH", 0, 0)
        out.append(block(1, struct.pack(e + "HHI", linktype, 0, 0) + opts))
    for iface, ts, frame in packets:
        resol = interfaces[iface][1]
        units = round(ts * 10**resol)
        body = struct.pack(e + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame))
        out.append(block(6, body + _pad4(frame)))
    return b"".join(out)


class TcpConv:
    """A scripted TCP conversation between a client and a server, producing Ethernet frames."""

    def __init__(
        self,
        client: str = "10.0.0.1",
        server: str = "10.0.0.2",
        cport: int = 40000,
        sport: int = 80,
        ts: float = 1000.0,
        v6: bool = False,
    ) -> None:
        self.c, self.s, self.cp, self.sp = client, server, cport, sport
        self.cseq, self.sseq = 1000, 5000
        self.ts = ts
        self.v6 = v6
        self.frames: list[tuple[float, bytes]] = []

    def pkt(
        self,
        from_client: bool,
        flags: str,
        payload: bytes = b"",
        seq: int | None = None,
        dt: float = 0.01,
        window: int = 65535,
    ) -> None:
        self.ts += dt
        if from_client:
            s = self.cseq if seq is None else seq
            seg = tcp(self.cp, self.sp, s, self.sseq, flags, payload, window)
            src, dst, smac, dmac = self.c, self.s, MAC_A, MAC_B
        else:
            s = self.sseq if seq is None else seq
            seg = tcp(self.sp, self.cp, s, self.cseq, flags, payload, window)
            src, dst, smac, dmac = self.s, self.c, MAC_B, MAC_A
        if seq is None:
            adv = len(payload) + ("S" in flags) + ("F" in flags)
            if from_client:
                self.cseq += adv
            else:
                self.sseq += adv
        if self.v6:
            frame = ether(smac, dmac, ipv6(src, dst, 6, seg), ethertype=0x86DD)
        else:
            frame = ether(smac, dmac, ipv4(src, dst, 6, seg))
        self.frames.append((self.ts, frame))

    def handshake(self) -> None:
        self.pkt(True, "S")
        self.pkt(False, "SA")
        self.pkt(True, "A")

    def close(self) -> None:
        self.pkt(True, "FA")
        self.pkt(False, "FA")
        self.pkt(True, "A")


def tcp_conversation(
    client: str,
    server: str,
    sport: int,
    dport: int,
    t0: float,
    request: bytes,
    response: bytes,
    mss: int = 1400,
) -> list[tuple[float, bytes]]:
    """A whole TCP connection as (ts, Ethernet frame): handshake, the request and the response in MSS-sized
    segments (each acknowledged), then FIN/ACK from both sides; 1 ms between packets."""
    frames: list[tuple[float, bytes]] = []
    cseq, sseq = 1000, 5000
    t = t0

    def send(from_client: bool, flags: str, payload: bytes = b"") -> None:
        nonlocal cseq, sseq, t
        if from_client:
            seg = tcp(sport, dport, cseq, sseq, flags, payload)
            frames.append((t, ether(MAC_A, MAC_B, ipv4(client, server, 6, seg))))
            cseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        else:
            seg = tcp(dport, sport, sseq, cseq, flags, payload)
            frames.append((t, ether(MAC_B, MAC_A, ipv4(server, client, 6, seg))))
            sseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        t += 0.001

    send(True, "S")
    send(False, "SA")
    send(True, "A")
    for from_client, data in ((True, request), (False, response)):
        for i in range(0, len(data), mss):
            send(from_client, "PA", data[i : i + mss])
            send(not from_client, "A")
    send(True, "FA")
    send(False, "FA")
    send(True, "A")
    return frames
