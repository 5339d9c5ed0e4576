//! What limits a channel's connection: the sender, the receiver or the
//! network.
//!
//! Compression trades CPU for bytes, so it can only shorten a migration
//! whose bytes are the bottleneck.  Whether they are is something a channel
//! cannot see from its own clock (`docs/benchmark.md`: on a busy host every
//! channel waits for a CPU, and a wait for a CPU looks like a wait for the
//! link), but the kernel keeps the account per TCP connection.  Linux's
//! `TCP_INFO` "chrono" statistics give the time the connection had data
//! queued or in flight (busy), and within that, the time it was stalled by
//! the receiver's window (the destination did not read fast enough) or by
//! the send buffer.  Outside busy time the sender had nothing to send: the
//! channel, or the migration thread that feeds it, was the limit.
//!
//! Intervals in which the channel sent raw pages answer the question
//! "would compressing beat raw?".  They are summed until they cover
//! [`JUDGE_NS`] of wall time; then the verdict is
//! - receiver, when the receiver's window stalled the connection for at
//!   least [`RECEIVER_BOUND`] of that time: the destination is the limit,
//!   and decoding costs it at least what taking a raw page does, so raw is
//!   the fastest there is;
//! - else network, when the connection was busy (and not stalled by the
//!   receiver) for longer than it was idle: the link carries bytes as fast
//!   as it can, fewer would go faster, and the cost model decides whether
//!   a codec is fast enough;
//! - else sender: the link waits for pages even raw; compressing would
//!   only add work before them.
//!
//! Intervals in which every batch compressed answer the opposite question,
//! "could raw beat compressing?", and they answer it without sending a raw
//! page.  When the compressed bytes alone keep the connection busy on the
//! network for [`SATURATED_BUSY`] of the time, and the kernel's delivery
//! rate samples say the sender kept the link full (not app-limited), the
//! link is the limit: raw pages, several times the bytes over the same
//! link, can only be slower, so no raw probe is worth its bytes (on a
//! 1 Gbit/s link a probe pushed 16 raw batches into socket buffers before
//! one of them looked slow).  Such an interval also measures the link: the
//! bytes the peer acknowledged over its wall time are this connection's
//! share of it, known after [`JUDGE_NS`] instead of after two 100 ms
//! migration statistics.
//!
//! Raw intervals also give the link's rate where the wire rate cannot: the
//! bytes the peer acknowledged over the time the connection was busy.
//! While busy the connection moved bytes no faster than the path (link
//! and receiver) allows, so the path is at least that fast, and unlike the
//! wire rate over wall time this figure does not fall when the channel
//! waits for pages or for a CPU (on a small host the TCG vCPU, the
//! migration thread and the destination share the cores): the connection
//! is idle then, not slow.  Only raw intervals count: raw pages are the
//! most bytes a channel sends, so a connection that idles under them has
//! a link to spare; compressed pages leave a slow link idle too, and there
//! the jiffies in busy time made the figure up to 3x the link (at 1 Gbit/s
//! that sent pages to LZ instead of zstd).

#![forbid(unsafe_code)]

/// Wall time of raw intervals summed before a verdict.  Linux accounts
/// the chrono statistics in jiffies (1–10 ms), so shorter sums are noise.
pub const JUDGE_NS: u64 = 20_000_000;

/// Busy time of raw intervals summed before the bytes per busy second
/// are taken.  Linux
/// accounts busy time in jiffies (4 ms at Debian's HZ=250), so a
/// connection busy in bursts shorter than a jiffy counts a whole one at
/// some and none at others: the sum is right on average, and two jiffies
/// give a figure within 2x most of the time (a lower bound needs no
/// better to tell a 10 Gbit/s link from a codec's 0.5 GB/s).  A connection
/// busy a tenth of the time reaches it in 80 ms of wall time, where the
/// full [`JUDGE_NS`] would take 200 ms.
pub(super) const BUSY_JUDGE_NS: u64 = 8_000_000;

