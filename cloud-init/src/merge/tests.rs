use serde_json::{json, Value};

use crate::fixtures::{cfg, parse};
use crate::{user_data, Error, SeedConfig, UserData, WriteFile};

/// The merged user-data for the fixture with `extra` applied and `user` as its user-data.
fn merged_with(extra: impl FnOnce(&mut SeedConfig), user: &str) -> Result<Value, Error> {
    let mut c = cfg();
    extra(&mut c);
    c.user_data = Some(UserData::parse(user, "user.yaml").unwrap());
    user_data(&c).map(|text| parse(&text))
}

fn merged(user: &str) -> Result<Value, Error> {
    merged_with(|_| {}, user)
}

/// The error text for `user`, which must point at `line` of user.yaml.
fn rejected(user: &str, line: usize) -> String {
    let err = merged(user).expect_err(user).to_string();
    assert!(
        err.starts_with(&format!("user.yaml, line {line}: ")),
        "{err}"
    );
    err
}

#[test]
fn lists_are_appended_hvbox_first() {
    let v = merged_with(
        |c| {
            c.packages = vec!["git".into()];
            c.runcmd = vec!["echo spec".into()];
            c.write_files = vec![WriteFile {
                path: "/etc/a".into(),
                ..Default::default()
            }];
        },
        "#cloud-config\npackages: [htop]\nruncmd: [echo user]\nwrite_files: [{path: /etc/b, content: x}]\n",
    )
    .unwrap();
    assert_eq!(v["packages"], json!(["git", "htop"]));
    assert_eq!(v["runcmd"], json!(["echo spec", "echo user"]));
    assert_eq!(v["write_files"][0]["path"], "/etc/a");
    assert_eq!(v["write_files"][1]["path"], "/etc/b");
}

#[test]
fn user_wins_on_plain_values() {
    let v = merged_with(
        |c| c.timezone = Some("UTC".into()),
        "#cloud-config\ntimezone: Europe/Paris\nssh_pwauth: yes\ndisable_root: false\nmanage_etc_hosts: localhost\n",
    )
    .unwrap();
    assert_eq!(v["timezone"], "Europe/Paris");
    assert_eq!(v["ssh_pwauth"], true, "`yes` is a YAML 1.1 boolean");
    assert_eq!(v["disable_root"], false);
    assert_eq!(v["manage_etc_hosts"], "localhost");
}

#[test]
fn nested_mappings_merge() {
    let v = merged("#cloud-config\ngrowpart:\n  mode: 'off'\n  devices: [/data]\n  ignore_growroot_disabled: true\napt: {preserve_sources_list: true}\n").unwrap();
    assert_eq!(
        v["growpart"],
        json!({"mode": "off", "devices": ["/", "/data"], "ignore_growroot_disabled": true})
    );
    assert_eq!(v["apt"], json!({"preserve_sources_list": true}));
    assert_eq!(v["resize_rootfs"], true, "untouched hvbox keys stay");
}

#[test]
fn a_list_cannot_become_something_else() {
    let m = merged_with(
        |c| c.packages = vec!["git".into()],
        "#cloud-config\npackages: htop\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        m.contains("line 2") && m.contains("`packages` is a list") && m.contains("but text here"),
        "{m}"
    );
    let m = rejected("#cloud-config\ngrowpart: 'off'\n", 2);
    assert!(m.contains("`growpart` is a mapping"), "{m}");
    let m = rejected("#cloud-config\ngrowpart:\n  devices:\n", 3);
    assert!(
        m.contains("`growpart.devices` is a list") && m.contains("but empty"),
        "{m}"
    );
}

#[test]
fn each_owned_key_is_an_explained_error() {
    for (doc, why) in [
        (
            "ssh_keys: {rsa_private: x}",
            "pins it in the machine's known_hosts",
        ),
        (
            "ssh_deletekeys: false",
            "every machine made from the box shares",
        ),
        ("ssh_genkeytypes: [rsa]", "exactly one host key"),
        ("final_message: done", "readiness beacon"),
        (
            "network: {config: disabled}",
            "cloud-init ignores `network` in user-data",
        ),
        (
            "cloud_init_modules: [ssh]",
            "replaces the image's list of modules",
        ),
        (
            "cloud_config_modules: [ssh]",
            "replaces the image's list of modules",
        ),
        (
            "cloud_final_modules: [ssh]",
            "replaces the image's list of modules",
        ),
        ("merge_how: 'list()+dict()'", "hvbox merges"),
        ("merge_type: 'list()+dict()'", "hvbox merges"),
        ("hostname: other", "set `hostname` there"),
        ("preserve_hostname: true", "keep the image's hostname"),
        (
            "fqdn: other.example.com",
            "first label must be the hostname",
        ),
        (
            "ssh_authorized_keys: [ssh-ed25519 AAAA x]",
            "would let nobody in",
        ),
    ] {
        let key = doc.split(':').next().unwrap();
        let m = rejected(&format!("#cloud-config\npackages: [a]\n{doc}\n"), 3);
        assert!(
            m.contains(&format!("`{key}`")) && m.contains(why),
            "{doc}: {m}"
        );
    }
}

