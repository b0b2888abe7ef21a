//! Reading a bundle's `config.json`.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

pub const CONFIG: &str = "config.json";

/// Loads `BUNDLE/config.json`, with errors that name the file and, for bad
/// JSON, the line and column.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join(CONFIG);
    let text = std::fs::read(&path).map_err(|e| Error::Bundle {
        path: path.clone(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file: a bundle needs a config.json (`isoexec spec` writes one)".into()
            }
            _ => e.to_string(),
        },
    })?;
    parse(&path, &text)
}

/// Parses the text of a config.json (`path` names it in errors).
pub fn parse(path: &Path, text: &[u8]) -> Result<Spec> {
    serde_json::from_slice(text).map_err(|e| Error::Bundle {
        path: path.to_path_buf(),
        reason: format!("not a valid OCI runtime spec: {e}"),
    })
}
