// SPDX-License-Identifier: GPL-2.0

//! The local APIC of a VM with a split irqchip (`KVM_CAP_SPLIT_IRQCHIP`):
//! its 1 KiB register page, the rules of each register in xAPIC and
//! x2APIC mode, interrupt acceptance and priority (IRR, ISR, TMR, TPR,
//! PPR), EOI, the interrupt command register and the timer in one-shot and
//! periodic mode. The behaviour follows KVM's `arch/x86/kvm/lapic.c` and
//! the SDM (vol. 3A, chapter 11); the code is rkvm's own.
//!
//! Pure logic over `core`, shared with the host tests: time comes in as
//! nanoseconds, and what a register write asks of the rest of the VM (an
//! IPI to send, an EOI to report) comes out as an [`Effect`].
//!
//! # Invariants
//!
//! - `regs` is the register page in the hardware layout: the register at
//!   byte offset `o` is `regs[o / 4]` (offsets are multiples of 16).
//! - `regs[PPR]` is up to date after every change of TPR or ISR.
//! - `timer` is `Some` only while TMICT is not 0 and the timer has not
//!   expired in one-shot mode.

/// IA32_APIC_BASE bits: BSP (the bootstrap processor), EXTD (x2APIC
/// mode), ENABLE.
pub(crate) const BASE_BSP: u64 = 1 << 8;
pub(crate) const BASE_EXTD: u64 = 1 << 10;
pub(crate) const BASE_ENABLE: u64 = 1 << 11;
/// The first x2APIC MSR; register offset `o` is MSR `X2APIC_MSR + o / 16`.
pub(crate) const X2APIC_MSR: u32 = 0x800;
pub(crate) const X2APIC_MSR_LAST: u32 = 0x8ff;

/// Register offsets.
pub(crate) mod reg {
    pub(crate) const ID: u32 = 0x20;
    pub(crate) const VERSION: u32 = 0x30;
    pub(crate) const TPR: u32 = 0x80;
    pub(crate) const APR: u32 = 0x90;
    pub(crate) const PPR: u32 = 0xa0;
    pub(crate) const EOI: u32 = 0xb0;
    pub(crate) const LDR: u32 = 0xd0;
    pub(crate) const DFR: u32 = 0xe0;
    pub(crate) const SVR: u32 = 0xf0;
    pub(crate) const ISR: u32 = 0x100;
    pub(crate) const TMR: u32 = 0x180;
    pub(crate) const IRR: u32 = 0x200;
    pub(crate) const ESR: u32 = 0x280;
    pub(crate) const ICR: u32 = 0x300;
    pub(crate) const ICR2: u32 = 0x310;
    pub(crate) const LVT_TIMER: u32 = 0x320;
    pub(crate) const LVT_THERMAL: u32 = 0x330;
    pub(crate) const LVT_PMC: u32 = 0x340;
    pub(crate) const LVT_LINT0: u32 = 0x350;
    pub(crate) const LVT_LINT1: u32 = 0x360;
    pub(crate) const LVT_ERROR: u32 = 0x370;
    pub(crate) const TMICT: u32 = 0x380;
    pub(crate) const TMCCT: u32 = 0x390;
    pub(crate) const TDCR: u32 = 0x3e0;
    pub(crate) const SELF_IPI: u32 = 0x3f0;
}

/// Size of the register page `KVM_GET_LAPIC`/`KVM_SET_LAPIC` move.
pub(crate) const REGS_SIZE: usize = 1024;

