//! The saved-state bridge between the plugin and the offline tool.
//!
//! The plugin (`plugin/`, nice-plug) saves its state as JSON in nice-plug's `PluginState` shape;
//! the offline tool reads that JSON to render exactly what the plugin would. Both sides use the
//! parameter table in this file, so parameter IDs, ranges and the mapping onto
//! [`EngineSettings`] fields cannot drift apart:
//!
//! - [`STEM_PARAMS`]: every control of [`StemSettings`]. The host-facing ID of stem `n`
//!   (1-based) is `"{id}_{n}"` (nice-plug's `#[nested(array)]` suffix) and its display name is
//!   `"Stem {n} {name}"`, e.g. `comp_threshold_3` / "Stem 3 Comp Threshold".
//! - [`GLOBAL_PARAMS`]: the master chain, the main-input role, monitoring and the plugin's
//!   bypass switch (which has no engine field; the offline tool ignores it).
//!
//! # State format
//! nice-plug serialises `PluginState` with serde (see `nice_plug_core::plugin::PluginState`):
//! ```json
//! {
//!   "version": "0.1.0",
//!   "params": {
//!     "comp_threshold_3": { "f32": -20.0 },
//!     "comp_on_3": { "bool": true },
//!     "hpf_slope_1": { "string": "db24" }
//!   },
//!   "fields": { "state_version": "1", "stem_names": "[\"Drums\",\"Bass\"]" }
//! }
//! ```
//! `params` values are serde's external tagging of nice-plug's `ParamValue`
//! (`f32` / `i32` / `bool` / `string`; enums are saved by their stable variant ID, an `i32`
//! variant index is accepted too). `fields` holds each `#[persist]` field as a JSON string:
//! [`FIELD_STATE_VERSION`] (`u32`, this format's version, [`STATE_VERSION`]) and
//! [`FIELD_STEM_NAMES`] (a JSON array of strings). `version` is the plugin's crate version
//! (informational). A state without `state_version` is not a Stembus state and is rejected.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::MAX_STEMS;
use crate::settings::{
    CompCharacter, CompKey, EngineSettings, FilterSlope, MainInputRole, MonitorSource, StemSettings,
};

/// Version of the saved-state layout written by this code. Bump it when parameter IDs or
/// meanings change, and migrate older states in the plugin's `filter_state` and in
/// [`parse_state_json`].
pub const STATE_VERSION: u32 = 1;

/// `fields` key of the state-layout version (a JSON `u32`).
pub const FIELD_STATE_VERSION: &str = "state_version";

/// `fields` key of the stem display names (a JSON array of strings).
pub const FIELD_STEM_NAMES: &str = "stem_names";

/// ID of the plugin's bypass parameter (no engine field; ignored offline).
pub const BYPASS_ID: &str = "bypass";

/// How a continuous value is presented to the user; the plugin maps it to a formatter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Decibels, shown as "-3.5 dB".
    Db,
    /// Decibels true peak, "-1.0 dBTP".
    Dbtp,
    /// Loudness units full scale, "-14.0 LUFS".
    Lufs,
    /// Hertz, "120 Hz" / "2.50 kHz".
    Hz,
    /// Milliseconds, "10.0 ms".
    Ms,
    /// Compression ratio, "3.0:1".
    Ratio,
    /// A fraction 0..1 (or 0..2) shown as a percentage, "75 %".
    Percent,
    /// A bare number (filter Q), "0.71".
    Plain,
    /// Balance −1..+1, shown as "25L", "C", "40R".
    Balance,
}

/// Mapping of a continuous control onto the host's normalised 0..1 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear in the plain value.
    Linear,
    /// Roughly logarithmic (frequencies, times, Q, ratio): the geometric mean of the range sits
    /// at the middle of the control.
    Log,
}

/// One variant of an enum parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumVariant {
    /// Stable ID saved in the state (also the serde name in [`crate::settings`]).
    pub id: &'static str,
    /// Label shown to the user.
    pub label: &'static str,
}

/// The type and range of a parameter. Defaults are not stored here: they are the values of
/// `Default` settings (see [`ParamRef::default_value`]), so they cannot disagree with
/// [`crate::settings`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// Continuous value in `min..=max`.
    Float {
        /// Lowest value.
        min: f32,
        /// Highest value.
        max: f32,
        /// Presentation.
        unit: Unit,
        /// Control taper.
        scale: Scale,
    },
    /// On/off; the numeric value is 0 or 1.
    Bool,
    /// One of `variants`; the numeric value is the variant index.
    Enum {
        /// Variants in index order.
        variants: &'static [EnumVariant],
    },
}

