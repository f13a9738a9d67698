/*
 * bench/bench_boost.cpp — shval against Boost.Interprocess named objects in
 * a managed_shared_memory, both sides in this one program, alternating
 * repetitions (harness.h).  Built only when the Boost headers are found.
 *
 *   bench_boost [--quick] [--reps N] [--min-sec S] [--only CASE] [--json F]
 *
 *   find_10k     shval_find(seg, name, "q") + shval_close among 10k int64
 *                values  vs  managed_shared_memory::find<int64_t>(name)
 *                among 10k; the same pseudo-random order of names.
 *   create_100k  shval_create(seg, name, "q", SHVAL_ATOMIC) + shval_close
 *                of 100k values into a fresh POSIX segment  vs
 *                construct<int64_t>(name)(0) of 100k into a fresh
 *                managed_shared_memory (both in /dev/shm).  Making and
 *                removing the segments is outside the timed span.
 * Names are 16 bytes ("v000000000000042") on both sides.
 */
#include <boost/interprocess/managed_shared_memory.hpp>

#include <shval.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <vector>

#include "harness.h"

namespace bip = boost::interprocess;

static bh_opts O;

#define CHECK(x)                                                               \
	do {                                                                   \
		int r_ = (x);                                                  \
		if (r_) {                                                      \
			std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, \
				     #x, shval_strerror(r_));                  \
			std::exit(2);                                          \
		}                                                              \
	} while (0)

struct names {
	std::vector<std::string> v;
	std::vector<uint32_t> order;
	uint64_t pos = 0;
	explicit names(uint64_t n)
	{
		char b[24];
		for (uint64_t i = 0; i < n; i++) {
			std::snprintf(b, sizeof b, "v%015llu", (unsigned long long)i);
			v.emplace_back(b);
			order.push_back((uint32_t)i);
		}
		uint64_t x = 88172645463325252ull;
		for (uint64_t i = n - 1; i > 0; i--) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			uint64_t j = x % (i + 1);
			std::swap(order[i], order[j]);
		}
	}
	const char *next()
	{
		const char *s = v[order[pos]].c_str();
		if (++pos == v.size())
			pos = 0;
		return s;
	}
};

static std::string shm_name(const char *what)
{
	char b[96];
	std::snprintf(b, sizeof b, "shval_bench_%s_%d", what, (int)getpid());
	return b;
}

/* ---- find_10k ---- */

struct find_ctx {
	names *nm;
	shval_seg *seg;
	bip::managed_shared_memory *ms;
};

static bh_run find_shval(void *c, uint64_t n)
{
	find_ctx *f = static_cast<find_ctx *>(c);
	bool ok = true;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		shval *h;
		if (shval_find(f->seg, f->nm->next(), "q", &h) != 0)
			ok = false;
		shval_close(h);
	}
	double t1 = bh_now();
	return bh_run{ t1 - t0, (double)i, ok };
}

static bh_run find_boost(void *c, uint64_t n)
{
	find_ctx *f = static_cast<find_ctx *>(c);
	bool ok = true;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		std::pair<int64_t *, std::size_t> p = f->ms->find<int64_t>(f->nm->next());
		if (!p.first)
			ok = false;
	}
	double t1 = bh_now();
	return bh_run{ t1 - t0, (double)i, ok };
}

/* ---- create_100k ---- */

struct create_ctx {
	names *nm;
	uint64_t per_round; /* values per fresh segment */
};

/* Rounds of per_round values, each into a fresh segment, until the timed
 * part reaches min_sec (one round with --quick); n bounds the rounds. */
static bool more_rounds(uint64_t r, uint64_t n, double timed)
{
	return r < n && (r == 0 || (!O.quick && timed < O.min_sec * 1e9));
}

static bh_run create_shval(void *c, uint64_t n)
{
	create_ctx *cc = static_cast<create_ctx *>(c);
	std::string nm = "/" + shm_name("create");
	double total = 0;
	bool ok = true;
	uint64_t r;
	for (r = 0; more_rounds(r, n, total); r++) {
		shval_seg *seg;
		shval_seg_unlink(nm.c_str());
		CHECK(shval_seg_open(nm.c_str(), SHVAL_CREATE | SHVAL_EXCL, nullptr, &seg));
		double t0 = bh_now();
		for (uint64_t i = 0; i < cc->per_round; i++) {
			shval *h;
			if (shval_create(seg, cc->nm->v[i].c_str(), "q", SHVAL_ATOMIC,
					 nullptr, 0, &h) != 0)
				ok = false;
			shval_close(h);
		}
		total += bh_now() - t0;
		struct shval_seg_info si;
		CHECK(shval_seg_info(seg, &si));
		ok = ok && si.nvalues == cc->per_round;
		shval_seg_close(seg);
		shval_seg_unlink(nm.c_str());
	}
	return bh_run{ total, (double)(r * cc->per_round), ok };
}

