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

/// Parses the text of a config.json (`path` names it in errors, with the
/// field a wrong value is at: `process.user.uid: invalid type: ...`).
pub fn parse(path: &Path, text: &[u8]) -> Result<Spec> {
    // Tracking the path costs on every field; only a bad spec needs it, so
    // it is parsed again with it for the error.
    if let Ok(spec) = serde_json::from_slice(text) {
        return Ok(spec);
    }
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let reason = if field.is_empty() || field == "." {
            format!("not a valid OCI runtime spec: {inner}")
        } else {
            format!("not a valid OCI runtime spec: {field}: {inner}")
        };
        Error::Bundle {
            path: path.to_path_buf(),
            reason,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_value_is_reported_with_its_field_and_place() {
        let text = br#"{"ociVersion": "1.2.0", "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": "root", "gid": 0}}}"#;
        let e = parse(Path::new("/b/config.json"), text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/b/config.json: not a valid OCI runtime spec: process.user.uid: invalid type: string \"root\", expected u32"),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        let e = parse(Path::new("/b/config.json"), b"{\"ociVersion\": ")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("EOF while parsing") && !e.contains(": .:"),
            "{e}"
        );
    }
}
