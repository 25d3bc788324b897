//! The `--settings` file: either the plugin's saved state (nice-plug `PluginState` JSON, read
//! with [`stembus_dsp::state::parse_state_json`], so the offline tool renders what the plugin
//! would) or a plain [`EngineSettings`] JSON object (any subset of its fields; the rest keep their
//! defaults; an unknown field is an error).

use std::path::Path;

use serde_json::Value;
use stembus_dsp::settings::EngineSettings;
use stembus_dsp::state::parse_state_json;

use crate::error::{CliError, Result};
use crate::targets::merge;

/// A loaded settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSettings {
    /// The engine settings.
    pub settings: EngineSettings,
    /// Stem names saved in the plugin state (one per slot), if the file is a plugin state.
    pub stem_names: Option<Vec<String>>,
    /// Notes for the user (unknown parameters, bypass on).
    pub notes: Vec<String>,
}

/// Reads and parses a settings file.
pub fn load(path: &Path) -> Result<LoadedSettings> {
    let name = path.display().to_string();
    let json = std::fs::read_to_string(path).map_err(|e| {
        CliError::input(format!(
            "cannot read {name}: {}",
            crate::error::io_reason(&e)
        ))
    })?;
    parse(&json, &name)
}

/// Parses settings JSON; `name` is used in messages.
pub fn parse(json: &str, name: &str) -> Result<LoadedSettings> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| CliError::input(format!("{name}: invalid JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(CliError::input(format!(
            "{name}: settings must be a JSON object"
        )));
    };
    if map.contains_key("params") || map.contains_key("fields") {
        let state = parse_state_json(json)
            .map_err(|e| CliError::input(format!("{name}: not a usable plugin state: {e}")))?;
        let mut notes = Vec::new();
        if !state.unknown_ids.is_empty() {
            notes.push(format!(
                "{name}: ignored {} unknown parameter(s): {}",
                state.unknown_ids.len(),
                state.unknown_ids.join(", ")
            ));
        }
        if state.bypass {
            notes.push(format!(
                "{name}: the plugin was bypassed when saved; rendering the processed sound anyway"
            ));
        }
        return Ok(LoadedSettings {
            settings: state.settings,
            stem_names: Some(state.stem_names),
            notes,
        });
    }
    let mut base = serde_json::to_value(EngineSettings::default())
        .map_err(|e| CliError::input(format!("cannot serialise settings: {e}")))?;
    merge(&mut base, &value, "settings")
        .map_err(|e| CliError::input(format!("{name}: {}", e.message)))?;
    let settings = serde_json::from_value(base)
        .map_err(|e| CliError::input(format!("{name}: invalid setting value: {e}")))?;
    Ok(LoadedSettings {
        settings,
        stem_names: None,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_engine_settings_json() {
        let s = parse(r#"{"master": {"drive_db": 3.0}}"#, "s.json").unwrap();
        assert_eq!(s.settings.master.drive_db, 3.0);
        assert_eq!(
            s.settings.master.limiter,
            EngineSettings::default().master.limiter
        );
        let e = parse(r#"{"master": {"drive": 3.0}}"#, "s.json").unwrap_err();
        assert!(e.message.contains("master.drive"), "{}", e.message);
        assert!(parse("[1,2]", "s.json").is_err());
        assert!(parse(r#"{"master": {"drive_db": "loud"}}"#, "s.json").is_err());
    }

    #[test]
    fn plugin_state_round_trip() {
        let mut settings = EngineSettings::default();
        settings.master.drive_db = 4.5;
        settings.stems[1].comp.enabled = true;
        let names: Vec<String> = ["Drums", "Bass"].map(String::from).to_vec();
        let json = stembus_dsp::state::settings_to_state_json(&settings, &names);
        let loaded = parse(&json, "state.json").unwrap();
        assert!((loaded.settings.master.drive_db - 4.5).abs() < 1e-4);
        assert!(loaded.settings.stems[1].comp.enabled);
        assert_eq!(loaded.stem_names.unwrap()[..2], names[..]);
    }
}
