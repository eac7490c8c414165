"""Sampling, slicing and the Selector that runs filter -> sample -> slice, with its counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowscope.decode.codes import E_TRUNCATED
from flowscope.errors import FlowscopeError
from flowscope.filters import Selector
from flowscope.filters.sampling import Sampler
from flowscope.pipeline import PacketRun

from .generated import Record, erspan2, tcp_frame, write_pcap

PAYLOAD = 100
INNER_LEN = 14 + 20 + 20 + PAYLOAD  # Ethernet, IPv4, TCP, payload


def test_sampler_keeps_every_nth_frame_across_batches() -> None:
    s = Sampler(4)
    got = [s.keep(3).tolist(), s.keep(5).tolist(), s.keep(7).tolist()]
    assert got == [[False] * 3, [True, False, False, False, True],
                   [False, False, False, True, False, False, False]]
    assert (s.seen, s.kept) == (15, 3)
    assert Sampler(1).keep(3).tolist() == [True, True, True]


@pytest.fixture
def run(tmp_path: Path) -> tuple:
    """12 ERSPAN II copies of TCP segments from ports 40000..40011, 100 payload bytes."""
    records = [Record(erspan2(tcp_frame(i, PAYLOAD, "PA"), seq=i + 1, session=7), 10**18 + i)
               for i in range(12)]
    path = write_pcap(tmp_path / "m.pcap", records)
    [(batch, rows)] = list(PacketRun([str(path)]).batches())
    return batch, rows


def _halves(batch, rows):  # type: ignore[no-untyped-def]
    first, second = np.arange(5), np.arange(5, len(batch))
    return [(batch.take(first), rows[first]), (batch.take(second), rows[second])]


def test_filter_then_sample_then_slice_with_counts(run) -> None:  # type: ignore[no-untyped-def]
    sel = Selector("tcp src portrange 40002-40011", sample=3, snaplen=40)
    outputs = [sel.apply(b, r) for b, r in _halves(*run)]
    kept = np.concatenate([r for _, r in outputs])
    # frames 3..12 match; the 3rd, 6th and 9th of them are sampled
    assert kept["frame"].tolist() == [5, 8, 11]
    assert (sel.matched, sel.filtered_out, sel.sampled_out, sel.sliced) == (10, 2, 7, 3)
    assert sel.describe() == "filter: tcp src portrange 40002-40011; sample: 1-in-3; snaplen: 40"
    # the copy kept holds 40 bytes of the mirrored frame; the wire length is the original
    batch = outputs[0][0]
    original = run[0]
    outer = int(original.caplen[0]) - INNER_LEN
    assert batch.caplen.tolist() == [outer + 40]
    assert batch.wirelen.tolist() == [original.wirelen[4]]
    # decoded again from the short copy: cut inside the TCP header
    assert kept["inner_caplen"].tolist() == [40, 40, 40]
    assert kept["len"].tolist() == [INNER_LEN] * 3
    assert kept["error"].tolist() == [E_TRUNCATED] * 3
    assert kept["sport"].tolist() == [-1] * 3
    assert kept["stream"].tolist() == run[1]["stream"][[4, 7, 10]].tolist()


def test_slicing_after_the_tcp_header_keeps_the_header_fields(run) -> None:  # type: ignore[no-untyped-def]
    sel = Selector(snaplen=60)
    batch, rows = sel.apply(*run)
    assert len(batch) == 12 and sel.sliced == 12
    assert rows["inner_caplen"].tolist() == [60] * 12
    assert rows["error"].tolist() == [0] * 12
    assert rows["sport"].tolist() == list(range(40000, 40012))
    assert rows["payload_len"].tolist() == [PAYLOAD] * 12  # known from the IP length
    assert (rows["inner_caplen"] < rows["len"]).all()  # what analysis reads as a cut copy


def test_slicing_longer_than_the_frame_changes_nothing(run) -> None:  # type: ignore[no-untyped-def]
    sel = Selector(snaplen=INNER_LEN)
    batch, rows = sel.apply(*run)
    assert sel.sliced == 0
    assert batch.caplen.tolist() == run[0].caplen.tolist()
    assert (rows == run[1]).all()


def test_slicing_a_frame_without_a_tunnel(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "p.pcap", [Record(tcp_frame(i, PAYLOAD), 10**18 + i)
                                            for i in range(3)])
    [(batch, rows)] = list(PacketRun([str(path)]).batches())
    sel = Selector("tcp", snaplen=54)
    out, kept = sel.apply(batch, rows)
    assert out.caplen.tolist() == [54] * 3 and out.wirelen.tolist() == [INNER_LEN] * 3
    assert kept["sport"].tolist() == [40000, 40001, 40002] and sel.slicer is not None
    assert sel.slicer.bytes_cut == 3 * PAYLOAD


def test_mask_does_not_count(run) -> None:  # type: ignore[no-untyped-def]
    sel = Selector("src port 40000 or 40001", sample=2)
    assert np.flatnonzero(sel.mask(*run)).tolist() == [0, 1]
    assert (sel.matched, sel.filtered_out, sel.sampled_out) == (0, 0, 0)
    _, rows = sel.apply(*run)
    assert rows["frame"].tolist() == [2]
    assert (sel.matched, sel.filtered_out, sel.sampled_out) == (2, 10, 1)


def test_describe_lists_the_rules_as_written() -> None:
    sel = Selector("udp", udf=["l4+8=0x8100/0xff00", "l5+0=1"], preset="rdma-cnp")
    assert sel.describe() == ("filter: udp; preset: rdma-cnp; udf: l4+8=0x8100/0xff00 l5+0=1")
    assert [str(r) for r in sel.rules] == ["l4+8=0x8100/0xff00", "l4+8=0x8100/0xff00",
                                          "l5+0=0x0001/0xffff"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sample": 0}, "sample 1 in N needs N >= 1"),
    ({"snaplen": -1}, "the length must be 0 \\(off\\) or more"),
    ({"preset": "rdma"}, "unknown preset 'rdma'; choose one of rdma-cnp, rdma-nak-psn"),
    ({"expr": "tcp port foo"}, "filter: expected a port number"),
    ({"udf": ["l4+8"]}, "udf: expected '='"),
])
def test_bad_settings_are_flowscope_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(FlowscopeError, match=message):
        Selector(**kwargs)