impl ParamKind {
    /// Brings any number into this kind's domain: floats clamped (non-finite → `fallback`),
    /// bools to 0/1, enums to a valid index.
    pub fn sanitize(&self, value: f32, fallback: f32) -> f32 {
        match *self {
            ParamKind::Float { min, max, .. } => {
                if value.is_finite() {
                    value.clamp(min, max)
                } else {
                    fallback
                }
            }
            ParamKind::Bool => {
                if value > 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            ParamKind::Enum { variants } => {
                if value.is_finite() {
                    value.round().clamp(0.0, (variants.len() - 1) as f32)
                } else {
                    fallback
                }
            }
        }
    }
}

/// One parameter of the table: a stable ID, a display name and accessors into the settings
/// struct `S` (numeric view: bool 0/1, enum variant index).
pub struct ParamSpec<S> {
    /// Stable ID (stem parameters get the suffix `_{n}`). Never change it: saved states and host
    /// automation refer to it.
    pub id: &'static str,
    /// Display name (stem parameters get the prefix `Stem {n} `).
    pub name: &'static str,
    /// Type and range.
    pub kind: ParamKind,
    /// Reads the value from the settings.
    pub get: fn(&S) -> f32,
    /// Writes an already sanitised value into the settings.
    pub set: fn(&mut S, f32),
}

impl<S> fmt::Debug for ParamSpec<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

const SLOPES: &[EnumVariant] = &[
    EnumVariant {
        id: "db12",
        label: "12 dB/oct",
    },
    EnumVariant {
        id: "db24",
        label: "24 dB/oct",
    },
    EnumVariant {
        id: "db48",
        label: "48 dB/oct",
    },
];
const CHARACTERS: &[EnumVariant] = &[
    EnumVariant {
        id: "clean",
        label: "Clean",
    },
    EnumVariant {
        id: "opto",
        label: "Opto",
    },
];
const KEYS: &[EnumVariant] = &[
    EnumVariant {
        id: "own",
        label: "Own",
    },
    EnumVariant {
        id: "mix",
        label: "Mix",
    },
];
const ROLES: &[EnumVariant] = &[
    EnumVariant {
        id: "ignore",
        label: "Ignore",
    },
    EnumVariant {
        id: "add_to_sum",
        label: "Add to Sum",
    },
    EnumVariant {
        id: "reference_mix",
        label: "Reference Mix",
    },
    EnumVariant {
        id: "reference_track",
        label: "Reference Track",
    },
];
const SOURCES: &[EnumVariant] = &[
    EnumVariant {
        id: "processed",
        label: "Processed",
    },
    EnumVariant {
        id: "unprocessed",
        label: "Unprocessed",
    },
    EnumVariant {
        id: "reference",
        label: "Reference",
    },
];

/// Enum ↔ variant index conversions, in the order of the `EnumVariant` lists above.
fn slope_index(v: FilterSlope) -> f32 {
    match v {
        FilterSlope::Db12 => 0.0,
        FilterSlope::Db24 => 1.0,
        FilterSlope::Db48 => 2.0,
    }
}
fn slope_from(i: f32) -> FilterSlope {
    match i as usize {
        0 => FilterSlope::Db12,
        1 => FilterSlope::Db24,
        _ => FilterSlope::Db48,
    }
}
fn character_index(v: CompCharacter) -> f32 {
    match v {
        CompCharacter::Clean => 0.0,
        CompCharacter::Opto => 1.0,
    }
}
fn character_from(i: f32) -> CompCharacter {
    if i as usize == 0 {
        CompCharacter::Clean
    } else {
        CompCharacter::Opto
    }
}
fn key_index(v: CompKey) -> f32 {
    match v {
        CompKey::Own => 0.0,
        CompKey::Mix => 1.0,
    }
}
fn key_from(i: f32) -> CompKey {
    if i as usize == 0 {
        CompKey::Own
    } else {
        CompKey::Mix
    }
}
fn role_index(v: MainInputRole) -> f32 {
    match v {
        MainInputRole::Ignore => 0.0,
        MainInputRole::AddToSum => 1.0,
        MainInputRole::ReferenceMix => 2.0,
        MainInputRole::ReferenceTrack => 3.0,
    }
}
fn role_from(i: f32) -> MainInputRole {
    match i as usize {
        0 => MainInputRole::Ignore,
        1 => MainInputRole::AddToSum,
        2 => MainInputRole::ReferenceMix,
        _ => MainInputRole::ReferenceTrack,
    }
}
fn source_index(v: MonitorSource) -> f32 {
    match v {
        MonitorSource::Processed => 0.0,
        MonitorSource::Unprocessed => 1.0,
        MonitorSource::Reference => 2.0,
    }
}
fn source_from(i: f32) -> MonitorSource {
    match i as usize {
        0 => MonitorSource::Processed,
        1 => MonitorSource::Unprocessed,
        _ => MonitorSource::Reference,
    }
}
fn bool_value(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// A continuous parameter on the field path `$($f).+` of the settings struct.
macro_rules! float {
    ($id:expr, $name:expr, $($f:ident).+, $min:expr, $max:expr, $unit:ident, $scale:ident) => {
        ParamSpec {
            id: $id,
            name: $name,
            kind: ParamKind::Float { min: $min, max: $max, unit: Unit::$unit, scale: Scale::$scale },
            get: |s| s.$($f).+,
            set: |s, v| s.$($f).+ = v,
        }
    };
}

/// An on/off parameter on a `bool` field.
macro_rules! boolean {
    ($id:expr, $name:expr, $($f:ident).+) => {
        ParamSpec {
            id: $id,
            name: $name,
            kind: ParamKind::Bool,
            get: |s| bool_value(s.$($f).+),
            set: |s, v| s.$($f).+ = v > 0.5,
        }
    };
}

/// An enum parameter; `$to`/`$from` convert between the settings enum and the variant index.
macro_rules! choice {
    ($id:expr, $name:expr, $($f:ident).+, $variants:expr, $to:ident, $from:ident) => {
        ParamSpec {
            id: $id,
            name: $name,
            kind: ParamKind::Enum { variants: $variants },
            get: |s| $to(s.$($f).+),
            set: |s, v| s.$($f).+ = $from(v),
        }
    };
}

/// An EQ band's four parameters (`on`, `freq`, `gain`, `q`).
macro_rules! band {
    ($p:literal, $n:literal, $($f:ident).+, $qmin:expr, $qmax:expr) => {
        [
            boolean!(concat!($p, "_on"), concat!($n, " On"), $($f).+.enabled),
            float!(concat!($p, "_freq"), concat!($n, " Freq"), $($f).+.freq_hz, 20.0, 20_000.0, Hz, Log),
            float!(concat!($p, "_gain"), concat!($n, " Gain"), $($f).+.gain_db, -18.0, 18.0, Db, Linear),
            float!(concat!($p, "_q"), concat!($n, " Q"), $($f).+.q, $qmin, $qmax, Plain, Log),
        ]
    };
}

/// A compressor's eleven parameters.
macro_rules! compressor {
    ($p:literal, $n:literal, $($f:ident).+) => {
        [
            boolean!(concat!($p, "_on"), concat!($n, " On"), $($f).+.enabled),
            float!(concat!($p, "_threshold"), concat!($n, " Threshold"), $($f).+.threshold_db, -60.0, 0.0, Db, Linear),
            float!(concat!($p, "_ratio"), concat!($n, " Ratio"), $($f).+.ratio, 1.0, 20.0, Ratio, Log),
            float!(concat!($p, "_knee"), concat!($n, " Knee"), $($f).+.knee_db, 0.0, 24.0, Db, Linear),
            float!(concat!($p, "_attack"), concat!($n, " Attack"), $($f).+.attack_ms, 0.1, 100.0, Ms, Log),
            float!(concat!($p, "_release"), concat!($n, " Release"), $($f).+.release_ms, 10.0, 2000.0, Ms, Log),
            boolean!(concat!($p, "_auto_release"), concat!($n, " Auto Release"), $($f).+.auto_release),
            float!(concat!($p, "_makeup"), concat!($n, " Makeup"), $($f).+.makeup_db, 0.0, 24.0, Db, Linear),
            float!(concat!($p, "_mix"), concat!($n, " Mix"), $($f).+.mix, 0.0, 1.0, Percent, Linear),
            choice!(concat!($p, "_character"), concat!($n, " Character"), $($f).+.character, CHARACTERS, character_index, character_from),
            choice!(concat!($p, "_key"), concat!($n, " Key"), $($f).+.key, KEYS, key_index, key_from),
        ]
    };
}

/// Width, mono bass and balance (five parameters).
macro_rules! stereo {
    ($p:literal, $n:literal, $($f:ident).+) => {
        [
            boolean!(concat!($p, "stereo_on"), concat!($n, "Stereo On"), $($f).+.enabled),
            float!(concat!($p, "width"), concat!($n, "Width"), $($f).+.width, 0.0, 2.0, Percent, Linear),
            boolean!(concat!($p, "mono_bass"), concat!($n, "Mono Bass"), $($f).+.mono_bass),
            float!(concat!($p, "mono_bass_freq"), concat!($n, "Mono Bass Freq"), $($f).+.mono_bass_hz, 40.0, 300.0, Hz, Log),
            float!(concat!($p, "balance"), concat!($n, "Balance"), $($f).+.balance, -1.0, 1.0, Balance, Linear),
        ]
    };
}

/// Flattens fixed-size groups into one array at compile time.
const fn concat_specs<S: Copy, const N: usize>(groups: &[&[S]]) -> [S; N] {
    // A placeholder is needed to initialise the array; it is overwritten below.
    let mut out = [groups[0][0]; N];
    let mut k = 0;
    let mut g = 0;
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].len() {
            out[k] = groups[g][i];
            k += 1;
            i += 1;
        }
        g += 1;
    }
    assert!(k == N, "group sizes do not add up to N");
    out
}

