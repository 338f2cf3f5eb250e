/* YAML to cJSON, for configuration files. See include/wharf/base/yaml.h. */
#include "wharf/base/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "wharf/base/common.h"

#define DEPTH_MAX 64

struct anchor {
	char *name;
	cJSON *node; /* owned: a copy, duplicated at each alias */
	int size;    /* nodes in it */
};

struct reader {
	yaml_parser_t parser;
	struct anchor *anchors;
	int n_anchors, cap_anchors;
	int nodes; /* made so far, aliases' copies included */
	char *err;
	size_t errlen;
};

static int fail(struct reader *r, const char *what, const yaml_mark_t *mark)
{
	if (r->err && r->errlen) {
		if (mark)
			snprintf(r->err, r->errlen, "invalid YAML: %s at line %zu, column %zu",
			         what, mark->line + 1, mark->column + 1);
		else
			snprintf(r->err, r->errlen, "invalid YAML: %s", what);
	}
	return WH_EINVAL;
}

static bool is_plain_null(const char *s)
{
	return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	       strcmp(s, "NULL") == 0;
}

/* YAML 1.2's core schema, which go-yaml v3 follows for plain scalars. */
static cJSON *plain_scalar(const char *s)
{
	if (is_plain_null(s))
		return cJSON_CreateNull();
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
		return cJSON_CreateTrue();
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
		return cJSON_CreateFalse();
	const char *p = s;
	if (*p == '+' || *p == '-')
		p++;
	if (*p >= '0' && *p <= '9') {
		char *end;
		errno = 0;
		if (p[0] == '0' && (p[1] == 'o' || p[1] == 'x')) {
			long long v = strtoll(p + 2, &end, p[1] == 'o' ? 8 : 16);
			if (!errno && !*end && end != p + 2)
				return cJSON_CreateNumber((double)(*s == '-' ? -v : v));
		} else {
			double v = strtod(s, &end);
			/* Digits, a point, an exponent: nothing else ("1h" is a string). */
			if (!errno && !*end && strspn(s, "+-0123456789.eE") == strlen(s) &&
			    isfinite(v))
				return cJSON_CreateNumber(v);
		}
	}
	return cJSON_CreateString(s);
}

static int count(const cJSON *n)
{
	int c = 1;
	for (const cJSON *k = n->child; k; k = k->next)
		c += count(k);
	return c;
}

static int node(struct reader *r, yaml_event_t *ev, int depth, cJSON **out);

/* The event that starts a node is in ev (consumed here). */
static int collection(struct reader *r, yaml_event_t *ev, int depth, cJSON **out)
{
	bool map = ev->type == YAML_MAPPING_START_EVENT;
	yaml_event_type_t end = map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
	yaml_mark_t start = ev->start_mark;
	int rc = 0;

	if (depth > DEPTH_MAX)
		return fail(r, "nested too deeply", &start);
	cJSON *c = map ? cJSON_CreateObject() : cJSON_CreateArray();
	for (;;) {
		yaml_event_t e;
		if (!yaml_parser_parse(&r->parser, &e)) {
			rc = fail(r, r->parser.problem ? r->parser.problem : "syntax error",
			          &r->parser.problem_mark);
			break;
		}
		if (e.type == end) {
			yaml_event_delete(&e);
			break;
		}
		char *key = NULL;
		if (map) {
			if (e.type != YAML_SCALAR_EVENT) {
				rc = fail(r, "a mapping key must be a scalar", &e.start_mark);
				yaml_event_delete(&e);
				break;
			}
			key = wh_strdup((const char *)e.data.scalar.value);
			yaml_event_delete(&e);
			if (!yaml_parser_parse(&r->parser, &e)) {
				free(key);
				rc = fail(r, r->parser.problem ? r->parser.problem : "syntax error",
				          &r->parser.problem_mark);
				break;
			}
		}
		cJSON *v = NULL;
		rc = node(r, &e, depth + 1, &v);
		if (rc) {
			free(key);
			break;
		}
		if (map) {
			cJSON_AddItemToObject(c, key, v);
			free(key);
		} else {
			cJSON_AddItemToArray(c, v);
		}
	}
	if (rc) {
		cJSON_Delete(c);
		return rc;
	}
	*out = c;
	return 0;
}

