//! Host parameters. Every parameter is built from the shared table in
//! [`stembus_dsp::state`]: its ID, display name, range, unit and default come from there, so the
//! plugin and the offline tool agree on the saved state. The `#[id]` strings below are the only
//! copy of the IDs on this side; `tests::plugin_ids_match_the_table` checks them against the
//! table.
//!
//! IDs and names: stem parameters are nested with `#[nested(array, group = "Stem")]`, which makes
//! the host ID `{id}_{n}` (e.g. `comp_threshold_3`) and the group "Stem n"; their display names
//! are "Stem n {name}" (e.g. "Stem 3 Comp Threshold") so automation lanes are unambiguous.
//! Master parameters are in the group "Master" and named "Master ...".

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock};

use nice_plug::prelude::*;
use stembus_dsp::MAX_STEMS;
use stembus_dsp::settings::EngineSettings;
use stembus_dsp::state::{self, ParamKind, ParamRef, Scale, Unit};

/// Builds a parameter of type `Self` from its table entry.
pub trait FromSpec: Sized {
    /// The parameter for `param`, with the table's name, range, default and formatting.
    fn from_spec(param: ParamRef) -> Self;
}

/// Parses the number at the start of `s`, ignoring a trailing unit ("-3.5 dB" → -3.5).
fn parse_number(s: &str) -> Option<f32> {
    s.trim()
        .trim_end_matches(|c: char| c.is_alphabetic() || c == ' ' || c == '%')
        .trim()
        .parse()
        .ok()
}

/// Skew factor that puts the geometric mean of `min..max` at the middle of the control
/// (`Skewed` maps `normalized = ((x − min) / (max − min))^factor`, so
/// `factor = ln 0.5 / ln((√(min·max) − min) / (max − min))`). `min` must be > 0.
fn log_skew(min: f32, max: f32) -> f32 {
    let mid = (min * max).sqrt();
    0.5f32.ln() / ((mid - min) / (max - min)).ln()
}

impl FromSpec for FloatParam {
    fn from_spec(param: ParamRef) -> Self {
        let ParamKind::Float {
            min,
            max,
            unit,
            scale,
        } = param.kind()
        else {
            panic!("{} is not a float parameter", param.id());
        };
        let range = match scale {
            Scale::Linear => FloatRange::Linear { min, max },
            Scale::Log => FloatRange::Skewed {
                min,
                max,
                factor: log_skew(min, max),
            },
        };
        let p = FloatParam::new(param.name(), param.default_value(), range);
        let p = match unit {
            Unit::Db => p
                .with_unit(" dB")
                .with_value_to_string(formatters::v2s_f32_rounded(1)),
            Unit::Dbtp => p
                .with_unit(" dBTP")
                .with_value_to_string(formatters::v2s_f32_rounded(1)),
            Unit::Lufs => p
                .with_unit(" LUFS")
                .with_value_to_string(formatters::v2s_f32_rounded(1)),
            Unit::Hz => p
                .with_value_to_string(formatters::v2s_f32_hz_then_khz(0))
                .with_string_to_value(formatters::s2v_f32_hz_then_khz()),
            Unit::Ms => p.with_unit(" ms").with_value_to_string(Arc::new(|ms| {
                if ms < 10.0 {
                    format!("{ms:.2}")
                } else {
                    format!("{ms:.1}")
                }
            })),
            Unit::Ratio => p
                .with_value_to_string(formatters::v2s_compression_ratio(1))
                .with_string_to_value(formatters::s2v_compression_ratio()),
            Unit::Percent => p
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            Unit::Plain => p.with_value_to_string(formatters::v2s_f32_rounded(2)),
            // Rounds before choosing the side, so that values within ±0.5 % of the centre show
            // as "C" (nice-plug's panning formatter picks the side first and shows "0L"/"0R",
            // which then parses back as the centre and fails the text round trip).
            Unit::Balance => p
                .with_value_to_string(Arc::new(|v: f32| {
                    let percent = (v * 100.0).round();
                    if percent < 0.0 {
                        format!("{:.0}L", -percent)
                    } else if percent > 0.0 {
                        format!("{percent:.0}R")
                    } else {
                        String::from("C")
                    }
                }))
                .with_string_to_value(formatters::s2v_f32_panning()),
        };
        match unit {
            Unit::Db | Unit::Dbtp | Unit::Lufs | Unit::Ms | Unit::Plain => {
                p.with_string_to_value(Arc::new(parse_number))
            }
            _ => p,
        }
    }
}

