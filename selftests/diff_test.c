// SPDX-License-Identifier: GPL-2.0
/*
 * Differential tests: the same ioctl sequence on kvm_intel's /dev/kvm and on
 * /dev/rkvm, in one process, must give the same results and the same state.
 * Needs both modules loaded (rkvm only reads MSRs at load time, so it loads
 * beside kvm_intel). With RKVM_REQUIRE_REF=1, a missing /dev/kvm fails
 * instead of skipping.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "rkvm_util.h"

struct side {
	const char *name;
	int dev, vm, vcpu;
};

FIXTURE(pair) {
	struct side s[2];	/* [0] = kvm_intel, [1] = rkvm */
};

static void side_open(struct __test_metadata *_metadata, struct side *s, const char *path)
{
	s->name = path;
	s->dev = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, s->dev) TH_LOG("open %s: %s", path, strerror(errno));
	s->vm = ioctl(s->dev, KVM_CREATE_VM, 0);
	ASSERT_LE(0, s->vm) TH_LOG("%s: KVM_CREATE_VM: %s", path, strerror(errno));
	s->vcpu = ioctl(s->vm, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, s->vcpu) TH_LOG("%s: KVM_CREATE_VCPU: %s", path, strerror(errno));
}

FIXTURE_SETUP(pair)
{
	if (access("/dev/kvm", F_OK)) {
		const char *req = getenv("RKVM_REQUIRE_REF");

		ASSERT_FALSE(req && *req == '1') TH_LOG("/dev/kvm (kvm_intel) is not loaded");
		SKIP(return, "no /dev/kvm to compare with");
	}
	side_open(_metadata, &self->s[0], "/dev/kvm");
	side_open(_metadata, &self->s[1], "/dev/rkvm");
}

FIXTURE_TEARDOWN(pair)
{
	for (int i = 0; i < 2; i++) {
		close(self->s[i].vcpu);
		close(self->s[i].vm);
		close(self->s[i].dev);
	}
}

static void dump_seg(const char *n, const struct kvm_segment *a, const struct kvm_segment *b)
{
	if (!memcmp(a, b, sizeof(*a)))
		return;
	fprintf(stderr, "#   %s: kvm base %llx lim %x sel %x type %x p%u dpl%u db%u s%u l%u g%u avl%u u%u\n"
		"#   %*s rkvm base %llx lim %x sel %x type %x p%u dpl%u db%u s%u l%u g%u avl%u u%u\n",
		n, a->base, a->limit, a->selector, a->type, a->present, a->dpl, a->db, a->s, a->l,
		a->g, a->avl, a->unusable, (int)strlen(n), "", b->base, b->limit, b->selector,
		b->type, b->present, b->dpl, b->db, b->s, b->l, b->g, b->avl, b->unusable);
}

/* Compares the two sides' SREGS field by field, logging what differs. */
static bool same_sregs(struct __test_metadata *_metadata, struct side *s, const char *what)
{
	struct kvm_sregs a, b;

	EXPECT_EQ(0, ioctl(s[0].vcpu, KVM_GET_SREGS, &a));
	EXPECT_EQ(0, ioctl(s[1].vcpu, KVM_GET_SREGS, &b));
	if (!memcmp(&a, &b, sizeof(a)))
		return true;
	fprintf(stderr, "# SREGS differ after %s:\n", what);
	dump_seg("cs", &a.cs, &b.cs); dump_seg("ds", &a.ds, &b.ds);
	dump_seg("es", &a.es, &b.es); dump_seg("fs", &a.fs, &b.fs);
	dump_seg("gs", &a.gs, &b.gs); dump_seg("ss", &a.ss, &b.ss);
	dump_seg("tr", &a.tr, &b.tr); dump_seg("ldt", &a.ldt, &b.ldt);
#define CMP(f) if (a.f != b.f) fprintf(stderr, "#   " #f ": kvm %llx rkvm %llx\n", \
				       (unsigned long long)a.f, (unsigned long long)b.f)
	CMP(gdt.base); CMP(gdt.limit); CMP(idt.base); CMP(idt.limit);
	CMP(cr0); CMP(cr2); CMP(cr3); CMP(cr4); CMP(cr8); CMP(efer); CMP(apic_base);
	CMP(interrupt_bitmap[0]); CMP(interrupt_bitmap[1]);
#undef CMP
	return false;
}

