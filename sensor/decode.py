"""Vectorised decoding of a :class:`~sensor.capture.PacketBlock` down to the transport header.

Every field is a numpy array over the whole block; a packet is never looked at alone. Each step
gathers header bytes at computed offsets for all packets at once and narrows a validity mask.
Malformed or unsupported packets get a reason code (an index into :data:`REASONS`) and are counted
by the caller; nothing here raises on bad input.

Addresses are two big-endian uint64 halves (``*_hi``, ``*_lo``) of a 16-byte address; IPv4 is
stored IPv4-mapped (``::ffff:a.b.c.d``) with ``family == 4`` so IPv4 and IPv6 share one path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PacketBlock,
)

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
B = npt.NDArray[np.bool_]

# Reason codes; index 0 means the packet decoded.
REASONS = (
    "ok",
    "truncated_link",
    "unsupported_linktype",
    "non_ip",
    "truncated_ip",
    "bad_ip_header",
    "fragment",
    "truncated_l4",
    "bad_l4_header",
    "bad_ip_checksum",
    "bad_l4_checksum",
)
(
    R_OK,
    R_TRUNC_LINK,
    R_LINKTYPE,
    R_NON_IP,
    R_TRUNC_IP,
    R_BAD_IP,
    R_FRAGMENT,
    R_TRUNC_L4,
    R_BAD_L4,
    R_BAD_IP_CHECKSUM,
    R_BAD_L4_CHECKSUM,
) = range(11)

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10

_V4_MAPPED_HI = np.uint64(0)
_V4_MAPPED_LO_PREFIX = np.uint64(0xFFFF << 32)


def _icmp_counterparts(pairs: list[tuple[int, int]]) -> npt.NDArray[np.int64]:
    """Type -> counterpart type (request <-> reply); -1 where the message is one-way."""
    table = np.full(256, -1, dtype=np.int64)
    for a, b in pairs:
        table[a] = b
        table[b] = a
    return table


# Zeek and the Community ID spec key ICMP by (type, counterpart type) for request/reply pairs so
# both directions land in one connection; one-way messages use (type, code).
ICMP4_COUNTERPART = _icmp_counterparts([(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)])
ICMP6_COUNTERPART = _icmp_counterparts([(128, 129), (133, 134), (135, 136), (130, 131), (144, 145)])


@dataclass(slots=True)
class DecodedBlock:
    """Header fields of every packet of a block (index-aligned with the block)."""

    n: int
    reason: npt.NDArray[np.uint8]
    family: npt.NDArray[np.uint8]
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    proto: I64
    # TCP/UDP ports; for ICMP (type, counterpart-or-code) as Zeek keys them.
    sport: I64
    dport: I64
    icmp_type: I64
    icmp_code: I64
    tcp_flags: I64
    seq: I64
    ack: I64
    window: I64
    # Bytes of the IP packet as its header says (Zeek's ip_bytes).
    ip_len: I64
    # Transport payload: where it starts in the block's buffer, its length on the wire (from the IP
    # length, so Ethernet padding is excluded) and how much of it was captured.
    payload_off: I64
    payload_len: I64
    payload_cap: I64
    vlan: I64
    inner_vlan: I64
    has_mac: B
    src_mac: U64
    dst_mac: U64
    # Where the IP header starts, and which packets are IPv4 fragments, or IPv6 fragments whose
    # fragment header follows the fixed header (first ones included): with ``hold_fragments`` these are
    # all set aside (reason "fragment") for the reassembler.
    l3: I64
    frag4: B
    frag6: B
    # TCP/UDP packets, fully captured, whose checksum does not verify (only with check_l4_checksums).
    l4_bad: B
    # IPv4 packets whose header checksum does not verify, decoded all the same (only with
    # mark_ip_checksums; the caller decides which to drop, see SensorPipeline).
    ip_bad: B | None = None

    @property
    def ok(self) -> B:
        out: B = self.reason == R_OK
        return out


def _gather(data: npt.NDArray[np.uint8], idx: I64) -> I64:
    # Clamp so packets whose headers run past the buffer read garbage instead of faulting; the
    # validity mask (checked against each packet's caplen) discards those values.
    out: I64 = data[np.minimum(idx, data.shape[0] - 1)].astype(np.int64)
    return out


def _u16(data: npt.NDArray[np.uint8], idx: I64) -> I64:
    return (_gather(data, idx) << 8) | _gather(data, idx + 1)


def _ipv4_checksum_ok(data: npt.NDArray[np.uint8], l3: I64, ihl: I64, valid: B) -> B:
    """One's-complement sum over each IPv4 header (RFC 1071), folded; a correct header sums to 0xFFFF."""
    total = np.zeros(l3.shape[0], dtype=np.int64)
    longest = int(ihl[valid].max()) if valid.any() else 20
    for offset in range(0, longest, 2):
        word = _u16(data, l3 + offset)
        total += np.where(offset < ihl, word, 0)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    ok: B = total == 0xFFFF
    return ok


