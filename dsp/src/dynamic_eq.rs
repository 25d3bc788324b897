//! Dynamic EQ band: a bell whose cut follows the level in its own band (feed-forward).
//!
//! ```text
//! band signal   b = BP(x)                  RBJ band-pass, 0 dB peak, same freq/Q as the bell
//! power         p = (b_L² + b_R²)/2        stereo-linked (mean of the channels)
//! mean square   m += (1 − c_rms)·(p − m)   one pole, τ_rms = 2 periods of f0, 1..20 ms
//! level         L = 10·log10(2·m)          dB re a full-scale sine (AES17: a sine of peak A
//!                                          reads 20·log10 A)
//! static cut    g = min(range, max(0, L − threshold)·(1 − 1/ratio))
//! envelope      c = g + a·(c − g),         a = attack pole if g > c, else release pole
//! bell          peaking(f0, Q, −c)         RBJ, redesigned every 16 samples
//! ```
//!
//! The gain computer and smoothing follow Giannoulis, Massberg & Reiss, *Digital Dynamic Range
//! Compressor Design — A Tutorial and Analysis* (JAES 2012): static curve in dB, then the
//! branching attack/release smoother on the gain ("smooth branching, log domain"), so the steady
//! state is exactly the static curve and release is not slowed by the attack. The attack and
//! release times are one-pole time constants (63 % of a step, [`one_pole_coeff`]).
//!
//! Below threshold the cut is exactly 0 dB, and a 0 dB RBJ bell is an exact identity, so the
//! signal passes bit for bit. The bell's coefficients follow the envelope once per segment
//! (16 samples, interpolated per sample), i.e. with ≤ 16 samples of delay.
//!
//! Frequency and Q ramp in octaves, threshold/ratio/range ramp linearly ([`RAMP_MS`]); switching
//! the band on or off fades the cut in or out over [`RAMP_MS`]; once off and settled the band is
//! skipped entirely.

use crate::biquad::{Biquad, CoefficientRamp, Coefficients};
use crate::eq::{RAMP_MS, SEGMENT, clamp_or};
use crate::settings::DynEqSettings;
use crate::smoother::Smoother;
use crate::util::{one_pole_coeff, sanitize};

/// Band state below this (≈ −240 dBFS) counts as silent.
const IDLE_STATE: f64 = 1.0e-12;

/// Cuts smaller than this (dB) are flushed to exactly 0 dB.
const MIN_CUT_DB: f64 = 1.0e-6;

/// Clamped [`DynEqSettings`].
fn clamp_settings(s: &DynEqSettings, sample_rate: f32) -> DynEqSettings {
    let d = DynEqSettings::default();
    DynEqSettings {
        enabled: s.enabled,
        freq_hz: clamp_or(
            s.freq_hz,
            20.0,
            20_000.0f32.min(0.45 * sample_rate),
            d.freq_hz,
        ),
        q: clamp_or(s.q, 0.1, 10.0, d.q),
        threshold_db: clamp_or(s.threshold_db, -60.0, 0.0, d.threshold_db),
        ratio: clamp_or(s.ratio, 1.0, 20.0, d.ratio),
        range_db: clamp_or(s.range_db, 0.0, 24.0, d.range_db),
        attack_ms: clamp_or(s.attack_ms, 0.1, 100.0, d.attack_ms),
        release_ms: clamp_or(s.release_ms, 10.0, 2000.0, d.release_ms),
    }
}

/// RMS time constant for a band at `freq_hz`: two periods, 1..20 ms.
fn rms_ms(freq_hz: f32) -> f32 {
    (2000.0 / freq_hz).clamp(1.0, 20.0)
}