TEST_F(pair, reset_regs_and_sregs_match)
{
	struct kvm_regs a, b;

	ASSERT_EQ(0, ioctl(self->s[0].vcpu, KVM_GET_REGS, &a));
	ASSERT_EQ(0, ioctl(self->s[1].vcpu, KVM_GET_REGS, &b));
	EXPECT_EQ(0, memcmp(&a, &b, sizeof(a)))
		TH_LOG("REGS differ: rip %llx/%llx rflags %llx/%llx rdx %llx/%llx",
		       a.rip, b.rip, a.rflags, b.rflags, a.rdx, b.rdx);
	EXPECT_TRUE(same_sregs(_metadata, self->s, "reset"));
}

/* One SET_SREGS case: a change applied to the reset state. */
struct sregs_case {
	const char *name;
	void (*apply)(struct kvm_sregs *s);
};

static void flat_protected(struct kvm_sregs *s)
{
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 0xb,
				    .present = 1, .db = 1, .s = 1, .g = 1 };
	struct kvm_segment data = code;

	data.selector = 0x10;
	data.type = 3;
	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->cr0 = 0x11;
	s->gdt.base = 0x1000;
	s->gdt.limit = 0x17;
}
static void not_present_data(struct kvm_sregs *s) { flat_protected(s); s->fs.present = 0; s->gs.unusable = 1; }
static void accessed_cleared(struct kvm_sregs *s) { flat_protected(s); s->cs.type = 0xa; s->ds.type = 2; s->ldt.type = 2; }
static void odd_fields(struct kvm_sregs *s) { s->es.dpl = 3; s->es.avl = 1; s->es.l = 0; s->fs.padding = 0x55; s->tr.type = 3; }
static void cr8_reserved(struct kvm_sregs *s) { s->cr8 = 0x1f; }
static void cr8_valid(struct kvm_sregs *s) { s->cr8 = 0x7; }
static void apic_base_bsp(struct kvm_sregs *s) { s->apic_base = 0xfee00900; }
static void apic_base_x2apic(struct kvm_sregs *s) { s->apic_base = 0xfee00c00; }
static void apic_base_reserved(struct kvm_sregs *s) { s->apic_base = 0xfee00901; }
static void efer_sce(struct kvm_sregs *s) { s->efer = 1; }
static void efer_nx_without_cpuid(struct kvm_sregs *s) { s->efer = 0x800; }
static void cr4_legacy_bits(struct kvm_sregs *s) { s->cr4 = 0x2b0; }
static void cr4_osxsave(struct kvm_sregs *s) { s->cr4 = 1 << 18; }
static void cr4_pcide(struct kvm_sregs *s) { s->cr4 = 1 << 17; }
static void cr0_pg_pe(struct kvm_sregs *s) { flat_protected(s); s->cr0 = 0x80000011; s->cr3 = 0x5000; }
static void cr0_pg_only(struct kvm_sregs *s) { s->cr0 = 0x80000010; }
static void cr0_high_bits(struct kvm_sregs *s) { s->cr0 = 0x100000010ULL; }
static void cr2_cr3(struct kvm_sregs *s) { s->cr2 = 0xdeadbeef; s->cr3 = 0x123000; }
static void long_mode_no_cpuid(struct kvm_sregs *s) { flat_protected(s); s->cr0 = 0x80000011; s->cr4 = 0x20; s->efer = 0x500; s->cs.l = 1; s->cs.db = 0; }
static void lme_without_paging(struct kvm_sregs *s) { s->efer = 0x100; }
static void cs_l_in_real_mode(struct kvm_sregs *s) { s->cs.l = 1; }
static void dtables(struct kvm_sregs *s) { s->idt.base = 0xffffffff12345678ULL; s->idt.limit = 0x7ff; s->gdt.padding[1] = 9; }

static void long_mode(struct kvm_sregs *s) { long_mode_no_cpuid(s); s->cr3 = 0x10000; }
static void long_mode_nx(struct kvm_sregs *s) { long_mode(s); s->efer |= 0x800; }
static void long_mode_cr3_beyond_maxphyaddr(struct kvm_sregs *s) { long_mode(s); s->cr3 = 1ULL << 40; }
static void long_mode_without_pae(struct kvm_sregs *s) { long_mode(s); s->cr4 = 0; }
static void long_mode_without_lma(struct kvm_sregs *s) { long_mode(s); s->efer = 0x100; }
static void apic_base_x2apic_mode(struct kvm_sregs *s) { s->apic_base = 0xfee00c00; }
static void apic_base_x2apic_disabled(struct kvm_sregs *s) { s->apic_base = 0xfee00400; }
static void apic_base_high(struct kvm_sregs *s) { s->apic_base = 0xfee00800 | 1ULL << 39; }
static void apic_base_beyond_maxphyaddr(struct kvm_sregs *s) { s->apic_base = 0xfee00800 | 1ULL << 40; }

