// SPDX-License-Identifier: GPL-2.0

//! The local APIC's register rules (`x86/lapic.rs`) against the SDM and
//! KVM's `lapic.c` behaviour.

use crate::lapic::*;

const DEFAULT_BASE: u64 = 0xfee0_0000;
const BASE_BSP: u64 = 1 << 8;
const XAPIC: u64 = DEFAULT_BASE | BASE_ENABLE | BASE_BSP;

/// Whether the 256-bit register at `base` (ISR, TMR, IRR) holds `v`.
fn has(a: &Lapic, base: u32, v: u8) -> bool {
    let w = a.read(base + u32::from(v / 32) * 0x10, 0).unwrap();
    w & (1 << (v % 32)) != 0
}
const X2APIC: u64 = XAPIC | BASE_EXTD;

fn enabled(id: u32, base: u64) -> Lapic {
    let mut a = Lapic::new(id, base);
    a.set_cpuid(false);
    a.write(reg::SVR, 0x1ff, 0).unwrap();
    a
}

#[test]
fn reset_values_are_kvms() {
    // Not the boot CPU: no BSP bit in its APIC base.
    let a = Lapic::new(3, XAPIC & !BASE_BSP);
    assert_eq!(a.read(reg::ID, 0), Ok(3 << 24));
    assert_eq!(a.read(reg::VERSION, 0), Ok(0x50014));
    assert_eq!(a.read(reg::SVR, 0), Ok(0xff));
    assert_eq!(a.read(reg::DFR, 0), Ok(0xffff_ffff));
    for r in [0x320, 0x330, 0x340, 0x350, 0x360, 0x370] {
        assert_eq!(a.read(r, 0), Ok(0x10000), "LVT {r:#x} masked");
    }
    let bsp = Lapic::new(0, XAPIC);
    assert_eq!(bsp.read(reg::LVT_LINT0, 0), Ok(0x700), "BSP: ExtINT");
    // The boot CPU need not be vCPU 0 (KVM_SET_BOOT_CPU_ID).
    let bsp1 = Lapic::new(1, XAPIC);
    assert_eq!(
        bsp1.read(reg::LVT_LINT0, 0),
        Ok(0x700),
        "boot CPU 1: ExtINT"
    );
    let ap0 = Lapic::new(0, XAPIC & !BASE_BSP);
    assert_eq!(
        ap0.read(reg::LVT_LINT0, 0),
        Ok(0x10000),
        "vCPU 0 not the BSP"
    );
    assert!(!a.enabled(), "software-disabled until SVR bit 8");
    let mut a = Lapic::new(0, XAPIC);
    a.set_cpuid(true);
    a.write(reg::ID, 7 << 24, 0).unwrap();
    a.reset(true);
    assert_eq!(a.read(reg::VERSION, 0), Ok(0x0105_0014), "kept by INIT");
    assert_eq!(a.read(reg::ID, 0), Ok(7 << 24), "kept by INIT");
    a.reset(false);
    assert_eq!(a.read(reg::ID, 0), Ok(0), "RESET");
}

#[test]
fn priority_gates_delivery_and_eoi_pops_isr() {
    let mut a = enabled(0, XAPIC);
    assert!(a.accept(0x41, false));
    a.write(reg::TPR, 0x50, 0).unwrap();
    assert_eq!(a.pending(), None, "class 4 below TPR class 5");
    a.write(reg::TPR, 0, 0).unwrap();
    assert_eq!(a.take(), Some(0x41));
    assert!(has(&a, reg::ISR, 0x41) && !has(&a, reg::IRR, 0x41));
    assert_eq!(a.read(reg::PPR, 0), Ok(0x40));
    assert!(a.accept(0x42, false));
    assert_eq!(a.pending(), None, "same class as the one in service");
    assert!(a.accept(0x51, true));
    assert!(has(&a, reg::TMR, 0x51), "level: TMR");
    assert_eq!(a.take(), Some(0x51), "a higher class nests");
    assert_eq!(a.write(reg::EOI, 0, 0), Ok(Effect::Eoi { vector: 0x51 }));
    assert_eq!(a.write(reg::EOI, 0, 0), Ok(Effect::Eoi { vector: 0x41 }));
    assert_eq!(a.take(), Some(0x42));
    assert!(!a.accept(3, false), "vectors 0-15 are dropped");
}

