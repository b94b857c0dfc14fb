// SPDX-License-Identifier: GPL-2.0

//! The MSR filter's rules (`x86::msr_filter`), against KVM's documented
//! behaviour (Documentation/virt/kvm/api.rst, KVM_X86_SET_MSR_FILTER).

use crate::msr_filter::*;

fn range(flags: u32, base: u32, nmsrs: u32, bitmap: &[u8]) -> Range<Vec<u8>> {
    Range {
        flags,
        base,
        nmsrs,
        bitmap: bitmap.to_vec(),
    }
}

#[test]
fn filter_flags_and_empty_deny() {
    assert_eq!(filter_valid(0, [0; 16].into_iter()), Ok(()));
    assert_eq!(filter_valid(DEFAULT_DENY, [1, 0].into_iter()), Ok(()));
    // Deny everything with no range at all: refused.
    assert_eq!(
        filter_valid(DEFAULT_DENY, [0; 16].into_iter()),
        Err(Invalid)
    );
    for bit in 1..32 {
        assert_eq!(
            filter_valid(1 << bit, [1].into_iter()),
            Err(Invalid),
            "bit {bit}"
        );
    }
}

#[test]
fn range_headers() {
    // An unused range is skipped whatever its flags.
    assert_eq!(range_bytes(0xffff_ffff, 0), Ok(None));
    assert_eq!(range_bytes(RANGE_READ, 1), Ok(Some(8)));
    assert_eq!(range_bytes(RANGE_WRITE, 64), Ok(Some(8)));
    assert_eq!(range_bytes(RANGE_READ | RANGE_WRITE, 65), Ok(Some(16)));
    assert_eq!(range_bytes(RANGE_READ, 0x600 * 8), Ok(Some(0x600)));
    assert_eq!(range_bytes(RANGE_READ, 0x600 * 8 + 1), Err(Invalid));
    assert_eq!(range_bytes(RANGE_READ, u32::MAX), Err(Invalid));
    assert_eq!(range_bytes(0, 1), Err(Invalid));
    for bit in 2..32 {
        assert_eq!(range_bytes(1 << bit, 1), Err(Invalid), "bit {bit}");
    }
}

#[test]
fn first_matching_range_decides() {
    // 0x10-0x17 readable except 0x11; writes of 0x10-0x17 all denied by
    // a second range; another read range over 0x10 is never consulted.
    let ranges = [
        range(RANGE_READ, 0x10, 8, &[0xfd]),
        range(RANGE_WRITE, 0x10, 8, &[0x00]),
        range(RANGE_READ, 0x10, 8, &[0x00]),
    ];
    assert!(allowed(false, &ranges, 0x10, false));
    assert!(!allowed(true, &ranges, 0x11, false));
    assert!(!allowed(true, &ranges, 0x10, true));
    // Outside every range: the default.
    assert!(allowed(true, &ranges, 0x18, false));
    assert!(!allowed(false, &ranges, 0x18, true));
    assert!(!allowed(false, &ranges, 0x0f, false));
}

#[test]
fn x2apic_msrs_are_never_filtered() {
    let ranges = [range(RANGE_READ | RANGE_WRITE, 0x800, 256, &[0; 32])];
    for i in [0x800, 0x80b, 0x830, 0x8ff] {
        assert!(allowed(false, &ranges, i, false));
        assert!(allowed(false, &ranges, i, true));
    }
    assert!(!allowed(false, &ranges, 0x7ff, true));
    assert!(!allowed(false, &ranges, 0x900, true));
}

#[test]
fn bit_order_and_wrapping_ranges() {
    // Bit n of byte k is MSR base + 8k + n (a little-endian bitmap).
    let ranges = [range(RANGE_READ, 0xc000_0000, 16, &[0x00, 0x80])];
    assert!(allowed(false, &ranges, 0xc000_000f, false));
    assert!(!allowed(false, &ranges, 0xc000_000e, false));
    // A range whose end wraps past 2^32 covers nothing (KVM's u32 end).
    let wrap = [range(RANGE_READ, 0xffff_fff0, 32, &[0; 8])];
    assert!(allowed(true, &wrap, 0xffff_fff8, false));
}

#[test]
fn exit_reasons_are_kvms() {
    assert_eq!((reason::INVAL, reason::UNKNOWN, reason::FILTER), (1, 2, 4));
    assert_eq!(reason::VALID, 7);
}
