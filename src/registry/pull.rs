//! `pull`: an image and what is attached to it into a new OCI layout,
//! every byte checked as it lands.

use super::*;

/// Pulls `source` (a tag or digest) with all its platforms, and the
/// signatures, attestations and referrers attached to any of its digests,
/// into a new OCI layout at `dest`. The image is named `ref_name` in the
/// layout's index.json (default: the source's tag, else `latest`), each
/// platform manifest `<ref_name>-<arch>`, each attachment by its cosign tag.
pub fn pull(
    source: &RegistryRef,
    dest: &Path,
    ref_name: Option<&str>,
    with_attachments: bool,
    force: bool,
    opts: &Options,
) -> Result<PullReport, RegistryError> {
    // Even with --force, only a layout (or an empty directory) is ever
    // replaced: checked before anything is downloaded.
    crate::fsutil::check_replaceable(dest)?;
    if dest.symlink_metadata().is_ok() && !force {
        return Err(RegistryError::Exists(dest.to_path_buf()));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    let tmp = crate::fsutil::Partial::reserve(
        parent,
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("layout"),
    );
    std::fs::create_dir(tmp.path()).map_err(io_err("creating a temporary directory in", parent))?;
    let name = ref_name
        .map(String::from)
        .or_else(|| source.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let mut report = runtime()?.block_on(pull_async(
        source,
        tmp.path(),
        &name,
        with_attachments,
        opts,
    ))?;
    // Into place: the old layout (with --force) goes only once the new one is complete.
    crate::fsutil::replace_dir(&tmp.keep(), dest)?;
    report.layout = dest.to_path_buf();
    Ok(report)
}

pub(super) struct PullState {
    pub(super) blobs_dir: PathBuf,
    pub(super) have: BTreeSet<Digest>,
    pub(super) report: PullReport,
}

pub(super) async fn pull_async(
    source: &RegistryRef,
    out: &Path,
    name: &str,
    with_attachments: bool,
    opts: &Options,
) -> Result<PullReport, RegistryError> {
    let session = Session::connect(source, opts, "pulling").await?;
    let blobs_dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io_err("creating", &blobs_dir))?;
    let mut st = PullState {
        blobs_dir,
        have: BTreeSet::new(),
        report: PullReport {
            reference: source.to_string(),
            ..Default::default()
        },
    };
    let what = source.reference();
    let (bytes, digest) =
        session
            .get_manifest(&what)
            .await?
            .ok_or_else(|| RegistryError::Invalid {
                what: source.to_string(),
                message: "not found in the registry".into(),
            })?;
    let root = Doc::parse(bytes, digest, "").map_err(|message| RegistryError::Invalid {
        what: format!("manifest {digest}"),
        message,
    })?;
    st.report.digest = Some(digest);
    let mut entries: Vec<Value> = Vec::new();
    let mut subjects = vec![digest];
    let root_entry = serde_json::json!({
        "mediaType": root.media_type,
        "digest": digest.to_string(),
        "size": root.bytes.len(),
        "annotations": { REF_NAME: name },
    });
    let children = pull_doc(&session, &mut st, root, 0).await?;
    entries.push(root_entry);
    for child in children {
        subjects.push(child.digest);
        let arch = child
            .platform
            .as_ref()
            .and_then(|p| p.get("architecture"))
            .and_then(Value::as_str)
            .map(String::from);
        let mut e = serde_json::json!({
            "mediaType": child.media_type,
            "digest": child.digest.to_string(),
            "size": child.size,
        });
        if let Some(p) = &child.platform {
            e["platform"] = p.clone();
        }
        if let Some(a) = arch {
            e["annotations"] = serde_json::json!({ REF_NAME: format!("{name}-{a}") });
        }
        entries.push(e);
    }

    if with_attachments {
        for subject in &subjects {
            for suffix in ["sig", "att", "sbom"] {
                let tag = digest_tag(subject, suffix);
                let Some((bytes, d)) = session.get_manifest(&tag).await? else {
                    continue;
                };
                let doc = Doc::parse(bytes, d, "").map_err(|message| RegistryError::Invalid {
                    what: format!("{} {tag}", session.where_()),
                    message,
                })?;
                let media_type = doc.media_type.clone();
                let size = doc.bytes.len();
                pull_doc(&session, &mut st, doc, 0).await?;
                entries.push(serde_json::json!({
                    "mediaType": media_type,
                    "digest": d.to_string(),
                    "size": size,
                    "annotations": { REF_NAME: tag },
                }));
                st.report.tags.push(tag);
            }
            let (listed, listed_via_tag) = session.referrers_of(subject).await?;
            for d in listed {
                if st.have.contains(&d) {
                    continue;
                }
                let Some((bytes, got)) = session.get_manifest(&d.to_string()).await? else {
                    st.report.referrers_missing.push(ReferrerStat {
                        subject: *subject,
                        manifest: d,
                        via: if listed_via_tag { "tag" } else { "api" },
                    });
                    continue;
                };
                let doc = Doc::parse(bytes, got, "").map_err(|message| RegistryError::Invalid {
                    what: format!("{} referrer {d} of {subject}", session.where_()),
                    message,
                })?;
                if doc.subject.as_ref().map(|s| s.digest) != Some(*subject) {
                    return Err(RegistryError::Invalid {
                        what: format!("{} referrer {d}", session.where_()),
                        message: format!(
                            "is listed as a referrer of {subject} but its subject is {}",
                            doc.subject
                                .as_ref()
                                .map(|s| s.digest.to_string())
                                .unwrap_or_else(|| "missing".into())
                        ),
                    });
                }
                let mut e = serde_json::json!({
                    "mediaType": doc.media_type,
                    "digest": d.to_string(),
                    "size": doc.bytes.len(),
                });
                if let Some(at) = &doc.artifact_type {
                    e["artifactType"] = Value::String(at.clone());
                }
                let mut ann = doc.annotations.clone();
                ann.retain(|k, _| k != REF_NAME);
                if !ann.is_empty() {
                    e["annotations"] = serde_json::to_value(&ann).expect("strings");
                }
                pull_doc(&session, &mut st, doc, 0).await?;
                entries.push(e);
                st.report.referrers.push(ReferrerStat {
                    subject: *subject,
                    manifest: d,
                    via: if listed_via_tag { "tag" } else { "api" },
                });
            }
        }
    }

    let layout_file = out.join("oci-layout");
    std::fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err("writing", &layout_file))?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": entries,
    });
    let index_file = out.join("index.json");
    std::fs::write(&index_file, kiln_seed::json::pretty(&index))
        .map_err(io_err("writing", &index_file))?;
    st.report.retries = session.retries.load(Ordering::Relaxed);
    Ok(st.report)
}

