//! Two runs of one command on one project at the same time, as a user
//! with two terminals (or a CI with two jobs) starts them: neither may
//! corrupt what the other writes. Outputs are written to a temporary name
//! and renamed into place, so the last one to finish wins whole.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(c: Child, what: &str) -> String {
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn two_builds_of_one_image_at_once_both_succeed_with_whole_provenance() {
    require_setup();
    let work = scratch("concurrent-build");
    let provenance = work.join("provenance");
    let build = || {
        spawn(&mut kiln_cmd(
            &project(),
            &[
                "build",
                "--json",
                "scratch-plus",
                "--provenance-dir",
                provenance.to_str().unwrap(),
            ],
        ))
    };
    let (a, b) = (build(), build());
    let a: serde_json::Value = serde_json::from_str(&finished(a, "first build")).unwrap();
    let b: serde_json::Value = serde_json::from_str(&finished(b, "second build")).unwrap();
    assert_eq!(a[0]["digest"], b[0]["digest"]);
    let statement = read_json(&provenance.join("scratch-plus.intoto.json"));
    let subject = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap();
    assert_eq!(
        a[0]["digest"].as_str().unwrap(),
        format!("sha256:{subject}")
    );
    let left = dir_names(&provenance);
    assert_eq!(left, ["scratch-plus.intoto.json"], "temporary files left");
}

#[test]
fn two_signs_into_one_layout_at_once_leave_one_whole_signed_image() {
    require_setup();
    let work = scratch("concurrent-sign");
    let provenance = work.join("provenance");
    build_with_provenance("scratch-plus", &provenance);
    let keys: Vec<_> = ["a", "b"]
        .iter()
        .map(|k| {
            let dir = work.join(k);
            std::fs::create_dir_all(&dir).unwrap();
            cosign_key_pair(&dir)
        })
        .collect();
    let signed = work.join("signed");
    let sign = |public: &std::path::Path| {
        let mut cmd = kiln_cmd(
            &project(),
            &[
                "sign",
                "scratch-plus",
                "--key",
                public.with_extension("key").to_str().unwrap(),
                "--provenance-dir",
                provenance.to_str().unwrap(),
                "--out",
                signed.to_str().unwrap(),
            ],
        );
        cmd.env("COSIGN_PASSWORD", "kiln-test");
        spawn(&mut cmd)
    };
    let (a, b) = (sign(&keys[0]), sign(&keys[1]));
    finished(a, "first sign");
    finished(b, "second sign");
    // One of the two signed it whole: its key verifies every check.
    let verified: Vec<bool> = keys
        .iter()
        .map(|k| {
            kiln(&[
                "verify",
                signed.to_str().unwrap(),
                "--key",
                k.to_str().unwrap(),
            ])
            .status
            .success()
        })
        .collect();
    assert!(verified.contains(&true), "neither key verifies the layout");
    let left = dir_names(&work);
    assert_eq!(
        left,
        ["a", "b", "provenance", "signed"],
        "temporary files left"
    );
}