/// The first figure is taken after one jiffy: until then a channel sends
/// raw pages to measure the link, and on a slow link each jiffy of waiting
/// is another raw batch in the socket buffers (at 1 Gbit/s the wait for two
/// jiffies cost 6–7 raw batches per channel, 3 MB).  A first figure that
/// is off goes with the next one, 8 ms of busy time later.
pub(super) const FIRST_BUSY_JUDGE_NS: u64 = 4_000_000;

/// Share of a compressing interval's wall time the connection must be
/// busy on the network (not held by the receiver) for the link to count as
/// full.  Busy time also holds the wait for the last ACK of each burst, so
/// the bound leaves room for that and for jiffies accounting.
pub(super) const SATURATED_BUSY: f64 = 0.8;

/// Cumulative statistics of one channel's connection, sampled by the
/// caller (in QEMU, with `getsockopt(TCP_INFO)` before each batch).
/// Counters only grow while the connection lives; a sample whose counters
/// went back starts the account over (a new connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Monotonic timestamp of the sample, nanoseconds.
    pub timestamp_ns: u64,
    /// Microseconds the connection had data queued or in flight.
    pub busy_us: u64,
    /// Of those, microseconds stalled by the receiver's window.
    pub receiver_limited_us: u64,
    /// Of those, microseconds stalled by the send buffer.
    pub sndbuf_limited_us: u64,
    /// The kernel's latest delivery rate estimate, bytes/s.
    pub delivery_rate: u64,
    /// Whether that estimate was taken while the sender had too little to
    /// send to fill the link (it is then a lower bound).
    pub delivery_rate_app_limited: bool,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
}

/// Share of raw wall time stalled by the receiver's window from which the
/// receiver is the verdict.  A destination that keeps up never fills the
/// window; on the benchmark host at 10 Gbit/s raw intervals were 20–100 %
/// receiver-limited, the share swinging with the CPU the destination got.
pub const RECEIVER_BOUND: f64 = 0.2;

/// Length of Linux's `struct tcp_info` up to `tcpi_sndbuf_limited`
/// (kernel 4.10 and later).
pub const LINUX_TCP_INFO_MIN_LEN: usize = 192;

impl TransportStats {
    /// Reads the fields of a Linux `struct tcp_info`, as returned by
    /// `getsockopt(fd, IPPROTO_TCP, TCP_INFO, ...)`, taken at
    /// `timestamp_ns`.  `info` holds the bytes the kernel wrote; `None`
    /// when they are fewer than [`LINUX_TCP_INFO_MIN_LEN`] (an older
    /// kernel).  The layout is the kernel's UAPI, which only ever grows at
    /// its end: `tcpi_delivery_rate_app_limited` is the first bit of byte
    /// 7, and `tcpi_bytes_acked`, `tcpi_delivery_rate`, `tcpi_busy_time`,
    /// `tcpi_rwnd_limited` and `tcpi_sndbuf_limited` are native-endian
    /// 64-bit integers at byte offsets 120, 160, 168, 176 and 184.
    pub fn from_linux_tcp_info(info: &[u8], timestamp_ns: u64) -> Option<TransportStats> {
        if info.len() < LINUX_TCP_INFO_MIN_LEN {
            return None;
        }
        let u64_at = |offset: usize| {
            info.get(offset..offset + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes)
        };
        // A one-bit field: the compiler allocates bit-fields from the
        // least significant bit on little-endian targets, from the most
        // significant one on big-endian targets.
        let app_limited_bit = if cfg!(target_endian = "little") {
            0x01
        } else {
            0x80
        };
        Some(TransportStats {
            timestamp_ns,
            busy_us: u64_at(168)?,
            receiver_limited_us: u64_at(176)?,
            sndbuf_limited_us: u64_at(184)?,
            delivery_rate: u64_at(160)?,
            delivery_rate_app_limited: info.get(7)? & app_limited_bit != 0,
            bytes_acked: u64_at(120)?,
        })
    }
}

/// What limited a channel while it sent raw pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bottleneck {
    /// The link (or the send buffer): fewer bytes would go faster.
    Network,
    /// The destination's reads.
    Receiver,
    /// The sender had nothing to send.
    Sender,
}

