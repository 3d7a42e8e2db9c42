"""Capture files (pcap and pcapng) read in large chunks into blocks of packets.

A :class:`PacketBlock` is the unit every later stage works on: per-packet numpy arrays (timestamp,
lengths, offset into one shared buffer, link type) plus that buffer. Decoding, flow keying and
aggregation then run over whole blocks, so the per-packet Python work is confined to walking record
headers here (the record layout is a linked list: each header says where the next one starts, which
no vectorised pass can follow without first knowing every length).
"""

from __future__ import annotations

import contextlib
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import numpy.typing as npt

# Link types (tcpdump.org LINKTYPE_* values) the decoder understands.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

DEFAULT_BLOCK_PACKETS = 65536
# Big reads amortise syscalls; a chunk always ends on a record boundary we carry over.
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
# A record larger than this is corruption, not a packet (pcapng SHB/IDB options included).
MAX_RECORD_BYTES = 256 * 1024 * 1024

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D


class CaptureError(Exception):
    """A capture file is truncated, corrupt or of an unknown format."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: {reason} at byte offset {offset}")


@dataclass(slots=True)
class PacketBlock:
    """Up to N packets that share one bytes buffer.

    ``offset[i]`` is where packet i's captured bytes start in ``data``; it has ``caplen[i]`` of them.
    """

    ts: npt.NDArray[np.float64]
    caplen: npt.NDArray[np.int64]
    wirelen: npt.NDArray[np.int64]
    offset: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int32]
    data: bytes

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def packet(self, i: int) -> bytes:
        start = int(self.offset[i])
        return self.data[start : start + int(self.caplen[i])]

    def slice(self, lo: int, hi: int) -> PacketBlock:
        """Packets lo..hi-1 as a block sharing this block's buffer (no copy)."""
        return PacketBlock(
            ts=self.ts[lo:hi],
            caplen=self.caplen[lo:hi],
            wirelen=self.wirelen[lo:hi],
            offset=self.offset[lo:hi],
            linktype=self.linktype[lo:hi],
            data=self.data,
        )

    @staticmethod
    def empty() -> PacketBlock:
        return PacketBlock.from_packets([])

    @staticmethod
    def from_packets(packets: list[tuple[float, bytes]], linktype: int = LINKTYPE_ETHERNET) -> PacketBlock:
        """Build a block from (timestamp, frame) pairs: live capture and tests use this."""
        n = len(packets)
        lengths = np.fromiter((len(p) for _, p in packets), dtype=np.int64, count=n)
        offsets = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        return PacketBlock(
            ts=np.fromiter((t for t, _ in packets), dtype=np.float64, count=n),
            caplen=lengths,
            wirelen=lengths.copy(),
            offset=offsets,
            linktype=np.full(n, linktype, dtype=np.int32),
            data=b"".join(p for _, p in packets),
        )


def _empty_i64() -> npt.NDArray[np.int64]:
    return np.zeros(0, dtype=np.int64)


class _ChunkReader:
    """Reads a file in big chunks, keeping the unconsumed tail so records never straddle a chunk."""

    def __init__(self, fh: BinaryIO, chunk_bytes: int) -> None:
        self.fh = fh
        self.chunk_bytes = chunk_bytes
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.eof = False

    def fill(self, keep_from: int, need: int = 0) -> None:
        """Drop buf[:keep_from] and read more (at least ``need`` bytes beyond what is kept)."""
        kept = len(self.buf) - keep_from
        self.base += keep_from
        want = max(self.chunk_bytes, need)
        if kept > 0 and not self.fh.seekable():
            # A pipe (``tcpdump -w - | vigil ...``) cannot go back: keep the tail and append.
            more = self.fh.read(want)
            self.eof = not more
            self.buf = self.buf[keep_from:] + more
            return
        if kept > 0:
            # Read the kept tail again with the new bytes instead of concatenating: one read, no 16 MB
            # copy per chunk (a regular file; read_capture has already sought back over the magic).
            self.fh.seek(-kept, 1)
            self.buf = self.fh.read(kept + want)
            if len(self.buf) <= kept:
                self.eof = True
            return
        more = self.fh.read(want)
        if not more:
            self.eof = True
        self.buf = more


# The capture path that means standard input (``tcpdump -w - | vigil analyze -``).
STDIN = "-"


class _HeadPutBack:
    """A pipe's reader with the bytes already read from it put back in front (a pipe cannot seek back to
    read the capture's header again); reads what the capture readers call, and says it cannot seek."""

    def __init__(self, fh: BinaryIO, head: bytes) -> None:
        self.fh = fh
        self.head = head

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.fh.read(n)
        if n < 0:
            out, self.head = self.head + self.fh.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        if len(out) < n:
            out += self.fh.read(n - len(out))
        return out

    def seekable(self) -> bool:
        return False


