//! `rpcplugin_file`, the resource and the data source: paths, permissions, and
//! what each step of Terraform's lifecycle does to a file. No gRPC here: functions
//! from values to values and diagnostics, so they are tested directly.

use crate::diag::{attribute_error, error};
use crate::pb::Diagnostic;
use crate::value::Value;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The mode of a file whose configuration sets no `permissions`.
pub const DEFAULT_PERMISSIONS: &str = "0644";

/// The provider's configuration, once Terraform has configured it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Every path must resolve inside this absolute directory.
    pub root: Option<PathBuf>,
}

impl Config {
    /// The configuration from the `provider` block's value; relative roots are
    /// relative to the working directory (Terraform's, where the configuration is).
    pub fn from_value(value: &Value) -> Result<Config, Diagnostic> {
        match value.get("root") {
            Value::Null => Ok(Config::default()),
            Value::String(root) if root.is_empty() => Err(attribute_error(
                "root",
                "Invalid root",
                "root is empty; leave it out to allow every path, or name a directory.",
            )),
            Value::String(root) => Ok(Config {
                root: Some(normalize(&absolute(Path::new(root))?)),
            }),
            Value::Unknown => Err(attribute_error(
                "root",
                "Unknown root",
                "root must be known when the provider is configured; it cannot come from a \
                 resource that is not created yet.",
            )),
            _ => Err(attribute_error(
                "root",
                "Invalid root",
                "root must be a string.",
            )),
        }
    }

