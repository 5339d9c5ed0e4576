"""A TCP proxy that corrupts one multifd packet on its way to the destination.

The source migrates to the proxy; the proxy connects to the destination once
per connection the source opens and relays both directions.  The main
migration channel (it starts with "QEVM") is relayed untouched.  A multifd
channel starts with its 64-byte MultiFDInit_t; after it the proxy parses the
stream packet by packet (QEMU 10.0 layout, migration/multifd.h):

    MultiFDPacket_t   320 bytes + 8 * 128 (pages per packet; big endian)
      hdr.magic u32 | hdr.version u32 | hdr.flags u32 | pages_alloc u32 |
      normal_pages u32 | next_packet_size u32 | packet_num u64 |
      zero_pages u32 | unused ... | ramblock[256] | offset[pages_alloc] u64
    payload           next_packet_size bytes (cbc: in every packet with
                      pages; QEMU's own methods: when normal_pages > 0)

and applies one fault to one packet that carries pages ("data packet").  The
fault kinds are the ways a network, a buggy peer or an attacker can break a
compressed stream without breaking TCP:

    flip       one bit of the payload inverted
    truncate   the payload cut short, then the stream to the destination ends
    reset      the payload cut short, then both ends of the connection reset
    duplicate  the packet (header and payload) sent twice
    reorder    the packet sent after the next data packet of its channel
    replace    the payload replaced by random bytes of the same length
    replay     the payload replaced by an earlier payload of the channel
    length     next_packet_size changed, the payload left as it was
    drop       the packet (header and payload) not sent at all
    drop-last  the last data packet of a channel before the migration's
               final sync not sent: armed only once the harness calls
               Injector.arm_final() (the source stopped at pre-switchover:
               what follows is the final RAM round).  From then on each
               data packet is held until the channel's next packet; when
               that is a sync after which the channel stays quiet for
               FINAL_IDLE_S, the sync is the final one (the final round
               can hold an earlier sync, where the scan of dirty pages
               wraps) and the held packet is dropped
    offset     two normal pages' offsets in the header swapped
    zero-list  one zero page's offset in the header made a normal page's
    zero-only  in a packet that carries only zero pages, one of their
               offsets moved to a normal page of the channel's last data
               packet of the same block (a page that holds data, so a
               destination that zeroes it ends up with differing RAM);
               only zero-only packets count towards the trigger
    delta      one bit inverted inside the payload of a delta page
               (a page sent as its difference to the version the
               destination holds, tags 0x40/0x41): its base hash or its
               body; only packets whose frame holds a delta page count
               towards the trigger
    dedup      one bit inverted inside the payload of a dedup page (a
               reference to another page the destination holds, tag
               0x44): the source page's offset or its hash; only packets
               whose frame holds a dedup page count towards the trigger

What follows the fault on its channel is counted in `fired` (data packets
and sync packets after it), so a harness can tell a dropped frame that a
later frame's sequence number should expose from one that had no successor.

The proxy can also hold a migration at a chosen point without breaking
anything (FaultProxy.hold): from the next multifd sync packet ("sync") or
the next bytes of the main channel ("main") on, the destination receives
nothing more on any connection until FaultProxy.release().  Held bytes are
kept in order and the proxy goes on reading everything the source sends:
holding one channel only would deadlock, since the destination parks each
channel at a sync until all have reached it, and a source blocked in a
write during its final RAM round holds the BQL and answers no QMP.

Only the standard library; the packet parser works on any pair of
read/write callables so it is unit-tested without QEMU
(harness/test_faultproxy_unit.py).
"""

import random
import select
import socket
import struct
import threading

MULTIFD_MAGIC = 0x11223344
INIT_LEN = 64             # sizeof(MultiFDInit_t)
INIT_ID_OFFSET = 24       # MultiFDInit_t.id (after magic, version, uuid[16])
HDR_LEN = 12              # MultiFDPacketHdr_t
PACKET_FIXED_LEN = 320    # sizeof(MultiFDPacket_t) without offset[]
DEVICE_STATE_LEN = 12 + 256 + 4 + 4   # MultiFDPacketDeviceState_t
FLAG_DEVICE_STATE = 32 << 1
NORMAL_OFFSET = 16        # MultiFDPacket_t.normal_pages
RAMBLOCK_AT = 64          # MultiFDPacket_t.ramblock[256]
ZERO_OFFSET = 32          # MultiFDPacket_t.zero_pages
OFFSETS_AT = PACKET_FIXED_LEN  # MultiFDPacket_t.offset[]: normal pages, then zero pages
SIZE_OFFSET = 20          # MultiFDPacket_t.next_packet_size
PAGES_PER_PACKET = 128   # MULTIFD_PACKET_SIZE / 4 KiB target pages
MAX_PAYLOAD = 64 << 20

