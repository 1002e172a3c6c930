//! What is attached to an image: a layout's entries and the image a name
//! leads to, cosign's `.sig`/`.att` tags (appended to, never replaced) and
//! OCI 1.1 referrers (with the `sha256-<hex>` tag fallback).

use super::*;

/// One descriptor of a layout's `index.json`.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) desc: Desc,
    /// `org.opencontainers.image.ref.name`.
    pub(super) name: Option<String>,
}

pub(super) fn layout_entries(layout: &Layout) -> Result<Vec<Entry>, RegistryError> {
    let path = layout.root().join("index.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&path).map_err(io_err("reading", &path))?)
        .map_err(|e| RegistryError::LayoutContent {
            path: path.clone(),
            message: format!("not JSON: {e}"),
        })?;
    let mut out = Vec::new();
    for d in v
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let desc = parse_desc(d).map_err(|message| RegistryError::LayoutContent {
            path: path.clone(),
            message: format!("index.json: {message}"),
        })?;
        let ann = d.get("annotations");
        let name = ann
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .map(String::from);
        out.push(Entry { desc, name });
    }
    Ok(out)
}

/// The image a layout holds under `name`, resolved as every kiln command
/// resolves it ([`kiln_seed::imageref::resolve_layout`]: a name leads to
/// one entry or to none).
pub(super) fn pick_root(
    layout: &Layout,
    entries: &[Entry],
    name: Option<&str>,
) -> Result<Desc, RegistryError> {
    let bad = |message: String| RegistryError::LayoutContent {
        path: layout.root().to_path_buf(),
        message,
    };
    let chosen = kiln_seed::imageref::resolve_layout(layout.index(), name)
        .map_err(|e| bad(format!("{e}")))?;
    let digest = oci::kiln_digest(chosen.digest()).map_err(bad)?;
    entries
        .iter()
        .find(|e| e.desc.digest == digest)
        .map(|e| e.desc.clone())
        .ok_or_else(|| bad(format!("{digest} is not listed in index.json")))
}

/// Artifacts attached to the image's digests, found in a layout: cosign's
/// tagged `.sig`/`.att`/`.sbom` manifests and referrer manifests (with a
/// `subject`). Anything about other digests is left alone.
pub(super) struct Attachments {
    pub(super) tagged: Vec<(String, Digest)>,
    pub(super) referrers: Vec<Doc>,
    pub(super) graph: Graph,
}

pub(super) fn find_attachments(
    layout: &Layout,
    entries: &[Entry],
    subjects: &BTreeSet<Digest>,
) -> Result<Attachments, RegistryError> {
    let mut a = Attachments {
        tagged: Vec::new(),
        referrers: Vec::new(),
        graph: Graph::default(),
    };
    for Entry { desc, name, .. } in entries {
        let tagged_for = name
            .as_deref()
            .and_then(kiln_seed::imageref::attachment_name);
        let before = a.graph.docs.len();
        let relevant = match tagged_for {
            Some((d, suffix)) if !suffix.is_empty() => subjects.contains(&d),
            // A fallback index (`sha256-<hex>`) is rebuilt from the
            // referrers it lists, never copied as is.
            Some(_) => false,
            None => false,
        };
        if relevant {
            a.graph.add_from_layout(layout, desc, 0)?;
            a.tagged
                .push((name.clone().unwrap_or_default(), desc.digest));
            continue;
        }
        if !is_manifest(&desc.media_type) || subjects.contains(&desc.digest) {
            continue;
        }
        // A referrer? Read it to see its subject.
        let oci_desc = oci::descriptor(&desc.media_type, &desc.digest, desc.size);
        let Ok(bytes) = layout.read_blob(&oci_desc) else {
            continue;
        };
        let Ok(doc) = Doc::parse(bytes, desc.digest, &desc.media_type) else {
            continue;
        };
        if doc
            .subject
            .as_ref()
            .is_some_and(|s| subjects.contains(&s.digest))
        {
            a.graph.add_from_layout(layout, desc, 0)?;
            a.referrers.extend(
                a.graph.docs[before..]
                    .iter()
                    .filter(|d| d.digest == desc.digest)
                    .cloned(),
            );
        }
    }
    Ok(a)
}

