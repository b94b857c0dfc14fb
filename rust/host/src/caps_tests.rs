// SPDX-License-Identifier: GPL-2.0

//! Tests of the VMX capability decoder (`rust/vmx/caps.rs`).

use crate::caps::*;

/// A control capability MSR from its allowed-0 and allowed-1 halves.
fn ctl(must_be_one: u32, may_be_one: u32) -> u64 {
    (u64::from(may_be_one) << 32) | u64::from(must_be_one)
}

/// MSR values of a CPU that has everything rkvm uses, with true controls.
fn full_featured() -> VmxMsrs {
    let basic = 0x12 // revision id
        | (0x1000u64 << 32) // VMCS size
        | (6u64 << 50) // write-back
        | (1u64 << 54) // INS/OUTS info
        | (1u64 << 55); // true controls
    VmxMsrs {
        feature_control: 0x5,
        basic,
        // The non-true MSRs force bits the true ones let rkvm clear.
        pinbased: ctl(0x16, 0xff),
        procbased: ctl(0x0401_e172, 0xffff_fffe),
        exit: ctl(0x0003_6dff, 0x00ff_ffff),
        entry: ctl(0x0000_11ff, 0x0000_ffff),
        misc: 0x5,
        cr0_fixed0: 0x8000_0021,
        cr0_fixed1: 0xffff_ffff,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x0037_27ff,
        procbased2: ctl(0, 0x0000_00ff),
        ept_vpid: [0, 6, 8, 14, 16, 17, 20, 21, 25, 26, 32, 41, 42, 43]
            .iter()
            .fold(0, |acc, bit| acc | (1u64 << bit)),
        true_pinbased: ctl(0x16, 0xff),
        true_procbased: ctl(0x0400_6172, 0xffff_fffe),
        true_exit: ctl(0x0003_6dfb, 0x00ff_ffff),
        true_entry: ctl(0x0000_11fb, 0x0000_ffff),
    }
}

#[test]
fn adjust_sets_forced_required_and_allowed_optional_bits() {
    // Bit 1 forced to 1; bit 2 required; bits 3 and 8 optional, only 3 allowed.
    let cap = ctl(0b10, 0b1110);
    let v = adjust_controls(ControlField::Pin, cap, 0b100, 0b1_0000_1000).unwrap();
    assert_eq!(v, 0b1110);
}

#[test]
fn adjust_reports_exactly_the_missing_required_bits() {
    let cap = ctl(0, 0b0110);
    let err = adjust_controls(ControlField::Exit, cap, 0b1111, 0).unwrap_err();
    assert_eq!(err, ProbeError::MissingControls(ControlField::Exit, 0b1001));
    assert!(!err.is_unsupported());
}

#[test]
fn full_featured_cpu_is_accepted_with_true_controls() {
    let caps = VmxCaps::from_msrs(true, &full_featured()).unwrap();
    assert_eq!(caps.revision_id, 0x12);
    assert_eq!(caps.vmcs_size, 4096);
    assert!(caps.true_controls);
    assert!(caps.ins_outs_info);
    // The true MSR lets CR3 exiting be cleared by VMCS setup later, but rkvm
    // requires the exits to exist: they are set here.
    assert_ne!(caps.proc & proc::CR3_LOAD_EXITING, 0);
    assert_ne!(caps.proc2 & proc2::ENABLE_EPT, 0);
    assert_ne!(caps.proc2 & proc2::UNRESTRICTED_GUEST, 0);
    // Never acknowledge interrupts on exit (bit 15): the host takes them.
    assert_eq!(caps.exit & (1 << 15), 0);
    assert!(caps.ept.vpid);
    assert!(caps.ept.page_2m && caps.ept.page_1g && caps.ept.invept_single);
    assert_eq!(caps.preemption_timer_rate, 5);
    // Forced bits of the true MSRs are present, the dropped default-1 bits not.
    assert_eq!(caps.entry & 0x11fb, 0x11fb);
    assert_eq!(caps.entry & 0x4, 0);
}

