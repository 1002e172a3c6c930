//! Deterministic JSON: every map goes through `serde_json::Value`, whose
//! object type is a BTreeMap (keys sorted) as long as no crate in the tree
//! enables serde_json's `preserve_order` (a unit test guards it).

use serde::Serialize;

/// Compact canonical bytes (sorted keys, no whitespace): what gets hashed.
pub fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    let v = serde_json::to_value(value).expect("kiln types serialize to JSON");
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

/// Pretty canonical bytes (sorted keys, two-space indent, trailing newline):
/// what gets written for people to read and commit.
pub fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let v = serde_json::to_value(value).expect("kiln types serialize to JSON");
    let mut out = serde_json::to_vec_pretty(&v).expect("a JSON value serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_whatever_the_map() {
        let mut m = HashMap::new();
        for k in ["zeta", "alpha", "mu", "beta", "omega", "gamma"] {
            m.insert(k, 1);
        }
        assert_eq!(
            String::from_utf8(canonical(&m)).unwrap(),
            r#"{"alpha":1,"beta":1,"gamma":1,"mu":1,"omega":1,"zeta":1}"#
        );
    }
}