KINDS = ("flip", "truncate", "reset", "duplicate", "reorder", "replace", "replay", "length",
         "drop", "drop-last", "offset", "zero-list", "zero-only", "delta", "dedup")
FLAG_SYNC = 1             # MULTIFD_FLAG_SYNC
FINAL_IDLE_S = 1.0        # drop-last: a sync followed by this much silence is the last


class Injector:
    """Which data packet to break and how; shared by all channels of a trial.

    Data packets are counted over all channels in the order the proxy sees
    them; the `trigger`-th one (1-based) is broken.  Kinds that need a
    partner packet (reorder, replay) break the first suitable packet at or
    after the trigger.  `fired` describes what was done, or is None.

    "drop-last" ignores the trigger: it waits for arm_final().
    """

    def __init__(self, kind, trigger, seed):
        if kind not in KINDS and kind != "none":
            raise ValueError(f"unknown fault kind {kind!r}")
        self.kind = kind
        self.trigger = trigger
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.seen = 0
        self.fired = None
        self.final = threading.Event()

    def arm_final(self):
        """The next sync of every channel is the final one (drop-last)."""
        self.final.set()

    def armed(self):
        """Counts one data packet; True when a fault is due and not yet done."""
        with self.lock:
            self.seen += 1
            return self.kind != "none" and self.fired is None and self.seen >= self.trigger

    def record(self, channel, packet_num, **detail):
        with self.lock:
            if self.fired is None:
                self.fired = dict(kind=self.kind, channel=channel, packet=self.seen,
                                  packet_num=packet_num, later_data=0, later_syncs=0, **detail)
                return True
            return False

    def after(self, channel, sync):
        """Counts a packet forwarded on `channel` after the fault fired there."""
        with self.lock:
            f = self.fired
            if f is not None and f["channel"] == channel:
                f["later_syncs" if sync else "later_data"] += 1


class StreamCut(Exception):
    """The fault ends the connection: "truncate" (the destination sees the
    stream end) or "reset" (both ends are cut at once)."""

    def __init__(self, mode):
        super().__init__(mode)
        self.mode = mode


def inj_kind(injector):
    return injector.kind


def _be32(buf, off):
    return struct.unpack_from(">I", buf, off)[0]


