//! Interrupt routing for devices: which GSI goes where (KVM_SET_GSI_ROUTING), the
//! irqfds that raise them and the ioeventfds that catch doorbell writes.
//!
//! KVM replaces the whole routing table on every KVM_SET_GSI_ROUTING, dropping the
//! default routes it set up with the irqchip. So the table we send always starts
//! with those legacy routes (COM1's IRQ 4, the GED's IRQ 9, the PIT...) and adds one
//! MSI route per MSI-X vector the guest has programmed.
//!
//! GSI allocation: 0..24 are the IOAPIC pins (the first 16 also reach the PICs);
//! MSI vectors get GSIs from 24 up, in the order devices are created.

use crate::layout::IOAPIC_PINS;
use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::EventFd;

/// ISA IRQs reach the 8259 PICs too (the guest may still use them).
const PIC_PINS: u32 = 16;
const PIC_PINS_PER_CHIP: u32 = 8;
/// First GSI handed out for MSI: the one after the last IOAPIC pin.
pub const FIRST_MSI_GSI: u32 = IOAPIC_PINS;

/// An MSI message as the guest programs it in an MSI-X table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where one GSI is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A pin of an in-kernel interrupt controller.
    Irqchip {
        chip: Chip,
        pin: u32,
    },
    Msi(MsiMessage),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chip {
    PicMaster,
    PicSlave,
    Ioapic,
}

/// One entry of the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GsiRoute {
    pub gsi: u32,
    pub route: Route,
}

/// What devices need from the VM to raise interrupts and catch doorbells. KVM's VM
/// implements it; unit tests use a recording fake.
pub trait VmInterrupts: Send + Sync {
    /// Replace the whole GSI routing table.
    fn set_gsi_routing(&self, routes: &[GsiRoute]) -> io::Result<()>;
    /// Writing `fd` raises `gsi`.
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()>;
    /// A guest write of any size to the MMIO address `addr` signals `fd` (inside KVM,
    /// without an exit to the VMM).
    fn register_ioeventfd(&self, fd: &EventFd, addr: u64) -> io::Result<()>;
    fn unregister_ioeventfd(&self, fd: &EventFd, addr: u64) -> io::Result<()>;
}

/// The routes KVM installs with KVM_CREATE_IRQCHIP: GSI `n` goes to IOAPIC pin `n`,
/// and for the 16 ISA IRQs also to pin `n % 8` of the master or slave PIC.
pub fn legacy_routes() -> Vec<GsiRoute> {
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        routes.push(GsiRoute {
            gsi,
            route: Route::Irqchip {
                chip: Chip::Ioapic,
                pin: gsi,
            },
        });
        if gsi < PIC_PINS {
            let chip = if gsi < PIC_PINS_PER_CHIP {
                Chip::PicMaster
            } else {
                Chip::PicSlave
            };
            routes.push(GsiRoute {
                gsi,
                route: Route::Irqchip {
                    chip,
                    pin: gsi % PIC_PINS_PER_CHIP,
                },
            });
        }
    }
    routes
}

/// Hands out MSI GSIs and keeps KVM's routing table: the legacy routes plus one MSI
/// route per programmed vector.
pub struct GsiRouter {
    vm: Arc<dyn VmInterrupts>,
    state: Mutex<RouterState>,
}

struct RouterState {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

impl GsiRouter {
    pub fn new(vm: Arc<dyn VmInterrupts>) -> GsiRouter {
        GsiRouter {
            vm,
            state: Mutex::new(RouterState {
                next_gsi: FIRST_MSI_GSI,
                msi: BTreeMap::new(),
            }),
        }
    }

    pub fn vm(&self) -> &Arc<dyn VmInterrupts> {
        &self.vm
    }

