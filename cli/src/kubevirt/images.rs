//! The names of the images `hvbox box export` writes for a box, under a registry
//! prefix: the same box always gives the same names, tagged by its pinned digest.

use hvbox_boxes::Digest;

/// Where the kernel image holds the boot files (`hvbox box export --kernel-oci`).
pub const KERNEL_PATH: &str = "/boot/vmlinuz";
pub const INITRD_PATH: &str = "/boot/initrd.img";

/// The containerDisk image and the kernel image of the box `name` with disk
/// `digest`, under `prefix` (such as `registry.example.com/team`).
pub fn names(prefix: &str, name: &str, digest: &Digest) -> (String, String) {
    let prefix = prefix.trim_end_matches('/');
    let repo = repository(name);
    let tag = format!(
        "{}-{}",
        digest.algorithm,
        &digest.hex[..16.min(digest.hex.len())]
    );
    (
        format!("{prefix}/{repo}:{tag}"),
        format!("{prefix}/{repo}-kernel:{tag}"),
    )
}

/// The images' tag: the box's digest, shortened.
pub fn tag(digest: &Digest) -> String {
    format!(
        "{}-{}",
        digest.algorithm,
        &digest.hex[..16.min(digest.hex.len())]
    )
}

/// A registry checks prefixes when the image is pushed; this one only what would
/// make the names unusable in the objects.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c == '@') {
        return Err(format!(
            "--registry {prefix:?} is not an image name prefix: give one such as registry.example.com/team"
        ));
    }
    Ok(())
}

/// A repository name component: lowercase letters, digits and separators.
pub fn repository(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        let keep = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(
            if keep || (c == '.' || c == '_' || c == '-') && !out.is_empty() {
                c
            } else {
                '-'
            },
        );
    }
    let out = out
        .trim_matches(|c| c == '-' || c == '.' || c == '_')
        .to_string();
    if out.is_empty() {
        "box".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tagged_by_the_digest() {
        let digest: Digest = format!("sha512:{}", "ab".repeat(64)).parse().unwrap();
        let (disk, kernel) = names("reg.example:5000/team/", "Debian 12", &digest);
        assert_eq!(
            disk,
            "reg.example:5000/team/debian-12:sha512-abababababababab"
        );
        assert_eq!(
            kernel,
            "reg.example:5000/team/debian-12-kernel:sha512-abababababababab"
        );
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("ghcr.io/me").is_ok());
    }
}
