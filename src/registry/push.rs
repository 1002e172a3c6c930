//! `push`: blobs, then manifests by digest, then attachments, and the tag
//! last.

use super::*;

/// What to push: an image layout, which entry of it (by ref name), and
/// where its signatures and attestations are (a layout; may be the same).
#[derive(Clone, Debug, Default)]
pub struct PushSource {
    pub layout: PathBuf,
    pub layout_ref: Option<String>,
    pub attachments: Option<PathBuf>,
}

/// Pushes the image in `source` to `target` (which must have a tag and no
/// digest), attached artifacts first and the tag last.
pub fn push(
    source: &PushSource,
    target: &RegistryRef,
    opts: &Options,
) -> Result<PushReport, RegistryError> {
    if target.digest.is_some() {
        return Err(RegistryError::Invalid {
            what: target.to_string(),
            message: "push to a tag (registry/repository:tag), not a digest".into(),
        });
    }
    for m in &opts.mount_from {
        RegistryRef::parse(&format!("{}/{m}", target.registry))?;
    }
    runtime()?.block_on(push_async(source, target, opts))
}

pub(super) async fn push_async(
    source: &PushSource,
    target: &RegistryRef,
    opts: &Options,
) -> Result<PushReport, RegistryError> {
    let layout_err = |path: &Path| {
        let path = path.to_path_buf();
        move |error| RegistryError::Layout { path, error }
    };
    let layout = Layout::open(&source.layout).map_err(layout_err(&source.layout))?;
    let entries = layout_entries(&layout)?;
    let root = pick_root(&layout, &entries, source.layout_ref.as_deref())?;
    let mut graph = Graph::default();
    graph.add_from_layout(&layout, &root, 0)?;
    let subjects: BTreeSet<Digest> = graph.docs.iter().map(|d| d.digest).collect();

    let attachments = match &source.attachments {
        Some(dir) => {
            let al = Layout::open(dir).map_err(layout_err(dir))?;
            let ae = layout_entries(&al)?;
            Some((find_attachments(&al, &ae, &subjects)?, al))
        }
        None => None,
    };
    // Signatures travel with the image they sign: a name (or an extra
    // image) in a signed layout that leads to an image its signatures do
    // not cover is refused rather than pushed under them.
    if let Some((att, al)) = &attachments {
        let sig_tag = kiln_seed::attest::cosign_tag(&root.digest, "sig");
        let signed = att.tagged.iter().any(|(n, _)| *n == sig_tag)
            || att
                .referrers
                .iter()
                .any(|r| r.subject.as_ref().is_some_and(|s| s.digest == root.digest));
        if !signed {
            return Err(RegistryError::LayoutContent {
                path: al.root().to_path_buf(),
                message: format!(
                    "{} leads to {}, which the layout's signatures do not cover (no {sig_tag} and no signature referrer): it is not the signed image; push the signed image, or pass --no-signatures to push this one unsigned on purpose",
                    source
                        .layout_ref
                        .as_deref()
                        .map(|n| format!("the name {n:?}"))
                        .unwrap_or_else(|| "the layout's image".into()),
                    root.digest
                ),
            });
        }
    }

    // The signatures must name the repository they are pushed to, or a
    // consumer's policy that checks the signed identity rejects them.
    if let Some((att, al)) = &attachments {
        let want = normalized_repository(&target.name());
        let signed = signed_identities(al, att)?;
        if signed.iter().any(|s| *s != want) {
            return Err(RegistryError::IdentityMismatch {
                layout: al.root().to_path_buf(),
                signed: signed.into_iter().collect(),
                target: target.name(),
            });
        }
    }

    // Every blob is checked before the first write: a damaged layout
    // writes nothing, even when the registry already has the damaged blob
    // (which would otherwise go unnoticed). The check runs on its own
    // thread while the registry is asked which blobs it has; uploads check
    // again what they read.
    let mut to_verify = vec![(
        layout.root().to_path_buf(),
        graph.blobs.values().cloned().collect::<Vec<_>>(),
    )];
    if let Some((att, al)) = &attachments {
        to_verify.push((
            al.root().to_path_buf(),
            att.graph.blobs.values().cloned().collect(),
        ));
    }
    let verification = tokio::task::spawn_blocking(move || verify_layout_blobs(&to_verify));

    let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
    let session = Session::connect(target, opts, "pushing").await?;
    let mut report = PushReport {
        reference: format!("{}:{tag}@{}", target.name(), root.digest),
        digest: Some(root.digest),
        ..Default::default()
    };
    let present = present_blobs(&session, &graph).await?;
    let present_attached = match &attachments {
        Some((att, _)) => present_blobs(&session, &att.graph).await?,
        None => BTreeSet::new(),
    };
    verification
        .await
        .map_err(|e| RegistryError::Runtime(std::io::Error::other(e.to_string())))??;

    push_graph(&session, &layout, &graph, &present, &mut report).await?;

    if let Some((att, al)) = &attachments {
        push_graph(&session, al, &att.graph, &present_attached, &mut report).await?;
        for (name, digest) in &att.tagged {
            set_cosign_tag(&session, name, digest, &att.graph, &mut report).await?;
        }
        update_referrers(&session, &att.referrers, &mut report).await?;
    }

    // Last: the tag moves only now that everything it leads to is in place.
    let root_doc = graph.docs.last().expect("the root was added");
    set_tag(&session, &tag, &root_doc.digest, &graph, &mut report).await?;
    report.retries = session.retries.load(Ordering::Relaxed);
    Ok(report)
}

