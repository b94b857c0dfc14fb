// SPDX-License-Identifier: GPL-2.0

//! Load-time VMX probe: read CPUID and the VMX capability MSRs of every online
//! CPU, decode them with [`super::caps`], and refuse to load with a clear
//! message when VMX or a feature rkvm needs is missing, or when the CPUs
//! disagree. KVM does the same in `vmx_check_processor_compat()`.
//!
//! Nothing here enters VMX operation: the probe only reads MSRs, so it is safe
//! to run while another hypervisor owns VMX.

use kernel::{
    bindings,
    cpu,
    cpumask::Cpumask,
    prelude::*, //
};

use super::caps::{
    msr,
    ProbeError,
    VmxCaps,
    VmxMsrs, //
};

/// CPUID.1:ECX bit 5: VMX.
const CPUID_1_ECX_VMX: u32 = 1 << 5;

/// Whether the executing CPU advertises VMX in CPUID.
fn cpuid_has_vmx() -> bool {
    // SAFETY: CPUID exists on every x86-64 CPU and only writes the registers
    // the intrinsic declares.
    let leaf1 = unsafe { core::arch::x86_64::__cpuid(1) };
    leaf1.ecx & CPUID_1_ECX_VMX != 0
}

/// Reads an MSR on `cpu`, or 0 if the CPU does not implement it (the read
/// faults). [`VmxCaps::from_msrs`] treats a zero capability as "nothing
/// allowed", which is also what a missing optional MSR means.
fn read_msr(cpu: u32, index: u32) -> u64 {
    let mut value: u64 = 0;
    // SAFETY: `value` is a valid, writable u64 for the duration of the call;
    // the function uses the exception-table-safe RDMSR and runs it on `cpu`
    // through an IPI (or directly when `cpu` is the current CPU).
    let ret = unsafe { bindings::rdmsrq_safe_on_cpu(cpu, index, &mut value) };
    if ret == 0 {
        value
    } else {
        0
    }
}

/// Reads every MSR the decoder needs from `cpu`.
fn read_msrs(cpu: u32) -> VmxMsrs {
    VmxMsrs {
        feature_control: read_msr(cpu, msr::FEATURE_CONTROL),
        basic: read_msr(cpu, msr::BASIC),
        pinbased: read_msr(cpu, msr::PINBASED),
        procbased: read_msr(cpu, msr::PROCBASED),
        exit: read_msr(cpu, msr::EXIT),
        entry: read_msr(cpu, msr::ENTRY),
        misc: read_msr(cpu, msr::MISC),
        cr0_fixed0: read_msr(cpu, msr::CR0_FIXED0),
        cr0_fixed1: read_msr(cpu, msr::CR0_FIXED1),
        cr4_fixed0: read_msr(cpu, msr::CR4_FIXED0),
        cr4_fixed1: read_msr(cpu, msr::CR4_FIXED1),
        procbased2: read_msr(cpu, msr::PROCBASED2),
        ept_vpid: read_msr(cpu, msr::EPT_VPID_CAP),
        true_pinbased: read_msr(cpu, msr::TRUE_PINBASED),
        true_procbased: read_msr(cpu, msr::TRUE_PROCBASED),
        true_exit: read_msr(cpu, msr::TRUE_EXIT),
        true_entry: read_msr(cpu, msr::TRUE_ENTRY),
    }
}

/// The host's current CR0 and CR4.
fn host_cr0_cr4() -> (u64, u64) {
    let (cr0, cr4): (u64, u64);
    // SAFETY: reading CR0 and CR4 has no side effects; the module runs at
    // CPL 0.
    unsafe {
        core::arch::asm!(
            "mov {0}, cr0",
            "mov {1}, cr4",
            out(reg) cr0,
            out(reg) cr4,
            options(nomem, nostack, preserves_flags),
        );
    }
    (cr0, cr4)
}

/// Logs why the probe failed and converts the reason into the errno KVM
/// returns for the same situation.
fn refuse(err: ProbeError) -> Error {
    // `ProbeError` implements `core::fmt::Display` (the file is shared with the
    // host tests); `Arguments` bridges it to the kernel's `Display`.
    pr_err!("cannot load: {}\n", format_args!("{err}"));
    if err.is_unsupported() {
        EOPNOTSUPP
    } else {
        EIO
    }
}