static bh_run create_boost(void *c, uint64_t n)
{
	create_ctx *cc = static_cast<create_ctx *>(c);
	std::string nm = shm_name("create_boost");
	double total = 0;
	bool ok = true;
	/* ~250 bytes per named int64 in Boost 1.74 (name index node, header,
	 * name); plus room. */
	std::size_t size = 64 * 1024 * 1024 + cc->per_round * 512;
	uint64_t r;
	for (r = 0; more_rounds(r, n, total); r++) {
		bip::shared_memory_object::remove(nm.c_str());
		bip::managed_shared_memory ms(bip::create_only, nm.c_str(), size);
		double t0 = bh_now();
		for (uint64_t i = 0; i < cc->per_round; i++) {
			int64_t *p = ms.construct<int64_t>(cc->nm->v[i].c_str())(0);
			if (!p)
				ok = false;
		}
		total += bh_now() - t0;
		ok = ok && ms.get_num_named_objects() == cc->per_round;
		bip::shared_memory_object::remove(nm.c_str());
	}
	return bh_run{ total, (double)(r * cc->per_round), ok };
}

int main(int argc, char **argv)
{
	if (!bh_parse(&O, argc, argv))
		return 2;
	int ok = 1;
	if (O.quick)
		std::printf("quick run: every case once for a tiny count; numbers "
			    "are not measurements\n");
	uint64_t nfind = O.quick ? 100 : 10000;
	if (bh_selected(&O, "find_10k")) {
		names nm(nfind);
		shval_seg *seg;
		CHECK(shval_seg_open(nullptr, SHVAL_CREATE, nullptr, &seg));
		for (uint64_t i = 0; i < nfind; i++) {
			shval *h;
			CHECK(shval_create(seg, nm.v[i].c_str(), "q", SHVAL_ATOMIC,
					   nullptr, 0, &h));
			shval_close(h);
		}
		std::string bn = shm_name("find");
		bip::shared_memory_object::remove(bn.c_str());
		{
			bip::managed_shared_memory ms(bip::create_only, bn.c_str(),
						      64 * 1024 * 1024);
			for (uint64_t i = 0; i < nfind; i++)
				ms.construct<int64_t>(nm.v[i].c_str())(0);
			find_ctx fa{ &nm, seg, &ms };
			bh_side a = { "shval_find(\"q\") + close", find_shval, &fa, 0, {}, {} };
			bh_side b = { "managed_shared_memory::find<int64_t>", find_boost,
				      &fa, 0, {}, {} };
			ok &= bh_compare(&O, O.quick ? "find_10k(100)" : "find_10k",
					 "lookup by name among 10k values vs "
					 "Boost.Interprocess find<int64_t>",
					 &a, &b, 200, 0.2,
					 "target >= 5x faster than Boost, i.e. ratio <= 0.2");
		}
		bip::shared_memory_object::remove(bn.c_str());
		shval_seg_close(seg);
	}
	if (bh_selected(&O, "create_100k")) {
		uint64_t per = O.quick ? 200 : 100000;
		names nm(per);
		create_ctx cc{ &nm, per };
		bh_side a = { "shval_create(\"q\", ATOMIC) + close", create_shval, &cc,
			      0, {}, {} };
		bh_side b = { "construct<int64_t>(name)(0)", create_boost, &cc, 0, {}, {} };
		ok &= bh_compare(&O, O.quick ? "create_100k(200)" : "create_100k",
				 "creating 100k named int64 values in a fresh segment "
				 "vs Boost construct<int64_t>",
				 &a, &b, 1, 1.0 / 3,
				 "target >= 3x faster than Boost, i.e. ratio <= 0.333; "
				 "ns/op per value; a rep = whole rounds of 100k");
	}
	if (O.json)
		std::fclose(O.json);
	return ok ? 0 : 1;
}
