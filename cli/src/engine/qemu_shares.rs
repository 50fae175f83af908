//! Shared folders on QEMU across a save: QEMU 7.2 marks vhost-user-fs unmigratable
//! (the device's state lives in virtiofsd), so each share's device sits on a root
//! port of its own, is unplugged before a save (`device_del`, answered by the guest
//! with `DEVICE_DELETED`) and plugged back afterwards (`chardev-add`, `device_add`).

use super::qemu::escape;
use super::qmp::Qmp;
use anyhow::{bail, Context, Result};
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
        // Refused for a device gone already or whose removal is under way (asked by
        // a save cut short): what is still in is asked of QEMU below either way.
        let _ = qmp.execute("device_del", Some(json!({ "id": device_id(i) })));
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
    // An event missed (sent before this connection, or for a device that was not
    // there) must not leave a gone device counted as in: ask QEMU which are.
    if !left.is_empty() {
        let present = peripherals(&mut qmp)?;
        left.retain(|&i| present.contains(&device_id(i)));
    }
    Ok(left)
}

/// A machine started by an older hvbox has its shares' devices on the root bus,
/// where they cannot be unplugged: refuse before anything changes.
pub fn check_unpluggable(socket: &Path, count: usize) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let present = peripherals(&mut qmp)?;
    if (0..count).any(|i| !present.contains(&port_id(i))) {
        bail!("this machine was started by an older hvbox, which gave its shared folders no hot-plug port, so they cannot be taken out for a save; `hvbox reload` the machine, then try again");
    }
    Ok(())
}

/// Which of shares `0..count` have their device in.
pub fn plugged(socket: &Path, count: usize) -> Result<Vec<usize>> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let present = peripherals(&mut qmp)?;
    Ok((0..count)
        .filter(|&i| present.contains(&device_id(i)))
        .collect())
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

/// Against a real QEMU (no guest: its firmware finds nothing to boot and idles) and
/// a real virtiofsd.
#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn tools_here() -> bool {
        for (tool, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("virtiofsd", "virtiofsd"),
        ] {
            let found = Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                hvbox_test_support::skip(format!("no {tool} ({package})"));
                return false;
            }
        }
        true
    }

    fn wait_for(path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(Instant::now() < deadline, "{} never came", path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn a_share_plugs_into_its_empty_root_port_and_blocks_a_save_while_in() {
        if !tools_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let fs_socket = dir.path().join("fs0.sock");
        let virtiofsd = Killed(
            Command::new("virtiofsd")
                .arg("--socket-path")
                .arg(&fs_socket)
                .arg("--shared-dir")
                .arg(&shared)
                .args(["--sandbox", "none", "--log-level", "warn"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(&fs_socket);
        // As a restored machine starts: the share's port, empty.
        let control = dir.path().join("qmp.sock");
        let qemu = Killed(
            Command::new("qemu-system-x86_64")
                .args(["-nodefaults", "-no-user-config", "-display", "none"])
                .args(["-sandbox", super::super::qemu::SANDBOX])
                .args(["-object", "memory-backend-memfd,id=mem,size=64M,share=on"])
                .args(["-machine", "q35,memory-backend=mem", "-accel", "tcg"])
                .args(["-m", "64M", "-device", &root_port(0)])
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", control.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(&control);
        let present = || {
            let mut qmp = Qmp::connect(&control, Duration::from_secs(10)).unwrap();
            peripherals(&mut qmp).unwrap()
        };
        assert!(!present().contains(&"fs0".to_string()));
        assert_eq!(plugged(&control, 1).unwrap(), Vec::<usize>::new());
        check_unpluggable(&control, 1).unwrap();
        // A second share has no port here, as on a machine an older hvbox started.
        let err = check_unpluggable(&control, 2).unwrap_err();
        assert!(format!("{err:#}").contains("`hvbox reload`"), "{err:#}");

        let share = FsConfig {
            tag: "hvbox0".into(),
            socket: fs_socket.clone(),
        };
        plug(&control, &[(0, share.clone())]).unwrap();
        assert!(present().contains(&"fs0".to_string()));
        assert_eq!(plugged(&control, 1).unwrap(), vec![0]);
        // The port holds one device: a second is refused, and its chardev taken back.
        let err = plug(&control, &[(0, share)]).unwrap_err();
        assert!(format!("{err:#}").contains("chr-fs0"), "{err:#}");

        // With the device in, QEMU refuses to save the machine.
        let null = std::fs::File::options()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let err = super::super::qemu_state::save(&control, &null).unwrap_err();
        assert!(format!("{err:#}").contains("vhost-user-fs"), "{err:#}");

        // No guest answers the unplug request: the wait ends, the device still in,
        // its chardev still busy.
        let started = Instant::now();
        let stuck = unplug(&control, 1, Duration::from_secs(2)).unwrap();
        assert_eq!(stuck, vec![0]);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(present().contains(&"fs0".to_string()));
        let err = remove_chardevs(&control, &[0]).unwrap_err();
        assert!(format!("{err:#}").contains("busy"), "{err:#}");
        drop(qemu);
        drop(virtiofsd);
    }
}