/// Version register: an integrated APIC (0x14) with 6 LVT entries (timer,
/// thermal, performance counter, LINT0, LINT1, error: no CMCI, as KVM
/// without MCG_CMCI_P).
const VERSION: u32 = 0x14 | (6 - 1) << 16;
/// Version bit 24: EOI-broadcast suppression can be enabled (SVR bit 12).
/// KVM with a split irqchip advertises it to x2APIC guests but still
/// reports every EOI of a level-triggered vector to user space (its
/// default "quirked" mode); so does rkvm.
const VERSION_DIRECTED_EOI: u32 = 1 << 24;
const SVR_ENABLE: u32 = 1 << 8;
const SVR_DIRECTED_EOI: u32 = 1 << 12;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
/// Vector, delivery status and mask: what every LVT keeps.
const LVT_BASE_MASK: u32 = 0xff | 1 << 12 | LVT_MASKED;
/// Plus the delivery mode.
const LVT_MODE_MASK: u32 = LVT_BASE_MASK | 7 << 8;
/// LINT0/1 also keep polarity, remote IRR and trigger mode.
const LVT_LINT_MASK: u32 = LVT_MODE_MASK | 1 << 13 | 1 << 14 | 1 << 15;
/// The LVTs in order, with what a write keeps.
const LVTS: [(u32, u32); 6] = [
    (reg::LVT_TIMER, LVT_BASE_MASK | LVT_PERIODIC),
    (reg::LVT_THERMAL, LVT_MODE_MASK),
    (reg::LVT_PMC, LVT_MODE_MASK),
    (reg::LVT_LINT0, LVT_LINT_MASK),
    (reg::LVT_LINT1, LVT_LINT_MASK),
    (reg::LVT_ERROR, LVT_BASE_MASK),
];
/// The shortest period of the periodic timer (KVM's default
/// `min_timer_period_us`, 200 us): faster guests are slowed to it.
const MIN_PERIOD_NS: u64 = 200_000;
/// Nanoseconds per APIC bus cycle (KVM's default, 1 GHz).
const BUS_CYCLE_NS: u64 = 1;

/// ICR fields.
pub(crate) mod icr {
    pub(crate) const VECTOR: u64 = 0xff;
    pub(crate) const MODE_SHIFT: u32 = 8;
    pub(crate) const LOGICAL: u64 = 1 << 11;
    pub(crate) const BUSY: u64 = 1 << 12;
    pub(crate) const LEVEL_ASSERT: u64 = 1 << 14;
    pub(crate) const TRIGGER_LEVEL: u64 = 1 << 15;
    pub(crate) const SHORTHAND_SHIFT: u32 = 18;
}

/// Delivery modes (ICR, LVT and MSI data bits 10:8). SMI (2) and ExtINT
/// messages are not supported: they are dropped.
pub(crate) mod mode {
    pub(crate) const FIXED: u32 = 0;
    pub(crate) const LOWEST: u32 = 1;
    pub(crate) const NMI: u32 = 4;
    pub(crate) const INIT: u32 = 5;
    pub(crate) const SIPI: u32 = 6;
    pub(crate) const EXTINT: u32 = 7;
    /// Not a hardware encoding: an INIT "level de-assert" ICR write
    /// (level-triggered, level bit clear), which only old APICs acted on;
    /// KVM ignores it, so does rkvm.
    pub(crate) const INIT_DEASSERT: u32 = 8;
}

/// Who an interrupt message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dest {
    /// The sender only (ICR shorthand 01).
    SelfOnly,
    /// Every APIC (shorthand 10).
    All,
    /// Every APIC but the sender (shorthand 11).
    AllButSelf,
    /// APICs matching `id` physically or, with `logical`, through their
    /// LDR and DFR.
    Id { id: u32, logical: bool },
}

/// An interrupt message: from the ICR or from an MSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) vector: u8,
    pub(crate) mode: u32,
    pub(crate) level: bool,
    pub(crate) dest: Dest,
}

/// What a register write asks of the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// Send this interrupt (an ICR or SELF_IPI write).
    Ipi(Message),
    /// The guest ended the handling of `vector`, which user space's I/O
    /// APIC may need to hear about (KVM decides by the routes, not TMR).
    Eoi {
        vector: u8,
    },
}

/// Why an access failed: in x2APIC mode the guest gets #GP; an xAPIC MMIO
/// access is then ignored (write) or reads 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

/// APIC mode, from IA32_APIC_BASE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApicMode {
    Disabled,
    XApic,
    X2Apic,
}

