//! The CPUID a vCPU reports: what KVM supports, plus this vCPU's APIC ID, the
//! topology of the machine and the hypervisor bit, without 5-level paging where the
//! reported address width cannot hold it.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_TOPOLOGY: u32 = 0x4;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_EXT_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_STRUCTURED_FEATURES: u32 = 0x7;
const LEAF_ADDRESS_SIZES: u32 = 0x8000_0008;

const ECX_CX16: u32 = 1 << 13;
const ECX_XSAVE: u32 = 1 << 26;
const ECX_OSXSAVE: u32 = 1 << 27;
const ECX_AVX: u32 = 1 << 28;
const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_VMX: u32 = 1 << 5;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
const EXT_ECX_SVM: u32 = 1 << 2;
const EDX_HTT: u32 = 1 << 28;
/// Leaf 7 ECX: 5-level paging (57-bit linear addresses).
const ECX_LA57: u32 = 1 << 16;
const LA57_ADDRESS_BITS: u32 = 57;

/// Features to hide from the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidMask {
    /// Hide CMPXCHG16B and XSAVE/AVX, which KVM's instruction emulator cannot run:
    /// needed only on hosts that execute guests by emulation (see the README).
    pub emulator_safe: bool,
    /// Hide SVM and VMX: the guest cannot run VMs of its own.
    pub no_nested: bool,
}

/// Adjust `cpuid` (from KVM_GET_SUPPORTED_CPUID) for vCPU `index` of `count`.
pub fn configure(cpuid: &mut CpuId, index: u8, count: u8, mask: CpuidMask) {
    // An (emulated) CPU can offer LA57 without reporting 57-bit linear addresses, or
    // without the address-size leaf at all (QEMU's TCG `max` without SVM). Linux then
    // runs 5-level page tables but checks kernel pointers against 48 bits:
    // copy_from_kernel_nofault rejects its own addresses, and systemd's sandboxed
    // services (udev, logind) fail to start.
    let linear_bits = cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == LEAF_ADDRESS_SIZES)
        .map_or(0, |e| (e.eax >> 8) & 0xff);
    let hide_la57 = linear_bits < LA57_ADDRESS_BITS;
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    entry.edx |= EDX_HTT;
                }
                if mask.emulator_safe {
                    entry.ecx &= !(ECX_CX16 | ECX_XSAVE | ECX_OSXSAVE | ECX_AVX);
                }
                if mask.no_nested {
                    entry.ecx &= !ECX_VMX;
                }
            }
            LEAF_EXT_FEATURES if mask.no_nested => entry.ecx &= !EXT_ECX_SVM,
            LEAF_STRUCTURED_FEATURES if entry.index == 0 && hide_la57 => entry.ecx &= !ECX_LA57,
            LEAF_CACHE_TOPOLOGY => {
                // EAX[31:26]: cores per package - 1; every vCPU is a core of one package.
                entry.eax = (entry.eax & 0x03ff_ffff) | (u32::from(count - 1) << 26);
            }
            LEAF_EXT_TOPOLOGY | LEAF_EXT_TOPOLOGY_V2 => {
                // Level 0: SMT (1 thread per core); level 1: cores. EDX = x2APIC ID.
                let shift_for = |n: u8| u32::BITS - u32::from(n.max(1) - 1).leading_zeros();
                match entry.index {
                    0 => {
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = 1 << 8;
                    }
                    1 => {
                        entry.eax = shift_for(count);
                        entry.ebx = u32::from(count);
                        entry.ecx = (2 << 8) | 1;
                    }
                    n => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = n;
                    }
                }
                entry.edx = u32::from(index);
            }
            0xd if mask.emulator_safe => {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            _ => {}
        }
    }
}

