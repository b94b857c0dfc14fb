// SPDX-License-Identifier: GPL-2.0

//! Tests of the memslot request logic (`rust/memslot/region.rs`) against
//! the errno KVM gives for each case.

use crate::region::*;

const MB: u64 = 1 << 20;

fn req(slot: u32, gpa: u64, size: u64, uaddr: u64) -> Request {
    Request {
        slot,
        flags: 0,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uaddr,
    }
}

/// A user address space ending at 128 TiB - 4 KiB, as on x86-64.
fn user_ok(addr: u64, size: u64) -> bool {
    addr.checked_add(size)
        .is_some_and(|end| end <= (1 << 47) - PAGE_SIZE)
}

/// Classifies against a list of existing slots.
fn run(r: &Request, slots: &[Slot]) -> Result<Change, Refusal> {
    let old = slots.iter().find(|s| s.id == r.slot as u16);
    classify(
        r,
        old,
        |id, base, end| slots.iter().any(|s| s.id != id && s.overlaps(base, end)),
        user_ok,
    )
}

fn slot(id: u16, base_gfn: u64, npages: u64, uaddr: u64) -> Slot {
    Slot {
        id,
        base_gfn,
        npages,
        flags: 0,
        userspace_addr: uaddr,
    }
}

#[test]
fn create_delete_and_repeat() {
    let r = req(3, 16 * MB, 2 * MB, 0x7000_0000);
    let s = slot(3, 4096, 512, 0x7000_0000);
    assert_eq!(run(&r, &[]), Ok(Change::Create(s)));
    assert_eq!(run(&r, &[s]), Ok(Change::Nothing));
    assert_eq!(run(&req(3, 0, 0, 0), &[s]), Ok(Change::Delete(3)));
}

#[test]
fn deleting_a_missing_slot_is_einval() {
    assert_eq!(run(&req(1, 0, 0, 0), &[]), Err(Refusal::Invalid));
}

#[test]
fn misalignment_is_einval() {
    for r in [
        req(0, 0x800, MB, 0x7000_0000),
        req(0, 0, MB + 1, 0x7000_0000),
        req(0, 0, MB, 0x7000_0010),
    ] {
        assert_eq!(run(&r, &[]), Err(Refusal::Invalid), "{r:?}");
    }
}

#[test]
fn bad_user_range_and_overflow_are_einval() {
    // Kernel address as backing memory.
    assert_eq!(
        run(&req(0, 0, MB, 0xffff_8880_0000_0000), &[]),
        Err(Refusal::Invalid)
    );
    // Guest physical range wrapping around.
    assert_eq!(
        run(&req(0, u64::MAX - MB + 1 - 0xfff, MB, 0x7000_0000), &[]),
        Err(Refusal::Invalid)
    );
}

#[test]
fn slot_ids_and_address_spaces_are_bounded() {
    assert_eq!(
        run(&req(USER_MEM_SLOTS, 0, MB, 0x7000_0000), &[]),
        Err(Refusal::Invalid)
    );
    assert!(run(&req(USER_MEM_SLOTS - 1, 0, MB, 0x7000_0000), &[]).is_ok());
    // Address space 1 (SMM on KVM) does not exist in rkvm.
    assert_eq!(
        run(&req(1 << 16, 0, MB, 0x7000_0000), &[]),
        Err(Refusal::Invalid)
    );
}

#[test]
fn unsupported_flags_are_einval() {
    // GUEST_MEMFD, rkvm's internal INVALID bit and bits no KVM defines.
    for flags in [4, SLOT_INVALID, 1 << 31] {
        let mut r = req(0, 0, MB, 0x7000_0000);
        r.flags = flags;
        assert_eq!(run(&r, &[]), Err(Refusal::Invalid), "flags {flags:#x}");
    }
}

#[test]
fn dirty_logging_can_be_switched_on_and_off() {
    let mut r = req(0, 0, MB, 0x7000_0000);
    r.flags = KVM_MEM_LOG_DIRTY_PAGES;
    let mut logging = slot(0, 0, 256, 0x7000_0000);
    logging.flags = KVM_MEM_LOG_DIRTY_PAGES;
    assert!(logging.logs_dirty());
    assert_eq!(run(&r, &[]), Ok(Change::Create(logging)));
    assert_eq!(
        run(&r, &[slot(0, 0, 256, 0x7000_0000)]),
        Ok(Change::Flags(logging))
    );
    r.flags = 0;
    assert_eq!(
        run(&r, &[logging]),
        Ok(Change::Flags(slot(0, 0, 256, 0x7000_0000)))
    );
}

#[test]
fn readonly_slots_are_accepted_but_the_flag_cannot_change() {
    let mut r = req(0, 0, MB, 0x7000_0000);
    r.flags = KVM_MEM_READONLY;
    let mut ro = slot(0, 0, 256, 0x7000_0000);
    ro.flags = KVM_MEM_READONLY;
    assert_eq!(run(&r, &[]), Ok(Change::Create(ro)));
    assert!(ro.readonly() && !ro.invalid());
    // KVM refuses to toggle READONLY on an existing slot.
    assert_eq!(
        run(&r, &[slot(0, 0, 256, 0x7000_0000)]),
        Err(Refusal::Invalid)
    );
    r.flags = 0;
    assert_eq!(run(&r, &[ro]), Err(Refusal::Invalid));
}

#[test]
fn overlap_is_eexist_but_adjacent_is_fine() {
    let a = slot(0, 0, 256, 0x7000_0000);
    assert_eq!(
        run(&req(1, 0xff000, MB, 0x8000_0000), &[a]),
        Err(Refusal::Overlap)
    );
    assert_eq!(
        run(&req(1, MB, MB, 0x8000_0000), &[a]),
        Ok(Change::Create(slot(1, 256, 256, 0x8000_0000)))
    );
}

#[test]
fn moves_check_overlap_and_keep_size_and_backing() {
    let a = slot(0, 0, 256, 0x7000_0000);
    let b = slot(1, 256, 256, 0x8000_0000);
    // Move b up: fine.
    assert_eq!(
        run(&req(1, 4 * MB, MB, 0x8000_0000), &[a, b]),
        Ok(Change::Move(slot(1, 1024, 256, 0x8000_0000)))
    );
    // Move b onto a: EEXIST.
    assert_eq!(
        run(&req(1, 0, MB, 0x8000_0000), &[a, b]),
        Err(Refusal::Overlap)
    );
    // Overlapping only itself is not an overlap.
    assert!(matches!(
        run(&req(1, MB + PAGE_SIZE, MB, 0x8000_0000), &[a, b]),
        Ok(Change::Move(_))
    ));
    // Changing size or backing of an existing slot: EINVAL.
    assert_eq!(
        run(&req(1, MB, 2 * MB, 0x8000_0000), &[a, b]),
        Err(Refusal::Invalid)
    );
    assert_eq!(
        run(&req(1, MB, MB, 0x9000_0000), &[a, b]),
        Err(Refusal::Invalid)
    );
}
