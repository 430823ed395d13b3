//! The fault injector's own pseudo-random generator: SplitMix64 (Steele, Lea,
//! Flood 2014), chosen because it is tiny, has no bad seeds (zero included)
//! and needs no dependency. Not for cryptography.

/// SplitMix64 state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) const fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `true` with probability `percent`/100 (100 or more: always).
    pub(crate) fn chance(&mut self, percent: u8) -> bool {
        percent > 0 && self.next_u64() % 100 < u64::from(percent)
    }

    /// Uniform-enough index in `0..n` for `n > 0` (modulo bias is irrelevant
    /// for picking which byte to corrupt).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        // `usize` is at most 64 bits on every supported target.
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn matches_reference_sequence() {
        // First outputs of the reference C implementation seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn chance_extremes() {
        let mut rng = SplitMix64::new(42);
        for _ in 0..1000 {
            assert!(!rng.chance(0));
            assert!(rng.chance(100));
            assert!(rng.chance(200));
            assert!(rng.below(7) < 7);
        }
    }
}