/// Leaf 1 ECX: the LAPIC timer's TSC-deadline mode.
const ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Offer the TSC-deadline timer, which KVM's in-kernel LAPIC serves but does not
/// report as supported (the VMM decides, as QEMU does for `-cpu host`): the guest
/// arms its timer with one MSR write and skips calibrating the LAPIC timer against
/// another clock at boot.
pub fn offer_tsc_deadline(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == LEAF_FEATURES {
            entry.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: ECX_CX16 | ECX_XSAVE,
            edx: 0,
            ..Default::default()
        }
    }

    #[test]
    fn apic_ids_topology_and_hypervisor_bit() {
        let mut cpuid =
            CpuId::from_entries(&[entry(1, 0), entry(4, 0), entry(0xb, 0), entry(0xb, 1)]).unwrap();
        configure(&mut cpuid, 3, 4, CpuidMask::default());
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].ecx & ECX_CX16, 0);
        assert_eq!(e[1].eax >> 26, 3);
        assert_eq!(e[3].eax, 2); // 4 cores → 2 bits of core ID
        assert_eq!(e[3].edx, 3);
    }

    #[test]
    fn tsc_deadline_offered_in_leaf_1_only() {
        let mut cpuid = CpuId::from_entries(&[entry(1, 0), entry(7, 0)]).unwrap();
        offer_tsc_deadline(&mut cpuid);
        let e = cpuid.as_slice();
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_ne!(e[0].ecx & ECX_CX16, 0, "another feature was lost");
        assert_eq!(e[1].ecx & ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn emulator_safe_mask_hides_cx16_and_xsave() {
        let mut cpuid = CpuId::from_entries(&[entry(1, 0)]).unwrap();
        configure(
            &mut cpuid,
            0,
            1,
            CpuidMask {
                emulator_safe: true,
                no_nested: false,
            },
        );
        assert_eq!(cpuid.as_slice()[0].ecx & (ECX_CX16 | ECX_XSAVE), 0);
    }

    #[test]
    fn nesting_hidden_unless_asked_for() {
        let mut vmx = entry(1, 0);
        vmx.ecx |= ECX_VMX;
        let mut svm = entry(LEAF_EXT_FEATURES, 0);
        svm.ecx = EXT_ECX_SVM;
        let mut cpuid = CpuId::from_entries(&[vmx, svm]).unwrap();
        configure(&mut cpuid, 0, 1, CpuidMask::default());
        assert_ne!(cpuid.as_slice()[1].ecx & EXT_ECX_SVM, 0);
        let no_nested = CpuidMask {
            no_nested: true,
            ..Default::default()
        };
        configure(&mut cpuid, 0, 1, no_nested);
        assert_eq!(cpuid.as_slice()[0].ecx & ECX_VMX, 0);
        assert_eq!(cpuid.as_slice()[1].ecx & EXT_ECX_SVM, 0);
    }

    #[test]
    fn la57_only_with_57_bit_linear_addresses() {
        const OTHER_FEATURE: u32 = 1;
        let with_width = |bits: Option<u32>| {
            let mut features = entry(LEAF_STRUCTURED_FEATURES, 0);
            features.ecx = ECX_LA57 | OTHER_FEATURE;
            let mut subleaf1 = entry(LEAF_STRUCTURED_FEATURES, 1);
            subleaf1.ecx = ECX_LA57;
            let mut entries = vec![features, subleaf1];
            if let Some(bits) = bits {
                let mut sizes = entry(LEAF_ADDRESS_SIZES, 0);
                sizes.eax = (bits << 8) | 48;
                entries.push(sizes);
            }
            let mut cpuid = CpuId::from_entries(&entries).unwrap();
            configure(&mut cpuid, 0, 1, CpuidMask::default());
            let e = cpuid.as_slice();
            assert_ne!(
                e[0].ecx & OTHER_FEATURE,
                0,
                "another leaf 7 feature was lost"
            );
            assert_eq!(e[1].ecx, ECX_LA57, "subleaf 1 changed");
            e[0].ecx & ECX_LA57
        };
        assert_eq!(
            with_width(Some(48)),
            0,
            "LA57 offered with 48-bit addresses"
        );
        assert_eq!(
            with_width(None),
            0,
            "LA57 offered without an address-size leaf"
        );
        assert_ne!(
            with_width(Some(57)),
            0,
            "LA57 hidden from a CPU that has it"
        );
    }
}