#[test]
fn owned_keys_may_repeat_hvbox_values() {
    let v = merged(
        "#cloud-config\nhostname: dev-box\nfqdn: dev-box.example.com\npreserve_hostname: false\n",
    )
    .unwrap();
    assert_eq!(v["hostname"], "dev-box");
    assert_eq!(v["fqdn"], "dev-box.example.com");
}

#[test]
fn top_level_keys_are_fine_with_a_default_user_or_root_login() {
    let v = merged("#cloud-config\nusers: [default]\nssh_authorized_keys: [k1]\n").unwrap();
    assert_eq!(v["ssh_authorized_keys"], json!(["k1"]));
    merged("#cloud-config\ndisable_root: false\nssh_authorized_keys: [k1]\n").unwrap();
}

#[test]
fn hvbox_user_entry_merges() {
    let v = merged_with(
        |c| c.user_groups = vec!["docker".into()],
        "#cloud-config
users:
  - default
  - name: hv
    ssh_authorized_keys: [ssh-ed25519 AAAAmine laptop, ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@host]
    groups: adm, docker,sudo
    lock_passwd: false
    shell: /bin/zsh
    sudo: ['ALL=(ALL:ALL) NOPASSWD: ALL', 'ALL=(root) NOPASSWD: /usr/bin/apt']
  - name: alice
    groups: [users]
  - bob
",
    )
    .unwrap();
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 4, "{users:?}");
    let hv = &users[0];
    assert_eq!(hv["name"], "hv");
    assert_eq!(
        hv["ssh_authorized_keys"],
        json!([
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@host",
            "ssh-ed25519 AAAAmine laptop"
        ]),
        "hvbox's key first, duplicates dropped"
    );
    assert_eq!(hv["groups"], json!(["docker", "adm", "sudo"]));
    assert_eq!(
        hv["lock_passwd"], false,
        "an unlocked account without a password is fine"
    );
    assert_eq!(hv["shell"], "/bin/zsh");
    assert_eq!(
        hv["sudo"],
        json!([
            "ALL=(ALL:ALL) NOPASSWD: ALL",
            "ALL=(root) NOPASSWD: /usr/bin/apt"
        ])
    );
    assert_eq!(users[1], "default");
    assert_eq!(users[2], json!({"name": "alice", "groups": ["users"]}));
    assert_eq!(users[3], "bob");
}

#[test]
fn hvbox_user_keeps_passwordless_sudo_and_its_key() {
    for (field, why) in [
        ("sudo: ALL=(ALL) ALL", "asks for a password"),
        (
            "sudo: ['ALL=(ALL) NOPASSWD:ALL', 'ALL=(ALL) /bin/sh']",
            "asks for a password",
        ),
        (
            "sudo: 'ALL=(ALL) NOPASSWD: /usr/bin/apt'",
            "no rule allowing every command",
        ),
        (
            "sudo: 'ALL=(ALL) NOPASSWD: ALL, PASSWD: /bin/su'",
            "asks for a password",
        ),
        ("sudo: false", "must be a sudo rule"),
        ("sudo:", "must be a sudo rule"),
        (
            "ssh_redirect_user: true",
            "replaces the user's authorized keys",
        ),
        ("no_create_home: true", "without a home directory"),
        ("system: true", "system account"),
        (
            "ssh_authorized_keys: ssh-ed25519 AAAA",
            "must be a list of public keys",
        ),
        ("groups: {a: b}", "list of group names"),
    ] {
        let m = rejected(
            &format!("#cloud-config\nusers:\n  - name: hv\n    {field}\n"),
            4,
        );
        assert!(m.contains(why), "{field}: {m}");
        assert!(
            m.contains("\"hv\"") || m.contains("users[hv]"),
            "names hvbox's user: {m}"
        );
    }
}

#[test]
fn users_must_be_a_list() {
    let m = rejected("#cloud-config\nusers: {hv: {}}\n", 2);
    assert!(m.contains("`users` must be a list"), "{m}");
}

#[test]
fn yaml_1_1_values_reach_the_guest_as_cloud_init_reads_them() {
    let v = merged("#cloud-config\nwrite_files:\n  - path: /etc/x\n    permissions: 0644\n    content: '0644'\npackage_upgrade: yes\n").unwrap();
    assert_eq!(
        v["write_files"][0]["permissions"], 420,
        "PyYAML reads 0644 as octal"
    );
    assert_eq!(v["write_files"][0]["content"], "0644");
    assert_eq!(v["package_upgrade"], true);
}

#[test]
fn header_only_user_data_changes_nothing() {
    let plain = parse(&user_data(&cfg()).unwrap());
    assert_eq!(merged("#cloud-config\n").unwrap(), plain);
}
