/* SPDX-License-Identifier: MIT */
/*
 * The region list reader of upagerd handle (daemon/json.c), alone: valid
 * documents, every kind of malformation, every prefix of a valid document
 * (more to come, not an error), and random mutations under the sanitizers.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "json.h"

static struct json_region r[8];
static char err[160];

static int parse(const char *s)
{
	return json_regions(s, strlen(s), r, 8, err, sizeof(err));
}

START_TEST(valid)
{
	ck_assert_int_eq(parse(" [ {\"base_host_virt_addr\" : 140000000000000, \"size\": 1073741824,"
			       "\"offset\":0, \"page_size\":4096}, {\"page_size_kib\": 2097152, "
			       "\"offset\": 1073741824, \"size\": 2097152, \"base_host_virt_addr\": "
			       "18446744073709551615} ]\n"), 2);
	ck_assert_uint_eq(r[0].base, 140000000000000ull);
	ck_assert_uint_eq(r[0].size, 1ull << 30);
	ck_assert_uint_eq(r[0].page_size, 4096);
	ck_assert_uint_eq(r[1].base, UINT64_MAX);
	ck_assert_uint_eq(r[1].offset, 1ull << 30);
	ck_assert_uint_eq(r[1].page_size, 2u << 20);
	/* Fields it does not know are skipped, whatever they hold; escapes in keys decode. */
	ck_assert_int_eq(parse("[{\"extra\":{\"a\":[1,2.5e-3,true,false,null,\"x\\\"\\u00e9\"]},"
			       "\"siz\\u0065\":8192,\"base_host_virt_addr\":0,\"offset\":4096,"
			       "\"page_size\":4096,\"page_size_kib\":4096}]"), 1);
	ck_assert_uint_eq(r[0].size, 8192);
}
END_TEST

START_TEST(invalid)
{
	static const char *const bad[] = {
		"", "{}", "[]", "[1]", "[{}]", "null", "[{\"size\":1}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":-1}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1.0}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1e3}]",
		"[{\"base_host_virt_addr\":0,\"size\":18446744073709551616,\"offset\":0,\"page_size\":1}]",
		"[{\"base_host_virt_addr\":0,\"size\":01,\"offset\":0,\"page_size\":1}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1,\"page_size_kib\":2}]",
		"[{\"base_host_virt_addr\":\"0\",\"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"base_host_virt_addr\":0 \"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1},]",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1}] x",
		"[{\"x\":tru,\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"x\":\"\\q\",\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"x\":\"\x01\",\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1}]",
		"[{\"x\":\"\\u12g4\",\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1}]",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = parse(bad[i]);

		/* "" is a prefix of everything: more may come. */
		ck_assert_msg(i == 0 ? n == -EAGAIN : n == -EINVAL, "case %zu: %d", i, n);
		ck_assert_msg(i == 0 || err[0], "case %zu: no reason given", i);
	}
}
END_TEST

START_TEST(nesting_is_bounded)
{
	char doc[4200] = "[{\"x\":";
	size_t n = strlen(doc);

	for (int i = 0; i < 2000; i++)
		doc[n++] = '[';
	doc[n] = '\0';
	ck_assert_int_eq(parse(doc), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "deep"));
}
END_TEST

START_TEST(count_is_bounded)
{
	char doc[2048] = "[";

	for (int i = 0; i < 9; i++)
		strcat(doc, "{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1},");
	doc[strlen(doc) - 1] = ']';
	ck_assert_int_eq(parse(doc), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "more than"));
}
END_TEST

/* Every cut of a valid document asks for more; none is an error or a result. */
START_TEST(prefixes_ask_for_more)
{
	const char *doc = "[ {\"base_host_virt_addr\": 4096, \"x\": [true, null, \"a\\\"b\", -1.5e+2],"
			  " \"size\": 8192, \"offset\": 0, \"page_size\": 4096} ]";
	size_t len = strlen(doc);

	for (size_t cut = 0; cut < len - 1; cut++) {
		int n = json_regions(doc, cut, r, 8, err, sizeof(err));

		ck_assert_msg(n == -EAGAIN, "prefix of %zu bytes: %d (%s)", cut, n, err);
	}
	ck_assert_int_eq(json_regions(doc, len, r, 8, err, sizeof(err)), 1);
}
END_TEST

