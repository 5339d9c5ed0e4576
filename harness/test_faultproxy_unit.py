"""Unit tests of the multifd fault proxy's packet relay (no QEMU needed)."""

import io
import struct
import unittest

import faultproxy as fp

PAGES_ALLOC = 4


def init_packet(channel):
    return struct.pack(">II", fp.MULTIFD_MAGIC, 1) + bytes(16) + bytes([channel]) + bytes(39)


def packet(num, payload, normal=1, flags=6, offsets=(), zero=0):
    # QEMU leaves pages_alloc 0 in sync packets; the length stays the same.
    alloc = 0 if flags & 1 else PAGES_ALLOC
    fixed = struct.pack(">III", fp.MULTIFD_MAGIC, 1, flags)
    fixed += struct.pack(">IIIQI", alloc, normal, len(payload), num, zero)
    fixed += bytes(4 + 24 + 256)
    assert len(fixed) == fp.PACKET_FIXED_LEN
    offs = b"".join(struct.pack(">Q", o) for o in offsets)
    return fixed + offs + bytes(8 * PAGES_ALLOC - len(offs)), payload


def stream(packets, channel=1):
    return init_packet(channel) + b"".join(h + p for h, p in packets)


def relay(data, kind, trigger=1, seed=7, final=False, on_sync=None, idle=None):
    inj = fp.Injector(kind, trigger, seed)
    if final:
        inj.arm_final()
    out = []
    cut = False
    try:
        fp.relay_multifd(io.BytesIO(data).read, out.append, inj, PAGES_ALLOC, on_sync, idle)
    except fp.StreamCut:
        cut = True
    return b"".join(out), inj, cut


SYNC = packet(99, b"", normal=0, flags=1 | 6)


def payloads(n, size=100):
    return [packet(i, bytes([i + 1]) * size) for i in range(n)]



def cbc_frame(tags_lens, features):
    """A cbc frame (docs/FORMAT.md §1) of pages with these (tag, length)
    entries, each payload a run of one byte, and these feature bits."""
    table = b"".join(struct.pack("<I", (t << 24) | n) for t, n in tags_lens)
    body = b"".join(bytes([0xA0 + i]) * n for i, (_, n) in enumerate(tags_lens))
    head = b"MCBC" + bytes([1, 12]) + struct.pack("<HIII", len(tags_lens), 0, features, len(body))
    return head + bytes(32 - len(head)) + table + body