impl<S> Clone for ParamSpec<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for ParamSpec<S> {}

/// Number of parameters per stem.
pub const STEM_PARAM_COUNT: usize = 54;

/// Every per-stem parameter, in display order. The host ID of stem `n` (1-based) is
/// `"{id}_{n}"`, the display name `"Stem {n} {name}"`.
pub static STEM_PARAMS: [ParamSpec<StemSettings>; STEM_PARAM_COUNT] =
    concat_specs::<ParamSpec<StemSettings>, STEM_PARAM_COUNT>(&[
        &[
            float!("trim", "Trim", trim_db, -24.0, 24.0, Db, Linear),
            boolean!("invert", "Invert", invert),
            boolean!("eq_on", "EQ On", eq.enabled),
            boolean!("hpf_on", "HPF On", eq.hpf_enabled),
            float!("hpf_freq", "HPF Freq", eq.hpf_hz, 10.0, 1000.0, Hz, Log),
            choice!(
                "hpf_slope",
                "HPF Slope",
                eq.hpf_slope,
                SLOPES,
                slope_index,
                slope_from
            ),
        ],
        &band!("low_shelf", "Low Shelf", eq.low_shelf, 0.3, 2.0),
        &band!("bell1", "Bell 1", eq.bell1, 0.1, 10.0),
        &band!("bell2", "Bell 2", eq.bell2, 0.1, 10.0),
        &band!("high_shelf", "High Shelf", eq.high_shelf, 0.3, 2.0),
        &[
            boolean!("lpf_on", "LPF On", eq.lpf_enabled),
            float!("lpf_freq", "LPF Freq", eq.lpf_hz, 1000.0, 22_000.0, Hz, Log),
            boolean!("dyn_eq_on", "Dyn EQ On", dyn_eq.enabled),
            float!(
                "dyn_eq_freq",
                "Dyn EQ Freq",
                dyn_eq.freq_hz,
                20.0,
                20_000.0,
                Hz,
                Log
            ),
            float!("dyn_eq_q", "Dyn EQ Q", dyn_eq.q, 0.1, 10.0, Plain, Log),
            float!(
                "dyn_eq_threshold",
                "Dyn EQ Threshold",
                dyn_eq.threshold_db,
                -60.0,
                0.0,
                Db,
                Linear
            ),
            float!(
                "dyn_eq_ratio",
                "Dyn EQ Ratio",
                dyn_eq.ratio,
                1.0,
                20.0,
                Ratio,
                Log
            ),
            float!(
                "dyn_eq_range",
                "Dyn EQ Range",
                dyn_eq.range_db,
                0.0,
                24.0,
                Db,
                Linear
            ),
            float!(
                "dyn_eq_attack",
                "Dyn EQ Attack",
                dyn_eq.attack_ms,
                0.1,
                100.0,
                Ms,
                Log
            ),
            float!(
                "dyn_eq_release",
                "Dyn EQ Release",
                dyn_eq.release_ms,
                10.0,
                2000.0,
                Ms,
                Log
            ),
        ],
        &compressor!("comp", "Comp", comp),
        &[
            boolean!("sat_on", "Sat On", sat.enabled),
            float!(
                "sat_drive",
                "Sat Drive",
                sat.drive_db,
                0.0,
                24.0,
                Db,
                Linear
            ),
            float!("sat_mix", "Sat Mix", sat.mix, 0.0, 1.0, Percent, Linear),
        ],
        &stereo!("", "", stereo),
        &[
            float!("output", "Output", output_db, -24.0, 24.0, Db, Linear),
            boolean!("mute", "Mute", mute),
            boolean!("solo", "Solo", solo),
        ],
    ]);

