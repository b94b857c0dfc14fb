/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers of rkvm.ko: kernel facilities that are macros or static inlines
 * (so Rust cannot call them) wrapped as functions. Each is declared in
 * rust/shim.rs as well.
 */
#ifndef RKVM_SHIM_H
#define RKVM_SHIM_H

#include <linux/types.h>

/* Whether [addr, addr + size) is a valid, untagged user range (access_ok). */
bool rkvm_user_range_ok(unsigned long addr, unsigned long size);
/* num_online_cpus(). */
unsigned int rkvm_num_online_cpus(void);
/* The host TSC frequency in kHz (tsc_khz). */
unsigned int rkvm_tsc_khz(void);

#endif