def read_capture(
    path: str | Path,
    block_packets: int = DEFAULT_BLOCK_PACKETS,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[PacketBlock]:
    """Yield the packets of a pcap or pcapng file as blocks of at most ``block_packets`` packets.

    A truncated or corrupt file raises :class:`CaptureError` (with file name and byte offset) after
    every packet parsed before the damage has been yielded.
    """
    name = str(path)
    opened: contextlib.AbstractContextManager[BinaryIO]
    if name == STDIN:
        # Standard input stays open: it is the process's, not this reader's.
        name, opened = "standard input", contextlib.nullcontext(sys.stdin.buffer)
    else:
        opened = open(path, "rb")  # noqa: SIM115 (the with below closes it)
    with opened as raw:
        head = raw.read(4)
        if len(head) < 4:
            raise CaptureError(name, 0, "file too short for a capture header")
        fh: BinaryIO
        if raw.seekable():
            raw.seek(0)
            fh = raw
        else:
            fh = cast(BinaryIO, _HeadPutBack(raw, head))
        magic_le = struct.unpack("<I", head)[0]
        magic_be = struct.unpack(">I", head)[0]
        if magic_le == _PCAPNG_SHB:
            yield from _read_pcapng(name, fh, block_packets, chunk_bytes)
        elif _PCAP_MAGIC_US in (magic_le, magic_be) or _PCAP_MAGIC_NS in (magic_le, magic_be):
            yield from _read_pcap(name, fh, block_packets, chunk_bytes)
        else:
            raise CaptureError(name, 0, f"unknown capture magic 0x{magic_le:08x}")


def _read_pcap(name: str, fh: BinaryIO, block_packets: int, chunk_bytes: int) -> Iterator[PacketBlock]:
    header = fh.read(24)
    if len(header) < 24:
        raise CaptureError(name, 0, "truncated pcap file header")
    magic = struct.unpack("<I", header[:4])[0]
    if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        endian = "<"
    else:
        endian = ">"
        magic = struct.unpack(">I", header[:4])[0]
    scale = 1e-9 if magic == _PCAP_MAGIC_NS else 1e-6
    snaplen, linktype = struct.unpack(endian + "II", header[16:24])
    linktype &= 0x0FFFFFFF  # the upper bits carry FCS information, not the link type
    rec_dtype = np.dtype(
        [("sec", endian + "u4"), ("frac", endian + "u4"), ("incl", endian + "u4"), ("orig", endian + "u4")]
    )
    incl_at = struct.Struct(endian + "I")
    reader = _ChunkReader(fh, chunk_bytes)
    reader.base = 24
    reader.fill(0)
    pos = 0
    error: CaptureError | None = None
    max_incl = max(snaplen, 262144) if snaplen else MAX_RECORD_BYTES
    while True:
        buf = reader.buf
        end = len(buf)
        starts: list[int] = []
        append = starts.append
        unpack_incl = incl_at.unpack_from
        # The one per-packet Python loop: hop from header to header. Everything else is vectorised.
        last_header = end - 16
        for _ in range(block_packets):
            if pos > last_header:
                break
            (incl,) = unpack_incl(buf, pos + 8)
            if incl > max_incl:
                error = CaptureError(name, reader.base + pos, f"record length {incl} exceeds snaplen")
                break
            nxt = pos + 16 + incl
            if nxt > end:
                break
            append(pos)
            pos = nxt
        if starts:
            idx = np.asarray(starts, dtype=np.int64)
            whole = np.frombuffer(buf, dtype=np.uint8)
            hdr = whole[idx[:, None] + np.arange(16)].copy().view(rec_dtype).reshape(-1)
            yield PacketBlock(
                ts=hdr["sec"].astype(np.float64) + hdr["frac"].astype(np.float64) * scale,
                caplen=hdr["incl"].astype(np.int64),
                wirelen=hdr["orig"].astype(np.int64),
                offset=idx + 16,
                linktype=np.full(len(starts), linktype, dtype=np.int32),
                data=buf,
            )
        if error is not None:
            raise error
        if len(starts) >= block_packets:
            continue
        if reader.eof:
            if pos < end:
                raise CaptureError(name, reader.base + pos, "truncated packet record")
            return
        need = 0
        if pos + 16 <= end:
            need = 16 + incl_at.unpack_from(buf, pos + 8)[0]
        reader.fill(pos, need)
        pos = 0


@dataclass(slots=True)
class _Interface:
    linktype: int
    ts_scale: float  # seconds per timestamp unit
    snaplen: int


def _tsresol(value: int) -> float:
    if value & 0x80:
        return float(2.0 ** -(value & 0x7F))
    return float(10.0**-value)


def _parse_idb(name: str, body: bytes, endian: str, at: int) -> _Interface:
    if len(body) < 8:
        raise CaptureError(name, at, "interface description block too short")
    linktype, _reserved, snaplen = struct.unpack(endian + "HHI", body[:8])
    scale = 1e-6
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack(endian + "HH", body[pos : pos + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            scale = _tsresol(body[pos + 4])
        pos += 4 + ((length + 3) & ~3)
    return _Interface(linktype, scale, snaplen)


def _read_pcapng(name: str, fh: BinaryIO, block_packets: int, chunk_bytes: int) -> Iterator[PacketBlock]:
    reader = _ChunkReader(fh, chunk_bytes)
    reader.fill(0)
    pos = 0
    endian = "<"
    interfaces: list[_Interface] = []
    ts_l: list[float] = []
    cap_l: list[int] = []
    wire_l: list[int] = []
    off_l: list[int] = []
    lt_l: list[int] = []
    pending_error: CaptureError | None = None

    def flush(buf: bytes) -> PacketBlock:
        block = PacketBlock(
            ts=np.asarray(ts_l, dtype=np.float64),
            caplen=np.asarray(cap_l, dtype=np.int64),
            wirelen=np.asarray(wire_l, dtype=np.int64),
            offset=np.asarray(off_l, dtype=np.int64),
            linktype=np.asarray(lt_l, dtype=np.int32),
            data=buf,
        )
        for lst in (ts_l, cap_l, wire_l, off_l, lt_l):
            lst.clear()
        return block

    while True:
        buf = reader.buf
        end = len(buf)
        while len(ts_l) < block_packets and pos + 12 <= end:
            btype_le = struct.unpack_from("<I", buf, pos)[0]
            if btype_le == _PCAPNG_SHB:
                bom_le = struct.unpack_from("<I", buf, pos + 8)[0]
                if bom_le == _PCAPNG_BOM:
                    endian = "<"
                elif struct.unpack_from(">I", buf, pos + 8)[0] == _PCAPNG_BOM:
                    endian = ">"
                else:
                    pending_error = CaptureError(name, reader.base + pos, "bad pcapng byte-order magic")
                    break
                # A new section starts a new interface numbering.
                interfaces = []
            btype, blen = struct.unpack_from(endian + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD_BYTES:
                pending_error = CaptureError(name, reader.base + pos, f"bad pcapng block length {blen}")
                break
            if pos + blen > end:
                break
            if btype == 6:  # enhanced packet block
                iface, ts_hi, ts_lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, pos + 8)
                if iface >= len(interfaces) or caplen > blen - 32:
                    pending_error = CaptureError(name, reader.base + pos, "bad enhanced packet block")
                    break
                itf = interfaces[iface]
                ts_l.append(((ts_hi << 32) | ts_lo) * itf.ts_scale)
                cap_l.append(caplen)
                wire_l.append(wirelen)
                off_l.append(pos + 28)
                lt_l.append(itf.linktype)
            elif btype == 3:  # simple packet block: interface 0, no timestamp
                if not interfaces:
                    pending_error = CaptureError(name, reader.base + pos, "simple packet before interface")
                    break
                wirelen = struct.unpack_from(endian + "I", buf, pos + 8)[0]
                itf = interfaces[0]
                caplen = min(wirelen, blen - 16, itf.snaplen or wirelen)
                ts_l.append(ts_l[-1] if ts_l else 0.0)
                cap_l.append(caplen)
                wire_l.append(wirelen)
                off_l.append(pos + 12)
                lt_l.append(itf.linktype)
            elif btype == 1:  # interface description block
                interfaces.append(_parse_idb(name, buf[pos + 8 : pos + blen - 4], endian, reader.base + pos))
            pos += blen
        full = len(ts_l) >= block_packets
        if ts_l:
            yield flush(buf)
        if pending_error is not None:
            raise pending_error
        if full:
            continue
        if reader.eof:
            if pos < end:
                raise CaptureError(name, reader.base + pos, "truncated pcapng block")
            return
        need = 0
        if pos + 8 <= end:
            need = struct.unpack_from(endian + "I", buf, pos + 4)[0]
        reader.fill(pos, need)
        pos = 0