    /// The absolute, normalized location of `path` (relative to the root when there
    /// is one), or an error on the attribute `path` when it leaves the root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, Diagnostic> {
        if path.is_empty() {
            return Err(attribute_error(
                "path",
                "Invalid path",
                "path is empty; name a file.",
            ));
        }
        let joined = match &self.root {
            Some(root) => root.join(path),
            None => absolute(Path::new(path))?,
        };
        let resolved = normalize(&joined);
        if let Some(root) = &self.root
            && (!resolved.starts_with(root) || resolved == *root)
        {
            return Err(attribute_error(
                "path",
                "Path outside the provider's root",
                format!(
                    "{path:?} resolves to {}, which is not inside the provider's root {}. \
                     Use a path inside it, or change the provider's root.",
                    resolved.display(),
                    root.display()
                ),
            ));
        }
        Ok(resolved)
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Diagnostic> {
    std::path::absolute(path).map_err(|err| {
        error(
            "Cannot resolve a path",
            format!("{}: {err}", path.display()),
        )
    })
}

/// Removes `.` and resolves `..` by the text alone. Symbolic links are not
/// followed: the file may not exist yet, and a link inside the root that points out
/// of it is the root owner's choice.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The mode that `permissions` names: octal, three or four digits, at most 07777.
pub fn parse_permissions(text: &str) -> Result<u32, Diagnostic> {
    let valid = (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(text, 8) {
        Ok(mode) if valid => Ok(mode),
        _ => Err(attribute_error(
            "permissions",
            "Invalid permissions",
            format!(
                "{text:?} is not a file mode: write it in octal with three or four digits, \
                 such as \"0644\" or \"600\"."
            ),
        )),
    }
}

/// The SHA-256 digest of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Checks a resource configuration before the provider is configured: what can
/// be checked without the root. Unknown values are left for later.
pub fn validate_resource(config: &Value) -> Vec<Diagnostic> {
    match config.get("permissions") {
        Value::String(text) => parse_permissions(text).err().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The outcome of planning one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The state the resource will have after apply; unknown where only apply knows.
    pub planned: Value,
    /// The attributes whose change replaces the file (delete, then create): `path`,
    /// or `id` when the same path now resolves elsewhere (the root changed).
    pub requires_replace: Vec<&'static str>,
}

/// Plans a create (null `prior`) or an update; a null `proposed` is a destroy.
/// `resource` is the resource's configuration, `proposed` what Terraform proposes
/// (the configuration, with prior values where it leaves computed ones out).
pub fn plan(
    config: &Config,
    prior: &Value,
    proposed: &Value,
    resource: &Value,
) -> Result<Plan, Diagnostic> {
    if proposed.is_null() {
        return Ok(Plan {
            planned: Value::Null,
            requires_replace: Vec::new(),
        });
    }
    let path = proposed.get("path");
    let id = match path {
        Value::String(p) => Value::String(config.resolve(p)?.to_string_lossy().into_owned()),
        _ => Value::Unknown,
    };
    // From the configuration, not the proposal: for a value the configuration
    // leaves out, Terraform proposes the prior one, and the default would then never
    // come back after a chmod outside Terraform.
    let permissions = match resource.get("permissions") {
        Value::Null => Value::String(DEFAULT_PERMISSIONS.to_owned()),
        Value::String(text) => {
            parse_permissions(text)?;
            Value::String(text.clone())
        }
        other => other.clone(),
    };
    let content = proposed.get("content");
    let sha256 = match content {
        Value::String(text) => Value::String(sha256_hex(text.as_bytes())),
        _ => Value::Unknown,
    };
    let mut requires_replace = Vec::new();
    if !prior.is_null() {
        if path.is_unknown() || prior.get("path") != path {
            requires_replace.push("path");
        }
        if !id.is_unknown() && prior.get("id") != &id {
            requires_replace.push("id");
        }
    }
    Ok(Plan {
        planned: Value::object([
            ("id", id),
            ("path", path.clone()),
            ("content", content.clone()),
            ("permissions", permissions),
            ("sha256", sha256),
        ]),
        requires_replace,
    })
}

/// Applies a planned state: writes the file (create or update in place), or
/// deletes it when `planned` is null. Returns the new state.
pub fn apply(config: &Config, prior: &Value, planned: &Value) -> Result<Value, Diagnostic> {
    if planned.is_null() {
        if let Some(id) = prior.get("id").as_str() {
            match std::fs::remove_file(id) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(io_error("delete", Path::new(id), &err)),
            }
        }
        return Ok(Value::Null);
    }
    let (Some(path), Some(content)) = (
        planned.get("path").as_str(),
        planned.get("content").as_str(),
    ) else {
        return Err(error(
            "Unknown values at apply",
            "Terraform asked to apply a file whose path or content is still unknown; this is a bug.",
        ));
    };
    let permissions = planned
        .get("permissions")
        .as_str()
        .unwrap_or(DEFAULT_PERMISSIONS);
    let mode = parse_permissions(permissions)?;
    let file = config.resolve(path)?;
    std::fs::write(&file, content).map_err(|err| io_error("write", &file, &err))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
        .map_err(|err| io_error("set the permissions of", &file, &err))?;
    Ok(Value::object([
        ("id", Value::String(file.to_string_lossy().into_owned())),
        ("path", Value::String(path.to_owned())),
        ("content", Value::String(content.to_owned())),
        ("permissions", Value::String(permissions.to_owned())),
        ("sha256", Value::String(sha256_hex(content.as_bytes()))),
    ]))
}

/// Reads a managed file back: null (gone from the state) when it was deleted
/// outside Terraform, its real content and mode when they were changed.
pub fn read(state: &Value) -> Result<Value, Diagnostic> {
    let Some(id) = state.get("id").as_str() else {
        return Ok(state.clone());
    };
    let Some(found) = read_file(Path::new(id))? else {
        return Ok(Value::Null);
    };
    // Keep the configured spelling ("644" or "0644") while the mode is the same,
    // so that reading back does not show a change nobody made.
    let permissions = match state.get("permissions").as_str() {
        Some(text) if parse_permissions(text).ok() == Some(found.mode) => text.to_owned(),
        _ => format!("{:04o}", found.mode),
    };
    Ok(Value::object([
        ("id", Value::String(id.to_owned())),
        ("path", state.get("path").clone()),
        (
            "sha256",
            Value::String(sha256_hex(found.content.as_bytes())),
        ),
        ("content", Value::String(found.content)),
        ("permissions", Value::String(permissions)),
    ]))
}

/// Adopts an existing file: `terraform import rpcplugin_file.NAME PATH`.
pub fn import(config: &Config, path: &str) -> Result<Value, Diagnostic> {
    let file = config.resolve(path)?;
    let Some(found) = read_file(&file)? else {
        return Err(error(
            "Cannot import a file that does not exist",
            format!("{} does not exist.", file.display()),
        ));
    };
    Ok(Value::object([
        ("id", Value::String(file.to_string_lossy().into_owned())),
        ("path", Value::String(path.to_owned())),
        (
            "sha256",
            Value::String(sha256_hex(found.content.as_bytes())),
        ),
        ("content", Value::String(found.content)),
        ("permissions", Value::String(format!("{:04o}", found.mode))),
    ]))
}

/// The data source: a file's content and digest; a missing file is an error on
/// `path` that names it.
pub fn read_data(config: &Config, data: &Value) -> Result<Value, Diagnostic> {
    let Some(path) = data.get("path").as_str() else {
        return Err(attribute_error(
            "path",
            "Unknown path",
            "The data source's path must be known to read the file.",
        ));
    };
    let file = config.resolve(path)?;
    let Some(found) = read_file(&file)? else {
        return Err(attribute_error(
            "path",
            format!("File not found: {path}"),
            format!(
                "{} does not exist. Create it first, or read it after the resource that \
                 creates it (depends_on).",
                file.display()
            ),
        ));
    };
    Ok(Value::object([
        ("path", Value::String(path.to_owned())),
        (
            "sha256",
            Value::String(sha256_hex(found.content.as_bytes())),
        ),
        ("content", Value::String(found.content)),
    ]))
}

struct Found {
    /// The content as text; bytes that are not UTF-8 read as U+FFFD.
    content: String,
    mode: u32,
}

fn read_file(file: &Path) -> Result<Option<Found>, Diagnostic> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error("read", file, &err)),
    };
    let metadata = std::fs::metadata(file).map_err(|err| io_error("read", file, &err))?;
    Ok(Some(Found {
        content: String::from_utf8_lossy(&bytes).into_owned(),
        mode: metadata.permissions().mode() & 0o7777,
    }))
}