impl FromSpec for BoolParam {
    fn from_spec(param: ParamRef) -> Self {
        assert!(
            matches!(param.kind(), ParamKind::Bool),
            "{} is not a bool",
            param.id()
        );
        let p = BoolParam::new(param.name(), param.default_value() > 0.5);
        if param.is_bypass() {
            p.make_bypass()
                .with_value_to_string(formatters::v2s_bool_bypass())
                .with_string_to_value(formatters::s2v_bool_bypass())
        } else {
            p
        }
    }
}

impl<T: Enum + PartialEq + 'static> FromSpec for EnumParam<T> {
    fn from_spec(param: ParamRef) -> Self {
        assert!(
            matches!(param.kind(), ParamKind::Enum { .. }),
            "{} is not an enum",
            param.id()
        );
        EnumParam::new(param.name(), T::from_index(param.default_value() as usize))
    }
}

/// HPF slope (variant IDs and order as in the table).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slope {
    #[id = "db12"]
    #[name = "12 dB/oct"]
    Db12,
    #[id = "db24"]
    #[name = "24 dB/oct"]
    Db24,
    #[id = "db48"]
    #[name = "48 dB/oct"]
    Db48,
}

/// Compressor character.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Character {
    #[id = "clean"]
    Clean,
    #[id = "opto"]
    Opto,
}

/// Compressor detector key.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    #[id = "own"]
    Own,
    #[id = "mix"]
    Mix,
}

/// What the main input is used for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainRole {
    #[id = "ignore"]
    Ignore,
    #[id = "add_to_sum"]
    #[name = "Add to Sum"]
    AddToSum,
    #[id = "reference_mix"]
    #[name = "Reference Mix"]
    ReferenceMix,
    #[id = "reference_track"]
    #[name = "Reference Track"]
    ReferenceTrack,
}

/// Monitored path.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    #[id = "processed"]
    Processed,
    #[id = "unprocessed"]
    Unprocessed,
    #[id = "reference"]
    Reference,
}

/// Declares a `Params` struct whose fields are built from the table; `$id` is both the
/// `#[id]` attribute and the table key (a stem parameter's base ID).
macro_rules! table_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($field:ident: $ty:ty = $id:tt,)* }) => {
        $(#[$meta])*
        #[derive(Params)]
        pub struct $name {
            $(
                #[doc = concat!("Table parameter `", $id, "`.")]
                #[id = $id]
                pub $field: $ty,
            )*
        }

        impl $name {
            /// Builds every field from the table; `lookup` maps a table ID to the parameter.
            fn build(lookup: impl Fn(&str) -> ParamRef) -> Self {
                Self { $($field: FromSpec::from_spec(lookup($id)),)* }
            }
        }
    };
}

table_params! {
    /// One stem's controls (every field of `StemSettings`).
    pub struct StemParams {
        trim: FloatParam = "trim",
        invert: BoolParam = "invert",
        eq_on: BoolParam = "eq_on",
        hpf_on: BoolParam = "hpf_on",
        hpf_freq: FloatParam = "hpf_freq",
        hpf_slope: EnumParam<Slope> = "hpf_slope",
        low_shelf_on: BoolParam = "low_shelf_on",
        low_shelf_freq: FloatParam = "low_shelf_freq",
        low_shelf_gain: FloatParam = "low_shelf_gain",
        low_shelf_q: FloatParam = "low_shelf_q",
        bell1_on: BoolParam = "bell1_on",
        bell1_freq: FloatParam = "bell1_freq",
        bell1_gain: FloatParam = "bell1_gain",
        bell1_q: FloatParam = "bell1_q",
        bell2_on: BoolParam = "bell2_on",
        bell2_freq: FloatParam = "bell2_freq",
        bell2_gain: FloatParam = "bell2_gain",
        bell2_q: FloatParam = "bell2_q",
        high_shelf_on: BoolParam = "high_shelf_on",
        high_shelf_freq: FloatParam = "high_shelf_freq",
        high_shelf_gain: FloatParam = "high_shelf_gain",
        high_shelf_q: FloatParam = "high_shelf_q",
        lpf_on: BoolParam = "lpf_on",
        lpf_freq: FloatParam = "lpf_freq",
        dyn_eq_on: BoolParam = "dyn_eq_on",
        dyn_eq_freq: FloatParam = "dyn_eq_freq",
        dyn_eq_q: FloatParam = "dyn_eq_q",
        dyn_eq_threshold: FloatParam = "dyn_eq_threshold",
        dyn_eq_ratio: FloatParam = "dyn_eq_ratio",
        dyn_eq_range: FloatParam = "dyn_eq_range",
        dyn_eq_attack: FloatParam = "dyn_eq_attack",
        dyn_eq_release: FloatParam = "dyn_eq_release",
        comp_on: BoolParam = "comp_on",
        comp_threshold: FloatParam = "comp_threshold",
        comp_ratio: FloatParam = "comp_ratio",
        comp_knee: FloatParam = "comp_knee",
        comp_attack: FloatParam = "comp_attack",
        comp_release: FloatParam = "comp_release",
        comp_auto_release: BoolParam = "comp_auto_release",
        comp_makeup: FloatParam = "comp_makeup",
        comp_mix: FloatParam = "comp_mix",
        comp_character: EnumParam<Character> = "comp_character",
        comp_key: EnumParam<Key> = "comp_key",
        sat_on: BoolParam = "sat_on",
        sat_drive: FloatParam = "sat_drive",
        sat_mix: FloatParam = "sat_mix",
        stereo_on: BoolParam = "stereo_on",
        width: FloatParam = "width",
        mono_bass: BoolParam = "mono_bass",
        mono_bass_freq: FloatParam = "mono_bass_freq",
        balance: FloatParam = "balance",
        output: FloatParam = "output",
        mute: BoolParam = "mute",
        solo: BoolParam = "solo",
    }
}

