//! Sequence-number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream per media line even when the SFU switches what
//! feeds it: another simulcast layer, or a publisher who left and came back. Each switch rebases
//! the input so that sequence numbers continue by one and the RTP clock continues by the wall
//! time that passed.

use std::time::Instant;

/// Rewrites `(sequence number, RTP time)` of packets from a changing source into one stream.
#[derive(Debug)]
pub struct Rewriter {
    clock_rate_hz: u32,
    source: Option<u32>,
    /// Added (wrapping) to the input's extended sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the input's RTP time.
    time_offset: u32,
    /// The highest sequence number sent so far, with its time and when it was sent.
    last: Option<(u64, u32, Instant)>,
}

impl Rewriter {
    pub fn new(clock_rate_hz: u32) -> Self {
        Self {
            clock_rate_hz,
            source: None,
            seq_offset: 0,
            time_offset: 0,
            last: None,
        }
    }

    /// The source (SSRC) currently fed through, if any.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// Maps an input packet from `source` to the output stream. A new source rebases first.
    pub fn rewrite(&mut self, source: u32, seq_in: u64, time_in: u32, now: Instant) -> (u64, u32) {
        if self.source != Some(source) {
            self.rebase(source, seq_in, time_in, now);
        }
        let seq_out = seq_in.wrapping_add(self.seq_offset);
        let time_out = time_in.wrapping_add(self.time_offset);
        if self.last.is_none_or(|(last_seq, _, _)| seq_out > last_seq) {
            self.last = Some((seq_out, time_out, now));
        }
        (seq_out, time_out)
    }

    fn rebase(&mut self, source: u32, seq_in: u64, time_in: u32, now: Instant) {
        let (seq_next, time_next) = match self.last {
            // Continue the stream: one sequence number on, and the RTP clock advanced by the
            // wall time since the last packet (at least one tick so frames stay ordered).
            Some((last_seq, last_time, last_at)) => {
                let elapsed = now.saturating_duration_since(last_at);
                let ticks = (elapsed.as_micros() * u128::from(self.clock_rate_hz) / 1_000_000)
                    .clamp(1, u128::from(u32::MAX / 2));
                (last_seq + 1, last_time.wrapping_add(ticks as u32))
            }
            // First packet: keep its low 16 bits so the SRTP rollover counter starts at 0.
            None => (seq_in & 0xffff, time_in),
        };
        self.seq_offset = seq_next.wrapping_sub(seq_in);
        self.time_offset = time_next.wrapping_sub(time_in);
        self.source = Some(source);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_switch_continues_sequence_and_clock() {
        let start = Instant::now();
        let mut rewriter = Rewriter::new(90_000);
        assert_eq!(
            rewriter.rewrite(1, 70_000, 1000, start),
            (70_000 & 0xffff, 1000)
        );
        assert_eq!(
            rewriter.rewrite(1, 70_001, 4000, start),
            ((70_000 & 0xffff) + 1, 4000)
        );
        // A retransmission of an older packet maps back to its own slot.
        assert_eq!(rewriter.rewrite(1, 70_000, 1000, start).0, 70_000 & 0xffff);
        // 100 ms later another source takes over: next sequence number, clock + 9000 ticks.
        let later = start + Duration::from_millis(100);
        assert_eq!(
            rewriter.rewrite(2, 5, 777, later),
            ((70_000 & 0xffff) + 2, 13_000)
        );
        assert_eq!(
            rewriter.rewrite(2, 6, 3777, later),
            ((70_000 & 0xffff) + 3, 16_000)
        );
        assert_eq!(rewriter.source(), Some(2));
    }
}
