/* Zot's retention policy and GC time window (retention.h): the settings'
 * keys, and the decisions. Zot's code runs each rule over a list of
 * candidates and lets the last rule that keeps one name the reason; we do
 * the same in the same order, over index arrays, so the reasons match its
 * logs. */
#include "wharf/store/retention.h"

#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"

/* ---- configuration: storage.retention ---- */

static void rules_init(wh_ret_rules *r)
{
	memset(r, 0, sizeof(*r));
	r->pulled_within_ms = -1;
	r->pushed_within_ms = -1;
}

/* The reasons as Zot's rules name themselves (rules.go: "%s:%d" of the
 * rule's name and its count or time.Duration, i.e. nanoseconds), inside
 * retention.go's "retained by %s policy". */
static void rules_finish(wh_ret_rules *r)
{
	snprintf(r->why_pulled_count, sizeof(r->why_pulled_count),
	         "retained by mostRecentlyPulledCount:%d policy", r->most_recently_pulled_count);
	snprintf(r->why_pushed_count, sizeof(r->why_pushed_count),
	         "retained by mostRecentlyPushedCount:%d policy", r->most_recently_pushed_count);
	/* Parsed durations are below 2^63 ns (wh_conf_duration), so this fits. */
	snprintf(r->why_pulled_within, sizeof(r->why_pulled_within),
	         "retained by pulledWithin:%" PRId64 " policy", r->pulled_within_ms * 1000000);
	snprintf(r->why_pushed_within, sizeof(r->why_pushed_within),
	         "retained by pushedWithin:%" PRId64 " policy", r->pushed_within_ms * 1000000);
}

#define RUL(m) offsetof(wh_ret_rules, m)

static const wh_conf_key rules_fields[] = {
    WH_CONF_KEY("pulledWithin", WH_CONF_DURATION, 0, RUL(pulled_within_ms)),
    WH_CONF_KEY("pushedWithin", WH_CONF_DURATION, 0, RUL(pushed_within_ms)),
    WH_CONF_KEY("mostRecentlyPushedCount", WH_CONF_INT, 0, RUL(most_recently_pushed_count)),
    WH_CONF_KEY("mostRecentlyPulledCount", WH_CONF_INT, 0, RUL(most_recently_pulled_count)),
    WH_CONF_END,
};

/* keepTags[i].patterns[j]: compiled here, so that a pattern Zot could not
 * compile fails at start, at its path. */
static int pattern_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_ret_keep_tags *k = arg;
	char why[192];
	wh_regex *re;

	if (!cJSON_IsString(item))
		return wh_conf_fail(p, "expected a string");
	if (wh_regex_compile(item->valuestring, &re, why, sizeof(why)) != 0)
		return wh_conf_fail(p, "invalid regular expression \"%s\": %s", item->valuestring,
		                    why);
	k->patterns[k->n_patterns] = wh_strdup(item->valuestring);
	k->re[k->n_patterns++] = re;
	return 0;
}

static int parse_patterns(wh_conf *p, const cJSON *v, char *base)
{
	wh_ret_keep_tags *k = (wh_ret_keep_tags *)(void *)base;
	size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;

	k->patterns = wh_calloc(n + 1, sizeof(*k->patterns));
	k->re = wh_calloc(n + 1, sizeof(*k->re));
	return wh_conf_each(p, v, false, "expected an array of regular expressions", pattern_item,
	                    k);
}

#define KT(m) offsetof(wh_ret_keep_tags, m)

static const wh_conf_key keep_tags_fields[] = {
    WH_CONF_FN_LIST("patterns", WH_CONF_NOSTORE, parse_patterns),
    WH_CONF_INLINED(rules_fields, KT(rules)),
    WH_CONF_END,
};