def relay_multifd(read_exact, write, injector, pages_per_packet=PAGES_PER_PACKET, on_sync=None,
                  idle=None):
    """Relays one multifd channel from `read_exact(n)` to `write(bytes)`.

    `idle(seconds)` says whether nothing arrives on the channel within that
    time (drop-last); without it every sync counts as the last.

    `on_sync()`, when given, is called before each sync packet is forwarded
    (where FaultProxy.hold = "sync" stops delivery).

    `pages_per_packet` is QEMU's multifd_ram_page_count(): 512 KiB of
    target pages, 128 for 4 KiB pages.

    `read_exact` returns fewer than n bytes only at end of stream; whatever
    arrived is forwarded and the function returns.  Raises StreamCut when a
    truncate fault wants the connection closed.  Returns the channel id.
    """
    init = read_exact(INIT_LEN)
    write(init)
    if len(init) < INIT_LEN:
        return None
    channel = init[INIT_ID_OFFSET]
    last_payload = None
    held = None  # (packet, payload) delayed by a reorder fault
    last = None  # (packet, payload) held by drop-last until the next packet
    data_pages = None  # (ramblock, normal offsets) of the last data packet (zero-only)

    def flush_held():
        nonlocal held, last
        if last is not None:
            write(last[0] + last[1])
            injector.after(channel, False)
            last = None
        if held is not None:
            write(held[0] + held[1])
            held = None

    while True:
        hdr = read_exact(HDR_LEN)
        if len(hdr) < HDR_LEN:
            flush_held()
            write(hdr)
            return channel
        flags = _be32(hdr, 8)
        if flags & FLAG_DEVICE_STATE:
            rest = read_exact(DEVICE_STATE_LEN - HDR_LEN)
            size = _be32(hdr + rest, DEVICE_STATE_LEN - 4) if len(rest) == DEVICE_STATE_LEN - HDR_LEN else 0
            payload = read_exact(min(size, MAX_PAYLOAD))
            flush_held()
            write(hdr + rest + payload)
            if len(rest) < DEVICE_STATE_LEN - HDR_LEN or len(payload) < size:
                return channel
            continue
        # Every RAM packet has the same length, whatever it carries (a sync
        # packet even says pages_alloc 0): the receiver's packet_len.
        rest_len = PACKET_FIXED_LEN - HDR_LEN + 8 * pages_per_packet
        rest = read_exact(rest_len)
        packet = bytearray(hdr + rest)
        if len(rest) < rest_len:
            flush_held()
            write(bytes(packet))
            return channel
        normal = _be32(packet, NORMAL_OFFSET)
        size = _be32(packet, SIZE_OFFSET)
        payload = b""
        if size > 0:
            payload = read_exact(min(size, MAX_PAYLOAD))
            if len(payload) < size:
                flush_held()
                write(bytes(packet) + payload)
                return channel
        if normal == 0:
            # A sync or zero-page packet: never moved across, broken only
            # by zero-only.
            sync = bool(flags & FLAG_SYNC)
            if not sync and injector.kind == "zero-only" and injector.armed():
                packet = _move_zero_page(injector, channel, packet, len(payload), data_pages)
            if sync and last is not None and injector.final.is_set() and \
                    (idle is None or idle(FINAL_IDLE_S)):
                # drop-last: the held packet was the last before the final sync.
                lp = last[0]
                if injector.record(channel, struct.unpack_from(">Q", lp, 24)[0],
                                   payload_len=len(last[1]),
                                   pages=_be32(lp, NORMAL_OFFSET)):
                    last = None
            flush_held()
            if sync and on_sync is not None:
                on_sync()
            write(bytes(packet) + payload)
            injector.after(channel, sync)
            continue
        packet_num = struct.unpack_from(">Q", packet, 24)[0]
        if injector.kind == "zero-only":
            data_pages = (bytes(packet[RAMBLOCK_AT:RAMBLOCK_AT + 256]),
                          [struct.unpack_from(">Q", packet, OFFSETS_AT + 8 * i)[0]
                           for i in range(normal)])
            flush_held()
            write(bytes(packet) + payload)
            injector.after(channel, False)
            continue
        if injector.kind == "drop-last":
            injector.armed()  # counts it
            flush_held()
            if injector.final.is_set() and injector.fired is None:
                last = (bytes(packet), payload)
            else:
                write(bytes(packet) + payload)
                injector.after(channel, False)
            continue
        out = _apply(injector, channel, packet_num, packet, payload, last_payload, held)
        if out == "hold":
            held = (bytes(packet), payload)
        elif isinstance(out, tuple) and out[0] == "swap":
            write(bytes(packet) + payload)
            injector.record(channel, struct.unpack_from(">Q", held[0], 24)[0],
                            payload_len=len(held[1]), overtaken_by=packet_num)
            flush_held()
        elif isinstance(out, tuple) and out[0] == "cut":
            flush_held()
            write(out[1])
            raise StreamCut(inj_kind(injector))
        elif out is None:
            flush_held()  # dropped
        else:
            flush_held()
            write(out)
            injector.after(channel, False)
        last_payload = payload