/// A measurement and the batch number it was made at.  Plain fields, not
/// an `Option` of a tuple: an optimised read of an empty `Option` may look
/// at its uninitialised payload before the tag (valgrind flags it).
#[derive(Debug, Clone, Copy, Default)]
struct Stamped {
    value: f64,
    at: u64,
    made: bool,
}

impl Stamped {
    fn new(value: f64, at: u64) -> Stamped {
        Stamped {
            value,
            at,
            made: true,
        }
    }

    /// The value, if made at most `max_age` batches before `batch`.
    fn within(&self, batch: u64, max_age: u64) -> Option<f64> {
        (self.made && batch.saturating_sub(self.at) <= max_age).then_some(self.value)
    }
}

/// Sums over the intervals of one kind not judged yet.
#[derive(Debug, Clone, Copy, Default)]
struct Account {
    /// Wall, busy and receiver-stalled nanoseconds.
    wall_ns: u64,
    busy_ns: u64,
    receiver_ns: u64,
    /// Bytes the peer acknowledged.
    acked: u64,
    /// Samples that closed an interval, and those whose delivery rate was
    /// app-limited.
    samples: u32,
    app_limited: u32,
}

impl Account {
    /// Adds one interval from sample `last` to sample `s`.
    fn add(&mut self, last: &TransportStats, s: &TransportStats) {
        let wall = s.timestamp_ns - last.timestamp_ns;
        // Jiffies accounting can exceed the wall time of a short interval.
        // The clamp also drops most of a 4 ms step that lands in an
        // interval of 0.2-3 ms (a 10 Gbit/s channel's), so such channels
        // count a fraction of their busy time; counting the steps in full
        // was measured slower at 10 Gbit/s (`docs/DESIGN.md` §4, "Host
        // stalls").
        let busy = (s.busy_us - last.busy_us).saturating_mul(1000).min(wall);
        let receiver = (s.receiver_limited_us - last.receiver_limited_us)
            .saturating_mul(1000)
            .min(busy);
        self.wall_ns = self.wall_ns.saturating_add(wall);
        self.busy_ns = self.busy_ns.saturating_add(busy);
        self.receiver_ns = self.receiver_ns.saturating_add(receiver);
        self.acked = self
            .acked
            .saturating_add(s.bytes_acked.saturating_sub(last.bytes_acked));
        self.samples = self.samples.saturating_add(1);
        self.app_limited = self
            .app_limited
            .saturating_add(u32::from(s.delivery_rate_app_limited));
    }

    /// Busy time not held by the receiver.
    fn network_ns(&self) -> u64 {
        self.busy_ns - self.receiver_ns
    }

    /// The link's bytes/s for this connection, when the account shows the
    /// link full: busy on the network for [`SATURATED_BUSY`] of the time,
    /// at most half the delivery rate samples app-limited, and something
    /// acknowledged (busy with nothing acknowledged is a stalled
    /// acknowledgement path on a starved host, not a link of 0 bytes/s).
    fn link_share(&self) -> Option<f64> {
        let full = self.network_ns() as f64 >= SATURATED_BUSY * self.wall_ns as f64
            && 2 * self.app_limited <= self.samples
            && self.acked > 0;
        (full && self.wall_ns > 0).then(|| self.acked as f64 * 1e9 / self.wall_ns as f64)
    }
}