static int keep_tags_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_ret_policy *pol = arg;
	wh_ret_keep_tags *k = &pol->keep_tags[pol->n_keep_tags++]; /* freed even half-parsed */
	int rc;

	rules_init(&k->rules);
	rc = wh_conf_walk(p, item, keep_tags_fields, (char *)k);
	rules_finish(&k->rules);
	return rc;
}

static int parse_keep_tags(wh_conf *p, const cJSON *v, char *base)
{
	wh_ret_policy *pol = (wh_ret_policy *)(void *)base;
	size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;

	pol->keep_tags = wh_calloc(n + 1, sizeof(*pol->keep_tags));
	return wh_conf_each(p, v, false, "expected an array", keep_tags_item, pol);
}

static int parse_keep_untagged(wh_conf *p, const cJSON *v, char *base)
{
	wh_ret_rules *r = (wh_ret_rules *)(void *)base;
	int rc = wh_conf_walk(p, v, rules_fields, base);

	rules_finish(r);
	return rc;
}

static int repository_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_ret_policy *pol = arg;
	const char *why;

	if (!cJSON_IsString(item))
		return wh_conf_fail(p, "expected a string");
	if ((why = wh_conf_glob_problem(item->valuestring)))
		return wh_conf_fail(p, "invalid glob \"%s\": %s", item->valuestring, why);
	pol->repositories[pol->n_repositories++] = wh_strdup(item->valuestring);
	return 0;
}

static int parse_repositories(wh_conf *p, const cJSON *v, char *base)
{
	wh_ret_policy *pol = (wh_ret_policy *)(void *)base;
	size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;

	pol->repositories = wh_calloc(n + 1, sizeof(*pol->repositories));
	return wh_conf_each(p, v, false, "expected an array of repository globs", repository_item,
	                    pol);
}

#define POL(m) offsetof(wh_ret_policy, m)

static const wh_conf_key policy_fields[] = {
    WH_CONF_FN_LIST("repositories", WH_CONF_NOSTORE, parse_repositories),
    WH_CONF_KEY("deleteReferrers", WH_CONF_BOOL, 0, POL(delete_referrers)),
    WH_CONF_KEY("deleteUntagged", WH_CONF_BOOL, 0, POL(delete_untagged)),
    WH_CONF_FN("keepTags", WH_CONF_NOSTORE, parse_keep_tags),
    WH_CONF_FN("keepUntagged", POL(keep_untagged), parse_keep_untagged),
    WH_CONF_END,
};

static int policy_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_retention_settings *r = arg;
	wh_ret_policy *pol = &r->policies[r->n_policies++]; /* freed even half-parsed */

	/* Zot: deleteUntagged is true unless the key is set (viper's IsSet). */
	pol->delete_untagged = true;
	rules_init(&pol->keep_untagged);
	rules_finish(&pol->keep_untagged);
	return wh_conf_walk(p, item, policy_fields, (char *)pol);
}

static int parse_policies(wh_conf *p, const cJSON *v, char *base)
{
	wh_retention_settings *r = (wh_retention_settings *)(void *)base;
	size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 0;

	r->policies = wh_calloc(n + 1, sizeof(*r->policies));
	return wh_conf_each(p, v, false, "expected an array", policy_item, r);
}

#define RET(m) offsetof(wh_retention_settings, m)

const wh_conf_key wh_retention_keys[] = {
    WH_CONF_KEY("dryRun", WH_CONF_BOOL, 0, RET(dry_run)),
    WH_CONF_KEY("delay", WH_CONF_DURATION, 0, RET(delay_ms)),
    WH_CONF_FN("policies", WH_CONF_NOSTORE, parse_policies),
    WH_CONF_END,
};

void wh_retention_settings_init(wh_retention_settings *r)
{
	memset(r, 0, sizeof(*r));
	r->delay_ms = -1; /* -1: absent, resolved by wh_store_settings_check */
}

