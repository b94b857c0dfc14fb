// SPDX-License-Identifier: GPL-2.0

//! KVM's paravirtual clock as a guest sees it: the `pvclock_vcpu_time_info`
//! and `pvclock_wall_clock` structures a guest registers through
//! MSR_KVM_SYSTEM_TIME(_NEW) and MSR_KVM_WALL_CLOCK(_NEW)
//! (`Documentation/virt/kvm/x86/msr.rst`), and the TSC-to-nanoseconds scale
//! they carry. rkvm writes them without the "TSC stable" flag: each vCPU
//! gets its own (tsc, time) reference pair, as KVM does without its master
//! clock.
//!
//! Pure logic over `core`, shared with the host tests.

/// The enable bit of MSR_KVM_SYSTEM_TIME(_NEW); the rest is the address.
pub(crate) const SYSTEM_TIME_ENABLE: u64 = 1;

/// Size of `struct pvclock_vcpu_time_info`.
pub(crate) const TIME_INFO_SIZE: usize = 32;
/// Size of `struct pvclock_wall_clock`.
pub(crate) const WALL_CLOCK_SIZE: usize = 12;

/// KVM_FEATURE_CLOCKSOURCE and KVM_FEATURE_CLOCKSOURCE2: both MSR pairs
/// (CPUID 0x40000001 EAX bits 0 and 3).
pub(crate) const FEATURES: u32 = 1 << 0 | 1 << 3;

/// The scale from ticks at `hz` to nanoseconds: `ns = ((ticks << shift) *
/// mul) >> 32` (a negative shift shifts right), with `mul` in
/// [2^31, 2^32) for precision.
pub(crate) fn scale(hz: u64) -> (u32, i8) {
    const NS: u64 = 1_000_000_000;
    let mut shift = 0i8;
    let mut rate = hz.max(1);
    // Shifting ticks right by one halves their rate: bring it to (NS, 2*NS].
    while rate > 2 * NS {
        rate >>= 1;
        shift -= 1;
    }
    while rate <= NS {
        rate <<= 1;
        shift += 1;
    }
    (((NS << 32) / rate) as u32, shift)
}

/// `struct pvclock_vcpu_time_info` with the given version.
pub(crate) fn time_info(
    version: u32,
    tsc_timestamp: u64,
    system_time: u64,
    mul: u32,
    shift: i8,
) -> [u8; TIME_INFO_SIZE] {
    let mut b = [0u8; TIME_INFO_SIZE];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(&tsc_timestamp.to_le_bytes());
    b[16..24].copy_from_slice(&system_time.to_le_bytes());
    b[24..28].copy_from_slice(&mul.to_le_bytes());
    b[28] = shift as u8;
    // flags (b[29]) stay 0: no PVCLOCK_TSC_STABLE_BIT.
    b
}

/// `struct pvclock_wall_clock`: the host's wall-clock time at which the
/// kvmclock read 0, for a kvmclock reading `clock_ns` taken at wall-clock
/// time `real_ns`.
pub(crate) fn wall_clock(version: u32, real_ns: u64, clock_ns: u64) -> [u8; WALL_CLOCK_SIZE] {
    let boot = real_ns.wrapping_sub(clock_ns);
    let mut b = [0u8; WALL_CLOCK_SIZE];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[4..8].copy_from_slice(&((boot / 1_000_000_000) as u32).to_le_bytes());
    b[8..12].copy_from_slice(&((boot % 1_000_000_000) as u32).to_le_bytes());
    b
}
