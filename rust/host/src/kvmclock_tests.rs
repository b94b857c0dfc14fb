// SPDX-License-Identifier: GPL-2.0

//! The kvmclock scale and structures (`rust/x86/kvmclock.rs`).

use crate::kvmclock::*;

/// Ticks to nanoseconds as the guest computes them
/// (`pvclock_scale_delta()`).
fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> -shift
    };
    ((u128::from(d) * u128::from(mul)) >> 32) as u64
}

#[test]
fn scale_converts_common_tsc_rates_to_ns() {
    for hz in [
        1_000_000u64,
        999_999_999,
        1_000_000_000,
        2_100_000_000,
        3_400_123_000,
        5_000_000_000,
    ] {
        let (mul, shift) = scale(hz);
        assert!(mul >= 1 << 31, "mul {mul:#x} for {hz} Hz loses precision");
        // One second of ticks is one second, within 1 ns per 2^31.
        let ns = scale_delta(hz, mul, shift);
        assert!(
            (999_999_998..=1_000_000_000).contains(&ns),
            "{hz} Hz: 1 s of ticks = {ns} ns"
        );
        // Ten seconds too (no overflow on the way).
        let ns10 = scale_delta(10 * hz, mul, shift);
        assert!(
            (9_999_999_980..=10_000_000_000).contains(&ns10),
            "{hz} Hz: {ns10}"
        );
    }
}

#[test]
fn scale_shift_direction() {
    // Faster than 2 GHz: ticks are shifted right; slower than 1 GHz: left.
    assert!(scale(3_000_000_000).1 < 0);
    assert!(scale(100_000_000).1 > 0);
    assert_eq!(scale(1_500_000_000).1, 0);
}

#[test]
fn time_info_layout() {
    let b = time_info(3, 0x1122_3344_5566_7788, 0x99, 0xabcd_ef01, -1);
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 3);
    assert_eq!(
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
        0x1122_3344_5566_7788
    );
    assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0x99);
    assert_eq!(
        u32::from_le_bytes(b[24..28].try_into().unwrap()),
        0xabcd_ef01
    );
    assert_eq!(b[28] as i8, -1);
    assert_eq!(b[29], 0, "no TSC-stable flag");
}

#[test]
fn wall_clock_is_the_boot_time() {
    // Wall clock 1000.5 s when the kvmclock read 0.25 s: boot at 1000.25 s.
    let b = wall_clock(2, 1_000_500_000_000, 250_000_000);
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1000);
    assert_eq!(
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
        250_000_000
    );
}