/// Number of global (non-stem) parameters.
pub const GLOBAL_PARAM_COUNT: usize = 42;

/// The master chain, the main input, monitoring and bypass, in display order.
pub static GLOBAL_PARAMS: [ParamSpec<EngineSettings>; GLOBAL_PARAM_COUNT] =
    concat_specs::<ParamSpec<EngineSettings>, GLOBAL_PARAM_COUNT>(&[
        &[float!(
            "master_drive",
            "Master Drive",
            master.drive_db,
            -24.0,
            24.0,
            Db,
            Linear
        )],
        &compressor!("master_glue", "Master Glue", master.glue),
        &[boolean!("master_eq_on", "Master EQ On", master.eq.enabled)],
        &band!(
            "master_low_shelf",
            "Master Low Shelf",
            master.eq.low_shelf,
            0.3,
            2.0
        ),
        &band!("master_bell", "Master Bell", master.eq.bell, 0.1, 10.0),
        &band!(
            "master_high_shelf",
            "Master High Shelf",
            master.eq.high_shelf,
            0.3,
            2.0
        ),
        &[
            float!(
                "master_tilt",
                "Master Tilt",
                master.eq.tilt_db,
                -6.0,
                6.0,
                Db,
                Linear
            ),
            float!(
                "master_tilt_freq",
                "Master Tilt Freq",
                master.eq.tilt_hz,
                200.0,
                5000.0,
                Hz,
                Log
            ),
        ],
        &stereo!("master_", "Master ", master.stereo),
        &[
            boolean!(
                "master_limiter_on",
                "Master Limiter On",
                master.limiter.enabled
            ),
            float!(
                "master_ceiling",
                "Master Ceiling",
                master.limiter.ceiling_dbtp,
                -20.0,
                0.0,
                Dbtp,
                Linear
            ),
            float!(
                "master_limiter_release",
                "Master Limiter Release",
                master.limiter.release_ms,
                1.0,
                1000.0,
                Ms,
                Log
            ),
            boolean!(
                "master_limiter_auto_release",
                "Master Limiter Auto Release",
                master.limiter.auto_release
            ),
            float!(
                "master_output",
                "Master Output",
                master.output_db,
                -24.0,
                0.0,
                Db,
                Linear
            ),
            float!(
                "master_target",
                "Master Target",
                master.target_lufs,
                -30.0,
                -5.0,
                Lufs,
                Linear
            ),
            choice!(
                "main_input_role",
                "Main Input Role",
                main_input,
                ROLES,
                role_index,
                role_from
            ),
            choice!(
                "monitor_source",
                "Monitor Source",
                monitor.source,
                SOURCES,
                source_index,
                source_from
            ),
            boolean!("loudness_match", "Loudness Match", monitor.loudness_match),
            ParamSpec {
                id: BYPASS_ID,
                name: "Bypass",
                kind: ParamKind::Bool,
                get: |_| 0.0,
                set: |_, _| {},
            },
        ],
    ]);