/// One dynamic EQ band on a stereo signal.
#[derive(Debug, Clone)]
pub struct DynamicEq {
    /// Sample rate in Hz.
    sample_rate: f32,
    /// Settings as last set (clamped).
    settings: DynEqSettings,
    /// Centre frequency in octaves (`log2 Hz`), ramped at the segment rate.
    log2_freq: Smoother,
    /// Q in `log2 Q`, ramped at the segment rate.
    log2_q: Smoother,
    /// Threshold in dB, −60..0, ramped per sample.
    threshold_db: Smoother,
    /// Cut per dB over the threshold, `1 − 1/ratio` (0..0.95), ramped per sample.
    slope: Smoother,
    /// Largest cut in dB, 0..24, ramped per sample.
    range_db: Smoother,
    /// Band on (1) / off (0) fade, multiplies the cut.
    enable: Smoother,
    /// Attack pole of the cut envelope.
    attack_coeff: f64,
    /// Release pole of the cut envelope.
    release_coeff: f64,
    /// Pole of the mean-square detector.
    rms_coeff: f64,
    /// Detector band-pass coefficients.
    detector: CoefficientRamp,
    /// Detector state, left and right.
    detector_state: [Biquad; 2],
    /// Bell coefficients.
    bell: CoefficientRamp,
    /// Bell state, left and right.
    bell_state: [Biquad; 2],
    /// Bell gain in dB the bell coefficients were last designed for (−cut·fade).
    bell_gain_db: f64,
    /// Mean square of the band signal (linear power).
    mean_square: f64,
    /// Smoothed cut in dB (positive), before the enable fade.
    cut_db: f64,
    /// Samples left in the current segment.
    countdown: u32,
    /// False while the band is off and settled (skipped).
    active: bool,
    /// Current gain reduction in dB (positive).
    gr_db: f32,
    /// Largest gain reduction since the last [`DynamicEq::take_max_gain_reduction_db`].
    gr_max_db: f32,
}

impl DynamicEq {
    /// A switched-off band at `sample_rate`.
    pub fn new(sample_rate: f32) -> Self {
        let d = clamp_settings(&DynEqSettings::default(), sample_rate);
        let seg_rate = sample_rate / SEGMENT as f32;
        let mut eq = Self {
            sample_rate,
            settings: d,
            log2_freq: Smoother::new(d.freq_hz.log2(), RAMP_MS, seg_rate),
            log2_q: Smoother::new(d.q.log2(), RAMP_MS, seg_rate),
            threshold_db: Smoother::new(d.threshold_db, RAMP_MS, sample_rate),
            slope: Smoother::new(1.0 - 1.0 / d.ratio, RAMP_MS, sample_rate),
            range_db: Smoother::new(d.range_db, RAMP_MS, sample_rate),
            enable: Smoother::new(0.0, RAMP_MS, sample_rate),
            attack_coeff: 0.0,
            release_coeff: 0.0,
            rms_coeff: 0.0,
            detector: CoefficientRamp::new(Coefficients::IDENTITY),
            detector_state: [Biquad::new(); 2],
            bell: CoefficientRamp::new(Coefficients::IDENTITY),
            bell_state: [Biquad::new(); 2],
            bell_gain_db: 0.0,
            mean_square: 0.0,
            cut_db: 0.0,
            countdown: 0,
            active: false,
            gr_db: 0.0,
            gr_max_db: 0.0,
        };
        eq.set_settings(&d);
        eq.reset();
        eq
    }

    /// Changes the sample rate (not real-time safe): rebuilt with the current settings.
    pub fn set_sample_rate(&mut self, sample_rate: f32) {
        let s = self.settings;
        *self = Self::new(sample_rate);
        self.set_settings(&s);
        self.reset();
    }

    /// Sets new targets (clamped, continuous values ramped). Real-time safe.
    pub fn set_settings(&mut self, settings: &DynEqSettings) {
        let s = clamp_settings(settings, self.sample_rate);
        self.settings = s;
        self.log2_freq.set_target(s.freq_hz.log2());
        self.log2_q.set_target(s.q.log2());
        self.threshold_db.set_target(s.threshold_db);
        self.slope.set_target(1.0 - 1.0 / s.ratio);
        self.range_db.set_target(s.range_db);
        self.enable.set_target(if s.enabled { 1.0 } else { 0.0 });
        self.attack_coeff = one_pole_coeff(s.attack_ms, self.sample_rate) as f64;
        self.release_coeff = one_pole_coeff(s.release_ms, self.sample_rate) as f64;
        if !self.active {
            self.snap_smoothers();
        }
    }

