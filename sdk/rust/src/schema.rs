//! JSON Schemas of action inputs and outputs, derived from their Rust types.

use schemars::JsonSchema;

/// The JSON Schema of `T`.
pub fn of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize")
}

/// Check that the schema file at `path` matches `T` (for a test). A missing
/// file is written (a new action's first test run creates its schemas); a
/// different one fails, unless `ALLAMA_BLESS=1` is set, which rewrites it.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_file<T: JsonSchema>(path: &str) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&of::<T>()).expect("schemas serialize") + "\n";
    if std::env::var_os("ALLAMA_BLESS").is_some() || !std::path::Path::new(path).exists() {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{path}: {e}"))?;
        }
        std::fs::write(path, &text).map_err(|e| format!("{path}: {e}"))?;
    }
    match std::fs::read_to_string(path) {
        Ok(committed) if committed == text => Ok(()),
        _ => Err(format!(
            "{path} does not match its Rust type: run the tests with ALLAMA_BLESS=1 and commit the file"
        )),
    }
}
