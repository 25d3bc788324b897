//! Plain, serialisable settings for the whole engine. This is the contract between the engine and
//! whoever drives it: the plugin maps host parameters onto it once per block, the offline tool
//! reads it from JSON. Every value is a plain number in the unit its name says; the engine clamps
//! out-of-range values and smooths every continuous one itself.
//!
//! Each processing module has a settings struct here and a processor in its own file taking it
//! through `set_settings`. `Default` is the neutral setting: with every module at its default the
//! engine is transparent (output = delayed sum of the stems).

use serde::{Deserialize, Serialize};

use crate::MAX_STEMS;

/// What the plugin's main (non-stem) stereo input is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MainInputRole {
    /// Not used at all.
    #[default]
    Ignore,
    /// Summed with the stems (before the master chain), like one more stem without processing.
    AddToSum,
    /// The reference mix: the unprocessed sum of the stems as exported from the session, kept
    /// out of the sum and metered, for null tests against the stem sum.
    ReferenceMix,
    /// A commercial reference track, kept out of the sum and metered, for A/B listening.
    ReferenceTrack,
}

/// What the engine's output carries (the A/B switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorSource {
    /// The processed master.
    #[default]
    Processed,
    /// The unprocessed stem sum, delayed by the engine latency.
    Unprocessed,
    /// The main input (reference mix or track), delayed by the engine latency.
    Reference,
}

/// Monitoring: which path is heard, and whether levels are matched by measured loudness.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorSettings {
    /// Path sent to the output.
    pub source: MonitorSource,
    /// When true the unprocessed and reference paths are gained to the processed path's
    /// measured loudness, so A/B compares sound, not level.
    pub loudness_match: bool,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            source: MonitorSource::Processed,
            loudness_match: true,
        }
    }
}

/// High-pass slope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterSlope {
    /// 12 dB/octave (one Butterworth biquad).
    #[default]
    Db12,
    /// 24 dB/octave (fourth-order Butterworth).
    Db24,
    /// 48 dB/octave (eighth-order Butterworth).
    Db48,
}

/// A shelf or bell band of an EQ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EqBand {
    /// Band active.
    pub enabled: bool,
    /// Centre (bell) or corner (shelf) frequency in Hz, 20..20000.
    pub freq_hz: f32,
    /// Gain in dB, −18..+18.
    pub gain_db: f32,
    /// Bandwidth: Q for bells (0.1..10); shelf slope-Q for shelves (0.3..2, 0.707 = no
    /// overshoot).
    pub q: f32,
}

impl EqBand {
    /// A disabled band at `freq_hz` with 0 dB gain and the given Q.
    pub const fn off(freq_hz: f32, q: f32) -> Self {
        Self {
            enabled: false,
            freq_hz,
            gain_db: 0.0,
            q,
        }
    }
}

impl Default for EqBand {
    fn default() -> Self {
        Self::off(1000.0, 0.707)
    }
}

/// Per-stem EQ: HPF, low shelf, two bells, high shelf, LPF (in that order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EqSettings {
    /// Whole EQ active (bypass is click-free).
    pub enabled: bool,
    /// High-pass active.
    pub hpf_enabled: bool,
    /// High-pass corner in Hz, 10..1000.
    pub hpf_hz: f32,
    /// High-pass slope.
    pub hpf_slope: FilterSlope,
    /// Low shelf.
    pub low_shelf: EqBand,
    /// First bell.
    pub bell1: EqBand,
    /// Second bell.
    pub bell2: EqBand,
    /// High shelf.
    pub high_shelf: EqBand,
    /// Low-pass active.
    pub lpf_enabled: bool,
    /// Low-pass corner in Hz, 1000..22000 (clamped below Nyquist).
    pub lpf_hz: f32,
}

impl Default for EqSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            hpf_enabled: false,
            hpf_hz: 30.0,
            hpf_slope: FilterSlope::Db24,
            low_shelf: EqBand::off(100.0, 0.707),
            bell1: EqBand::off(400.0, 1.0),
            bell2: EqBand::off(3000.0, 1.0),
            high_shelf: EqBand::off(8000.0, 0.707),
            lpf_enabled: false,
            lpf_hz: 20_000.0,
        }
    }
}