# Packets per pass of the TCP/UDP checksum: bounds the temporary prefix sums to a few MB.
_CHECKSUM_CHUNK = 2048


def _fold(total: I64) -> I64:
    for _ in range(4):
        total = (total & 0xFFFF) + (total >> 16)
    return total


def segment_sums(values: npt.NDArray[np.uint8], start: I64, stop: I64) -> I64:
    """Sum of ``values[start[i]:stop[i]]`` for non-empty segments in order (``stop[i] <= start[i+1]``), the
    last one ending at the end of ``values``."""
    bounds = np.empty(2 * start.size - 1, dtype=np.int64)
    bounds[0::2] = start
    bounds[1::2] = stop[:-1]
    # reduceat sums each run up to the next bound: the even runs are the segments, the odd ones the gaps.
    return np.add.reduceat(values, bounds, dtype=np.int64)[0::2]


def l4_checksum_bad(
    data: npt.NDArray[np.uint8],
    l4: I64,
    end: I64,
    pseudo: I64,
    check: B,
) -> B:
    """TCP/UDP checksums (RFC 793/768, RFC 8200 for IPv6) that do not verify, for the packets in ``check``.

    ``[l4, end)`` is each segment, ``pseudo`` the sum of its pseudo-header words. The one's-complement sum
    of a segment is taken from prefix sums of the buffer with big-endian word weights (256 on the byte
    that starts a word), for even and odd starting offsets alike, a chunk of packets at a time.
    """
    bad = np.zeros(l4.shape[0], dtype=np.bool_)
    idx = np.flatnonzero(check)
    for lo in range(0, idx.size, _CHECKSUM_CHUNK):
        part = idx[lo : lo + _CHECKSUM_CHUNK]
        base = int(l4[part].min())
        region = data[base : int(end[part].max())]
        # Sums of all bytes, and of the bytes at even absolute offsets, of each segment: a word's high byte
        # is the even-offset one when the segment starts on an even offset, the odd-offset one otherwise.
        first_even = base & 1
        a = l4[part] - base
        b = end[part] - base
        ea = np.maximum(a - first_even + 1, 0) // 2
        eb = np.maximum(b - first_even + 1, 0) // 2
        in_order = bool(np.all(a[1:] >= b[:-1]))
        if in_order:
            # Segments laid out one after another (as a capture's frames are): one reduction over the
            # bytes, with no prefix-sum array eight times the size of the data.
            total = segment_sums(region, a, b)
            even = segment_sums(region[first_even::2], ea, eb)
        else:
            every = np.concatenate(([0], np.cumsum(region, dtype=np.int64)))
            evens = np.concatenate(([0], np.cumsum(region[first_even::2], dtype=np.int64)))
            total = every[b] - every[a]
            even = evens[eb] - evens[ea]
        high = np.where((l4[part] & 1) == 0, even, total - even)
        seg = high * 256 + (total - high)
        bad[part] = _fold(seg + pseudo[part]) != 0xFFFF
    return bad


