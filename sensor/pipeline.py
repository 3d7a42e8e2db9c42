"""The sensor's packet path: block -> decode -> flow table (+ analyzers) -> records, with metrics."""

from __future__ import annotations

import gc
import ipaddress

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge

from sensor.capture import LINKTYPE_ETHERNET, PacketBlock
from sensor.decode import (
    PROTO_TCP,
    PROTO_UDP,
    R_BAD_IP_CHECKSUM,
    R_BAD_L4_CHECKSUM,
    R_FRAGMENT,
    R_LINKTYPE,
    REASONS,
    DecodedBlock,
    decode,
)
from sensor.flows import FlowTable
from sensor.fragments import Reassembler
from sensor.registry import Registry
from sensor.tunnels import geneve_inner, vxlan_inner
from sensor.weird import Weird, WeirdLog
from vigil.config import SensorConfig
from vigil.log import get
from vigil.sensor.v1 import sensor_pb2


def tune_gc() -> None:
    """Call once at sensor start-up (the service/CLI does, library code never does it implicitly).

    The flow table keeps ~10^5 long-lived objects; CPython's default cyclic-GC thresholds rescan
    them over and over as connections are created, which costs ~25% of packet throughput. Objects
    alive at start-up are frozen out of collection and young collections run less often.

    A young collection traverses every container allocated since the last one that is still alive.
    Per-connection state mostly dies within a few blocks (connections end and are emitted), so the
    rarer the collection, the less of it is ever traversed: 10^6 instead of 10^5 net allocations
    between collections measured +8-14% packets per CPU-second with all analyzers on (bench/
    sensor_speed.py, 300k packets: no collection at all). The packet path makes no cyclic garbage in
    steady state (checked with gc.DEBUG_SAVEALL on that capture), so the larger threshold holds no
    memory the sensor would otherwise free; the worst-case pause grows to ~45 ms (10^6 live objects).
    The setting is process-wide: callers that also run other code (vigil offline/evaluate) share it.
    """
    gc.freeze()
    gc.set_threshold(1_000_000, 50, 100)


# The label values of vigil_sensor_decapsulated_packets_total and vigil_sensor_ip_fragments_total.
TUNNELS = ("vxlan", "geneve")
FRAGMENT_OUTCOMES = ("reassembled", "overlap", "timeout", "too_large", "table_full", "memory", "malformed")