/// Dynamic EQ band: a bell whose cut follows the level in its own band above a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DynEqSettings {
    /// Band active.
    pub enabled: bool,
    /// Centre frequency in Hz, 20..20000 (de-essing 5–8 kHz, bass notes 60–120 Hz).
    pub freq_hz: f32,
    /// Bandwidth Q, 0.1..10.
    pub q: f32,
    /// Band level (dBFS, RMS-like detector) above which the band is cut, −60..0.
    pub threshold_db: f32,
    /// Cut per dB above threshold (ratio, 1..20; cut = (level − threshold)·(1 − 1/ratio)).
    pub ratio: f32,
    /// Largest cut in dB, 0..24 (positive number; the band gain goes to −range_db at most).
    pub range_db: f32,
    /// Attack time in ms, 0.1..100.
    pub attack_ms: f32,
    /// Release time in ms, 10..2000.
    pub release_ms: f32,
}

impl Default for DynEqSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            freq_hz: 6500.0,
            q: 2.0,
            threshold_db: -30.0,
            ratio: 4.0,
            range_db: 6.0,
            attack_ms: 2.0,
            release_ms: 80.0,
        }
    }
}

/// Compressor character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompCharacter {
    /// Feed-forward, VCA-like: exact static curve, fixed time constants.
    #[default]
    Clean,
    /// Opto-like: program-dependent release (slower after long or deep gain reduction).
    Opto,
}

/// Where a compressor's detector listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompKey {
    /// The compressor's own input.
    #[default]
    Own,
    /// The sum of all stems before processing (so a stem reacts to the whole mix).
    Mix,
}

/// Compressor (per stem, and the master glue compressor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressorSettings {
    /// Active.
    pub enabled: bool,
    /// Threshold in dBFS, −60..0.
    pub threshold_db: f32,
    /// Ratio, 1..20.
    pub ratio: f32,
    /// Soft-knee width in dB, 0..24.
    pub knee_db: f32,
    /// Attack time in ms, 0.1..100.
    pub attack_ms: f32,
    /// Release time in ms, 10..2000.
    pub release_ms: f32,
    /// Automatic (program-dependent) release instead of `release_ms`.
    pub auto_release: bool,
    /// Makeup gain in dB, 0..24.
    pub makeup_db: f32,
    /// Dry/wet mix, 0..1 (parallel compression); 0 is bit-transparent.
    pub mix: f32,
    /// Character.
    pub character: CompCharacter,
    /// Detector key.
    pub key: CompKey,
}

impl Default for CompressorSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            threshold_db: -18.0,
            ratio: 3.0,
            knee_db: 6.0,
            attack_ms: 10.0,
            release_ms: 150.0,
            auto_release: false,
            makeup_db: 0.0,
            mix: 1.0,
            character: CompCharacter::Clean,
            key: CompKey::Own,
        }
    }
}

impl CompressorSettings {
    /// Gentle glue-compressor defaults for the master bus: 2:1, slow attack, auto release,
    /// keyed from the sum (its own input, the processed stem sum; `Mix` keys it from the
    /// unprocessed sum instead).
    pub fn glue() -> Self {
        Self {
            enabled: false,
            threshold_db: -12.0,
            ratio: 2.0,
            knee_db: 6.0,
            attack_ms: 30.0,
            release_ms: 200.0,
            auto_release: true,
            makeup_db: 0.0,
            mix: 1.0,
            character: CompCharacter::Clean,
            key: CompKey::Own,
        }
    }
}

/// Tape-like saturation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaturationSettings {
    /// Active.
    pub enabled: bool,
    /// Drive into the curve in dB, 0..24 (the output is compensated by the same amount at low
    /// level).
    pub drive_db: f32,
    /// Dry/wet mix, 0..1.
    pub mix: f32,
}

impl Default for SaturationSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            drive_db: 6.0,
            mix: 1.0,
        }
    }
}

/// Mid/side width, mono bass and balance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StereoSettings {
    /// Active.
    pub enabled: bool,
    /// Side gain as a fraction, 0..2 (1 = unchanged, 0 = mono).
    pub width: f32,
    /// Mono below `mono_bass_hz` (Linkwitz–Riley 24 dB/oct crossover).
    pub mono_bass: bool,
    /// Mono-bass crossover in Hz, 40..300.
    pub mono_bass_hz: f32,
    /// Balance, −1 (left) .. +1 (right); constant-power at the extremes, unity at 0.
    pub balance: f32,
}