void wh_retention_settings_free(wh_retention_settings *r)
{
	for (int i = 0; i < r->n_policies; i++) {
		wh_ret_policy *pol = &r->policies[i];
		for (int j = 0; j < pol->n_keep_tags; j++) {
			wh_ret_keep_tags *k = &pol->keep_tags[j];
			for (int m = 0; m < k->n_patterns; m++)
				wh_regex_free(k->re[m]);
			free(k->re);
			wh_conf_strv_free(k->patterns, k->n_patterns);
		}
		free(pol->keep_tags);
		wh_conf_strv_free(pol->repositories, pol->n_repositories);
	}
	free(r->policies);
	memset(r, 0, sizeof(*r));
}

/* ---- configuration: storage.gcTimeWindow ---- */

void wh_gc_window_init(wh_gc_window *w)
{
	w->start_min = w->end_min = -1;
}

/* A time of day as Go's time.Parse("15:04", ...) takes it, after
 * strings.TrimSpace: an hour of one or two digits below 24, ':', two digits
 * of minutes below 60, nothing else. The minutes of the day, or -1. */
static int time_of_day(const char *s, size_t len)
{
	int hour, min;

	while (len && isspace((unsigned char)*s))
		s++, len--;
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len < 4 || !isdigit((unsigned char)s[0]))
		return -1;
	hour = s[0] - '0';
	if (isdigit((unsigned char)s[1])) {
		hour = hour * 10 + (s[1] - '0');
		s++, len--;
	}
	if (len != 4 || s[1] != ':' || !isdigit((unsigned char)s[2]) ||
	    !isdigit((unsigned char)s[3]))
		return -1;
	min = (s[2] - '0') * 10 + (s[3] - '0');
	if (hour > 23 || min > 59)
		return -1;
	return hour * 60 + min;
}

int wh_gc_window_conf(wh_conf *p, const cJSON *v, char *base)
{
	wh_gc_window *w = (wh_gc_window *)(void *)base;
	const char *s, *dash;
	int start, end;

	if (!cJSON_IsString(v))
		return wh_conf_fail(p, "expected a string \"HH:MM-HH:MM\" (UTC)");
	s = v->valuestring;
	wh_gc_window_init(w);
	if (!*s) /* as Zot: "" is no window */
		return 0;
	if (!(dash = strchr(s, '-')))
		return wh_conf_fail(p, "invalid window \"%s\": expected \"HH:MM-HH:MM\" (UTC)", s);
	if ((start = time_of_day(s, (size_t)(dash - s))) < 0 ||
	    (end = time_of_day(dash + 1, strlen(dash + 1))) < 0)
		return wh_conf_fail(
		    p,
		    "invalid window \"%s\": expected two 24-hour times \"HH:MM-HH:MM\" "
		    "(UTC), such as \"22:00-04:00\"",
		    s);
	if (start == end)
		return wh_conf_fail(p, "invalid window \"%s\": its start and end must differ", s);
	w->start_min = start;
	w->end_min = end;
	return 0;
}

/* ---- decisions ---- */

/* doublestar's Match, which Zot calls: wh_glob_match, and a pattern ending
 * in "/" and a doublestar also matches the name before it (prod for prod's
 * whole tree). The same rule as access.c's matches(). */
static bool repo_matches(const char *pattern, const char *repo)
{
	size_t pl = strlen(pattern);
	char *prefix;
	bool m;

	if (wh_glob_match(pattern, repo))
		return true;
	if (pl < 4 || strcmp(pattern + pl - 3, "/**") != 0)
		return false;
	prefix = wh_strndup(pattern, pl - 3);
	m = wh_glob_match(prefix, repo);
	free(prefix);
	return m;
}

const wh_ret_policy *wh_retention_policy(const wh_retention_settings *r, const char *repo)
{
	for (int i = 0; i < r->n_policies; i++)
		for (int j = 0; j < r->policies[i].n_repositories; j++)
			if (repo_matches(r->policies[i].repositories[j], repo))
				return &r->policies[i];
	return NULL;
}