/// The repositories the simple-signing payloads under the `.sig` tags name
/// (their `docker-reference`), normalized as a containers policy reads
/// them.
pub(super) fn signed_identities(
    layout: &Layout,
    att: &Attachments,
) -> Result<BTreeSet<String>, RegistryError> {
    let mut out = BTreeSet::new();
    for (name, digest) in &att.tagged {
        if !name.ends_with(".sig") {
            continue;
        }
        for blob in &att.graph.doc(digest).blobs {
            if blob.media_type != kiln_seed::attest::SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            let bad = |message: String| RegistryError::LayoutContent {
                path: layout.root().to_path_buf(),
                message: format!("{name}: simple-signing payload {}: {message}", blob.digest),
            };
            let bytes = layout
                .read_blob(&oci::descriptor(&blob.media_type, &blob.digest, blob.size))
                .map_err(|e| bad(e.to_string()))?;
            let doc = kiln_seed::attest::simplesigning::SimpleSigning::from_json(&bytes)
                .map_err(|e| bad(e.to_string()))?;
            out.insert(normalized_repository(
                &doc.critical.identity.docker_reference,
            ));
        }
    }
    Ok(out)
}

/// Rounds of read, merge, write and read back before kiln gives up on a
/// shared tag that concurrent pushes keep replacing.
const MERGE_ROUNDS: u32 = 10;
/// The least time kiln waits after writing a shared tag before it reads the
/// tag back (three times its own read-to-write time when that is longer,
/// so that a slower registry gets a longer wait).
const SETTLE: Duration = Duration::from_millis(200);

/// How long to wait after a write that took `took` from its read.
fn settle_after(took: Duration) -> Duration {
    SETTLE.max(took * 3)
}

/// Points a cosign `.sig`/`.att` tag at `digest`, unless the tag already
/// holds a manifest with other layers (another signer's, an earlier
/// build's attestation): then kiln's layers are appended to those, as
/// `cosign sign` does, so that pushing never removes a signature.
///
/// Registries have no conditional write for tags, so two pushers can each
/// read the tag, merge and write, and the second write drops the first
/// pusher's layers. kiln therefore reads the tag back after a settling
/// wait and merges again until its layers are there: a concurrent pusher
/// whose write lands after that wait read the tag after kiln's write, and
/// kept kiln's layers (docs/registry.md says what this guarantees).
pub(super) async fn set_cosign_tag(
    session: &Session,
    tag: &str,
    digest: &Digest,
    graph: &Graph,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let ours = graph.doc(digest);
    let (mut wrote, mut merged) = (false, false);
    for _ in 0..MERGE_ROUNDS {
        let started = std::time::Instant::now();
        match session.get_manifest(tag).await? {
            Some((_, current)) if current == *digest => {}
            None => {
                session
                    .put_manifest(tag, &ours.media_type, &ours.bytes)
                    .await?;
                wrote = true;
                tokio::time::sleep(settle_after(started.elapsed())).await;
                continue;
            }
            Some((existing, _)) => {
                let m = crate::signstore::merged_cosign_manifest(&existing, &ours.bytes)
                    .map_err(|message| RegistryError::Invalid {
                        what: format!("tag {tag} in {}", session.where_()),
                        message: format!(
                            "{message}; kiln appends its signatures to a cosign tag but will not replace what it cannot read"
                        ),
                    })?;
                if let Some(crate::signstore::MergedManifest { config, manifest }) = m {
                    let config_digest = Digest::of(&config);
                    if !session.blob_exists(&config_digest).await? {
                        session.upload_blob(&config_digest, config).await?;
                    }
                    session
                        .put_manifest(tag, MANIFEST_MEDIA_TYPE, &manifest)
                        .await?;
                    (wrote, merged) = (true, true);
                    tokio::time::sleep(settle_after(started.elapsed())).await;
                    continue;
                }
            }
        }
        // Kiln's layers are in the tag, as read after every write of its
        // own had time to be seen by (and merged into) a concurrent push.
        if wrote {
            report.tags_set.push(tag.to_string());
        } else {
            report.tags_unchanged.push(tag.to_string());
        }
        if merged {
            report.tags_merged.push(tag.to_string());
        }
        return Ok(());
    }
    Err(RegistryError::Invalid {
        what: format!("tag {tag} in {}", session.where_()),
        message: format!(
            "other pushes kept replacing it: after {MERGE_ROUNDS} rounds of merging, kiln's layers are still not in it (push again)"
        ),
    })
}