def _words64(x: U64) -> I64:
    """Sum of the four 16-bit words of each 64-bit value."""
    v = x.astype(np.uint64)
    total = np.zeros(v.shape[0], dtype=np.int64)
    for shift in (0, 16, 32, 48):
        total += ((v >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
    return total


def _l4_bad(
    data: npt.NDArray[np.uint8],
    ok: B,
    l4_packets: B,
    family: npt.NDArray[np.uint8],
    proto: I64,
    l4: I64,
    ip_end: I64,
    cap_end: I64,
    ip_len: I64,
    src_hi: U64,
    src_lo: U64,
    dst_hi: U64,
    dst_lo: U64,
) -> B:
    # Verifiable: TCP/UDP, decoded, the whole segment captured, a real IP length (not segmentation
    # offload), and for UDP over IPv4 a checksum at all (0 = none sent).
    seg_len = ip_end - l4
    check = ok & l4_packets & (cap_end >= ip_end) & (ip_len != 0) & (seg_len >= 8)
    udp4_none = (family == 4) & (proto == PROTO_UDP) & (_u16(data, l4 + 6) == 0)
    check &= ~udp4_none
    if not check.any():
        return np.zeros(ok.shape[0], dtype=np.bool_)
    v4 = family == 4
    lo32 = np.uint64(0xFFFFFFFF)
    pseudo4 = _words64(src_lo & lo32) + _words64(dst_lo & lo32)
    pseudo6 = _words64(src_hi) + _words64(src_lo) + _words64(dst_hi) + _words64(dst_lo)
    pseudo = np.where(v4, pseudo4, pseudo6) + proto + (seg_len & 0xFFFF) + (seg_len >> 16)
    return l4_checksum_bad(data, l4, ip_end, pseudo, check)


def _u32(data: npt.NDArray[np.uint8], idx: I64) -> I64:
    return (_u16(data, idx) << 16) | _u16(data, idx + 2)


def _u48(data: npt.NDArray[np.uint8], idx: I64) -> U64:
    return ((_u16(data, idx) << 32) | _u32(data, idx + 2)).astype(np.uint64)


def _u128(data: npt.NDArray[np.uint8], idx: I64) -> tuple[U64, U64]:
    cols = np.minimum(idx[:, None] + np.arange(16), data.shape[0] - 1)
    raw = np.ascontiguousarray(data[cols]).view(">u8").astype(np.uint64)
    return raw[:, 0], raw[:, 1]


def decode(
    block: PacketBlock,
    verify_ip_checksums: bool = True,
    mark_ip_checksums: bool = False,
    hold_fragments: bool = False,
    check_l4_checksums: bool = False,
) -> DecodedBlock:
    n = len(block)
    data = np.frombuffer(block.data, dtype=np.uint8)
    if data.shape[0] == 0:
        data = np.zeros(1, dtype=np.uint8)
    off = block.offset
    end = off + block.caplen
    lt = block.linktype
    reason = np.zeros(n, dtype=np.uint8)
    zeros = np.zeros(n, dtype=np.int64)

    # ---- link layer: find the network-layer offset and its ethertype
    ethertype = np.full(n, -1, dtype=np.int64)
    l3 = off.copy()
    vlan = zeros.copy()
    inner_vlan = zeros.copy()
    has_mac = np.zeros(n, dtype=np.bool_)
    src_mac = np.zeros(n, dtype=np.uint64)
    dst_mac = np.zeros(n, dtype=np.uint64)

    eth = lt == LINKTYPE_ETHERNET
    if eth.any():
        e_ok = eth & (end >= off + 14)
        reason[eth & ~e_ok] = R_TRUNC_LINK
        ethertype = np.where(e_ok, _u16(data, off + 12), ethertype)
        l3 = np.where(e_ok, off + 14, l3)
        has_mac = e_ok
        dst_mac = np.where(e_ok, _u48(data, off), dst_mac)
        src_mac = np.where(e_ok, _u48(data, off + 6), src_mac)
        # Up to two VLAN tags (802.1Q, 802.1ad and the old QinQ 0x9100).
        for depth in range(2):
            tagged = e_ok & ((ethertype == 0x8100) | (ethertype == 0x88A8) | (ethertype == 0x9100))
            if not tagged.any():
                break
            short = tagged & (end < l3 + 4)
            reason[short] = R_TRUNC_LINK
            tagged &= ~short
            vid = _u16(data, l3) & 0x0FFF
            if depth == 0:
                vlan = np.where(tagged, vid, vlan)
            else:
                inner_vlan = np.where(tagged, vid, inner_vlan)
            ethertype = np.where(tagged, _u16(data, l3 + 2), ethertype)
            l3 = np.where(tagged, l3 + 4, l3)
            e_ok &= ~short
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        s_ok = sll & (end >= off + 16)
        reason[sll & ~s_ok] = R_TRUNC_LINK
        ethertype = np.where(s_ok, _u16(data, off + 14), ethertype)
        l3 = np.where(s_ok, off + 16, l3)
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        s_ok = sll2 & (end >= off + 20)
        reason[sll2 & ~s_ok] = R_TRUNC_LINK
        ethertype = np.where(s_ok, _u16(data, off), ethertype)
        l3 = np.where(s_ok, off + 20, l3)
    null = lt == LINKTYPE_NULL
    if null.any():
        n_ok = null & (end >= off + 4)
        reason[null & ~n_ok] = R_TRUNC_LINK
        # The family is in the capturing host's byte order; AF_INET is 2 everywhere, AF_INET6 is
        # 24 (BSD), 28 (FreeBSD) or 30 (macOS).
        be = _u32(data, off)
        le = ((be & 0xFF) << 24) | ((be & 0xFF00) << 8) | ((be >> 8) & 0xFF00) | (be >> 24)
        fam = np.where(le <= 0xFFFF, le, be)
        et = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (10, 24, 28, 30)), 0x86DD, -1))
        ethertype = np.where(n_ok, et, ethertype)
        l3 = np.where(n_ok, off + 4, l3)
    raw = (lt == LINKTYPE_RAW) | (lt == LINKTYPE_IPV4) | (lt == LINKTYPE_IPV6)
    if raw.any():
        r_ok = raw & (end >= off + 1)
        reason[raw & ~r_ok] = R_TRUNC_LINK
        version = _gather(data, off) >> 4
        et = np.where(version == 4, 0x0800, np.where(version == 6, 0x86DD, -1))
        ethertype = np.where(r_ok, et, ethertype)
    known = eth | sll | sll2 | null | raw
    reason[~known] = R_LINKTYPE

    pending = reason == R_OK
    version = _gather(data, l3) >> 4
    is4 = pending & (ethertype == 0x0800) & (version == 4)
    is6 = pending & (ethertype == 0x86DD) & (version == 6)
    reason[pending & ~is4 & ~is6] = R_NON_IP

    family = np.zeros(n, dtype=np.uint8)
    src_hi = np.zeros(n, dtype=np.uint64)
    src_lo = np.zeros(n, dtype=np.uint64)
    dst_hi = np.zeros(n, dtype=np.uint64)
    dst_lo = np.zeros(n, dtype=np.uint64)
    proto = np.full(n, -1, dtype=np.int64)
    l4 = l3.copy()
    ip_len = zeros.copy()
    ip_span = zeros.copy()  # bytes of the IP packet on the wire, used to bound the payload
    nonfirst_frag = np.zeros(n, dtype=np.bool_)
    frag4 = np.zeros(n, dtype=np.bool_)
    frag6 = np.zeros(n, dtype=np.bool_)

    # ---- IPv4
    ip_bad: B | None = np.zeros(n, dtype=np.bool_) if mark_ip_checksums else None
    if is4.any():
        short = is4 & (end < l3 + 20)
        reason[short] = R_TRUNC_IP
        is4 &= ~short
        ihl = (_gather(data, l3) & 0x0F) * 4
        total_hdr = _u16(data, l3 + 2)
        # TCP segmentation offload on the capturing host leaves the length 0: the packet spans what
        # was captured (ip_len keeps the header's 0, as Zeek's ip_bytes does).
        total = np.where(total_hdr == 0, end - l3, total_hdr)
        bad = is4 & ((ihl < 20) | (total < ihl) | (end < l3 + ihl))
        reason[bad] = R_BAD_IP
        is4 &= ~bad
        # A receiving host discards an IPv4 packet whose header checksum is wrong, and so does Zeek:
        # analysing it would let an attacker show the sensor traffic the target never accepted.
        # Segmentation-offloaded packets (length 0) were captured before the NIC filled it in.
        if verify_ip_checksums or mark_ip_checksums:
            bad_sum = is4 & (total_hdr != 0) & ~_ipv4_checksum_ok(data, l3, ihl, is4)
            if verify_ip_checksums:
                reason[bad_sum] = R_BAD_IP_CHECKSUM
                is4 &= ~bad_sum
            else:
                ip_bad = bad_sum
        frag = _u16(data, l3 + 6)
        nonfirst_frag |= is4 & ((frag & 0x1FFF) != 0)
        # More-fragments set or an offset: a piece of a datagram, the first piece included.
        frag4 = is4 & ((frag & 0x3FFF) != 0)
        if hold_fragments:
            nonfirst_frag |= frag4
        family[is4] = 4
        proto = np.where(is4, _gather(data, l3 + 9), proto)
        ip_len = np.where(is4, total_hdr, ip_len)
        ip_span = np.where(is4, total, ip_span)
        l4 = np.where(is4, l3 + ihl, l4)
        src_lo = np.where(is4, _u32(data, l3 + 12).astype(np.uint64) | _V4_MAPPED_LO_PREFIX, src_lo)
        dst_lo = np.where(is4, _u32(data, l3 + 16).astype(np.uint64) | _V4_MAPPED_LO_PREFIX, dst_lo)

    # ---- IPv6 (fixed header plus the common extension headers)
    if is6.any():
        short = is6 & (end < l3 + 40)
        reason[short] = R_TRUNC_IP
        is6 &= ~short
        idx6 = np.flatnonzero(is6)
        family[is6] = 6
        ip_len = np.where(is6, _u16(data, l3 + 4) + 40, ip_len)
        ip_span = np.where(is6, ip_len, ip_span)
        s_hi, s_lo = _u128(data, l3[idx6] + 8)
        d_hi, d_lo = _u128(data, l3[idx6] + 24)
        src_hi[idx6], src_lo[idx6], dst_hi[idx6], dst_lo[idx6] = s_hi, s_lo, d_hi, d_lo
        nh = np.where(is6, _gather(data, l3 + 6), -1)
        l4 = np.where(is6, l3 + 40, l4)
        for _ in range(8):  # extension headers walked (as many as the fragment reassembler walks)
            opt = is6 & ((nh == 0) | (nh == 43) | (nh == 60))
            fr = is6 & (nh == 44)
            if not (opt.any() or fr.any()):
                break
            short = (opt | fr) & (end < l4 + 8)
            reason[short] = R_TRUNC_IP
            is6 &= ~short
            opt &= ~short
            fr &= ~short
            next_nh = _gather(data, l4)
            # A real fragment (offset or more-fragments set; an "atomic" one is a whole packet), wherever
            # its header sits in the chain: held whole for the reassembler, or without it only the first
            # piece is analysed (the rest carry no transport header).
            fragment = fr & ((_u16(data, l4 + 2) & 0xFFF9) != 0)
            frag6 |= fragment
            if hold_fragments:
                nonfirst_frag |= fragment
            nonfirst_frag |= fr & ((_u16(data, l4 + 2) >> 3) != 0)
            step = np.where(opt, (_gather(data, l4 + 1) + 1) * 8, np.where(fr, 8, 0))
            nh = np.where(opt | fr, next_nh, nh)
            l4 = l4 + step
        proto = np.where(is6, nh, proto)

    ip = (family != 0) & (reason == R_OK)
    ip_end = l3 + ip_span
    bad_len = ip & (ip_end < l4)
    reason[bad_len] = R_BAD_IP
    ip &= ~bad_len
    # Captured bytes of this IP packet: caplen bounds it, and so does the IP length (padding).
    cap_end = np.minimum(end, ip_end)
    reason[ip & nonfirst_frag] = R_FRAGMENT
    ip &= ~nonfirst_frag

    sport = zeros.copy()
    dport = zeros.copy()
    icmp_type = zeros.copy()
    icmp_code = zeros.copy()
    tcp_flags = zeros.copy()
    seq = zeros.copy()
    ack = zeros.copy()
    window = zeros.copy()
    payload_off = l4.copy()

    tcp = ip & (proto == PROTO_TCP)
    if tcp.any():
        short = tcp & (cap_end < l4 + 20)
        reason[short] = R_TRUNC_L4
        tcp &= ~short
        doff = (_gather(data, l4 + 12) >> 4) * 4
        bad = tcp & ((doff < 20) | (l4 + doff > ip_end))
        reason[bad] = R_BAD_L4
        tcp &= ~bad
        sport = np.where(tcp, _u16(data, l4), sport)
        dport = np.where(tcp, _u16(data, l4 + 2), dport)
        seq = np.where(tcp, _u32(data, l4 + 4), seq)
        ack = np.where(tcp, _u32(data, l4 + 8), ack)
        tcp_flags = np.where(tcp, _gather(data, l4 + 13), tcp_flags)
        window = np.where(tcp, _u16(data, l4 + 14), window)
        payload_off = np.where(tcp, l4 + doff, payload_off)
    udp = ip & (proto == PROTO_UDP)
    if udp.any():
        short = udp & (cap_end < l4 + 8)
        reason[short] = R_TRUNC_L4
        udp &= ~short
        bad = udp & (l4 + 8 > ip_end)
        reason[bad] = R_BAD_L4
        udp &= ~bad
        sport = np.where(udp, _u16(data, l4), sport)
        dport = np.where(udp, _u16(data, l4 + 2), dport)
        payload_off = np.where(udp, l4 + 8, payload_off)
    icmp = ip & ((proto == PROTO_ICMP) | (proto == PROTO_ICMPV6))
    if icmp.any():
        short = icmp & (cap_end < l4 + 4)
        reason[short] = R_TRUNC_L4
        icmp &= ~short
        itype = _gather(data, l4)
        icode = _gather(data, l4 + 1)
        table = np.where(
            proto == PROTO_ICMP, ICMP4_COUNTERPART[itype & 0xFF], ICMP6_COUNTERPART[itype & 0xFF]
        )
        icmp_type = np.where(icmp, itype, icmp_type)
        icmp_code = np.where(icmp, icode, icmp_code)
        sport = np.where(icmp, itype, sport)
        dport = np.where(icmp, np.where(table >= 0, table, icode), dport)
        # Zeek counts ICMP "bytes" after the 8-byte common header.
        payload_off = np.where(icmp, np.minimum(l4 + 8, ip_end), payload_off)

    ok = reason == R_OK
    l4_bad = np.zeros(n, dtype=np.bool_)
    if check_l4_checksums:
        l4_bad = _l4_bad(data, ok, tcp | udp, family, proto, l4, ip_end, cap_end, ip_len, src_hi, src_lo,
                         dst_hi, dst_lo)  # fmt: skip
    payload_len = np.where(ok, np.maximum(ip_end - payload_off, 0), 0)
    payload_cap = np.where(ok, np.clip(cap_end - payload_off, 0, None), 0)
    payload_cap = np.minimum(payload_cap, payload_len)
    return DecodedBlock(
        n=n,
        reason=reason,
        family=family,
        src_hi=src_hi,
        src_lo=src_lo,
        dst_hi=dst_hi,
        dst_lo=dst_lo,
        proto=proto,
        sport=sport,
        dport=dport,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        tcp_flags=tcp_flags,
        seq=seq,
        ack=ack,
        window=window,
        ip_len=ip_len,
        payload_off=payload_off,
        payload_len=payload_len,
        payload_cap=payload_cap,
        vlan=vlan,
        inner_vlan=inner_vlan,
        has_mac=has_mac,
        src_mac=src_mac,
        dst_mac=dst_mac,
        l3=l3,
        frag4=frag4,
        frag6=frag6,
        l4_bad=l4_bad,
        ip_bad=ip_bad,
    )


def reason_counts(decoded: DecodedBlock) -> dict[str, int]:
    """Packets per failure reason in a block (reasons with zero packets omitted)."""
    counts = np.bincount(decoded.reason, minlength=len(REASONS))
    return {REASONS[i]: int(c) for i, c in enumerate(counts) if i != R_OK and c}