    /// A GSI no one else uses, for one MSI vector.
    pub fn allocate(&self) -> io::Result<u32> {
        let mut state = self.state.lock().expect("GSI router lock");
        let gsi = state.next_gsi;
        if gsi as usize >= KVM_MAX_IRQ_ROUTES {
            return Err(io::Error::other(format!(
                "out of GSIs: KVM routes at most {KVM_MAX_IRQ_ROUTES}"
            )));
        }
        state.next_gsi += 1;
        Ok(gsi)
    }

    /// Route `gsi` to `message`; tells KVM (whole table) only if the route changed.
    pub fn set_msi(&self, gsi: u32, message: MsiMessage) -> io::Result<()> {
        let mut state = self.state.lock().expect("GSI router lock");
        if state.msi.get(&gsi) == Some(&message) {
            return Ok(());
        }
        let previous = state.msi.insert(gsi, message);
        let result = self.vm.set_gsi_routing(&table(&state.msi));
        if result.is_err() {
            // Keep our table what KVM has, so a later change retries this one.
            match previous {
                Some(old) => state.msi.insert(gsi, old),
                None => state.msi.remove(&gsi),
            };
        }
        result
    }

    /// The table as KVM has it now.
    pub fn routes(&self) -> Vec<GsiRoute> {
        table(&self.state.lock().expect("GSI router lock").msi)
    }
}

fn table(msi: &BTreeMap<u32, MsiMessage>) -> Vec<GsiRoute> {
    let mut routes = legacy_routes();
    routes.extend(msi.iter().map(|(&gsi, &message)| GsiRoute {
        gsi,
        route: Route::Msi(message),
    }));
    routes
}

fn kvm_entry(route: &GsiRoute) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi: route.gsi,
        ..Default::default()
    };
    match route.route {
        Route::Irqchip { chip, pin } => {
            entry.type_ = KVM_IRQ_ROUTING_IRQCHIP;
            entry.u.irqchip.irqchip = match chip {
                Chip::PicMaster => KVM_IRQCHIP_PIC_MASTER,
                Chip::PicSlave => KVM_IRQCHIP_PIC_SLAVE,
                Chip::Ioapic => KVM_IRQCHIP_IOAPIC,
            };
            entry.u.irqchip.pin = pin;
        }
        Route::Msi(message) => {
            entry.type_ = KVM_IRQ_ROUTING_MSI;
            entry.u.msi.address_lo = message.address as u32;
            entry.u.msi.address_hi = (message.address >> 32) as u32;
            entry.u.msi.data = message.data;
        }
    }
    entry
}

fn kvm_error(e: kvm_ioctls::Error) -> io::Error {
    io::Error::from_raw_os_error(e.errno())
}

impl VmInterrupts for VmFd {
    fn set_gsi_routing(&self, routes: &[GsiRoute]) -> io::Result<()> {
        let entries: Vec<_> = routes.iter().map(kvm_entry).collect();
        let table = KvmIrqRouting::from_entries(&entries)
            .map_err(|e| io::Error::other(format!("GSI routing table: {e:?}")))?;
        self.set_gsi_routing(&table).map_err(kvm_error)
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()> {
        VmFd::register_irqfd(self, fd, gsi).map_err(kvm_error)
    }

    fn register_ioeventfd(&self, fd: &EventFd, addr: u64) -> io::Result<()> {
        self.register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(kvm_error)
    }

    fn unregister_ioeventfd(&self, fd: &EventFd, addr: u64) -> io::Result<()> {
        self.unregister_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(kvm_error)
    }
}

/// A VM that records what devices asked of it, for unit tests.
#[cfg(test)]
pub mod fake {
    use super::*;

    #[derive(Default)]
    pub struct FakeVm {
        pub tables: Mutex<Vec<Vec<GsiRoute>>>,
        pub irqfds: Mutex<Vec<u32>>,
        /// Registered ioeventfd addresses, in registration order.
        pub ioeventfds: Mutex<Vec<u64>>,
    }

