//! Simulcast layer bookkeeping: how fast each layer arrives, and which one a subscriber with a
//! given bandwidth estimate should get.

use std::time::{Duration, Instant};

/// Length of one measuring window. Half a second follows a layer turning on or off quickly
/// while averaging over several frames.
const METER_WINDOW: Duration = Duration::from_millis(500);

/// A layer that sent nothing for this long is treated as off (the browser stopped it).
const LAYER_SILENCE_MAX: Duration = Duration::from_millis(1_500);

/// After a switch, no upgrade for this long: lets the new estimate settle, avoids flapping.
pub const LAYER_UPGRADE_HOLD: Duration = Duration::from_secs(3);

/// Headroom (in percent of the layer bitrate) an estimate must exceed to carry a layer.
const LAYER_HEADROOM_PERCENT: u64 = 15;

/// Bitrate of one incoming layer, over the last complete window.
#[derive(Debug, Default)]
pub struct BitrateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    last_bitrate_bps: u64,
    last_packet_at: Option<Instant>,
}

impl BitrateMeter {
    pub fn record(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= METER_WINDOW {
            self.last_bitrate_bps = if elapsed >= METER_WINDOW * 2 {
                // A gap: the old window says little about the present rate.
                0
            } else {
                self.window_bytes * 8 * 1_000_000 / elapsed.as_micros().max(1) as u64
            };
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        self.window_bytes += bytes as u64;
        self.last_packet_at = Some(now);
    }

    pub fn bitrate_bps(&self, now: Instant) -> u64 {
        if self.is_active(now) {
            self.last_bitrate_bps
        } else {
            0
        }
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.last_packet_at
            .is_some_and(|at| now.saturating_duration_since(at) < LAYER_SILENCE_MAX)
    }
}

/// One layer as seen when choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerChoice {
    pub bitrate_bps: u64,
    pub active: bool,
}

/// Picks the index of the best layer for a subscriber.
///
/// - Without an estimate (no congestion control with this peer), the best active layer.
/// - With one, the highest-bitrate active layer that fits with headroom, else the lowest active.
/// - Upgrades wait while `recently_switched`; downgrades never wait.
/// - A layer whose rate is not known yet counts as fitting, so a fresh publisher is watchable.
pub fn choose(
    layers: &[LayerChoice],
    estimate_bps: Option<u64>,
    current: Option<usize>,
    recently_switched: bool,
) -> Option<usize> {
    let mut active: Vec<(usize, u64)> = layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| layer.active)
        .map(|(index, layer)| (index, layer.bitrate_bps))
        .collect();
    if active.is_empty() {
        // Nothing is flowing yet: aim at the first declared layer (browsers list the lowest
        // first) and let the review switch once rates are known.
        return current.or((!layers.is_empty()).then_some(0));
    }
    active.sort_by_key(|(_, bps)| *bps);
    let best = match estimate_bps {
        None => active.last().map(|(index, _)| *index),
        Some(estimate) => active
            .iter()
            .rev()
            .find(|(_, bps)| bps + bps * LAYER_HEADROOM_PERCENT / 100 <= estimate)
            .or(active.first())
            .map(|(index, _)| *index),
    }?;
    let rate = |index: usize| layers.get(index).map(|l| (l.active, l.bitrate_bps));
    match current.and_then(rate) {
        Some((true, current_bps))
            if recently_switched && layers[best].bitrate_bps > current_bps =>
        {
            current
        }
        _ => Some(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(rates: &[(u64, bool)]) -> Vec<LayerChoice> {
        rates
            .iter()
            .map(|&(bitrate_bps, active)| LayerChoice {
                bitrate_bps,
                active,
            })
            .collect()
    }

    #[test]
    fn the_best_layer_that_fits_is_chosen() {
        let three = layers(&[(150_000, true), (500_000, true), (1_500_000, true)]);
        assert_eq!(choose(&three, Some(2_000_000), None, false), Some(2));
        assert_eq!(choose(&three, Some(700_000), None, false), Some(1));
        assert_eq!(choose(&three, Some(100_000), None, false), Some(0));
        assert_eq!(choose(&three, None, None, false), Some(2));
    }

    #[test]
    fn inactive_layers_are_skipped_and_upgrades_wait() {
        let top_off = layers(&[(150_000, true), (500_000, true), (0, false)]);
        assert_eq!(choose(&top_off, Some(5_000_000), Some(2), false), Some(1));
        let three = layers(&[(150_000, true), (500_000, true), (1_500_000, true)]);
        assert_eq!(choose(&three, Some(5_000_000), Some(0), true), Some(0));
        // Downgrade is immediate even right after a switch.
        assert_eq!(choose(&three, Some(300_000), Some(2), true), Some(0));
    }

    #[test]
    fn the_meter_measures_and_goes_quiet() {
        let start = Instant::now();
        let mut meter = BitrateMeter::default();
        for tick in 0..=60 {
            meter.record(start + Duration::from_millis(tick * 10), 1_250);
        }
        let at = start + Duration::from_millis(600);
        // 1250 bytes every 10 ms is 1 Mbps.
        let bps = meter.bitrate_bps(at);
        assert!((950_000..=1_050_000).contains(&bps), "{bps}");
        assert_eq!(meter.bitrate_bps(at + Duration::from_secs(2)), 0);
    }
}
