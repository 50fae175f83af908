//! Fixtures and tool runners shared by the integration tests.
#![allow(dead_code)] // each test crate uses a different part

pub mod cloud_init;

use std::path::Path;
use std::process::Command;

use hvbox_cloud_init::{HostKey, NetworkSettings, SeedConfig, UserData, VirtiofsMount, WriteFile};

/// Only what `hvbox up` always sets.
pub fn plain() -> SeedConfig {
    SeedConfig {
        instance_id: "hvbox-5f3a9c".into(),
        hostname: "web1".into(),
        user: "hv".into(),
        authorized_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1 alice@laptop".into(),
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ bob@desk".into(),
        ],
        host_key: HostKey {
            private_openssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n".into(),
            public_openssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk root@web1".into(),
        },
        mac: "52:54:00:12:34:56".into(),
        ..Default::default()
    }
}

/// Every convenience key and static addressing next to DHCP.
pub fn full() -> SeedConfig {
    SeedConfig {
        user_groups: vec!["adm".into(), "docker".into()],
        network: NetworkSettings {
            dhcp4: true,
            dhcp6: true,
            addresses: vec!["192.168.10.5/24".into(), "fd00:10::5/64".into()],
            gateway4: Some("192.168.10.1".into()),
            gateway6: Some("fd00:10::1".into()),
            nameservers: vec!["192.168.10.1".into(), "fd00:10::1".into()],
        },
        timezone: Some("Europe/Paris".into()),
        packages: vec!["htop".into(), "git".into()],
        write_files: vec![
            WriteFile {
                path: "/etc/motd".into(),
                content: "Welcome to web1\n".into(),
                permissions: Some("0644".into()),
                owner: Some("root:root".into()),
                append: true,
                defer: false,
            },
            WriteFile {
                path: "/home/hv/.config/app.toml".into(),
                content: "port = 8080\n".into(),
                permissions: Some("0600".into()),
                owner: Some("hv:hv".into()),
                append: false,
                defer: true,
            },
        ],
        runcmd: vec![
            "systemctl restart ssh".into(),
            "echo done > /run/hvbox-done".into(),
        ],
        user_uid: Some(1000),
        mounts: vec![
            VirtiofsMount {
                tag: "hvbox0".into(),
                path: "/home/alice/my project".into(),
                read_only: false,
            },
            VirtiofsMount {
                tag: "hvbox1".into(),
                path: "/data".into(),
                read_only: true,
            },
        ],
        ..plain()
    }
}

/// A user's cloud-config touching many modules, written the way people write
/// them for cloud-init: unquoted `yes` and `0644`, anchors, both `users` forms.
pub const RICH_USER_DATA: &str = r#"#cloud-config
# A user's own cloud-config, merged with hvbox's.
package_update: yes
package_upgrade: false
packages:
  - nginx
  - [libc6, "2.36-9+deb12u4"]
timezone: America/New_York
locale: en_US.UTF-8
ssh_pwauth: no
disable_root: false
manage_etc_hosts: localhost
groups:
  - web
  - ops: [alice]
users:
  - default
  - name: hv
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@bastion
    groups: [web, sudo]
    lock_passwd: false
    gecos: hvbox login
    sudo: ALL=(ALL:ALL) NOPASSWD:ALL
  - name: alice
    gecos: Alice
    shell: /bin/bash
    groups: web
    sudo: null
    lock_passwd: true
    ssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAl alice@home]
write_files:
  - path: /etc/nginx/conf.d/site.conf
    permissions: "0644"
    owner: root:root
    content: |
      server { listen 80; }
  - &defaults_file
    path: /etc/default/app
    content: "ENABLED=yes\n"
    encoding: text/plain
  - <<: *defaults_file
    path: /etc/default/app2
    defer: true
bootcmd:
  - echo booting > /run/boot-marker
  - [sh, -c, "echo $(date) >> /run/boots"]
runcmd:
  - systemctl enable --now nginx
  - [touch, /run/user-runcmd]
growpart:
  devices: [/srv]
  ignore_growroot_disabled: false
mounts:
  - [tmpfs, /mnt/scratch, tmpfs, "defaults,size=64m", "0", "0"]
swap:
  filename: /swapfile
  size: auto
  maxsize: 268435456
ntp:
  enabled: true
  servers: [0.debian.pool.ntp.org]
apt:
  preserve_sources_list: true
  sources:
    example.list:
      source: deb http://deb.example.com/debian bookworm main
chpasswd:
  expire: false
random_seed:
  file: /dev/urandom
  command: [sh, -c, dd if=/dev/urandom of=$RANDOM_SEED_FILE bs=16 count=1]
  command_required: false
"#;

/// [`full`] with [`RICH_USER_DATA`] merged over it.
pub fn rich() -> SeedConfig {
    SeedConfig {
        user_data: Some(UserData::parse(RICH_USER_DATA, "tests/rich.yaml").unwrap()),
        ..full()
    }
}

/// [`rich`] with the host's proxies: hvbox's `apt:` keys merged with the user's.
pub fn proxied() -> SeedConfig {
    SeedConfig {
        proxy: hvbox_cloud_init::GuestProxy {
            http: Some("http://192.168.1.1:3128".into()),
            https: Some("http://user:secret@proxy.example.org:8080/".into()),
            no_proxy: Some("localhost,127.0.0.1,.example.org".into()),
        },
        ..rich()
    }
}

/// Runs a tool and returns stdout, failing the test with stderr on error.
pub fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd} (scripts/install-deps installs the test tools): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A Python with PyYAML, as cloud-init runs it: Debian's python3 first (a
/// python3 earlier in PATH, e.g. from pyenv, may lack Debian's modules).
pub fn python_with_pyyaml() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
