"""Live capture from a network interface with a raw AF_PACKET socket (Linux, needs CAP_NET_RAW).

Frames are collected into the same :class:`PacketBlock` shape the file source produces, one block
every ``block_interval_s`` or ``block_packets`` frames, so everything downstream is shared. Reading
is driven by ``loop.add_reader`` on a non-blocking socket: the event loop never blocks on capture.
Kernel drops are read with ``PACKET_STATISTICS`` (the kernel resets them on each read, so they are
accumulated here).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator

from sensor.capture import LINKTYPE_ETHERNET, PacketBlock

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
SNAPLEN = 65535


def interface_problem(interface: str) -> str | None:
    """Why a live capture on ``interface`` cannot start (None when it can): no such interface, or no right
    to open a raw socket (root or CAP_NET_RAW). Asked before the sensor starts, so either is the operator's
    to fix (exit 1), not a failure half-way."""
    try:
        socket.if_nametoindex(interface)
    except (OSError, ValueError):
        return f"--interface {interface}: no such network interface"
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except PermissionError:
        return f"--interface {interface}: capturing needs root (or CAP_NET_RAW)"
    except OSError as exc:
        return f"--interface {interface}: cannot open a capture socket: {exc.strerror or exc}"
    return None


class TapSource:
    def __init__(
        self,
        interface: str,
        block_packets: int = 8192,
        block_interval_s: float = 0.1,
        rcvbuf_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.interface = interface
        self.block_packets = block_packets
        self.block_interval_s = block_interval_s
        self.rcvbuf_bytes = rcvbuf_bytes
        self.sock: socket.socket | None = None
        self.kernel_packets = 0
        self.kernel_drops = 0
        # On loopback every packet is seen twice (sent and received); keep only the received copy.
        self._skip_outgoing = interface == "lo"

    def open(self) -> None:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf_bytes)
        except OSError:
            # Without CAP_NET_ADMIN the forced size is refused; the capped size still helps.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_bytes)
        sock.bind((self.interface, 0))
        sock.setblocking(False)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.read_stats()
            self.sock.close()
            self.sock = None

    def read_stats(self) -> tuple[int, int]:
        """(packets, drops) the kernel reported since the socket opened."""
        if self.sock is not None:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            packets, drops = struct.unpack("II", raw)
            self.kernel_packets += packets
            self.kernel_drops += drops
        return self.kernel_packets, self.kernel_drops

    def _drain(self, frames: list[tuple[float, bytes]]) -> None:
        assert self.sock is not None
        recv = self.sock.recvfrom
        limit = self.block_packets
        while len(frames) < limit:
            try:
                frame, addr = recv(SNAPLEN)
            except (BlockingIOError, InterruptedError):
                return
            if self._skip_outgoing and addr[2] == PACKET_OUTGOING:
                continue
            frames.append((time.time(), frame))

    async def blocks(self) -> AsyncIterator[PacketBlock]:
        """Yield a block every interval (empty when the wire was quiet, so the caller can expire
        flows on time) until cancelled."""
        if self.sock is None:
            self.open()
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        frames: list[tuple[float, bytes]] = []
        full = asyncio.Event()

        def readable() -> None:
            self._drain(frames)
            if len(frames) >= self.block_packets:
                full.set()

        loop.add_reader(self.sock.fileno(), readable)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(full.wait(), self.block_interval_s)
                full.clear()
                batch, frames[:] = list(frames), []
                yield PacketBlock.from_packets(batch, LINKTYPE_ETHERNET)
        finally:
            if self.sock is not None:
                loop.remove_reader(self.sock.fileno())
