//! Shared folders on QEMU across a save: QEMU 7.2 marks vhost-user-fs unmigratable
//! (the device's state lives in virtiofsd), so each share's device sits on a root
//! port of its own, is unplugged before a save (`device_del`, answered by the guest
//! with `DEVICE_DELETED`) and plugged back afterwards (`chardev-add`, `device_add`).

use super::qemu::escape;
use super::qmp::Qmp;
use anyhow::{Context, Result};
use hvbox_vmm::FsConfig;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The root port of share `i`: chassis and slot fixed by the index, so a restored
/// machine gets the ports it was saved with.
pub fn root_port(i: usize) -> String {
    format!(
        "pcie-root-port,id={},chassis={},slot=0,port={}",
        port_id(i),
        i + 1,
        i + 1
    )
}

pub fn chardev(i: usize, socket: &Path) -> String {
    format!("socket,id={},path={}", chardev_id(i), escape(socket))
}

pub fn device(i: usize, tag: &str) -> String {
    format!(
        "vhost-user-fs-pci,id={},bus={},chardev={},tag={}",
        device_id(i),
        port_id(i),
        chardev_id(i),
        tag.replace(',', ",,")
    )
}

fn port_id(i: usize) -> String {
    format!("rp-fs{i}")
}

fn device_id(i: usize) -> String {
    format!("fs{i}")
}

fn chardev_id(i: usize) -> String {
    format!("chr-fs{i}")
}

/// `device_del` for shares `0..count`, then wait up to `wait` for the guest to let
/// each go. Returns the shares whose device is still in.
pub fn unplug(socket: &Path, count: usize, wait: Duration) -> Result<Vec<usize>> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    for i in 0..count {
        qmp.execute("device_del", Some(json!({ "id": device_id(i) })))?;
    }
    let deadline = Instant::now() + wait;
    let mut left: Vec<usize> = (0..count).collect();
    while !left.is_empty() {
        let deleted = |e: &Value| {
            e["event"] == "DEVICE_DELETED"
                && left.iter().any(|&i| e["data"]["device"] == device_id(i))
        };
        match qmp.wait_event(&deleted, deadline)? {
            Some(e) => left.retain(|&i| e["data"]["device"] != device_id(i)),
            None => break,
        }
    }
    // An event missed (sent before this connection) must not leave a gone device
    // counted as in: ask QEMU which are still there.
    if !left.is_empty() {
        let present = peripherals(&mut qmp)?;
        left.retain(|&i| present.contains(&device_id(i)));
    }
    Ok(left)
}

/// Ids of the devices given an id (`-device id=`, `device_add`).
fn peripherals(qmp: &mut Qmp) -> Result<Vec<String>> {
    let list = qmp.execute("qom-list", Some(json!({ "path": "/machine/peripheral" })))?;
    Ok(list
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// `chardev-remove` for these shares: virtiofsd sees its connection close and ends.
pub fn remove_chardevs(socket: &Path, indexes: &[usize]) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    // Each one tried, the first failure reported.
    let mut result = Ok(());
    for &i in indexes {
        let removed = qmp.execute("chardev-remove", Some(json!({ "id": chardev_id(i) })));
        if let (Err(e), Ok(())) = (removed, &result) {
            result = Err(e);
        }
    }
    result
}

/// Connect each share to the virtiofsd listening on its socket and plug its device
/// into its (empty) root port.
pub fn plug(socket: &Path, shares: &[(usize, FsConfig)]) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    for (i, fs) in shares {
        let i = *i;
        let path = fs
            .socket
            .to_str()
            .with_context(|| format!("the share socket {} is not UTF-8", fs.socket.display()))?;
        qmp.execute(
            "chardev-add",
            Some(json!({
                "id": chardev_id(i),
                "backend": { "type": "socket", "data": {
                    "addr": { "type": "unix", "data": { "path": path } },
                    "server": false,
                }},
            })),
        )
        .with_context(|| format!("connecting QEMU to virtiofsd at {}", fs.socket.display()))?;
        let added = qmp.execute(
            "device_add",
            Some(json!({
                "driver": "vhost-user-fs-pci",
                "id": device_id(i),
                "bus": port_id(i),
                "chardev": chardev_id(i),
                "tag": fs.tag,
            })),
        );
        if let Err(e) = added {
            let _ = qmp.execute("chardev-remove", Some(json!({ "id": chardev_id(i) })));
            return Err(e.context(format!("plugging in the device of share {}", fs.tag)));
        }
    }
    Ok(())
}
