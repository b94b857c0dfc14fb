// SPDX-License-Identifier: GPL-2.0

//! The MTRR MSRs (`rust/x86/mtrr.rs`) against KVM's rules.

use crate::mtrr::*;

#[test]
fn cap_is_read_only_and_kvms_value() {
    let mut m = Mtrrs::default();
    assert_eq!(m.get(CAP), Some(0x508));
    assert_eq!(m.set(CAP, 0x508, 36), Some(false));
}

#[test]
fn what_qemu_writes_at_reset_is_accepted() {
    let mut m = Mtrrs::default();
    // QEMU's reset: deftype, the fixed ranges, the eight pairs, all 0.
    let mut all = vec![DEF_TYPE, 0x250, 0x258, 0x259];
    all.extend(0x268..=0x26f);
    all.extend(VAR_FIRST..VAR_FIRST + 16);
    assert_eq!(all.len(), 28);
    for i in all {
        assert_eq!(m.set(i, 0, 36), Some(true), "{i:#x}");
        assert_eq!(m.get(i), Some(0));
    }
}

#[test]
fn types_and_reserved_bits() {
    let mut m = Mtrrs::default();
    // deftype: E, FE and a type; type 2 and 3 are reserved.
    assert_eq!(m.set(DEF_TYPE, 0xc06, 36), Some(true));
    assert_eq!(m.get(DEF_TYPE), Some(0xc06));
    assert_eq!(m.set(DEF_TYPE, 0x2, 36), Some(false));
    assert_eq!(m.set(DEF_TYPE, 0x1006, 36), Some(false));
    assert_eq!(
        m.get(DEF_TYPE),
        Some(0xc06),
        "a refused write changes nothing"
    );
    // Fixed: every byte a valid type.
    assert_eq!(m.set(0x250, 0x0606_0606_0606_0606, 36), Some(true));
    assert_eq!(m.set(0x26f, 0x0606_0606_0606_0306, 36), Some(false));
    // Variable: base type, reserved 11:8 and bits at or above MAXPHYADDR.
    assert_eq!(m.set(0x200, 0x8000_0006, 36), Some(true));
    assert_eq!(m.set(0x200, 0x10_0000_0006, 36), Some(false));
    assert_eq!(m.set(0x200, 0x10_0000_0006, 40), Some(true));
    assert_eq!(m.set(0x200, 0x106, 36), Some(false));
    assert_eq!(m.set(0x201, 0xf_8000_0800, 36), Some(true));
    assert_eq!(m.set(0x201, 0xf_8000_0400, 36), Some(false));
    // Not MTRRs: the gap between the ranges and past the last pair.
    assert_eq!(m.set(0x210, 0, 36), None);
    assert_eq!(m.get(0x251), None);
    assert_eq!(m.get(0x210), None);
}