fn io_error(action: &str, file: &Path, err: &std::io::Error) -> Diagnostic {
    error(
        format!("Cannot {action} {}", file.display()),
        format!("The provider could not {action} {}: {err}.", file.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::attribute_path::step::Selector;

    fn attribute_of(d: &Diagnostic) -> String {
        match &d.attribute.as_ref().unwrap().steps[0].selector {
            Some(Selector::AttributeName(name)) => name.clone(),
            other => panic!("not an attribute: {other:?}"),
        }
    }

    fn rooted(dir: &Path) -> Config {
        Config::from_value(&Value::object([(
            "root",
            Value::String(dir.to_string_lossy().into_owned()),
        )]))
        .unwrap()
    }

    fn config(path: &str, content: Value, permissions: Value) -> Value {
        Value::object([
            ("id", Value::Null),
            ("path", Value::String(path.into())),
            ("content", content),
            ("permissions", permissions),
            ("sha256", Value::Null),
        ])
    }

    #[test]
    fn permissions_are_three_or_four_octal_digits() {
        assert_eq!(parse_permissions("0644").unwrap(), 0o644);
        assert_eq!(parse_permissions("600").unwrap(), 0o600);
        assert_eq!(parse_permissions("4755").unwrap(), 0o4755);
        for bad in ["999", "rw-r--r--", "64", "00644", "", "-644", "+644"] {
            let d = parse_permissions(bad).unwrap_err();
            assert_eq!(attribute_of(&d), "permissions", "{bad}");
            assert!(d.detail.contains(&format!("{bad:?}")), "{}", d.detail);
        }
        let bad = config("a", Value::String("x".into()), Value::String("abc".into()));
        assert_eq!(validate_resource(&bad).len(), 1);
        let unknown = config("a", Value::Unknown, Value::Unknown);
        assert!(validate_resource(&unknown).is_empty());
    }

    #[test]
    fn paths_must_stay_inside_the_root() {
        let config = rooted(Path::new("/srv/files"));
        assert_eq!(
            config.resolve("a/b.txt").unwrap(),
            Path::new("/srv/files/a/b.txt")
        );
        assert_eq!(
            config.resolve("/srv/files/./c/../d").unwrap(),
            Path::new("/srv/files/d")
        );
        for outside in ["../x", "/etc/passwd", "a/../../x", ".", "/srv/filesx/y"] {
            let d = config.resolve(outside).unwrap_err();
            assert_eq!(attribute_of(&d), "path", "{outside}");
            assert!(d.detail.contains("/srv/files"), "{}", d.detail);
        }
        assert!(Config::default().resolve("/anywhere/at/all").is_ok());
        assert_eq!(
            attribute_of(&Config::default().resolve("").unwrap_err()),
            "path"
        );
    }

    #[test]
    fn the_root_must_be_known_and_non_empty() {
        let with = |v| Value::object([("root", v)]);
        assert_eq!(
            Config::from_value(&with(Value::Null)).unwrap(),
            Config::default()
        );
        for bad in [
            Value::Unknown,
            Value::String(String::new()),
            Value::Bool(true),
        ] {
            assert_eq!(
                attribute_of(&Config::from_value(&with(bad)).unwrap_err()),
                "root"
            );
        }
    }

    #[test]
    fn a_plan_knows_the_digest_when_the_content_is_known() {
        let config = rooted(Path::new("/srv"));
        let proposed = config_value("a.txt", "hello");
        let plan = plan_of(&config, &Value::Null, &proposed).unwrap();
        assert!(plan.requires_replace.is_empty());
        assert_eq!(plan.planned.get("id").as_str(), Some("/srv/a.txt"));
        assert_eq!(plan.planned.get("permissions").as_str(), Some("0644"));
        assert_eq!(
            plan.planned.get("sha256").as_str(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
    }

    /// Plans with a proposal equal to the configuration (no prior values kept).
    fn plan_of(config: &Config, prior: &Value, proposed: &Value) -> Result<Plan, Diagnostic> {
        plan(config, prior, proposed, proposed)
    }

    #[test]
    fn permissions_left_out_come_back_to_the_default() {
        let config = rooted(Path::new("/srv"));
        let prior = plan_of(&config, &Value::Null, &config_value("a", "1"))
            .unwrap()
            .planned;
        // After a chmod outside Terraform, the state says 0600 and Terraform
        // proposes it for the attribute the configuration leaves out.
        let Value::Map(mut proposed) = prior.clone() else {
            unreachable!()
        };
        proposed.insert("permissions".into(), Value::String("0600".into()));
        let planned = plan(
            &config,
            &prior,
            &Value::Map(proposed),
            &config_value("a", "1"),
        )
        .unwrap()
        .planned;
        assert_eq!(planned.get("permissions").as_str(), Some("0644"));
    }

    fn config_value(path: &str, content: &str) -> Value {
        config(path, Value::String(content.into()), Value::Null)
    }

    #[test]
    fn unknown_content_is_planned_as_unknown() {
        let proposed = config("a.txt", Value::Unknown, Value::String("600".into()));
        let plan = plan_of(&rooted(Path::new("/srv")), &Value::Null, &proposed).unwrap();
        assert!(plan.planned.get("content").is_unknown());
        assert!(plan.planned.get("sha256").is_unknown());
        assert_eq!(plan.planned.get("permissions").as_str(), Some("600"));
        let unknown_path = Value::object([("path", Value::Unknown), ("content", Value::Unknown)]);
        let plan = plan_of(&Config::default(), &proposed, &unknown_path).unwrap();
        assert!(plan.planned.get("id").is_unknown());
        assert_eq!(
            plan.requires_replace,
            ["path"],
            "a path not known yet may differ"
        );
    }

    #[test]
    fn a_new_path_replaces_and_new_content_updates_in_place() {
        let config = rooted(Path::new("/srv"));
        let prior = plan_of(&config, &Value::Null, &config_value("a", "1"))
            .unwrap()
            .planned;
        let update = plan_of(&config, &prior, &config_value("a", "2")).unwrap();
        assert!(update.requires_replace.is_empty());
        let moved = plan_of(&config, &prior, &config_value("b", "1")).unwrap();
        assert_eq!(moved.requires_replace, ["path", "id"]);
        // The same path under another root is another file.
        let rerooted = plan_of(
            &rooted(Path::new("/other")),
            &prior,
            &config_value("a", "1"),
        );
        assert_eq!(rerooted.unwrap().requires_replace, ["id"]);
        assert_eq!(
            plan_of(&config, &prior, &Value::Null).unwrap().planned,
            Value::Null
        );
        let outside = plan_of(&config, &prior, &config_value("../b", "1")).unwrap_err();
        assert_eq!(attribute_of(&outside), "path");
        let bad = config_value("a", "1");
        let Value::Map(mut bad) = bad else {
            unreachable!()
        };
        bad.insert("permissions".into(), Value::String("8".into()));
        let err = plan_of(&config, &prior, &Value::Map(bad)).unwrap_err();
        assert_eq!(attribute_of(&err), "permissions");
    }

    #[test]
    fn the_lifecycle_on_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = rooted(dir.path());
        let file = dir.path().join("f.txt");

        let planned = plan_of(&config, &Value::Null, &config_value("f.txt", "one"))
            .unwrap()
            .planned;
        let state = apply(&config, &Value::Null, &planned).unwrap();
        assert_eq!(state, planned, "apply makes what was planned");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "one");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(read(&state).unwrap(), state, "no drift");

        std::fs::write(&file, "changed outside").unwrap();
        let drifted = read(&state).unwrap();
        assert_eq!(drifted.get("content").as_str(), Some("changed outside"));
        assert_ne!(drifted.get("sha256"), state.get("sha256"));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read(&state).unwrap().get("permissions").as_str(),
            Some("0600")
        );

        let imported = import(&config, "f.txt").unwrap();
        assert_eq!(imported.get("id"), state.get("id"));
        assert_eq!(imported.get("content").as_str(), Some("changed outside"));
        assert!(import(&config, "nope.txt").is_err());

        let data = read_data(
            &config,
            &Value::object([("path", Value::String("f.txt".into()))]),
        )
        .unwrap();
        assert_eq!(data.get("content").as_str(), Some("changed outside"));
        let missing = read_data(
            &config,
            &Value::object([("path", Value::String("gone.txt".into()))]),
        )
        .unwrap_err();
        assert_eq!(attribute_of(&missing), "path");
        assert!(missing.summary.contains("gone.txt"), "{}", missing.summary);

        assert_eq!(apply(&config, &state, &Value::Null).unwrap(), Value::Null);
        assert!(!file.exists());
        assert_eq!(read(&state).unwrap(), Value::Null, "gone: leaves the state");
        assert_eq!(
            apply(&config, &state, &Value::Null).unwrap(),
            Value::Null,
            "idempotent"
        );
    }

    #[test]
    fn a_write_that_fails_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = rooted(dir.path());
        let planned = plan_of(&config, &Value::Null, &config_value("no/such/dir", "x"))
            .unwrap()
            .planned;
        let err = apply(&config, &Value::Null, &planned).unwrap_err();
        assert!(err.summary.contains("no/such/dir"), "{}", err.summary);
    }
}