/// Per-channel account of the connection's intervals.
#[derive(Debug, Clone, Default)]
pub(super) struct Transport {
    last: Option<TransportStats>,
    /// Batches planned since the last sample, whether all were raw, and
    /// whether none was.
    batches_since: u32,
    raw_since: bool,
    compressed_since: bool,
    /// Raw and compressing intervals not judged yet.
    raw: Account,
    compressed: Account,
    /// The latest verdict of raw intervals and the batch number it was
    /// made at.
    verdict: Option<(Bottleneck, u64)>,
    /// Verdicts in a row equal to the latest.
    streak: u32,
    verdicts: u64,
    /// The share of wall time the latest judged compressing intervals
    /// were busy on the network.
    compressed_busy: Stamped,
    /// The latest link share measured while the link was full (bytes/s).
    share: Stamped,
    /// The bytes/s the peer acknowledged over the latest judged
    /// compressing intervals, full or not.
    delivered: Stamped,
    /// The raw intervals since the last busy rate, and the latest busy
    /// rate: bytes acknowledged per second busy.
    busy: Account,
    busy_rate: Stamped,
    /// Bytes the channel wrote since the connection's first sample, the
    /// peer's acknowledged count then, the latest batch's bytes, how far
    /// the previous sample found the link behind when that was more than
    /// its latest batch, and whether the link fell behind for good (see
    /// [`Transport::backlogged`]).
    written: u64,
    acked_base: u64,
    last_written: u64,
    behind: Option<u64>,
    backlogged: bool,
}

impl Transport {
    /// Called once per planned batch: whether it sends every page raw.
    pub(super) fn on_batch(&mut self, raw: bool) {
        if self.batches_since == 0 {
            self.raw_since = raw;
            self.compressed_since = !raw;
        } else {
            self.raw_since &= raw;
            self.compressed_since &= !raw;
        }
        self.batches_since = self.batches_since.saturating_add(1);
    }

    /// Takes a sample; `batch` is the number of the last planned batch.
    /// The interval since the previous sample counts when every batch
    /// planned in it was raw, or when none was.
    pub(super) fn on_sample(&mut self, s: TransportStats, batch: u64) {
        let planned = self.batches_since > 0;
        let (raw, compressed) = (planned && self.raw_since, planned && self.compressed_since);
        self.batches_since = 0;
        let Some(last) = self.last.replace(s) else {
            self.acked_base = s.bytes_acked;
            self.written = 0;
            self.behind = None;
            return;
        };
        let went_back = s.timestamp_ns < last.timestamp_ns
            || s.busy_us < last.busy_us
            || s.receiver_limited_us < last.receiver_limited_us
            || s.bytes_acked < last.bytes_acked;
        if went_back {
            self.raw = Account::default();
            self.compressed = Account::default();
            self.busy = Account::default();
            self.acked_base = s.bytes_acked;
            self.written = 0;
            self.behind = None;
            return;
        }
        let acked = s.bytes_acked - self.acked_base;
        let behind = self.written.saturating_sub(acked);
        if behind > self.last_written {
            if self.behind.is_some_and(|before| behind > before) {
                self.backlogged = true;
            }
            self.behind = Some(behind);
        } else {
            self.behind = None;
        }
        if raw {
            self.raw.add(&last, &s);
            if self.raw.wall_ns >= JUDGE_NS {
                self.judge_raw(batch);
            }
            self.busy.add(&last, &s);
            self.judge_busy(batch);
        } else if compressed {
            self.compressed.add(&last, &s);
            if self.compressed.wall_ns >= JUDGE_NS {
                let a = self.compressed;
                self.compressed_busy =
                    Stamped::new(a.network_ns() as f64 / a.wall_ns as f64, batch);
                self.delivered = Stamped::new(a.acked as f64 * 1e9 / a.wall_ns as f64, batch);
                if let Some(rate) = a.link_share() {
                    self.share = Stamped::new(rate, batch);
                }
                self.compressed = Account::default();
            }
        }
    }

    /// Takes the busy rate once the raw intervals summed enough busy time.
    fn judge_busy(&mut self, batch: u64) {
        let enough = if self.busy_rate.made {
            BUSY_JUDGE_NS
        } else {
            FIRST_BUSY_JUDGE_NS
        };
        if self.busy.busy_ns >= enough {
            // A connection busy half the time or more is near its link
            // share over wall time already, and that is an exact lower
            // bound, where jiffies can inflate the busy time's figure.  The
            // busy time is for connections that idle.
            let a = self.busy;
            let time = if 2 * a.busy_ns >= a.wall_ns {
                a.wall_ns
            } else {
                a.busy_ns
            };
            self.busy_rate = Stamped::new(a.acked as f64 * 1e9 / time as f64, batch);
            self.busy = Account::default();
        }
    }