bool wh_retention_deletes_untagged(const wh_ret_policy *p)
{
	return p ? p->delete_untagged : true;
}

bool wh_retention_deletes_referrers(const wh_ret_policy *p)
{
	return p ? p->delete_referrers : false;
}

static bool has_rules(const wh_ret_rules *r)
{
	return r->pulled_within_ms >= 0 || r->pushed_within_ms >= 0 ||
	       r->most_recently_pushed_count > 0 || r->most_recently_pulled_count > 0;
}

/* The index of the first keepTags entry of p that matches tag, or -1. */
static int entry_of(const wh_ret_policy *p, const char *tag)
{
	for (int e = 0; e < p->n_keep_tags; e++) {
		const wh_ret_keep_tags *k = &p->keep_tags[e];
		if (k->n_patterns == 0)
			return e;
		for (int j = 0; j < k->n_patterns; j++)
			if (wh_regex_match(k->re[j], tag))
				return e;
	}
	return -1;
}

/* What the rules decide on: a tag's or an untagged manifest's. */
struct cand {
	const wh_ret_stats *st;
	bool *keep;
	const char **reason;
};

struct rank {
	int64_t t;
	int pos; /* in the candidates: earlier wins among equal times */
};

static int rank_cmp(const void *a, const void *b)
{
	const struct rank *x = a, *y = b;

	if (x->t != y->t)
		return x->t > y->t ? -1 : 1;
	return (x->pos > y->pos) - (x->pos < y->pos);
}

static void keep(const struct cand *c, const char *why)
{
	*c->keep = true;
	*c->reason = why;
}

/* The count newest of c by pull (pulled) or push time. */
static void most_recent(const struct cand *c, int m, struct rank *rk, int count, bool pulled,
                        const char *why)
{
	for (int i = 0; i < m; i++) {
		rk[i].t = pulled ? c[i].st->pulled_ms : c[i].st->pushed_ms;
		rk[i].pos = i;
	}
	qsort(rk, (size_t)m, sizeof(*rk), rank_cmp);
	for (int i = 0; i < m && i < count; i++)
		keep(&c[rk[i].pos], why);
}

/* A time of 0 is never: not "after" any moment. */
static bool after(int64_t t, int64_t since)
{
	return t != 0 && t > since;
}

/* Zot's rule order (retention.go getRules): each rule that keeps a
 * candidate overwrites its reason, so the last one names it. */
static void apply_rules(const wh_ret_rules *r, const struct cand *c, int m, struct rank *rk,
                        int64_t now_ms)
{
	if (r->most_recently_pulled_count > 0)
		most_recent(c, m, rk, r->most_recently_pulled_count, true, r->why_pulled_count);
	if (r->most_recently_pushed_count > 0)
		most_recent(c, m, rk, r->most_recently_pushed_count, false, r->why_pushed_count);
	if (r->pulled_within_ms >= 0) {
		int64_t since = now_ms - r->pulled_within_ms;
		for (int i = 0; i < m; i++)
			if (after(c[i].st->pulled_ms, since) || after(c[i].st->pushed_ms, since))
				keep(&c[i], r->why_pulled_within);
	}
	if (r->pushed_within_ms >= 0) {
		int64_t since = now_ms - r->pushed_within_ms;
		for (int i = 0; i < m; i++)
			if (after(c[i].st->pushed_ms, since))
				keep(&c[i], r->why_pushed_within);
	}
}

static void decide_all(wh_ret_tag *tags, int n, bool keep_it, const char *why)
{
	for (int i = 0; i < n; i++) {
		tags[i].keep = keep_it;
		tags[i].reason = why;
	}
}