/// Probes every online CPU. All must report identical VMX MSRs, which must
/// describe an implementation with everything rkvm needs.
pub(crate) fn probe_all_cpus() -> Result<VmxCaps> {
    if !cpuid_has_vmx() {
        return Err(refuse(ProbeError::NoVmx));
    }
    // CPU hotplug is not handled yet: a CPU that comes online later is not
    // checked (the VMX window will check it before using it).
    //
    // SAFETY: `__cpu_online_mask` is a valid static cpumask for the lifetime
    // of the kernel; it is only read here.
    let online = unsafe { Cpumask::from_raw(&raw const bindings::__cpu_online_mask) };
    let first = cpu::CpuId::current().as_u32();
    let reference = read_msrs(first);
    let caps = VmxCaps::from_msrs(true, &reference).map_err(refuse)?;
    let (cr0, cr4) = host_cr0_cr4();
    caps.check_host_cr(cr0, cr4).map_err(refuse)?;

    for id in 0..cpu::nr_cpu_ids() {
        let Some(cpu) = cpu::CpuId::from_u32(id) else {
            continue;
        };
        if id == first || !online.test(cpu) {
            continue;
        }
        if read_msrs(id) != reference {
            return Err(refuse(ProbeError::Asymmetric(id)));
        }
    }
    log_raw(&reference);
    Ok(caps)
}

/// The capabilities of the current CPU (all CPUs were checked identical at
/// load), for a new VM. Also checks that the host's XSAVE area fits the
/// page the VMX window saves guest FPU state into.
pub(crate) fn local_caps() -> Result<VmxCaps> {
    let cpu = cpu::CpuId::current().as_u32();
    let caps = VmxCaps::from_msrs(cpuid_has_vmx(), &read_msrs(cpu)).map_err(|_| EIO)?;
    // SAFETY: CPUID leaf 0xD exists wherever the kernel enabled XSAVE; on
    // other CPUs it returns zeros or the highest leaf, both harmless here.
    let xsave = unsafe { core::arch::x86_64::__cpuid_count(0xd, 0) };
    if xsave.ebx > 4096 {
        return Err(EIO);
    }
    Ok(caps)
}

/// Logs the raw MSR values (host tests use recorded ones as fixtures).
fn log_raw(m: &VmxMsrs) {
    pr_info!(
        "MSRs: fc {:#x} basic {:#x} pin {:#x}/{:#x} proc {:#x}/{:#x} proc2 {:#x} exit {:#x}/{:#x} entry {:#x}/{:#x}\n",
        m.feature_control,
        m.basic,
        m.pinbased,
        m.true_pinbased,
        m.procbased,
        m.true_procbased,
        m.procbased2,
        m.exit,
        m.true_exit,
        m.entry,
        m.true_entry
    );
    pr_info!(
        "MSRs: misc {:#x} ept_vpid {:#x} cr0 {:#x}/{:#x} cr4 {:#x}/{:#x}\n",
        m.misc,
        m.ept_vpid,
        m.cr0_fixed0,
        m.cr0_fixed1,
        m.cr4_fixed0,
        m.cr4_fixed1
    );
}

/// Logs the probed capabilities: one line a reader can compare across CPUs
/// and lab runs.
pub(crate) fn report(c: &VmxCaps) {
    pr_info!(
        "VMX revision {:#x}, VMCS {} bytes, {} controls: pin {:#x} proc {:#x} proc2 {:#x} exit {:#x} entry {:#x}\n",
        c.revision_id,
        c.vmcs_size,
        if c.true_controls { "true" } else { "legacy" },
        c.pin,
        c.proc,
        c.proc2,
        c.exit,
        c.entry
    );
    pr_info!(
        "EPT 2M {} 1G {} A/D {} INVEPT {}, VPID {}, INS/OUTS info {}, preemption timer rate {}\n",
        c.ept.page_2m,
        c.ept.page_1g,
        c.ept.ad_bits,
        if c.ept.invept_single { "single" } else { "all" },
        c.ept.vpid,
        c.ins_outs_info,
        c.preemption_timer_rate
    );
    pr_info!(
        "CR0 fixed {:#x}/{:#x}, CR4 fixed {:#x}/{:#x}\n",
        c.cr0_fixed0,
        c.cr0_fixed1,
        c.cr4_fixed0,
        c.cr4_fixed1
    );
}