pub(super) async fn set_tag(
    session: &Session,
    tag: &str,
    digest: &Digest,
    graph: &Graph,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let current = session.get_manifest(tag).await?.map(|(_, d)| d);
    put_tag(session, tag, graph.doc(digest), current, report).await
}

/// Writes `doc` under `tag` unless the tag's `current` digest is already its.
pub(super) async fn put_tag(
    session: &Session,
    tag: &str,
    doc: &Doc,
    current: Option<Digest>,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    if current == Some(doc.digest) {
        report.tags_unchanged.push(tag.to_string());
    } else {
        session
            .put_manifest(tag, &doc.media_type, &doc.bytes)
            .await?;
        report.tags_set.push(tag.to_string());
    }
    Ok(())
}

/// Blobs (verified as read, skipped when present), then manifests by digest.
/// Checks every blob of each (layout, blobs) against its digest and size.
pub(super) fn verify_layout_blobs(sets: &[(PathBuf, Vec<Desc>)]) -> Result<(), RegistryError> {
    for (root, blobs) in sets {
        let layout = Layout::open(root).map_err(|error| RegistryError::Layout {
            path: root.clone(),
            error,
        })?;
        for b in blobs {
            layout
                .verify_blob(&oci::descriptor(&b.media_type, &b.digest, b.size))
                .map_err(|error| RegistryError::Layout {
                    path: root.clone(),
                    error,
                })?;
        }
    }
    Ok(())
}

/// The blobs of `graph` the repository already has (HEAD each, concurrently).
pub(super) async fn present_blobs(
    session: &Session,
    graph: &Graph,
) -> Result<BTreeSet<Digest>, RegistryError> {
    let found: Vec<Option<Digest>> = stream::iter(graph.blobs.keys().copied())
        .map(|d| async move { Ok::<_, RegistryError>(session.blob_exists(&d).await?.then_some(d)) })
        .buffered(session.concurrency)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// What became of one blob of a push.
#[derive(PartialEq)]
enum BlobOutcome {
    Present,
    Mounted,
    Uploaded,
}

/// One blob of a push: mounted from another repository when one has it,
/// else read from the layout, checked and uploaded.
async fn transfer_blob(
    session: &Session,
    layout: &Layout,
    present: &BTreeSet<Digest>,
    desc: Desc,
) -> Result<(BlobStat, BlobOutcome), RegistryError> {
    let stat = BlobStat {
        digest: desc.digest,
        size: desc.size,
    };
    if present.contains(&desc.digest) {
        return Ok((stat, BlobOutcome::Present));
    }
    for from in &session.mount_from {
        if session.mount_blob(&desc.digest, from).await && session.blob_exists(&desc.digest).await?
        {
            session.progress.inc(desc.size);
            return Ok((stat, BlobOutcome::Mounted));
        }
    }
    let path = layout.blob_path(&desc.digest);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(io_err("reading", &path))?;
    let what = format!("layout {}: blob {}", layout.root().display(), desc.digest);
    check_blob(&bytes, &desc, what)?;
    session.upload_blob(&desc.digest, bytes).await?;
    session.progress.inc(desc.size);
    Ok((stat, BlobOutcome::Uploaded))
}

pub(super) async fn push_graph(
    session: &Session,
    layout: &Layout,
    graph: &Graph,
    present: &BTreeSet<Digest>,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    session.progress.inc_length(
        graph
            .blobs
            .values()
            .filter(|d| !present.contains(&d.digest))
            .map(|d| d.size)
            .sum(),
    );
    // After a failure no new transfer starts, but those under way finish
    // (dropping one between opening its upload and finishing it would
    // leave the session open on the registry); the first failure in blob
    // order is reported.
    let failed = std::sync::atomic::AtomicBool::new(false);
    let failed = &failed;
    let outcomes: Vec<Option<Result<(BlobStat, BlobOutcome), RegistryError>>> =
        stream::iter(graph.blobs.values().cloned())
            .map(|desc| async move {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return None;
                }
                let outcome = transfer_blob(session, layout, present, desc).await;
                if outcome.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Some(outcome)
            })
            .buffered(session.concurrency)
            .collect()
            .await;
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes.into_iter().flatten() {
        results.push(outcome?);
    }

    for (stat, outcome) in results {
        match outcome {
            BlobOutcome::Uploaded => {
                report.bytes_uploaded += stat.size;
                report.blobs_uploaded.push(stat);
            }
            BlobOutcome::Mounted => report.blobs_mounted.push(stat),
            BlobOutcome::Present => report.blobs_present.push(stat),
        }
    }
    for doc in &graph.docs {
        let d = doc.digest.to_string();
        if session.get_manifest(&d).await?.is_some() {
            report.manifests_present.push(doc.digest);
        } else {
            session
                .put_manifest(&d, &doc.media_type, &doc.bytes)
                .await?;
            report.manifests_pushed.push(doc.digest);
        }
    }
    Ok(())
}