/// Total number of host parameters.
pub const PARAM_COUNT: usize = STEM_PARAM_COUNT * MAX_STEMS + GLOBAL_PARAM_COUNT;

/// Host ID of a stem parameter: `"{id}_{stem + 1}"` (`stem` is 0-based).
pub fn stem_param_id(id: &str, stem: usize) -> String {
    format!("{id}_{}", stem + 1)
}

/// Display name of a stem parameter: `"Stem {stem + 1} {name}"` (`stem` is 0-based).
pub fn stem_param_name(name: &str, stem: usize) -> String {
    format!("Stem {} {name}", stem + 1)
}

/// Default display name of a stem (0-based index): "Stem 1" … "Stem 8".
pub fn default_stem_name(stem: usize) -> String {
    format!("Stem {}", stem + 1)
}

/// A resolved host parameter: a stem parameter of one stem, or a global one.
#[derive(Debug, Clone, Copy)]
pub enum ParamRef {
    /// `spec` of stem `stem` (0-based).
    Stem {
        /// Stem index, 0-based.
        stem: usize,
        /// Table entry.
        spec: &'static ParamSpec<StemSettings>,
    },
    /// A global parameter.
    Global(&'static ParamSpec<EngineSettings>),
}

impl ParamRef {
    /// Resolves a host parameter ID (`"comp_threshold_3"`, `"master_ceiling"`).
    pub fn lookup(id: &str) -> Option<Self> {
        if let Some(spec) = GLOBAL_PARAMS.iter().find(|p| p.id == id) {
            return Some(Self::Global(spec));
        }
        let (base, n) = id.rsplit_once('_')?;
        let n: usize = n.parse().ok()?;
        if !(1..=MAX_STEMS).contains(&n) || n.to_string().len() != id.len() - base.len() - 1 {
            return None;
        }
        let spec = STEM_PARAMS.iter().find(|p| p.id == base)?;
        Some(Self::Stem { stem: n - 1, spec })
    }

    /// Every host parameter: stems 1..8 in table order, then the globals.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..MAX_STEMS)
            .flat_map(|stem| {
                STEM_PARAMS
                    .iter()
                    .map(move |spec| Self::Stem { stem, spec })
            })
            .chain(GLOBAL_PARAMS.iter().map(Self::Global))
    }

    /// Host ID.
    pub fn id(&self) -> String {
        match self {
            Self::Stem { stem, spec } => stem_param_id(spec.id, *stem),
            Self::Global(spec) => spec.id.to_owned(),
        }
    }

    /// Display name, e.g. "Stem 3 Comp Threshold".
    pub fn name(&self) -> String {
        match self {
            Self::Stem { stem, spec } => stem_param_name(spec.name, *stem),
            Self::Global(spec) => spec.name.to_owned(),
        }
    }

    /// Type and range.
    pub fn kind(&self) -> ParamKind {
        match self {
            Self::Stem { spec, .. } => spec.kind,
            Self::Global(spec) => spec.kind,
        }
    }