static const struct sregs_case lm_cases[] = {
	{ "long_mode", long_mode }, { "long_mode_nx", long_mode_nx },
	{ "long_mode_cr3_beyond_maxphyaddr", long_mode_cr3_beyond_maxphyaddr },
	{ "long_mode_without_pae", long_mode_without_pae },
	{ "long_mode_without_lma", long_mode_without_lma },
	{ "apic_base_x2apic_mode", apic_base_x2apic_mode },
	{ "apic_base_x2apic_disabled", apic_base_x2apic_disabled },
	{ "apic_base_high", apic_base_high },
	{ "apic_base_beyond_maxphyaddr", apic_base_beyond_maxphyaddr },
	{ "efer_nx", efer_nx_without_cpuid }, { "cr4_osxsave", cr4_osxsave },
};

static const struct sregs_case cases[] = {
	{ "flat_protected", flat_protected }, { "not_present_data", not_present_data },
	{ "accessed_cleared", accessed_cleared }, { "odd_fields", odd_fields },
	{ "cr8_reserved", cr8_reserved }, { "cr8_valid", cr8_valid },
	{ "apic_base_bsp", apic_base_bsp }, { "apic_base_x2apic", apic_base_x2apic },
	{ "apic_base_reserved", apic_base_reserved }, { "efer_sce", efer_sce },
	{ "efer_nx_without_cpuid", efer_nx_without_cpuid }, { "cr4_legacy_bits", cr4_legacy_bits },
	{ "cr4_osxsave", cr4_osxsave }, { "cr4_pcide", cr4_pcide }, { "cr0_pg_pe", cr0_pg_pe },
	{ "cr0_pg_only", cr0_pg_only }, { "cr0_high_bits", cr0_high_bits }, { "cr2_cr3", cr2_cr3 },
	{ "long_mode_no_cpuid", long_mode_no_cpuid }, { "lme_without_paging", lme_without_paging },
	{ "cs_l_in_real_mode", cs_l_in_real_mode }, { "dtables", dtables },
};

/*
 * Applies each case to the current SREGS on both sides (after restoring
 * them) and expects the same result, errno and resulting state.
 */
static void run_sregs_cases(struct __test_metadata *_metadata, struct side *s,
			    const struct sregs_case *cases, unsigned int n)
{
	struct kvm_sregs start;

	ASSERT_EQ(0, ioctl(s[0].vcpu, KVM_GET_SREGS, &start));
	for (unsigned int i = 0; i < n; i++) {
		int r[2], e[2];

		for (int k = 0; k < 2; k++) {
			struct kvm_sregs v = start;

			ASSERT_EQ(0, ioctl(s[k].vcpu, KVM_SET_SREGS, &start));
			cases[i].apply(&v);
			errno = 0;
			r[k] = ioctl(s[k].vcpu, KVM_SET_SREGS, &v);
			e[k] = errno;
		}
		EXPECT_EQ(r[0], r[1]) TH_LOG("%s: kvm %d (%s), rkvm %d (%s)", cases[i].name,
					     r[0], strerror(e[0]), r[1], strerror(e[1]));
		if (r[0] && r[1]) {
			EXPECT_EQ(e[0], e[1]) TH_LOG("%s: errno", cases[i].name);
		}
		EXPECT_TRUE(same_sregs(_metadata, s, cases[i].name)) TH_LOG("%s", cases[i].name);
	}
}

TEST_F(pair, set_sregs_cases_match)
{
	run_sregs_cases(_metadata, self->s, cases, sizeof(cases) / sizeof(cases[0]));
}