def _apply(inj, channel, packet_num, packet, payload, last_payload, held):
    """What to send for one data packet: bytes, None (nothing), "hold",
    ("swap",), ("cut", bytes)."""
    if held is not None and inj.fired is None:
        # The held packet goes after this one: the reorder completes.
        return ("swap",)
    if not inj.armed():
        return bytes(packet) + payload
    rng = inj.rng
    kind = inj.kind
    n = len(payload)
    if kind == "flip":
        at = rng.randrange(n)
        bit = rng.randrange(8)
        p = bytearray(payload)
        p[at] ^= 1 << bit
        inj.record(channel, packet_num, offset=at, bit=bit, payload_len=n)
        return bytes(packet) + bytes(p)
    if kind in ("truncate", "reset"):
        keep = rng.randrange(n)
        inj.record(channel, packet_num, kept=keep, payload_len=n)
        return ("cut", bytes(packet) + payload[:keep])
    if kind == "duplicate":
        inj.record(channel, packet_num, payload_len=n)
        return (bytes(packet) + payload) * 2
    if kind == "reorder":
        # Recorded when the next data packet overtakes it; a sync packet
        # first flushes it unchanged and the next data packet is held.
        return "hold"
    if kind == "replace":
        inj.record(channel, packet_num, payload_len=n)
        return bytes(packet) + rng.randbytes(n)
    if kind == "replay":
        if last_payload is None or last_payload == payload:
            # Nothing older on this channel yet: let the next packet do it.
            with inj.lock:
                inj.trigger = inj.seen + 1
            return bytes(packet) + payload
        p = bytearray(packet)
        struct.pack_into(">I", p, SIZE_OFFSET, len(last_payload))
        inj.record(channel, packet_num, payload_len=n, replayed_len=len(last_payload))
        return bytes(p) + last_payload
    if kind == "drop":
        inj.record(channel, packet_num, payload_len=n, pages=_be32(packet, NORMAL_OFFSET))
        return None
    if kind in ("offset", "zero-list"):
        return _move_page(inj, channel, packet_num, packet, payload)
    if kind in ("delta", "dedup"):
        spans = tag_spans(payload, DELTA_TAGS if kind == "delta" else DEDUP_TAGS)
        if not spans:
            with inj.lock:
                inj.trigger = inj.seen + 1
            return bytes(packet) + payload
        page, start, length = spans[rng.randrange(len(spans))]
        at = start + rng.randrange(length)
        bit = rng.randrange(8)
        p = bytearray(payload)
        p[at] ^= 1 << bit
        if kind == "delta":
            where = {"in_base_hash": at - start < DELTA_BASE_HASH_LEN}
        else:
            where = {"in_source_offset": at - start < DEDUP_OFFSET_LEN}
        inj.record(channel, packet_num, page=page, offset=at, bit=bit, payload_len=n, **where)
        return bytes(packet) + bytes(p)
    if kind == "length":
        choice = rng.randrange(3)
        if choice == 0:
            new = n + rng.randint(1, 4096)
        elif choice == 1:
            new = max(0, n - rng.randint(1, n))
        else:
            new = rng.randrange(1 << 32)
        if new == n:
            new = n + 1
        p = bytearray(packet)
        struct.pack_into(">I", p, SIZE_OFFSET, new)
        inj.record(channel, packet_num, payload_len=n, announced=new)
        return bytes(p) + payload
    raise ValueError(kind)


FRAME_MAGIC = b"MCBC"
FRAME_HEADER_LEN = 32
DELTA_TAGS = (0x40, 0x41)  # delta-sparse, delta-lz4 (docs/FORMAT.md §3.4)
# A zstd member's entry holds its head's index, not a length: no payload.
ZSTD_MEMBER_TAG = 0x43
DELTA_BASE_HASH_LEN = 8
DEDUP_TAGS = (0x44,)  # dedup reference (docs/FORMAT.md §3.5)
DEDUP_OFFSET_LEN = 8


def tag_spans(payload, tags):
    """(page, offset, length) of the payload of every page whose tag is in
    `tags` in a cbc frame (docs/FORMAT.md §1: a 32-byte header, a 4-byte
    entry per page, the payloads in table order); [] for anything else."""
    if len(payload) < FRAME_HEADER_LEN or payload[:4] != FRAME_MAGIC:
        return []
    n = struct.unpack_from("<H", payload, 6)[0]
    at = FRAME_HEADER_LEN + 4 * n
    if at > len(payload):
        return []
    spans = []
    for i in range(n):
        e = struct.unpack_from("<I", payload, FRAME_HEADER_LEN + 4 * i)[0]
        tag, length = e >> 24, e & 0xFFFFFF
        if tag == ZSTD_MEMBER_TAG:
            length = 0
        if tag in tags and length > 0 and at + length <= len(payload):
            spans.append((i, at, length))
        at += length
    return spans


