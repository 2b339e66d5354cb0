/* SPDX-License-Identifier: MIT */
/*
 * A strict recursive-descent JSON reader for the region array (RFC 8259
 * grammar). Running out of input is told apart from bad input so that a
 * document split across reads can be completed, and every nesting level is
 * counted so that "[[[[..." cannot exhaust the stack.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

#define MAX_DEPTH 32

struct p {
	const char *s;
	size_t len, i;
	bool eof;  /* ran out of input */
	char *err; /* first error only */
	size_t errlen;
};

static int fail(struct p *p, const char *what)
{
	if (p->i >= p->len) {
		p->eof = true;
		return -1;
	}
	if (!p->err[0])
		snprintf(p->err, p->errlen, "%s at byte %zu", what, p->i);
	return -1;
}

static void ws(struct p *p)
{
	while (p->i < p->len && strchr(" \t\r\n", p->s[p->i]) && p->s[p->i])
		p->i++;
}

static int expect(struct p *p, char c, const char *what)
{
	ws(p);
	if (p->i >= p->len || p->s[p->i] != c)
		return fail(p, what);
	p->i++;
	return 0;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A string; its first outlen-1 bytes (escapes decoded, \u as '?' unless
 * ASCII) go to out when out is not NULL, longer ones are marked by a
 * trailing '\x01' so that they match no known key. */
static int string(struct p *p, char *out, size_t outlen)
{
	size_t n = 0;

	if (expect(p, '"', "expected a string") < 0)
		return -1;
	for (;;) {
		unsigned char c;
		char d;

		if (p->i >= p->len)
			return fail(p, "unterminated string");
		c = (unsigned char)p->s[p->i++];
		if (c == '"')
			break;
		if (c < 0x20) {
			p->i--;
			return fail(p, "control character in a string");
		}
		d = (char)c;
		if (c == '\\') {
			if (p->i >= p->len)
				return fail(p, "unterminated escape");
			c = (unsigned char)p->s[p->i++];
			switch (c) {
			case '"': case '\\': case '/': d = (char)c; break;
			case 'b': d = '\b'; break;
			case 'f': d = '\f'; break;
			case 'n': d = '\n'; break;
			case 'r': d = '\r'; break;
			case 't': d = '\t'; break;
			case 'u': {
				unsigned v = 0;

				for (int k = 0; k < 4; k++) {
					int h;

					if (p->i >= p->len)
						return fail(p, "unterminated escape");
					h = hex(p->s[p->i]);
					if (h < 0)
						return fail(p, "bad \\u escape");
					v = v * 16 + (unsigned)h;
					p->i++;
				}
				d = v && v < 0x80 ? (char)v : '?';
				break;
			}
			default:
				p->i--;
				return fail(p, "bad escape");
			}
		}
		if (out && n + 1 < outlen)
			out[n++] = d;
		else if (out)
			out[outlen - 2] = '\x01';
	}
	if (out)
		out[n < outlen ? n : outlen - 1] = '\0';
	return 0;
}

/* A number; *u receives it when it is a non-negative integer that fits u64
 * (*isuint tells). */
static int number(struct p *p, uint64_t *u, bool *isuint)
{
	size_t start;
	bool neg = false, frac = false, overflow = false;
	uint64_t v = 0;

	ws(p);
	start = p->i;
	if (p->i < p->len && p->s[p->i] == '-') {
		neg = true;
		p->i++;
	}
	if (p->i >= p->len)
		return fail(p, "expected a number");
	if (p->s[p->i] == '0') {
		p->i++;
	} else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') {
		while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
			unsigned dgt = (unsigned)(p->s[p->i] - '0');

			if (v > (UINT64_MAX - dgt) / 10)
				overflow = true;
			v = v * 10 + dgt;
			p->i++;
		}
	} else {
		return fail(p, "expected a number");
	}
	if (p->i < p->len && p->s[p->i] == '.') {
		frac = true;
		p->i++;
		if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9')
			return fail(p, "bad number");
		while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		frac = true;
		p->i++;
		if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9')
			return fail(p, "bad number");
		while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	/* A number at the very end may go on in the next read. */
	if (p->i >= p->len)
		return fail(p, "number cut short");
	*isuint = !neg && !frac && !overflow && p->i > start;
	*u = v;
	return 0;
}

static int literal(struct p *p, const char *word)
{
	size_t n = strlen(word);

	for (size_t k = 0; k < n; k++, p->i++)
		if (p->i >= p->len || p->s[p->i] != word[k])
			return fail(p, "bad literal");
	return 0;
}

