// SPDX-License-Identifier: GPL-2.0

//! The vCPU state ioctls' pure rules: debug registers
//! (`x86/debugreg.rs`), the XSAVE image and XCR0 (`x86/xsave.rs`) and the
//! machine-check MSRs (`x86/mce.rs`), against KVM's documented behaviour.

use crate::debugreg::*;
use crate::mce::*;
use crate::xsave::*;

#[test]
fn set_debugregs_checks_flags_then_the_upper_halves() {
    assert!(set_debugregs_valid(0, DR6_RESET, DR7_RESET));
    assert!(
        set_debugregs_valid(0, 0, 0),
        "stored as given, no fixed bits"
    );
    assert!(!set_debugregs_valid(1, DR6_RESET, DR7_RESET));
    assert!(!set_debugregs_valid(0, 1 << 32, DR7_RESET));
    assert!(!set_debugregs_valid(0, DR6_RESET, 1 << 63));
}

#[test]
fn guest_writes_keep_only_the_volatile_bits() {
    // B0-B3, BD, BS, BT change; the rest reads as 1 (no RTM, no BLD).
    assert_eq!(guest_dr6(0), 0xffff_0ff0);
    assert_eq!(guest_dr6(0xffff_0ff3), 0xffff_0ff3);
    assert_eq!(guest_dr6(0xe00f), 0xffff_efff);
    assert_eq!(guest_dr7(0), 0x400);
    assert_eq!(guest_dr7(0xffff_ffff), 0xffff_2fff);
    assert_eq!(guest_dr7(0x402), 0x402);
    assert_eq!(DebugRegs::default().dr6, 0xffff_0ff0);
    assert_eq!(alias(4, false), Some(6));
    assert_eq!(alias(5, false), Some(7));
    assert_eq!(alias(4, true), None);
    assert_eq!(alias(5, true), None);
    assert_eq!(alias(3, true), Some(3));
}

