/* The GraphQL parser of src/ext/graphql.c, which reads what a client sends
 * to /v2/_zot/ext/search (a GET's ?query=, a POST's "query"). An input
 * whose first byte is 0x01 is, after it, a request's `variables` JSON
 * instead, through wh_gql_from_json.
 *
 * Oracle, besides the sanitizers: a refused document leaves nothing and
 * says why (a terminated message, a position inside the input); an
 * accepted one is what graphql.h promises: names of the grammar, strings
 * of their length without NULs and valid UTF-8, every selection set
 * non-empty with unique response keys (merged), within the limits. */
#include "fuzz.h"

#include <stdbool.h>

#include "wharf/base/common.h"
#include "wharf/ext/graphql.h"

static int nodes;

static bool name_ok(const char *s)
{
	if (!s || !*s || strlen(s) > WH_GQL_MAX_NAME)
		return false;
	for (const char *c = s; *c; c++) {
		bool alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_';
		if (!alpha && !(c != s && *c >= '0' && *c <= '9'))
			return false;
	}
	return true;
}

static bool utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len = c < 0x80             ? 1
		             : (c & 0xE0) == 0xC0 ? 2
		             : (c & 0xF0) == 0xE0 ? 3
		             : (c & 0xF8) == 0xF0 ? 4
		                                  : 0;
		if (len == 0 || i + len > n)
			return false;
		for (size_t k = 1; k < len; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += len;
	}
	return true;
}

static void check_value(const wh_gql_value *v, int depth, bool from_json)
{
	nodes++;
	FUZZ_ASSERT(depth <= WH_GQL_MAX_VALUE_DEPTH + 1);
	switch (v->kind) {
	case WH_GQL_STRING:
		FUZZ_ASSERT(v->str && strlen(v->str) == v->len);
		/* A client's JSON strings are taken as cJSON decodes them. */
		FUZZ_ASSERT(from_json || utf8_ok((const unsigned char *)v->str, v->len));
		break;
	case WH_GQL_ENUM:
	case WH_GQL_VAR:
		FUZZ_ASSERT(name_ok(v->str));
		break;
	case WH_GQL_FLOAT:
		FUZZ_ASSERT(from_json || v->str);
		break;
	case WH_GQL_LIST:
	case WH_GQL_OBJECT:
		FUZZ_ASSERT(v->n >= 0 && (v->n == 0 || v->items));
		for (int i = 0; i < v->n; i++) {
			if (v->kind == WH_GQL_OBJECT) {
				FUZZ_ASSERT(v->keys && v->keys[i]);
				FUZZ_ASSERT(from_json || name_ok(v->keys[i]));
				for (int j = 0; !from_json && j < i; j++)
					FUZZ_ASSERT(strcmp(v->keys[i], v->keys[j]) != 0);
			}
			check_value(&v->items[i], depth + 1, from_json);
		}
		break;
	case WH_GQL_NULL:
	case WH_GQL_INT:
	case WH_GQL_BOOL:
		break;
	default:
		FUZZ_ASSERT(!"a value of no kind");
	}
}

static void check_selection(const wh_gql_field *sel, int n, int depth)
{
	FUZZ_ASSERT(n > 0 && sel);
	FUZZ_ASSERT(depth <= WH_GQL_MAX_DEPTH);
	for (int i = 0; i < n; i++) {
		const wh_gql_field *f = &sel[i];
		nodes++;
		FUZZ_ASSERT(name_ok(f->name) && (!f->alias || name_ok(f->alias)));
		FUZZ_ASSERT(f->line >= 1 && f->col >= 1);
		for (int j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(wh_gql_key(f), wh_gql_key(&sel[j])) != 0);
		for (int a = 0; a < f->n_args; a++) {
			nodes++;
			FUZZ_ASSERT(name_ok(f->args[a].name));
			for (int b = 0; b < a; b++)
				FUZZ_ASSERT(strcmp(f->args[a].name, f->args[b].name) != 0);
			check_value(&f->args[a].value, 1, false);
		}
		if (f->sel || f->n_sel)
			check_selection(f->sel, f->n_sel, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wh_gql_doc *doc = NULL;
	wh_gql_error err;
	if (size > 0 && data[0] == 0x01) {
		char *text = fuzz_strndup(data + 1, size - 1);
		cJSON *j = cJSON_ParseWithLength(text, size - 1);
		FUZZ_ASSERT(wh_gql_parse("{a}", 3, &doc, &err) == 0);
		wh_gql_value v;
		if (j && wh_gql_from_json(doc, j, &v) == 0) {
			nodes = 0;
			check_value(&v, 0, true);
		}
		cJSON_Delete(j);
		wh_gql_free(doc);
		free(text);
		return 0;
	}
	int rc = wh_gql_parse((const char *)data, size, &doc, &err);
	if (rc != 0) {
		FUZZ_ASSERT(rc == WH_EINVAL && doc == NULL);
		FUZZ_ASSERT(memchr(err.message, '\0', sizeof(err.message)) && err.message[0]);
		FUZZ_ASSERT(err.line >= 0 && err.col >= 0);
		/* A position is inside the input (or just past its end). */
		FUZZ_ASSERT(err.line <= (int)size + 1 && err.col <= (int)size + 1);
		return 0;
	}
	FUZZ_ASSERT(size <= WH_GQL_MAX_LEN && doc && doc->n_ops >= 1);
	nodes = 0;
	for (int i = 0; i < doc->n_ops; i++) {
		const wh_gql_op *op = &doc->ops[i];
		FUZZ_ASSERT(!op->name || name_ok(op->name));
		FUZZ_ASSERT(doc->n_ops == 1 || op->name);
		for (int v = 0; v < op->n_vars; v++) {
			nodes++;
			FUZZ_ASSERT(name_ok(op->vars[v].name) && op->vars[v].type &&
			            op->vars[v].type[0]);
			if (op->vars[v].has_default) {
				check_value(&op->vars[v].def, 1, false);
				FUZZ_ASSERT(op->vars[v].def.kind != WH_GQL_VAR);
			}
		}
		check_selection(op->sel, op->n_sel, 1);
		wh_gql_error e2;
		FUZZ_ASSERT(wh_gql_operation(doc, op->name, &e2) ==
		            (op->name || doc->n_ops == 1 ? op : NULL));
	}
	/* Merging only removes nodes: what is left was counted while parsing. */
	FUZZ_ASSERT(nodes <= doc->nodes && doc->nodes <= WH_GQL_MAX_NODES);
	wh_gql_free(doc);
	return 0;
}
