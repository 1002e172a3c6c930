//! Image configs field by field. `rootfs.diff_ids` and the history entries
//! that belong to layers are left to the layer comparison, so that a layer
//! change is reported once, where it happened.

use super::{Difference, Kind};
use serde_json::Value;
use std::collections::BTreeMap;

/// Compact JSON for a value in a one-line report.
pub fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The history entries of a config split into those that describe a layer
/// (in layer order) and the empty-layer ones, if they line up with
/// `layers` layers; `None` when they do not (then history is compared as
/// a plain list).
pub fn layer_history(config: &Value, layers: usize) -> Option<(Vec<Value>, Vec<Value>)> {
    let history = config.get("history")?.as_array()?;
    let (empty, layered): (Vec<Value>, Vec<Value>) = history
        .iter()
        .cloned()
        .partition(|h| h.get("empty_layer").and_then(Value::as_bool) == Some(true));
    (layered.len() == layers).then_some((layered, empty))
}

/// Differences between two history entries, under `location` (a layer),
/// fields named `<prefix><key>`.
pub fn diff_history(
    a: Option<&Value>,
    b: Option<&Value>,
    scope: &str,
    location: &str,
    prefix: &str,
    out: &mut Vec<Difference>,
) {
    let empty = Value::Object(Default::default());
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    for key in keys(a, b) {
        let (x, y) = (a.get(&key), b.get(&key));
        if x != y {
            out.push(
                Difference::new(Kind::ConfigField, scope, location)
                    .field(&format!("{prefix}{key}"))
                    .change(x.map(show), y.map(show)),
            );
        }
    }
}

fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut k: Vec<String> = a
        .as_object()
        .into_iter()
        .flatten()
        .chain(b.as_object().into_iter().flatten())
        .map(|(k, _)| k.clone())
        .collect();
    k.sort();
    k.dedup();
    k
}

/// `KEY=value` strings (Env) as a map; a key given twice keeps its last value.
fn env_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.to_string(), String::new()),
        })
        .collect()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map(String::from).unwrap_or_else(|| show(v)),
            )
        })
        .collect()
}

/// `+ K=v`, `- K=v` and `K: v → w` entries between two maps.
pub fn diff_map(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    kind: Kind,
    scope: &str,
    location: &str,
    out: &mut Vec<Difference>,
) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            out.push(
                Difference::new(kind, scope, location)
                    .field(k)
                    .change(x.cloned(), y.cloned()),
            );
        }
    }
}

/// Every field of two image configs, except what the layer comparison
/// reports (`rootfs.diff_ids`; the layers' history entries when
/// `layer_history` is given for both).
pub fn diff_config(
    a: &Value,
    b: &Value,
    history_by_layer: bool,
    scope: &str,
    out: &mut Vec<Difference>,
) {
    for key in keys(a, b) {
        let (x, y) = (a.get(&key), b.get(&key));
        match key.as_str() {
            "config" => diff_container_config(x, y, scope, out),
            "rootfs" => {
                let strip = |v: Option<&Value>| {
                    v.cloned().map(|mut v| {
                        if let Some(o) = v.as_object_mut() {
                            o.remove("diff_ids");
                        }
                        v
                    })
                };
                let (x, y) = (strip(x), strip(y));
                if x != y {
                    out.push(
                        Difference::new(Kind::ConfigField, scope, "rootfs")
                            .change(x.as_ref().map(show), y.as_ref().map(show)),
                    );
                }
            }
            "history" if history_by_layer => {
                let empty = |v: Option<&Value>| -> Vec<Value> {
                    v.and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|h| h.get("empty_layer").and_then(Value::as_bool) == Some(true))
                        .cloned()
                        .collect()
                };
                let (ea, eb) = (empty(x), empty(y));
                for i in 0..ea.len().max(eb.len()) {
                    diff_history(
                        ea.get(i),
                        eb.get(i),
                        scope,
                        &format!("history (empty layer {})", i + 1),
                        "",
                        out,
                    );
                }
            }
            "history" => {
                let list =
                    |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
                let (ha, hb) = (list(x), list(y));
                for i in 0..ha.len().max(hb.len()) {
                    diff_history(
                        ha.get(i),
                        hb.get(i),
                        scope,
                        &format!("history[{i}]"),
                        "",
                        out,
                    );
                }
            }
            _ => {
                if x != y {
                    out.push(
                        Difference::new(Kind::ConfigField, scope, &key)
                            .change(x.map(show), y.map(show)),
                    );
                }
            }
        }
    }
}