    fn judge_raw(&mut self, batch: u64) {
        let a = self.raw;
        let sender = a.wall_ns - a.busy_ns;
        let verdict = if a.receiver_ns as f64 >= RECEIVER_BOUND * a.wall_ns as f64 {
            Bottleneck::Receiver
        } else if a.network_ns() >= sender {
            Bottleneck::Network
        } else {
            Bottleneck::Sender
        };
        self.streak = match self.verdict {
            Some((last, _)) if last == verdict => self.streak.saturating_add(1),
            _ => 1,
        };
        self.verdict = Some((verdict, batch));
        self.verdicts += 1;
        if let Some(rate) = a.link_share() {
            self.share = Stamped::new(rate, batch);
        }
        self.raw = Account::default();
    }

    /// Counts the bytes of a batch the channel is about to write.
    pub(super) fn on_written(&mut self, bytes: u64) {
        self.written = self.written.saturating_add(bytes);
        self.last_written = bytes;
    }

    /// Whether two samples in a row found more of the channel's bytes
    /// unacknowledged than its latest batch, the second more than the
    /// first: the link did not take one batch before the next was written,
    /// and fell further behind.  Byte counters, not jiffies.  A single
    /// sample is not enough: instrumented at 10 Gbit/s on a host whose
    /// cores were all busy, raw batches of 525 kB were 0-559 kB behind,
    /// up and down (acknowledgements stall, then catch up), and one of
    /// them ended a channel's raw start (it then compressed blind); at
    /// 1 Gbit/s they were 439, 605 and 566, 898 kB behind on two channels,
    /// growing with every batch.
    pub(super) fn backlogged(&self) -> bool {
        self.backlogged
    }

    /// The latest verdict, if made at most `max_age` batches before
    /// `batch`.
    pub(super) fn verdict(&self, batch: u64, max_age: u64) -> Option<Bottleneck> {
        self.verdict
            .filter(|&(_, at)| batch.saturating_sub(at) <= max_age)
            .map(|(v, _)| v)
    }

    /// How many verdicts in a row, the latest included, were the latest.
    pub(super) fn streak(&self) -> u32 {
        self.streak
    }

    /// Whether the connection has been sampled at all.
    pub(super) fn sampled(&self) -> bool {
        self.last.is_some()
    }

    /// The share of wall time compressed pages kept the connection busy
    /// on the network, by the latest judgement of compressing intervals,
    /// if one was made at most `max_age` batches before `batch`.
    pub(super) fn compressed_busy(&self, batch: u64, max_age: u64) -> Option<f64> {
        self.compressed_busy.within(batch, max_age)
    }

    /// The connection's share of the link (bytes/s), measured while the
    /// link was full at most `max_age` batches before `batch`.
    pub(super) fn link_share(&self, batch: u64, max_age: u64) -> Option<f64> {
        self.share.within(batch, max_age)
    }

    /// The bytes/s the peer acknowledged over the latest judged
    /// compressing intervals, if judged at most `max_age` batches before
    /// `batch`: what this channel's compressed pages got through, a lower
    /// bound of its link share.
    pub(super) fn delivered(&self, batch: u64, max_age: u64) -> Option<f64> {
        self.delivered.within(batch, max_age)
    }

    /// The bytes/s the peer acknowledged per second the connection was
    /// busy in raw intervals, over the latest [`BUSY_JUDGE_NS`] of such
    /// time ([`FIRST_BUSY_JUDGE_NS`] for the first figure; over their wall
    /// time when busy half of it or more),
    /// if that ended at most `max_age` batches before `batch`: the link's
    /// rate however long the channel waited between its writes.
    pub(super) fn busy_rate(&self, batch: u64, max_age: u64) -> Option<f64> {
        self.busy_rate.within(batch, max_age)
    }

    /// Verdicts made so far.
    #[cfg(test)]
    pub(super) fn verdicts(&self) -> u64 {
        self.verdicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, busy_ms: u64, receiver_ms: u64) -> TransportStats {
        TransportStats {
            timestamp_ns: ms * 1_000_000,
            busy_us: busy_ms * 1000,
            receiver_limited_us: receiver_ms * 1000,
            ..TransportStats::default()
        }
    }

