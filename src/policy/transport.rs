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
//! Only intervals in which the channel sent raw pages are judged: that is
//! the question (would compressing beat raw?), and a compressing channel
//! limits itself.  Raw intervals are summed until they cover
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

#![forbid(unsafe_code)]

/// Wall time of raw intervals summed before a verdict.  Linux accounts
/// the chrono statistics in jiffies (1–10 ms), so shorter sums are noise.
pub const JUDGE_NS: u64 = 20_000_000;

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
    /// 7, and `tcpi_delivery_rate`, `tcpi_busy_time`, `tcpi_rwnd_limited`
    /// and `tcpi_sndbuf_limited` are native-endian 64-bit integers at byte
    /// offsets 160, 168, 176 and 184.
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

/// Per-channel account of raw intervals.
#[derive(Debug, Clone, Default)]
pub(super) struct Transport {
    last: Option<TransportStats>,
    /// Batches planned since the last sample, and whether all were raw.
    batches_since: u32,
    raw_since: bool,
    /// Summed raw intervals not judged yet: wall, busy and receiver-stalled
    /// nanoseconds.
    wall_ns: u64,
    busy_ns: u64,
    receiver_ns: u64,
    /// The latest verdict and the batch number it was made at.
    verdict: Option<(Bottleneck, u64)>,
    /// Verdicts in a row equal to the latest.
    streak: u32,
    verdicts: u64,
}

impl Transport {
    /// Called once per planned batch: whether it sends every page raw.
    pub(super) fn on_batch(&mut self, raw: bool) {
        self.raw_since = if self.batches_since == 0 {
            raw
        } else {
            self.raw_since && raw
        };
        self.batches_since = self.batches_since.saturating_add(1);
    }

    /// Takes a sample; `batch` is the number of the last planned batch.
    /// The interval since the previous sample counts when every batch
    /// planned in it was raw.
    pub(super) fn on_sample(&mut self, s: TransportStats, batch: u64) {
        let raw = self.batches_since > 0 && self.raw_since;
        self.batches_since = 0;
        let Some(last) = self.last.replace(s) else {
            return;
        };
        let went_back = s.timestamp_ns < last.timestamp_ns
            || s.busy_us < last.busy_us
            || s.receiver_limited_us < last.receiver_limited_us;
        if went_back {
            self.wall_ns = 0;
            self.busy_ns = 0;
            self.receiver_ns = 0;
            return;
        }
        if !raw {
            return;
        }
        let wall = s.timestamp_ns - last.timestamp_ns;
        // Jiffies accounting can exceed the wall time of a short interval.
        let busy = (s.busy_us - last.busy_us).saturating_mul(1000).min(wall);
        let receiver = (s.receiver_limited_us - last.receiver_limited_us)
            .saturating_mul(1000)
            .min(busy);
        self.wall_ns = self.wall_ns.saturating_add(wall);
        self.busy_ns = self.busy_ns.saturating_add(busy);
        self.receiver_ns = self.receiver_ns.saturating_add(receiver);
        if self.wall_ns >= JUDGE_NS {
            let sender = self.wall_ns - self.busy_ns;
            let network = self.busy_ns - self.receiver_ns;
            let verdict = if self.receiver_ns as f64 >= RECEIVER_BOUND * self.wall_ns as f64 {
                Bottleneck::Receiver
            } else if network >= sender {
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
            self.wall_ns = 0;
            self.busy_ns = 0;
            self.receiver_ns = 0;
        }
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
    fn linux_tcp_info_fields_are_read_at_their_uapi_offsets() {
        let mut info = [0u8; 232];
        info[7] = if cfg!(target_endian = "little") {
            0x01
        } else {
            0x80
        };
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
        assert_eq!((t.wall_ns, t.busy_ns, t.receiver_ns), (0, 0, 0));
    }
}