impl Default for StereoSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            width: 1.0,
            mono_bass: false,
            mono_bass_hz: 120.0,
            balance: 0.0,
        }
    }
}

/// Everything one stem's chain needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StemSettings {
    /// Input trim in dB, −24..+24.
    pub trim_db: f32,
    /// Polarity invert.
    pub invert: bool,
    /// EQ.
    pub eq: EqSettings,
    /// Dynamic EQ band.
    pub dyn_eq: DynEqSettings,
    /// Compressor.
    pub comp: CompressorSettings,
    /// Saturation.
    pub sat: SaturationSettings,
    /// Stereo.
    pub stereo: StereoSettings,
    /// Output gain in dB, −24..+24.
    pub output_db: f32,
    /// Mute (click-free).
    pub mute: bool,
    /// Solo in place (several stems may be soloed at once).
    pub solo: bool,
}

impl Default for StemSettings {
    fn default() -> Self {
        Self {
            trim_db: 0.0,
            invert: false,
            eq: EqSettings::default(),
            dyn_eq: DynEqSettings::default(),
            comp: CompressorSettings::default(),
            sat: SaturationSettings::default(),
            stereo: StereoSettings::default(),
            output_db: 0.0,
            mute: false,
            solo: false,
        }
    }
}

/// Master EQ: low shelf, bell, high shelf and a tilt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterEqSettings {
    /// Whole EQ active.
    pub enabled: bool,
    /// Low shelf.
    pub low_shelf: EqBand,
    /// Bell.
    pub bell: EqBand,
    /// High shelf.
    pub high_shelf: EqBand,
    /// Tilt in dB, −6..+6: positive brightens (tilts up around `tilt_hz`), as a low shelf of
    /// −tilt/2 and a high shelf of +tilt/2 around the pivot.
    pub tilt_db: f32,
    /// Tilt pivot in Hz, 200..5000.
    pub tilt_hz: f32,
}

impl Default for MasterEqSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            low_shelf: EqBand::off(80.0, 0.707),
            bell: EqBand::off(1000.0, 0.7),
            high_shelf: EqBand::off(10_000.0, 0.707),
            tilt_db: 0.0,
            tilt_hz: 1000.0,
        }
    }
}

/// True-peak limiter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimiterSettings {
    /// Active (bypass keeps the latency).
    pub enabled: bool,
    /// Ceiling in dBTP, −20..0.
    pub ceiling_dbtp: f32,
    /// Release time in ms, 1..1000 (the slow end when `auto_release`).
    pub release_ms: f32,
    /// Program-dependent release.
    pub auto_release: bool,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ceiling_dbtp: -1.0,
            release_ms: 100.0,
            auto_release: true,
        }
    }
}

/// Master chain: drive → glue compressor → EQ → width → limiter → output gain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterSettings {
    /// Input gain into the master chain (and so into the limiter) in dB, −24..+24.
    pub drive_db: f32,
    /// Glue compressor.
    pub glue: CompressorSettings,
    /// Master EQ.
    pub eq: MasterEqSettings,
    /// Width and balance (mono bass available here too).
    pub stereo: StereoSettings,
    /// Limiter.
    pub limiter: LimiterSettings,
    /// Output gain after the limiter in dB, −24..0.
    pub output_db: f32,
    /// Loudness target in LUFS for the drive helper, −30..−5.
    pub target_lufs: f32,
}

impl Default for MasterSettings {
    fn default() -> Self {
        Self {
            drive_db: 0.0,
            glue: CompressorSettings::glue(),
            eq: MasterEqSettings::default(),
            stereo: StereoSettings::default(),
            limiter: LimiterSettings::default(),
            output_db: 0.0,
            target_lufs: -14.0,
        }
    }
}

/// Everything the engine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// Per-stem settings; entries beyond the prepared stem count are ignored.
    pub stems: [StemSettings; MAX_STEMS],
    /// Master chain.
    pub master: MasterSettings,
    /// Role of the main input.
    pub main_input: MainInputRole,
    /// Monitoring (A/B).
    pub monitor: MonitorSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            stems: [StemSettings::default(); MAX_STEMS],
            master: MasterSettings::default(),
            main_input: MainInputRole::default(),
            monitor: MonitorSettings::default(),
        }
    }
}
