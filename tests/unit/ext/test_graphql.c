/* Unit tests for src/ext/graphql.c: the GraphQL subset the search extension
 * parses, what it refuses, and where it says the error is. */
#include "check.h"

#include "wharf/base/common.h"
#include "wharf/ext/graphql.h"

#include <stdlib.h>
#include <string.h>

static wh_gql_doc *parse(const char *src)
{
	wh_gql_doc *doc = NULL;
	wh_gql_error err;
	if (wh_gql_parse(src, strlen(src), &doc, &err) != 0) {
		fprintf(stderr, "unexpected parse error %d:%d: %s\n  in: %s\n", err.line, err.col,
		        err.message, src);
		return NULL;
	}
	return doc;
}

/* Refused: the message contains want, at line:col (0: not checked). */
static bool refused(const char *src, size_t len, const char *want, int line, int col)
{
	wh_gql_doc *doc = (wh_gql_doc *)1;
	wh_gql_error err;
	int rc = wh_gql_parse(src, len, &doc, &err);
	bool ok = rc == WH_EINVAL && doc == NULL && strstr(err.message, want) &&
	          (line == 0 || (err.line == line && err.col == col));
	if (!ok)
		fprintf(stderr, "refused(%s): rc %d, \"%s\" at %d:%d\n", src, rc,
		        rc ? err.message : "", err.line, err.col);
	wh_gql_free(rc == 0 ? doc : NULL);
	return ok;
}

#define REFUSED(src, want, line, col) CHECK(refused(src, strlen(src), want, line, col))

static const wh_gql_field *field(const wh_gql_field *sel, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(wh_gql_key(&sel[i]), key) == 0)
			return &sel[i];
	return NULL;
}

static const wh_gql_value *arg(const wh_gql_field *f, const char *name)
{
	for (int i = 0; f && i < f->n_args; i++)
		if (strcmp(f->args[i].name, name) == 0)
			return &f->args[i].value;
	return NULL;
}

