//! SSH keys hvbox makes for each machine: the login key and the guest's host key.

use anyhow::{Context, Result};
use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub struct KeyPair {
    pub private_openssh: String,
    pub public_openssh: String,
}

pub fn generate_ed25519(comment: &str) -> Result<KeyPair> {
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generating an ed25519 key")?;
    key.set_comment(comment);
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .context("encoding the private key")?
        .to_string();
    let public_openssh = key
        .public_key()
        .to_openssh()
        .context("encoding the public key")?;
    Ok(KeyPair {
        private_openssh,
        public_openssh,
    })
}

/// The OpenSSH public key line of an OpenSSH private key.
pub fn public_of(private_openssh: &str) -> Result<String> {
    PrivateKey::from_openssh(private_openssh)
        .context("reading the machine's host key")?
        .public_key()
        .to_openssh()
        .context("encoding the public key")
}

/// Write a secret with mode 0600 from the start, so it is never readable by others.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_openssh_ed25519_and_private_file_is_0600() {
        let pair = generate_ed25519("test@hvbox").unwrap();
        assert!(pair.public_openssh.starts_with("ssh-ed25519 "));
        assert!(pair.public_openssh.ends_with(" test@hvbox"));
        assert!(pair
            .private_openssh
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_private(&path, &pair.private_openssh).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // ssh-keygen must accept it and derive the same public key.
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let derived = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            derived.split_whitespace().nth(1),
            pair.public_openssh.split_whitespace().nth(1)
        );
    }
}