void wh_retention_tags(const wh_ret_policy *p, wh_ret_tag *tags, int n, int64_t now_ms)
{
	int *entry;
	struct cand *c;
	struct rank *rk;

	if (!p || p->n_keep_tags == 0) {
		decide_all(tags, n, true, NULL);
		return;
	}
	entry = wh_malloc(((size_t)n + 1) * sizeof(*entry));
	c = wh_malloc(((size_t)n + 1) * sizeof(*c));
	rk = wh_malloc(((size_t)n + 1) * sizeof(*rk));
	for (int i = 0; i < n; i++) {
		wh_ret_tag *t = &tags[i];
		entry[i] = -1;
		if (!t->st.known) {
			t->keep = true;
			t->reason = WH_RET_NO_TAG_STATS;
			continue;
		}
		entry[i] = entry_of(p, t->tag);
		if (entry[i] < 0) {
			t->keep = false;
			t->reason = WH_RET_NO_PATTERN;
		} else if (!has_rules(&p->keep_tags[entry[i]].rules)) {
			t->keep = true;
			t->reason = WH_RET_BY_PATTERNS;
		} else {
			t->keep = false;
			t->reason = WH_RET_NO_TAG_RULE;
		}
	}
	/* Each entry's rules, over the tags it took. */
	for (int e = 0; e < p->n_keep_tags; e++) {
		int m = 0;
		if (!has_rules(&p->keep_tags[e].rules))
			continue;
		for (int i = 0; i < n; i++)
			if (entry[i] == e)
				c[m++] = (struct cand){&tags[i].st, &tags[i].keep, &tags[i].reason};
		apply_rules(&p->keep_tags[e].rules, c, m, rk, now_ms);
	}
	free(rk);
	free(c);
	free(entry);
}

void wh_retention_tags_by_name(const wh_ret_policy *p, wh_ret_tag *tags, int n)
{
	if (!p || p->n_keep_tags == 0) {
		decide_all(tags, n, true, NULL);
		return;
	}
	for (int i = 0; i < n; i++) {
		bool matched = entry_of(p, tags[i].tag) >= 0;
		tags[i].keep = matched;
		tags[i].reason = matched ? WH_RET_BY_PATTERNS : WH_RET_NO_PATTERN;
	}
}

void wh_retention_untagged(const wh_ret_policy *p, wh_ret_untagged *u, int n, int64_t now_ms)
{
	struct cand *c;
	struct rank *rk;
	int m = 0;

	if (!p || !p->delete_untagged || !has_rules(&p->keep_untagged)) {
		/* deleteUntagged false: nothing untagged goes. No keepUntagged
		 * rules: nothing is kept by them (no policy: deleteUntagged). */
		bool keep_all = p && !p->delete_untagged;
		for (int i = 0; i < n; i++) {
			u[i].keep = keep_all;
			u[i].reason = NULL;
		}
		return;
	}
	c = wh_malloc(((size_t)n + 1) * sizeof(*c));
	rk = wh_malloc(((size_t)n + 1) * sizeof(*rk));
	for (int i = 0; i < n; i++) {
		if (!u[i].st.known) {
			u[i].keep = true;
			u[i].reason = WH_RET_NO_UNTAGGED_STAT;
			continue;
		}
		u[i].keep = false;
		u[i].reason = WH_RET_NO_UNTAGGED_RULE;
		c[m++] = (struct cand){&u[i].st, &u[i].keep, &u[i].reason};
	}
	apply_rules(&p->keep_untagged, c, m, rk, now_ms);
	free(rk);
	free(c);
}

bool wh_gc_window_open(const wh_gc_window *w, int64_t now_ms)
{
	int64_t day_ms = 24 * WH_HOUR_MS;
	int64_t ms = now_ms % day_ms;
	int minute;

	if (w->start_min < 0 || w->end_min < 0)
		return true;
	if (ms < 0) /* before 1970: the time of day still counts from midnight */
		ms += day_ms;
	minute = (int)(ms / WH_MINUTE_MS);
	if (w->start_min <= w->end_min)
		return minute >= w->start_min && minute < w->end_min;
	return minute >= w->start_min || minute < w->end_min;
}
