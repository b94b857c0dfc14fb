// SPDX-License-Identifier: GPL-2.0

//! KVM's hypercall interface (`Documentation/virt/kvm/x86/hypercalls.rst`)
//! as rkvm answers it, and KVM's paravirtual feature bits: which of them a
//! guest has, and whether an access needs one. Model:
//! `____kvm_emulate_hypercall()` in `arch/x86/kvm/x86.c` and
//! `guest_pv_has()` in `arch/x86/kvm/cpuid.h`.
//!
//! A guest makes a hypercall with VMCALL: the number in RAX, arguments in
//! RBX, RCX, RDX, RSI, the result in RAX (all 32-bit outside 64-bit mode).
//! rkvm implements none of the hypercalls that need host work, so each
//! answers as KVM does when the guest lacks the feature it needs: the
//! unknown-hypercall error.
//!
//! Pure logic over `core`, shared with the host tests.

/// `KVM_HC_*` numbers.
pub(crate) mod nr {
    pub(crate) const VAPIC_POLL_IRQ: u64 = 1;
    pub(crate) const KICK_CPU: u64 = 5;
    pub(crate) const SEND_IPI: u64 = 10;
    pub(crate) const SCHED_YIELD: u64 = 11;
}

/// `KVM_FEATURE_*` bits of CPUID 0x40000001 EAX.
pub(crate) mod feature {
    pub(crate) const CLOCKSOURCE: u32 = 0;
    pub(crate) const CLOCKSOURCE2: u32 = 3;
    pub(crate) const PV_SCHED_YIELD: u32 = 13;
}

/// The error results (`-KVM_ENOSYS`, `-KVM_EPERM`), as 64-bit values.
pub(crate) const ENOSYS: u64 = -1000i64 as u64;
pub(crate) const EPERM: u64 = -1i64 as u64;

/// The paravirtual features a guest has: everything unless user space
/// asked for enforcement (`KVM_CAP_ENFORCE_PV_FEATURE_CPUID`), else the
/// bits of its CPUID 0x40000001 EAX.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PvFeatures {
    pub(crate) enforce: bool,
    pub(crate) bits: u32,
}

impl PvFeatures {
    /// KVM's `guest_pv_has()`.
    pub(crate) fn has(&self, feature: u32) -> bool {
        !self.enforce || self.bits & (1 << feature) != 0
    }

    /// Whether an access to MSR `index` is allowed (the kvmclock MSRs
    /// need their clocksource feature); other MSRs are not its business.
    pub(crate) fn msr_allowed(&self, index: u32) -> bool {
        use super::msr::index::*;
        match index {
            KVM_WALL_CLOCK | KVM_SYSTEM_TIME => self.has(feature::CLOCKSOURCE),
            KVM_WALL_CLOCK_NEW | KVM_SYSTEM_TIME_NEW => self.has(feature::CLOCKSOURCE2),
            _ => true,
        }
    }
}

/// The result of hypercall `nr` made at privilege level `cpl`, as a
/// 64-bit value (the caller truncates it outside 64-bit mode). Only CPL 0
/// may call (else `-KVM_EPERM`). VAPIC_POLL_IRQ is a no-op that returns 0;
/// SCHED_YIELD returns 0 when the guest has PV_SCHED_YIELD (the yield is a
/// hint; rkvm does not act on it); KICK_CPU and SEND_IPI need features rkvm
/// does not offer, and every other number is unknown: `-KVM_ENOSYS`.
pub(crate) fn result(nr: u64, cpl: u8, pv: PvFeatures) -> u64 {
    if cpl != 0 {
        return EPERM;
    }
    match nr {
        nr::VAPIC_POLL_IRQ => 0,
        nr::SCHED_YIELD if pv.has(feature::PV_SCHED_YIELD) => 0,
        // They need PV_UNHALT and PV_SEND_IPI, which rkvm does not offer.
        nr::KICK_CPU | nr::SEND_IPI => ENOSYS,
        _ => ENOSYS,
    }
}