    /// Jumps every smoother except the enable fade to its target.
    fn snap_smoothers(&mut self) {
        for s in [
            &mut self.log2_freq,
            &mut self.log2_q,
            &mut self.threshold_db,
            &mut self.slope,
            &mut self.range_db,
        ] {
            s.reset(s.target());
        }
    }

    /// Clears all state (envelope, detector, bell) and jumps every ramp to its target.
    pub fn reset(&mut self) {
        self.snap_smoothers();
        self.enable.reset(self.enable.target());
        self.restart();
        self.active = self.enable.target() > 0.0;
        self.gr_db = 0.0;
        self.gr_max_db = 0.0;
    }

    /// Clears the signal state and designs the filters for the current smoothed values.
    fn restart(&mut self) {
        self.detector_state = [Biquad::new(); 2];
        self.bell_state = [Biquad::new(); 2];
        self.mean_square = 0.0;
        self.cut_db = 0.0;
        self.bell_gain_db = 0.0;
        self.countdown = 0;
        self.detector.jump(self.design_detector());
        self.bell.jump(self.design_bell());
        self.rms_coeff = self.rms_pole();
    }

    fn freq_hz(&self) -> f32 {
        self.log2_freq.value().exp2()
    }

    fn design_detector(&self) -> Coefficients {
        Coefficients::bandpass(
            self.sample_rate as f64,
            self.freq_hz() as f64,
            self.log2_q.value().exp2() as f64,
        )
    }

    fn design_bell(&self) -> Coefficients {
        Coefficients::peaking(
            self.sample_rate as f64,
            self.freq_hz() as f64,
            self.log2_q.value().exp2() as f64,
            self.bell_gain_db,
        )
    }

    fn rms_pole(&self) -> f64 {
        one_pole_coeff(rms_ms(self.freq_hz()), self.sample_rate) as f64
    }

    /// Processing delay in samples (none).
    pub fn latency_samples(&self) -> usize {
        0
    }

    /// Current gain reduction of the band in dB (positive: 6.0 means the bell cuts 6 dB).
    pub fn gain_reduction_db(&self) -> f32 {
        self.gr_db
    }

    /// Largest gain reduction (dB, positive) since the previous call; the next period starts
    /// from the current value.
    pub fn take_max_gain_reduction_db(&mut self) -> f32 {
        let m = self.gr_max_db;
        self.gr_max_db = self.gr_db;
        m
    }

    /// Starts a segment: moves frequency/Q one segment and ramps the detector and the bell to
    /// the new designs (the bell to the current cut).
    fn begin_segment(&mut self) {
        let moved = self.log2_freq.is_smoothing() || self.log2_q.is_smoothing();
        if moved {
            self.log2_freq.tick();
            self.log2_q.tick();
            self.detector.ramp_to(self.design_detector(), SEGMENT);
            self.rms_coeff = self.rms_pole();
        }
        let gain_db = -self.cut_db * self.enable.value() as f64;
        if moved || gain_db != self.bell_gain_db {
            self.bell_gain_db = gain_db;
            self.bell.ramp_to(self.design_bell(), SEGMENT);
        }
        self.countdown = SEGMENT;
    }

    /// Processes a stereo block in place (the shorter length of the two).
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        let n = left.len().min(right.len());
        let (left, right) = (&mut left[..n], &mut right[..n]);
        if !self.active {
            if self.enable.target() == 0.0 {
                return;
            }
            self.snap_smoothers();
            self.restart();
            self.active = true;
        }
        let (attack, release) = (self.attack_coeff, self.release_coeff);
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            if self.countdown == 0 {
                self.begin_segment();
            }
            self.countdown -= 1;
            let (xl, xr) = (sanitize(*l) as f64, sanitize(*r) as f64);