TEST_F(pair, set_regs_match)
{
	struct kvm_regs in = { .rax = 1, .rbx = 2, .rcx = 3, .rdx = 4, .rsi = 5, .rdi = 6,
			       .rsp = 7, .rbp = 8, .r8 = 9, .r15 = ~0ULL, .rip = 0x1234,
			       .rflags = 0xffffffffffffffffULL }, a, b;

	ASSERT_EQ(0, ioctl(self->s[0].vcpu, KVM_SET_REGS, &in));
	ASSERT_EQ(0, ioctl(self->s[1].vcpu, KVM_SET_REGS, &in));
	ASSERT_EQ(0, ioctl(self->s[0].vcpu, KVM_GET_REGS, &a));
	ASSERT_EQ(0, ioctl(self->s[1].vcpu, KVM_GET_REGS, &b));
	EXPECT_EQ(a.rflags, b.rflags);
	EXPECT_EQ(0, memcmp(&a, &b, sizeof(a)));
}

/* A long-mode capable CPUID: LM, NX, x2APIC, 40-bit physical addresses. */
static void set_long_mode_cpuid(struct __test_metadata *_metadata, int vcpu)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[8];
	} c;

	memset(&c, 0, sizeof(c));
	c.hdr.nent = 6;
	c.e[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0xd, .ebx = 0x756e6547,
					    .ecx = 0x6c65746e, .edx = 0x49656e69 };
	c.e[1] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0x306c3,
					    .ecx = 1u << 21 | 1u << 27, .edx = 0x0f8bfbff };
	c.e[2] = (struct kvm_cpuid_entry2){ .function = 0x80000000, .eax = 0x80000008 };
	c.e[3] = (struct kvm_cpuid_entry2){ .function = 0x80000001, .edx = 1u << 29 | 1u << 20 };
	c.e[4] = (struct kvm_cpuid_entry2){ .function = 0x80000008, .eax = 0x3028 };
	c.e[5] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 0, .flags = 1, .eax = 1 };
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_CPUID2, &c)) TH_LOG("KVM_SET_CPUID2: %s", strerror(errno));
}

TEST_F(pair, cpuid_runtime_bits_match)
{
	static struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[8];
	} a, b;

	for (int k = 0; k < 2; k++)
		set_long_mode_cpuid(_metadata, self->s[k].vcpu);
	a.hdr.nent = b.hdr.nent = 8;
	ASSERT_EQ(0, ioctl(self->s[0].vcpu, KVM_GET_CPUID2, &a));
	ASSERT_EQ(0, ioctl(self->s[1].vcpu, KVM_GET_CPUID2, &b));
	ASSERT_EQ(a.hdr.nent, b.hdr.nent);
	for (unsigned int i = 0; i < a.hdr.nent; i++) {
		EXPECT_EQ(0, memcmp(&a.e[i], &b.e[i], sizeof(a.e[i])))
			TH_LOG("leaf %#x.%u: kvm %08x %08x %08x %08x rkvm %08x %08x %08x %08x",
			       a.e[i].function, a.e[i].index, a.e[i].eax, a.e[i].ebx, a.e[i].ecx,
			       a.e[i].edx, b.e[i].eax, b.e[i].ebx, b.e[i].ecx, b.e[i].edx);
	}
}

TEST_F(pair, set_sregs_cases_match_with_long_mode_cpuid)
{
	for (int k = 0; k < 2; k++)
		set_long_mode_cpuid(_metadata, self->s[k].vcpu);
	run_sregs_cases(_metadata, self->s, lm_cases, sizeof(lm_cases) / sizeof(lm_cases[0]));
}

TEST_F(pair, tsc_khz_matches)
{
	int k = ioctl(self->s[0].vm, KVM_GET_TSC_KHZ, 0);

	EXPECT_LT(0, k);
	EXPECT_EQ(k, ioctl(self->s[1].vm, KVM_GET_TSC_KHZ, 0));
	EXPECT_EQ(ioctl(self->s[0].vcpu, KVM_GET_TSC_KHZ, 0), ioctl(self->s[1].vcpu, KVM_GET_TSC_KHZ, 0));
}

TEST_F(pair, second_vcpu_reset_state_matches)
{
	int v[2];

	for (int k = 0; k < 2; k++) {
		v[k] = ioctl(self->s[k].vm, KVM_CREATE_VCPU, 1);
		ASSERT_LE(0, v[k]);
	}
	struct side second[2] = { { "kvm", -1, -1, v[0] }, { "rkvm", -1, -1, v[1] } };

	EXPECT_TRUE(same_sregs(_metadata, second, "creating vCPU 1"));
	close(v[0]);
	close(v[1]);
}

/*
 * The MSRs rkvm implements read the same on a new vCPU of both (the TSC
 * aside), and the same writes are accepted or refused (the count of
 * processed entries of KVM_SET_MSRS).
 */