    /// Feeds one interval ending at `end`: a batch planned (`raw` or not),
    /// then the sample.
    fn interval(t: &mut Transport, raw: bool, end: TransportStats, batch: u64) {
        t.on_batch(raw);
        t.on_sample(end, batch);
    }

    #[test]
    fn the_busy_rate_counts_bytes_per_second_busy_under_raw_pages() {
        let mut t = Transport::default();
        let at = |ms: u64, busy: u64, receiver: u64, acked: u64| TransportStats {
            bytes_acked: acked,
            ..sample(ms, busy, receiver)
        };
        t.on_sample(at(0, 0, 0, 0), 0);
        // 100 ms of raw pages, 3 ms busy: not yet enough.
        interval(&mut t, true, at(100, 3, 1, 3_000_000), 1);
        assert_eq!(t.busy_rate(1, 0), None);
        // A mixed interval does not count.
        t.on_batch(true);
        t.on_batch(false);
        t.on_sample(at(200, 9, 1, 5_000_000), 3);
        assert_eq!(t.busy_rate(3, 0), None);
        // One more busy ms of raw pages (the receiver's time included):
        // the first figure needs 4 ms, 6 MB in 4 ms.
        interval(&mut t, true, at(300, 10, 2, 8_000_000), 4);
        assert_eq!(t.busy_rate(4, 0), Some(1.5e9));
        // It stands until measured again, over 8 ms from then on, and only
        // the new intervals count.
        interval(&mut t, true, at(350, 12, 2, 9_000_000), 5);
        assert_eq!(t.busy_rate(100, u64::MAX), Some(1.5e9));
        interval(&mut t, true, at(400, 18, 2, 24_000_000), 6);
        assert_eq!(t.busy_rate(6, 0), Some(2e9));
        // A connection that went back starts over.
        interval(&mut t, true, at(410, 0, 0, 0), 7);
        interval(&mut t, true, at(420, 7, 0, 1_000_000), 8);
        assert_eq!(t.busy_rate(8, u64::MAX), Some(2e9));
        // Busy 9 ms of 10: the rate over wall time, an exact lower bound.
        let mut t = Transport::default();
        t.on_sample(at(0, 0, 0, 0), 0);
        interval(&mut t, true, at(10, 9, 0, 5_000_000), 1);
        assert_eq!(t.busy_rate(1, 0), Some(5e8));
    }

    #[test]
    fn a_link_a_batch_behind_the_writes_is_backlogged() {
        let mut t = Transport::default();
        let at = |acked: u64| TransportStats {
            bytes_acked: acked,
            ..TransportStats::default()
        };
        t.on_sample(at(1_000), 0);
        // 125, 450 and 924 kB behind: more than a batch once.  Then 49 kB:
        // the link caught up after a stall.  Then 544 kB, more than a
        // batch once again, and 1,049 kB: further behind, backlogged.
        let steps = [
            (400_000, false),
            (600_000, false),
            (650_000, false),
            (2_050_000, false),
            (2_080_000, false),
            (2_100_000, true),
        ];
        for (acked, behind) in steps {
            t.on_batch(true);
            t.on_written(524_832);
            t.on_sample(at(1_000 + acked), 1);
            assert_eq!(t.backlogged(), behind, "{acked}");
        }
    }