/// Stores a fetched document and everything below it; returns the
/// platform manifests of an index (for the layout's `<tag>-<arch>` names).
pub(super) async fn pull_doc(
    session: &Session,
    st: &mut PullState,
    doc: Doc,
    depth: u32,
) -> Result<Vec<Desc>, RegistryError> {
    if depth > 8 {
        return Err(RegistryError::Invalid {
            what: doc.digest.to_string(),
            message: "image indexes nested too deeply".into(),
        });
    }
    let mut children = Vec::new();
    if st.have.insert(doc.digest) {
        write_blob(&st.blobs_dir, &doc.digest, &doc.bytes)?;
        st.report.manifests += 1;
        st.report.bytes += doc.bytes.len() as u64;
    }
    for m in &doc.manifests {
        children.push(m.clone());
        if st.have.contains(&m.digest) {
            continue;
        }
        let (bytes, d) = session
            .get_manifest(&m.digest.to_string())
            .await?
            .ok_or_else(|| RegistryError::Invalid {
                what: format!("{} {}", session.where_(), doc.digest),
                message: format!(
                    "lists manifest {} which the registry does not have",
                    m.digest
                ),
            })?;
        if bytes.len() as u64 != m.size {
            return Err(RegistryError::Invalid {
                what: format!("{} manifest {}", session.where_(), m.digest),
                message: format!("is {} bytes, its descriptor says {}", bytes.len(), m.size),
            });
        }
        let child =
            Doc::parse(bytes, d, &m.media_type).map_err(|message| RegistryError::Invalid {
                what: format!("{} manifest {}", session.where_(), m.digest),
                message,
            })?;
        Box::pin(pull_doc(session, st, child, depth + 1)).await?;
    }
    // Each blob once, however often the manifest lists it (a layer may
    // repeat; config and layer may be the same bytes).
    let mut seen = BTreeSet::new();
    let wanted: Vec<Desc> = doc
        .blobs
        .iter()
        .filter(|b| !st.have.contains(&b.digest) && seen.insert(b.digest))
        .cloned()
        .collect();
    let blobs_dir = st.blobs_dir.clone();
    session
        .progress
        .inc_length(wanted.iter().map(|b| b.size).sum());
    let sizes: Vec<(Digest, u64)> = stream::iter(wanted.clone())
        .map(|b| {
            let blobs_dir = blobs_dir.clone();
            async move {
                fetch_blob(session, &blobs_dir, &b).await?;
                session.progress.inc(b.size);
                Ok::<_, RegistryError>((b.digest, b.size))
            }
        })
        .buffer_unordered(session.concurrency)
        .try_collect()
        .await?;
    for (d, size) in sizes {
        if st.have.insert(d) {
            st.report.blobs += 1;
            st.report.bytes += size;
        }
    }
    Ok(children)
}

