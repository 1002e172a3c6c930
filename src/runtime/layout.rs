//! The test copy of an image: its layers plus a layer holding the probe.

use super::*;

/// Writes the test copy of one platform of the image in `layout`: its
/// layers plus one layer holding the probe at [`PROBE_PATH`]; a new config
/// (diff_id and history appended) and manifest. `dest` must not exist; on
/// failure nothing is left there. Returns the tag (`test-<arch>`).
pub fn write_test_layout(
    image: &str,
    layout: &Path,
    arch: Arch,
    probe: &Path,
    dest: &Path,
) -> Result<String, RuntimeError> {
    let lerr = |source| RuntimeError::Layout {
        image: image.to_string(),
        layout: layout.to_path_buf(),
        source,
    };
    let src = Layout::open(layout).map_err(lerr)?;
    let manifests = kiln_seed::policy::platform_manifests(&src, None, image).map_err(|e| {
        RuntimeError::Image {
            image: image.into(),
            message: e.to_string(),
        }
    })?;
    let mut found = None;
    for d in manifests {
        let m = src.read_manifest(&d).map_err(lerr)?;
        let bytes = src.read_blob(m.config()).map_err(lerr)?;
        let config: Value = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Image {
            image: image.into(),
            message: format!("config: {e}"),
        })?;
        if config["architecture"] == arch.debian() {
            found = Some((m, config));
            break;
        }
    }
    let (manifest, mut config) = found.ok_or_else(|| RuntimeError::Image {
        image: image.into(),
        message: format!("{} holds no {arch} image", layout.display()),
    })?;
    let bytes = std::fs::read(probe).map_err(io("reading", probe))?;
    let created = config["created"].as_str().unwrap_or_default().to_string();
    let layer = tarwrite::write_layer(vec![Entry::file(
        PROBE_PATH.trim_start_matches('/'),
        bytes,
        0o755,
        0,
        0,
        0,
    )])
    .map_err(io("writing the probe layer for", probe))?;

    let tag = format!("test-{arch}");
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let partial = crate::fsutil::Partial::reserve(
        parent,
        &dest.file_name().unwrap_or_default().to_string_lossy(),
    );
    let tmp = partial.path().to_path_buf();
    let result = (|| -> Result<(), RuntimeError> {
        let werr = |source| RuntimeError::Layout {
            image: image.to_string(),
            layout: tmp.clone(),
            source,
        };
        let w = LayoutWriter::create(&tmp).map_err(werr)?;
        for l in manifest.layers() {
            let d = oci::kiln_digest(l.digest()).map_err(|message| RuntimeError::Image {
                image: image.into(),
                message,
            })?;
            w.copy_blob(&src.blob_path(&d), &d, l.size(), "the image's layer")
                .map_err(werr)?;
        }
        w.put_blob(&layer.bytes).map_err(werr)?;
        let diff_ids =
            config["rootfs"]["diff_ids"]
                .as_array_mut()
                .ok_or_else(|| RuntimeError::Image {
                    image: image.into(),
                    message: "config has no rootfs.diff_ids".into(),
                })?;
        diff_ids.push(json!(layer.diff_id.to_string()));
        let history = config
            .as_object_mut()
            .expect("a config is an object")
            .entry("history")
            .or_insert(json!([]));
        if let Some(h) = history.as_array_mut() {
            h.push(json!({
                "created": created,
                "created_by": "kiln test: the probe, in the test copy of the image only",
                "comment": PROBE_PATH,
            }));
        }
        let (config_desc, _) = w.put_document(CONFIG_MEDIA_TYPE, &config).map_err(werr)?;
        let mut layers = manifest.layers().clone();
        layers.push(oci::descriptor(
            LAYER_MEDIA_TYPE,
            &layer.digest,
            layer.size(),
        ));
        let mut annotations: BTreeMap<String, String> = manifest
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        annotations.insert(TEST_ANNOTATION.into(), "probe".into());
        let new = oci::new_manifest(config_desc, layers, &annotations);
        let (mut desc, _) = w
            .put_document(oci::MANIFEST_MEDIA_TYPE, &new)
            .map_err(werr)?;
        desc.set_platform(Some(oci::platform(arch)));
        let mut refs = BTreeMap::new();
        refs.insert(oci::REF_NAME.to_string(), tag.clone());
        oci::set_annotations(&mut desc, &refs);
        w.write_index(vec![desc]).map_err(werr)?;
        Ok(())
    })();
    result?;
    crate::fsutil::replace_dir(&partial.keep(), dest)?;
    Ok(tag)
}