    #[test]
    fn linux_tcp_info_fields_are_read_at_their_uapi_offsets() {
        let mut info = [0u8; 232];
        info[7] = if cfg!(target_endian = "little") {
            0x01
        } else {
            0x80
        };
        info[120..128].copy_from_slice(&987_654_321u64.to_ne_bytes());
        info[160..168].copy_from_slice(&1_250_000_000u64.to_ne_bytes());
        info[168..176].copy_from_slice(&7_000u64.to_ne_bytes());
        info[176..184].copy_from_slice(&5_000u64.to_ne_bytes());
        info[184..192].copy_from_slice(&300u64.to_ne_bytes());
        let s = TransportStats::from_linux_tcp_info(&info, 42).expect("long enough");
        assert_eq!(
            s,
            TransportStats {
                timestamp_ns: 42,
                busy_us: 7_000,
                receiver_limited_us: 5_000,
                sndbuf_limited_us: 300,
                delivery_rate: 1_250_000_000,
                delivery_rate_app_limited: true,
                bytes_acked: 987_654_321,
            }
        );
        // The other bits of byte 7 (fastopen_client_fail) are not the flag.
        info[7] = 0x06;
        let s = TransportStats::from_linux_tcp_info(&info, 42).expect("long enough");
        assert!(!s.delivery_rate_app_limited);
        assert_eq!(
            TransportStats::from_linux_tcp_info(&info[..LINUX_TCP_INFO_MIN_LEN - 1], 42),
            None
        );
        assert!(TransportStats::from_linux_tcp_info(&info[..LINUX_TCP_INFO_MIN_LEN], 42).is_some());
    }

    #[test]
    fn verdicts_follow_the_shares_of_raw_time() {
        // 10 ms intervals: busy 9, receiver 6 -> receiver 6, network 3,
        // sender 1.
        let mut t = Transport::default();
        t.on_sample(sample(0, 0, 0), 0);
        interval(&mut t, true, sample(10, 9, 6), 1);
        assert_eq!(t.verdict(1, 0), None, "10 ms is too little to judge");
        interval(&mut t, true, sample(20, 18, 12), 2);
        assert_eq!(t.verdict(2, 0), Some(Bottleneck::Receiver));
        // Busy, not held by the receiver: the network.
        interval(&mut t, true, sample(30, 28, 12), 3);
        interval(&mut t, true, sample(40, 38, 12), 4);
        assert_eq!(t.verdict(4, 0), Some(Bottleneck::Network));
        // Idle most of the time: the sender.
        interval(&mut t, true, sample(50, 40, 12), 5);
        interval(&mut t, true, sample(60, 42, 12), 6);
        assert_eq!(t.verdict(6, 0), Some(Bottleneck::Sender));
        assert_eq!(t.streak(), 1);
        interval(&mut t, true, sample(80, 44, 12), 7);
        assert_eq!(t.verdict(7, 0), Some(Bottleneck::Sender));
        assert_eq!(t.streak(), 2);
        // Mostly busy on the link, but a fifth of it stalled by the
        // receiver: the destination already cannot keep up.
        interval(&mut t, true, sample(100, 64, 16), 8);
        assert_eq!(t.verdict(8, 0), Some(Bottleneck::Receiver));
        assert_eq!(t.streak(), 1);
        assert_eq!(t.verdicts(), 5);
        // Verdicts age in batches.
        assert_eq!(t.verdict(70, 62), Some(Bottleneck::Receiver));
        assert_eq!(t.verdict(70, 10), None);
    }

    #[test]
    fn intervals_with_a_compressed_batch_are_not_judged() {
        let mut t = Transport::default();
        t.on_sample(sample(0, 0, 0), 0);
        // Two batches in one interval, one of them compressed.
        t.on_batch(true);
        t.on_batch(false);
        t.on_sample(sample(30, 30, 30), 2);
        interval(&mut t, false, sample(60, 60, 60), 3);
        assert_eq!(t.verdicts(), 0);
        // A sample with no batch planned since says nothing either.
        t.on_sample(sample(90, 90, 90), 3);
        assert_eq!(t.verdicts(), 0);
        interval(&mut t, true, sample(120, 120, 120), 4);
        assert_eq!(t.verdict(4, 0), Some(Bottleneck::Receiver));
    }

    /// A sample at `ms` with `busy_ms` busy, `acked` bytes acknowledged
    /// and the delivery rate `app_limited` or not.
    fn acked(ms: u64, busy_ms: u64, acked: u64, app_limited: bool) -> TransportStats {
        TransportStats {
            bytes_acked: acked,
            delivery_rate_app_limited: app_limited,
            ..sample(ms, busy_ms, 0)
        }
    }