table_params! {
    /// The master chain (every field of `MasterSettings`).
    pub struct MasterParams {
        drive: FloatParam = "master_drive",
        glue_on: BoolParam = "master_glue_on",
        glue_threshold: FloatParam = "master_glue_threshold",
        glue_ratio: FloatParam = "master_glue_ratio",
        glue_knee: FloatParam = "master_glue_knee",
        glue_attack: FloatParam = "master_glue_attack",
        glue_release: FloatParam = "master_glue_release",
        glue_auto_release: BoolParam = "master_glue_auto_release",
        glue_makeup: FloatParam = "master_glue_makeup",
        glue_mix: FloatParam = "master_glue_mix",
        glue_character: EnumParam<Character> = "master_glue_character",
        glue_key: EnumParam<Key> = "master_glue_key",
        eq_on: BoolParam = "master_eq_on",
        low_shelf_on: BoolParam = "master_low_shelf_on",
        low_shelf_freq: FloatParam = "master_low_shelf_freq",
        low_shelf_gain: FloatParam = "master_low_shelf_gain",
        low_shelf_q: FloatParam = "master_low_shelf_q",
        bell_on: BoolParam = "master_bell_on",
        bell_freq: FloatParam = "master_bell_freq",
        bell_gain: FloatParam = "master_bell_gain",
        bell_q: FloatParam = "master_bell_q",
        high_shelf_on: BoolParam = "master_high_shelf_on",
        high_shelf_freq: FloatParam = "master_high_shelf_freq",
        high_shelf_gain: FloatParam = "master_high_shelf_gain",
        high_shelf_q: FloatParam = "master_high_shelf_q",
        tilt: FloatParam = "master_tilt",
        tilt_freq: FloatParam = "master_tilt_freq",
        stereo_on: BoolParam = "master_stereo_on",
        width: FloatParam = "master_width",
        mono_bass: BoolParam = "master_mono_bass",
        mono_bass_freq: FloatParam = "master_mono_bass_freq",
        balance: FloatParam = "master_balance",
        limiter_on: BoolParam = "master_limiter_on",
        ceiling: FloatParam = "master_ceiling",
        limiter_release: FloatParam = "master_limiter_release",
        limiter_auto_release: BoolParam = "master_limiter_auto_release",
        output: FloatParam = "master_output",
        target: FloatParam = "master_target",
    }
}

table_params! {
    /// Main-input role, monitoring and bypass.
    pub struct GlobalParams {
        main_input_role: EnumParam<MainRole> = "main_input_role",
        monitor_source: EnumParam<Source> = "monitor_source",
        loudness_match: BoolParam = "loudness_match",
        bypass: BoolParam = "bypass",
    }
}

/// All host parameters and the persisted non-parameter state.
#[derive(Params)]
pub struct StembusParams {
    /// Saved-state layout version ([`state::STATE_VERSION`]); `filter_state` checks and migrates
    /// it. Written only on the main thread.
    #[persist = "state_version"]
    pub state_version: AtomicU32,
    /// Stem display names, [`MAX_STEMS`] of them. Read and written on the GUI/main thread only
    /// (never on the audio thread), so the lock is harmless.
    #[persist = "stem_names"]
    pub stem_names: Arc<RwLock<Vec<String>>>,
    /// Per-stem parameters: IDs `{id}_{n}`, groups "Stem n".
    #[nested(array, group = "Stem")]
    pub stems: [StemParams; MAX_STEMS],
    /// Master chain.
    #[nested(group = "Master")]
    pub master: MasterParams,
    /// Main-input role, monitoring, bypass.
    #[nested]
    pub global: GlobalParams,
}

