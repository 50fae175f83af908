//! Shell scripts that install or upgrade a kernel inside the guest with its own
//! package manager (apt or dnf, whichever the guest has).

/// Exit status of the script when the guest has neither apt-get nor dnf.
pub const NO_PACKAGE_MANAGER: i32 = 90;
/// Exit status when apt finds no kernel meta package to upgrade.
pub const NO_KERNEL_PACKAGE: i32 = 91;

/// The script, run as root with `sh -c`. `package` is a package file already
/// copied into the guest; without one the distro's kernel packages are upgraded
/// from its configured repositories.
pub fn script(package: Option<&str>) -> String {
    let apt = match package {
        Some(file) => format!("apt-get install -y {}", shell_quote(file)),
        // Upgrade the meta packages that pull in new kernels (linux-image-amd64,
        // linux-image-cloud-amd64, linux-image-virtual, linux-generic, ...), not the
        // versioned images themselves.
        None => format!(
            "apt-get update -q && metas=$(dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' 'linux-image-*' 'linux-generic*' 'linux-virtual*' 'linux-kvm*' 2>/dev/null | awk '$2 ~ /^ii/ && $1 !~ /^linux-image-(unsigned-)?[0-9]/ && $1 !~ /-dbg$/ {{print $1}}') && \
             if [ -z \"$metas\" ]; then echo 'no kernel meta package (such as linux-image-amd64) is installed, so apt has no newer kernel to offer; pass a package with --package' >&2; exit {NO_KERNEL_PACKAGE}; fi && \
             apt-get install -y --only-upgrade $metas"
        ),
    };
    let dnf = match package {
        Some(file) => format!("dnf -y install {}", shell_quote(file)),
        None => "dnf -y upgrade 'kernel*'".to_string(),
    };
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; \
         if command -v apt-get >/dev/null; then {apt}; \
         elif command -v dnf >/dev/null; then {dnf}; \
         else echo 'the guest has neither apt-get nor dnf' >&2; exit {NO_PACKAGE_MANAGER}; fi"
    )
}

/// `s` as one word for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in ["plain", "it's", "a b", "$(rm -rf /)", "'\"'"] {
            assert_eq!(sh(&format!("printf %s {}", shell_quote(s))), s);
        }
    }

    #[test]
    fn scripts_are_valid_sh() {
        for pkg in [
            None,
            Some("/tmp/linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb"),
        ] {
            let out = Command::new("sh")
                .args(["-n", "-c", &script(pkg)])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(script(Some("/tmp/x.deb")).contains("apt-get install -y '/tmp/x.deb'"));
        assert!(script(Some("/tmp/x.rpm")).contains("dnf -y install '/tmp/x.rpm'"));
    }

    #[test]
    fn meta_package_filter_keeps_only_meta_packages() {
        // The awk filter from the apt script, fed dpkg-query style lines.
        let script = script(None);
        let awk = script
            .split("| awk '")
            .nth(1)
            .and_then(|s| s.split("') &&").next())
            .unwrap();
        let input = "linux-image-cloud-amd64 ii \nlinux-image-6.1.0-50-cloud-amd64 ii \nlinux-image-6.1.0-49-cloud-amd64 rc \nlinux-image-virtual ii \nlinux-image-unsigned-6.8.0-1-generic ii \nlinux-image-amd64-dbg ii \nlinux-generic ii \n";
        let out = sh(&format!(
            "printf '%s' {} | awk {}",
            shell_quote(input),
            shell_quote(awk)
        ));
        assert_eq!(
            out,
            "linux-image-cloud-amd64\nlinux-image-virtual\nlinux-generic\n"
        );
    }
}