#[test]
fn disabled_apic_drops_interrupts_and_masks_lvts() {
    let mut a = enabled(0, XAPIC);
    a.write(reg::LVT_TIMER, 0x40, 0).unwrap();
    a.write(reg::SVR, 0xff, 0).unwrap();
    assert_eq!(a.read(reg::LVT_TIMER, 0), Ok(0x10040));
    assert!(!a.accept(0x40, false));
    a.write(reg::LVT_LINT0, 0x700, 0).unwrap();
    assert_eq!(a.read(reg::LVT_LINT0, 0), Ok(0x10700), "still masked");
}

#[test]
fn icr_writes_become_messages() {
    let mut a = enabled(0, XAPIC);
    a.write(reg::ICR2, 0x0300_0000, 0).unwrap();
    let e = a.write(reg::ICR, 0x4041 | 1 << 12, 0).unwrap();
    assert_eq!(
        e,
        Effect::Ipi(Message {
            vector: 0x41,
            mode: mode::FIXED,
            level: false,
            dest: Dest::Id {
                id: 3,
                logical: false
            }
        })
    );
    assert_eq!(a.read(reg::ICR, 0), Ok(0x4041), "busy bit never reads set");
    let e = a.write(reg::ICR, 0x4_0042, 0).unwrap();
    assert!(matches!(
        e,
        Effect::Ipi(Message {
            dest: Dest::SelfOnly,
            ..
        })
    ));
    let e = a.write(reg::ICR, 0xc_0500, 0).unwrap();
    assert!(matches!(
        e,
        Effect::Ipi(Message {
            mode: mode::INIT,
            dest: Dest::AllButSelf,
            ..
        })
    ));
}

#[test]
fn destinations_physical_logical_and_broadcast() {
    let mut a = enabled(2, XAPIC);
    let id = |id, logical| Dest::Id { id, logical };
    assert!(a.matches(id(2, false), false));
    assert!(!a.matches(id(1, false), false));
    assert!(a.matches(id(0xff, false), false));
    a.write(reg::LDR, 0x0400_0000, 0).unwrap();
    assert!(a.matches(id(0x06, true), false), "flat: bit 2 of 0x06");
    assert!(!a.matches(id(0x01, true), false));
    a.write(reg::DFR, 0x0fff_ffff, 0).unwrap();
    a.write(reg::LDR, 0x2100_0000, 0).unwrap();
    assert!(a.matches(id(0x23, true), false), "cluster 2, member bit 0");
    assert!(!a.matches(id(0x13, true), false));
    assert!(a.matches(Dest::SelfOnly, true) && !a.matches(Dest::SelfOnly, false));
    assert!(!a.matches(Dest::AllButSelf, true) && a.matches(Dest::All, true));
    let x = enabled(0x13, X2APIC);
    assert!(x.matches(id(0x13, false), false));
    assert!(x.matches(id(0x1_0008, true), false), "cluster 1, bit 3");
    assert!(x.matches(id(u32::MAX, false), false));
    assert!(!Lapic::new(1, DEFAULT_BASE).matches(Dest::All, false));
}

#[test]
fn x2apic_msrs_follow_kvms_rules() {
    let mut a = enabled(5, X2APIC);
    assert_eq!(a.msr_read(0x802, 0), Ok(5), "x2APIC id");
    assert_eq!(a.msr_read(0x80d, 0), Ok(0x20), "LDR: cluster 0, bit 5");
    assert_eq!(a.msr_read(0x80e, 0), Err(Invalid), "no DFR");
    assert_eq!(a.msr_read(0x831, 0), Err(Invalid), "no ICR2");
    assert_eq!(a.msr_write(0x802, 9, 0), Err(Invalid), "id is read-only");
    assert_eq!(a.msr_write(0x80b, 1, 0), Err(Invalid), "EOI of non-zero");
    assert_eq!(a.msr_write(0x808, 1 << 32, 0), Err(Invalid));
    assert_eq!(a.msr_write(0x83f, 0x100, 0), Err(Invalid));
    assert_eq!(
        a.msr_write(0x83f, 0x40, 0),
        Ok(Effect::Ipi(Message {
            vector: 0x40,
            mode: mode::FIXED,
            level: false,
            dest: Dest::SelfOnly
        }))
    );
    let e = a.msr_write(0x830, 7 << 32 | 0x4043, 0).unwrap();
    assert!(matches!(
        e,
        Effect::Ipi(Message {
            dest: Dest::Id {
                id: 7,
                logical: false
            },
            ..
        })
    ));
    assert_eq!(a.msr_read(0x830, 0), Ok(7 << 32 | 0x4043));
    let x = enabled(0, XAPIC);
    assert_eq!(
        x.msr_read(0x802, 0),
        Err(Invalid),
        "#GP outside x2APIC mode"
    );
}

