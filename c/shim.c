// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers of rkvm.ko; see include/rkvm/shim.h.
 */
#include <linux/cpumask.h>
#include <linux/uaccess.h>
#include <asm/tsc.h>
#include <rkvm/shim.h>

bool rkvm_user_range_ok(unsigned long addr, unsigned long size)
{
	return untagged_addr(addr) == addr &&
	       access_ok((void __user *)addr, size);
}

unsigned int rkvm_num_online_cpus(void)
{
	return num_online_cpus();
}

unsigned int rkvm_tsc_khz(void)
{
	return tsc_khz;
}
