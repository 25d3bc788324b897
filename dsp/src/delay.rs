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

    /// Delays both channels in place: every sample is swapped with the one written
    /// `delay_samples` earlier, in contiguous runs of the ring (at most two per chunk when the
    /// chunk is shorter than the delay), so the work is bulk swaps rather than a per-sample
    /// index wrap.
    #[inline]
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let len = self.buffers[0].len();
        if len == 0 {
            return;
        }
        let n = left.len().min(right.len());
        let [bl, br] = &mut self.buffers;
        let mut pos = self.pos;
        let mut i = 0;
        while i < n {
            let run = (n - i).min(len - pos);
            left[i..i + run].swap_with_slice(&mut bl[pos..pos + run]);
            right[i..i + run].swap_with_slice(&mut br[pos..pos + run]);
            pos += run;
            if pos == len {
                pos = 0;
            }
            i += run;
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

    #[test]
    fn any_chunking_delays_every_sample_by_n() {
        // Chunks shorter than, equal to and longer than the delay, in an irregular order.
        for delay in [1usize, 3, 30, 198] {
            let mut d = DelayLine::new(delay);
            let total = 2000;
            let l: Vec<f32> = (1..=total).map(|x| x as f32).collect();
            let r: Vec<f32> = l.iter().map(|x| -x).collect();
            let (mut ol, mut or) = (l.clone(), r.clone());
            let sizes = [1usize, 7, 128, 2, 197, 198, 199, 400, 5, 64];
            let (mut start, mut k) = (0, 0);
            while start < total {
                let end = (start + sizes[k % sizes.len()]).min(total);
                d.process(&mut ol[start..end], &mut or[start..end]);
                start = end;
                k += 1;
            }
            for n in 0..total {
                let want = if n < delay { 0.0 } else { l[n - delay] };
                assert_eq!(ol[n], want, "delay {delay}, sample {n}");
                assert_eq!(or[n], -want, "delay {delay}, sample {n}");
            }
        }
    }
}