def _move_page(inj, channel, packet_num, packet, payload):
    """The header faults: the packet names a page of its block that it did
    not carry.  "offset" swaps the offsets of two of its normal pages;
    "zero-list" makes one of its zero pages name a normal page's place.
    Every offset stays inside the block, so QEMU's own range check passes;
    only the frame's binding to its header can notice.  A packet without
    two distinct normal offsets (or without a zero page) passes the fault
    on to the next data packet."""
    normal = _be32(packet, NORMAL_OFFSET)
    zero = _be32(packet, ZERO_OFFSET)
    offs = [struct.unpack_from(">Q", packet, OFFSETS_AT + 8 * i)[0] for i in range(normal + zero)]
    p = bytearray(packet)
    if inj.kind == "offset":
        pairs = [(i, j) for i in range(normal) for j in range(i + 1, normal) if offs[i] != offs[j]]
        if pairs:
            i, j = pairs[inj.rng.randrange(len(pairs))]
            struct.pack_into(">Q", p, OFFSETS_AT + 8 * i, offs[j])
            struct.pack_into(">Q", p, OFFSETS_AT + 8 * j, offs[i])
            inj.record(channel, packet_num, payload_len=len(payload), swapped=(offs[i], offs[j]))
            return bytes(p) + payload
    elif zero > 0 and normal > 0:
        k = normal + inj.rng.randrange(zero)
        new = offs[inj.rng.randrange(normal)]
        struct.pack_into(">Q", p, OFFSETS_AT + 8 * k, new)
        inj.record(channel, packet_num, payload_len=len(payload), zero_was=offs[k], zero_now=new)
        return bytes(p) + payload
    with inj.lock:
        inj.trigger = inj.seen + 1
    return bytes(packet) + payload


def _move_zero_page(inj, channel, packet, payload_len, data_pages):
    """zero-only: one zero page of a packet that carries nothing else names
    instead a normal page of the channel's last data packet, when that was
    of the same block (a page the destination holds data in); returns the
    packet.  Without such a page the fault passes on."""
    zero = _be32(packet, ZERO_OFFSET)
    offs = [struct.unpack_from(">Q", packet, OFFSETS_AT + 8 * i)[0] for i in range(zero)]
    block = bytes(packet[RAMBLOCK_AT:RAMBLOCK_AT + 256])
    targets = [o for o in (data_pages[1] if data_pages and data_pages[0] == block else ())
               if o not in offs]
    if not offs or not targets:
        with inj.lock:
            inj.trigger = inj.seen + 1
        return packet
    k = inj.rng.randrange(zero)
    new = targets[inj.rng.randrange(len(targets))]
    p = bytearray(packet)
    struct.pack_into(">Q", p, OFFSETS_AT + 8 * k, new)
    inj.record(channel, struct.unpack_from(">Q", packet, 24)[0], payload_len=payload_len,
               zero_was=offs[k], zero_now=new)
    return p


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _shutdown(sock, how):
    try:
        sock.shutdown(how)
    except OSError:
        pass


def _reset(*socks):
    """Closes sockets with a TCP reset, as a direct connection to a peer that
    shut its socket down would answer the next write.

    shutdown() alone is not enough: Linux then keeps accepting the source's
    data into the proxy's receive queue until the window closes, and the
    source blocks in write() for good.  SO_LINGER 0 makes close() send a
    reset; shutdown() first wakes any proxy thread blocked on the socket.
    """
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


class Gate:
    """One direction of one connection: forwards writes with `send`, or,
    once closed, keeps them in order until release() sends them."""

    def __init__(self, send):
        self.send = send
        self.closed = False
        self.pending = []
        self.at_end = None
        self.lock = threading.Lock()

    def end(self, fn):
        """Calls `fn` (closing the stream) now, or after release() when
        writes are held: the end of a stream never overtakes its data."""
        with self.lock:
            if self.closed:
                self.at_end = fn
                return
        fn()

    def close(self):
        with self.lock:
            self.closed = True

    def write(self, data):
        with self.lock:
            if self.closed:
                self.pending.append(data)
                return
        self.send(data)

    def release(self):
        with self.lock:
            self.closed = False
            pending, self.pending = self.pending, []
            at_end, self.at_end = self.at_end, None
            for data in pending:
                self.send(data)
            if at_end is not None:
                at_end()