#[test]
fn legacy_controls_used_without_basic_bit_55() {
    let mut m = full_featured();
    m.basic &= !(1 << 55);
    m.true_entry = 0;
    let caps = VmxCaps::from_msrs(true, &m).unwrap();
    assert!(!caps.true_controls);
    // The legacy MSR forces bit 2 of the entry controls.
    assert_eq!(caps.entry & 0x4, 0x4);
}

#[test]
fn no_cpuid_vmx_is_unsupported() {
    let err = VmxCaps::from_msrs(false, &full_featured()).unwrap_err();
    assert_eq!(err, ProbeError::NoVmx);
    assert!(err.is_unsupported());
}

#[test]
fn firmware_lock_and_outside_smx_are_both_required() {
    for fc in [0x0, 0x1, 0x4, 0x3] {
        let mut m = full_featured();
        m.feature_control = fc;
        let err = VmxCaps::from_msrs(true, &m).unwrap_err();
        assert_eq!(err, ProbeError::DisabledByFirmware(fc));
        assert!(err.is_unsupported());
    }
}

#[test]
fn vmcs_format_problems_are_refused() {
    let cases: [(u64, u64); 3] = [
        (0x2000u64 << 32, 0x1fff << 32), // bigger than a page
        (1 << 48, 0),                    // 32-bit addresses only
        (0, 0xf << 50),                  // uncacheable VMCS
    ];
    for (set, clear) in cases {
        let mut m = full_featured();
        m.basic = (m.basic & !clear) | set;
        assert!(matches!(
            VmxCaps::from_msrs(true, &m),
            Err(ProbeError::Basic(_))
        ));
    }
}

#[test]
fn missing_ept_or_unrestricted_guest_is_refused() {
    let mut m = full_featured();
    m.procbased2 = ctl(0, !proc2::UNRESTRICTED_GUEST);
    assert_eq!(
        VmxCaps::from_msrs(true, &m),
        Err(ProbeError::MissingControls(
            ControlField::Proc2,
            proc2::UNRESTRICTED_GUEST
        ))
    );
    // No secondary controls at all: the MSR does not exist and reads as 0.
    let mut m = full_featured();
    m.true_procbased = ctl(0x0400_6172, 0x7fff_fffe);
    assert_eq!(
        VmxCaps::from_msrs(true, &m),
        Err(ProbeError::MissingControls(
            ControlField::Proc,
            proc::ACTIVATE_SECONDARY
        ))
    );
}

#[test]
fn ept_capabilities_are_checked() {
    for (clear, what) in [
        (1u64 << 6, "no 4-level page walk"),
        (1u64 << 14, "no write-back paging-structure memory type"),
        (1u64 << 20, "no usable INVEPT type"),
        ((1u64 << 25) | (1 << 26), "no usable INVEPT type"),
    ] {
        let mut m = full_featured();
        m.ept_vpid &= !clear;
        assert_eq!(VmxCaps::from_msrs(true, &m), Err(ProbeError::Ept(what)));
    }
}

#[test]
fn vpid_is_dropped_without_invvpid() {
    let mut m = full_featured();
    m.ept_vpid &= !(1u64 << 32);
    let caps = VmxCaps::from_msrs(true, &m).unwrap();
    assert!(!caps.ept.vpid);
    assert_eq!(caps.proc2 & proc2::ENABLE_VPID, 0);
}

#[test]
fn host_cr_must_meet_fixed_bits() {
    let caps = VmxCaps::from_msrs(true, &full_featured()).unwrap();
    // A normal 64-bit host: PE, NE, PG, plus PAE/PGE/OSFXSR in CR4.
    let cr0 = 0x8005_0033;
    let cr4 = 0x0000_06a0;
    assert_eq!(caps.check_host_cr(cr0, cr4), Ok(()));
    // CR0.NE clear on the host.
    assert_eq!(
        caps.check_host_cr(cr0 & !0x20, cr4),
        Err(ProbeError::HostCr("CR0", 0x20))
    );
    // A CR4 bit VMX operation does not allow (bit 23 is outside fixed-1).
    assert_eq!(
        caps.check_host_cr(cr0, cr4 | (1 << 23)),
        Err(ProbeError::HostCr("CR4", 1 << 23))
    );
}