    /// Whether this is the plugin's bypass switch (no engine field).
    pub fn is_bypass(&self) -> bool {
        matches!(self, Self::Global(spec) if spec.id == BYPASS_ID)
    }

    /// Numeric value in `settings` (bool 0/1, enum variant index).
    pub fn get(&self, settings: &EngineSettings) -> f32 {
        match self {
            Self::Stem { stem, spec } => (spec.get)(&settings.stems[*stem]),
            Self::Global(spec) => (spec.get)(settings),
        }
    }

    /// Writes `value` into `settings`, sanitised for the kind (clamped; a non-finite value
    /// leaves the field unchanged). Real-time safe.
    pub fn set(&self, settings: &mut EngineSettings, value: f32) {
        let value = self.kind().sanitize(value, self.get(settings));
        match self {
            Self::Stem { stem, spec } => (spec.set)(&mut settings.stems[*stem], value),
            Self::Global(spec) => (spec.set)(settings, value),
        }
    }

    /// Default value: the value in `EngineSettings::default()`.
    pub fn default_value(&self) -> f32 {
        self.get(&EngineSettings::default())
    }
}

/// One saved parameter value: serde's external tagging of nice-plug's `ParamValue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateValue {
    /// A float parameter's plain value.
    F32(f32),
    /// An int parameter, or an enum parameter's variant index.
    I32(i32),
    /// A bool parameter.
    Bool(bool),
    /// An enum parameter's stable variant ID.
    String(String),
}

/// The saved state, shaped like nice-plug's `PluginState`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// Plugin crate version that wrote the state (informational).
    #[serde(default)]
    pub version: String,
    /// Parameter values by host ID.
    pub params: BTreeMap<String, StateValue>,
    /// `#[persist]` fields, each a JSON document in a string.
    pub fields: BTreeMap<String, String>,
}

/// Why a saved state could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum StateError {
    /// Not JSON of the `PluginState` shape.
    Json(String),
    /// No `state_version` field: not a Stembus state.
    NotStembus,
    /// The `state_version` field is not a number.
    BadVersion(String),
    /// Written by a newer Stembus with an unknown layout.
    UnsupportedVersion(u32),
    /// A parameter has a value of the wrong type or an unknown enum variant.
    BadValue {
        /// Host parameter ID.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The stem-names field is not a JSON array of strings.
    BadStemNames(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "state is not valid JSON state: {e}"),
            Self::NotStembus => write!(f, "not a Stembus state (no '{FIELD_STATE_VERSION}' field)"),
            Self::BadVersion(v) => write!(f, "state version {v:?} is not a number"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "state version {v} is newer than this Stembus understands ({STATE_VERSION})"
            ),
            Self::BadValue { id, reason } => write!(f, "parameter '{id}': {reason}"),
            Self::BadStemNames(e) => write!(f, "stem names: {e}"),
        }
    }
}

impl std::error::Error for StateError {}

/// A parsed and validated state.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedState {
    /// Settings: defaults overwritten by every known parameter in the state.
    pub settings: EngineSettings,
    /// Stem display names, exactly [`MAX_STEMS`] of them (missing ones get "Stem n").
    pub stem_names: Vec<String>,
    /// The state's layout version.
    pub state_version: u32,
    /// Whether the bypass parameter was on.
    pub bypass: bool,
    /// Parameter IDs in the state that this version does not know (ignored).
    pub unknown_ids: Vec<String>,
}

/// Checks the `state_version` field of a state's `fields`.
pub fn check_state_version(fields: &BTreeMap<String, String>) -> Result<u32, StateError> {
    let raw = fields
        .get(FIELD_STATE_VERSION)
        .ok_or(StateError::NotStembus)?;
    let version: u32 =
        serde_json::from_str(raw).map_err(|_| StateError::BadVersion(raw.clone()))?;
    if version == 0 {
        return Err(StateError::BadVersion(raw.clone()));
    }
    if version > STATE_VERSION {
        return Err(StateError::UnsupportedVersion(version));
    }
    Ok(version)
}

/// Numeric value of a saved parameter for its kind, or why it does not fit.
fn value_for(kind: ParamKind, value: &StateValue) -> Result<f32, String> {
    match (kind, value) {
        (ParamKind::Float { .. }, StateValue::F32(v)) if v.is_finite() => Ok(*v),
        (ParamKind::Bool, StateValue::Bool(b)) => Ok(bool_value(*b)),
        (ParamKind::Enum { variants }, StateValue::String(id)) => variants
            .iter()
            .position(|v| v.id == id)
            .map(|i| i as f32)
            .ok_or_else(|| format!("unknown variant {id:?}")),
        (ParamKind::Enum { variants }, StateValue::I32(i))
            if (0..variants.len() as i32).contains(i) =>
        {
            Ok(*i as f32)
        }
        (kind, value) => Err(format!("value {value:?} does not fit a {kind:?} parameter")),
    }
}

