// SPDX-License-Identifier: GPL-2.0

//! Tests of the segment access-rights conversion (`rust/x86/segment.rs`).

use crate::segment::*;

#[test]
fn reset_values_decode_like_kvm() {
    let cs = fields_from_ar(RESET_CODE_AR);
    assert_eq!((cs.type_, cs.s, cs.present, cs.dpl), (0xb, 1, 1, 0));
    let tr = fields_from_ar(RESET_TR_AR);
    assert_eq!((tr.type_, tr.s, tr.present), (0xb, 0, 1));
    let ldt = fields_from_ar(RESET_LDT_AR);
    assert_eq!((ldt.type_, ldt.s, ldt.present), (2, 0, 1));
}

#[test]
fn round_trip_of_a_64bit_code_segment() {
    let f = Fields {
        type_: 0xb,
        present: 1,
        dpl: 3,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 1,
        unusable: 0,
    };
    let ar = ar_from_fields(&f, false);
    assert_eq!(
        ar,
        0xb | 1 << 4 | 3 << 5 | 1 << 7 | 1 << 12 | 1 << 13 | 1 << 15
    );
    assert_eq!(fields_from_ar(ar), f);
}

#[test]
fn accessed_bit_is_forced_except_for_the_ldt() {
    let f = Fields {
        type_: 2,
        present: 1,
        s: 1,
        ..Default::default()
    };
    assert_eq!(ar_from_fields(&f, false) & 15, 3);
    assert_eq!(ar_from_fields(&f, true) & 15, 2);
}

#[test]
fn not_present_becomes_unusable_and_keeps_its_fields() {
    // As kvm_intel 7.3 reports it (checked by selftests/diff_test.c).
    let f = Fields {
        type_: 3,
        present: 0,
        s: 1,
        dpl: 2,
        db: 1,
        g: 1,
        ..Default::default()
    };
    let ar = ar_from_fields(&f, false);
    assert_eq!(ar, AR_UNUSABLE | 3 | 1 << 4 | 2 << 5 | 1 << 14 | 1 << 15);
    let back = fields_from_ar(ar);
    assert_eq!(back, Fields { unusable: 1, ..f });
}

#[test]
fn unusable_but_present_reads_back_not_present() {
    let f = Fields {
        type_: 3,
        present: 1,
        s: 1,
        unusable: 1,
        ..Default::default()
    };
    let back = fields_from_ar(ar_from_fields(&f, false));
    assert_eq!((back.present, back.unusable, back.type_), (0, 1, 3));
}