pub(super) fn write_blob(dir: &Path, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
    let path = dir.join(digest.hex());
    std::fs::write(&path, bytes).map_err(io_err("writing", &path))
}

/// Downloads one blob into the layout, verifying size and digest as the
/// bytes land (nothing is read back); a mismatch leaves nothing at the
/// blob's path. A registry that sends more than the descriptor declares is
/// cut off at that point, and not asked again.
pub(super) async fn fetch_blob(
    session: &Session,
    dir: &Path,
    desc: &Desc,
) -> Result<(), RegistryError> {
    let dest = dir.join(desc.digest.hex());
    let tmp = dir.join(format!(".partial-{}", desc.digest.hex()));
    let r = reference(&session.target, &desc.digest.to_string());
    let d = desc.digest.to_string();
    let what = format!("fetching blob {} from {}", desc.digest, session.where_());
    let landed = std::sync::Arc::new(std::sync::Mutex::new(Landed::default()));
    let result = session
        .retrying_transfer(&what, || async {
            *landed.lock().expect("not poisoned") = Landed::default();
            let file = tokio::fs::File::create(&tmp).await?;
            let out = CheckedFile {
                file,
                landed: landed.clone(),
                limit: desc.size,
            };
            session.client.pull_blob(&r, d.as_str(), out).await
        })
        .await;
    let check = async {
        result?;
        let got = std::mem::take(&mut *landed.lock().expect("not poisoned"));
        if got.written != desc.size {
            return Err(RegistryError::Invalid {
                what: what.clone(),
                message: format!(
                    "is {} bytes, its descriptor says {}",
                    got.written, desc.size
                ),
            });
        }
        let actual = Digest(sha2::Digest::finalize(got.hasher).into());
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                what: what.clone(),
                expected: desc.digest,
                actual,
            });
        }
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io_err("renaming", &tmp))
    };
    let r = check.await;
    if r.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    r
}

/// What has landed of a blob: its hash and length so far.
#[derive(Default)]
struct Landed {
    hasher: sha2::Sha256,
    written: u64,
}

/// A blob's file that hashes and counts what is written to it and refuses
/// to grow past `limit` (the descriptor's size): an endless or oversized
/// body ends there instead of filling the disk.
struct CheckedFile {
    file: tokio::fs::File,
    landed: std::sync::Arc<std::sync::Mutex<Landed>>,
    limit: u64,
}

/// The error a [`CheckedFile`] gives when the body outgrows the descriptor:
/// not a network failure, so never retried ([`super::session::is_transient`]).
pub(super) fn too_long(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the registry sends more than the {limit} bytes its descriptor declares"),
    )
}

impl tokio::io::AsyncWrite for CheckedFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use sha2::Digest as _;
        let this = &mut *self;
        let written = this.landed.lock().expect("not poisoned").written;
        if written + buf.len() as u64 > this.limit {
            return std::task::Poll::Ready(Err(too_long(this.limit)));
        }
        let polled = std::pin::Pin::new(&mut this.file).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            let mut landed = this.landed.lock().expect("not poisoned");
            landed.hasher.update(&buf[..*n]);
            landed.written += *n as u64;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}