            // Detector: stereo-linked band power → mean square → level in dB.
            let cd = self.detector.tick();
            let bl = self.detector_state[0].process(&cd, xl);
            let br = self.detector_state[1].process(&cd, xr);
            let power = 0.5 * (bl * bl + br * br);
            self.mean_square = power + self.rms_coeff * (self.mean_square - power);
            let level_db = 10.0 * (2.0 * self.mean_square + 1.0e-30).log10();

            // Gain computer and branching envelope (dB).
            let threshold = self.threshold_db.tick() as f64;
            let slope = self.slope.tick() as f64;
            let range = self.range_db.tick() as f64;
            let fade = self.enable.tick();
            let target = ((level_db - threshold) * slope).clamp(0.0, range);
            let pole = if target > self.cut_db {
                attack
            } else {
                release
            };
            self.cut_db = target + pole * (self.cut_db - target);
            if self.cut_db < MIN_CUT_DB {
                self.cut_db = 0.0;
            }
            self.gr_db = (self.cut_db * fade as f64) as f32;
            self.gr_max_db = self.gr_max_db.max(self.gr_db);

            let cb = self.bell.tick();
            *l = self.bell_state[0].process(&cb, xl) as f32;
            *r = self.bell_state[1].process(&cb, xr) as f32;
        }
        let healed = self
            .detector_state
            .iter_mut()
            .chain(self.bell_state.iter_mut())
            .fold(false, |h, s| s.heal() | h);
        if healed || !self.mean_square.is_finite() || !self.cut_db.is_finite() {
            self.restart();
        }
        if self.enable.target() == 0.0
            && !self.enable.is_smoothing()
            && !self.bell.is_ramping()
            && self
                .bell_state
                .iter()
                .all(|s| s.max_abs_state() < IDLE_STATE)
        {
            self.active = false;
            self.gr_db = 0.0;
            self.restart();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::biquad::test_support::*;

    impl TestProcessor for DynamicEq {
        type Settings = DynEqSettings;
        fn create(fs: f32) -> Self {
            Self::new(fs)
        }
        fn apply(&mut self, s: &DynEqSettings) {
            self.set_settings(s);
        }
        fn settle(&mut self) {
            self.reset();
        }
        fn run(&mut self, l: &mut [f32], r: &mut [f32]) {
            self.process(l, r);
        }
    }

    fn on() -> DynEqSettings {
        DynEqSettings {
            enabled: true,
            range_db: 24.0,
            ..DynEqSettings::default()
        }
    }

    /// Output amplitude (dB re input) of a steady `freq_hz` sine of peak `amp` in both channels,
    /// and the processor's gain-reduction reading at the end.
    fn steady(fs: f32, s: &DynEqSettings, freq_hz: f64, amp: f64) -> (f64, f32, Vec<f32>) {
        let len = (0.6 * fs) as usize;
        let start = (0.4 * fs) as usize;
        let x = sine(freq_hz, fs as f64, amp, 0, len);
        let mut p = DynamicEq::new(fs);
        p.set_settings(s);
        p.reset();
        let (mut l, mut r) = (x.clone(), x.clone());
        for (cl, cr) in l.chunks_mut(256).zip(r.chunks_mut(256)) {
            p.process(cl, cr);
        }
        let a = sine_amplitude(&l[start..], freq_hz, fs as f64, start);
        (20.0 * (a / amp).log10(), p.gain_reduction_db(), l)
    }

    /// In band, above threshold: cut by `min(range, (L − T)·(1 − 1/ratio))` within 0.25 dB
    /// (RMS ripple of the detector), at every rate, and the meter agrees.
    #[test]
    fn in_band_sine_is_cut_by_the_static_curve() {
        let mut worst = 0.0f64;
        for fs in [44_100.0, 48_000.0, 96_000.0, 192_000.0] {
            for (s, amp) in [
                (on(), 0.5),
                (
                    DynEqSettings {
                        range_db: 6.0,
                        ..on()
                    },
                    0.5,
                ),
                (
                    DynEqSettings {
                        freq_hz: 100.0,
                        q: 1.0,
                        threshold_db: -20.0,
                        ratio: 2.0,
                        attack_ms: 10.0,
                        release_ms: 300.0,
                        ..on()
                    },
                    0.3,
                ),
            ] {
                let level = 20.0 * f64::log10(amp);
                let expect = ((level - s.threshold_db as f64) * (1.0 - 1.0 / s.ratio as f64))
                    .clamp(0.0, s.range_db as f64);
                let (db, gr, _) = steady(fs, &s, s.freq_hz as f64, amp);
                worst = worst.max((db + expect).abs());
                assert!(
                    (db + expect).abs() < 0.25,
                    "fs {fs} {s:?}: gain {db:.3} dB, expected {:.3}",
                    -expect
                );
                assert!((gr as f64 - expect).abs() < 0.25, "meter {gr} vs {expect}");
            }
        }
        eprintln!("worst in-band error {worst:.3} dB");
    }

    /// Below threshold: bit-exact. Loud but out of band: untouched within 0.1 dB.
    #[test]
    fn below_threshold_or_out_of_band_is_untouched() {
        let fs = 48_000.0;
        let s = on();
        // −40 dB in band, threshold −30.
        let (_, gr, y) = steady(fs, &s, 6500.0, 0.01);
        assert_eq!(y, sine(6500.0, fs as f64, 0.01, 0, y.len()));
        assert_eq!(gr, 0.0);
        // A full-scale 500 Hz sine: the band-pass (Q 2 at 6.5 kHz) sees it 28 dB down, just over
        // the −30 dB threshold, and the bell at 6.5 kHz does not reach 500 Hz.
        let (db, gr, _) = steady(fs, &s, 500.0, 0.9);
        assert!(db.abs() < 0.1, "out of band gain {db}");
        eprintln!("out-of-band: gain {db:.4} dB with {gr:.2} dB of band reduction");
        // Same for a loud 60 Hz sine against a de-esser setting.
        let (db, _, _) = steady(fs, &s, 60.0, 1.0);
        assert!(db.abs() < 0.1, "out of band gain {db}");
    }

    #[test]
    fn meter_keeps_the_maximum_until_read() {
        let fs = 48_000.0;
        let mut p = DynamicEq::new(fs);
        p.set_settings(&on());
        p.reset();
        let mut burst = sine(6500.0, fs as f64, 0.5, 0, 9600);
        burst.extend(vec![0.0; 48_000]);
        let mut r = burst.clone();
        p.process(&mut burst, &mut r);
        let now = p.gain_reduction_db();
        assert!(now < 1.0, "released after a second of silence: {now}");
        let max = p.take_max_gain_reduction_db();
        assert!((max - 18.0).abs() < 0.5, "max {max}");
        assert!(p.take_max_gain_reduction_db() <= now + 1e-6);
    }

    /// Steps on every control with an in-band sine, at block sizes 1 and 512.
    #[test]
    fn automation_never_clicks() {
        let fs = 48_000.0;
        let at = 24_576;
        let len = at + 9600;
        type Case = (&'static str, fn(&mut DynEqSettings), f64);
        let cases: [Case; 8] = [
            ("threshold", |s| s.threshold_db = -10.0, 6500.0),
            ("ratio", |s| s.ratio = 20.0, 6500.0),
            ("range", |s| s.range_db = 3.0, 6500.0),
            ("freq", |s| s.freq_hz = 3000.0, 6500.0),
            ("q", |s| s.q = 0.5, 6500.0),
            ("off", |s| s.enabled = false, 6500.0),
            ("attack", |s| s.attack_ms = 0.1, 6500.0),
            ("release", |s| s.release_ms = 10.0, 6500.0),
        ];
        let mut worst = 0.0f32;
        for (name, to_fn, f) in cases {
            let l = sine(f, fs as f64, 0.5, 0, len);
            let r = sine(f, fs as f64, 0.4, 5, len);
            let from = on();
            let mut to = from;
            to_fn(&mut to);
            for block in [1, 512] {
                let rep = click_report::<DynamicEq>(fs, (&l, &r), block, &from, &to, at, 4800);
                worst = worst.max(rep.ratio());
                assert!(rep.ratio() <= 1.05, "{name} block {block}: {rep:?}");
            }
        }
        // Switching on (from below the cut to the cut).
        let l = sine(6500.0, fs as f64, 0.5, 0, len);
        let off = DynEqSettings {
            enabled: false,
            ..on()
        };
        let rep = click_report::<DynamicEq>(fs, (&l, &l), 512, &off, &on(), at, 4800);
        assert!(rep.ratio() <= 1.05, "on: {rep:?}");
        eprintln!("worst click ratio {worst:.4}");
    }

    /// A sudden loud in-band burst with the fastest attack: the cut follows without overshoot
    /// or instability.
    #[test]
    fn fast_attack_on_a_burst_stays_bounded() {
        let fs = 48_000.0;
        let s = DynEqSettings {
            attack_ms: 0.1,
            release_ms: 10.0,
            q: 10.0,
            ..on()
        };
        let mut x = vec![0.0f32; 4800];
        x.extend(sine(6500.0, fs as f64, 1.0, 4800, 9600));
        x.extend(vec![0.0f32; 4800]);
        let (l, _) = render::<DynamicEq>(fs, (&x, &x), 64, &s, |_| s);
        let peak = l.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 1.0 + 1e-3, "peak {peak}");
    }

    /// Random settings every 64 samples at every rate: finite, bounded output (the band only
    /// cuts, so the output stays near the input level).
    #[test]
    fn stable_under_random_automation() {
        let mut rng = Rng(77);
        for fs in [44_100.0f32, 48_000.0, 96_000.0, 192_000.0] {
            let x = rng.noise(0.5, fs as usize / 4);
            let list: Vec<DynEqSettings> = (0..x.len() / 64 + 1)
                .map(|_| DynEqSettings {
                    enabled: rng.next_f64() < 0.9,
                    freq_hz: rng.log_range(20.0, 20_000.0) as f32,
                    q: rng.log_range(0.1, 10.0) as f32,
                    threshold_db: rng.range(-60.0, 0.0) as f32,
                    ratio: rng.range(1.0, 20.0) as f32,
                    range_db: rng.range(0.0, 24.0) as f32,
                    attack_ms: rng.log_range(0.1, 100.0) as f32,
                    release_ms: rng.log_range(10.0, 2000.0) as f32,
                })
                .collect();
            let (l, r) = render::<DynamicEq>(fs, (&x, &x), 64, &list[0], |n| list[n / 64]);
            let peak = l.iter().chain(&r).fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak.is_finite() && peak < 2.0, "fs {fs}: peak {peak}");
        }
    }

    /// NaN and ±Inf: finite output, identical to feeding silence instead.
    #[test]
    fn nan_and_inf_act_as_silence() {
        let fs = 48_000.0;
        let clean = sine(6500.0, fs as f64, 0.5, 0, 16_384);
        let (mut bad, mut silent) = (clean.clone(), clean.clone());
        for (i, v) in bad[8192..8492].iter_mut().enumerate() {
            *v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        silent[8192..8492].fill(0.0);
        let s = on();
        let out = render::<DynamicEq>(fs, (&bad, &bad), 512, &s, |_| s);
        let reference = render::<DynamicEq>(fs, (&silent, &silent), 512, &s, |_| s);
        assert!(out.0.iter().all(|v| v.is_finite()));
        assert!(out == reference);
    }

    #[test]
    fn disabled_is_bit_transparent() {
        let mut rng = Rng(3);
        let x = rng.noise(1.0, 10_000);
        let s = DynEqSettings::default();
        let out = render::<DynamicEq>(48_000.0, (&x, &x), 100, &s, |_| s);
        assert!(out.0 == x && out.1 == x);
        // Switched off after working: transparent again once the fade and the bell's ring
        // are over.
        let at = 4096;
        let off = DynEqSettings::default();
        let out = render::<DynamicEq>(48_000.0, (&x, &x), 64, &on(), |n| {
            if n < at { on() } else { off }
        });
        assert!(out.0[at + 4800..] == x[at + 4800..]);
        assert!(out.0[..at] != x[..at]);
        assert_eq!(DynamicEq::new(48_000.0).latency_samples(), 0);
    }
}
