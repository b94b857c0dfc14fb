// SPDX-License-Identifier: GPL-2.0

//! Checks the Rust ABI structures (`rust/abi/structs.rs`) and the stats
//! file's field offsets (`rust/stats/layout.rs`) against
//! `selftests/abi_layout.h`, whose values the C compiler checks against the
//! kernel's `<linux/kvm.h>`: together, the Rust layout equals the C one.

use crate::structs::*;
use core::mem::{offset_of, size_of};

const TABLE: &str = include_str!("../../../selftests/abi_layout.h");

/// The Rust size of a C struct name.
fn size(s: &str) -> Option<usize> {
    Some(match s {
        "kvm_userspace_memory_region" => size_of::<KvmUserspaceMemoryRegion>(),
        "kvm_userspace_memory_region2" => size_of::<KvmUserspaceMemoryRegion2>(),
        "kvm_regs" => size_of::<KvmRegs>(),
        "kvm_segment" => size_of::<KvmSegment>(),
        "kvm_dtable" => size_of::<KvmDtable>(),
        "kvm_sregs" => size_of::<KvmSregs>(),
        "kvm_cpuid2" => size_of::<KvmCpuid2>(),
        "kvm_cpuid_entry2" => size_of::<KvmCpuidEntry2>(),
        "kvm_fpu" => size_of::<KvmFpu>(),
        "kvm_mp_state" => size_of::<u32>(),
        "kvm_debugregs" => size_of::<KvmDebugregs>(),
        "kvm_xcrs" => size_of::<KvmXcrs>(),
        "kvm_x86_mce" => size_of::<KvmX86Mce>(),
        "kvm_xsave" => XSAVE_SIZE,
        "kvm_ioeventfd" => size_of::<KvmIoeventfd>(),
        "kvm_clock_data" => size_of::<KvmClockData>(),
        "kvm_guest_debug" => size_of::<KvmGuestDebug>(),
        "kvm_msi" => size_of::<KvmMsi>(),
        "kvm_irqfd" => size_of::<KvmIrqfd>(),
        "kvm_device_attr" => size_of::<KvmDeviceAttr>(),
        "kvm_irq_routing" => size_of::<KvmIrqRouting>(),
        "kvm_irq_routing_entry" => size_of::<KvmIrqRoutingEntry>(),
        "kvm_lapic_state" => LAPIC_SIZE,
        "kvm_enable_cap" => size_of::<KvmEnableCap>(),
        "kvm_msr_filter_range" => size_of::<KvmMsrFilterRange>(),
        "kvm_msr_filter" => size_of::<KvmMsrFilter>(),
        "kvm_msrs" => size_of::<KvmMsrs>(),
        "kvm_msr_entry" => size_of::<KvmMsrEntry>(),
        "kvm_msr_list" => size_of::<u32>(),
        "kvm_vcpu_events" => size_of::<KvmVcpuEvents>(),
        // Written field by field by `stats_layout` (the C `name` is a
        // flexible array, not counted in the size).
        "kvm_stats_header" => crate::stats_layout::header::SIZE,
        "kvm_stats_desc" => crate::stats_layout::desc::NAME,
        _ => return None,
    })
}

