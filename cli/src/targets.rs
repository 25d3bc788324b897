//! Delivery targets (`--deliver streaming,club,vinyl`) are data: a JSON object mapping a name
//! to a [`Target`]. The built-in set is `cli/presets/targets.json`, compiled in; a user's
//! `--targets-file` has the same shape and adds targets or replaces built-in ones by name.
//!
//! ```json
//! { "vinyl": {
//!     "description": "…",
//!     "target_lufs": null,          // integrated loudness to hit (±0.1 LU), or null
//!     "ceiling_dbtp": -3.0,         // limiter ceiling, true peak
//!     "max_limiter_gr_db": 1.0,     // without target_lufs: drive until the limiter reduces
//!                                   // the highest peak by this much (the most dynamic master)
//!     "stems": [ { "names": ["bass", "drum"],            // case-insensitive parts of file names
//!                  "settings": { "eq": { "hpf_enabled": true } } } ],  // merged into StemSettings
//!     "master": { "stereo": { "mono_bass": true } } } }  // merged into MasterSettings
//! ```
//! The `settings` and `master` objects are merged into the JSON form of the engine settings
//! (objects recursively, other values replaced); a key that is not a setting is an error, so a
//! typo never goes unnoticed.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use stembus_dsp::settings::EngineSettings;

use crate::error::{CliError, Result};

/// The built-in targets.
pub const BUILTIN_JSON: &str = include_str!("../presets/targets.json");

/// Settings merged into the stems whose names match.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemPatch {
    /// Case-insensitive substrings of stem names (file names without extension).
    pub names: Vec<String>,
    /// Partial `StemSettings` JSON.
    pub settings: Value,
}

/// One delivery target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Integrated loudness to reach, LUFS (−30..−5); `None` for no loudness target.
    #[serde(default)]
    pub target_lufs: Option<f32>,
    /// Limiter ceiling, dBTP (−20..0).
    pub ceiling_dbtp: f32,
    /// Without a loudness target: the largest limiter gain reduction wanted, dB (> 0). The drive
    /// is raised until the limiter takes this much off the highest peak. `None` (and no loudness
    /// target) renders at the settings' own drive.
    #[serde(default)]
    pub max_limiter_gr_db: Option<f32>,
    /// Per-stem settings by stem name.
    #[serde(default)]
    pub stems: Vec<StemPatch>,
    /// Partial `MasterSettings` JSON.
    #[serde(default)]
    pub master: Option<Value>,
}

/// Named targets.
pub type Targets = BTreeMap<String, Target>;

fn parse(json: &str, origin: &str) -> Result<Targets> {
    let targets: Targets = serde_json::from_str(json)
        .map_err(|e| CliError::input(format!("{origin}: invalid targets file: {e}")))?;
    for (name, t) in &targets {
        t.validate()
            .map_err(|why| CliError::input(format!("{origin}: target '{name}': {why}")))?;
    }
    Ok(targets)
}

/// The built-in targets, plus (replacing same-named ones) those of `user_file`.
pub fn load(user_file: Option<&Path>) -> Result<Targets> {
    let mut targets = parse(BUILTIN_JSON, "built-in targets")?;
    if let Some(path) = user_file {
        let json = std::fs::read_to_string(path).map_err(|e| {
            CliError::input(format!(
                "cannot read {}: {}",
                path.display(),
                crate::error::io_reason(&e)
            ))
        })?;
        targets.extend(parse(&json, &path.display().to_string())?);
    }
    Ok(targets)
}