    #[test]
    fn compressing_intervals_that_fill_the_link_measure_it() {
        let mut t = Transport::default();
        assert!(!t.sampled());
        t.on_sample(acked(0, 0, 0, false), 0);
        assert!(t.sampled());
        // 10 ms of 20, then the rest: busy 19 of 20 ms, 2.5 MB acked.
        interval(&mut t, false, acked(10, 10, 1_250_000, false), 1);
        assert_eq!(
            t.compressed_busy(1, 5),
            None,
            "10 ms is too little to judge"
        );
        interval(&mut t, false, acked(20, 19, 2_500_000, false), 2);
        assert_eq!(t.compressed_busy(2, 0), Some(0.95));
        assert_eq!(t.link_share(2, 0), Some(125_000_000.0));
        assert_eq!(t.delivered(2, 0), Some(125_000_000.0));
        // Compressing intervals make no raw verdict.
        assert_eq!(t.verdicts(), 0);
        // Busy a tenth of the time: the link had room, the share stands.
        interval(&mut t, false, acked(40, 21, 3_000_000, true), 3);
        assert_eq!(t.compressed_busy(3, 0), Some(0.1));
        assert_eq!(t.delivered(3, 0), Some(25_000_000.0));
        assert_eq!(t.link_share(3, 1), Some(125_000_000.0));
        assert_eq!(t.link_share(3, 0), None, "ages in batches");
        // Busy all the time but app-limited in most samples: the sender
        // did not keep the link full (a long round trip holds data in
        // flight).
        interval(&mut t, false, acked(47, 28, 3_100_000, true), 4);
        interval(&mut t, false, acked(54, 35, 3_200_000, true), 5);
        interval(&mut t, false, acked(61, 42, 3_300_000, false), 6);
        assert_eq!(t.compressed_busy(6, 0), Some(1.0));
        assert_eq!(t.share.within(2, 0), Some(125_000_000.0));
        // A mixed interval counts for neither kind.
        t.on_batch(true);
        t.on_batch(false);
        t.on_sample(acked(100, 81, 6_000_000, false), 7);
        assert_eq!(t.share.within(2, 0), Some(125_000_000.0));
        // Raw intervals that fill the link measure it too.
        interval(&mut t, true, acked(120, 101, 8_000_000, false), 8);
        assert_eq!(t.verdict(8, 0), Some(Bottleneck::Network));
        assert_eq!(t.link_share(8, 0), Some(100_000_000.0));
        // Busy all the time with nothing acknowledged: a stall, no share.
        interval(&mut t, false, acked(143, 124, 8_000_000, false), 9);
        assert_eq!(t.compressed_busy(9, 0), Some(1.0));
        assert_eq!(t.link_share(9, 0), None);
        assert_eq!(t.link_share(9, 1), Some(100_000_000.0));
    }

    #[test]
    fn counters_that_go_back_start_the_account_over() {
        let mut t = Transport::default();
        t.on_sample(sample(100, 50, 50), 0);
        interval(&mut t, true, sample(115, 65, 65), 1);
        // A new connection: its counters start near zero.  Without the
        // reset the 15 ms above would join the next interval's.
        interval(&mut t, true, sample(120, 1, 0), 2);
        interval(&mut t, true, sample(130, 2, 0), 3);
        assert_eq!(t.verdicts(), 0);
        interval(&mut t, true, sample(140, 3, 0), 4);
        assert_eq!(t.verdict(4, 0), Some(Bottleneck::Sender));
    }

    #[test]
    fn jiffies_accounting_beyond_wall_time_is_clamped() {
        let mut t = Transport::default();
        t.on_sample(sample(0, 0, 0), 0);
        // 25 ms busy in a 20 ms interval, 30 ms of it receiver-limited.
        interval(&mut t, true, sample(20, 25, 30), 1);
        assert_eq!(t.verdict(1, 0), Some(Bottleneck::Receiver));
        assert_eq!((t.raw.wall_ns, t.raw.busy_ns, t.raw.receiver_ns), (0, 0, 0));
    }
}