static const wh_gql_value *member(const wh_gql_value *o, const char *key)
{
	for (int i = 0; o && o->kind == WH_GQL_OBJECT && i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return &o->items[i];
	return NULL;
}

/* zui's GlobalSearch, as its api.js writes it (row 1 of §8). */
static void test_zui_query(void)
{
	const char *q =
	    "{\n"
	    "  GlobalSearch(query:\"alp\", requestedPage: {limit:10 offset:0 "
	    "sortBy:DOWNLOADS}, filter: {Os:[\"linux\"] Arch:[\"amd64\", \"arm64\"] "
	    "HasToBeSigned:false}) {\n"
	    "    Page {TotalCount ItemCount}\n"
	    "    Repos {Name LastUpdated Size Platforms { Os Arch } IsStarred IsBookmarked\n"
	    "      NewestImage { Tag Vulnerabilities {MaxSeverity Count} Description IsSigned\n"
	    "        SignatureInfo { Tool IsTrusted Author } Licenses Vendor Labels }\n"
	    "      StarCount DownloadCount}\n"
	    "  }\n"
	    "}";
	wh_gql_doc *doc = parse(q);
	CHECK(doc && doc->n_ops == 1);
	if (!doc)
		return;
	const wh_gql_op *op = &doc->ops[0];
	CHECK(op->kind == WH_GQL_QUERY && !op->name && op->n_vars == 0 && op->n_sel == 1);
	const wh_gql_field *gs = field(op->sel, op->n_sel, "GlobalSearch");
	CHECK(gs && gs->n_args == 3 && gs->n_sel == 2 && gs->line == 2 && gs->col == 3);
	const wh_gql_value *v = arg(gs, "query");
	CHECK(v && v->kind == WH_GQL_STRING && strcmp(v->str, "alp") == 0 && v->len == 3);
	const wh_gql_value *page = arg(gs, "requestedPage");
	CHECK(page && page->kind == WH_GQL_OBJECT && page->n == 3);
	CHECK(member(page, "limit") && member(page, "limit")->kind == WH_GQL_INT &&
	      member(page, "limit")->i == 10);
	CHECK(member(page, "sortBy") && member(page, "sortBy")->kind == WH_GQL_ENUM &&
	      strcmp(member(page, "sortBy")->str, "DOWNLOADS") == 0);
	const wh_gql_value *filter = arg(gs, "filter");
	const wh_gql_value *arch = member(filter, "Arch");
	CHECK(arch && arch->kind == WH_GQL_LIST && arch->n == 2 &&
	      strcmp(arch->items[1].str, "arm64") == 0);
	CHECK(member(filter, "HasToBeSigned")->kind == WH_GQL_BOOL &&
	      !member(filter, "HasToBeSigned")->b);
	const wh_gql_field *repos = field(gs->sel, gs->n_sel, "Repos");
	CHECK(repos && repos->n_sel == 9);
	const wh_gql_field *newest = field(repos->sel, repos->n_sel, "NewestImage");
	CHECK(newest && newest->n_sel == 8);
	const wh_gql_field *si = field(newest->sel, newest->n_sel, "SignatureInfo");
	CHECK(si && si->n_sel == 3 && field(si->sel, si->n_sel, "Author") &&
	      !field(si->sel, si->n_sel, "Author")->sel);
	wh_gql_free(doc);
}

static void test_operations_and_variables(void)
{
	const char *q = "# a comment, then a BOM-less document\n"
	                "query Search($q: String!, $page: PageInput = {limit: 5, sortBy: "
	                "RELEVANCE}, $types: [String!]) {\n"
	                "  found: GlobalSearch(query: $q, requestedPage: $page) { Page { "
	                "TotalCount } }\n"
	                "}\n"
	                "query Other { ImageList(repo: \"\") { Results { Tag } } }";
	wh_gql_doc *doc = parse(q);
	CHECK(doc && doc->n_ops == 2);
	if (!doc)
		return;
	wh_gql_error err;
	const wh_gql_op *op = wh_gql_operation(doc, "Search", &err);
	CHECK(op && strcmp(op->name, "Search") == 0 && op->n_vars == 3);
	CHECK(strcmp(op->vars[0].name, "q") == 0 && strcmp(op->vars[0].type, "String!") == 0 &&
	      !op->vars[0].has_default);
	CHECK(strcmp(op->vars[1].type, "PageInput") == 0 && op->vars[1].has_default &&
	      op->vars[1].def.kind == WH_GQL_OBJECT && member(&op->vars[1].def, "limit")->i == 5);
	CHECK(strcmp(op->vars[2].type, "[String!]") == 0);
	const wh_gql_field *f = field(op->sel, op->n_sel, "found");
	CHECK(f && strcmp(f->name, "GlobalSearch") == 0 && strcmp(f->alias, "found") == 0);
	CHECK(arg(f, "query")->kind == WH_GQL_VAR && strcmp(arg(f, "query")->str, "q") == 0);
	CHECK(wh_gql_operation(doc, "Other", &err) == &doc->ops[1]);
	CHECK(!wh_gql_operation(doc, NULL, &err) && strstr(err.message, "operation name"));
	CHECK(!wh_gql_operation(doc, "Nope", &err) && strstr(err.message, "not found"));
	wh_gql_free(doc);

	doc = parse("mutation M { x }");
	CHECK(doc && doc->ops[0].kind == WH_GQL_MUTATION);
	wh_gql_free(doc);
	doc = parse("\xEF\xBB\xBF{ a, b, , c }");
	CHECK(doc && doc->ops[0].n_sel == 3 && !wh_gql_operation(doc, "x", &err));
	CHECK(doc && wh_gql_operation(doc, "", &err) == &doc->ops[0]);
	wh_gql_free(doc);
}

static void test_values(void)
{
	wh_gql_doc *doc = parse("{ f(a: -12, b: 0, c: 1.5e3, d: -0.25, e: true, g: null, h: "
	                        "ENUM_X, i: [], j: {}, k: [[1], [2, [3]]], "
	                        "l: \"tab\\there \\\"q\\\" \\\\ \\/ \\u00e9 \\ud83d\\ude00 é\", "
	                        "m: 9223372036854775807, n: -9223372036854775808) }");
	CHECK(doc != NULL);
	if (!doc)
		return;
	const wh_gql_field *f = &doc->ops[0].sel[0];
	CHECK(arg(f, "a")->kind == WH_GQL_INT && arg(f, "a")->i == -12);
	CHECK(arg(f, "b")->kind == WH_GQL_INT && arg(f, "b")->i == 0);
	CHECK(arg(f, "c")->kind == WH_GQL_FLOAT && arg(f, "c")->f == 1500.0);
	CHECK(arg(f, "d")->kind == WH_GQL_FLOAT && arg(f, "d")->f == -0.25);
	CHECK(arg(f, "e")->kind == WH_GQL_BOOL && arg(f, "e")->b);
	CHECK(arg(f, "g")->kind == WH_GQL_NULL);
	CHECK(arg(f, "h")->kind == WH_GQL_ENUM && strcmp(arg(f, "h")->str, "ENUM_X") == 0);
	CHECK(arg(f, "i")->kind == WH_GQL_LIST && arg(f, "i")->n == 0);
	CHECK(arg(f, "j")->kind == WH_GQL_OBJECT && arg(f, "j")->n == 0);
	const wh_gql_value *k = arg(f, "k");
	CHECK(k->n == 2 && k->items[1].n == 2 && k->items[1].items[1].items[0].i == 3);
	CHECK_STREQ(arg(f, "l")->str, "tab\there \"q\" \\ / \xC3\xA9 \xF0\x9F\x98\x80 \xC3\xA9");
	CHECK(arg(f, "m")->i == INT64_MAX && arg(f, "n")->i == INT64_MIN);
	wh_gql_free(doc);
}

static void test_merging(void)
{
	/* The same key twice: one field, selections joined. */
	wh_gql_doc *doc = parse("{ a { x } b a { y x } c: b }");
	CHECK(doc && doc->ops[0].n_sel == 3);
	if (doc) {
		const wh_gql_field *a = field(doc->ops[0].sel, doc->ops[0].n_sel, "a");
		CHECK(a && a->n_sel == 2 && strcmp(a->sel[0].name, "x") == 0 &&
		      strcmp(a->sel[1].name, "y") == 0);
	}
	wh_gql_free(doc);
	doc = parse("{ f(a: {x: 1, y: [2]}) f(a: {y: [2], x: 1}) }");
	CHECK(doc && doc->ops[0].n_sel == 1);
	wh_gql_free(doc);
	wh_gql_error err;
	CHECK(wh_gql_parse("{ a: b a: c }", 13, &doc, &err) == WH_EINVAL && err.validation &&
	      strstr(err.message, "different fields"));
	CHECK(wh_gql_parse("{ f(a: 1) f(a: 2) }", 19, &doc, &err) == WH_EINVAL && err.validation &&
	      strstr(err.message, "differing arguments"));
	CHECK(wh_gql_parse("{ f f { x } }", 13, &doc, &err) == WH_EINVAL && err.validation);
}

static void test_refused(void)
{
	REFUSED("", "Unexpected <EOF>", 1, 1);
	REFUSED("  # only a comment\n", "Unexpected <EOF>", 2, 1);
	REFUSED("{", "Expected Name, found <EOF>", 1, 2);
	REFUSED("{ }", "Expected Name, found \"}\"", 1, 3);
	REFUSED("{ a(x: 1 }", "Expected Name", 1, 10);
	REFUSED("{ a(x 1) }", "Expected \":\", found Int", 1, 7);
	REFUSED("{ a(x: ) }", "Unexpected \")\"", 1, 8);
	REFUSED("{ a }\n{ b }", "anonymous operation", 0, 0);
	REFUSED("query Q { a } query Q { b }", "only one operation named", 0, 0);
	REFUSED("{ a(x: 1, x: 2) }", "only one argument named \"x\"", 1, 11);
	REFUSED("{ a(x: {k: 1, k: 2}) }", "only one input field named \"k\"", 1, 15);
	REFUSED("query ($a: Int, $a: Int) { x }", "only one variable named", 0, 0);
	REFUSED("query { a(x: $v) } fragment F on T { a }", "fragments are not supported", 0, 0);
	REFUSED("{ ...F }", "fragments are not supported", 1, 3);
	REFUSED("{ ... on T { a } }", "fragments are not supported", 1, 3);
	REFUSED("{ a @skip(if: true) }", "directives are not supported", 1, 5);
	REFUSED("{ a(x: \"\"\"block\"\"\") }", "block strings", 1, 8);
	REFUSED("{ a(x: \"open) }", "unterminated string", 1, 8);
	REFUSED("{ a(x: \"line\nbreak\") }", "unterminated string", 1, 8);
	REFUSED("{ a(x: \"\\q\") }", "invalid escape", 1, 9);
	REFUSED("{ a(x: \"\\u00\") }", "invalid escape", 0, 0);
	REFUSED("{ a(x: \"\\u0000\") }", "\\u0000", 0, 0);
	REFUSED("{ a(x: \"\\ud800\") }", "surrogate", 0, 0);
	REFUSED("{ a(x: \"\\udc00x\") }", "surrogate", 0, 0);
	REFUSED("{ a(x: \"\x01\") }", "invalid character within a string", 1, 9);
	REFUSED("{ a(x: \"\xff\") }", "invalid UTF-8", 1, 9);
	REFUSED("{ a(x: \"\xc0\xaf\") }", "invalid UTF-8", 0, 0);     /* overlong */
	REFUSED("{ a(x: \"\xed\xa0\x80\") }", "invalid UTF-8", 0, 0); /* a surrogate */
	REFUSED("{ a(x: 9223372036854775808) }", "out of range", 0, 0);
	REFUSED("{ a(x: 0123) }", "unexpected digit after 0", 0, 0);
	REFUSED("{ a(x: 1.) }", "after '.'", 0, 0);
	REFUSED("{ a(x: 1e) }", "exponent", 0, 0);
	REFUSED("{ a(x: 12ab) }", "unexpected character 'a'", 0, 0);
	REFUSED("{ a(x: -) }", "after '-'", 0, 0);
	REFUSED("{ a(x: [1, 2) }", "Unexpected \")\"", 0, 0);
	REFUSED("query ($v: Int = $w) { a }", "variable in a constant", 0, 0);
	REFUSED("query ($v Int) { a }", "Expected \":\"", 0, 0);
	REFUSED("query ($v: [Int) { a }", "Expected \"]\"", 0, 0);
	REFUSED("subscriptionX { a }", "Unexpected Name \"subscriptionX\"", 1, 1);
	REFUSED("{ a } }", "Unexpected \"}\"", 1, 7);
	REFUSED("{ a ^ }", "unexpected character '^'", 1, 5);
	REFUSED("{ a \x7f }", "unexpected character 0x7f", 1, 5);
	REFUSED("{ a\r\n b\r\n ^ }", "unexpected character", 3, 2);
	CHECK(refused("{ a\0 }", 6, "NUL", 0, 0));
}

static void test_limits(void)
{
	char *big = wh_malloc(WH_GQL_MAX_LEN + 2);
	memset(big, ' ', WH_GQL_MAX_LEN + 1);
	memcpy(big, "{a}", 3);
	big[WH_GQL_MAX_LEN + 1] = '\0';
	CHECK(refused(big, WH_GQL_MAX_LEN + 1, "longer than", 0, 0));
	/* Just at the limit: parsed. */
	wh_gql_doc *doc = NULL;
	wh_gql_error err;
	CHECK(wh_gql_parse(big, WH_GQL_MAX_LEN, &doc, &err) == 0);
	wh_gql_free(doc);
	free(big);

	/* Selection depth: WH_GQL_MAX_DEPTH levels pass, one more does not. */
	char q[1024];
	for (int depth = WH_GQL_MAX_DEPTH; depth <= WH_GQL_MAX_DEPTH + 1; depth++) {
		size_t n = 0;
		for (int i = 0; i < depth - 1; i++)
			n += (size_t)snprintf(q + n, sizeof(q) - n, "{ f%d ", i);
		n += (size_t)snprintf(q + n, sizeof(q) - n, "{ leaf ");
		for (int i = 0; i < depth; i++)
			n += (size_t)snprintf(q + n, sizeof(q) - n, "}");
		if (depth == WH_GQL_MAX_DEPTH) {
			doc = parse(q);
			CHECK(doc != NULL);
			wh_gql_free(doc);
		} else {
			REFUSED(q, "nested deeper", 0, 0);
		}
	}
	/* Value depth. */
	size_t n = (size_t)snprintf(q, sizeof(q), "{ f(a: ");
	for (int i = 0; i < WH_GQL_MAX_VALUE_DEPTH + 1; i++)
		q[n++] = '[';
	for (int i = 0; i < WH_GQL_MAX_VALUE_DEPTH + 1; i++)
		q[n++] = ']';
	snprintf(q + n, sizeof(q) - n, ") }");
	REFUSED(q, "values nested deeper", 0, 0);

	/* Node count: a flat list of many values. */
	size_t cap = 8 * (WH_GQL_MAX_NODES + 10) + 64;
	char *wide = wh_malloc(cap);
	n = (size_t)snprintf(wide, cap, "{ f(a: [");
	for (int i = 0; i < WH_GQL_MAX_NODES + 1; i++)
		n += (size_t)snprintf(wide + n, cap - n, "%d,", i % 10);
	snprintf(wide + n, cap - n, "]) }");
	REFUSED(wide, "nodes", 0, 0);
	free(wide);

	/* A name over WH_GQL_MAX_NAME bytes. */
	char name[WH_GQL_MAX_NAME + 16];
	memset(name, 'a', sizeof(name));
	memcpy(name, "{ ", 2);
	memcpy(name + WH_GQL_MAX_NAME + 3, " }", 3);
	REFUSED(name, "name longer", 0, 0);
}

static void test_json_values(void)
{
	wh_gql_doc *doc = parse("{ a }");
	cJSON *j = cJSON_Parse("{\"q\": \"x\", \"n\": 3, \"f\": 2.5, \"b\": false, \"z\": null, "
	                       "\"l\": [1, {\"k\": \"v\"}], \"big\": 1e300}");
	wh_gql_value v;
	CHECK(doc && j && wh_gql_from_json(doc, j, &v) == 0);
	CHECK(v.kind == WH_GQL_OBJECT && v.n == 7);
	CHECK(member(&v, "q")->kind == WH_GQL_STRING && strcmp(member(&v, "q")->str, "x") == 0);
	CHECK(member(&v, "n")->kind == WH_GQL_INT && member(&v, "n")->i == 3);
	CHECK(member(&v, "f")->kind == WH_GQL_FLOAT && member(&v, "f")->f == 2.5);
	CHECK(member(&v, "b")->kind == WH_GQL_BOOL && !member(&v, "b")->b);
	CHECK(member(&v, "z")->kind == WH_GQL_NULL);
	CHECK(member(&v, "l")->n == 2 &&
	      member(&member(&v, "l")->items[1], "k")->kind == WH_GQL_STRING);
	CHECK(member(&v, "big")->kind == WH_GQL_FLOAT);
	cJSON_Delete(j);
	/* Too deep. */
	char deep[256];
	size_t n = 0;
	for (int i = 0; i < WH_GQL_MAX_VALUE_DEPTH + 2; i++)
		deep[n++] = '[';
	for (int i = 0; i < WH_GQL_MAX_VALUE_DEPTH + 2; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	j = cJSON_Parse(deep);
	CHECK(j && wh_gql_from_json(doc, j, &v) == WH_EINVAL);
	cJSON_Delete(j);
	wh_gql_free(doc);
}

int main(void)
{
	test_zui_query();
	test_operations_and_variables();
	test_values();
	test_merging();
	test_refused();
	test_limits();
	test_json_values();
	CHECK_DONE();
}