#[test]
fn base_changes_are_checked() {
    assert!(base_change_valid(XAPIC, X2APIC, true));
    assert!(
        !base_change_valid(XAPIC, X2APIC, false),
        "no x2APIC in CPUID"
    );
    assert!(!base_change_valid(X2APIC, XAPIC, true), "x2APIC to xAPIC");
    assert!(base_change_valid(X2APIC, DEFAULT_BASE, true), "disable");
    assert!(
        !base_change_valid(DEFAULT_BASE, X2APIC, true),
        "off to x2APIC"
    );
    assert!(!base_change_valid(XAPIC, DEFAULT_BASE | BASE_EXTD, true));
}

#[test]
fn one_shot_and_periodic_timer() {
    let mut a = enabled(0, XAPIC);
    a.write(reg::TDCR, 0xb, 0).unwrap(); // divide by 1
    a.write(reg::LVT_TIMER, 0x41, 0).unwrap();
    a.write(reg::TMICT, 1000, 100).unwrap();
    assert_eq!(a.deadline(), Some(1100));
    assert_eq!(a.read(reg::TMCCT, 600), Ok(500));
    assert!(!a.poll_timer(1099));
    assert!(a.poll_timer(1100));
    assert_eq!(a.deadline(), None, "one-shot ends");
    assert_eq!(a.read(reg::TMCCT, 1200), Ok(0));
    assert_eq!(a.take(), Some(0x41));
    // Periodic, divide by 2, 150 us asked for: the 200 us minimum.
    a.write(reg::TDCR, 0, 0).unwrap();
    a.write(reg::LVT_TIMER, 0x2_0042, 0).unwrap();
    a.write(reg::TMICT, 75_000, 0).unwrap();
    assert_eq!(a.deadline(), Some(200_000));
    assert!(a.poll_timer(200_000));
    assert_eq!(a.deadline(), Some(400_000));
    assert!(a.poll_timer(1_000_000), "late: one interrupt");
    assert_eq!(a.deadline(), Some(1_200_000), "the next a period away");
    a.write(reg::TMICT, 0, 0).unwrap();
    assert_eq!(a.deadline(), None, "TMICT 0 stops it");
    // Masked: the timer runs, nothing is accepted.
    a.write(reg::LVT_TIMER, 0x1_0043, 0).unwrap();
    a.write(reg::TMICT, 10, 0).unwrap();
    assert!(a.poll_timer(1_000_000));
    assert!(!has(&a, reg::IRR, 0x43));
}

#[test]
fn mmio_reads_and_writes() {
    let mut a = enabled(1, XAPIC);
    assert_eq!(a.mmio_read(0x20, 4, 0), 1 << 24);
    assert_eq!(a.mmio_read(0x23, 1, 0), 1, "a byte of ID");
    assert_eq!(a.mmio_read(0x22, 4, 0), 0, "crosses the register");
    assert_eq!(a.mmio_read(0x40, 4, 0), 0, "reserved reads 0");
    assert_eq!(a.mmio_write(0x80, 2, 0x30, 0), Effect::None);
    assert_eq!(a.read(reg::TPR, 0), Ok(0), "narrow writes are dropped");
    a.mmio_write(0x80, 4, 0x30, 0);
    assert_eq!(a.read(reg::TPR, 0), Ok(0x30));
    assert_eq!(a.cr8(), 3);
    a.set_cr8(7);
    assert_eq!(a.read(reg::PPR, 0), Ok(0x70));
}

