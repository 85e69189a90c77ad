//! Log-linear latency histogram (values in microseconds): exact below 128, then 64 sub-buckets per
//! power of two (about 1.5 % resolution). Fixed size, no allocation per sample.

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS; // 64
const EXACT: u64 = SUB * 2; // 128
const BUCKETS: usize = (EXACT + (64 - 7) * SUB) as usize;

pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    sum: u128,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist { counts: vec![0; BUCKETS], n: 0, sum: 0, max: 0 }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < EXACT {
            v as usize
        } else {
            let e = 63 - v.leading_zeros(); // >= 7
            let m = v >> (e - SUB_BITS); // in [64, 128)
            (EXACT + (e as u64 - 7) * SUB + (m - SUB)) as usize
        }
    }

    /// Midpoint of the bucket at index i.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < EXACT {
            i
        } else {
            let e = (i - EXACT) / SUB + 7;
            let m = (i - EXACT) % SUB + SUB;
            let lo = m << (e - SUB_BITS as u64);
            let width = 1u64 << (e - SUB_BITS as u64);
            lo + width / 2
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.n += 1;
        self.sum += v as u128;
        if v > self.max {
            self.max = v;
        }
    }

    pub fn percentile(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.n,
            "p50": self.percentile(50.0),
            "p90": self.percentile(90.0),
            "p99": self.percentile(99.0),
            "p999": self.percentile(99.9),
            "max": self.max,
            "mean": if self.n > 0 { (self.sum / self.n as u128) as u64 } else { 0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn percentiles() {
        let mut h = Hist::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.percentile(50.0) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.02, "{p50}");
        let p99 = h.percentile(99.0) as f64;
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.02, "{p99}");
        assert_eq!(h.percentile(100.0), 10_000);
        for v in [0u64, 1, 127, 128, 129, 1000, 1 << 40, u64::MAX / 2] {
            let i = Hist::index(v);
            assert!(i < BUCKETS);
            let back = Hist::value(i) as f64;
            assert!(v < 128 && back == v as f64 || (back - v as f64).abs() / (v as f64) < 0.02, "{v} {back}");
        }
    }
}
