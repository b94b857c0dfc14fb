// SPDX-License-Identifier: GPL-2.0

//! The coalesced MMIO ring and zone rules (`coalesced/ring.rs`) against
//! KVM's `coalesced_mmio.c` and `<linux/kvm.h>`.

use crate::coalesced_ring::*;

#[test]
fn ring_geometry_is_kvms() {
    // KVM_COALESCED_MMIO_MAX on 4 KiB pages; the ring at page 2.
    assert_eq!(MAX, 170);
    assert_eq!(PAGE_OFFSET, 2);
    assert!(HEADER + MAX as usize * ENTRY <= 4096);
}

#[test]
fn one_entry_always_stays_free() {
    assert_eq!(insert_at(0, 0), Some(0));
    assert_eq!(insert_at(5, 3), Some(3));
    assert_eq!(
        insert_at(0, MAX - 1),
        None,
        "(last + 1) % MAX == first: full"
    );
    assert_eq!(insert_at(4, 3), None);
    assert_eq!(insert_at(0, MAX - 2), Some(MAX - 2));
    // Indices from user space are not trusted.
    assert_eq!(insert_at(0, MAX), None);
    assert_eq!(insert_at(u32::MAX, u32::MAX), None);
}

#[test]
fn zones_contain_whole_accesses_on_their_bus() {
    assert_eq!(Zone::new(0x1000, 8, 2), None, "pio must be 0 or 1");
    let z = Zone::new(0x1_0000_0000, 8, 0).unwrap();
    assert!(z.contains(false, 0x1_0000_0000, 8));
    assert!(z.contains(false, 0x1_0000_0004, 4));
    assert!(!z.contains(false, 0x1_0000_0004, 8), "crosses the end");
    assert!(!z.contains(false, 0xffff_fffc, 8), "starts before");
    assert!(!z.contains(true, 0x1_0000_0000, 4), "other bus");
    assert!(!z.contains(false, u64::MAX - 2, 4), "wraps");
    let top = Zone::new(u64::MAX - 7, 8, 0).unwrap();
    assert!(top.contains(false, u64::MAX - 7, 4), "zone end past 2^64");
    let p = Zone::new(0x80, 8, 1).unwrap();
    assert!(p.contains(true, 0x80, 4) && p.contains(true, 0x84, 4));
    // A length negative as a C int is never inside (KVM's int len).
    let big = Zone::new(0, u32::MAX, 0).unwrap();
    assert!(!big.contains(false, 0, 0x8000_0000));
}

#[test]
fn entries_follow_struct_kvm_coalesced_mmio() {
    let e = entry(0x80, 4, true, 0x1122_3344_5566_7788);
    assert_eq!(u64::from_le_bytes(e[..8].try_into().unwrap()), 0x80);
    assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 4);
    assert_eq!(u32::from_le_bytes(e[12..16].try_into().unwrap()), 1);
    assert_eq!(&e[16..20], &[0x88, 0x77, 0x66, 0x55]);
    assert_eq!(&e[20..24], &[0, 0, 0, 0], "only len bytes of data");
}