class FaultProxy:
    """Listens on 127.0.0.1:port and relays to 127.0.0.1:target_port."""

    def __init__(self, target_port, injector, pages_per_packet=PAGES_PER_PACKET):
        self.target_port = target_port
        self.pages_per_packet = pages_per_packet
        self.injector = injector
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.channels = []
        self.errors = []
        self.closed = False
        # None, "sync" or "main": what to hold back (see the module doc).
        self.hold = None
        self.holding = threading.Event()  # set once something is held
        self.gates = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                server.settimeout(None)
            except OSError as e:
                self.errors.append(f"connect to destination: {e}")
                client.close()
                continue
            self.conns += [client, server]
            threading.Thread(target=self._forward, args=(client, server), daemon=True).start()

    def _gate(self, send):
        """A gate for a source -> destination stream."""
        gate = Gate(send)
        self.gates.append(gate)
        return gate

    def _hold_here(self, what):
        """At a point of kind `what` ("sync" or "main"): when the proxy
        holds there, every source -> destination stream stops here."""
        if self.hold == what and not self.holding.is_set():
            for gate in list(self.gates):
                gate.close()
            self.holding.set()

    def release(self):
        """Ends a hold: what was held goes on to the destination, each
        stream on its own thread, as independent connections would: the
        destination may read one only after another delivered its sync.
        Returns the threads."""
        self.hold = None
        self.holding.clear()

        def flush(gate):
            try:
                gate.release()
            except OSError:
                pass
        threads = [threading.Thread(target=flush, args=(g,), daemon=True) for g in list(self.gates)]
        for t in threads:
            t.start()
        return threads

    def _pipe(self, a, b, what=None):
        """Copies a -> b until a ends, then half-closes b.  `what` = "main"
        for the source's main channel, which FaultProxy.hold can hold."""
        gate = self._gate(b.sendall) if what is not None else Gate(b.sendall)
        try:
            while True:
                data = a.recv(1 << 20)
                if not data:
                    break
                if what is not None:
                    self._hold_here(what)
                gate.write(data)
        except OSError:
            _reset(a, b)
            return
        gate.end(lambda: _shutdown(b, socket.SHUT_WR))
        _shutdown(a, socket.SHUT_RD)

    def _watch_destination(self, server, client):
        """Destination -> source of a multifd channel.

        QEMU never sends on a multifd channel towards the source, so the
        destination ending it means it failed or quit.  A direct connection
        would then reset the source's next write; the proxy resets the
        source's connection so it learns of it just as fast.
        """
        try:
            while server.recv(1 << 16):
                pass
        except OSError:
            pass
        _reset(client, server)

    def _forward(self, client, server):
        """Source -> destination: classify the connection, then relay it."""
        magic = _recv_exact(client, 4)
        is_multifd = len(magic) == 4 and struct.unpack(">I", magic)[0] == MULTIFD_MAGIC
        back = self._watch_destination if is_multifd else self._pipe
        threading.Thread(target=back, args=(server, client), daemon=True).start()
        if not is_multifd:
            try:
                server.sendall(magic)
            except OSError:
                _reset(client, server)
                return
            self._pipe(client, server, "main")
            return
        first = [magic]

        def read_exact(n):
            if first:
                head = first.pop()
                return head + _recv_exact(client, n - len(head)) if n > len(head) else head
            return _recv_exact(client, n)

        try:
            gate = self._gate(server.sendall)
            self.channels.append(relay_multifd(
                read_exact, gate.write, self.injector, self.pages_per_packet,
                lambda: self._hold_here("sync"),
                lambda t: not select.select([client], [], [], t)[0]))
        except StreamCut as cut:
            if cut.mode == "reset":
                _reset(client, server)
                return
            # The destination sees its stream end in the middle of a frame;
            # what the source sends after that is swallowed until the
            # destination gives up on the connection (_watch_destination).
            try:
                server.shutdown(socket.SHUT_WR)
                while client.recv(1 << 20):
                    pass
            except OSError:
                pass
            return
        except OSError:
            # The destination closed its end: pass the reset on.
            _reset(client, server)
            return
        gate.end(lambda: _shutdown(server, socket.SHUT_WR))

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass
