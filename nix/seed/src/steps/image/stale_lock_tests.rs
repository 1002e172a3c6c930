use super::*;

#[test]
fn a_lock_resolved_for_another_definition_is_refused() {
    let mut i = tests::input(tests::definition(), None, Arch::Amd64, vec![]);
    i.inputs = Some(Digest::of(b"something else"));
    let e = build(&i, &std::env::temp_dir().join("kiln-stale-lock-test-out")).unwrap_err();
    assert!(matches!(e, Error::StaleLock { .. }), "{e}");
    assert!(e.to_string().contains("run `kiln lock`"));
}