    impl VmInterrupts for FakeVm {
        fn set_gsi_routing(&self, routes: &[GsiRoute]) -> io::Result<()> {
            self.tables.lock().unwrap().push(routes.to_vec());
            Ok(())
        }
        fn register_irqfd(&self, _: &EventFd, gsi: u32) -> io::Result<()> {
            self.irqfds.lock().unwrap().push(gsi);
            Ok(())
        }
        fn register_ioeventfd(&self, _: &EventFd, addr: u64) -> io::Result<()> {
            self.ioeventfds.lock().unwrap().push(addr);
            Ok(())
        }
        fn unregister_ioeventfd(&self, _: &EventFd, addr: u64) -> io::Result<()> {
            let mut fds = self.ioeventfds.lock().unwrap();
            let at = fds.iter().position(|&a| a == addr).expect("registered");
            fds.remove(at);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeVm;
    use super::*;
    use crate::layout::{ACPI_GED_IRQ, COM1_IRQ};

    fn has(routes: &[GsiRoute], gsi: u32, route: Route) -> bool {
        routes.contains(&GsiRoute { gsi, route })
    }

    #[test]
    fn legacy_routes_match_kvm_defaults() {
        let routes = legacy_routes();
        // 24 IOAPIC pins plus 16 PIC pins.
        assert_eq!(routes.len(), 40);
        let ioapic = |pin| Route::Irqchip {
            chip: Chip::Ioapic,
            pin,
        };
        assert!(has(&routes, COM1_IRQ, ioapic(COM1_IRQ)));
        assert!(has(
            &routes,
            COM1_IRQ,
            Route::Irqchip {
                chip: Chip::PicMaster,
                pin: 4
            }
        ));
        assert!(has(&routes, ACPI_GED_IRQ, ioapic(ACPI_GED_IRQ)));
        assert!(has(
            &routes,
            ACPI_GED_IRQ,
            Route::Irqchip {
                chip: Chip::PicSlave,
                pin: 1
            }
        ));
        assert!(has(&routes, 23, ioapic(23)));
        assert!(!routes.iter().any(|r| r.gsi >= IOAPIC_PINS));
    }

    #[test]
    fn every_routing_update_keeps_the_legacy_routes() {
        let vm = Arc::new(FakeVm::default());
        let router = GsiRouter::new(vm.clone());
        let a = router.allocate().unwrap();
        let b = router.allocate().unwrap();
        assert_eq!((a, b), (FIRST_MSI_GSI, FIRST_MSI_GSI + 1));
        let msg = |data| MsiMessage {
            address: 0xfee0_0000,
            data,
        };
        router.set_msi(a, msg(0x41)).unwrap();
        router.set_msi(b, msg(0x42)).unwrap();
        // The same message again: nothing to tell KVM.
        router.set_msi(a, msg(0x41)).unwrap();
        router.set_msi(a, msg(0x43)).unwrap();
        let tables = vm.tables.lock().unwrap();
        assert_eq!(tables.len(), 3);
        for table in tables.iter() {
            assert!(table.starts_with(&legacy_routes()));
        }
        let last = tables.last().unwrap();
        assert_eq!(last.len(), legacy_routes().len() + 2);
        assert!(has(last, a, Route::Msi(msg(0x43))));
        assert!(has(last, b, Route::Msi(msg(0x42))));
        assert_eq!(&router.routes(), last);
    }

    #[test]
    fn kvm_entries_carry_the_message() {
        let entry = kvm_entry(&GsiRoute {
            gsi: 30,
            route: Route::Msi(MsiMessage {
                address: 0x1_fee0_1000,
                data: 0x4041,
            }),
        });
        assert_eq!((entry.gsi, entry.type_), (30, KVM_IRQ_ROUTING_MSI));
        // SAFETY: the entry was built as an MSI route, so `msi` is the live member.
        let msi = unsafe { entry.u.msi };
        assert_eq!(
            (msi.address_lo, msi.address_hi, msi.data),
            (0xfee0_1000, 1, 0x4041)
        );
    }
}