/// The `config` object: Env and Labels entry by entry, the rest whole.
fn diff_container_config(
    a: Option<&Value>,
    b: Option<&Value>,
    scope: &str,
    out: &mut Vec<Difference>,
) {
    let empty = Value::Object(Default::default());
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    for key in keys(a, b) {
        let (x, y) = (a.get(&key), b.get(&key));
        if x == y {
            continue;
        }
        let location = format!("config.{key}");
        match key.as_str() {
            "Env" => diff_map(
                &env_map(x),
                &env_map(y),
                Kind::ConfigEntry,
                scope,
                &location,
                out,
            ),
            "Labels" => diff_map(
                &string_map(x),
                &string_map(y),
                Kind::ConfigEntry,
                scope,
                &location,
                out,
            ),
            _ => out.push(
                Difference::new(Kind::ConfigField, scope, &location)
                    .change(x.map(show), y.map(show)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "created": "2026-07-11T10:16:37Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "User": "65532:65532",
                "Env": ["PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
                "Labels": {"org.opencontainers.image.title": "x"}
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "kiln: a=1"}]
        })
    }

    fn texts(a: &Value, b: &Value) -> Vec<String> {
        let mut out = Vec::new();
        diff_config(a, b, true, "amd64", &mut out);
        out.into_iter().map(|d| d.text).collect()
    }

    #[test]
    fn env_entries_are_named() {
        let a = config();
        let mut b = config();
        b["config"]["Env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FOO=bar"));
        b["config"]["Env"][0] = json!("PATH=/bin");
        assert_eq!(
            texts(&a, &b),
            vec![
                "amd64: config.Env: + FOO=bar",
                "amd64: config.Env: PATH: /usr/bin → /bin"
            ]
        );
        assert_eq!(texts(&b, &a)[0], "amd64: config.Env: - FOO=bar");
    }

    #[test]
    fn scalar_fields_labels_and_created() {
        let a = config();
        let mut b = config();
        b["config"]["User"] = json!("0:0");
        b["config"]["Entrypoint"] = json!(["/bin/sh"]);
        b["config"]["Labels"]["org.opencontainers.image.title"] = json!("y");
        b["created"] = json!("2026-07-12T00:00:00Z");
        assert_eq!(
            texts(&a, &b),
            vec![
                "amd64: config.Entrypoint: + [\"/bin/sh\"]",
                "amd64: config.Labels: org.opencontainers.image.title: x → y",
                "amd64: config.User: \"65532:65532\" → \"0:0\"",
                "amd64: created: \"2026-07-11T10:16:37Z\" → \"2026-07-12T00:00:00Z\"",
            ]
        );
    }

    #[test]
    fn diff_ids_and_layer_history_are_left_to_the_layers() {
        let a = config();
        let mut b = config();
        b["rootfs"]["diff_ids"] = json!(["sha256:bb"]);
        b["history"][0]["created_by"] = json!("kiln: a=2");
        assert!(texts(&a, &b).is_empty());
        let mut out = Vec::new();
        diff_config(&a, &b, false, "amd64", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].text,
            "amd64: history[0]: created_by: \"kiln: a=1\" → \"kiln: a=2\""
        );
        assert!(layer_history(&a, 1).is_some());
        assert!(layer_history(&a, 2).is_none());
    }
}
