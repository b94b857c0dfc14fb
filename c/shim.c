// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers of rkvm.ko; see include/rkvm/shim.h.
 */
#include <linux/cpumask.h>
#include <linux/eventfd.h>
#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/sched.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/smp.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <asm/fpu/api.h>
#include <asm/gsseg.h>
#include <asm/io.h>
#include <asm/msr.h>
#include <asm/segment.h>
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

void rkvm_clock_read(u64 *raw_ns, u64 *real_ns, u64 *tsc)
{
	unsigned long flags;

	/* The three readings as close together as the host allows. */
	local_irq_save(flags);
	*tsc = rdtsc();
	*raw_ns = ktime_get_raw_ns();
	*real_ns = ktime_get_real_ns();
	local_irq_restore(flags);
}

u64 rkvm_virt_to_phys(const void *addr)
{
	return __pa(addr);
}

void *rkvm_phys_to_virt(u64 pa)
{
	return phys_to_virt(pa);
}

int rkvm_pin_user_page(unsigned long hva, bool write, u64 *pfn)
{
	struct page *page;
	long n;

	n = pin_user_pages_fast(hva, 1, (write ? FOLL_WRITE : 0) | FOLL_LONGTERM, &page);
	if (n < 0)
		return n;
	if (n != 1)
		return -EFAULT;
	*pfn = page_to_pfn(page);
	return 0;
}

void rkvm_unpin_pfn(u64 pfn, bool dirty)
{
	struct page *page = pfn_to_page(pfn);

	/*
	 * The guest may have written it: the kernel must know. The flag is
	 * set without the page lock (as KVM's kvm_set_page_dirty() does):
	 * this runs from mmu_notifier callbacks, whose caller may hold the
	 * lock of this very page, and must not sleep for non-blockable ones.
	 */
	if (dirty)
		SetPageDirty(page);
	unpin_user_page(page);
}

void rkvm_fpu_begin(void)
{
	kernel_fpu_begin();
}

void rkvm_fpu_end(void)
{
	kernel_fpu_end();
}

bool rkvm_signal_pending(void)
{
	return signal_pending(current);
}

void rkvm_cond_resched(void)
{
	cond_resched();
}

static void rkvm_nop(void *info)
{
}

void rkvm_kick_cpu(int cpu)
{
	smp_call_function_single(cpu, rkvm_nop, NULL, 1);
}

void rkvm_load_gs_index(u16 sel)
{
	load_gs_index(sel);
}

int rkvm_rdmsr_safe(u32 msr, u64 *val)
{
	return rdmsrq_safe(msr, val);
}

void rkvm_wrmsr(u32 msr, u64 val)
{
	wrmsrq(msr, val);
}

void *rkvm_table_alloc(void)
{
	return (void *)__get_free_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_DMA32);
}

void rkvm_table_free(void *va)
{
	free_page((unsigned long)va);
}

unsigned long rkvm_table_owner(const void *va)
{
	return page_private(virt_to_page(va));
}

void rkvm_table_set_owner(void *va, unsigned long owner)
{
	set_page_private(virt_to_page(va), owner);
}

bool rkvm_need_resched(void)
{
	return need_resched();
}

void *rkvm_eventfd_get(int fd)
{
	return eventfd_ctx_fdget(fd);
}

void rkvm_eventfd_signal(void *ctx)
{
	eventfd_signal(ctx);
}

void rkvm_eventfd_put(void *ctx)
{
	eventfd_ctx_put(ctx);
}