/* Any value, thrown away. */
static int skip(struct p *p, int depth)
{
	uint64_t u;
	bool isu;
	char c;

	if (depth > MAX_DEPTH)
		return fail(p, "nested too deeply");
	ws(p);
	if (p->i >= p->len)
		return fail(p, "expected a value");
	c = p->s[p->i];
	if (c == '"')
		return string(p, NULL, 0);
	if (c == 't')
		return literal(p, "true");
	if (c == 'f')
		return literal(p, "false");
	if (c == 'n')
		return literal(p, "null");
	if (c == '[' || c == '{') {
		char close = c == '[' ? ']' : '}';

		p->i++;
		ws(p);
		if (p->i < p->len && p->s[p->i] == close) {
			p->i++;
			return 0;
		}
		for (;;) {
			if (c == '{' && (string(p, NULL, 0) < 0 || expect(p, ':', "expected ':'") < 0))
				return -1;
			if (skip(p, depth + 1) < 0)
				return -1;
			ws(p);
			if (p->i >= p->len)
				return fail(p, "unterminated");
			if (p->s[p->i] == close) {
				p->i++;
				return 0;
			}
			if (expect(p, ',', "expected ','") < 0)
				return -1;
		}
	}
	return number(p, &u, &isu);
}

enum { F_BASE, F_SIZE, F_OFFSET, F_PS, F_PSKIB, NFIELDS };
static const char *const fields[NFIELDS] = { "base_host_virt_addr", "size", "offset",
					     "page_size", "page_size_kib" };

static int region(struct p *p, struct json_region *r)
{
	uint64_t v[NFIELDS];
	bool seen[NFIELDS] = { false };

	if (expect(p, '{', "expected a region object") < 0)
		return -1;
	ws(p);
	if (p->i < p->len && p->s[p->i] == '}')
		return fail(p, "empty region object");
	for (;;) {
		char key[32];
		int f;

		if (string(p, key, sizeof(key)) < 0 || expect(p, ':', "expected ':'") < 0)
			return -1;
		for (f = 0; f < NFIELDS && strcmp(key, fields[f]); f++)
			;
		if (f == NFIELDS) {
			if (skip(p, 2) < 0)
				return -1;
		} else {
			bool isu;

			if (seen[f])
				return fail(p, "a field given twice");
			ws(p);
			if (number(p, &v[f], &isu) < 0)
				return -1;
			if (!isu)
				return fail(p, "expected a non-negative integer below 2^64");
			seen[f] = true;
		}
		ws(p);
		if (p->i < p->len && p->s[p->i] == '}') {
			p->i++;
			break;
		}
		if (expect(p, ',', "expected ',' or '}'") < 0)
			return -1;
	}
	if (!seen[F_BASE] || !seen[F_SIZE] || !seen[F_OFFSET] || (!seen[F_PS] && !seen[F_PSKIB]))
		return fail(p, "a region lacks base_host_virt_addr, size, offset or page_size");
	if (seen[F_PS] && seen[F_PSKIB] && v[F_PS] != v[F_PSKIB])
		return fail(p, "page_size and page_size_kib disagree");
	r->base = v[F_BASE];
	r->size = v[F_SIZE];
	r->offset = v[F_OFFSET];
	r->page_size = seen[F_PS] ? v[F_PS] : v[F_PSKIB];
	return 0;
}

int json_regions(const char *buf, size_t len, struct json_region *out, size_t max, char *err,
		 size_t errlen)
{
	struct p p = { .s = buf, .len = len, .err = err, .errlen = errlen };
	size_t n = 0;

	err[0] = '\0';
	if (expect(&p, '[', "expected '['") < 0)
		goto out;
	ws(&p);
	if (p.i < p.len && p.s[p.i] == ']') {
		p.i++;
	} else {
		for (;;) {
			if (n == max) {
				snprintf(err, errlen, "more than %zu regions", max);
				return -EINVAL;
			}
			if (region(&p, &out[n]) < 0)
				goto out;
			n++;
			ws(&p);
			if (p.i < p.len && p.s[p.i] == ']') {
				p.i++;
				break;
			}
			if (expect(&p, ',', "expected ',' or ']'") < 0)
				goto out;
		}
	}
	ws(&p);
	if (p.i < p.len) {
		snprintf(err, errlen, "bytes after the array at byte %zu", p.i);
		return -EINVAL;
	}
	if (n == 0) {
		snprintf(err, errlen, "no regions");
		return -EINVAL;
	}
	return (int)n;
out:
	if (err[0])
		return -EINVAL;
	return -EAGAIN;
}