#[test]
fn errors_read_well() {
    assert_eq!(
        ProbeError::NoVmx.to_string(),
        "VMX not supported by the CPU (CPUID.1:ECX.VMX is 0)"
    );
    assert_eq!(
        ProbeError::MissingControls(ControlField::Proc2, 0x80).to_string(),
        "required secondary processor-based controls not supported: 0x00000080"
    );
}

/// The MSRs Bochs 2.7's `corei7_haswell_4770` model reports, as logged by the
/// probe in the lab (`rkvm: MSRs: ...` lines), and what rkvm made of them.
#[test]
fn bochs_haswell_decodes_as_in_the_lab() {
    let m = VmxMsrs {
        feature_control: 0x5,
        basic: 0xd8_1000_0000_002b,
        pinbased: 0x7f_0000_0016,
        true_pinbased: 0x7f_0000_0016,
        procbased: 0xf7f9_fffe_0401_e172,
        true_procbased: 0xf7f9_fffe_0400_6172,
        procbased2: 0x4_7fff_0000_0000,
        exit: 0x7f_ffff_0003_6dff,
        true_exit: 0x7f_ffff_0003_6dfb,
        entry: 0xffff_0000_11ff,
        true_entry: 0xffff_0000_11fb,
        misc: 0x2004_01e0,
        ept_vpid: 0xf01_0633_4141,
        cr0_fixed0: 0x8000_0021,
        cr0_fixed1: 0xffff_ffff,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x17_27ff,
    };
    let c = VmxCaps::from_msrs(true, &m).unwrap();
    assert_eq!(
        (c.revision_id, c.vmcs_size, c.true_controls),
        (0x2b, 4096, true)
    );
    assert_eq!(
        (c.pin, c.proc, c.proc2, c.exit, c.entry),
        (0x3f, 0x95d9_e3fe, 0xa2, 0x33_6ffb, 0x93fb)
    );
    assert_eq!(
        c.ept,
        EptCaps {
            page_2m: true,
            page_1g: true,
            ad_bits: true,
            invept_single: true,
            vpid: true
        }
    );
    assert!(c.ins_outs_info);
    assert_eq!(c.preemption_timer_rate, 0);
    // Unpaged runs: the default-1 bits plus exactly what rkvm asks for; no
    // CR3 or INVLPG exiting, no interrupt window, no MSR bitmaps, no VPID,
    // no IA-32e mode entry.
    let proc_default1 = 0x0400_6172;
    let u = c.unpaged;
    assert_eq!(
        u.pin,
        0x16 | pin::EXT_INTR_EXITING | pin::NMI_EXITING | pin::VIRTUAL_NMIS | pin::PREEMPTION_TIMER
    );
    assert_eq!(
        u.proc,
        proc_default1
            | proc::HLT_EXITING
            | proc::UNCOND_IO_EXITING
            | proc::ACTIVATE_SECONDARY
            | proc::TSC_OFFSETTING
            | proc::MOV_DR_EXITING
            | proc::CR8_LOAD_EXITING
            | proc::CR8_STORE_EXITING
            | proc::MWAIT_EXITING
            | proc::MONITOR_EXITING
    );
    assert_eq!(u.proc2, proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST);
    assert_eq!(
        u.entry,
        0x11fb | entry::LOAD_DEBUG_CONTROLS | entry::LOAD_EFER | entry::LOAD_PAT
    );
    assert_eq!(u.entry & entry::IA32E_MODE, 0);
    assert_eq!(u.exit, c.exit | exit::SAVE_PAT | exit::LOAD_PAT);
}
