"""The originator's messages inside one connection (sensor/messages.py), on arrays and on a real RAT."""

from __future__ import annotations

import math

import numpy as np

from sensor.messages import MessageClock, record_messages
from tests.conftest import CORPUS
from tests.sensor.records import capture_records


def _feed(clocks: list[MessageClock], segs: list[int], times: list[float]) -> None:
    record_messages(np.array(segs, dtype=np.int64), np.array(times, dtype=np.float64), clocks)


def test_messages_start_after_a_second_of_silence_and_carry_across_blocks() -> None:
    a, b = MessageClock(), MessageClock()
    # Segment 0: packets at 0, 0.2 (one message), 5, 5.5 (two), 10 (three). Segment 1: one packet.
    _feed([a, b], [0, 0, 0, 0, 0, 1], [0.0, 0.2, 5.0, 5.5, 10.0, 3.0])
    assert (a.messages, a.intervals, a.interval_sum) == (3, 2, 10.0)
    assert (b.messages, b.intervals) == (1, 0)
    # The next block: 10.4 continues message three; 15 starts a fourth, 5 s after the third began.
    _feed([a], [0, 0], [10.4, 15.0])
    assert (a.messages, a.intervals, a.interval_sum, a.last_data, a.last_start) == (4, 3, 15.0, 15.0, 15.0)
    mean, stdev = a.mean_and_stdev()
    assert mean == 5.0 and stdev == 0.0


def test_a_record_cut_by_the_active_timeout_starts_its_totals_again() -> None:
    clock = MessageClock()
    _feed([clock], [0, 0, 0], [0.0, 2.0, 4.0])
    clock.reset()
    _feed([clock], [0], [6.0])
    # The interval reaching back into the previous record still counts: the timer did not stop.
    assert (clock.messages, clock.intervals, clock.interval_sum) == (1, 1, 2.0)


def test_out_of_order_times_give_no_negative_interval() -> None:
    clock = MessageClock()
    _feed([clock], [0, 0], [10.0, 20.0])
    _feed([clock], [0], [12.0])  # a late packet: no new message, no interval
    assert (clock.messages, clock.intervals, clock.interval_sum) == (2, 1, 10.0)
    assert clock.mean_and_stdev() == (10.0, 0.0)


def test_strrat_checks_in_every_few_seconds_inside_one_connection() -> None:
    """STRRAT (corelight zeek-strrat-detector): 192.168.100.11 keeps one TCP connection to
    185.255.114.40:8219 and sends 78 payload packets; with tshark (-Y "ip.src==192.168.100.11 && tcp.len>0")
    they make 39 runs separated by a second or more, started every 4.65 s (population stdev 1.04 s)."""
    records, _ = capture_records(
        CORPUS / "wild/corelight__zeek-strrat-detector/strrat-4423258f-59bc-4a88-bfec-d8ac08c88538.pcap"
    )
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow" and r.flow.resp.port == 8219]
    assert len(flows) == 1
    flow = flows[0]
    assert (flow.orig_messages, flow.orig_message_intervals) == (39, 38)
    assert math.isclose(flow.orig_message_interval_mean_s, 4.6507, abs_tol=1e-3)
    assert math.isclose(flow.orig_message_interval_stdev_s, 1.0416, abs_tol=1e-3)
