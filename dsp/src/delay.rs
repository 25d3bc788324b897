//! A fixed integer-sample stereo delay line (latency compensation for the dry, unprocessed and
//! reference paths).

/// Stereo delay by a fixed number of samples, set at construction.
pub struct DelayLine {
    /// Ring buffers, one per channel, `delay_samples` long (empty when the delay is 0).
    buffers: [Box<[f32]>; 2],
    /// Read/write position in `0..delay_samples`.
    pos: usize,
}

impl DelayLine {
    /// Allocates a delay of `delay_samples`.
    pub fn new(delay_samples: usize) -> Self {
        Self {
            buffers: [
                vec![0.0; delay_samples].into_boxed_slice(),
                vec![0.0; delay_samples].into_boxed_slice(),
            ],
            pos: 0,
        }
    }

    /// Delay in samples.
    pub fn delay_samples(&self) -> usize {
        self.buffers[0].len()
    }

    /// Clears the buffers.
    pub fn reset(&mut self) {
        for b in &mut self.buffers {
            b.fill(0.0);
        }
        self.pos = 0;
    }

    /// Delays both channels in place.
    #[inline]
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let len = self.buffers[0].len();
        if len == 0 {
            return;
        }
        let [bl, br] = &mut self.buffers;
        let mut pos = self.pos;
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            std::mem::swap(l, &mut bl[pos]);
            std::mem::swap(r, &mut br[pos]);
            pos += 1;
            if pos == len {
                pos = 0;
            }
        }
        self.pos = pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_by_exactly_n() {
        let mut d = DelayLine::new(5);
        let mut l: Vec<f32> = (1..=12).map(|x| x as f32).collect();
        let mut r = l.clone();
        d.process(&mut l[..7], &mut r[..7]);
        d.process(&mut l[7..], &mut r[7..]);
        assert_eq!(&l[..5], &[0.0; 5]);
        assert_eq!(&l[5..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(l, r);
    }

    #[test]
    fn zero_delay_is_identity() {
        let mut d = DelayLine::new(0);
        let mut l = [1.0, 2.0];
        let mut r = [3.0, 4.0];
        d.process(&mut l, &mut r);
        assert_eq!((l, r), ([1.0, 2.0], [3.0, 4.0]));
    }
}