/// The Rust offset of a C field (Rust renames `type` to `type_`).
fn offset(s: &str, f: &str) -> Option<usize> {
    macro_rules! fields {
        ($t:ty: $($c:literal => $r:ident),* $(,)?) => {
            match f { $($c => Some(offset_of!($t, $r)),)* _ => None }
        };
    }
    match s {
        "kvm_userspace_memory_region" => fields!(KvmUserspaceMemoryRegion:
            "slot" => slot, "flags" => flags, "guest_phys_addr" => guest_phys_addr,
            "memory_size" => memory_size, "userspace_addr" => userspace_addr),
        "kvm_userspace_memory_region2" => fields!(KvmUserspaceMemoryRegion2:
            "userspace_addr" => userspace_addr, "guest_memfd_offset" => guest_memfd_offset,
            "guest_memfd" => guest_memfd, "pad2" => pad2),
        "kvm_regs" => fields!(KvmRegs:
            "rax" => rax, "rdx" => rdx, "rsp" => rsp, "r8" => r8, "r15" => r15,
            "rip" => rip, "rflags" => rflags),
        "kvm_segment" => fields!(KvmSegment:
            "base" => base, "limit" => limit, "selector" => selector, "type" => type_,
            "present" => present, "dpl" => dpl, "db" => db, "s" => s, "l" => l, "g" => g,
            "avl" => avl, "unusable" => unusable),
        "kvm_dtable" => fields!(KvmDtable: "limit" => limit),
        "kvm_sregs" => fields!(KvmSregs:
            "cs" => cs, "ss" => ss, "tr" => tr, "ldt" => ldt, "gdt" => gdt, "idt" => idt,
            "cr0" => cr0, "cr2" => cr2, "cr3" => cr3, "cr4" => cr4, "cr8" => cr8,
            "efer" => efer, "apic_base" => apic_base, "interrupt_bitmap" => interrupt_bitmap),
        "kvm_cpuid2" => fields!(KvmCpuid2: "nent" => nent),
        "kvm_msrs" => (f == "entries").then_some(size_of::<KvmMsrs>()),
        "kvm_msr_entry" => fields!(KvmMsrEntry: "index" => index, "data" => data),
        "kvm_vcpu_events" => fields!(KvmVcpuEvents:
            "exception.error_code" => exception_error_code,
            "interrupt.shadow" => interrupt_shadow, "nmi.masked" => nmi_masked,
            "sipi_vector" => sipi_vector, "flags" => flags, "smi" => smi,
            "triple_fault" => triple_fault_pending,
            "exception_has_payload" => exception_has_payload,
            "exception_payload" => exception_payload),
        "kvm_fpu" => fields!(KvmFpu:
            "fcw" => fcw, "ftwx" => ftwx, "last_opcode" => last_opcode, "last_ip" => last_ip,
            "last_dp" => last_dp, "xmm" => xmm, "mxcsr" => mxcsr),
        "kvm_debugregs" => fields!(KvmDebugregs:
            "db" => db, "dr6" => dr6, "dr7" => dr7, "flags" => flags),
        "kvm_clock_data" => fields!(KvmClockData:
            "flags" => flags, "realtime" => realtime, "host_tsc" => host_tsc),
        "kvm_guest_debug" => fields!(KvmGuestDebug: "arch.debugreg" => debugreg),
        "kvm_msi" => fields!(KvmMsi: "devid" => devid),
        "kvm_device_attr" => fields!(KvmDeviceAttr:
            "group" => group, "attr" => attr, "addr" => addr),
        "kvm_irqfd" => fields!(KvmIrqfd:
            "gsi" => gsi, "flags" => flags, "resamplefd" => resamplefd, "pad" => pad),
        "kvm_irq_routing" => fields!(KvmIrqRouting: "flags" => flags),
        "kvm_irq_routing_entry" => fields!(KvmIrqRoutingEntry:
            "type" => kind, "u.msi.address_lo" => address_lo, "u.msi.data" => data),
        "kvm_msr_filter_range" => fields!(KvmMsrFilterRange:
            "nmsrs" => nmsrs, "base" => base, "bitmap" => bitmap),
        "kvm_msr_filter" => fields!(KvmMsrFilter: "ranges" => ranges),
        "kvm_enable_cap" => fields!(KvmEnableCap: "flags" => flags, "args" => args, "pad" => pad),
        "kvm_xcrs" => fields!(KvmXcrs: "flags" => flags, "xcrs" => xcrs, "padding" => padding),
        "kvm_x86_mce" => fields!(KvmX86Mce: "mcg_status" => mcg_status, "bank" => bank),
        "kvm_ioeventfd" => fields!(KvmIoeventfd:
            "datamatch" => datamatch, "addr" => addr, "len" => len, "fd" => fd,
            "flags" => flags),
        "kvm_cpuid_entry2" => fields!(KvmCpuidEntry2:
            "function" => function, "index" => index, "flags" => flags, "eax" => eax,
            "ebx" => ebx, "ecx" => ecx, "edx" => edx, "padding" => padding),
        "kvm_stats_header" => {
            use crate::stats_layout::header::*;
            match f {
                "flags" => Some(FLAGS),
                "name_size" => Some(NAME_SIZE),
                "num_desc" => Some(NUM_DESC),
                "id_offset" => Some(ID_OFFSET),
                "desc_offset" => Some(DESC_OFFSET),
                "data_offset" => Some(DATA_OFFSET),
                _ => None,
            }
        }
        "kvm_stats_desc" => {
            use crate::stats_layout::desc::*;
            match f {
                "flags" => Some(FLAGS),
                "exponent" => Some(EXPONENT),
                "size" => Some(SIZE),
                "offset" => Some(OFFSET),
                "bucket_size" => Some(BUCKET_SIZE),
                "name" => Some(NAME),
                _ => None,
            }
        }
        "kvm_run" => {
            use crate::structs::kvm_run::*;
            Some(match f {
                "request_interrupt_window" => REQUEST_INTERRUPT_WINDOW,
                "kvm_valid_regs" => VALID_REGS,
                "kvm_dirty_regs" => DIRTY_REGS,
                "s.regs.regs" => SYNC_REGS,
                "s.regs.sregs" => SYNC_SREGS,
                "s.regs.events" => SYNC_EVENTS,
                "immediate_exit" => IMMEDIATE_EXIT,
                "exit_reason" => EXIT_REASON,
                "ready_for_interrupt_injection" => READY_FOR_INTERRUPT_INJECTION,
                "if_flag" => IF_FLAG,
                "flags" => FLAGS,
                "cr8" => CR8,
                "apic_base" => APIC_BASE,
                "eoi.vector" => EOI_VECTOR,
                "io.direction" => IO_DIRECTION,
                "io.size" => IO_SIZE,
                "io.port" => IO_PORT,
                "io.count" => IO_COUNT,
                "io.data_offset" => IO_DATA_OFFSET,
                "mmio.phys_addr" => MMIO_PHYS_ADDR,
                "mmio.data" => MMIO_DATA,
                "mmio.len" => MMIO_LEN,
                "mmio.is_write" => MMIO_IS_WRITE,
                "fail_entry.hardware_entry_failure_reason" => FAIL_ENTRY_REASON,
                "fail_entry.cpu" => FAIL_ENTRY_CPU,
                "internal.suberror" => INTERNAL_SUBERROR,
                "internal.ndata" => INTERNAL_NDATA,
                "internal.data" => INTERNAL_DATA,
                "debug.arch.exception" => DEBUG_EXCEPTION,
                "debug.arch.pc" => DEBUG_PC,
                "debug.arch.dr6" => DEBUG_DR6,
                "debug.arch.dr7" => DEBUG_DR7,
                "msr.error" => MSR_ERROR,
                "msr.pad" => MSR_PAD,
                "msr.reason" => MSR_REASON,
                "msr.index" => MSR_INDEX,
                "msr.data" => MSR_DATA,
                _ => return None,
            })
        }
        _ => None,
    }
}