class RelayTest(unittest.TestCase):
    def test_no_fault_is_identity(self):
        pk = payloads(3)
        pk.insert(1, packet(9, b"", normal=0, flags=1 | 6))  # a sync packet
        data = stream(pk)
        out, inj, cut = relay(data, "none")
        self.assertEqual(out, data)
        self.assertIsNone(inj.fired)
        self.assertFalse(cut)

    def test_flip_changes_one_bit_of_the_trigger_payload(self):
        pk = payloads(3)
        data = stream(pk)
        out, inj, _ = relay(data, "flip", trigger=2)
        self.assertEqual(len(out), len(data))
        diff = [i for i in range(len(data)) if out[i] != data[i]]
        self.assertEqual(len(diff), 1)
        start = fp.INIT_LEN + len(pk[0][0]) + len(pk[0][1]) + len(pk[1][0])
        self.assertTrue(start <= diff[0] < start + len(pk[1][1]))
        self.assertEqual(bin(out[diff[0]] ^ data[diff[0]]).count("1"), 1)
        self.assertEqual(inj.fired["channel"], 1)
        self.assertEqual(inj.fired["packet_num"], 1)

    def test_truncate_cuts_inside_the_payload(self):
        pk = payloads(3)
        data = stream(pk)
        out, inj, cut = relay(data, "truncate", trigger=3)
        self.assertTrue(cut)
        self.assertEqual(out, data[:len(out)])
        start = len(data) - len(pk[2][1])
        self.assertTrue(start <= len(out) < len(data))

    def test_duplicate_sends_the_packet_twice(self):
        pk = payloads(3)
        out, _, _ = relay(stream(pk), "duplicate", trigger=2)
        self.assertEqual(out, stream([pk[0], pk[1], pk[1], pk[2]]))

    def test_reorder_swaps_with_the_next_data_packet(self):
        pk = payloads(3)
        out, inj, _ = relay(stream(pk), "reorder", trigger=1)
        self.assertEqual(out, stream([pk[1], pk[0], pk[2]]))
        self.assertEqual(inj.fired["packet_num"], 0)

    def test_reorder_never_moves_a_packet_across_a_sync(self):
        sync = packet(5, b"", normal=0, flags=1 | 6)
        pk = payloads(3)
        out, _, _ = relay(stream([pk[0], sync, pk[1], pk[2]]), "reorder", trigger=1)
        self.assertEqual(out, stream([pk[0], sync, pk[2], pk[1]]))

    def test_replace_keeps_header_and_length(self):
        pk = payloads(2)
        data = stream(pk)
        out, _, _ = relay(data, "replace", trigger=2)
        self.assertEqual(len(out), len(data))
        start = len(data) - len(pk[1][1])
        self.assertEqual(out[:start], data[:start])
        self.assertNotEqual(out[start:], data[start:])

    def test_replay_sends_the_previous_payload(self):
        pk = [packet(0, b"a" * 50), packet(1, b"b" * 80)]
        out, inj, _ = relay(stream(pk), "replay", trigger=1)
        head, _ = pk[1]
        replayed = bytearray(head)
        struct.pack_into(">I", replayed, fp.SIZE_OFFSET, 50)
        self.assertEqual(out, stream([pk[0], (bytes(replayed), b"a" * 50)]))
        self.assertEqual(inj.fired["packet_num"], 1)

    def test_length_changes_only_the_announced_size(self):
        pk = payloads(2)
        data = stream(pk)
        out, inj, _ = relay(data, "length", trigger=2)
        self.assertEqual(len(out), len(data))
        at = fp.INIT_LEN + len(pk[0][0]) + len(pk[0][1]) + fp.SIZE_OFFSET
        self.assertNotEqual(out[at:at + 4], data[at:at + 4])
        self.assertEqual(out[:at] + out[at + 4:], data[:at] + data[at + 4:])
        self.assertEqual(struct.unpack_from(">I", out, at)[0], inj.fired["announced"])

    def test_offset_swaps_two_normal_offsets_and_nothing_else(self):
        one = packet(0, b"a" * 50, normal=1, offsets=(0x1000,))
        two = packet(1, b"b" * 50, normal=2, offsets=(0x2000, 0x5000))
        data = stream([one, two])
        out, inj, _ = relay(data, "offset", trigger=1)
        # The first packet has one normal page: the fault moves on.
        at = fp.INIT_LEN + len(one[0]) + len(one[1]) + fp.OFFSETS_AT
        self.assertEqual(struct.unpack_from(">QQ", out, at), (0x5000, 0x2000))
        self.assertEqual(out[:at] + out[at + 16:], data[:at] + data[at + 16:])
        self.assertEqual(inj.fired["swapped"], (0x2000, 0x5000))

    def test_zero_list_names_a_normal_page(self):
        pk = packet(0, b"a" * 50, normal=2, offsets=(0x1000, 0x3000, 0x7000), zero=1)
        data = stream([pk])
        out, inj, _ = relay(data, "zero-list", trigger=1)
        at = fp.INIT_LEN + fp.OFFSETS_AT + 16
        self.assertIn(struct.unpack_from(">Q", out, at)[0], (0x1000, 0x3000))
        self.assertEqual(out[:at] + out[at + 8:], data[:at] + data[at + 8:])
        self.assertEqual(inj.fired["zero_was"], 0x7000)

    def test_a_header_fault_without_a_page_to_move_never_fires(self):
        out, inj, _ = relay(stream([packet(0, b"a" * 50, normal=1, offsets=(0x1000,))]), "zero-list")
        self.assertIsNone(inj.fired)

    def test_zero_only_moves_a_zero_page_of_a_zero_page_packet(self):
        data_pk = packet(0, b"a" * 50, normal=1, offsets=(0x1000, 0x4000), zero=1)
        zeros = packet(1, b"f" * 32, normal=0, offsets=(0x8000, 0xa000), zero=2)
        data = stream([data_pk, zeros, SYNC])
        out, inj, _ = relay(data, "zero-only", trigger=1)
        # The packet with a normal page is not counted and passes intact.
        at = fp.INIT_LEN + len(data_pk[0]) + len(data_pk[1]) + fp.OFFSETS_AT
        self.assertEqual(inj.fired["packet_num"], 1)
        self.assertEqual(inj.fired["payload_len"], 32, "the frame of a zero-page packet is read")
        k = 8 * [0x8000, 0xa000].index(inj.fired["zero_was"])
        self.assertEqual(struct.unpack_from(">Q", out, at + k)[0], inj.fired["zero_now"])
        self.assertEqual(inj.fired["zero_now"], 0x1000, "the data packet's normal page")
        self.assertEqual(out[:at + k] + out[at + k + 8:], data[:at + k] + data[at + k + 8:])
        self.assertEqual(inj.fired["later_syncs"], 1)

    def test_zero_only_needs_a_data_packet_before_it(self):
        zeros = packet(0, b"f" * 32, normal=0, offsets=(0x8000,), zero=1)
        out, inj, _ = relay(stream([zeros]), "zero-only", trigger=1)
        self.assertIsNone(inj.fired)

    def test_zero_only_never_fires_without_a_zero_page_packet(self):
        out, inj, _ = relay(stream(payloads(3) + [SYNC]), "zero-only", trigger=1)
        self.assertIsNone(inj.fired)
        self.assertEqual(out, stream(payloads(3) + [SYNC]))

    def test_delta_flips_a_bit_inside_a_delta_page_only(self):
        def frame(tags_lens):
            return cbc_frame(tags_lens, features=6)
        plain = frame([(6, 50), (1, 0)])
        with_delta = frame([(6, 50), (0x40, 12), (0x41, 20)])
        self.assertEqual(fp.tag_spans(plain, fp.DELTA_TAGS), [])
        self.assertEqual(fp.tag_spans(b"junk" * 20, fp.DELTA_TAGS), [])
        start = 32 + 12 + 50
        self.assertEqual(fp.tag_spans(with_delta, fp.DELTA_TAGS),
                         [(1, start, 12), (2, start + 12, 20)])
        # A zstd member's field names its head (page 1), it has no payload.
        entries = [(6, 50, 50), (0x42, 30, 30), (0x43, 1, 0), (0x40, 12, 12)]
        table = b"".join(struct.pack("<I", (t << 24) | f) for t, f, _ in entries)
        body = b"".join(bytes([0xB0 + i]) * n for i, (_, _, n) in enumerate(entries))
        head = b"MCBC" + bytes([1, 12]) + struct.pack("<HIII", len(entries), 0, 10, len(body))
        with_member = head + bytes(32 - len(head)) + table + body
        self.assertEqual(fp.tag_spans(with_member, fp.DELTA_TAGS), [(3, 32 + 16 + 80, 12)])
        pk = [packet(0, plain), packet(1, with_delta), packet(2, plain)]
        data = stream(pk)
        out, inj, _ = relay(data, "delta", trigger=1)
        diff = [i for i in range(len(data)) if out[i] != data[i]]
        self.assertEqual(len(diff), 1)
        at = fp.INIT_LEN + sum(len(h) + len(p) for h, p in pk[:1]) + len(pk[1][0])
        self.assertTrue(at + start <= diff[0] < at + start + 32, diff)
        self.assertEqual(inj.fired["packet_num"], 1)
        # Without a delta page the fault never fires.
        out, inj, _ = relay(stream([packet(0, plain), packet(1, plain)]), "delta")
        self.assertIsNone(inj.fired)

    def test_dedup_flips_a_bit_inside_a_dedup_page_only(self):
        def frame(tags_lens):
            return cbc_frame(tags_lens, features=18)
        plain = frame([(6, 50), (0x40, 12)])
        with_dedup = frame([(6, 50), (0x40, 12), (0x44, 16)])
        self.assertEqual(fp.tag_spans(plain, fp.DEDUP_TAGS), [])
        start = 32 + 12 + 50 + 12
        self.assertEqual(fp.tag_spans(with_dedup, fp.DEDUP_TAGS), [(2, start, 16)])
        pk = [packet(0, plain), packet(1, with_dedup)]
        data = stream(pk)
        out, inj, _ = relay(data, "dedup", trigger=1)
        diff = [i for i in range(len(data)) if out[i] != data[i]]
        self.assertEqual(len(diff), 1)
        at = fp.INIT_LEN + len(pk[0][0]) + len(pk[0][1]) + len(pk[1][0])
        self.assertTrue(at + start <= diff[0] < at + start + 16, diff)
        self.assertEqual(inj.fired["packet_num"], 1)
        self.assertIn("in_source_offset", inj.fired)
        # A delta page is no dedup page: the fault never fires.
        out, inj, _ = relay(stream([packet(0, plain), packet(1, plain)]), "dedup")
        self.assertIsNone(inj.fired)

    def test_drop_leaves_out_the_whole_trigger_packet(self):
        pk = payloads(4)
        out, inj, cut = relay(stream(pk), "drop", trigger=2)
        self.assertEqual(out, stream([pk[0], pk[2], pk[3]]))
        self.assertFalse(cut)
        self.assertEqual(inj.fired["packet_num"], 1)
        self.assertEqual(inj.fired["later_data"], 2)

    def test_drop_of_the_last_packet_has_no_successor(self):
        pk = payloads(3)
        out, inj, _ = relay(stream(pk + [SYNC]), "drop", trigger=3)
        self.assertEqual(out, stream(pk[:2] + [SYNC]))
        self.assertEqual((inj.fired["later_data"], inj.fired["later_syncs"]), (0, 1))

    def test_drop_last_does_nothing_before_the_final_round(self):
        data = stream(payloads(3) + [SYNC])
        out, inj, _ = relay(data, "drop-last")
        self.assertEqual(out, data)
        self.assertIsNone(inj.fired)

    def test_drop_last_drops_the_packet_before_the_final_sync(self):
        pk = payloads(3)
        out, inj, _ = relay(stream(pk + [SYNC]), "drop-last", final=True)
        self.assertEqual(out, stream(pk[:2] + [SYNC]))
        self.assertEqual(inj.fired["packet_num"], 2)
        self.assertEqual(inj.fired["later_data"], 0)

    def test_drop_last_skips_a_sync_that_more_data_follows(self):
        # The final round can wrap around RAM and sync in its middle: the
        # channel is not quiet after that sync, so nothing is dropped there.
        pk = payloads(4)
        quiet = iter([False, True])
        out, inj, _ = relay(stream(pk[:2] + [SYNC] + pk[2:] + [SYNC]), "drop-last", final=True,
                            idle=lambda t: next(quiet))
        self.assertEqual(out, stream(pk[:2] + [SYNC, pk[2], SYNC]))
        self.assertEqual(inj.fired["packet_num"], 3)

    def test_on_sync_runs_before_each_sync_is_forwarded(self):
        pk = payloads(2)
        out = []
        seen = []
        inj = fp.Injector("none", 1, 1)
        fp.relay_multifd(io.BytesIO(stream([pk[0], SYNC, pk[1], SYNC])).read, out.append, inj,
                         PAGES_ALLOC, lambda: seen.append(len(b"".join(out))))
        first_sync = fp.INIT_LEN + len(pk[0][0]) + len(pk[0][1])
        self.assertEqual(seen, [first_sync, first_sync + len(SYNC[0]) + len(pk[1][0]) + len(pk[1][1])])

    def test_a_gate_keeps_writes_in_order_until_released(self):
        sent, ended = [], []
        gate = fp.Gate(sent.append)
        gate.write(b"a")
        gate.close()
        gate.write(b"b")
        gate.write(b"c")
        gate.end(lambda: ended.append(True))
        self.assertEqual((sent, ended), ([b"a"], []))
        gate.release()
        self.assertEqual((sent, ended), ([b"a", b"b", b"c"], [True]))
        gate.write(b"d")
        self.assertEqual(sent[-1], b"d")

    def test_a_sync_hold_keeps_the_sync_and_what_follows(self):
        proxy = fp.FaultProxy.__new__(fp.FaultProxy)
        proxy.hold, proxy.gates, proxy.holding = "sync", [], fp.threading.Event()
        sent = []
        gate = proxy._gate(sent.append)
        other = []
        other_gate = proxy._gate(other.append)  # another channel, or the main one
        pk = payloads(3)
        data = stream([pk[0], SYNC, pk[1], pk[2]])
        fp.relay_multifd(io.BytesIO(data).read, gate.write, fp.Injector("none", 1, 1),
                         PAGES_ALLOC, lambda: proxy._hold_here("sync"))
        self.assertEqual(b"".join(sent), stream([pk[0]]))
        self.assertTrue(proxy.holding.is_set())
        # Every stream stops at once: the destination parks a channel at a
        # sync until all channels reach it.
        other_gate.write(b"x")
        self.assertEqual(other, [])
        for t in proxy.release():
            t.join(5)
        self.assertEqual(b"".join(sent), data)
        self.assertEqual(other, [b"x"])

    def test_held_streams_are_released_independently(self):
        # The destination reads the main channel only after a multifd
        # channel delivered its sync: a release one stream after the other
        # would wait for ever on the first.
        proxy = fp.FaultProxy.__new__(fp.FaultProxy)
        proxy.hold, proxy.gates, proxy.holding = "main", [], fp.threading.Event()
        synced = fp.threading.Event()
        main = proxy._gate(lambda d: synced.wait(5) or self.fail("main sent before the sync"))
        channel = proxy._gate(lambda d: synced.set())
        proxy._hold_here("main")
        main.write(b"device state")
        channel.write(b"sync")
        for t in proxy.release():
            t.join(6)
        self.assertTrue(synced.is_set())
        self.assertEqual((main.pending, channel.pending), ([], []))

    def test_a_short_stream_is_forwarded_as_it_is(self):
        data = stream(payloads(2))[:-30]
        out, _, _ = relay(data, "none")
        self.assertEqual(out, data)


if __name__ == "__main__":
    unittest.main()