/// Makes every referrer findable from its subject: registries with the
/// referrers API index `subject` on their own; for the others the
/// `sha256-<hex>` tag holds an image index of the referrers (the referrers
/// tag schema), which is read, extended and written back.
pub(super) async fn update_referrers(
    session: &Session,
    referrers: &[Doc],
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let mut by_subject: BTreeMap<Digest, Vec<&Doc>> = BTreeMap::new();
    for r in referrers {
        if let Some(s) = &r.subject {
            by_subject.entry(s.digest).or_default().push(r);
        }
    }
    for (subject, docs) in by_subject {
        let listed = session.listed_referrers(&subject).await?;
        let missing: Vec<&&Doc> = docs
            .iter()
            .filter(|d| !listed.contains(&d.digest))
            .collect();
        for d in docs.iter().filter(|d| listed.contains(&d.digest)) {
            report.referrers.push(ReferrerStat {
                subject,
                manifest: d.digest,
                via: "listed",
            });
        }
        if missing.is_empty() {
            continue;
        }
        let tag = digest_tag(&subject, "");
        // Read, add what is missing, write, and read back after a settling
        // wait, as for the cosign tags: a concurrent push may have written
        // an index it read before kiln's write.
        let mut rounds = 0;
        loop {
            let started = std::time::Instant::now();
            let mut index: Value = match session.get_manifest(&tag).await? {
                Some((bytes, _)) => {
                    serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
                        what: format!("referrers index {tag} in {}", session.where_()),
                        message: format!("not JSON: {e}"),
                    })?
                }
                None => serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": INDEX_MEDIA_TYPE,
                    "manifests": [],
                }),
            };
            let list = index
                .get_mut("manifests")
                .and_then(Value::as_array_mut)
                .ok_or_else(|| RegistryError::Invalid {
                    what: format!("referrers index {tag} in {}", session.where_()),
                    message: "is not an image index".into(),
                })?;
            let present: BTreeSet<String> = list
                .iter()
                .filter_map(|e| e.get("digest").and_then(Value::as_str).map(String::from))
                .collect();
            let todo: Vec<&&&Doc> = missing
                .iter()
                .filter(|d| !present.contains(&d.digest.to_string()))
                .collect();
            if todo.is_empty() {
                break;
            }
            if rounds == MERGE_ROUNDS {
                return Err(RegistryError::Invalid {
                    what: format!("referrers index {tag} in {}", session.where_()),
                    message: format!(
                        "other pushes kept replacing it: after {MERGE_ROUNDS} rounds of merging, kiln's referrers are still not listed (push again)"
                    ),
                });
            }
            for d in todo {
                let mut desc = serde_json::json!({
                    "mediaType": d.media_type,
                    "digest": d.digest.to_string(),
                    "size": d.bytes.len(),
                });
                if let Some(at) = &d.artifact_type {
                    desc["artifactType"] = Value::String(at.clone());
                }
                if !d.annotations.is_empty() {
                    desc["annotations"] = serde_json::to_value(&d.annotations).expect("strings");
                }
                list.push(desc);
            }
            let bytes = kiln_seed::json::canonical(&index);
            session.put_manifest(&tag, INDEX_MEDIA_TYPE, &bytes).await?;
            rounds += 1;
            tokio::time::sleep(settle_after(started.elapsed())).await;
        }
        for d in &missing {
            report.referrers.push(ReferrerStat {
                subject,
                manifest: d.digest,
                via: "tag",
            });
        }
        if rounds > 0 {
            report.tags_set.push(tag);
        }
    }
    Ok(())
}
