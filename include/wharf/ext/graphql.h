/* GraphQL documents: a parser of our own for the part of the language that
 * the search extension answers (Zot's /v2/_zot/ext/search, what zui sends).
 *
 * Accepted: one or more operations, each `query`, `mutation` or
 * `subscription` (named or not) or an anonymous `{ ... }` shorthand;
 * variable definitions with their types (named, list, non-null) and
 * default values; fields with an optional alias, arguments, and nested
 * selection sets; values of every literal kind (int, float, string,
 * boolean, null, enum, list, object) and `$variables`. Whitespace, commas,
 * comments and a leading byte order mark are skipped, as the specification
 * says.
 *
 * Refused with a message (a syntax error, for the caller's 422): fragments
 * (`fragment`, `...`), directives (`@`), block strings (`"""`), strings
 * with control characters, invalid UTF-8, `\u0000` or a lone surrogate, an
 * integer out of the int64 range, and any document over the limits below.
 * The executor (search.c) checks the rest against its schema.
 *
 * After parsing, the fields of each selection set that share a response
 * key (alias, or name) are merged into one, their selections joined, as
 * the specification's field merging asks; two such fields with different
 * names or arguments are an error (`validation` set).
 *
 * Every string is NUL-terminated, every pointer into the document's own
 * memory: it lives until wh_gql_free. Pure: no I/O, no state. */
#ifndef WHARF_GRAPHQL_H
#define WHARF_GRAPHQL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits: a document longer than WH_GQL_MAX_LEN bytes, selection sets
 * nested deeper than WH_GQL_MAX_DEPTH, values (lists and objects) nested
 * deeper than WH_GQL_MAX_VALUE_DEPTH, or more than WH_GQL_MAX_NODES fields,
 * arguments, values and variables in all is refused. zui's largest query is
 * about 1 KiB, 6 levels deep, 80 nodes. */
#define WH_GQL_MAX_LEN         (64 * 1024)
#define WH_GQL_MAX_DEPTH       16
#define WH_GQL_MAX_VALUE_DEPTH 16
#define WH_GQL_MAX_NODES       8192
#define WH_GQL_MAX_NAME        256 /* bytes of a name */

typedef enum wh_gql_kind {
	WH_GQL_NULL,
	WH_GQL_INT,    /* i */
	WH_GQL_FLOAT,  /* f, and str as written */
	WH_GQL_STRING, /* str, decoded; len bytes (no NUL inside) */
	WH_GQL_BOOL,   /* b */
	WH_GQL_ENUM,   /* str: the name */
	WH_GQL_LIST,   /* items[n] */
	WH_GQL_OBJECT, /* keys[n], items[n] */
	WH_GQL_VAR,    /* str: the variable's name, without '$' */
} wh_gql_kind;

typedef struct wh_gql_value wh_gql_value;
struct wh_gql_value {
	wh_gql_kind kind;
	const char *str;
	size_t len;
	int64_t i;
	double f;
	bool b;
	int n;
	wh_gql_value *items;
	const char **keys;
	int line, col; /* where it starts, 1-based (columns in bytes) */
};

typedef struct wh_gql_arg {
	const char *name;
	wh_gql_value value;
} wh_gql_arg;

typedef struct wh_gql_field wh_gql_field;
struct wh_gql_field {
	const char *alias; /* NULL when none */
	const char *name;
	wh_gql_arg *args;
	int n_args;
	wh_gql_field *sel; /* the selection set, n_sel > 0; NULL, 0: none (a leaf) */
	int n_sel;
	int line, col;
	int id; /* 0 after parsing: the executor's (what the field resolves to) */
};

/* The key a field's value has in the answer: its alias, else its name. */
static inline const char *wh_gql_key(const wh_gql_field *f)
{
	return f->alias ? f->alias : f->name;
}

/* A variable definition: `$name: Type = default`. */
typedef struct wh_gql_var {
	const char *name;
	const char *type; /* as written, without blanks: "String!", "[String!]", "PageInput" */
	bool has_default;
	wh_gql_value def;
	int line, col;
} wh_gql_var;

typedef enum wh_gql_op_kind {
	WH_GQL_QUERY,
	WH_GQL_MUTATION,
	WH_GQL_SUBSCRIPTION,
} wh_gql_op_kind;

typedef struct wh_gql_op {
	wh_gql_op_kind kind;
	const char *name; /* NULL: anonymous */
	wh_gql_var *vars;
	int n_vars;
	wh_gql_field *sel;
	int n_sel;
	int line, col;
} wh_gql_op;

typedef struct wh_gql_chunk wh_gql_chunk; /* the document's memory */

typedef struct wh_gql_doc {
	wh_gql_op *ops;
	int n_ops;
	wh_gql_chunk *mem;
	int nodes; /* fields, arguments, values and variables, counted */
} wh_gql_doc;

/* Why a document was refused: message, and where (line and column, 1-based;
 * 0 when it is about the whole document). validation: the text parses,
 * but what it says cannot be (conflicting fields). */
typedef struct wh_gql_error {
	char message[256];
	int line, col;
	bool validation;
} wh_gql_error;

/* Parse len bytes of src (NULs inside are an error). 0 and *out (free with
 * wh_gql_free), or WH_EINVAL with *out NULL and err filled. */
int wh_gql_parse(const char *src, size_t len, wh_gql_doc **out, wh_gql_error *err);
void wh_gql_free(wh_gql_doc *doc);

/* The operation to run: the one called name, or, when name is NULL or "",
 * the only one. NULL, with err filled (validation), when there is no such
 * operation or several and no name. */
const wh_gql_op *wh_gql_operation(const wh_gql_doc *doc, const char *name, wh_gql_error *err);

/* A JSON value (a request's `variables`) as a GraphQL value, in the
 * document's memory: numbers that are integers in int64's range are INT,
 * others FLOAT; strings with a NUL byte, and anything nested deeper than
 * WH_GQL_MAX_VALUE_DEPTH or past WH_GQL_MAX_NODES in all, are refused
 * (WH_EINVAL). */
int wh_gql_from_json(wh_gql_doc *doc, const cJSON *j, wh_gql_value *out);

/* True when a and b are the same value (variables by name). */
bool wh_gql_value_eq(const wh_gql_value *a, const wh_gql_value *b);

#endif