TEST_F(pair, msrs_match)
{
	static const __u32 idx[] = {
		0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
		0xc0000102, 0x277, 0x1a0, 0xc0000080, 0x1b,
	};
	static const struct kvm_msr_entry writes[] = {
		{ .index = 0x277, .data = 0x0007010600070406ULL },
		{ .index = 0x277, .data = 0x0007030600070406ULL },	/* type 3 */
		{ .index = 0xc0000082, .data = 0xffff800000001000ULL },
		{ .index = 0xc0000082, .data = 0x0001000000000000ULL },	/* non-canonical */
		{ .index = 0x175, .data = 0x0000800000001000ULL },	/* made canonical */
		{ .index = 0xc0000080, .data = 0x1 },			/* SCE */
		{ .index = 0xc0000080, .data = 0x2 },			/* reserved */
		{ .index = 0x174, .data = 0x123456789ULL },
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} m[2];
	unsigned int i, k;

	for (k = 0; k < 2; k++) {
		memset(&m[k], 0, sizeof(m[k]));
		m[k].hdr.nmsrs = sizeof(idx) / sizeof(idx[0]);
		for (i = 0; i < m[k].hdr.nmsrs; i++)
			m[k].e[i].index = idx[i];
		EXPECT_EQ((int)m[k].hdr.nmsrs, ioctl(self->s[k].vcpu, KVM_GET_MSRS, &m[k]))
			TH_LOG("%s", self->s[k].name);
	}
	for (i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		EXPECT_EQ(m[0].e[i].data, m[1].e[i].data) TH_LOG("MSR %#x", idx[i]);

	for (i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
		int r[2];

		for (k = 0; k < 2; k++) {
			memset(&m[k], 0, sizeof(m[k]));
			m[k].hdr.nmsrs = 1;
			m[k].e[0] = writes[i];
			r[k] = ioctl(self->s[k].vcpu, KVM_SET_MSRS, &m[k]);
			m[k].e[0].data = 0;
			if (r[k] == 1)
				ioctl(self->s[k].vcpu, KVM_GET_MSRS, &m[k]);
		}
		EXPECT_EQ(r[0], r[1]) TH_LOG("write %#llx to %#x", writes[i].data, writes[i].index);
		EXPECT_EQ(m[0].e[0].data, m[1].e[0].data) TH_LOG("read back %#x", writes[i].index);
	}
}

/* Field-by-field comparison of two kvm_vcpu_events (no padding bytes). */
static void same_events(struct __test_metadata *_metadata, const struct kvm_vcpu_events *a,
			const struct kvm_vcpu_events *b, const char *what)
{
	EXPECT_EQ(a->exception.injected, b->exception.injected) TH_LOG("%s", what);
	EXPECT_EQ(a->exception.nr, b->exception.nr) TH_LOG("%s", what);
	EXPECT_EQ(a->exception.has_error_code, b->exception.has_error_code) TH_LOG("%s", what);
	EXPECT_EQ(a->exception.error_code, b->exception.error_code) TH_LOG("%s", what);
	EXPECT_EQ(a->interrupt.injected, b->interrupt.injected) TH_LOG("%s", what);
	EXPECT_EQ(a->interrupt.nr, b->interrupt.nr) TH_LOG("%s", what);
	EXPECT_EQ(a->interrupt.shadow, b->interrupt.shadow) TH_LOG("%s", what);
	EXPECT_EQ(a->nmi.injected, b->nmi.injected) TH_LOG("%s", what);
	EXPECT_EQ(a->nmi.pending, b->nmi.pending) TH_LOG("%s", what);
	EXPECT_EQ(a->nmi.masked, b->nmi.masked) TH_LOG("%s", what);
	EXPECT_EQ(a->flags, b->flags) TH_LOG("%s", what);
	EXPECT_EQ(0, memcmp(&a->smi, &b->smi, sizeof(a->smi))) TH_LOG("%s", what);
}

/*
 * KVM_GET/SET_VCPU_EVENTS: the reset state, what a set of injected and
 * pending events reads back as, and which inputs are refused.
 */
TEST_F(pair, vcpu_events_match)
{
	static const struct {
		const char *name;
		struct kvm_vcpu_events ev;
		bool valid;
	} cases[] = {
		{ "#GP(0x10) injected", { .exception = { .injected = 1, .nr = 13,
			.has_error_code = 1, .error_code = 0x10 } }, true },
		{ "interrupt 0x30", { .interrupt = { .injected = 1, .nr = 0x30 } }, true },
		{ "NMI pending, masked", { .nmi = { .pending = 1, .masked = 1 },
			.flags = KVM_VCPUEVENT_VALID_NMI_PENDING }, true },
		{ "STI shadow", { .interrupt = { .shadow = 1 },
			.flags = KVM_VCPUEVENT_VALID_SHADOW }, true },
		{ "exception vector 2", { .exception = { .injected = 1, .nr = 2 } }, false },
		{ "exception vector 32", { .exception = { .injected = 1, .nr = 32 } }, false },
		{ "unknown flag", { .flags = 0x40 }, false },
		{ "payload without the cap", { .flags = KVM_VCPUEVENT_VALID_PAYLOAD }, false },
	};
	struct kvm_vcpu_events ev[2];
	unsigned int i, k;

	for (k = 0; k < 2; k++)
		ASSERT_EQ(0, ioctl(self->s[k].vcpu, KVM_GET_VCPU_EVENTS, &ev[k]));
	same_events(_metadata, &ev[0], &ev[1], "reset");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (k = 0; k < 2; k++) {
			int vcpu = ioctl(self->s[k].vm, KVM_CREATE_VCPU, 1 + i);
			int r;

			ASSERT_LE(0, vcpu);
			errno = 0;
			r = ioctl(vcpu, KVM_SET_VCPU_EVENTS, &cases[i].ev);
			EXPECT_EQ(cases[i].valid ? 0 : -1, r)
				TH_LOG("%s on %s: %s", cases[i].name, self->s[k].name, strerror(errno));
			if (!cases[i].valid)
				EXPECT_EQ(EINVAL, errno) TH_LOG("%s", cases[i].name);
			ASSERT_EQ(0, ioctl(vcpu, KVM_GET_VCPU_EVENTS, &ev[k]));
			close(vcpu);
		}
		same_events(_metadata, &ev[0], &ev[1], cases[i].name);
	}
}

