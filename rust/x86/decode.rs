// SPDX-License-Identifier: GPL-2.0

//! Decoder for the instructions a guest uses to access MMIO.
//!
//! When a guest touches a guest-physical address no memory slot backs, the
//! hardware reports the address but not the access: the instruction at the
//! guest's RIP says how wide it is, whether it reads or writes, and which
//! register or immediate is involved. This decoder covers the `MOV` forms
//! compilers emit for device registers (`MOV r/m,r`, `MOV r,r/m`,
//! `MOV r/m,imm`, `MOV` with a direct offset, `MOVZX`, `MOVSX`) in 16-, 32-
//! and 64-bit code; anything else is reported as unsupported, which becomes
//! an emulation-failure exit to user space, as in KVM.
//!
//! Pure logic over `core`, shared with the host tests, which compare it with
//! an independent decoder on random instructions. Encoding reference: Intel
//! SDM Vol. 2, chapter 2 (instruction format) and the MOV/MOVZX/MOVSX pages.

/// The code size the guest runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Real mode, or a 16-bit code segment (CS.D = 0).
    Bits16,
    /// A 32-bit code segment (CS.D = 1).
    Bits32,
    /// 64-bit mode (CS.L = 1 in IA-32e mode).
    Bits64,
}

/// How a loaded value fills the destination register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extend {
    /// `MOV`: the value has the destination's size.
    None,
    /// `MOVZX`.
    Zero,
    /// `MOVSX`.
    Sign,
}

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reg {
    /// Register number (0 = RAX ... 15 = R15).
    pub(crate) num: u8,
    /// Bits 15:8 of registers 0-3 (AH, CH, DH, BH).
    pub(crate) high_byte: bool,
    /// Operand size in bytes.
    pub(crate) size: u8,
}

/// What the instruction does with the MMIO location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads the location into `dst`.
    Load {
        /// Destination register.
        dst: Reg,
        /// How the value is extended into `dst`.
        extend: Extend,
    },
    /// Writes a register to the location.
    StoreReg(Reg),
    /// Writes an immediate (already sign-extended to the access size).
    StoreImm(u64),
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Instruction length in bytes (what RIP advances by).
    pub(crate) len: u8,
    /// Width of the memory access in bytes (1, 2, 4 or 8).
    pub(crate) size: u8,
    /// The access.
    pub(crate) access: Access,
}

/// Why an instruction could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// Not one of the supported forms (or no memory operand).
    Unsupported,
    /// The bytes end before the instruction does.
    Truncated,
}

