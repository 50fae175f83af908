//! The seed image that carries the three NoCloud documents.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::render::render;
use crate::{network_config, user_data, Error, SeedConfig};

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
    /// Read by hvbox's own boxes, which otherwise skip cloud-init on a boot whose
    /// seed it already applied; cloud-init keeps unknown meta-data keys to itself.
    #[serde(
        rename = "hvbox-every-boot",
        skip_serializing_if = "std::ops::Not::not"
    )]
    every_boot: bool,
}

/// User cloud-config keys that ask for work on every boot, not only the first:
/// `bootcmd`, and module lists that can set a module's frequency to `always`.
const EVERY_BOOT_KEYS: &[&str] = &[
    "bootcmd",
    "cloud_init_modules",
    "cloud_config_modules",
    "cloud_final_modules",
];

/// The `meta-data` document: instance id, hostname, and whether the user's
/// cloud-config needs cloud-init on every boot.
pub fn meta_data(cfg: &SeedConfig) -> String {
    let every_boot = cfg.user_data.as_ref().is_some_and(|u| {
        let doc = u.to_json();
        EVERY_BOOT_KEYS.iter().any(|k| doc.contains_key(*k))
    });
    render(&MetaData {
        instance_id: &cfg.instance_id,
        local_hostname: &cfg.hostname,
        every_boot,
    })
}

/// The complete `cidata` ISO image. Its bytes depend only on `cfg`, so
/// comparing them with an existing seed tells whether it must be rewritten.
pub fn seed_bytes(cfg: &SeedConfig) -> Result<Vec<u8>, Error> {
    let (meta, user, net) = (meta_data(cfg), user_data(cfg)?, network_config(cfg)?);
    let files: [(&str, &[u8]); 3] = [
        ("meta-data", meta.as_bytes()),
        ("user-data", user.as_bytes()),
        ("network-config", net.as_bytes()),
    ];
    let mut image = Vec::new();
    crate::iso::write_iso9660("cidata", &files, &mut image)
        .map_err(|e| Error::InvalidConfig(format!("cannot build the seed image: {e}")))?;
    Ok(image)
}

/// Writes the `cidata` ISO to `path` unless it already holds exactly these
/// bytes; returns whether the file changed. A change of anything the seed
/// carries (not just the instance id) gives new bytes, but cloud-init applies
/// most of user-data only on a new instance id: re-running it is the caller's
/// decision.
///
/// The write is atomic: a temporary file in the same directory is written,
/// fsynced and renamed over `path`, so a crash never leaves a half-written
/// seed. The file is mode 0600 because it holds the host private key.
pub fn write_seed(cfg: &SeedConfig, path: &Path) -> Result<bool, Error> {
    let image = seed_bytes(cfg)?;
    if std::fs::read(path).is_ok_and(|old| old == image) {
        return Ok(false);
    }
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".seed-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err)?;
    tmp.write_all(&image).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cfg;
    use crate::UserData;

    fn with_user_data(text: &str) -> SeedConfig {
        let mut c = cfg();
        c.user_data = Some(UserData::parse(text, "user-data").unwrap());
        c
    }

    #[test]
    fn meta_data_names_the_instance_and_host_only_by_default() {
        let meta = meta_data(&cfg());
        assert!(meta.contains("instance-id"), "{meta}");
        assert!(!meta.contains("hvbox-every-boot"), "{meta}");
        // hvbox's own per-boot mount script is not the user's: skipping stays allowed.
        let mut c = cfg();
        c.mounts = vec![crate::VirtiofsMount {
            tag: "project".into(),
            path: "/work".into(),
            read_only: false,
        }];
        assert!(!meta_data(&c).contains("hvbox-every-boot"));
        assert!(
            !meta_data(&with_user_data("#cloud-config\nruncmd: [date]\n"))
                .contains("hvbox-every-boot")
        );
    }

    #[test]
    fn user_work_on_every_boot_is_marked() {
        for text in [
            "#cloud-config\nbootcmd: [date]\n",
            "#cloud-config\ncloud_final_modules: [[scripts-user, always]]\n",
        ] {
            let meta = meta_data(&with_user_data(text));
            // The guest looks for the mark in the seed's raw bytes, as written here
            // (a string value in user-data would have its quotes escaped).
            assert!(
                meta.contains("\"hvbox-every-boot\": true"),
                "{text}: {meta}"
            );
        }
    }
}