/*
 * kvm_intel keeps VMX on (CR4.VMXE set) on every CPU while it is loaded, so
 * rkvm's VMX window cannot open: KVM_RUN must fail with EBUSY and say why
 * in the kernel log, while the same guest (one HLT) runs on kvm_intel.
 */
TEST_F(pair, run_is_busy_while_kvm_intel_owns_vmx)
{
	static const unsigned char hlt = 0xf4;
	char seen[4096];

	for (int i = 0; i < 2; i++) {
		struct side *s = &self->s[i];
		void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct kvm_userspace_memory_region r = {
			.slot = 0, .guest_phys_addr = 0, .memory_size = 4096,
			.userspace_addr = (unsigned long)mem,
		};
		struct kvm_sregs sregs;
		struct kvm_regs regs = { .rip = 0, .rflags = 2 };
		struct kvm_run *run;
		int kmsg = kmsg_open();
		int ret;

		ASSERT_NE(MAP_FAILED, mem);
		memcpy(mem, &hlt, 1);
		ASSERT_EQ(0, ioctl(s->vm, KVM_SET_USER_MEMORY_REGION, &r));
		ASSERT_EQ(0, ioctl(s->vcpu, KVM_GET_SREGS, &sregs));
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		ASSERT_EQ(0, ioctl(s->vcpu, KVM_SET_SREGS, &sregs));
		ASSERT_EQ(0, ioctl(s->vcpu, KVM_SET_REGS, &regs));
		run = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s->vcpu, 0);
		ASSERT_NE(MAP_FAILED, run);
		errno = 0;
		ret = ioctl(s->vcpu, KVM_RUN, 0);
		if (i == 0) {
			EXPECT_EQ(0, ret) TH_LOG("kvm_intel: KVM_RUN: %s", strerror(errno));
			EXPECT_EQ(KVM_EXIT_HLT, (int)run->exit_reason);
		} else {
			EXPECT_EQ(-1, ret);
			EXPECT_EQ(EBUSY, errno);
			EXPECT_TRUE(kmsg_find(kmsg, "VMX is in use by another hypervisor",
					      seen, sizeof(seen))) TH_LOG("log: %s", seen);
		}
		close(kmsg);
		munmap(run, 4096);
		munmap(mem, 4096);
	}
}

TEST_HARNESS_MAIN