#[test]
fn rust_layout_matches_the_checked_table() {
    let mut checked = 0;
    for line in TABLE.lines() {
        let line = line.trim();
        let (kind, args) = match line.split_once('(') {
            Some((k @ ("SIZE" | "OFFSET"), rest)) => (k, rest.trim_end_matches(')')),
            _ => continue,
        };
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let want: usize = args.last().unwrap().parse().unwrap();
        let got = match (kind, args.as_slice()) {
            ("SIZE", [s, _]) => size(s),
            ("OFFSET", [s, f, _]) => offset(s, f),
            _ => panic!("malformed line: {line}"),
        };
        assert_eq!(got, Some(want), "{line}");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} entries checked");
}

#[test]
fn emulation_failure_bytes_follow_kvms_layout() {
    // flds (%rax): d9 00, as exit_on_emulation_failure_test reads it at
    // kvm_run offsets 48 (insn_size) and 49 (insn_bytes).
    let [flags, lo, hi] = kvm_run::emulation_failure_data(&[0xd9, 0x00]);
    assert_eq!(flags, kvm_run::EMULATION_FLAG_INSTRUCTION_BYTES);
    let mut b = lo.to_le_bytes().to_vec();
    b.extend_from_slice(&hi.to_le_bytes());
    assert_eq!(b[0], 2, "insn_size");
    assert_eq!(&b[1..3], &[0xd9, 0x00]);
    assert!(b[3..].iter().all(|&x| x == 0x90), "padded with NOPs");
    // At most 15 bytes.
    let [_, lo, _] = kvm_run::emulation_failure_data(&[1; 20]);
    assert_eq!(lo & 0xff, 15);
}