/// Looks up the comma-separated `names` in `targets`, in the given order.
pub fn select<'a>(targets: &'a Targets, names: &[String]) -> Result<Vec<(String, &'a Target)>> {
    let mut out: Vec<(String, &Target)> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() || out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let t = targets.get(name).ok_or_else(|| {
            CliError::input(format!(
                "unknown delivery target '{name}' (known: {})",
                targets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        out.push((name.to_string(), t));
    }
    if out.is_empty() {
        return Err(CliError::input("--deliver names no target"));
    }
    Ok(out)
}

impl Target {
    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(l) = self.target_lufs
            && !(-30.0..=-5.0).contains(&l)
        {
            return Err(format!("target_lufs {l} is outside -30..-5"));
        }
        if !(-20.0..=0.0).contains(&self.ceiling_dbtp) {
            return Err(format!(
                "ceiling_dbtp {} is outside -20..0",
                self.ceiling_dbtp
            ));
        }
        if let Some(g) = self.max_limiter_gr_db
            && !(0.0..=24.0).contains(&g)
        {
            return Err(format!("max_limiter_gr_db {g} is outside 0..24"));
        }
        // Patches must name real settings: try them on the defaults.
        let names: Vec<String> = self.stems.iter().flat_map(|p| p.names.clone()).collect();
        self.apply(&EngineSettings::default(), &names)
            .map(drop)
            .map_err(|e| e.message)
    }

    /// The settings for this target: `base` with the stem and master patches merged in and the
    /// ceiling set. `stem_names[i]` names stem `i`.
    pub fn apply(&self, base: &EngineSettings, stem_names: &[String]) -> Result<EngineSettings> {
        let mut value = serde_json::to_value(base)
            .map_err(|e| CliError::input(format!("cannot serialise settings: {e}")))?;
        for patch in &self.stems {
            for (i, name) in stem_names.iter().enumerate() {
                let lower = name.to_lowercase();
                if patch
                    .names
                    .iter()
                    .any(|n| lower.contains(&n.to_lowercase()))
                {
                    let stem = &mut value["stems"][i];
                    merge(stem, &patch.settings, "stems")?;
                }
            }
        }
        if let Some(master) = &self.master {
            merge(&mut value["master"], master, "master")?;
        }
        let mut settings: EngineSettings = serde_json::from_value(value)
            .map_err(|e| CliError::input(format!("invalid setting value: {e}")))?;
        settings.master.limiter.ceiling_dbtp = self.ceiling_dbtp;
        settings.master.limiter.enabled = true;
        if let Some(l) = self.target_lufs {
            settings.master.target_lufs = l;
        }
        Ok(settings)
    }
}

/// Merges `patch` into `base` (objects recursively, other values replaced). Every key of the
/// patch must already exist in `base`.
pub fn merge(base: &mut Value, patch: &Value, path: &str) -> Result<()> {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                let here = format!("{path}.{k}");
                let Some(slot) = b.get_mut(k) else {
                    return Err(CliError::input(format!("unknown setting '{here}'")));
                };
                merge(slot, v, &here)?;
            }
            Ok(())
        }
        (Value::Object(_), p) => Err(CliError::input(format!(
            "setting '{path}' is a group of settings, not a value ({p} given)"
        ))),
        (b, p) => {
            *b = p.clone();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_vinyl_touches_only_bass_and_drums() {
        let targets = load(None).unwrap();
        assert_eq!(targets["streaming"].target_lufs, Some(-14.0));
        assert_eq!(targets["club"].target_lufs, Some(-8.0));
        let vinyl = &targets["vinyl"];
        assert_eq!(vinyl.ceiling_dbtp, -3.0);
        let names: Vec<String> = ["Drums", "keys", "bass_di"].map(String::from).to_vec();
        let s = vinyl.apply(&EngineSettings::default(), &names).unwrap();
        assert!(s.stems[0].eq.low_shelf.enabled && s.stems[0].eq.low_shelf.gain_db < 0.0);
        assert!(!s.stems[1].eq.low_shelf.enabled);
        assert!(s.stems[2].eq.hpf_enabled);
        assert_eq!(s.master.limiter.ceiling_dbtp, -3.0);
    }

    #[test]
    fn unknown_setting_is_an_error() {
        let json = r#"{"x": {"ceiling_dbtp": -1, "stems": [{"names": ["a"],
            "settings": {"eq": {"lowshelf": {"gain_db": 3}}}}]}}"#;
        let err = parse(json, "t.json").unwrap_err();
        assert!(err.message.contains("stems.eq.lowshelf"), "{}", err.message);
    }

    #[test]
    fn select_keeps_order_and_rejects_unknown() {
        let targets = load(None).unwrap();
        let names: Vec<String> = ["vinyl", "streaming"].map(String::from).to_vec();
        let sel = select(&targets, &names).unwrap();
        assert_eq!(sel[0].0, "vinyl");
        assert!(select(&targets, &["radio".to_string()]).is_err());
    }
}