impl Default for StembusParams {
    fn default() -> Self {
        let global = |id: &str| ParamRef::lookup(id).unwrap_or_else(|| panic!("no param {id}"));
        Self {
            state_version: AtomicU32::new(state::STATE_VERSION),
            stem_names: Arc::new(RwLock::new(
                (0..MAX_STEMS).map(state::default_stem_name).collect(),
            )),
            stems: std::array::from_fn(|stem| {
                StemParams::build(|id| global(&state::stem_param_id(id, stem)))
            }),
            master: MasterParams::build(global),
            global: GlobalParams::build(global),
        }
    }
}

impl StembusParams {
    /// Sets stem `stem`'s (0-based) display name. Main/GUI thread only.
    pub fn set_stem_name(&self, stem: usize, name: &str) {
        if let Ok(mut names) = self.stem_names.write()
            && let Some(slot) = names.get_mut(stem)
        {
            name.clone_into(slot);
        }
    }

    /// Stem `stem`'s (0-based) display name.
    pub fn stem_name(&self, stem: usize) -> String {
        self.stem_names
            .read()
            .ok()
            .and_then(|names| names.get(stem).cloned())
            .unwrap_or_else(|| state::default_stem_name(stem))
    }
}

/// Connects every host parameter to its engine-settings field: built once on the main thread
/// from the `Params` map, then read on the audio thread without allocation.
pub struct Bindings {
    /// `(parameter, table entry)` for every parameter with an engine field.
    params: Vec<(ParamPtr, ParamRef)>,
}

impl Bindings {
    /// Resolves every parameter of `params` in the table. Panics on a parameter the table does
    /// not know (a programming error caught by the tests).
    pub fn new(params: &StembusParams) -> Self {
        let params = params
            .param_map()
            .into_iter()
            .filter_map(|(id, ptr, _group)| {
                let r = ParamRef::lookup(&id).unwrap_or_else(|| panic!("{id} not in the table"));
                (!r.is_bypass()).then_some((ptr, r))
            })
            .collect();
        Self { params }
    }

    /// Copies the current (modulated) parameter values into `settings`. Real-time safe.
    ///
    /// The `params` the bindings were made from must still be alive (the plugin keeps the `Arc`).
    pub fn apply(&self, settings: &mut EngineSettings) {
        for (ptr, r) in &self.params {
            // SAFETY: the pointers point into the `Arc<StembusParams>` that the plugin owns for as
            // long as it owns the bindings; parameter values are atomics.
            let value = unsafe { ptr.modulated_plain_value() };
            r.set(settings, value);
        }
    }