/// The longest x86 instruction.
pub(crate) const MAX_LEN: usize = 15;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.bytes.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// A little-endian immediate of `n` bytes, sign-extended to 64 bits.
    fn imm_signed(&mut self, n: usize) -> Result<u64, Error> {
        let mut v: u64 = 0;
        for i in 0..n {
            v |= u64::from(self.byte()?) << (8 * i);
        }
        let shift = 64 - 8 * n as u32;
        Ok((((v << shift) as i64) >> shift) as u64)
    }

    fn skip(&mut self, n: usize) -> Result<(), Error> {
        if self.pos + n > self.bytes.len() {
            return Err(Error::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

/// Prefix state.
#[derive(Default)]
struct Prefixes {
    opsize: bool,
    addrsize: bool,
    /// A REX prefix is present (even 0x40, whose W/R/X/B bits are all 0).
    has_rex: bool,
    /// Its low four bits.
    rex: u8,
}

impl Prefixes {
    fn rex_w(&self) -> bool {
        self.rex & 8 != 0
    }
    fn rex_r(&self) -> u8 {
        (self.rex >> 2) & 1
    }
}

/// Skips the ModRM memory operand's SIB and displacement. Returns the ModRM
/// `reg` field, or `Unsupported` for a register operand.
fn modrm(c: &mut Cursor<'_>, addr_bits: u32) -> Result<u8, Error> {
    let m = c.byte()?;
    let (md, reg, rm) = (m >> 6, (m >> 3) & 7, m & 7);
    if md == 3 {
        return Err(Error::Unsupported);
    }
    if addr_bits == 16 {
        let disp = match (md, rm) {
            (0, 6) | (2, _) => 2,
            (1, _) => 1,
            _ => 0,
        };
        c.skip(disp)?;
        return Ok(reg);
    }
    let mut disp = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = c.byte()?;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    } else if md == 0 && rm == 5 {
        // disp32, or RIP-relative in 64-bit mode.
        disp = 4;
    }
    c.skip(disp)?;
    Ok(reg)
}

/// Decodes the instruction at the start of `bytes`.
pub(crate) fn decode(bytes: &[u8], mode: Mode) -> Result<Insn, Error> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut c = Cursor { bytes, pos: 0 };
    let mut p = Prefixes::default();

    let mut op = loop {
        match c.byte()? {
            0x66 => p.opsize = true,
            0x67 => p.addrsize = true,
            0xf0 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            b => break b,
        }
    };
    if mode == Mode::Bits64 && op & 0xf0 == 0x40 {
        p.has_rex = true;
        p.rex = op & 0xf;
        op = c.byte()?;
        // A REX prefix must come last: another prefix after it is invalid.
        if matches!(op, 0x40..=0x4f | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3) {
            return Err(Error::Unsupported);
        }
    }
    // F2/F3 change the meaning of some opcodes, not of these MOVs; LOCK is
    // invalid on MOV, which the hardware would have faulted on already.

    let addr_bits = match (mode, p.addrsize) {
        (Mode::Bits16, false) | (Mode::Bits32, true) => 16,
        (Mode::Bits16, true) | (Mode::Bits32, false) | (Mode::Bits64, true) => 32,
        (Mode::Bits64, false) => 64,
    };
    let opsize: u8 = if p.rex_w() {
        8
    } else {
        match (mode, p.opsize) {
            (Mode::Bits16, false) | (Mode::Bits32 | Mode::Bits64, true) => 2,
            _ => 4,
        }
    };
    // An 8-bit register operand: AH..BH unless a REX prefix is present.
    let reg8 = |num: u8| {
        let high_byte = !p.has_rex && (4..8).contains(&num);
        Reg {
            num: if high_byte { num - 4 } else { num },
            high_byte,
            size: 1,
        }
    };
    let reg = |num: u8, size: u8| Reg {
        num,
        high_byte: false,
        size,
    };

    let (size, access) = match op {
        0x88 | 0x8a => {
            let r = reg8(modrm(&mut c, addr_bits)? | p.rex_r() << 3);
            if op == 0x88 {
                (1, Access::StoreReg(r))
            } else {
                (
                    1,
                    Access::Load {
                        dst: r,
                        extend: Extend::None,
                    },
                )
            }
        }
        0x89 | 0x8b => {
            let r = reg(modrm(&mut c, addr_bits)? | p.rex_r() << 3, opsize);
            if op == 0x89 {
                (opsize, Access::StoreReg(r))
            } else {
                (
                    opsize,
                    Access::Load {
                        dst: r,
                        extend: Extend::None,
                    },
                )
            }
        }
        0xc6 | 0xc7 => {
            if modrm(&mut c, addr_bits)? != 0 {
                return Err(Error::Unsupported);
            }
            let size = if op == 0xc6 { 1 } else { opsize };
            // imm8, imm16 or imm32 (sign-extended for a 64-bit store).
            let imm = c.imm_signed(usize::from(size.min(4)))?;
            let mask = if size == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * size)) - 1
            };
            (size, Access::StoreImm(imm & mask))
        }
        0xa0..=0xa3 => {
            c.skip((addr_bits / 8) as usize)?;
            let size = if op & 1 == 0 { 1 } else { opsize };
            let r = reg(0, size);
            if op < 0xa2 {
                (
                    size,
                    Access::Load {
                        dst: r,
                        extend: Extend::None,
                    },
                )
            } else {
                (size, Access::StoreReg(r))
            }
        }
        0x0f => {
            let op2 = c.byte()?;
            let (size, extend) = match op2 {
                0xb6 => (1, Extend::Zero),
                0xb7 => (2, Extend::Zero),
                0xbe => (1, Extend::Sign),
                0xbf => (2, Extend::Sign),
                _ => return Err(Error::Unsupported),
            };
            let dst = reg(modrm(&mut c, addr_bits)? | p.rex_r() << 3, opsize);
            (size, Access::Load { dst, extend })
        }
        _ => return Err(Error::Unsupported),
    };
    Ok(Insn {
        len: c.pos as u8,
        size,
        access,
    })
}

/// The new value of the destination register of a load that read `value`
/// (the low `size` bytes are significant) when the register held `old`.
/// Follows the architectural rules: 32-bit destinations zero the upper
/// half, 8- and 16-bit destinations keep the bits they do not write.
pub(crate) fn apply_load(old: u64, value: u64, insn: &Insn) -> u64 {
    let Access::Load { dst, extend } = insn.access else {
        return old;
    };
    let src_bits = 8 * u32::from(insn.size);
    let src_mask = if src_bits == 64 {
        u64::MAX
    } else {
        (1u64 << src_bits) - 1
    };
    let v = value & src_mask;
    let v = match extend {
        Extend::Sign => (((v << (64 - src_bits)) as i64) >> (64 - src_bits)) as u64,
        Extend::None | Extend::Zero => v,
    };
    match (dst.size, dst.high_byte) {
        (1, true) => (old & !0xff00) | ((v & 0xff) << 8),
        (1, false) => (old & !0xff) | (v & 0xff),
        (2, _) => (old & !0xffff) | (v & 0xffff),
        (4, _) => v & 0xffff_ffff,
        _ => v,
    }
}