/// Parses and validates a saved state (nice-plug's JSON), without the compression nice-plug's
/// optional `zstd` feature would add (the plugin does not enable it).
pub fn parse_state_json(json: &str) -> Result<ParsedState, StateError> {
    let state: SavedState =
        serde_json::from_str(json).map_err(|e| StateError::Json(e.to_string()))?;
    let state_version = check_state_version(&state.fields)?;
    let mut settings = EngineSettings::default();
    let mut bypass = false;
    let mut unknown_ids = Vec::new();
    for (id, value) in &state.params {
        let Some(param) = ParamRef::lookup(id) else {
            unknown_ids.push(id.clone());
            continue;
        };
        let v = value_for(param.kind(), value).map_err(|reason| StateError::BadValue {
            id: id.clone(),
            reason,
        })?;
        if param.is_bypass() {
            bypass = v > 0.5;
        }
        param.set(&mut settings, v);
    }
    let mut stem_names: Vec<String> = match state.fields.get(FIELD_STEM_NAMES) {
        Some(raw) => {
            serde_json::from_str(raw).map_err(|e| StateError::BadStemNames(e.to_string()))?
        }
        None => Vec::new(),
    };
    stem_names.truncate(MAX_STEMS);
    while stem_names.len() < MAX_STEMS {
        stem_names.push(default_stem_name(stem_names.len()));
    }
    Ok(ParsedState {
        settings,
        stem_names,
        state_version,
        bypass,
        unknown_ids,
    })
}

/// Reads the engine settings and the stem names (always [`MAX_STEMS`]) from the plugin's saved
/// state JSON. Parameters missing from the state keep their defaults; unknown IDs are ignored.
pub fn settings_from_state_json(json: &str) -> Result<(EngineSettings, Vec<String>), StateError> {
    parse_state_json(json).map(|s| (s.settings, s.stem_names))
}

/// Saved-state value of `param` in `settings`.
fn state_value(param: &ParamRef, settings: &EngineSettings) -> StateValue {
    let v = param.get(settings);
    match param.kind() {
        ParamKind::Float { .. } => StateValue::F32(v),
        ParamKind::Bool => StateValue::Bool(v > 0.5),
        ParamKind::Enum { variants } => {
            StateValue::String(variants[(v as usize).min(variants.len() - 1)].id.to_owned())
        }
    }
}

/// Builds the saved state for `settings` and `stem_names` (bypass off), as the plugin would
/// save it.
pub fn settings_to_state(settings: &EngineSettings, stem_names: &[String]) -> SavedState {
    let params = ParamRef::all()
        .map(|p| (p.id(), state_value(&p, settings)))
        .collect();
    let names: Vec<String> = (0..MAX_STEMS)
        .map(|i| {
            stem_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| default_stem_name(i))
        })
        .collect();
    let mut fields = BTreeMap::new();
    fields.insert(FIELD_STATE_VERSION.to_owned(), STATE_VERSION.to_string());
    fields.insert(
        FIELD_STEM_NAMES.to_owned(),
        serde_json::to_string(&names).expect("strings serialise"),
    );
    SavedState {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        params,
        fields,
    }
}

