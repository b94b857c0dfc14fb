// SPDX-License-Identifier: GPL-2.0

//! Which `KVM_SET_SREGS` values a vCPU accepts: pure logic over `core`,
//! shared with the host tests.
//!
//! Follows `kvm_is_valid_sregs()` (`arch/x86/kvm/regs.c`), the CR4
//! reserved-bit rules of `__cr4_reserved_bits()` (`arch/x86/kvm/regs.h`) and
//! the APIC base checks of `kvm_apic_set_base()`: what is valid depends on
//! the features the guest's CPUID grants, described by [`GuestCpu`].

/// CR0 bits.
pub(crate) mod cr0 {
    /// Protection enable.
    pub(crate) const PE: u64 = 1 << 0;
    /// Write protect (supervisor writes honour read-only pages).
    pub(crate) const WP: u64 = 1 << 16;
    /// Not write-through.
    pub(crate) const NW: u64 = 1 << 29;
    /// Cache disable.
    pub(crate) const CD: u64 = 1 << 30;
    /// Paging.
    pub(crate) const PG: u64 = 1 << 31;
}

/// CR4.PAE.
pub(crate) const CR4_PAE: u64 = 1 << 5;
/// CR4 bits no CPUID feature gates: VME PVI TSD DE PSE PAE MCE PGE PCE
/// OSFXSR OSXMMEXCPT.
const CR4_ALWAYS_VALID: u64 = 0x7ff;

/// EFER bits.
pub(crate) mod efer {
    /// SYSCALL enable.
    pub(crate) const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub(crate) const LME: u64 = 1 << 8;
    /// Long mode active.
    pub(crate) const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub(crate) const NXE: u64 = 1 << 11;
}

/// IA32_APIC_BASE bits.
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_RESERVED_LOW: u64 = 0x2ff;

/// The guest CPU features that decide register validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuestCpu {
    /// CPUID.80000001H:EDX.LM.
    pub(crate) long_mode: bool,
    /// CPUID.80000001H:EDX.NX.
    pub(crate) nx: bool,
    /// CPUID.80000001H:EDX.Page1GB: PS in a PDPTE maps 1 GiB.
    pub(crate) gbpages: bool,
    /// CPUID.1:ECX.X2APIC.
    pub(crate) x2apic: bool,
    /// Guest physical address width (CPUID.80000008H:EAX[7:0]).
    pub(crate) maxphyaddr: u32,
}

impl GuestCpu {
    /// A vCPU whose CPUID was never set: KVM then grants no optional
    /// feature and assumes a 36-bit physical address width.
    pub(crate) const NO_CPUID: Self = Self {
        long_mode: false,
        nx: false,
        gbpages: false,
        x2apic: false,
        maxphyaddr: 36,
    };

    /// Bits at or above the physical address width.
    fn gpa_reserved(&self) -> u64 {
        !0u64 << self.maxphyaddr
    }

    /// CR0 as `kvm_is_valid_cr0()` checks it.
    pub(crate) fn cr0_valid(&self, cr0: u64) -> bool {
        cr0 >> 32 == 0
            && !(cr0 & cr0::NW != 0 && cr0 & cr0::CD == 0)
            && !(cr0 & cr0::PG != 0 && cr0 & cr0::PE == 0)
    }

    /// CR4 against the bits this guest may set.
    pub(crate) fn cr4_valid(&self, cr4: u64) -> bool {
        cr4 & !CR4_ALWAYS_VALID == 0
    }

    /// EFER against the bits this guest may set.
    pub(crate) fn efer_valid(&self, efer: u64) -> bool {
        let mut allowed = efer::SCE;
        if self.long_mode {
            allowed |= efer::LME | efer::LMA;
        }
        if self.nx {
            allowed |= efer::NXE;
        }
        efer & !allowed == 0
    }

    /// IA32_APIC_BASE as `kvm_apic_set_base()` checks it.
    pub(crate) fn apic_base_valid(&self, value: u64) -> bool {
        let mut reserved = self.gpa_reserved() | APIC_BASE_RESERVED_LOW;
        if !self.x2apic {
            reserved |= APIC_BASE_X2APIC;
        }
        // x2APIC mode without the global enable is an invalid mode.
        let invalid_mode = value & APIC_BASE_X2APIC != 0 && value & APIC_BASE_ENABLE == 0;
        value & reserved == 0 && !invalid_mode
    }

    /// The whole `kvm_is_valid_sregs()` check; `cs_l` is CS.L.
    pub(crate) fn sregs_valid(&self, cr0: u64, cr3: u64, cr4: u64, efer: u64, cs_l: bool) -> bool {
        if efer & efer::LME != 0 && cr0 & cr0::PG != 0 {
            // 64-bit mode: PAE and LMA must be set, CR3 within MAXPHYADDR.
            if cr4 & CR4_PAE == 0 || efer & efer::LMA == 0 || cr3 & self.gpa_reserved() != 0 {
                return false;
            }
        } else if efer & efer::LMA != 0 || cs_l {
            return false;
        }
        self.cr4_valid(cr4) && self.cr0_valid(cr0) && self.efer_valid(efer)
    }
}