    /// Number of bound parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether no parameter is bound.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn param_map(p: &StembusParams) -> Vec<(String, ParamPtr, String)> {
        p.param_map()
    }

    #[test]
    fn plugin_ids_match_the_table() {
        let params = StembusParams::default();
        let plugin: BTreeSet<String> = param_map(&params).into_iter().map(|(id, ..)| id).collect();
        let table: BTreeSet<String> = ParamRef::all().map(|r| r.id()).collect();
        assert_eq!(plugin, table);
        assert_eq!(plugin.len(), state::PARAM_COUNT);
        assert_eq!(
            param_map(&params).len(),
            state::PARAM_COUNT,
            "duplicate IDs"
        );
    }

    #[test]
    fn names_groups_defaults_and_ranges_follow_the_table() {
        let params = StembusParams::default();
        for (id, ptr, group) in param_map(&params) {
            let r = ParamRef::lookup(&id).unwrap();
            // SAFETY: `params` is alive for the whole test.
            let (name, default, step_count) = unsafe {
                (
                    ptr.name().to_owned(),
                    ptr.default_plain_value(),
                    ptr.step_count(),
                )
            };
            assert_eq!(name, r.name(), "{id}");
            assert_eq!(default, r.default_value(), "{id}");
            match r {
                ParamRef::Stem { stem, .. } => assert_eq!(group, format!("Stem {}", stem + 1)),
                ParamRef::Global(spec) if spec.id.starts_with("master_") => {
                    assert_eq!(group, "Master")
                }
                ParamRef::Global(_) => assert_eq!(group, ""),
            }
            match r.kind() {
                ParamKind::Float { min, max, .. } => {
                    assert_eq!(step_count, None);
                    // SAFETY: as above.
                    let (lo, hi) = unsafe { (ptr.preview_plain(0.0), ptr.preview_plain(1.0)) };
                    assert!((lo - min).abs() < 1e-4 && (hi - max).abs() < 1e-2, "{id}");
                }
                ParamKind::Bool => assert_eq!(step_count, Some(1)),
                ParamKind::Enum { variants } => assert_eq!(step_count, Some(variants.len() - 1)),
            }
        }
        assert_eq!(
            params.stems[2].comp_threshold.name(),
            "Stem 3 Comp Threshold",
            "display names carry the stem number"
        );
        assert_eq!(params.master.ceiling.name(), "Master Ceiling");
    }

    #[test]
    fn enum_variants_match_the_table() {
        fn check<T: Enum>(id: &str) {
            let ParamKind::Enum { variants } = ParamRef::lookup(id).unwrap().kind() else {
                panic!("{id}")
            };
            let ids: Vec<&str> = variants.iter().map(|v| v.id).collect();
            let labels: Vec<&str> = variants.iter().map(|v| v.label).collect();
            assert_eq!(T::ids().unwrap(), &ids[..], "{id}");
            assert_eq!(T::variants(), &labels[..], "{id}");
        }
        check::<Slope>("hpf_slope_1");
        check::<Character>("comp_character_1");
        check::<Key>("comp_key_1");
        check::<Character>("master_glue_character");
        check::<Key>("master_glue_key");
        check::<MainRole>("main_input_role");
        check::<Source>("monitor_source");
    }

    #[test]
    fn bindings_write_every_field_from_its_parameter() {
        // Move every parameter to a distinct non-default value through the host-facing pointer,
        // apply the bindings, and compare the engine settings with the table's reading.
        let params = StembusParams::default();
        let bindings = Bindings::new(&params);
        assert_eq!(bindings.len(), state::PARAM_COUNT - 1, "all but bypass");
        let mut expected = EngineSettings::default();
        for (k, (id, ptr, _)) in param_map(&params).into_iter().enumerate() {
            let r = ParamRef::lookup(&id).unwrap();
            let normalized = match r.kind() {
                ParamKind::Float { .. } => 0.05 + 0.9 * ((k * 37 % 101) as f32 / 101.0),
                _ => 1.0 - unsafe { ptr.default_normalized_value() },
            };
            // SAFETY: `params` is alive.
            unsafe { ptr._internal_set_normalized_value(normalized) };
            r.set(&mut expected, unsafe { ptr.modulated_plain_value() });
        }
        let mut settings = EngineSettings::default();
        bindings.apply(&mut settings);
        assert_eq!(settings, expected);
        assert_ne!(settings, EngineSettings::default());
        // And the saved-state bridge reads the same settings back.
        let json = state::settings_to_state_json(&settings, &[]);
        assert_eq!(state::settings_from_state_json(&json).unwrap().0, settings);
    }

    #[test]
    fn formatting_round_trips() {
        let params = StembusParams::default();
        for (id, ptr, _) in param_map(&params) {
            // Dense around the middle too: a balance just off centre once read back as "0L".
            let dense = (0..=200).map(|i| 0.49 + i as f32 * 0.0001);
            for normalized in [0.0, 0.3, 0.77, 1.0].into_iter().chain(dense) {
                // SAFETY: `params` is alive.
                unsafe {
                    let text = ptr.normalized_value_to_string(normalized, true);
                    let back = ptr
                        .string_to_normalized_value(&text)
                        .unwrap_or_else(|| panic!("{id}: cannot parse {text:?}"));
                    let again = ptr.normalized_value_to_string(back, true);
                    assert_eq!(text, again, "{id}");
                }
            }
        }
        let p = &params.stems[0];
        assert_eq!(p.trim.to_string(), "0.0 dB");
        assert_eq!(p.hpf_freq.to_string(), "30 Hz");
        assert_eq!(p.comp_ratio.to_string(), "3.0:1");
        assert_eq!(p.comp_mix.to_string(), "100 %");
        assert_eq!(params.master.ceiling.to_string(), "-1.0 dBTP");
        assert_eq!(params.master.target.to_string(), "-14.0 LUFS");
    }

    #[test]
    fn stem_names_are_kept_per_stem() {
        let params = StembusParams::default();
        assert_eq!(params.stem_name(7), "Stem 8");
        params.set_stem_name(2, "Drums");
        assert_eq!(params.stem_name(2), "Drums");
        params.set_stem_name(99, "ignored");
        let fields = params.serialize_fields();
        let names: Vec<String> = serde_json::from_str(&fields[state::FIELD_STEM_NAMES]).unwrap();
        assert_eq!(names[2], "Drums");
        assert_eq!(
            fields[state::FIELD_STATE_VERSION],
            state::STATE_VERSION.to_string()
        );
    }
}
