use super::*;

#[test]
fn attachment_names_are_recognized() {
    let d = Digest([3; 32]);
    assert_eq!(
        kiln_seed::imageref::attachment_name(&digest_tag(&d, "sig")),
        Some((d, "sig"))
    );
    assert_eq!(
        kiln_seed::imageref::attachment_name(&digest_tag(&d, "")),
        Some((d, ""))
    );
    assert_eq!(kiln_seed::imageref::attachment_name("latest"), None);
    assert_eq!(kiln_seed::imageref::attachment_name("sha256-abc.sig"), None);
}

#[test]
fn transient_errors_are_retried_and_others_are_not() {
    let server = |code| OciDistributionError::ServerError {
        code,
        url: "u".into(),
        message: String::new(),
    };
    assert!(is_transient(&server(503)));
    assert!(is_transient(&server(429)));
    assert!(!is_transient(&server(400)));
    assert!(!is_transient(&OciDistributionError::UnauthorizedError {
        url: "u".into()
    }));
    // A timeout is final; a full disk is not the network.
    assert!(!is_transient(&OciDistributionError::IoError(
        std::io::Error::from(std::io::ErrorKind::TimedOut)
    )));
    assert!(!is_transient(&OciDistributionError::IoError(
        std::io::Error::from(std::io::ErrorKind::StorageFull)
    )));
    assert!(is_transient(&OciDistributionError::IoError(
        std::io::Error::from(std::io::ErrorKind::ConnectionReset)
    )));
}

#[test]
fn documents_parse_and_mismatched_media_types_are_refused() {
    let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0303030303030303030303030303030303030303030303030303030303030303","size":10},"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#.to_vec();
    let d = Digest::of(&m);
    let doc = Doc::parse(m.clone(), d, MANIFEST_MEDIA_TYPE).unwrap();
    assert_eq!(doc.blobs.len(), 1);
    assert_eq!(doc.subject.unwrap().digest, Digest([3; 32]));
    assert_eq!(doc.artifact_type.as_deref(), Some(BUNDLE_ARTIFACT_TYPE));
    let e = Doc::parse(m, d, INDEX_MEDIA_TYPE).unwrap_err();
    assert!(e.contains("declares mediaType"), "{e}");
}
