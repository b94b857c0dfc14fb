// SPDX-License-Identifier: GPL-2.0

//! Tests of exit-reason and exit-qualification decoding (`rust/vmx/exit.rs`).

use crate::exit::*;

#[test]
fn exit_reason_fields() {
    let r = ExitReason(0x8000_0021);
    assert!(r.entry_failed());
    assert_eq!(r.basic(), reason::INVALID_GUEST_STATE);
    assert!(!ExitReason(u32::from(reason::HLT)).entry_failed());
}

#[test]
fn io_qualifications() {
    // out %al,$0x80 (immediate operand, bit 6).
    assert_eq!(
        IoExit::from_qualification(0x0080_0040),
        Some(IoExit {
            port: 0x80,
            size: 1,
            input: false,
            string: false,
            rep: false
        })
    );
    // rep insw from port 0x1f0: size 2, IN, string, REP.
    assert_eq!(
        IoExit::from_qualification(0x01f0_0039),
        Some(IoExit {
            port: 0x1f0,
            size: 2,
            input: true,
            string: true,
            rep: true
        })
    );
    // in %dx,%eax with DX=0xcfc.
    assert_eq!(
        IoExit::from_qualification(0x0cfc_000b),
        Some(IoExit {
            port: 0xcfc,
            size: 4,
            input: true,
            string: false,
            rep: false
        })
    );
    // Size encoding 2 is reserved.
    assert_eq!(IoExit::from_qualification(0x0080_0002), None);
}

#[test]
fn cr_access_qualifications() {
    // mov %rbx,%cr3
    assert_eq!(
        CrAccess::from_qualification(0x303),
        CrAccess::ToCr { cr: 3, gpr: 3 }
    );
    // mov %cr0,%r12
    assert_eq!(
        CrAccess::from_qualification(0xc10),
        CrAccess::FromCr { cr: 0, gpr: 12 }
    );
    assert_eq!(CrAccess::from_qualification(0x20), CrAccess::Clts);
    // lmsw with source 0x0011
    assert_eq!(
        CrAccess::from_qualification(0x0011_0030),
        CrAccess::Lmsw(0x11)
    );
}

#[test]
fn ept_violation_qualifications() {
    // A write to an unmapped page.
    assert_eq!(
        EptViolation::from_qualification(0x182),
        EptViolation {
            read: false,
            write: true,
            fetch: false,
            present: false
        }
    );
    // A fetch from a page mapped read/write only.
    assert_eq!(
        EptViolation::from_qualification(0x18c),
        EptViolation {
            read: false,
            write: false,
            fetch: true,
            present: true
        }
    );
}
