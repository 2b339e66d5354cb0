/* SPDX-License-Identifier: MIT */
/*
 * A strict JSON reader for the region array (RFC 8259 grammar), fed the
 * document as it arrives (json.h: json_reader). Running out of input is
 * told apart from bad input so that a document split across reads can be
 * completed, a rule broken (a key twice, a field missing) is an error
 * wherever the input ends, and every nesting level is counted so that
 * "[[[[..." cannot exhaust the stack.
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
_Static_assert(NFIELDS == JSON_NFIELDS, "json.h sizes the reader's fields");

/* Where the parser is: what the next token must be. */
enum { P_OPEN, P_FIRST, P_REGION, P_MEMBER_FIRST, P_KEY, P_VALUE, P_AFTER_VALUE, P_NEXT, P_DONE };

/* Bad whatever follows (a rule broken, not the grammar cut short). */
static int invalid(struct p *p, const char *what)
{
	if (!p->err[0])
		snprintf(p->err, p->errlen, "%s at byte %zu", what, p->i);
	return -1;
}

static int finish_region(struct json_reader *r, struct p *p, struct json_region *out)
{
	const bool *seen = r->seen;

	if (!seen[F_BASE] || !seen[F_SIZE] || !seen[F_OFFSET] || (!seen[F_PS] && !seen[F_PSKIB]))
		return invalid(p, "a region lacks base_host_virt_addr, size, offset or page_size");
	if (seen[F_PS] && seen[F_PSKIB] && r->v[F_PS] != r->v[F_PSKIB])
		return invalid(p, "page_size and page_size_kib disagree");
	out->base = r->v[F_BASE];
	out->size = r->v[F_SIZE];
	out->offset = r->v[F_OFFSET];
	out->page_size = seen[F_PS] ? r->v[F_PS] : r->v[F_PSKIB];
	return 0;
}

/*
 * One token (or key and ':') of the grammar from r->parsed. 1: accepted,
 * the reader moved on; 0: the array is complete; -1: an error (p->err
 * set), or the input ends inside the token (p->eof): nothing moved.
 */
static int step(struct json_reader *r, struct p *p, struct json_region *out, size_t max)
{
	p->i = r->parsed;
	switch (r->phase) {
	case P_OPEN:
		if (expect(p, '[', "expected '['") < 0)
			return -1;
		r->phase = P_FIRST;
		break;
	case P_FIRST:
		ws(p);
		if (p->i < p->len && p->s[p->i] == ']') {
			p->i++;
			r->phase = P_DONE;
		} else {
			r->phase = P_REGION;
		}
		break;
	case P_REGION:
		if (r->n == max) {
			snprintf(p->err, p->errlen, "more than %zu regions", max);
			return -1;
		}
		if (expect(p, '{', "expected a region object") < 0)
			return -1;
		memset(r->seen, 0, sizeof(r->seen));
		r->phase = P_MEMBER_FIRST;
		break;
	case P_MEMBER_FIRST:
		ws(p);
		if (p->i < p->len && p->s[p->i] == '}')
			return invalid(p, "empty region object");
		r->phase = P_KEY;
		break;
	case P_KEY: {
		char key[32];
		int f;

		if (string(p, key, sizeof(key)) < 0 || expect(p, ':', "expected ':'") < 0)
			return -1;
		for (f = 0; f < NFIELDS && strcmp(key, fields[f]); f++)
			;
		if (f < NFIELDS && r->seen[f])
			return invalid(p, "a field given twice");
		r->field = f;
		r->phase = P_VALUE;
		break;
	}
	case P_VALUE:
		if (r->field == NFIELDS) {
			if (skip(p, 2) < 0)
				return -1;
		} else {
			uint64_t v;
			bool isu;

			if (number(p, &v, &isu) < 0)
				return -1;
			if (!isu)
				return invalid(p, "expected a non-negative integer below 2^64");
			r->seen[r->field] = true;
			r->v[r->field] = v;
		}
		r->phase = P_AFTER_VALUE;
		break;
	case P_AFTER_VALUE:
		ws(p);
		if (p->i < p->len && p->s[p->i] == '}') {
			p->i++;
			if (finish_region(r, p, &out[r->n]) < 0)
				return -1;
			r->n++;
			r->phase = P_NEXT;
		} else {
			if (expect(p, ',', "expected ',' or '}'") < 0)
				return -1;
			r->phase = P_KEY;
		}
		break;
	case P_NEXT:
		ws(p);
		if (p->i < p->len && p->s[p->i] == ']') {
			p->i++;
			r->phase = P_DONE;
		} else {
			if (expect(p, ',', "expected ',' or ']'") < 0)
				return -1;
			r->phase = P_REGION;
		}
		break;
	default:
		return 0;
	}
	r->parsed = p->i;
	return 1;
}

/* Parses what buf[0..end) completes; the array's end is checked against all len bytes. */
static int run(struct json_reader *r, struct p *p, size_t end, size_t len,
	       struct json_region *out, size_t max)
{
	int ret;

	p->len = end;
	while ((ret = step(r, p, out, max)) == 1)
		;
	if (ret < 0)
		return p->err[0] ? -EINVAL : -EAGAIN;
	p->len = len;
	p->i = r->parsed;
	ws(p);
	if (p->i < p->len) {
		snprintf(p->err, p->errlen, "bytes after the array at byte %zu", p->i);
		return -EINVAL;
	}
	if (r->n == 0) {
		snprintf(p->err, p->errlen, "no regions");
		return -EINVAL;
	}
	return (int)r->n;
}

void json_reader_init(struct json_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->phase = P_OPEN;
}

int json_reader_feed(struct json_reader *r, const char *buf, size_t len, struct json_region *out,
		     size_t max, char *err, size_t errlen)
{
	struct p p = { .s = buf, .err = err, .errlen = errlen };

	err[0] = '\0';
	/*
	 * The scanner follows strings and brackets only. It calls the parser
	 * where a token at the level of the array or of a region's members
	 * has just ended, so the parser never reads a token twice but for a
	 * constant number of tries, and never waits long to find an error.
	 */
	for (; r->scanned < len; r->scanned++) {
		char c = buf[r->scanned];
		bool token_end = false;

		if (r->in_string) {
			if (r->escaped)
				r->escaped = false;
			else if (c == '\\')
				r->escaped = true;
			else if (c == '"')
				r->in_string = false, token_end = r->depth <= 2;
		} else {
			switch (c) {
			case '"':
				r->in_string = true;
				token_end = r->depth <= 1; /* no string belongs there */
				break;
			case '[':
			case '{':
				token_end = r->depth <= 2;
				if (++r->depth > MAX_DEPTH + 2) {
					snprintf(err, errlen, "nested too deeply at byte %zu",
						 r->scanned);
					return -EINVAL;
				}
				break;
			case ']':
			case '}':
				r->depth -= r->depth > 0;
				token_end = r->depth <= 2;
				break;
			case ',':
			case ':':
				token_end = r->depth <= 2;
				break;
			case ' ':
			case '\t':
			case '\r':
			case '\n':
				break;
			default: /* a number or a literal: its end is the next of the above */
				token_end = r->depth <= 1;
				break;
			}
		}
		if (token_end) {
			int ret = run(r, &p, r->scanned + 1, len, out, max);

			if (ret != -EAGAIN) {
				r->scanned = len;
				return ret;
			}
		}
	}
	return -EAGAIN;
}

int json_regions(const char *buf, size_t len, struct json_region *out, size_t max, char *err,
		 size_t errlen)
{
	struct json_reader r;

	json_reader_init(&r);
	return json_reader_feed(&r, buf, len, out, max, err, errlen);
}