static int remember(struct reader *r, const char *anchor, const cJSON *n)
{
	if (!anchor)
		return 0;
	r->anchors = wh_grow(r->anchors, sizeof(*r->anchors), r->n_anchors, &r->cap_anchors, 8);
	struct anchor *a = &r->anchors[r->n_anchors++];
	a->name = wh_strdup(anchor);
	a->node = cJSON_Duplicate(n, true);
	a->size = count(n);
	return 0;
}

static int node(struct reader *r, yaml_event_t *ev, int depth, cJSON **out)
{
	int rc = 0;
	char *anchor = NULL;
	yaml_mark_t mark = ev->start_mark;

	*out = NULL;
	if (++r->nodes > WH_YAML_NODES_MAX) {
		yaml_event_delete(ev);
		return fail(r, "too many nodes", &mark);
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT: {
		const char *tag = (const char *)ev->data.scalar.tag;
		const char *s = (const char *)ev->data.scalar.value;
		if (ev->data.scalar.anchor)
			anchor = wh_strdup((const char *)ev->data.scalar.anchor);
		if (tag && strcmp(tag, "tag:yaml.org,2002:str") != 0 && strcmp(tag, "!") != 0) {
			if (strncmp(tag, "tag:yaml.org,2002:", 18) != 0) {
				rc = fail(r, "unsupported tag", &mark);
				break;
			}
			*out = plain_scalar(s); /* !!int, !!bool, !!null, !!float */
		} else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !tag) {
			*out = plain_scalar(s);
		} else {
			*out = cJSON_CreateString(s);
		}
		break;
	}
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		const yaml_char_t *a = ev->type == YAML_MAPPING_START_EVENT
		                           ? ev->data.mapping_start.anchor
		                           : ev->data.sequence_start.anchor;
		if (a)
			anchor = wh_strdup((const char *)a);
		yaml_event_t start = *ev;
		memset(ev, 0, sizeof(*ev));
		rc = collection(r, &start, depth, out);
		yaml_event_delete(&start);
		break;
	}
	case YAML_ALIAS_EVENT: {
		const char *name = (const char *)ev->data.alias.anchor;
		struct anchor *a = NULL;
		for (int i = r->n_anchors - 1; i >= 0 && !a; i--)
			if (strcmp(r->anchors[i].name, name) == 0)
				a = &r->anchors[i];
		if (!a) {
			rc = fail(r, "unknown alias", &mark);
			break;
		}
		r->nodes += a->size;
		if (r->nodes > WH_YAML_NODES_MAX) {
			rc = fail(r, "too many nodes (aliases expand beyond the limit)", &mark);
			break;
		}
		*out = cJSON_Duplicate(a->node, true);
		break;
	}
	default:
		rc = fail(r, "unexpected event", &mark);
		break;
	}
	yaml_event_delete(ev);
	if (rc == 0 && anchor)
		remember(r, anchor, *out);
	free(anchor);
	return rc;
}

int wh_yaml_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen)
{
	struct reader r = {.err = err, .errlen = errlen};
	yaml_event_t ev;
	cJSON *doc = NULL;
	int rc = 0, docs = 0;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!yaml_parser_initialize(&r.parser))
		return fail(&r, "cannot start the parser", NULL);
	yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);
	for (bool done = false; !done && rc == 0;) {
		if (!yaml_parser_parse(&r.parser, &ev)) {
			rc = fail(&r, r.parser.problem ? r.parser.problem : "syntax error",
			          &r.parser.problem_mark);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			yaml_event_delete(&ev);
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = fail(&r, "more than one document", &ev.start_mark);
			yaml_event_delete(&ev);
			break;
		case YAML_STREAM_START_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			yaml_event_delete(&ev);
			break;
		default:
			rc = node(&r, &ev, 0, &doc);
			break;
		}
	}
	yaml_parser_delete(&r.parser);
	for (int i = 0; i < r.n_anchors; i++) {
		free(r.anchors[i].name);
		cJSON_Delete(r.anchors[i].node);
	}
	free(r.anchors);
	if (rc) {
		cJSON_Delete(doc);
		return rc;
	}
	*out = doc ? doc : cJSON_CreateNull();
	return 0;
}