/// The mode IA32_APIC_BASE value `base` selects.
pub(crate) fn mode_of(base: u64) -> ApicMode {
    match (base & BASE_ENABLE != 0, base & BASE_EXTD != 0) {
        (false, _) => ApicMode::Disabled,
        (true, false) => ApicMode::XApic,
        (true, true) => ApicMode::X2Apic,
    }
}

/// Whether the guest may move the APIC from `old` to `new` IA32_APIC_BASE
/// (SDM 11.12.5, KVM's `kvm_apic_set_base()` checks): no EXTD without
/// EN, no x2APIC without CPUID support, and x2APIC can only be left by
/// disabling the APIC.
pub(crate) fn base_change_valid(old: u64, new: u64, x2apic_cpuid: bool) -> bool {
    let (from, to) = (mode_of(old), mode_of(new));
    if new & BASE_EXTD != 0 && (new & BASE_ENABLE == 0 || !x2apic_cpuid) {
        return false;
    }
    !matches!(
        (from, to),
        (ApicMode::X2Apic, ApicMode::XApic) | (ApicMode::Disabled, ApicMode::X2Apic)
    )
}

/// The running timer: when it next fires (host ns) and, in periodic mode,
/// its period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    deadline: u64,
    period: u64,
}

/// One vCPU's local APIC (see the module's invariants).
pub(crate) struct Lapic {
    regs: [u32; REGS_SIZE / 4],
    /// The vCPU id: the x2APIC id, and the reset xAPIC id.
    vcpu_id: u32,
    /// The vCPU is the VM's boot CPU (`KVM_SET_BOOT_CPU_ID`, vCPU 0 by
    /// default): the BSP bit of its reset IA32_APIC_BASE.
    bsp: bool,
    mode: ApicMode,
    timer: Option<Timer>,
    /// The LVT timer mode bits a write keeps: none before the guest has a
    /// CPUID, then periodic (no TSC-deadline mode).
    timer_modes: u32,
}

fn idx(offset: u32) -> usize {
    (offset / 4) as usize
}

fn bit_of(v: u8) -> (usize, u32) {
    ((v / 32) as usize * 4, 1 << (v % 32))
}

impl Lapic {
    /// The APIC of vCPU `vcpu_id` after RESET (KVM's `kvm_lapic_reset()`),
    /// in the mode IA32_APIC_BASE `base` gives.
    pub(crate) fn new(vcpu_id: u32, base: u64) -> Self {
        let mut a = Lapic {
            regs: [0; REGS_SIZE / 4],
            vcpu_id,
            bsp: base & BASE_BSP != 0,
            mode: mode_of(base),
            timer: None,
            timer_modes: 0,
        };
        a.reset(false);
        a
    }

    /// RESET, or INIT (`init`), of the registers (KVM's
    /// `kvm_lapic_reset()`): INIT keeps the xAPIC ID; both keep the
    /// version. The reset BSP gets LINT0 unmasked in ExtINT mode (KVM's
    /// default KVM_X86_QUIRK_LINT0_REENABLED), so a PIC can reach it.
    pub(crate) fn reset(&mut self, init: bool) {
        let id = if init {
            self.get(reg::ID)
        } else {
            self.vcpu_id << 24
        };
        let version = match self.get(reg::VERSION) {
            0 => VERSION,
            v => v,
        };
        self.regs = [0; REGS_SIZE / 4];
        self.timer = None;
        self.regs[idx(reg::ID)] = id;
        self.regs[idx(reg::VERSION)] = version;
        self.regs[idx(reg::DFR)] = 0xffff_ffff;
        self.regs[idx(reg::SVR)] = 0xff;
        for (r, _) in LVTS {
            self.regs[idx(r)] = LVT_MASKED;
        }
        if self.bsp {
            self.regs[idx(reg::LVT_LINT0)] = mode::EXTINT << 8;
        }
        if self.mode == ApicMode::X2Apic {
            self.regs[idx(reg::LDR)] = self.x2apic_ldr();
        }
    }