/// The saved-state JSON for `settings` and `stem_names` (missing names become "Stem n"), in the
/// format the plugin saves and loads.
pub fn settings_to_state_json(settings: &EngineSettings, stem_names: &[String]) -> String {
    serde_json::to_string_pretty(&settings_to_state(settings, stem_names))
        .expect("state serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A settings value with every parameter moved off its default (deterministically).
    fn scrambled() -> EngineSettings {
        let mut s = EngineSettings::default();
        for (k, p) in ParamRef::all().enumerate() {
            let v = match p.kind() {
                ParamKind::Float { min, max, .. } => {
                    min + (max - min) * (0.1 + 0.8 * ((k * 37 % 101) as f32 / 101.0))
                }
                ParamKind::Bool => 1.0 - p.default_value(),
                ParamKind::Enum { variants } => {
                    ((p.default_value() as usize + 1) % variants.len()) as f32
                }
            };
            p.set(&mut s, v);
        }
        s
    }

    #[test]
    fn ids_and_names_are_unique_and_resolve() {
        let all: Vec<ParamRef> = ParamRef::all().collect();
        assert_eq!(all.len(), PARAM_COUNT);
        let ids: HashSet<String> = all.iter().map(ParamRef::id).collect();
        let names: HashSet<String> = all.iter().map(ParamRef::name).collect();
        assert_eq!(ids.len(), PARAM_COUNT);
        assert_eq!(names.len(), PARAM_COUNT);
        for p in &all {
            let back = ParamRef::lookup(&p.id()).expect("lookup");
            assert_eq!(back.id(), p.id());
            assert_eq!(back.name(), p.name());
        }
        assert!(ParamRef::lookup("comp_threshold_0").is_none());
        assert!(ParamRef::lookup("comp_threshold_9").is_none());
        assert!(ParamRef::lookup("comp_threshold_03").is_none());
        assert!(ParamRef::lookup("nonsense").is_none());
        assert_eq!(
            ParamRef::lookup("comp_threshold_3").unwrap().name(),
            "Stem 3 Comp Threshold"
        );
    }

    #[test]
    fn defaults_lie_in_range() {
        for p in ParamRef::all() {
            let d = p.default_value();
            assert_eq!(p.kind().sanitize(d, f32::NAN), d, "{}", p.id());
        }
    }

    #[test]
    fn every_parameter_writes_its_own_field() {
        // Setting one parameter must change exactly that parameter's reading.
        let base = EngineSettings::default();
        let all: Vec<ParamRef> = ParamRef::all().filter(|p| !p.is_bypass()).collect();
        for p in &all {
            let mut s = base.clone();
            let v = match p.kind() {
                ParamKind::Float { min, max, .. } => {
                    if p.default_value() == max {
                        min
                    } else {
                        max
                    }
                }
                ParamKind::Bool => 1.0 - p.default_value(),
                ParamKind::Enum { variants } => {
                    ((p.default_value() as usize + 1) % variants.len()) as f32
                }
            };
            p.set(&mut s, v);
            assert_eq!(p.get(&s), v, "{}", p.id());
            assert_ne!(s, base, "{} changed nothing", p.id());
            for q in &all {
                if q.id() != p.id() {
                    assert_eq!(q.get(&s), q.get(&base), "{} also moved {}", p.id(), q.id());
                }
            }
        }
    }

    #[test]
    fn json_round_trip_restores_settings_and_names() {
        let s = scrambled();
        let names: Vec<String> = ["Drums", "Bass", "Keys"].map(String::from).to_vec();
        let json = settings_to_state_json(&s, &names);
        let parsed = parse_state_json(&json).unwrap();
        assert_eq!(parsed.settings, s);
        assert_eq!(parsed.stem_names.len(), MAX_STEMS);
        assert_eq!(&parsed.stem_names[..3], &names[..]);
        assert_eq!(parsed.stem_names[7], "Stem 8");
        assert!(parsed.unknown_ids.is_empty());
        assert!(!parsed.bypass);
    }

    #[test]
    fn reads_nice_plug_shape() {
        let json = r#"{"version":"0.1.0","params":{
            "comp_threshold_3":{"f32":-20.0},"comp_on_3":{"bool":true},
            "hpf_slope_1":{"string":"db48"},"comp_key_2":{"i32":1},
            "master_ceiling":{"f32":-40.0},"bypass":{"bool":true},"future_param":{"f32":1.0}},
            "fields":{"state_version":"1","stem_names":"[\"Drums\"]"}}"#;
        let p = parse_state_json(json).unwrap();
        assert_eq!(p.settings.stems[2].comp.threshold_db, -20.0);
        assert!(p.settings.stems[2].comp.enabled);
        assert_eq!(p.settings.stems[0].eq.hpf_slope, FilterSlope::Db48);
        assert_eq!(p.settings.stems[1].comp.key, CompKey::Mix);
        assert_eq!(
            p.settings.master.limiter.ceiling_dbtp, -20.0,
            "clamped to range"
        );
        assert!(p.bypass);
        assert_eq!(p.unknown_ids, vec!["future_param".to_owned()]);
        assert_eq!(p.stem_names[0], "Drums");
    }

    #[test]
    fn rejects_foreign_and_corrupt_states() {
        let ok_fields = r#""fields":{"state_version":"1"}"#;
        let cases = [
            ("not json", "{"),
            ("foreign", r#"{"params":{},"fields":{}}"#),
            ("newer", r#"{"params":{},"fields":{"state_version":"99"}}"#),
            (
                "bad version",
                r#"{"params":{},"fields":{"state_version":"\"x\""}}"#,
            ),
            (
                "bool for float",
                &format!(r#"{{"params":{{"trim_1":{{"bool":true}}}},{ok_fields}}}"#),
            ),
            (
                "bad enum",
                &format!(r#"{{"params":{{"hpf_slope_1":{{"string":"db6"}}}},{ok_fields}}}"#),
            ),
            (
                "bad index",
                &format!(r#"{{"params":{{"hpf_slope_1":{{"i32":7}}}},{ok_fields}}}"#),
            ),
            (
                "bad names",
                r#"{"params":{},"fields":{"state_version":"1","stem_names":"[1]"}}"#,
            ),
        ];
        for (what, json) in cases {
            assert!(parse_state_json(json).is_err(), "{what} accepted");
        }
    }
}
