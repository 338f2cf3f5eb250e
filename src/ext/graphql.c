/* GraphQL documents. See include/wharf/ext/graphql.h.
 *
 * A recursive descent parser over a lexer that makes one token at a time;
 * the document's nodes live in an arena of chunks freed at once, so a
 * refused document (or a fuzzer's millionth) leaves nothing behind. Lists
 * are gathered in a scratch vector, then copied into the arena at their
 * exact size. Depth and node counts are checked as the parser descends,
 * so no input can make it recurse or allocate without bound. */
#include "wharf/ext/graphql.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"

/* ---- the arena ---- */

struct wh_gql_chunk {
	wh_gql_chunk *next;
	size_t used, cap;
	max_align_t data[]; /* cap bytes */
};

#define CHUNK_MIN 4096

static void *arena_alloc(wh_gql_doc *doc, size_t n)
{
	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (n == 0)
		n = sizeof(max_align_t);
	wh_gql_chunk *c = doc->mem;
	if (!c || c->cap - c->used < n) {
		size_t cap = WH_MAX(n, (size_t)CHUNK_MIN);
		c = wh_malloc(sizeof(*c) + cap);
		c->used = 0;
		c->cap = cap;
		c->next = doc->mem;
		doc->mem = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

static char *arena_strndup(wh_gql_doc *doc, const char *s, size_t n)
{
	char *d = arena_alloc(doc, n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static void *arena_copy(wh_gql_doc *doc, const void *src, size_t n)
{
	if (n == 0)
		return NULL;
	void *d = arena_alloc(doc, n);
	memcpy(d, src, n);
	return d;
}

void wh_gql_free(wh_gql_doc *doc)
{
	if (!doc)
		return;
	wh_gql_chunk *c = doc->mem;
	while (c) {
		wh_gql_chunk *next = c->next;
		free(c);
		c = next;
	}
	free(doc);
}

/* A scratch vector of elements of one size. */
struct vec {
	char *data;
	int n, cap;
	size_t size;
};

static void *vec_push(struct vec *v)
{
	v->data = wh_grow(v->data, v->size, v->n, &v->cap, 8);
	void *e = v->data + (size_t)v->n * v->size;
	memset(e, 0, v->size);
	v->n++;
	return e;
}

/* ---- the lexer ---- */

enum tok {
	T_EOF,
	T_PUNCT, /* one of ! $ ( ) : = @ [ ] { | } and '.' for "..." */
	T_NAME,
	T_INT,
	T_FLOAT,
	T_STRING,
};

struct parser {
	const char *src, *p, *end;
	int line;
	const char *line_start;
	wh_gql_doc *doc;
	wh_gql_error *err;
	bool failed;
	int depth, vdepth;
	/* The current token. */
	enum tok t;
	char punct;
	const char *tok;
	size_t tok_len;
	int tline, tcol;
	struct vec sbuf; /* a string token, decoded (chars) */
};

__attribute__((format(printf, 4, 5))) static void fail_at(struct parser *p, int line, int col,
                                                          const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
	va_end(ap);
	p->err->line = line;
	p->err->col = col;
	p->err->validation = false;
}

#define fail(p, ...) fail_at(p, (p)->tline, (p)->tcol, __VA_ARGS__)

static bool count_node(struct parser *p)
{
	if (++p->doc->nodes > WH_GQL_MAX_NODES) {
		fail(p, "the document has more than %d nodes", WH_GQL_MAX_NODES);
		return false;
	}
	return true;
}

static bool is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_name_char(char c)
{
	return is_name_start(c) || is_digit(c);
}

static void newline(struct parser *p, const char *after)
{
	p->line++;
	p->line_start = after;
}

/* Whitespace, line terminators, commas and comments. */
static void skip_ignored(struct parser *p)
{
	while (p->p < p->end) {
		char c = *p->p;
		if (c == ' ' || c == '\t' || c == ',') {
			p->p++;
		} else if (c == '\n') {
			p->p++;
			newline(p, p->p);
		} else if (c == '\r') {
			p->p++;
			if (p->p < p->end && *p->p == '\n')
				p->p++;
			newline(p, p->p);
		} else if (c == '#') {
			while (p->p < p->end && *p->p != '\n' && *p->p != '\r')
				p->p++;
		} else if (p->end - p->p >= 3 && memcmp(p->p, "\xEF\xBB\xBF", 3) == 0) {
			p->p += 3; /* a byte order mark (U+FEFF) is ignored too */
		} else {
			break;
		}
	}
}

static void put_char(struct parser *p, char c)
{
	*(char *)vec_push(&p->sbuf) = c;
}

static void put_utf8(struct parser *p, uint32_t cp)
{
	if (cp < 0x80) {
		put_char(p, (char)cp);
	} else if (cp < 0x800) {
		put_char(p, (char)(0xC0 | cp >> 6));
		put_char(p, (char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		put_char(p, (char)(0xE0 | cp >> 12));
		put_char(p, (char)(0x80 | (cp >> 6 & 0x3F)));
		put_char(p, (char)(0x80 | (cp & 0x3F)));
	} else {
		put_char(p, (char)(0xF0 | cp >> 18));
		put_char(p, (char)(0x80 | (cp >> 12 & 0x3F)));
		put_char(p, (char)(0x80 | (cp >> 6 & 0x3F)));
		put_char(p, (char)(0x80 | (cp & 0x3F)));
	}
}

/* The length of the UTF-8 sequence at s (at most n bytes), 0 when it is not
 * a valid one (overlong forms, surrogates and values past U+10FFFF too). */
static int utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	int len;
	uint32_t cp, min;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0) {
		len = 2;
		cp = c & 0x1F;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3;
		cp = c & 0x0F;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if ((size_t)len > n)
		return 0;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

static int hex4(const char *s, const char *end, uint32_t *out)
{
	uint32_t v = 0;
	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void lex_string(struct parser *p)
{
	if (p->end - p->p >= 3 && memcmp(p->p, "\"\"\"", 3) == 0) {
		fail(p, "block strings are not supported");
		return;
	}
	p->sbuf.n = 0;
	p->p++; /* the opening quote */
	while (p->p < p->end) {
		unsigned char c = (unsigned char)*p->p;
		if (c == '"') {
			p->p++;
			p->t = T_STRING;
			return;
		}
		if (c == '\n' || c == '\r') {
			fail(p, "unterminated string");
			return;
		}
		if (c < 0x20 && c != '\t') {
			fail_at(p, p->line, (int)(p->p - p->line_start) + 1,
			        "invalid character within a string: 0x%02x", c);
			return;
		}
		if (c == '\\') {
			if (p->end - p->p < 2) {
				fail(p, "unterminated string");
				return;
			}
			char e = p->p[1];
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			const char *k = e ? strchr(from, e) : NULL;
			if (k) {
				put_char(p, to[k - from]);
				p->p += 2;
				continue;
			}
			uint32_t cp, lo;
			if (e != 'u' || hex4(p->p + 2, p->end, &cp) < 0) {
				fail_at(p, p->line, (int)(p->p - p->line_start) + 1,
				        "invalid escape sequence in a string");
				return;
			}
			p->p += 6;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				/* A high surrogate must be followed by a low one. */
				if (p->end - p->p < 6 || p->p[0] != '\\' || p->p[1] != 'u' ||
				    hex4(p->p + 2, p->end, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
					fail(p, "invalid surrogate pair in a string");
					return;
				}
				p->p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				fail(p, "invalid surrogate pair in a string");
				return;
			} else if (cp == 0) {
				fail(p, "a string may not hold \\u0000");
				return;
			}
			put_utf8(p, cp);
			continue;
		}
		int n = utf8_len((const unsigned char *)p->p, (size_t)(p->end - p->p));
		if (n == 0) {
			fail_at(p, p->line, (int)(p->p - p->line_start) + 1,
			        "invalid UTF-8 within a string");
			return;
		}
		for (int i = 0; i < n; i++)
			put_char(p, p->p[i]);
		p->p += n;
	}
	fail(p, "unterminated string");
}

static void lex_number(struct parser *p)
{
	const char *s = p->p;
	bool is_float = false;
	if (*s == '-')
		s++;
	if (s >= p->end || !is_digit(*s)) {
		fail(p, "invalid number: expected a digit after '-'");
		return;
	}
	if (*s == '0' && s + 1 < p->end && is_digit(s[1])) {
		fail(p, "invalid number: unexpected digit after 0");
		return;
	}
	while (s < p->end && is_digit(*s))
		s++;
	if (s < p->end && *s == '.') {
		is_float = true;
		s++;
		if (s >= p->end || !is_digit(*s)) {
			fail(p, "invalid number: expected a digit after '.'");
			return;
		}
		while (s < p->end && is_digit(*s))
			s++;
	}
	if (s < p->end && (*s == 'e' || *s == 'E')) {
		is_float = true;
		s++;
		if (s < p->end && (*s == '+' || *s == '-'))
			s++;
		if (s >= p->end || !is_digit(*s)) {
			fail(p, "invalid number: expected a digit in the exponent");
			return;
		}
		while (s < p->end && is_digit(*s))
			s++;
	}
	/* A number may not run into a name ("123abc", "1.5e3x"). */
	if (s < p->end && (is_name_start(*s) || *s == '.')) {
		fail(p, "invalid number: unexpected character '%c'", *s);
		return;
	}
	p->t = is_float ? T_FLOAT : T_INT;
	p->tok_len = (size_t)(s - p->p);
	p->p = s;
}

/* The next token into p->t (T_EOF at the end); on error p->failed. */
static void next(struct parser *p)
{
	skip_ignored(p);
	p->tok = p->p;
	p->tok_len = 0;
	p->tline = p->line;
	p->tcol = (int)(p->p - p->line_start) + 1;
	if (p->failed)
		return;
	if (p->p >= p->end) {
		p->t = T_EOF;
		return;
	}
	char c = *p->p;
	if (strchr("!$&():=@[]{|}", c) && c) {
		p->t = T_PUNCT;
		p->punct = c;
		p->p++;
		p->tok_len = 1;
	} else if (c == '.') {
		if (p->end - p->p >= 3 && memcmp(p->p, "...", 3) == 0)
			fail(p, "fragments are not supported");
		else
			fail(p, "unexpected character '.'");
	} else if (is_name_start(c)) {
		const char *s = p->p;
		while (s < p->end && is_name_char(*s))
			s++;
		if (s - p->p > WH_GQL_MAX_NAME) {
			fail(p, "a name longer than %d bytes", WH_GQL_MAX_NAME);
			return;
		}
		p->t = T_NAME;
		p->tok_len = (size_t)(s - p->p);
		p->p = s;
	} else if (c == '-' || is_digit(c)) {
		lex_number(p);
	} else if (c == '"') {
		lex_string(p);
	} else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7F) {
		fail(p, "unexpected character 0x%02x", (unsigned char)c);
	} else {
		fail(p, "unexpected character '%c'", c);
	}
}

/* ---- the grammar ---- */

static bool at_punct(const struct parser *p, char c)
{
	return !p->failed && p->t == T_PUNCT && p->punct == c;
}

static bool at_name(const struct parser *p, const char *name)
{
	return !p->failed && p->t == T_NAME && p->tok_len == strlen(name) &&
	       memcmp(p->tok, name, p->tok_len) == 0;
}

static const char *describe(const struct parser *p, char *buf, size_t n)
{
	switch (p->t) {
	case T_EOF:
		return "<EOF>";
	case T_PUNCT:
		snprintf(buf, n, "\"%c\"", p->punct);
		return buf;
	case T_NAME:
		snprintf(buf, n, "Name \"%.*s\"", (int)WH_MIN(p->tok_len, 64), p->tok);
		return buf;
	case T_INT:
		return "Int";
	case T_FLOAT:
		return "Float";
	default:
		return "String";
	}
}

static bool expect_punct(struct parser *p, char c)
{
	char buf[96];
	if (p->failed)
		return false;
	if (!at_punct(p, c)) {
		fail(p, "Expected \"%c\", found %s", c, describe(p, buf, sizeof(buf)));
		return false;
	}
	next(p);
	return !p->failed;
}

/* A name token, copied into the document; NULL on error. */
static const char *expect_name(struct parser *p)
{
	char buf[96];
	if (p->failed)
		return NULL;
	if (p->t != T_NAME) {
		fail(p, "Expected Name, found %s", describe(p, buf, sizeof(buf)));
		return NULL;
	}
	const char *s = arena_strndup(p->doc, p->tok, p->tok_len);
	next(p);
	return p->failed ? NULL : s;
}

static bool parse_value(struct parser *p, wh_gql_value *v, bool is_const);

static bool parse_list(struct parser *p, wh_gql_value *v, bool is_const)
{
	struct vec items = {.size = sizeof(wh_gql_value)};
	bool ok = false;
	next(p); /* [ */
	while (!p->failed && !at_punct(p, ']')) {
		if (p->t == T_EOF) {
			fail(p, "Expected \"]\", found <EOF>");
			break;
		}
		if (!parse_value(p, vec_push(&items), is_const))
			break;
	}
	if (!p->failed) {
		v->kind = WH_GQL_LIST;
		v->n = items.n;
		v->items = arena_copy(p->doc, items.data, (size_t)items.n * items.size);
		next(p);
		ok = !p->failed;
	}
	free(items.data);
	return ok;
}

static bool parse_object(struct parser *p, wh_gql_value *v, bool is_const)
{
	struct vec items = {.size = sizeof(wh_gql_value)};
	struct vec keys = {.size = sizeof(const char *)};
	bool ok = false;
	next(p); /* { */
	while (!p->failed && !at_punct(p, '}')) {
		int line = p->tline, col = p->tcol;
		const char *k = expect_name(p);
		if (!k || !expect_punct(p, ':'))
			break;
		for (int i = 0; i < keys.n; i++)
			if (strcmp(((const char **)keys.data)[i], k) == 0)
				fail_at(p, line, col,
				        "There can be only one input field named \"%s\".", k);
		*(const char **)vec_push(&keys) = k;
		if (!parse_value(p, vec_push(&items), is_const))
			break;
	}
	if (!p->failed) {
		v->kind = WH_GQL_OBJECT;
		v->n = items.n;
		v->items = arena_copy(p->doc, items.data, (size_t)items.n * items.size);
		v->keys = arena_copy(p->doc, keys.data, (size_t)keys.n * keys.size);
		next(p);
		ok = !p->failed;
	}
	free(items.data);
	free(keys.data);
	return ok;
}

static bool parse_value(struct parser *p, wh_gql_value *v, bool is_const)
{
	char buf[96];
	memset(v, 0, sizeof(*v));
	v->line = p->tline;
	v->col = p->tcol;
	if (p->failed || !count_node(p))
		return false;
	if (p->vdepth >= WH_GQL_MAX_VALUE_DEPTH) {
		fail(p, "values nested deeper than %d", WH_GQL_MAX_VALUE_DEPTH);
		return false;
	}
	bool ok = true;
	p->vdepth++;
	switch (p->t) {
	case T_PUNCT:
		if (p->punct == '[') {
			ok = parse_list(p, v, is_const);
		} else if (p->punct == '{') {
			ok = parse_object(p, v, is_const);
		} else if (p->punct == '$') {
			if (is_const) {
				fail(p, "Unexpected variable in a constant value");
				ok = false;
				break;
			}
			next(p);
			v->kind = WH_GQL_VAR;
			v->str = expect_name(p);
			ok = v->str != NULL;
		} else {
			fail(p, "Unexpected %s", describe(p, buf, sizeof(buf)));
			ok = false;
		}
		break;
	case T_INT: {
		char num[32];
		errno = 0;
		if (p->tok_len >= sizeof(num)) {
			fail(p, "integer out of range");
			ok = false;
			break;
		}
		memcpy(num, p->tok, p->tok_len);
		num[p->tok_len] = '\0';
		long long i = strtoll(num, NULL, 10);
		if (errno == ERANGE) {
			fail(p, "integer out of range");
			ok = false;
			break;
		}
		v->kind = WH_GQL_INT;
		v->i = i;
		next(p);
		break;
	}
	case T_FLOAT:
		v->kind = WH_GQL_FLOAT;
		v->str = arena_strndup(p->doc, p->tok, p->tok_len);
		v->f = strtod(v->str, NULL);
		next(p);
		break;
	case T_STRING:
		v->kind = WH_GQL_STRING;
		v->len = (size_t)p->sbuf.n;
		v->str = arena_strndup(p->doc, p->sbuf.data ? p->sbuf.data : "", v->len);
		next(p);
		break;
	case T_NAME:
		if (at_name(p, "true") || at_name(p, "false")) {
			v->kind = WH_GQL_BOOL;
			v->b = at_name(p, "true");
		} else if (at_name(p, "null")) {
			v->kind = WH_GQL_NULL;
		} else {
			v->kind = WH_GQL_ENUM;
			v->str = arena_strndup(p->doc, p->tok, p->tok_len);
		}
		next(p);
		break;
	default:
		fail(p, "Unexpected %s", describe(p, buf, sizeof(buf)));
		ok = false;
	}
	p->vdepth--;
	return ok && !p->failed;
}

static bool refuse_directive(struct parser *p)
{
	if (at_punct(p, '@')) {
		fail(p, "directives are not supported");
		return true;
	}
	return false;
}

static bool parse_arguments(struct parser *p, wh_gql_field *f)
{
	struct vec args = {.size = sizeof(wh_gql_arg)};
	next(p); /* ( */
	do {
		int line = p->tline, col = p->tcol;
		wh_gql_arg *a = vec_push(&args);
		if (!count_node(p) || !(a->name = expect_name(p)) || !expect_punct(p, ':'))
			break;
		for (int i = 0; i < args.n - 1; i++)
			if (strcmp(((wh_gql_arg *)args.data)[i].name, a->name) == 0)
				fail_at(p, line, col,
				        "There can be only one argument named \"%s\".", a->name);
		if (!parse_value(p, &a->value, false))
			break;
	} while (!p->failed && !at_punct(p, ')'));
	if (!p->failed) {
		f->n_args = args.n;
		f->args = arena_copy(p->doc, args.data, (size_t)args.n * args.size);
		next(p);
	}
	free(args.data);
	return !p->failed;
}

static bool args_eq(const wh_gql_field *a, const wh_gql_field *b)
{
	if (a->n_args != b->n_args)
		return false;
	for (int i = 0; i < a->n_args; i++) {
		int j = 0;
		while (j < b->n_args && strcmp(a->args[i].name, b->args[j].name) != 0)
			j++;
		if (j == b->n_args || !wh_gql_value_eq(&a->args[i].value, &b->args[j].value))
			return false;
	}
	return true;
}

/* Merge the fields of v[0..*n) that share a response key (see the header):
 * the later ones' selections join the first's, and they go. */
static bool merge_fields(struct parser *p, wh_gql_field *v, int *n)
{
	int kept = 0;
	for (int i = 0; i < *n; i++) {
		wh_gql_field *f = &v[i], *first = NULL;
		for (int j = 0; j < kept && !first; j++)
			if (strcmp(wh_gql_key(&v[j]), wh_gql_key(f)) == 0)
				first = &v[j];
		if (!first) {
			v[kept++] = *f;
			continue;
		}
		const char *why = NULL;
		if (strcmp(first->name, f->name) != 0)
			why = "they are different fields";
		else if (!args_eq(first, f))
			why = "they have differing arguments";
		else if ((first->n_sel > 0) != (f->n_sel > 0))
			why = "they have differing selections";
		if (why) {
			fail_at(p, f->line, f->col,
			        "Fields \"%s\" conflict because %s. Use different aliases on the "
			        "fields to fetch both if this was intentional.",
			        wh_gql_key(f), why);
			p->err->validation = true;
			return false;
		}
		if (f->n_sel == 0)
			continue;
		int m = first->n_sel + f->n_sel;
		wh_gql_field *joined = arena_alloc(p->doc, sizeof(*joined) * (size_t)m);
		memcpy(joined, first->sel, sizeof(*joined) * (size_t)first->n_sel);
		memcpy(joined + first->n_sel, f->sel, sizeof(*joined) * (size_t)f->n_sel);
		if (!merge_fields(p, joined, &m))
			return false;
		first->sel = joined;
		first->n_sel = m;
	}
	*n = kept;
	return true;
}

static bool parse_selection_set(struct parser *p, wh_gql_field **out, int *n_out);

static bool parse_field(struct parser *p, wh_gql_field *f)
{
	f->line = p->tline;
	f->col = p->tcol;
	if (!count_node(p))
		return false;
	const char *name = expect_name(p);
	if (!name)
		return false;
	if (at_punct(p, ':')) {
		next(p);
		f->alias = name;
		if (!(name = expect_name(p)))
			return false;
	}
	f->name = name;
	if (at_punct(p, '(') && !parse_arguments(p, f))
		return false;
	if (refuse_directive(p))
		return false;
	if (at_punct(p, '{'))
		return parse_selection_set(p, &f->sel, &f->n_sel);
	return !p->failed;
}

static bool parse_selection_set(struct parser *p, wh_gql_field **out, int *n_out)
{
	struct vec sel = {.size = sizeof(wh_gql_field)};
	char buf[96];
	bool ok = false;
	if (!expect_punct(p, '{'))
		return false;
	if (++p->depth > WH_GQL_MAX_DEPTH) {
		fail(p, "selections nested deeper than %d", WH_GQL_MAX_DEPTH);
		goto out;
	}
	do {
		if (p->t != T_NAME) {
			fail(p, "Expected Name, found %s", describe(p, buf, sizeof(buf)));
			goto out;
		}
		if (!parse_field(p, vec_push(&sel)))
			goto out;
	} while (!p->failed && !at_punct(p, '}'));
	if (p->failed)
		goto out;
	next(p);
	if (p->failed || !merge_fields(p, (wh_gql_field *)sel.data, &sel.n))
		goto out;
	*out = arena_copy(p->doc, sel.data, (size_t)sel.n * sel.size);
	*n_out = sel.n;
	ok = true;
out:
	p->depth--;
	free(sel.data);
	return ok;
}

/* A type, copied as written without blanks: Name, [Type], either with '!'. */
static bool parse_type(struct parser *p, struct vec *text, int depth)
{
	if (depth > WH_GQL_MAX_VALUE_DEPTH) {
		fail(p, "types nested deeper than %d", WH_GQL_MAX_VALUE_DEPTH);
		return false;
	}
	if (at_punct(p, '[')) {
		*(char *)vec_push(text) = '[';
		next(p);
		if (!parse_type(p, text, depth + 1) || !expect_punct(p, ']'))
			return false;
		*(char *)vec_push(text) = ']';
	} else {
		const char *s = p->tok;
		size_t n = p->tok_len;
		if (!expect_name(p))
			return false;
		for (size_t i = 0; i < n; i++)
			*(char *)vec_push(text) = s[i];
	}
	if (at_punct(p, '!')) {
		*(char *)vec_push(text) = '!';
		next(p);
	}
	return !p->failed;
}

static bool parse_variables(struct parser *p, wh_gql_op *op)
{
	struct vec vars = {.size = sizeof(wh_gql_var)};
	struct vec text = {.size = 1};
	next(p); /* ( */
	do {
		wh_gql_var *v = vec_push(&vars);
		v->line = p->tline;
		v->col = p->tcol;
		if (!count_node(p) || !expect_punct(p, '$') || !(v->name = expect_name(p)) ||
		    !expect_punct(p, ':'))
			break;
		for (int i = 0; i < vars.n - 1; i++)
			if (strcmp(((wh_gql_var *)vars.data)[i].name, v->name) == 0) {
				fail_at(p, v->line, v->col,
				        "There can be only one variable named \"$%s\".", v->name);
				p->err->validation = true;
			}
		text.n = 0;
		if (!parse_type(p, &text, 0))
			break;
		v->type = arena_strndup(p->doc, text.data, (size_t)text.n);
		if (at_punct(p, '=')) {
			next(p);
			v->has_default = true;
			if (!parse_value(p, &v->def, true))
				break;
		}
		if (refuse_directive(p))
			break;
	} while (!p->failed && !at_punct(p, ')'));
	if (!p->failed) {
		op->n_vars = vars.n;
		op->vars = arena_copy(p->doc, vars.data, (size_t)vars.n * vars.size);
		next(p);
	}
	free(vars.data);
	free(text.data);
	return !p->failed;
}

static bool parse_operation(struct parser *p, wh_gql_op *op)
{
	char buf[96];
	op->line = p->tline;
	op->col = p->tcol;
	if (at_punct(p, '{'))
		return parse_selection_set(p, &op->sel, &op->n_sel);
	if (at_name(p, "query"))
		op->kind = WH_GQL_QUERY;
	else if (at_name(p, "mutation"))
		op->kind = WH_GQL_MUTATION;
	else if (at_name(p, "subscription"))
		op->kind = WH_GQL_SUBSCRIPTION;
	else if (at_name(p, "fragment"))
		fail(p, "fragments are not supported");
	else
		fail(p, "Unexpected %s", describe(p, buf, sizeof(buf)));
	if (p->failed)
		return false;
	next(p);
	if (p->t == T_NAME && !(op->name = expect_name(p)))
		return false;
	if (at_punct(p, '(') && !parse_variables(p, op))
		return false;
	if (refuse_directive(p))
		return false;
	return parse_selection_set(p, &op->sel, &op->n_sel);
}

int wh_gql_parse(const char *src, size_t len, wh_gql_doc **out, wh_gql_error *err)
{
	struct parser p;
	struct vec ops = {.size = sizeof(wh_gql_op)};
	memset(&p, 0, sizeof(p));
	memset(err, 0, sizeof(*err));
	*out = NULL;
	p.src = p.p = p.line_start = src;
	p.end = src + len;
	p.line = 1;
	p.err = err;
	p.sbuf.size = 1;
	p.doc = wh_calloc(1, sizeof(*p.doc));
	if (len > WH_GQL_MAX_LEN) {
		fail_at(&p, 0, 0, "the document is longer than %d bytes", WH_GQL_MAX_LEN);
	} else if (memchr(src, '\0', len)) {
		const char *z = memchr(src, '\0', len);
		fail_at(&p, 0, 0, "unexpected NUL byte at offset %zu", (size_t)(z - src));
	} else {
		next(&p);
		if (p.t == T_EOF && !p.failed)
			fail(&p, "Unexpected <EOF>");
		while (!p.failed && p.t != T_EOF) {
			wh_gql_op *op = vec_push(&ops);
			parse_operation(&p, op);
			for (int i = 0; !p.failed && op->name && i < ops.n - 1; i++)
				if (((wh_gql_op *)ops.data)[i].name &&
				    strcmp(((wh_gql_op *)ops.data)[i].name, op->name) == 0) {
					fail_at(&p, op->line, op->col,
					        "There can be only one operation named \"%s\".",
					        op->name);
					err->validation = true;
				}
		}
		/* An anonymous operation must be the only one. */
		for (int i = 0; !p.failed && ops.n > 1 && i < ops.n; i++)
			if (!((wh_gql_op *)ops.data)[i].name) {
				fail_at(
				    &p, ((wh_gql_op *)ops.data)[i].line,
				    ((wh_gql_op *)ops.data)[i].col,
				    "This anonymous operation must be the only defined operation.");
				err->validation = true;
			}
	}
	if (!p.failed) {
		p.doc->n_ops = ops.n;
		p.doc->ops = arena_copy(p.doc, ops.data, (size_t)ops.n * ops.size);
	}
	free(ops.data);
	free(p.sbuf.data);
	if (p.failed) {
		wh_gql_free(p.doc);
		return WH_EINVAL;
	}
	*out = p.doc;
	return 0;
}

const wh_gql_op *wh_gql_operation(const wh_gql_doc *doc, const char *name, wh_gql_error *err)
{
	memset(err, 0, sizeof(*err));
	err->validation = true;
	if (name && *name) {
		for (int i = 0; i < doc->n_ops; i++)
			if (doc->ops[i].name && strcmp(doc->ops[i].name, name) == 0)
				return &doc->ops[i];
		snprintf(err->message, sizeof(err->message), "operation %.200s not found", name);
		return NULL;
	}
	if (doc->n_ops == 1)
		return &doc->ops[0];
	snprintf(err->message, sizeof(err->message),
	         "must provide operation name if query contains multiple operations");
	return NULL;
}

/* ---- values ---- */

static int from_json(wh_gql_doc *doc, const cJSON *j, wh_gql_value *out, int depth)
{
	memset(out, 0, sizeof(*out));
	if (depth > WH_GQL_MAX_VALUE_DEPTH || ++doc->nodes > WH_GQL_MAX_NODES)
		return WH_EINVAL;
	if (cJSON_IsNull(j)) {
		out->kind = WH_GQL_NULL;
	} else if (cJSON_IsBool(j)) {
		out->kind = WH_GQL_BOOL;
		out->b = cJSON_IsTrue(j);
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		/* (No floor(): nothing here links libm.) */
		if (isfinite(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
		    (double)(int64_t)d == d) {
			out->kind = WH_GQL_INT;
			out->i = (int64_t)d;
		} else {
			out->kind = WH_GQL_FLOAT;
			out->f = d;
		}
	} else if (cJSON_IsString(j)) {
		out->kind = WH_GQL_STRING;
		out->len = strlen(j->valuestring);
		out->str = arena_strndup(doc, j->valuestring, out->len);
	} else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
		int n = cJSON_GetArraySize(j), i = 0;
		out->kind = cJSON_IsArray(j) ? WH_GQL_LIST : WH_GQL_OBJECT;
		out->n = n;
		out->items = n ? arena_alloc(doc, sizeof(*out->items) * (size_t)n) : NULL;
		if (out->kind == WH_GQL_OBJECT && n)
			out->keys = arena_alloc(doc, sizeof(*out->keys) * (size_t)n);
		const cJSON *c;
		cJSON_ArrayForEach(c, j)
		{
			if (out->keys)
				out->keys[i] = arena_strndup(doc, c->string ? c->string : "",
				                             strlen(c->string ? c->string : ""));
			int rc = from_json(doc, c, &out->items[i], depth + 1);
			if (rc < 0)
				return rc;
			i++;
		}
	} else {
		return WH_EINVAL;
	}
	return 0;
}

int wh_gql_from_json(wh_gql_doc *doc, const cJSON *j, wh_gql_value *out)
{
	return from_json(doc, j, out, 0);
}

bool wh_gql_value_eq(const wh_gql_value *a, const wh_gql_value *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case WH_GQL_NULL:
		return true;
	case WH_GQL_INT:
		return a->i == b->i;
	case WH_GQL_FLOAT:
		return a->f == b->f;
	case WH_GQL_BOOL:
		return a->b == b->b;
	case WH_GQL_STRING:
		return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
	case WH_GQL_ENUM:
	case WH_GQL_VAR:
		return strcmp(a->str, b->str) == 0;
	case WH_GQL_LIST:
		if (a->n != b->n)
			return false;
		for (int i = 0; i < a->n; i++)
			if (!wh_gql_value_eq(&a->items[i], &b->items[i]))
				return false;
		return true;
	case WH_GQL_OBJECT:
		if (a->n != b->n)
			return false;
		for (int i = 0; i < a->n; i++) {
			int j = 0;
			while (j < b->n && strcmp(a->keys[i], b->keys[j]) != 0)
				j++;
			if (j == b->n || !wh_gql_value_eq(&a->items[i], &b->items[j]))
				return false;
		}
		return true;
	}
	return false;
}
