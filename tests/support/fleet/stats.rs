//! Pure statistics for the fleet figures: percentiles, 1-s and 10-s bins,
//! peak-to-mean. No clock, no I/O: unit-tested in `tests/fleet.rs`.

/// The `q`-quantile (0..=1) of `sorted` by the nearest-rank method (the
/// smallest value with at least `q` of the values at or below it); 0 for
/// an empty slice.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// min / median / p90 / p99 / max of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    pub fn of(values: &[u64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_unstable();
        Spread {
            min: v.first().copied().unwrap_or(0),
            median: percentile(&v, 0.5),
            p90: percentile(&v, 0.9),
            p99: percentile(&v, 0.99),
            max: v.last().copied().unwrap_or(0),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} / {} / {} / {} / {}",
            self.min, self.median, self.p90, self.p99, self.max
        )
    }
}

/// Counts of `times` (seconds from an origin) in bins of `width` seconds
/// covering `[from, to)`: bin k holds `from + k*width <= t < from + (k+1)*width`.
/// Times outside the range are left out; a last partial bin is dropped
/// (it would understate the rate).
pub fn bins(times: &[f64], width: f64, from: f64, to: f64) -> Vec<u64> {
    assert!(width > 0.0, "bins: width must be positive");
    let n = ((to - from) / width).floor().max(0.0) as usize;
    let mut out = vec![0u64; n];
    for &t in times {
        if t < from {
            continue;
        }
        let k = ((t - from) / width).floor() as usize;
        if k < n {
            out[k] += 1;
        }
    }
    out
}

/// Mean and peak of per-bin counts, as rates per second, and peak/mean.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Rate {
    pub mean: f64,
    pub peak: f64,
    pub peak_to_mean: f64,
}

impl Rate {
    /// From the counts of bins `width` seconds wide; all zero if empty.
    pub fn of(bins: &[u64], width: f64) -> Rate {
        if bins.is_empty() {
            return Rate::default();
        }
        let total: u64 = bins.iter().sum();
        let mean = total as f64 / (bins.len() as f64 * width);
        let peak = *bins.iter().max().unwrap_or(&0) as f64 / width;
        Rate {
            mean,
            peak,
            peak_to_mean: if mean > 0.0 { peak / mean } else { 0.0 },
        }
    }
}

/// The sidecar and profile numbers in a fleet role ARN
/// (`arn:aws:iam::111122223333:role/fleet-s{i}-p{j}`).
pub fn parse_fleet_arn(arn: &str) -> Option<(usize, usize)> {
    let name = arn.rsplit('/').next()?.strip_prefix("fleet-s")?;
    let (s, p) = name.split_once("-p")?;
    Some((s.parse().ok()?, p.parse().ok()?))
}

/// The role ARN of profile `j` of sidecar `i`.
pub fn fleet_arn(i: usize, j: usize) -> String {
    format!("arn:aws:iam::111122223333:role/fleet-s{i}-p{j}")
}
