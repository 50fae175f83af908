//! OCI image layout archives (`oci-archive:` for skopeo and podman), written
//! without a container daemon: one uncompressed layer, its config, the manifest,
//! the index, in a tar whose entries are sorted and have fixed times and owners,
//! so the same files always give the same archive and the same image digest.

pub mod layer;

use anyhow::{Context, Result};
use layer::Layer;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// Write an image of `layer` to `path` (through a temporary file, renamed into
/// place when complete); `tag` names it in the index. Returns the manifest's
/// digest, which is the image's.
pub fn write_archive(path: &Path, layer: &Layer, tag: &str) -> Result<String> {
    // First pass over the layer: its digest, which the config and manifest name.
    let mut hasher = Sha256::new();
    let read = std::io::copy(&mut layer.reader()?, &mut HashWriter(&mut hasher))
        .context("reading the layer's files")?;
    anyhow::ensure!(
        read == layer.len(),
        "the layer's files changed while they were read"
    );
    let layer_hex = hex(&hasher.finalize());
    let config = json_bytes(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    }));
    let config_hex = hex(&Sha256::digest(&config));
    let manifest = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
    }));
    let manifest_hex = hex(&Sha256::digest(&manifest));
    let image_digest = format!("sha256:{manifest_hex}");
    let index = json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }));
    let layout = json_bytes(&json!({"imageLayoutVersion": "1.0.0"}));

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".hvbox-oci-")
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut out = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    // Sorted by path.
    let mut blobs = vec![
        (config_hex, Blob::Bytes(&config)),
        (layer_hex, Blob::Layer),
        (manifest_hex, Blob::Bytes(&manifest)),
    ];
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    dir_entry(&mut out, "blobs/")?;
    dir_entry(&mut out, "blobs/sha256/")?;
    for (hex, blob) in &blobs {
        let name = format!("blobs/sha256/{hex}");
        match blob {
            Blob::Bytes(bytes) => file_entry(&mut out, &name, bytes.len() as u64, *bytes)?,
            Blob::Layer => {
                let mut reader = layer.reader()?;
                file_entry(&mut out, &name, layer.len(), &mut reader)?;
            }
        }
    }
    file_entry(&mut out, "index.json", index.len() as u64, &index[..])?;
    file_entry(&mut out, "oci-layout", layout.len() as u64, &layout[..])?;
    let mut buffered = out.into_inner().context("finishing the archive")?;
    buffered.flush()?;
    drop(buffered);
    // An image is no secret (tempfile made it 0600): readable as a copied file is.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(image_digest)
}

enum Blob<'a> {
    Bytes(&'a [u8]),
    Layer,
}

fn fixed_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn dir_entry<W: Write>(out: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut h = fixed_header(tar::EntryType::Directory, 0, 0o755);
    out.append_data(&mut h, path, std::io::empty())
        .context("writing the archive")
}

fn file_entry<W: Write>(
    out: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = fixed_header(tar::EntryType::Regular, size, 0o644);
    out.append_data(&mut h, path, data)
        .context("writing the archive")
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values serialize")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