class SensorMetrics:
    """The pipeline's Prometheus series, on a registry the caller owns."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.packets = Counter("vigil_sensor_packets", "Packets read from sources", registry=registry)
        self.bytes = Counter("vigil_sensor_bytes", "Bytes on the wire of packets read", registry=registry)
        self.decode_errors = Counter(
            "vigil_sensor_decode_errors",
            "Packets not decoded to a connection, by reason",
            ["reason"],
            registry=registry,
        )
        self.flows = Counter("vigil_sensor_flows", "Flow records emitted", registry=registry)
        self.active_flows = Gauge(
            "vigil_sensor_active_flows", "Connections in the flow table", registry=registry
        )
        self.parse_errors = Counter(
            "vigil_sensor_parse_errors",
            "Protocol analyzer parse errors",
            ["protocol", "reason"],
            registry=registry,
        )
        self.decapsulated = Counter(
            "vigil_sensor_decapsulated_packets",
            "Tunnelled packets (VXLAN, Geneve) replaced by the frames they carry",
            ["tunnel"],
            registry=registry,
        )
        self.fragments = Counter(
            "vigil_sensor_ip_fragments",
            "Fragmented IP datagrams by outcome (reassembled, overlap, timeout, too_large, table_full, "
            "memory, malformed)",
            ["outcome"],
            registry=registry,
        )
        # Children are created once: labels() is a dict lookup plus a lock on every call.
        self._reason_children = {r: self.decode_errors.labels(reason=r) for r in REASONS[1:]}
        # Known label values start at zero so dashboards and alerts see the series before the first event.
        for tunnel in TUNNELS:
            self.decapsulated.labels(tunnel=tunnel)
        for outcome in FRAGMENT_OUTCOMES:
            self.fragments.labels(outcome=outcome)

    def decode_error(self, reason_index: int, count: int) -> None:
        self._reason_children[REASONS[reason_index]].inc(count)


# "auto" TCP/UDP checksum verification. The capture's first L4_AUTO_SAMPLE segments are taken as they come;
# if more than L4_AUTO_MAX_BAD of them fail, the capture comes from hosts that leave checksums to their NICs
# (a lab of veths, a VM host) and nothing is checked. Otherwise checksums are verified, sender by sender:
# offload leaves unfilled the checksums of what the *capturing host* sends, and only those, so in a capture
# mostly received (Mordor's workstation captures) that host's packets would all be dropped — its C2 requests
# with them. A sender more than L4_SENDER_MAX_BAD of whose first L4_SENDER_SAMPLE segments (or of its
# segments in the capture's sample) fail is such a host and is not checked; any other's bad segments are
# dropped. An insertion attack forges packets from a real peer, whose checksums are correct, so it is still
# caught. Senders beyond L4_AUTO_MAX_SENDERS are verified at once.
L4_AUTO_SAMPLE = 1000
L4_AUTO_MAX_BAD = 0.05
L4_SENDER_SAMPLE = 20
L4_SENDER_MAX_BAD = 0.5
# A sender needs at least this many bad segments to be taken for an offloading host (one stray is not).
L4_SENDER_MIN_BAD = 3
# IPv4 header checksums are filled in software almost everywhere; a sender whose headers are nearly all
# wrong is the capturing host of a NIC that does it.
IP_OFFLOAD_SHARE = 0.9
L4_AUTO_MAX_SENDERS = 65536

log = get("sensor.pipeline")


def _sender_text(family: int, hi: int, lo: int) -> str:
    if family == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def packet_block(packets: list[tuple[float, bytes, int]]) -> PacketBlock:
    """A block of whole packets made here (timestamp, bytes, link type), e.g. reassembled datagrams."""
    sizes = np.array([len(p) for _, p, _ in packets], dtype=np.int64)
    offsets = np.zeros(len(packets), dtype=np.int64)
    if len(packets) > 1:
        offsets[1:] = np.cumsum(sizes[:-1])
    return PacketBlock(
        ts=np.array([t for t, _, _ in packets], dtype=np.float64),
        caplen=sizes,
        wirelen=sizes.copy(),
        offset=offsets,
        linktype=np.array([lt for _, _, lt in packets], dtype=np.int32),
        data=b"".join(p for _, p, _ in packets),
    )


class SensorPipeline:
    """Feed packet blocks in event-time order; get back the records that became final."""

    def __init__(
        self,
        config: SensorConfig,
        analyzers: Registry | None = None,
        metrics_registry: CollectorRegistry | None = None,
        seed: int | None = None,
        weirds: WeirdLog | None = None,
    ) -> None:
        self.config = config
        # weird.log's rows (checksum drops here, parse errors in the flow table), when it is written.
        self.weirds = weirds
        self.metrics = SensorMetrics(
            metrics_registry if metrics_registry is not None else CollectorRegistry()
        )
        self.table = FlowTable(config, analyzers or Registry(), error_counter=self._parse_error, seed=seed)
        self.table.weirds = weirds
        self._error_children: dict[tuple[str, str], Counter] = {}
        self._flows_counted = 0  # table.flows_emitted already added to the flows metric
        self.fragments = Reassembler(config.fragment_timeout_s) if config.reassemble_fragments else None
        self._fragment_counts: dict[str, int] = {}
        # None: "auto" still sampling; then True (drop bad segments) or False (do not check).
        self._l4_verify: bool | None = {"on": True, "off": False}.get(config.verify_l4_checksums)
        self._l4_auto = config.verify_l4_checksums == "auto"
        self._l4_seen = 0
        self._l4_failed = 0
        # "auto": sender (family, address) -> [segments sampled, failed]; then True (verified) or False
        # (offloading host, not checked) once judged.
        self._l4_senders: dict[tuple[int, int, int], list[int] | bool] = {}
        # IPv4 senders with bad header checksums: [packets, bad]; and the senders judged to offload their
        # checksums (IP or TCP/UDP) — the capturing host — whose packets are not checked.
        self._ip_senders: dict[tuple[int, int, int], list[int]] = {}
        self._offloading: set[tuple[int, int, int]] = set()
        # UDP destination port -> tunnel carried there.
        self._tunnel_ports: dict[int, str] = {p: "vxlan" for p in config.vxlan_ports} | {
            p: "geneve" for p in config.geneve_ports
        }
        self.now = 0.0  # event time: the newest packet timestamp seen
        # Packets read, and those whose link type no decoder knows (and which those types were): a capture
        # made only of them yields nothing, and the caller says so instead of reporting a quiet network.
        self.packets_read = 0
        self.unsupported_link_packets = 0
        self.unsupported_linktypes: set[int] = set()

    def _parse_error(self, protocol: str, reason: str) -> None:
        child = self._error_children.get((protocol, reason))
        if child is None:
            child = self.metrics.parse_errors.labels(protocol=protocol, reason=reason)
            self._error_children[(protocol, reason)] = child
        child.inc()

    def feed(self, block: PacketBlock) -> list[sensor_pb2.Record]:
        n = len(block)
        if n == 0:
            return []
        self.metrics.packets.inc(n)
        self.metrics.bytes.inc(int(block.wirelen.sum()))
        dec = self._decode(block, hold_fragments=self.fragments is not None)
        if self._tunnel_ports:
            block, dec = self._decapsulate(block, dec)
        self._judge_l4_checksums(dec)
        held = (
            np.flatnonzero((dec.reason == R_FRAGMENT) & (dec.frag4 | dec.frag6))
            if self.fragments is not None
            else None
        )
        counts = np.bincount(dec.reason, minlength=len(REASONS))
        self.packets_read += n
        if counts[R_LINKTYPE]:
            self.unsupported_link_packets += int(counts[R_LINKTYPE])
            self.unsupported_linktypes.update(np.unique(block.linktype[dec.reason == R_LINKTYPE]).tolist())
        if held is not None and held.size:
            counts[R_FRAGMENT] -= held.size  # not errors: they go to the reassembler
        for i in np.flatnonzero(counts[1:]).tolist():
            self.metrics.decode_error(i + 1, int(counts[i + 1]))
        newest = float(block.ts.max())
        if self.weirds is not None and (counts[R_BAD_IP_CHECKSUM] or counts[R_BAD_L4_CHECKSUM]):
            self._checksum_weirds(block, dec, max(self.now, newest))
        if held is not None and held.size:
            block, dec = self._reassemble(block, dec, held)
        records = self.table.process(block, dec) if len(block) else []
        self.now = max(self.now, newest)
        if self.fragments is not None:
            self.fragments.expire(self.now)
            self._account_fragments()
        records.extend(self.table.expire(self.now))
        self._account()
        return records

    def _checksum_weirds(self, block: PacketBlock, dec: DecodedBlock, now: float) -> None:
        """weird.log rows for the packets dropped for a bad checksum, under Zeek's names; only the sampled
        occurrences are turned into rows, so a flood of them costs a few array operations."""
        weirds = self.weirds
        assert weirds is not None
        ip_bad = np.flatnonzero(dec.reason == R_BAD_IP_CHECKSUM)
        l4_bad = np.flatnonzero(dec.reason == R_BAD_L4_CHECKSUM)
        for name, source, idx in (
            ("bad_IP_checksum", "IP", ip_bad),
            ("bad_TCP_checksum", "TCP", l4_bad[dec.proto[l4_bad] == PROTO_TCP]),
            ("bad_UDP_checksum", "UDP", l4_bad[dec.proto[l4_bad] == PROTO_UDP]),
        ):
            for k in weirds.sampler.take(name, int(idx.size), now):
                i = int(idx[k])
                family = int(dec.family[i])
                with_ports = int(dec.proto[i]) in (PROTO_TCP, PROTO_UDP)
                weirds.add(
                    Weird(
                        float(block.ts[i]),
                        name,
                        source,
                        orig_h=_sender_text(family, int(dec.src_hi[i]), int(dec.src_lo[i])),
                        orig_p=int(dec.sport[i]) if with_ports else None,
                        resp_h=_sender_text(family, int(dec.dst_hi[i]), int(dec.dst_lo[i])),
                        resp_p=int(dec.dport[i]) if with_ports else None,
                    )
                )

    def undecodable_since(self, packets_read: int, unsupported: int) -> str | None:
        """Why nothing read since the tallies were (``packets_read``, ``unsupported``) could be decoded;
        None when something could (or nothing was read)."""
        read = self.packets_read - packets_read
        if read == 0 or self.unsupported_link_packets - unsupported < read:
            return None
        kinds = ", ".join(str(t) for t in sorted(self.unsupported_linktypes))
        return (
            f"none of its {read} packets could be decoded: link type {kinds} is not one Vigil reads "
            "(Ethernet, Linux cooked SLL/SLL2, raw IPv4/IPv6, BSD loopback)"
        )

    def _decode(self, block: PacketBlock, hold_fragments: bool) -> DecodedBlock:
        dec = decode(
            block,
            verify_ip_checksums=False,
            mark_ip_checksums=self.config.verify_ip_checksums,
            hold_fragments=hold_fragments,
            check_l4_checksums=self._l4_verify is not False,
        )
        self._drop_bad_ip(dec)
        return dec

    def _drop_bad_ip(self, dec: DecodedBlock) -> None:
        """A receiving host discards an IPv4 packet whose header checksum is wrong, and so does the sensor
        (or an attacker shows it traffic the target never accepted) — except from a sender that leaves them
        unfilled nearly always: the capturing host, whose NIC fills them after the capture (Windows leaves
        0). Such a sender (at least L4_SENDER_MIN_BAD bad, more than IP_OFFLOAD_SHARE of its packets while
        judged) keeps its packets, and is taken to offload its TCP/UDP checksums too."""
        bad = dec.ip_bad
        if bad is None or not bad.any():
            return
        idx = np.flatnonzero(bad)
        if not self.config.spare_offloading_senders:
            dec.reason[idx] = R_BAD_IP_CHECKSUM
            return
        pairs = np.stack((dec.src_hi[idx], dec.src_lo[idx]), axis=1)
        unique, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        exempt = np.zeros(len(unique), dtype=bool)
        tallies = self._ip_senders
        for u, ((hi, lo), n_bad) in enumerate(zip(unique.tolist(), counts.tolist(), strict=True)):
            key = (4, hi, lo)
            if key in self._offloading:
                exempt[u] = True
                continue
            if len(tallies) >= L4_AUTO_MAX_SENDERS and key not in tallies:
                continue
            # Of its packets, those whose checksum could be checked: a segmentation-offloaded one (length 0)
            # was never checked, and is itself the mark of the capturing host.
            sent = int(
                np.count_nonzero(
                    (dec.family == 4) & (dec.ip_len != 0) & (dec.src_hi == hi) & (dec.src_lo == lo)
                )
            )
            tally = tallies.setdefault(key, [0, 0])
            tally[0] += sent
            tally[1] += n_bad
            if tally[1] >= L4_SENDER_MIN_BAD and tally[1] / tally[0] > IP_OFFLOAD_SHARE:
                self._offloads(key, "ip_checksums", tally)
                exempt[u] = True
        drop = idx[~exempt[inverse.ravel()]]
        dec.reason[drop] = R_BAD_IP_CHECKSUM

    def _judge_l4_checksums(self, dec: DecodedBlock) -> None:
        """Drop segments whose checksum fails (when verifying; "auto": see L4_AUTO_SAMPLE)."""
        if self._l4_auto:
            self._judge_senders(dec)
            if self._l4_verify is None:
                checkable = dec.ok & ((dec.proto == PROTO_TCP) | (dec.proto == PROTO_UDP))
                self._l4_seen += int(checkable.sum())
                self._l4_failed += int(dec.l4_bad.sum())
                if self._l4_seen < L4_AUTO_SAMPLE:
                    return
                share = self._l4_failed / self._l4_seen
                self._l4_verify = share <= L4_AUTO_MAX_BAD
                log.info(
                    "l4_checksums",
                    verifying=self._l4_verify,
                    failed_share=round(share, 3),
                    reason="" if self._l4_verify else "looks like checksum offload on the capturing hosts",
                )
                if self._l4_verify:
                    self._judge_sampled_senders()
        # From the block that decided on: segments sampled earlier were analysed as they came.
        self._drop_bad_l4(dec)

    def _judge_sampled_senders(self) -> None:
        """At the end of the capture's sample: a verdict for every sender it held."""
        for key, tally in self._l4_senders.items():
            if isinstance(tally, list) and tally[0]:
                self._l4_senders[key] = self._sender_verdict(key, tally)

    def _sender_verdict(self, key: tuple[int, int, int], tally: list[int]) -> bool:
        verified = tally[1] < L4_SENDER_MIN_BAD or tally[1] / tally[0] <= L4_SENDER_MAX_BAD
        if not verified:
            self._offloads(key, "l4_checksums", tally)
        return verified

    def _offloads(self, key: tuple[int, int, int], event: str, tally: list[int]) -> None:
        """The sender is the capturing host of an offloading NIC: its checksums are no longer checked."""
        self._offloading.add(key)
        log.info(
            event,
            sender=_sender_text(*key),
            verifying=False,
            failed_share=round(tally[1] / tally[0], 3),
            reason="looks like checksum offload on this sender (the capturing host)",
        )

    def _judge_senders(self, dec: DecodedBlock) -> None:
        """Tally segments per sender: every sender during the capture's sample; after it, only the senders
        of bad segments (a sender that sends none needs no verdict), so a clean stream costs nothing here."""
        if self._l4_verify is False:
            return
        checkable = dec.ok & ((dec.proto == PROTO_TCP) | (dec.proto == PROTO_UDP))
        if self._l4_verify:
            bad = checkable & dec.l4_bad
            if not bad.any():
                return
            # The bad segments' senders, and every checkable segment of theirs in this block.
            key_of = dec.src_lo.astype(np.uint64) ^ (
                dec.src_hi.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            )
            checkable &= np.isin(key_of, np.unique(key_of[bad]))
        index = np.flatnonzero(checkable)
        if not index.size:
            return
        checkable = index
        senders = self._l4_senders
        keys = np.stack((dec.family[checkable], dec.src_hi[checkable], dec.src_lo[checkable]), axis=1)
        unique, inverse, seen = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        failed = np.bincount(inverse.ravel(), weights=dec.l4_bad[checkable], minlength=len(unique))
        for (family, hi, lo), n, bad in zip(unique.tolist(), seen.tolist(), failed.tolist(), strict=True):
            key = (family, hi, lo)
            tally = senders.get(key)
            if isinstance(tally, bool):
                continue
            if tally is None:
                if len(senders) >= L4_AUTO_MAX_SENDERS:
                    senders[key] = True
                    continue
                tally = senders[key] = [0, 0]
            tally[0] += n
            tally[1] += int(bad)
            # During the capture's sample every sender is tallied; after it, a new one is judged alone.
            if self._l4_verify is not None and tally[0] >= L4_SENDER_SAMPLE:
                senders[key] = self._sender_verdict(key, tally)

    def _drop_bad_l4(self, dec: DecodedBlock) -> None:
        if not self._l4_verify:
            return
        bad = dec.l4_bad & dec.ok
        if not bad.any():
            return
        if self._l4_auto:
            # Only senders judged to fill their checksums lose a bad segment; those still being sampled
            # keep theirs, as everyone's were kept before a verdict.
            idx = np.flatnonzero(bad)
            keys = np.stack((dec.family[idx], dec.src_hi[idx], dec.src_lo[idx]), axis=1)
            unique, inverse = np.unique(keys, axis=0, return_inverse=True)
            senders, offloading = self._l4_senders, self._offloading
            verified = np.array(
                [senders.get(k) is True and k not in offloading for k in map(tuple, unique.tolist())],
                dtype=bool,
            )
            bad[idx[~verified[inverse.ravel()]]] = False
        dec.reason[bad] = R_BAD_L4_CHECKSUM

    def _decapsulate(self, block: PacketBlock, dec: DecodedBlock) -> tuple[PacketBlock, DecodedBlock]:
        """VXLAN / Geneve packets replaced, in place, by the frames they carry (one level of nesting)."""
        ports = np.array(sorted(self._tunnel_ports), dtype=np.int64)
        candidates = np.flatnonzero(dec.ok & (dec.proto == PROTO_UDP) & np.isin(dec.dport, ports))
        if not candidates.size:
            return block, dec
        inner: dict[int, bytes] = {}
        data = block.data
        for i in candidates.tolist():
            start = int(dec.payload_off[i])
            payload = data[start : start + int(dec.payload_cap[i])]
            kind = self._tunnel_ports[int(dec.dport[i])]
            frame = vxlan_inner(payload) if kind == "vxlan" else geneve_inner(payload)
            if frame is not None:
                inner[i] = frame
                self.metrics.decapsulated.labels(tunnel=kind).inc()
        if not inner:
            return block, dec
        return self._rebuilt(block, {i: (frame, LINKTYPE_ETHERNET) for i, frame in inner.items()}, set())

    def _reassemble(
        self, block: PacketBlock, dec: DecodedBlock, held: npt.NDArray[np.int64]
    ) -> tuple[PacketBlock, DecodedBlock]:
        """The block as the receiving host sees it: each datagram whole, where its last fragment was
        (so the flow table sees a fragmented SYN before the SYN-ACK), pieces still waiting left out."""
        assert self.fragments is not None
        whole: dict[int, tuple[bytes, int]] = {}
        for i in held.tolist():
            done = self.fragments.add(float(block.ts[i]), block.packet(i), int(dec.l3[i] - block.offset[i]))
            if done is not None:
                whole[i] = (done, int(block.linktype[i]))
        rebuilt, dec = self._rebuilt(block, whole, set(held.tolist()), hold_fragments=False)
        self._drop_bad_l4(dec)  # a reassembled segment is checked like any other
        return rebuilt, dec

    def _rebuilt(
        self,
        block: PacketBlock,
        replace: dict[int, tuple[bytes, int]],
        drop: set[int],
        hold_fragments: bool | None = None,
    ) -> tuple[PacketBlock, DecodedBlock]:
        """The block with some packets replaced (bytes, link type) in their places and others left out,
        decoded again (the way every block is: fragments held unless told, checksums as configured)."""
        packets = [
            (float(block.ts[i]), *replace[i])
            if i in replace
            else (float(block.ts[i]), block.packet(i), int(block.linktype[i]))
            for i in range(len(block))
            if i in replace or i not in drop
        ]
        rebuilt = packet_block(packets)
        hold = self.fragments is not None if hold_fragments is None else hold_fragments
        return rebuilt, self._decode(rebuilt, hold_fragments=hold)

    def _account_fragments(self) -> None:
        assert self.fragments is not None
        for outcome, total in self.fragments.counts.items():
            seen = self._fragment_counts.get(outcome, 0)
            if total > seen:
                self.metrics.fragments.labels(outcome=outcome).inc(total - seen)
                self._fragment_counts[outcome] = total

    def expire(self, now: float) -> list[sensor_pb2.Record]:
        """Advance event time (e.g. a live source that went quiet) and emit what timed out."""
        self.now = max(self.now, now)
        records = self.table.expire(self.now)
        self._account()
        return records

    def flush(self) -> list[sensor_pb2.Record]:
        records = self.table.flush()
        self._account()
        return records

    def _account(self) -> None:
        # The table counts the flow records it emits (every one is in a list returned here), which
        # spares a WhichOneof() per record.
        flows = self.table.flows_emitted - self._flows_counted
        if flows:
            self.metrics.flows.inc(flows)
            self._flows_counted = self.table.flows_emitted
        self.metrics.active_flows.set(len(self.table))