    /// The guest got a CPUID (`KVM_SET_CPUID2`): the version register
    /// says whether EOI broadcasts can be suppressed (with x2APIC, as
    /// KVM), and the timer's periodic mode becomes writable. Until then
    /// KVM's timer mode mask is 0 and a write to the LVT timer keeps no
    /// mode bit; rkvm does the same.
    pub(crate) fn set_cpuid(&mut self, x2apic: bool) {
        let v = &mut self.regs[idx(reg::VERSION)];
        *v = VERSION | if x2apic { VERSION_DIRECTED_EOI } else { 0 };
        self.timer_modes = LVT_PERIODIC;
    }

    /// IA32_APIC_BASE changed (already checked with
    /// [`base_change_valid`]). Entering x2APIC mode sets the LDR from the
    /// x2APIC id; disabling the APIC resets it.
    pub(crate) fn set_base(&mut self, base: u64) {
        let new = mode_of(base);
        if new == self.mode {
            return;
        }
        self.mode = new;
        match new {
            ApicMode::Disabled => self.reset(false),
            // The x2APIC id is the vCPU id (read-only); back in xAPIC mode
            // (only user space may go straight there) the ID is the vCPU
            // id again, as KVM's `kvm_apic_set_base()` does.
            ApicMode::X2Apic => {
                self.regs[idx(reg::ID)] = self.vcpu_id << 24;
                self.regs[idx(reg::LDR)] = self.x2apic_ldr();
            }
            ApicMode::XApic => {
                self.regs[idx(reg::ID)] = self.vcpu_id << 24;
            }
        }
    }

    pub(crate) fn mode(&self) -> ApicMode {
        self.mode
    }

    fn x2apic_ldr(&self) -> u32 {
        ((self.vcpu_id >> 4) << 16) | (1 << (self.vcpu_id & 0xf))
    }

    fn get(&self, offset: u32) -> u32 {
        self.regs[idx(offset)]
    }

    fn set(&mut self, offset: u32, v: u32) {
        self.regs[idx(offset)] = v;
    }

    fn assign(&mut self, base: u32, v: u8, on: bool) {
        let (i, m) = bit_of(v);
        let w = &mut self.regs[idx(base) + i];
        if on {
            *w |= m;
        } else {
            *w &= !m;
        }
    }

    /// The highest vector set in the 256-bit register at `base`.
    fn highest(&self, base: u32) -> Option<u8> {
        (0..8).rev().find_map(|i| {
            let w = self.regs[idx(base) + i * 4];
            (w != 0).then(|| (i as u32 * 32 + 31 - w.leading_zeros()) as u8)
        })
    }

    /// Hardware- and software-enabled.
    pub(crate) fn enabled(&self) -> bool {
        self.mode != ApicMode::Disabled && self.get(reg::SVR) & SVR_ENABLE != 0
    }

    fn update_ppr(&mut self) {
        let tpr = self.get(reg::TPR);
        let isr = u32::from(self.highest(reg::ISR).unwrap_or(0));
        let ppr = if tpr & 0xf0 >= isr & 0xf0 {
            tpr & 0xff
        } else {
            isr & 0xf0
        };
        self.set(reg::PPR, ppr);
    }

    /// The APIC id as destinations see it: the x2APIC id, or the xAPIC
    /// ID register's top byte.
    pub(crate) fn id(&self) -> u32 {
        match self.mode {
            ApicMode::X2Apic => self.vcpu_id,
            _ => self.get(reg::ID) >> 24,
        }
    }

    /// KVM's x2APIC broadcast quirk (on unless user space disables it
    /// with `KVM_CAP_X2APIC_API`): an MSI, whose destination id has only 8
    /// bits, sent to 0xff is a broadcast for an APIC in x2APIC mode too.
    pub(crate) fn msi_dest(&self, dest: Dest) -> Dest {
        match dest {
            Dest::Id { id: 0xff, logical } if self.mode == ApicMode::X2Apic => Dest::Id {
                id: u32::MAX,
                logical,
            },
            d => d,
        }
    }