/* A document that can never become valid is an error as soon as that is known, also at its end. */
START_TEST(doomed_prefixes_fail)
{
	static const char *const doomed[] = {
		"[{\"size\":1}",
		"[{}",
		"[{\"size\":1,\"size\":",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":1,"
		"\"page_size_kib\":2}",
		"[{\"base_host_virt_addr\":0,\"size\":1,\"offset\":0,\"page_size\":-1,",
	};

	for (size_t i = 0; i < sizeof(doomed) / sizeof(doomed[0]); i++) {
		int n = parse(doomed[i]);

		ck_assert_msg(n == -EINVAL, "case %zu: %d", i, n);
		ck_assert_msg(err[0], "case %zu: no reason given", i);
	}
}
END_TEST

/*
 * A 60 KiB handshake arriving a byte at a time is read in time linear in
 * its length: each read costs the bytes it brought, not the document so far
 * (re-reading from the start was ~2*10^9 byte steps, seconds).
 */
START_TEST(bytewise_is_linear)
{
	static struct json_region many[JSON_MAX_REGIONS];
	const char *one = "{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
			  "\"x\":[\"padding padding padding\",[1,2,3]]}";
	size_t cap = 61 << 10, len = 1, k = 0;
	char *doc = malloc(cap);
	struct timespec t0, t1;
	int n = -EAGAIN;

	doc[0] = '[';
	while (len + strlen(one) + 2 < cap) {
		if (k++)
			doc[len++] = ',';
		memcpy(doc + len, one, strlen(one));
		len += strlen(one);
	}
	doc[len++] = ']';
	clock_gettime(CLOCK_MONOTONIC, &t0);
	{
		struct json_reader rd;

		json_reader_init(&rd);
		for (size_t got = 1; got <= len && n == -EAGAIN; got++)
			n = json_reader_feed(&rd, doc, got, many, JSON_MAX_REGIONS, err, sizeof(err));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_msg(n == (int)k, "%d regions, not %zu (%s)", n, k, err);
	ck_assert_msg(t1.tv_sec - t0.tv_sec < 2, "%ld s for %zu bytes", (long)(t1.tv_sec - t0.tv_sec),
		      len);
	free(doc);
}
END_TEST

START_TEST(mutations)
{
	const char *doc = "[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
			  "{\"base_host_virt_addr\":65536,\"size\":4096,\"offset\":8192,\"page_size\":4096}]";
	size_t len = strlen(doc);
	unsigned seed = 42;
	char m[256];
	/* Sanitizer builds on a busy machine get fewer rounds: 200000 took
	 * over the 60 s test timeout under ThreadSanitizer beside other builds. */
	time_t until = time(NULL) + 20;

	for (int k = 0; k < 200000 && (k % 1024 || time(NULL) < until); k++) {
		size_t n = len;
		int ret;

		memcpy(m, doc, len);
		for (int f = 0; f < 1 + (int)(rand_r(&seed) % 3); f++)
			m[rand_r(&seed) % len] = (char)rand_r(&seed);
		if (rand_r(&seed) % 8 == 0)
			n = rand_r(&seed) % len;
		ret = json_regions(m, n, r, 8, err, sizeof(err));
		ck_assert(ret == -EAGAIN || ret == -EINVAL || (ret >= 1 && ret <= 8));
		/* Fed in pieces, the same answer (but bytes after the array that
		 * had not arrived when it ended are not its). */
		{
			struct json_region q[8];
			struct json_reader rd;
			char qerr[160];
			size_t got = 0;
			int qret = -EAGAIN;

			json_reader_init(&rd);
			while (qret == -EAGAIN && got < n) {
				got += 1 + rand_r(&seed) % 16;
				got = got > n ? n : got;
				qret = json_reader_feed(&rd, m, got, q, 8, qerr, sizeof(qerr));
			}
			if (!(ret == -EINVAL && qret > 0 && strstr(err, "bytes after"))) {
				ck_assert_msg(qret == ret, "in one piece %d (%s), in pieces %d (%s)", ret,
					      err, qret, qerr);
				ck_assert(ret < 0 || !memcmp(q, r, (size_t)ret * sizeof(*q)));
			}
		}
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = upt_tcase(s, "regions");

	tcase_add_test(tc, valid);
	tcase_add_test(tc, invalid);
	tcase_add_test(tc, nesting_is_bounded);
	tcase_add_test(tc, count_is_bounded);
	tcase_add_test(tc, prefixes_ask_for_more);
	tcase_add_test(tc, doomed_prefixes_fail);
	tcase_add_test(tc, bytewise_is_linear);
	tcase_add_test(tc, mutations);
	return s;
}

int main(void)
{
	return upt_main(suite);
}