#[test]
fn state_round_trip_restarts_the_timer_from_tmcct() {
    let mut a = enabled(0, XAPIC);
    a.write(reg::TDCR, 0xb, 0).unwrap();
    a.write(reg::LVT_TIMER, 0x41, 0).unwrap();
    a.write(reg::TMICT, 1000, 0).unwrap();
    a.accept(0x60, false);
    let mut page = [0u8; REGS_SIZE];
    a.get_state(400, false, &mut page);
    assert_eq!(
        u32::from_le_bytes(page[0x390..0x394].try_into().unwrap()),
        600
    );
    let mut b = Lapic::new(0, XAPIC);
    b.set_state(&page, 10_000, false).unwrap();
    assert_eq!(b.deadline(), Some(10_600));
    assert!(has(&b, reg::IRR, 0x60));
    page[0x30] = 0x99;
    b.set_state(&page, 0, false).unwrap();
    assert_eq!(
        b.read(reg::VERSION, 0),
        Ok(0x50014),
        "version is KVM's to set"
    );
}

#[test]
fn msi_fields() {
    let m = msi_message(0xfee0_1000, 0x8042);
    assert_eq!(
        m,
        Message {
            vector: 0x42,
            mode: mode::FIXED,
            level: true,
            dest: Dest::Id {
                id: 1,
                logical: false
            }
        }
    );
    assert!(matches!(
        msi_message(0xfee0_0004, 0x400),
        Message {
            mode: mode::NMI,
            dest: Dest::Id { logical: true, .. },
            ..
        }
    ));
}

#[test]
fn x2apic_id_in_state_and_mode_changes() {
    let mut a = enabled(3, XAPIC);
    a.write(reg::ID, 9 << 24, 0).unwrap();
    a.set_base(X2APIC);
    let mut page = [0u8; REGS_SIZE];
    a.get_state(0, false, &mut page);
    assert_eq!(
        &page[0x20..0x24],
        &(3u32 << 24).to_le_bytes(),
        "xAPIC format"
    );
    a.get_state(0, true, &mut page);
    assert_eq!(&page[0x20..0x24], &3u32.to_le_bytes(), "32-bit ids");
    page[0x20..0x24].copy_from_slice(&(7u32 << 24).to_le_bytes());
    a.set_state(&page, 0, false).unwrap();
    assert_eq!(a.id(), 3, "x2APIC id is read-only");
    assert_eq!(
        a.set_state(&page, 0, true),
        Err(Invalid),
        "must match with 32-bit ids"
    );
    a.set_base(XAPIC);
    assert_eq!(a.read(reg::ID, 0), Ok(3 << 24), "xAPIC id again");
}

#[test]
fn no_periodic_mode_before_a_cpuid() {
    let mut a = Lapic::new(0, XAPIC);
    a.write(reg::SVR, 0x1ff, 0).unwrap();
    a.write(reg::LVT_TIMER, 0x3_0041, 0).unwrap();
    assert_eq!(
        a.read(reg::LVT_TIMER, 0),
        Ok(0x1_0041),
        "KVM's mask is 0 then"
    );
    a.set_cpuid(false);
    a.write(reg::LVT_TIMER, 0x3_0041, 0).unwrap();
    assert_eq!(a.read(reg::LVT_TIMER, 0), Ok(0x3_0041));
}

#[test]
fn msi_to_0xff_is_x2apic_broadcast_only_under_the_quirk() {
    let x2 = enabled(5, X2APIC);
    let xa = enabled(5, XAPIC);
    let msg = msi_message(0xfee0_0000 | 0xff << 12, 0x40);
    // Under the quirk an x2APIC-mode APIC takes it as broadcast.
    assert!(x2.matches(x2.msi_dest(msg.dest), false));
    // Without it, 0xff is just id 255 in x2APIC mode.
    assert!(!x2.matches(msg.dest, false));
    // In xAPIC mode 0xff is the broadcast either way.
    assert!(xa.matches(xa.msi_dest(msg.dest), false));
    assert!(xa.matches(msg.dest, false));
    // Other ids are untouched.
    let to5 = msi_message(0xfee0_0000 | 5 << 12, 0x40);
    assert_eq!(x2.msi_dest(to5.dest), to5.dest);
}
