// SPDX-License-Identifier: GPL-2.0

//! The debug registers DR0-DR3, DR6 and DR7 of a guest: their reset
//! values, what `KVM_SET_DEBUGREGS` accepts, and what a guest MOV to DR6
//! or DR7 stores. Pure logic over `core`, shared with the host tests.
//!
//! Rules from KVM (`arch/x86/kvm/regs.c`: `kvm_set_dr()`,
//! `kvm_vcpu_ioctl_x86_set_debugregs()`; `regs.h` for the bit masks): the
//! ioctl refuses flags and DR6/DR7 values with bits 63:32 set and stores
//! the rest as given; a guest write keeps only the bits that can change
//! and sets the fixed ones. rkvm's guests have neither RTM nor bus-lock
//! detection, so those two DR6 bits read as 1 (fixed).

/// DR6 at reset: every active-low and fixed-1 bit set.
pub(crate) const DR6_RESET: u64 = 0xffff_0ff0;
/// DR7 at reset: bit 10 (reserved, reads as 1).
pub(crate) const DR7_RESET: u64 = 0x400;
/// DR6 bits a guest write can change: B0-B3, BLD, BD, BS, BT, RTM.
const DR6_VOLATILE: u64 = 0x0001_e80f;
/// DR6 bits a guest write can change when the guest has neither RTM nor
/// bus-lock detection: B0-B3, BD, BS, BT.
const DR6_GUEST_VOLATILE: u64 = DR6_VOLATILE & !(1 << 16) & !(1 << 11);
/// DR7 bits a guest write can change.
const DR7_VOLATILE: u64 = 0xffff_2bff;
/// DR7.GD: general detect (MOV DR raises #DB).
pub(crate) const DR7_GD: u64 = 1 << 13;
/// DR7 L0-L3/G0-G3: some breakpoint is enabled.
pub(crate) const DR7_BP_ENABLED: u64 = 0xff;
/// DR6.BD: the #DB came from general detect.
pub(crate) const DR6_BD: u64 = 1 << 13;

/// `kvm_dr6_valid()`/`kvm_dr7_valid()`: bits 63:32 are reserved (a guest
/// write of such a value raises #GP, the ioctl fails with `EINVAL`).
pub(crate) fn dr_valid(v: u64) -> bool {
    v >> 32 == 0
}

/// What a guest MOV to DR6 stores (valid `v`).
pub(crate) fn guest_dr6(v: u64) -> u64 {
    (v & DR6_GUEST_VOLATILE) | (DR6_RESET & !DR6_GUEST_VOLATILE)
}

/// What a guest MOV to DR7 stores (valid `v`).
pub(crate) fn guest_dr7(v: u64) -> u64 {
    (v & DR7_VOLATILE) | DR7_RESET
}

/// The four values of `struct kvm_debugregs` rkvm checks, in the order
/// KVM checks them: `flags` must be 0, then DR6 and DR7 must be valid.
pub(crate) fn set_debugregs_valid(flags: u64, dr6: u64, dr7: u64) -> bool {
    flags == 0 && dr_valid(dr6) && dr_valid(dr7)
}

/// The debug registers of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DebugRegs {
    /// DR0-DR3.
    pub(crate) db: [u64; 4],
    /// DR6.
    pub(crate) dr6: u64,
    /// DR7 (also in the VMCS while the guest runs).
    pub(crate) dr7: u64,
}

impl Default for DebugRegs {
    fn default() -> Self {
        Self {
            db: [0; 4],
            dr6: DR6_RESET,
            dr7: DR7_RESET,
        }
    }
}

/// How a MOV DR exit names its register: DR4 and DR5 alias DR6 and DR7
/// unless CR4.DE is set, when they raise #UD (`None`).
pub(crate) fn alias(dr: u8, cr4_de: bool) -> Option<u8> {
    match dr {
        4 | 5 if cr4_de => None,
        4 => Some(6),
        5 => Some(7),
        n => Some(n),
    }
}