    /// Whether a message for `dest` reaches this APIC (`is_self`: this APIC
    /// sent it). Broadcast is id 0xff in xAPIC and 0xffffffff in x2APIC.
    pub(crate) fn matches(&self, dest: Dest, is_self: bool) -> bool {
        if self.mode == ApicMode::Disabled {
            return false;
        }
        match dest {
            Dest::SelfOnly => is_self,
            Dest::All => true,
            Dest::AllButSelf => !is_self,
            Dest::Id { id, logical } => {
                let x2 = self.mode == ApicMode::X2Apic;
                let broadcast = if x2 { u32::MAX } else { 0xff };
                if id == broadcast {
                    return true;
                }
                if !logical {
                    return id == self.id();
                }
                let ldr = self.get(reg::LDR);
                if x2 {
                    ldr >> 16 == id >> 16 && ldr & id & 0xffff != 0
                } else if self.get(reg::DFR) >> 28 == 0xf {
                    // Flat model: a bit per APIC.
                    (ldr >> 24) & id & 0xff != 0
                } else {
                    // Cluster model: cluster in the high nibble.
                    let l = ldr >> 24;
                    l >> 4 == (id & 0xff) >> 4 && l & id & 0xf != 0
                }
            }
        }
    }

    /// Accepts a fixed (or lowest-priority) interrupt: IRR set, TMR as the
    /// trigger mode says. Dropped while the APIC is disabled and for the
    /// reserved vectors 0-15 (KVM's `__apic_accept_irq()`). Returns
    /// whether it was accepted.
    pub(crate) fn accept(&mut self, vector: u8, level: bool) -> bool {
        if !self.enabled() || vector < 16 {
            return false;
        }
        self.assign(reg::TMR, vector, level);
        self.assign(reg::IRR, vector, true);
        true
    }

    /// The vector the guest should take next, if any: the highest in IRR
    /// whose priority class is above PPR's.
    pub(crate) fn pending(&self) -> Option<u8> {
        let v = self.highest(reg::IRR)?;
        (u32::from(v) & 0xf0 > self.get(reg::PPR) & 0xf0).then_some(v)
    }

    /// The guest takes `pending()`: IRR to ISR.
    pub(crate) fn take(&mut self) -> Option<u8> {
        let v = self.pending()?;
        self.assign(reg::IRR, v, false);
        self.assign(reg::ISR, v, true);
        self.update_ppr();
        Some(v)
    }

    /// EOI: the highest ISR vector is done.
    fn eoi(&mut self) -> Effect {
        let Some(v) = self.highest(reg::ISR) else {
            return Effect::None;
        };
        self.assign(reg::ISR, v, false);
        self.update_ppr();
        Effect::Eoi { vector: v }
    }

    /// TPR as CR8 sees it (bits 7:4).
    pub(crate) fn cr8(&self) -> u64 {
        u64::from(self.get(reg::TPR) >> 4)
    }

    pub(crate) fn set_cr8(&mut self, cr8: u64) {
        self.set(reg::TPR, ((cr8 & 0xf) << 4) as u32);
        self.update_ppr();
    }

    fn divisor(&self) -> u64 {
        let d = self.get(reg::TDCR);
        let n = ((d & 3) | ((d & 8) >> 1)) + 1;
        1 << (n & 7)
    }

    fn count_ns(&self, count: u32) -> u64 {
        u64::from(count) * self.divisor() * BUS_CYCLE_NS
    }

    /// The timer period TMICT and TDCR give (the periodic minimum applied).
    fn period(&self) -> u64 {
        let period = self.count_ns(self.get(reg::TMICT));
        if self.get(reg::LVT_TIMER) & LVT_PERIODIC != 0 && period != 0 {
            period.max(MIN_PERIOD_NS)
        } else {
            period
        }
    }

    /// (Re)starts the timer from TMICT: the first expiry a period away,
    /// or `first` bus counts away (TMCCT, on `KVM_SET_LAPIC`).
    fn start_timer(&mut self, now: u64, first: Option<u32>) {
        let period = self.period();
        if period == 0 {
            self.timer = None;
            return;
        }
        let first = match first.map(|c| self.count_ns(c)) {
            None | Some(0) => period,
            Some(f) => f.min(period),
        };
        self.timer = Some(Timer {
            deadline: now.saturating_add(first),
            period,
        });
    }

