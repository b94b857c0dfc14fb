// SPDX-License-Identifier: GPL-2.0
/*
 * rkvm's mmu_notifier glue: the ops table and registration, which need C
 * (container_of, the inline mmu_notifier_range_blockable()); every callback
 * forwards to rust/notifier.rs with the VM it was registered for.
 */
#include <linux/err.h>
#include <linux/mmu_notifier.h>
#include <linux/slab.h>
#include <rkvm/shim.h>

struct rkvm_mn {
	struct mmu_notifier mn;
	const void *vm;
};

static const void *vm_of(struct mmu_notifier *mn)
{
	return container_of(mn, struct rkvm_mn, mn)->vm;
}

static int mn_invalidate_range_start(struct mmu_notifier *mn,
				     const struct mmu_notifier_range *range)
{
	return rkvm_mn_invalidate_start(vm_of(mn), range->start, range->end,
					mmu_notifier_range_blockable(range));
}

static void mn_invalidate_range_end(struct mmu_notifier *mn,
				    const struct mmu_notifier_range *range)
{
	rkvm_mn_invalidate_end(vm_of(mn));
}

static void mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	rkvm_mn_release(vm_of(mn));
}

static bool mn_clear_flush_young(struct mmu_notifier *mn, struct mm_struct *mm,
				 unsigned long start, unsigned long end)
{
	return rkvm_mn_age(vm_of(mn), start, end, true);
}

static bool mn_clear_young(struct mmu_notifier *mn, struct mm_struct *mm,
			   unsigned long start, unsigned long end)
{
	return rkvm_mn_age(vm_of(mn), start, end, true);
}

static bool mn_test_young(struct mmu_notifier *mn, struct mm_struct *mm,
			  unsigned long address)
{
	return rkvm_mn_age(vm_of(mn), address, address + 1, false);
}

static const struct mmu_notifier_ops rkvm_mn_ops = {
	.invalidate_range_start = mn_invalidate_range_start,
	.invalidate_range_end = mn_invalidate_range_end,
	.release = mn_release,
	.clear_flush_young = mn_clear_flush_young,
	.clear_young = mn_clear_young,
	.test_young = mn_test_young,
};

void *rkvm_mn_register(const void *vm, struct mm_struct *mm)
{
	struct rkvm_mn *m = kzalloc(sizeof(*m), GFP_KERNEL_ACCOUNT);
	int ret;

	if (!m)
		return ERR_PTR(-ENOMEM);
	m->vm = vm;
	m->mn.ops = &rkvm_mn_ops;
	ret = mmu_notifier_register(&m->mn, mm);
	if (ret) {
		kfree(m);
		return ERR_PTR(ret);
	}
	return m;
}

void rkvm_mn_unregister(void *reg, struct mm_struct *mm)
{
	struct rkvm_mn *m = reg;

	mmu_notifier_unregister(&m->mn, mm);
	kfree(m);
}