fn image(bv: u64, xcomp: u64, mxcsr: u32) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    b[off::XSTATE_BV..off::XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    b[off::XCOMP_BV..off::XCOMP_BV + 8].copy_from_slice(&xcomp.to_le_bytes());
    b[off::MXCSR..off::MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    b
}

#[test]
fn xsave_images_are_checked_as_the_kernel_does() {
    assert_eq!(check_image(&image(3, 0, 0x1f80)), Ok(3));
    assert_eq!(check_image(&image(0, 0, 0)), Ok(0));
    assert_eq!(check_image(&image(2, 0, 0x1f80)), Ok(2));
    assert_eq!(check_image(&image(4, 0, 0x1f80)), Err(BadXsave::Features));
    assert_eq!(
        check_image(&image(1 << 63 | 3, 0, 0x1f80)),
        Err(BadXsave::Features)
    );
    assert_eq!(
        check_image(&image(3, 1 << 63 | 3, 0x1f80)),
        Err(BadXsave::Compacted)
    );
    let mut b = image(3, 0, 0x1f80);
    b[575] = 1;
    assert_eq!(check_image(&b), Err(BadXsave::Reserved));
    assert_eq!(check_image(&image(1, 0, 0x1_0000)), Err(BadXsave::Mxcsr));
    // MXCSR is not looked at when neither x87 nor SSE state comes.
    assert_eq!(check_image(&image(0, 0, 0x1_0000)), Ok(0));
}

#[test]
fn xcr0_follows_kvm_set_xcr() {
    assert!(xcr0_valid(1, GUEST_SUPPORTED_XCR0));
    assert!(!xcr0_valid(0, GUEST_SUPPORTED_XCR0));
    assert!(!xcr0_valid(3, GUEST_SUPPORTED_XCR0), "SSE not granted");
    assert!(xcr0_valid(3, 3));
    assert!(!xcr0_valid(5, 7), "AVX without SSE");
    assert!(xcr0_valid(7, 7));
    assert!(!xcr0_valid(1 << 63 | 1, 7));
}

#[test]
fn mce_setup_validates_banks_and_capabilities() {
    let mut m = Mce::default();
    assert_eq!(m.cap, 32, "32 banks before any setup, as KVM");
    assert_eq!(m.get(index::MC0_CTL, false), Some(0));
    assert!(!m.setup(0));
    assert!(!m.setup(33));
    assert!(!m.setup(10 | 1 << 9), "MCG_EXT_P is not supported");
    assert!(!m.setup(10 | 1 << 10), "CMCI is not supported");
    assert_eq!(m, Mce::default(), "refused setups change nothing");
    assert!(m.setup(10 | MCG_CTL_P | MCG_SER_P | 0x05_0000));
    assert_eq!(m.ctl, u64::MAX);
    assert_eq!(m.get(index::MC0_CTL + 4 * 9, false), Some(u64::MAX));
    assert_eq!(
        m.get(index::MC0_CTL + 4 * 10, true),
        None,
        "bank 10 is gone"
    );
    assert_eq!(
        m.get(index::MCG_CAP, false),
        Some(10 | MCG_CTL_P | MCG_SER_P | 0x05_0000)
    );
}

#[test]
fn mce_msr_writes_follow_set_msr_mce() {
    let mut m = Mce::default();
    assert!(m.setup(4));
    // No MCG_CTL_P: the guest cannot touch MCG_CTL, the host may write 0.
    assert_eq!(m.get(index::MCG_CTL, false), None);
    assert_eq!(m.set(index::MCG_CTL, 0, false), Some(false));
    assert_eq!(m.set(index::MCG_CTL, 0, true), Some(true));
    assert_eq!(m.set(index::MCG_CTL, u64::MAX, true), Some(false));
    assert!(m.setup(4 | MCG_CTL_P));
    assert_eq!(m.set(index::MCG_CTL, 5, true), Some(false));
    assert_eq!(m.set(index::MCG_CTL, 0, false), Some(true));
    // MCi_CTL: 0 or all ones, bits 0 and 10 may be clear.
    assert_eq!(m.set(index::MC0_CTL, 0x1234, false), Some(false));
    assert_eq!(m.set(index::MC0_CTL, !(1 << 10 | 1), false), Some(true));
    // MCi_STATUS: the guest may only clear it.
    assert_eq!(m.set(index::MC0_CTL + 1, 1, false), Some(false));
    assert_eq!(m.set(index::MC0_CTL + 1, 1, true), Some(true));
    assert_eq!(m.set(index::MC0_CTL + 1, 0, false), Some(true));
    assert_eq!(m.set(index::MC0_CTL + 2, 0xabc, false), Some(true));
    assert_eq!(m.get(index::MC0_CTL + 2, false), Some(0xabc));
    assert_eq!(m.set(index::MCG_CAP, 4, true), None, "read-only");
    assert_eq!(m.set(index::MC0_CTL + 16, 0, true), None, "bank 4 of 4");
    assert_eq!(m.set(index::MCG_STATUS, 7, false), Some(true));
}

#[test]
fn set_mce_records_and_raises_as_kvm() {
    let mut m = Mce::default();
    assert!(m.setup(10 | MCG_CTL_P));
    assert_eq!(m.inject(10, MCI_STATUS_VAL, 0, 0, 0, true), Err(()));
    assert_eq!(m.inject(0, 0, 0, 0, 0, true), Err(()), "no VAL");
    // Corrected error: logged, nothing raised.
    assert_eq!(
        m.inject(1, MCI_STATUS_VAL | 5, 0x10, 0x20, 0, true),
        Ok(Injected::None)
    );
    assert_eq!(m.banks[1][1..], [MCI_STATUS_VAL | 5, 0x10, 0x20]);
    // A second one overflows.
    assert_eq!(
        m.inject(1, MCI_STATUS_VAL | 6, 0x30, 0, 0, true),
        Ok(Injected::None)
    );
    assert_eq!(m.banks[1][1], MCI_STATUS_VAL | MCI_STATUS_OVER | 6);
    // Uncorrected, with MCG_STATUS: #MC if CR4.MCE, else shutdown.
    let uc = MCI_STATUS_VAL | MCI_STATUS_UC | 1 << 57;
    assert_eq!(
        m.inject(2, uc, 0x40, 0, 5, false),
        Ok(Injected::TripleFault)
    );
    assert_eq!(
        m.inject(2, uc, 0x40, 0, 5, true),
        Ok(Injected::MachineCheck)
    );
    assert_eq!(m.status, 5);
    assert_eq!(m.banks[2][1..3], [uc, 0x40]);
    // One in progress (MCIP): shutdown.
    assert_eq!(m.inject(3, uc, 0, 0, 5, true), Ok(Injected::TripleFault));
    // Reporting disabled in the bank: dropped.
    m.banks[4][0] = 0;
    assert_eq!(m.inject(4, uc, 0, 0, 5, true), Ok(Injected::None));
    assert_eq!(m.banks[4][1], 0);
}

mod ioeventfd {
    use crate::ioeventfd_rules::*;

    #[test]
    fn assignments_are_checked_in_kvm_order() {
        assert!(assign_valid(0x20, 2, flag::PIO | flag::DATAMATCH));
        assert!(assign_valid(0x1000, 0, 0));
        assert!(assign_valid(0x1000, 8, flag::VIRTIO_CCW_NOTIFY));
        assert!(!assign_valid(0x20, 3, flag::PIO));
        assert!(!assign_valid(u64::MAX, 4, 0), "wraps");
        assert!(assign_valid(u64::MAX, 0, 0), "no length, no wrap");
        assert!(assign_valid(0x20, 2, 1 << 4), "accepted, as KVM");
        assert!(!assign_valid(0x20, 2, 1 << 5));
        assert!(!assign_valid(0x20, 0, flag::DATAMATCH));
    }

    #[test]
    fn writes_match_by_address_length_and_data() {
        let dm = Key::from_request(0x20, 2, flag::PIO | flag::DATAMATCH, 0x1234);
        assert_eq!(dm.bus, Bus::Pio);
        assert!(dm.matches(Bus::Pio, 0x20, 2, 0x1234));
        assert!(!dm.matches(Bus::Pio, 0x20, 2, 0x1235));
        assert!(!dm.matches(Bus::Pio, 0x20, 1, 0x34));
        assert!(!dm.matches(Bus::Mmio, 0x20, 2, 0x1234));
        assert!(!dm.matches(Bus::Pio, 0x21, 2, 0x1234));
        let any = Key::from_request(0x3000_0000, 0, 0, 77);
        assert_eq!(any.datamatch, None);
        assert!(any.matches(Bus::Mmio, 0x3000_0000, 4, 1));
        assert!(any.matches(Bus::Mmio, 0x3000_0000, 1, 9));
        let wild = Key::from_request(0x40, 4, flag::PIO, 5);
        assert!(wild.matches(Bus::Pio, 0x40, 4, 6));
        assert!(!wild.matches(Bus::Pio, 0x40, 2, 6));
        let ccw = Key::from_request(0x40, 4, flag::VIRTIO_CCW_NOTIFY, 0);
        assert!(!ccw.matches(Bus::Mmio, 0x40, 4, 0));
    }

    #[test]
    fn collisions_follow_kvm() {
        let k = |addr, len, flags, dm| Key::from_request(addr, len, flags, dm);
        let a = k(0x20, 2, flag::PIO | flag::DATAMATCH, 1);
        assert!(a.collides(&a));
        assert!(!a.collides(&k(0x20, 2, flag::PIO | flag::DATAMATCH, 2)));
        assert!(a.collides(&k(0x20, 2, flag::PIO, 2)), "wildcard");
        assert!(a.collides(&k(0x20, 0, flag::PIO, 0)), "no length");
        assert!(!a.collides(&k(0x20, 4, flag::PIO | flag::DATAMATCH, 1)));
        assert!(!a.collides(&k(0x20, 2, flag::DATAMATCH, 1)), "other bus");
    }
}