    /// When the timer next fires, if it runs.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.timer.map(|t| t.deadline)
    }

    /// Fires the timer if it is due at `now`: the LVT's vector is accepted
    /// unless masked; a periodic timer re-arms. Returns whether it fired.
    pub(crate) fn poll_timer(&mut self, now: u64) -> bool {
        let Some(t) = self.timer else {
            return false;
        };
        if now < t.deadline {
            return false;
        }
        let lvt = self.get(reg::LVT_TIMER);
        self.timer = if lvt & LVT_PERIODIC != 0 {
            // A late vCPU takes one interrupt, not every missed one: the
            // next period starts now.
            let mut next = t.deadline.saturating_add(t.period);
            if next <= now {
                next = now.saturating_add(t.period);
            }
            Some(Timer {
                deadline: next,
                period: t.period,
            })
        } else {
            None
        };
        if lvt & LVT_MASKED == 0 {
            self.accept((lvt & 0xff) as u8, false);
        }
        true
    }

    fn tmcct(&self, now: u64) -> u32 {
        match self.timer {
            Some(t) if t.deadline > now => {
                let per = self.divisor() * BUS_CYCLE_NS;
                ((t.deadline - now) / per).min(u64::from(u32::MAX)) as u32
            }
            _ => 0,
        }
    }

    /// Whether `offset` names a readable register in the current mode
    /// (KVM's readable-register mask).
    fn readable(&self, offset: u32) -> bool {
        let x2 = self.mode == ApicMode::X2Apic;
        match offset {
            reg::ID
            | reg::VERSION
            | reg::TPR
            | reg::PPR
            | reg::LDR
            | reg::SVR
            | reg::ESR
            | reg::ICR
            | reg::LVT_TIMER
            | reg::LVT_THERMAL
            | reg::LVT_PMC
            | reg::LVT_LINT0
            | reg::LVT_LINT1
            | reg::LVT_ERROR
            | reg::TMICT
            | reg::TMCCT
            | reg::TDCR => true,
            0x100..=0x270 => offset & 0xf == 0,
            reg::APR | reg::DFR | reg::ICR2 => !x2,
            _ => false,
        }
    }

    /// Reads the 32-bit register at `offset` (16-byte aligned).
    pub(crate) fn read(&self, offset: u32, now: u64) -> Result<u32, Invalid> {
        if offset & 0xf != 0 || offset > reg::SELF_IPI || !self.readable(offset) {
            return Err(Invalid);
        }
        Ok(match offset {
            reg::TMCCT => self.tmcct(now),
            reg::APR => 0,
            reg::ID if self.mode == ApicMode::X2Apic => self.vcpu_id,
            _ => self.get(offset),
        })
    }

    /// An xAPIC MMIO read of `len` bytes at `offset` within the page (KVM:
    /// a register's bytes within its first 4; anything else reads 0).
    pub(crate) fn mmio_read(&self, offset: u32, len: u32, now: u64) -> u64 {
        let align = offset & 0xf;
        if align + len > 4 {
            return 0;
        }
        let Ok(v) = self.read(offset & !0xf, now) else {
            return 0;
        };
        u64::from(v >> (8 * align)) & ((1u64 << (8 * len)) - 1)
    }

    /// An x2APIC RDMSR (`index` in `X2APIC_MSR..=X2APIC_MSR_LAST`): ICR is
    /// 64 bits; `Err` is #GP.
    pub(crate) fn msr_read(&self, index: u32, now: u64) -> Result<u64, Invalid> {
        if self.mode != ApicMode::X2Apic {
            return Err(Invalid);
        }
        let offset = (index - X2APIC_MSR) << 4;
        if offset == reg::ICR {
            return Ok(u64::from(self.get(reg::ICR2)) << 32 | u64::from(self.get(reg::ICR)));
        }
        self.read(offset, now).map(u64::from)
    }

    /// An x2APIC WRMSR; `Err` is #GP.
    pub(crate) fn msr_write(&mut self, index: u32, v: u64, now: u64) -> Result<Effect, Invalid> {
        if self.mode != ApicMode::X2Apic {
            return Err(Invalid);
        }
        let offset = (index - X2APIC_MSR) << 4;
        if offset == reg::ICR {
            // Bits 31:20 and 17:16 of the low half, and 13, are reserved
            // in x2APIC mode (KVM's `APIC_ICR_RESERVED_BITS`).
            if v & 0xfff3_2000 != 0 {
                return Err(Invalid);
            }
            let v = v & !icr::BUSY;
            self.set(reg::ICR, v as u32);
            self.set(reg::ICR2, (v >> 32) as u32);
            return Ok(Effect::Ipi(self.icr_message(v)));
        }
        if v >> 32 != 0 {
            return Err(Invalid);
        }
        self.write(offset, v as u32, now)
    }

    /// The message an ICR value sends.
    fn icr_message(&self, v: u64) -> Message {
        let dest = match (v >> icr::SHORTHAND_SHIFT) & 3 {
            1 => Dest::SelfOnly,
            2 => Dest::All,
            3 => Dest::AllButSelf,
            _ => Dest::Id {
                id: if self.mode == ApicMode::X2Apic {
                    (v >> 32) as u32
                } else {
                    (v >> 56) as u32
                },
                logical: v & icr::LOGICAL != 0,
            },
        };
        let level = v & icr::TRIGGER_LEVEL != 0;
        let mut mode = ((v >> icr::MODE_SHIFT) & 7) as u32;
        if mode == mode::INIT && level && v & icr::LEVEL_ASSERT == 0 {
            mode = mode::INIT_DEASSERT;
        }
        Message {
            vector: (v & icr::VECTOR) as u8,
            mode,
            level,
            dest,
        }
    }

    /// Writes the 32-bit register at `offset` (KVM's
    /// `kvm_lapic_reg_write()` rules). `Err` for a register that cannot
    /// be written in this mode (#GP in x2APIC mode; an xAPIC MMIO write
    /// is then dropped).
    pub(crate) fn write(&mut self, offset: u32, v: u32, now: u64) -> Result<Effect, Invalid> {
        let x2 = self.mode == ApicMode::X2Apic;
        let sw_enabled = self.get(reg::SVR) & SVR_ENABLE != 0;
        match offset {
            reg::ID if !x2 => self.set(reg::ID, v & 0xff00_0000),
            reg::TPR => {
                self.set(reg::TPR, v & 0xff);
                self.update_ppr();
            }
            reg::EOI => {
                if x2 && v != 0 {
                    return Err(Invalid);
                }
                return Ok(self.eoi());
            }
            reg::LDR if !x2 => self.set(reg::LDR, v & 0xff00_0000),
            reg::DFR if !x2 => self.set(reg::DFR, v | 0x0fff_ffff),
            reg::SVR => {
                let mut mask = 0x3ff;
                if self.get(reg::VERSION) & VERSION_DIRECTED_EOI != 0 {
                    mask |= SVR_DIRECTED_EOI;
                }
                self.set(reg::SVR, v & mask);
                if v & SVR_ENABLE == 0 {
                    for (r, _) in LVTS {
                        self.regs[idx(r)] |= LVT_MASKED;
                    }
                }
            }
            reg::ICR if !x2 => {
                let v = v & !(icr::BUSY as u32);
                self.set(reg::ICR, v);
                let full = u64::from(self.get(reg::ICR2)) << 32 | u64::from(v);
                return Ok(Effect::Ipi(self.icr_message(full)));
            }
            reg::ICR2 if !x2 => self.set(reg::ICR2, v & 0xff00_0000),
            reg::LVT_THERMAL | reg::LVT_PMC | reg::LVT_LINT0 | reg::LVT_LINT1 | reg::LVT_ERROR => {
                let keep = LVTS.iter().find(|(r, _)| *r == offset).map_or(0, |l| l.1);
                let v = if sw_enabled { v } else { v | LVT_MASKED };
                self.set(offset, v & keep);
            }
            reg::LVT_TIMER => {
                let v = if sw_enabled { v } else { v | LVT_MASKED };
                self.set(reg::LVT_TIMER, v & (LVT_BASE_MASK | self.timer_modes));
            }
            reg::TMICT => {
                self.set(reg::TMICT, v);
                self.start_timer(now, None);
            }
            reg::TDCR => {
                // The running period takes the new divisor from its next
                // expiry on.
                self.set(reg::TDCR, v & 0xb);
                let period = self.period();
                if let Some(t) = self.timer.as_mut() {
                    t.period = period;
                }
            }
            reg::ESR => {
                if x2 && v != 0 {
                    return Err(Invalid);
                }
            }
            reg::SELF_IPI if x2 => {
                if v & !0xff != 0 {
                    return Err(Invalid);
                }
                return Ok(Effect::Ipi(Message {
                    vector: v as u8,
                    mode: mode::FIXED,
                    level: false,
                    dest: Dest::SelfOnly,
                }));
            }
            _ => return Err(Invalid),
        }
        Ok(Effect::None)
    }

    /// An xAPIC MMIO write: only aligned 32-bit writes count (KVM drops
    /// the rest).
    pub(crate) fn mmio_write(&mut self, offset: u32, len: u32, v: u64, now: u64) -> Effect {
        if len != 4 || offset & 0xf != 0 {
            return Effect::None;
        }
        self.write(offset, v as u32, now).unwrap_or(Effect::None)
    }

    /// `KVM_GET_LAPIC`: the register page with TMCCT as it reads now. In
    /// x2APIC mode the ID is the x2APIC id, in bits 31:24 unless user
    /// space asked for 32-bit ids (`x2apic_format`, KVM_CAP_X2APIC_API).
    pub(crate) fn get_state(&self, now: u64, x2apic_format: bool, out: &mut [u8; REGS_SIZE]) {
        for (i, w) in self.regs.iter().enumerate() {
            let v = if i == idx(reg::TMCCT) {
                self.tmcct(now)
            } else if i == idx(reg::ID) && self.mode == ApicMode::X2Apic && x2apic_format {
                self.vcpu_id
            } else {
                *w
            };
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// `KVM_SET_LAPIC`: the page as given, then what KVM recomputes: the
    /// version, PPR, the x2APIC LDR, and the timer restarted from TMCCT.
    /// In x2APIC mode the ID is read-only: ignored, or with 32-bit ids
    /// (`x2apic_format`) refused unless it is the x2APIC id (KVM's
    /// `kvm_apic_state_fixup()`); nothing changes then.
    pub(crate) fn set_state(
        &mut self,
        page: &[u8; REGS_SIZE],
        now: u64,
        x2apic_format: bool,
    ) -> Result<(), Invalid> {
        let x2 = self.mode == ApicMode::X2Apic;
        let given_id = u32::from_le_bytes([page[0x20], page[0x21], page[0x22], page[0x23]]);
        if x2 && x2apic_format && given_id != self.vcpu_id {
            return Err(Invalid);
        }
        let id = self.get(reg::ID);
        let version = self.get(reg::VERSION);
        for (i, w) in self.regs.iter_mut().enumerate() {
            let mut b = [0u8; 4];
            b.copy_from_slice(&page[i * 4..i * 4 + 4]);
            *w = u32::from_le_bytes(b);
        }
        self.set(reg::VERSION, version);
        if x2 {
            self.set(reg::ID, id);
            self.set(reg::LDR, self.x2apic_ldr());
        }
        self.update_ppr();
        let tmcct = self.get(reg::TMCCT);
        self.set(reg::TMCCT, 0);
        self.start_timer(now, Some(tmcct));
        Ok(())
    }
}

/// An MSI (`KVM_SIGNAL_MSI`, an MSI route) as an interrupt message: the
/// destination id in address bits 19:12 (KVM's extended destination id
/// is not supported), logical with address bit 2; vector, delivery mode and trigger mode in the data.
pub(crate) fn msi_message(address: u64, data: u32) -> Message {
    Message {
        vector: (data & 0xff) as u8,
        mode: (data >> 8) & 7,
        level: data & (1 << 15) != 0,
        dest: Dest::Id {
            id: ((address >> 12) & 0xff) as u32,
            logical: address & (1 << 2) != 0,
        },
    }
}
