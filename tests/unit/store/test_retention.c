/* Unit tests for src/store/retention.c: storage.retention and
 * storage.gcTimeWindow as Zot reads them, and Zot's retention decisions
 * (pkg/retention) with hand-computed expectations. */
#include "check.h"

#include "wharf/base/common.h"
#include "wharf/store/retention.h"
#include "wharf/store/store.h"

#include <stdlib.h>
#include <string.h>

/* ---- parsing ---- */

/* Tests write JSON with single quotes; this turns them into double quotes. */
static char *q(const char *s)
{
	char *out = wh_strdup(s);
	for (char *c = out; *c; c++)
		if (*c == '\'')
			*c = '"';
	return out;
}

/* A config file's `storage`, as config.c parses it (so errors have their
 * whole path): the store's keys, then its check. */
static const wh_conf_key file_keys[] = {
    WH_CONF_SUB("storage", WH_CONF_SECTION, 0, 0, wh_store_keys),
    WH_CONF_END,
};

/* The `storage` object single_quoted, in a file of its own. 0, or WH_EINVAL
 * with the message in err. */
static int parse_storage(const char *single_quoted, wh_store_settings *s, wh_conf *conf, char *err,
                         size_t errlen)
{
	size_t n = strlen(single_quoted) + 16;
	char *json, *file = wh_malloc(n);
	cJSON *root;
	int rc;

	FMT(file, n, "{'storage': %s}", single_quoted);
	json = q(file);
	free(file);
	root = cJSON_Parse(json);

	memset(conf, 0, sizeof(*conf));
	conf->err = err;
	conf->errlen = errlen;
	err[0] = '\0';
	wh_store_settings_init(s);
	if (!root) {
		fprintf(stderr, "bad test JSON: %s\n", json);
		abort();
	}
	rc = wh_conf_walk(conf, root, file_keys, (char *)s);
	if (rc == 0)
		rc = wh_store_settings_check(conf, s);
	cJSON_Delete(root);
	free(json);
	return rc;
}

/* Settings the test needs to be valid: aborts if they are not. */
static wh_store_settings load(const char *single_quoted)
{
	wh_store_settings s;
	wh_conf conf;
	char err[512];

	if (parse_storage(single_quoted, &s, &conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "config: %s\n", err);
		abort();
	}
	wh_conf_release(&conf);
	return s;
}

#define ROOT "'rootDirectory': '/r'"

static void test_defaults(void)
{
	wh_store_settings s = load("{" ROOT "}");

	/* Zot: with gc on, retention.delay is gcDelay, whose default is 1h. */
	CHECK(s.retention.delay_ms == WH_HOUR_MS);
	CHECK(!s.retention.dry_run && s.retention.n_policies == 0);
	CHECK(s.gc_window.start_min == -1 && s.gc_window.end_min == -1);
	wh_store_settings_free(&s);

	/* ... and a given gcDelay. */
	s = load("{" ROOT ", 'gcDelay': '2h'}");
	CHECK(s.retention.delay_ms == 2 * WH_HOUR_MS);
	wh_store_settings_free(&s);
	/* A delay of its own wins, even shorter than gcDelay. */
	s = load("{" ROOT ", 'gcDelay': '2h', 'retention': {'delay': '30m'}}");
	CHECK(s.retention.delay_ms == 30 * WH_MINUTE_MS && s.gc_delay_ms == 2 * WH_HOUR_MS);
	wh_store_settings_free(&s);
	/* null is an absent key. */
	s = load("{" ROOT ", 'gcDelay': '3h', 'retention': {'delay': null}}");
	CHECK(s.retention.delay_ms == 3 * WH_HOUR_MS);
	wh_store_settings_free(&s);
	/* Without gc an absent delay is 0, even with a gcDelay... */
	s = load("{" ROOT ", 'gc': false, 'gcDelay': '2h'}");
	CHECK(s.retention.delay_ms == 0 && s.gc_delay_ms == 2 * WH_HOUR_MS);
	wh_store_settings_free(&s);
	/* ... and a given one is kept. */
	s = load("{" ROOT ", 'gc': false, 'retention': {'delay': '5m'}}");
	CHECK(s.retention.delay_ms == 5 * WH_MINUTE_MS);
	wh_store_settings_free(&s);
	/* "0s" is a delay, not an absent one. */
	s = load("{" ROOT ", 'retention': {'delay': '0s'}}");
	CHECK(s.retention.delay_ms == 0);
	wh_store_settings_free(&s);
}

/* The example of the reference (§5), every field. */
static void test_full_example(void)
{
	wh_store_settings s = load(
	    "{" ROOT ", 'gc': true, 'gcDelay': '1h', 'gcInterval': '1h', 'gcTimeWindow': "
	    "'01:00-08:00',"
	    " 'retention': {'dryRun': false, 'delay': '24h', 'policies': ["
	    "  {'repositories': ['infra/*', 'prod/**'], 'deleteReferrers': false,"
	    "   'deleteUntagged': true,"
	    "   'keepTags': [{'patterns': ['v2.*', '.*-prod']},"
	    "                {'patterns': ['v3.*'], 'pulledWithin': '168h', 'pushedWithin': '168h',"
	    "                 'mostRecentlyPushedCount': 10, 'mostRecentlyPulledCount': 10}],"
	    "   'keepUntagged': {'pulledWithin': '168h', 'mostRecentlyPushedCount': 5}}]}}");
	const wh_retention_settings *r = &s.retention;

	CHECK(s.gc_window.start_min == 60 && s.gc_window.end_min == 480);
	CHECK(!r->dry_run && r->delay_ms == 24 * WH_HOUR_MS);
	CHECK(r->n_policies == 1);
	if (r->n_policies != 1) {
		wh_store_settings_free(&s);
		return;
	}
	const wh_ret_policy *p = &r->policies[0];
	CHECK(p->n_repositories == 2);
	CHECK_STREQ(p->repositories[0], "infra/*");
	CHECK_STREQ(p->repositories[1], "prod/**");
	CHECK(!p->delete_referrers && p->delete_untagged);
	CHECK(p->n_keep_tags == 2);
	if (p->n_keep_tags == 2) {
		const wh_ret_keep_tags *k0 = &p->keep_tags[0], *k1 = &p->keep_tags[1];
		CHECK(k0->n_patterns == 2 && k1->n_patterns == 1);
		CHECK_STREQ(k0->patterns[0], "v2.*");
		CHECK_STREQ(k0->patterns[1], ".*-prod");
		CHECK(k0->re[0] && k0->re[1]);
		/* entry 0: patterns only */
		CHECK(k0->rules.pulled_within_ms == -1 && k0->rules.pushed_within_ms == -1);
		CHECK(k0->rules.most_recently_pushed_count == 0 &&
		      k0->rules.most_recently_pulled_count == 0);
		CHECK(k1->rules.pulled_within_ms == 168 * WH_HOUR_MS);
		CHECK(k1->rules.pushed_within_ms == 168 * WH_HOUR_MS);
		CHECK(k1->rules.most_recently_pushed_count == 10);
		CHECK(k1->rules.most_recently_pulled_count == 10);
		/* Zot's rule names: a count, or a time.Duration's nanoseconds. */
		CHECK_STREQ(k1->rules.why_pulled_within,
		            "retained by pulledWithin:604800000000000 policy");
		CHECK_STREQ(k1->rules.why_pushed_within,
		            "retained by pushedWithin:604800000000000 policy");
		CHECK_STREQ(k1->rules.why_pushed_count,
		            "retained by mostRecentlyPushedCount:10 policy");
		CHECK_STREQ(k1->rules.why_pulled_count,
		            "retained by mostRecentlyPulledCount:10 policy");
	}
	CHECK(p->keep_untagged.pulled_within_ms == 168 * WH_HOUR_MS);
	CHECK(p->keep_untagged.pushed_within_ms == -1);
	CHECK(p->keep_untagged.most_recently_pushed_count == 5);
	CHECK(p->keep_untagged.most_recently_pulled_count == 0);
	CHECK_STREQ(p->keep_untagged.why_pushed_count,
	            "retained by mostRecentlyPushedCount:5 policy");
	wh_store_settings_free(&s);
}

static void test_policy_keys(void)
{
	/* deleteUntagged: true when absent or null, false only when it says so;
	 * keys match case aside (viper), as the README's "KeepTags". */
	wh_store_settings s =
	    load("{" ROOT ", 'Retention': {'DryRun': true, 'Policies': ["
	         " {'repositories': ['a']},"
	         " {'repositories': ['b'], 'deleteUntagged': null},"
	         " {'REPOSITORIES': ['c'], 'DELETEUNTAGGED': false, 'DeleteReferrers': true,"
	         "  'KeepTags': [{'Patterns': ['x'], 'PulledWithin': '1h'}, {}],"
	         "  'KeepUntagged': {}}]}}");
	const wh_retention_settings *r = &s.retention;

	CHECK(r->dry_run && r->n_policies == 3);
	if (r->n_policies == 3) {
		CHECK(r->policies[0].delete_untagged && !r->policies[0].delete_referrers);
		CHECK(r->policies[0].n_keep_tags == 0);
		CHECK(r->policies[1].delete_untagged);
		CHECK(!r->policies[2].delete_untagged && r->policies[2].delete_referrers);
		CHECK_STREQ(r->policies[2].repositories[0], "c");
		CHECK(r->policies[2].n_keep_tags == 2);
		CHECK(r->policies[2].keep_tags[0].rules.pulled_within_ms == WH_HOUR_MS);
		/* {}: no patterns (matches every tag), no rules */
		CHECK(r->policies[2].keep_tags[1].n_patterns == 0);
		CHECK(r->policies[2].keep_tags[1].rules.pulled_within_ms == -1);
		CHECK(r->policies[2].keep_untagged.pulled_within_ms == -1 &&
		      r->policies[2].keep_untagged.most_recently_pushed_count == 0);
	}
	wh_store_settings_free(&s);

	/* The rules' reasons are built whichever way the keys are spelled. */
	s = load("{" ROOT ", 'retention': {'policies': [{'repositories': ['**'],"
	         " 'keepUntagged': {'MOSTRECENTLYPULLEDCOUNT': 3, 'pushedwithin': '90m'}}]}}");
	CHECK(s.retention.n_policies == 1);
	if (s.retention.n_policies == 1) {
		const wh_ret_rules *u = &s.retention.policies[0].keep_untagged;
		CHECK(u->most_recently_pulled_count == 3 &&
		      u->pushed_within_ms == 90 * WH_MINUTE_MS);
		CHECK_STREQ(u->why_pulled_count, "retained by mostRecentlyPulledCount:3 policy");
		CHECK_STREQ(u->why_pushed_within, "retained by pushedWithin:5400000000000 policy");
	}
	wh_store_settings_free(&s);
}

/* Parsed and applied (gc.c): no longer named in the warnings. */
static void test_warnings(void)
{
	wh_store_settings s;
	wh_conf conf;
	char err[256];

	CHECK(parse_storage("{" ROOT
	                    ", 'gcTimeWindow': '01:00-02:00', 'retention': {'dryRun': true}}",
	                    &s, &conf, err, sizeof(err)) == 0);
	CHECK(conf.n_warnings == 0);
	CHECK(conf.n_notices == 0);
	wh_conf_release(&conf);
	wh_store_settings_free(&s);

	/* A window without gc: Zot warns it is ignored. */
	CHECK(parse_storage("{" ROOT ", 'gc': false, 'gcTimeWindow': '01:00-02:00'}", &s, &conf,
	                    err, sizeof(err)) == 0);
	CHECK(conf.n_notices == 1);
	if (conf.n_notices == 1)
		CHECK_STREQ(conf.notices[0],
		            "storage.gcTimeWindow: gc is false: the window is ignored (as in Zot)");
	wh_conf_release(&conf);
	wh_store_settings_free(&s);
}

static void test_windows_parsed(void)
{
	static const struct {
		const char *json;
		int start, end;
	} ok[] = {
	    {"'01:00-08:00'", 60, 480},
	    {"'22:00-04:00'", 22 * 60, 4 * 60},  /* wraps midnight */
	    {"' 22:00 - 04:30 '", 22 * 60, 270}, /* Zot trims each side */
	    {"'1:05-2:00'", 65, 120},            /* Go's "15" takes one digit */
	    {"'00:00-23:59'", 0, 23 * 60 + 59},
	    {"''", -1, -1}, /* no window */
	    {"null", -1, -1},
	};

	for (size_t i = 0; i < WH_ARRAY_SIZE(ok); i++) {
		char json[128];
		wh_store_settings s;
		FMT(json, sizeof(json), "{" ROOT ", 'gcTimeWindow': %s}", ok[i].json);
		s = load(json);
		CHECK(s.gc_window.start_min == ok[i].start && s.gc_window.end_min == ok[i].end);
		if (s.gc_window.start_min != ok[i].start || s.gc_window.end_min != ok[i].end)
			fprintf(stderr, "  window %s: %d-%d\n", ok[i].json, s.gc_window.start_min,
			        s.gc_window.end_min);
		wh_store_settings_free(&s);
	}
}

#define POL0      "storage.retention.policies[0]"
#define RET(x)    "{" ROOT ", 'retention': " x "}"
#define POLICY(x) RET("{'policies': [{'repositories': ['**'], " x "}]}")

static const struct {
	const char *json;
	const char *err; /* the whole message, or its start when it ends with "..." */
} bad[] = {
    /* gcTimeWindow */
    {"{" ROOT ", 'gcTimeWindow': '01:00'}",
     "storage.gcTimeWindow: invalid window \"01:00\": expected \"HH:MM-HH:MM\" (UTC)"},
    {"{" ROOT ", 'gcTimeWindow': '25:00-04:00'}",
     "storage.gcTimeWindow: invalid window \"25:00-04:00\": expected two 24-hour times "
     "\"HH:MM-HH:MM\" (UTC), such as \"22:00-04:00\""},
    {"{" ROOT ", 'gcTimeWindow': '24:00-04:00'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '01:60-04:00'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '01:5-04:00'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '001:00-04:00'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '01:00-04:00-05:00'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '1am-4am'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '01:00-'}", "storage.gcTimeWindow: invalid window..."},
    {"{" ROOT ", 'gcTimeWindow': '03:00-03:00'}",
     "storage.gcTimeWindow: invalid window \"03:00-03:00\": its start and end must differ"},
    {"{" ROOT ", 'gcTimeWindow': '3:00-03:00'}",
     "storage.gcTimeWindow: invalid window \"3:00-03:00\": its start and end must differ"},
    {"{" ROOT ", 'gcTimeWindow': 100}",
     "storage.gcTimeWindow: expected a string \"HH:MM-HH:MM\" (UTC)"},
    /* retention's own keys */
    {RET("[]"), "storage.retention: expected an object"},
    {RET("{'dryrun': 'yes'}"), "storage.retention.dryrun: expected a boolean"},
    {RET("{'delay': '1d'}"),
     "storage.retention.delay: invalid duration \"1d\" (examples: \"250ms\", \"30s\", "
     "\"1h30m\")"},
    {RET("{'delay': -1}"), "storage.retention.delay: expected a duration..."},
    {RET("{'policy': []}"), "storage.retention.policy: unknown key"},
    {RET("{'dryRun': true, 'DRYRUN': false}"), "storage.retention.DRYRUN: duplicate key"},
    {RET("{'policies': {}}"), "storage.retention.policies: expected an array"},
    {RET("{'policies': [5]}"), "storage.retention.policies[0]: expected an object"},
    {RET("{'policies': [{'repositories': ['**']}, {'repo': ['a']}]}"),
     "storage.retention.policies[1].repo: unknown key"},
    /* repositories */
    {POLICY("'x': 1"), POL0 ".x: unknown key"},
    {RET("{'policies': [{'repositories': {}}]}"),
     POL0 ".repositories[0]: expected a string"},
    {RET("{'policies': [{'repositories': [5]}]}"), POL0 ".repositories[0]: expected a string"},
    {RET("{'policies': [{'repositories': ['ok/**', 'a/[b']}]}"),
     POL0 ".repositories[1]: invalid glob \"a/[b\": unbalanced '['"},
    {RET("{'policies': [{'repositories': ['{a,b']}]}"),
     POL0 ".repositories[0]: invalid glob \"{a,b\": unbalanced '{'"},
    {POLICY("'deleteUntagged': 'no'"), POL0 ".deleteUntagged: expected a boolean"},
    {POLICY("'deleteReferrers': []"), POL0 ".deleteReferrers: expected a boolean"},
    /* keepTags */
    {POLICY("'keepTags': {}"), POL0 ".keepTags: expected an array"},
    {POLICY("'keepTags': ['v1']"), POL0 ".keepTags[0]: expected an object"},
    {POLICY("'keepTags': [{'pattern': ['v1']}]"), POL0 ".keepTags[0].pattern: unknown key (did you mean \"patterns\"?)"},
    {POLICY("'keepTags': [{'patterns': {}}]"),
     POL0 ".keepTags[0].patterns[0]: expected a string"},
    {POLICY("'keepTags': [{'patterns': [1]}]"), POL0 ".keepTags[0].patterns[0]: expected a string"},
    {POLICY("'keepTags': [{}, {'patterns': ['v1', '(']}]"),
     POL0 ".keepTags[1].patterns[1]: invalid regular expression \"(\": ..."},
    {POLICY("'keepTags': [{'patterns': ['[a-']}]"),
     POL0 ".keepTags[0].patterns[0]: invalid regular expression \"[a-\": ..."},
    {POLICY("'keepTags': [{'pulledWithin': '7d'}]"),
     POL0 ".keepTags[0].pulledWithin: invalid duration \"7d\"..."},
    {POLICY("'keepTags': [{'pushedWithin': true}]"),
     POL0 ".keepTags[0].pushedWithin: expected a duration such as \"30s\" or \"1h30m\""},
    {POLICY("'keepTags': [{'mostRecentlyPushedCount': -1}]"),
     POL0 ".keepTags[0].mostRecentlyPushedCount: must not be negative"},
    {POLICY("'keepTags': [{'mostRecentlyPulledCount': 1.5}]"),
     POL0 ".keepTags[0].mostRecentlyPulledCount: expected an integer"},
    /* keepUntagged: the four rules, no patterns */
    {POLICY("'keepUntagged': []"), POL0 ".keepUntagged: expected an object"},
    {POLICY("'keepUntagged': {'patterns': ['v1']}"), POL0 ".keepUntagged.patterns: unknown key"},
    {POLICY("'keepUntagged': {'pushedWithin': 'x'}"),
     POL0 ".keepUntagged.pushedWithin: invalid duration \"x\"..."},
    {POLICY("'keepUntagged': {'mostRecentlyPushedCount': -5}"),
     POL0 ".keepUntagged.mostRecentlyPushedCount: must not be negative"},
};

static void test_errors(void)
{
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad); i++) {
		wh_store_settings s;
		wh_conf conf;
		char err[512];
		size_t n = strlen(bad[i].err);
		bool prefix = n > 3 && strcmp(bad[i].err + n - 3, "...") == 0;
		int rc = parse_storage(bad[i].json, &s, &conf, err, sizeof(err));
		bool same =
		    prefix ? strncmp(err, bad[i].err, n - 3) == 0 : strcmp(err, bad[i].err) == 0;

		CHECK(rc == WH_EINVAL && same);
		if (rc != WH_EINVAL || !same)
			fprintf(stderr, "  %s\n    got:  %s\n    want: %s\n", bad[i].json, err,
			        bad[i].err);
		/* Half-parsed settings free cleanly (the sanitizer build checks). */
		wh_conf_release(&conf);
		wh_store_settings_free(&s);
	}
}

/* ---- decisions ---- */

#define NOW 1700000000000LL /* 2023-11-14T22:13:20Z */
#define M   WH_MINUTE_MS
#define H   WH_HOUR_MS
#define D   (24 * WH_HOUR_MS)

/* A tag with statistics pushed and pulled that long ago (0: never). */
static wh_ret_tag tag(const char *name, int64_t pushed_ago, int64_t pulled_ago)
{
	wh_ret_tag t = {name, "sha256:x", {0, 0, true}, false, "unset"};
	t.st.pushed_ms = pushed_ago ? NOW - pushed_ago : 0;
	t.st.pulled_ms = pulled_ago ? NOW - pulled_ago : 0;
	return t;
}

/* A tag without statistics, with times that would count if it were ranked. */
static wh_ret_tag tag_nostats(const char *name)
{
	wh_ret_tag t = tag(name, 1, 1);
	t.st.known = false;
	return t;
}

/* Each tag's decision: kept or not, and the reason (NULL: none). */
static void expect(const wh_ret_tag *tags, int n, const char *const *reasons, const bool *keep)
{
	for (int i = 0; i < n; i++) {
		bool ok = tags[i].keep == keep[i] &&
		          (reasons[i] ? tags[i].reason && strcmp(tags[i].reason, reasons[i]) == 0
		                      : tags[i].reason == NULL);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  tag %s: %s, \"%s\"; expected %s, \"%s\"\n", tags[i].tag,
			        tags[i].keep ? "keep" : "delete",
			        tags[i].reason ? tags[i].reason : "(null)",
			        keep[i] ? "keep" : "delete", reasons[i] ? reasons[i] : "(null)");
	}
}

#define EXPECT(tags, ...)                                                                          \
	do {                                                                                       \
		const struct {                                                                     \
			bool keep;                                                                 \
			const char *why;                                                           \
		} want_[] = {__VA_ARGS__};                                                         \
		const char *why_[WH_ARRAY_SIZE(want_)];                                            \
		bool keep_[WH_ARRAY_SIZE(want_)];                                                  \
		CHECK(WH_ARRAY_SIZE(want_) == WH_ARRAY_SIZE(tags));                                \
		for (size_t i_ = 0; i_ < WH_ARRAY_SIZE(want_); i_++) {                             \
			why_[i_] = want_[i_].why;                                                  \
			keep_[i_] = want_[i_].keep;                                                \
		}                                                                                  \
		expect(tags, (int)WH_ARRAY_SIZE(tags), why_, keep_);                               \
	} while (0)

#define KEEP(why)                                                                                  \
	{                                                                                          \
		true, why                                                                          \
	}
#define DEL(why)                                                                                   \
	{                                                                                          \
		false, why                                                                         \
	}

/* The settings of one policy for every repository, with keepTags x. */
static wh_store_settings keep_tags(const char *x)
{
	char json[1024];
	FMT(json, sizeof(json),
	    "{" ROOT ", 'retention': {'policies': [{'repositories': ['**'], 'keepTags': %s}]}}", x);
	return load(json);
}

static void test_policy_choice(void)
{
	wh_store_settings s = load("{" ROOT ", 'retention': {'policies': ["
	                           " {'repositories': []},"
	                           " {'repositories': ['infra/*'], 'deleteReferrers': true},"
	                           " {'repositories': ['nothing', 'infra/**', 'prod/**']},"
	                           " {'repositories': ['**']}]}}");
	const wh_retention_settings *r = &s.retention;
	const wh_ret_policy *p = r->policies;

	/* The first policy with a matching glob, in the file's order: "infra/a"
	 * matches policies 2 and 3 too. An empty list matches nothing. */
	CHECK(wh_retention_policy(r, "infra/a") == &p[1]);
	CHECK(wh_retention_policy(r, "infra/a/b") == &p[2]); /* * stays in one component */
	CHECK(wh_retention_policy(r, "infra") == &p[2]);     /* doublestar: x/(**) matches x */
	CHECK(wh_retention_policy(r, "prod/x/y") == &p[2]);
	CHECK(wh_retention_policy(r, "production") == &p[3]);
	CHECK(wh_retention_policy(r, "other") == &p[3]);
	wh_store_settings_free(&s);

	s = load("{" ROOT ", 'retention': {'policies': [{'repositories': ['infra/*']}]}}");
	CHECK(wh_retention_policy(&s.retention, "other") == NULL);
	CHECK(wh_retention_policy(&s.retention, "infra") == NULL);
	CHECK(wh_retention_policy(&s.retention, "infra/a") == &s.retention.policies[0]);
	wh_store_settings_free(&s);

	s = load("{" ROOT "}");
	CHECK(wh_retention_policy(&s.retention, "any") == NULL);
	wh_store_settings_free(&s);

	/* What no policy means: untagged manifests go, referrers stay. */
	CHECK(wh_retention_deletes_untagged(NULL));
	CHECK(!wh_retention_deletes_referrers(NULL));
	s = load("{" ROOT ", 'retention': {'policies': [{'repositories': ['a'],"
	         " 'deleteUntagged': false, 'deleteReferrers': true}, {'repositories': ['b']}]}}");
	CHECK(!wh_retention_deletes_untagged(&s.retention.policies[0]));
	CHECK(wh_retention_deletes_referrers(&s.retention.policies[0]));
	CHECK(wh_retention_deletes_untagged(&s.retention.policies[1]));
	CHECK(!wh_retention_deletes_referrers(&s.retention.policies[1]));
	wh_store_settings_free(&s);
}

/* No policy, or one without keepTags: every tag stays, and Zot logs no
 * decision (reason NULL), statistics or not. */
static void test_no_tag_retention(void)
{
	wh_store_settings s = load("{" ROOT ", 'retention': {'policies': ["
	                           " {'repositories': ['a'], 'deleteUntagged': false},"
	                           " {'repositories': ['b'], 'keepTags': []}]}}");
	wh_ret_tag tags[] = {tag("old", 400 * D, 0), tag_nostats("x")};

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 2; i++)
			tags[i].keep = false, tags[i].reason = "unset";
		if (round < 3)
			wh_retention_tags(round == 0   ? NULL
			                  : round == 1 ? wh_retention_policy(&s.retention, "a")
			                               : wh_retention_policy(&s.retention, "b"),
			                  tags, 2, NOW);
		else
			wh_retention_tags_by_name(NULL, tags, 2);
		EXPECT(tags, KEEP(NULL), KEEP(NULL));
	}
	wh_store_settings_free(&s);
}

/* Patterns are unanchored regular expressions (RE2 syntax); a tag no entry
 * matches goes. */
static void test_patterns(void)
{
	wh_store_settings s = keep_tags("[{'patterns': ['v1', '-prod$', '^r\\\\d+\\\\.']}]");
	wh_ret_tag tags[] = {
	    tag("xv1.2", 400 * D, 0),                        /* v1 anywhere */
	    tag("v10", 400 * D, 0),   tag("V1", D, D),       /* case matters */
	    tag("app-prod", D, 0),    tag("prod-app", D, 0), /* $ anchors */
	    tag("r12.0", D, 0),       tag("rx.0", D, 0),     /* \d, as RE2 */
	    tag("latest", H, H),
	};

	wh_retention_tags(&s.retention.policies[0], tags, (int)WH_ARRAY_SIZE(tags), NOW);
	EXPECT(tags, KEEP(WH_RET_BY_PATTERNS), KEEP(WH_RET_BY_PATTERNS), DEL(WH_RET_NO_PATTERN),
	       KEEP(WH_RET_BY_PATTERNS), DEL(WH_RET_NO_PATTERN), KEEP(WH_RET_BY_PATTERNS),
	       DEL(WH_RET_NO_PATTERN), DEL(WH_RET_NO_PATTERN));
	wh_store_settings_free(&s);
}

/* A tag goes to the FIRST entry that matches it, and only that entry's rules
 * decide, even if a later entry would have kept it. */
static void test_first_entry_wins(void)
{
	wh_store_settings s =
	    keep_tags("[{'patterns': ['^v'], 'mostRecentlyPushedCount': 1}, {'patterns': ['v2']}]");
	wh_ret_tag tags[] = {tag("v2.0", 1 * D, 0), tag("v2.1", 2 * D, 0), tag("x-v2", 3 * D, 0)};

	wh_retention_tags(&s.retention.policies[0], tags, 3, NOW);
	EXPECT(tags, KEEP("retained by mostRecentlyPushedCount:1 policy"), DEL(WH_RET_NO_TAG_RULE),
	       KEEP(WH_RET_BY_PATTERNS));
	wh_store_settings_free(&s);
}

/* An entry without patterns (absent or []) takes every tag that reaches it. */
static void test_empty_patterns(void)
{
	const char *const cfg[] = {
	    "[{'patterns': ['^v1$']}, {'pushedWithin': '24h'}]",
	    "[{'patterns': ['^v1$']}, {'patterns': [], 'pushedWithin': '24h'}]",
	};

	for (size_t i = 0; i < WH_ARRAY_SIZE(cfg); i++) {
		wh_store_settings s = keep_tags(cfg[i]);
		wh_ret_tag tags[] = {tag("v1", 400 * D, 0), tag("a", H, 0), tag("b", 2 * D, 0)};
		wh_retention_tags(&s.retention.policies[0], tags, 3, NOW);
		EXPECT(tags, KEEP(WH_RET_BY_PATTERNS),
		       KEEP("retained by pushedWithin:86400000000000 policy"),
		       DEL(WH_RET_NO_TAG_RULE));
		wh_store_settings_free(&s);
	}
	/* One entry with no patterns and no rules keeps everything. */
	wh_store_settings s = keep_tags("[{}]");
	wh_ret_tag tags[] = {tag("a", 400 * D, 0), tag("b", 0, 0)};
	wh_retention_tags(&s.retention.policies[0], tags, 2, NOW);
	EXPECT(tags, KEEP(WH_RET_BY_PATTERNS), KEEP(WH_RET_BY_PATTERNS));
	wh_store_settings_free(&s);
}

/* pulledWithin keeps a tag pulled OR pushed within the window, strictly
 * after now - window; a time of 0 is never. */
static void test_pulled_within(void)
{
	wh_store_settings s = keep_tags("[{'pulledWithin': '168h'}]");
	const char *why = "retained by pulledWithin:604800000000000 policy";
	wh_ret_tag tags[] = {
	    tag("pulled", 30 * D, 1 * D),     tag("pushed", 2 * D, 0),
	    tag("stale", 30 * D, 8 * D),      tag("edge", 30 * D, 7 * D),
	    tag("inside", 30 * D, 7 * D - 1), tag("never", 0, 0),
	};

	wh_retention_tags(&s.retention.policies[0], tags, (int)WH_ARRAY_SIZE(tags), NOW);
	EXPECT(tags, KEEP(why), KEEP(why), DEL(WH_RET_NO_TAG_RULE), DEL(WH_RET_NO_TAG_RULE),
	       KEEP(why), DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);
}

/* pushedWithin looks at pushes only. */
static void test_pushed_within(void)
{
	wh_store_settings s = keep_tags("[{'pushedWithin': '24h'}]");
	const char *why = "retained by pushedWithin:86400000000000 policy";
	wh_ret_tag tags[] = {tag("pulled", 2 * D, H), tag("pushed", H, 0), tag("edge", D, 0),
	                     tag("never", 0, 0)};

	wh_retention_tags(&s.retention.policies[0], tags, 4, NOW);
	EXPECT(tags, DEL(WH_RET_NO_TAG_RULE), KEEP(why), DEL(WH_RET_NO_TAG_RULE),
	       DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);
}

/* A window reaching back before 1970 still keeps nothing never pulled or
 * pushed (0: never, as Go's zero time is before any window). */
static void test_long_window(void)
{
	wh_store_settings s = keep_tags("[{'pulledWithin': '500000h'}]");
	wh_ret_tag tags[] = {tag("never", 0, 0), tag("old", 20000 * D, 0)};

	wh_retention_tags(&s.retention.policies[0], tags, 2, NOW);
	EXPECT(tags, DEL(WH_RET_NO_TAG_RULE),
	       KEEP("retained by pulledWithin:1800000000000000000 policy"));
	wh_store_settings_free(&s);
}

/* "0s" is a rule that keeps nothing, unlike an absent one. */
static void test_zero_window(void)
{
	wh_store_settings s = keep_tags("[{'patterns': ['^a'], 'pulledWithin': '0s'}, {}]");
	wh_ret_tag tags[] = {tag("a", 1, 1), tag("b", 400 * D, 0)};

	wh_retention_tags(&s.retention.policies[0], tags, 2, NOW);
	EXPECT(tags, DEL(WH_RET_NO_TAG_RULE), KEEP(WH_RET_BY_PATTERNS));
	wh_store_settings_free(&s);
}

/* Counts rank the tags with statistics of their own entry only. */
static void test_counts(void)
{
	wh_store_settings s =
	    keep_tags("[{'patterns': ['^v'], 'mostRecentlyPushedCount': 2}, {'patterns': []}]");
	const char *why = "retained by mostRecentlyPushedCount:2 policy";
	/* latest is the newest push but belongs to entry 1; v4 has no
	 * statistics (its times, the newest, must not count). */
	wh_ret_tag tags[] = {tag("v1", 5 * D, 0), tag("v2", 4 * D, 0), tag("v3", 3 * D, 0),
	                     tag("latest", H, 0), tag_nostats("v4")};

	wh_retention_tags(&s.retention.policies[0], tags, 5, NOW);
	EXPECT(tags, DEL(WH_RET_NO_TAG_RULE), KEEP(why), KEEP(why), KEEP(WH_RET_BY_PATTERNS),
	       KEEP(WH_RET_NO_TAG_STATS));
	wh_store_settings_free(&s);

	/* More than there are: all of them. */
	s = keep_tags("[{'mostRecentlyPushedCount': 10}]");
	wh_ret_tag few[] = {tag("a", 9 * D, 0), tag("b", 0, 0), tag("c", D, 0)};
	why = "retained by mostRecentlyPushedCount:10 policy";
	wh_retention_tags(&s.retention.policies[0], few, 3, NOW);
	EXPECT(few, KEEP(why), KEEP(why), KEEP(why));
	wh_store_settings_free(&s);
}

/* Exactly n are kept; among equal times the earlier in the list; the never
 * pulled rank last but still fill the places left (as Zot's sort). */
static void test_count_ties(void)
{
	wh_store_settings s = keep_tags("[{'mostRecentlyPulledCount': 2}]");
	const char *why = "retained by mostRecentlyPulledCount:2 policy";
	wh_ret_tag tie[] = {tag("a", D, 3 * H), tag("b", D, 2 * H), tag("c", D, 2 * H),
	                    tag("d", D, 2 * H)};

	wh_retention_tags(&s.retention.policies[0], tie, 4, NOW);
	EXPECT(tie, DEL(WH_RET_NO_TAG_RULE), KEEP(why), KEEP(why), DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);

	s = keep_tags("[{'mostRecentlyPulledCount': 3}]");
	why = "retained by mostRecentlyPulledCount:3 policy";
	wh_ret_tag never[] = {tag("y", H, 0), tag("x", D, D), tag("z", H, 0), tag("w", D, 2 * D)};
	wh_retention_tags(&s.retention.policies[0], never, 4, NOW);
	EXPECT(never, KEEP(why), KEEP(why), DEL(WH_RET_NO_TAG_RULE), KEEP(why));
	wh_store_settings_free(&s);
}

/* Rules are ORed, and the reason is the last rule that keeps the tag, in
 * Zot's order: pulled count, pushed count, pulledWithin, pushedWithin. */
static void test_rules_or(void)
{
	wh_store_settings s =
	    keep_tags("[{'mostRecentlyPulledCount': 2, 'mostRecentlyPushedCount': 2,"
	              " 'pulledWithin': '1h', 'pushedWithin': '1h'}]");
	/* pulls, newest first: r (10m), p (2h), t (1d), then never: q, s.
	 * pushes: s (20m), q (3h), p (9d), r (10d), t (20d). */
	wh_ret_tag tags[] = {
	    tag("p", 9 * D, 2 * H),   /* pull rank 2 only */
	    tag("q", 3 * H, 0),       /* push rank 2 only */
	    tag("r", 10 * D, 10 * M), /* pull rank 1, pulled within 1h */
	    tag("s", 20 * M, 0),      /* push rank 1, pushed within 1h: both windows */
	    tag("t", 20 * D, D),      /* none */
	};

	wh_retention_tags(&s.retention.policies[0], tags, 5, NOW);
	EXPECT(tags, KEEP("retained by mostRecentlyPulledCount:2 policy"),
	       KEEP("retained by mostRecentlyPushedCount:2 policy"),
	       KEEP("retained by pulledWithin:3600000000000 policy"),
	       KEEP("retained by pushedWithin:3600000000000 policy"), DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);

	/* The newest pull and push at once: the pushed count names it. */
	s = keep_tags("[{'mostRecentlyPulledCount': 1, 'mostRecentlyPushedCount': 1}]");
	wh_ret_tag both[] = {tag("a", D, 2 * D), tag("b", H, H), tag("c", 2 * D, D)};
	wh_retention_tags(&s.retention.policies[0], both, 3, NOW);
	EXPECT(both, DEL(WH_RET_NO_TAG_RULE), KEEP("retained by mostRecentlyPushedCount:1 policy"),
	       DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);
}

/* A tag without statistics is kept whatever the entries say, matched or
 * not. */
static void test_no_stats(void)
{
	wh_store_settings s = keep_tags("[{'patterns': ['^v'], 'pushedWithin': '1h'}]");
	wh_ret_tag tags[] = {tag_nostats("latest"), tag_nostats("v1"), tag("v2", 100 * D, 0)};

	tags[1].st.pushed_ms = NOW - 100 * D;
	wh_retention_tags(&s.retention.policies[0], tags, 3, NOW);
	EXPECT(tags, KEEP(WH_RET_NO_TAG_STATS), KEEP(WH_RET_NO_TAG_STATS), DEL(WH_RET_NO_TAG_RULE));
	wh_store_settings_free(&s);
}

/* Without statistics at all (Zot without a metaDB): patterns alone. */
static void test_by_name(void)
{
	wh_store_settings s = keep_tags("[{'patterns': ['^v'], 'pushedWithin': '1h'}]");
	wh_ret_tag tags[] = {tag("v1", 100 * D, 0), tag("latest", H, H), tag_nostats("x")};

	wh_retention_tags_by_name(&s.retention.policies[0], tags, 3);
	EXPECT(tags, KEEP(WH_RET_BY_PATTERNS), DEL(WH_RET_NO_PATTERN), DEL(WH_RET_NO_PATTERN));
	wh_store_settings_free(&s);
}

/* ---- untagged ---- */

static wh_ret_untagged untagged(const char *digest, int64_t pushed_ago, int64_t pulled_ago)
{
	wh_ret_tag t = tag(digest, pushed_ago, pulled_ago);
	wh_ret_untagged u = {digest, t.st, false, "unset"};
	return u;
}

static void expect_untagged(const wh_ret_untagged *u, int n, const bool *keep,
                            const char *const *why)
{
	for (int i = 0; i < n; i++) {
		bool ok = u[i].keep == keep[i] &&
		          (why[i] ? u[i].reason && strcmp(u[i].reason, why[i]) == 0 : !u[i].reason);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  untagged %s: %s, \"%s\"\n", u[i].digest,
			        u[i].keep ? "keep" : "delete",
			        u[i].reason ? u[i].reason : "(null)");
	}
}

static void test_untagged(void)
{
	wh_store_settings s =
	    load("{" ROOT ", 'retention': {'policies': ["
	         " {'repositories': ['off'], 'deleteUntagged': false,"
	         "  'keepUntagged': {'mostRecentlyPushedCount': 1}},"
	         " {'repositories': ['empty'], 'keepUntagged': {}},"
	         " {'repositories': ['absent'], 'keepTags': [{}]},"
	         " {'repositories': ['kept'], 'keepUntagged': {'mostRecentlyPushedCount': 2,"
	         "   'pulledWithin': '24h'}}]}}");
	const wh_retention_settings *r = &s.retention;
	const char *count = "retained by mostRecentlyPushedCount:2 policy";
	const char *within = "retained by pulledWithin:86400000000000 policy";

	/* d5 has no statistics, and times that would rank it first. */
	wh_ret_untagged u[] = {untagged("d1", D, 0), untagged("d2", 2 * D, 0),
	                       untagged("d3", 3 * D, H), untagged("d4", 4 * D, 0),
	                       untagged("d5", 1, 1)};
	u[4].st.known = false;

	/* keepUntagged's rules: OR, over the ones with statistics. d1 was pushed
	 * exactly 24h ago: not within. */
	wh_retention_untagged(wh_retention_policy(r, "kept"), u, 5, NOW);
	{
		const bool keep[] = {true, true, true, false, true};
		const char *const why[] = {count, count, within, WH_RET_NO_UNTAGGED_RULE,
		                           WH_RET_NO_UNTAGGED_STAT};
		expect_untagged(u, 5, keep, why);
	}
	/* No policy, keepUntagged {} or absent: nothing kept by it, no reason. */
	const char *const none[] = {"nomatch", "empty", "absent"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(none); i++) {
		const bool keep[] = {false, false, false, false, false};
		const char *const why[] = {NULL, NULL, NULL, NULL, NULL};
		for (int j = 0; j < 5; j++)
			u[j].keep = true, u[j].reason = "unset";
		wh_retention_untagged(wh_retention_policy(r, none[i]), u, 5, NOW);
		expect_untagged(u, 5, keep, why);
	}
	/* deleteUntagged false: nothing untagged goes, keepUntagged or not. */
	{
		const bool keep[] = {true, true, true, true, true};
		const char *const why[] = {NULL, NULL, NULL, NULL, NULL};
		wh_retention_untagged(wh_retention_policy(r, "off"), u, 5, NOW);
		expect_untagged(u, 5, keep, why);
	}
	wh_store_settings_free(&s);
}

/* ---- gcTimeWindow ---- */

#define MIDNIGHT 1699920000000LL /* 2023-11-14T00:00:00Z */

static void test_window_open(void)
{
	wh_gc_window none, day = {60, 480}, night = {22 * 60, 4 * 60};

	wh_gc_window_init(&none);
	CHECK(wh_gc_window_open(&none, MIDNIGHT));
	CHECK(wh_gc_window_open(&none, MIDNIGHT + 13 * H));
	CHECK(wh_gc_window_open(&none, -1));
	/* [01:00, 08:00) */
	CHECK(!wh_gc_window_open(&day, MIDNIGHT));
	CHECK(!wh_gc_window_open(&day, MIDNIGHT + H - 1));
	CHECK(wh_gc_window_open(&day, MIDNIGHT + H));
	CHECK(wh_gc_window_open(&day, MIDNIGHT + 8 * H - 1));
	CHECK(!wh_gc_window_open(&day, MIDNIGHT + 8 * H));
	CHECK(!wh_gc_window_open(&day, MIDNIGHT + 23 * H));
	CHECK(wh_gc_window_open(&day, MIDNIGHT + 7 * D + 2 * H)); /* a week on */
	CHECK(!wh_gc_window_open(&day, NOW));                     /* 22:13 */
	/* [22:00, 04:00), across midnight */
	CHECK(!wh_gc_window_open(&night, MIDNIGHT + 22 * H - 1));
	CHECK(wh_gc_window_open(&night, MIDNIGHT + 22 * H));
	CHECK(wh_gc_window_open(&night, NOW));
	CHECK(wh_gc_window_open(&night, MIDNIGHT + D - 1));
	CHECK(wh_gc_window_open(&night, MIDNIGHT + D));
	CHECK(wh_gc_window_open(&night, MIDNIGHT + D + 4 * H - 1));
	CHECK(!wh_gc_window_open(&night, MIDNIGHT + D + 4 * H));
	CHECK(!wh_gc_window_open(&night, MIDNIGHT + 12 * H));
	/* Before 1970 the time of day still counts from midnight UTC. */
	CHECK(wh_gc_window_open(&night, -1)); /* 23:59:59.999 */
	CHECK(!wh_gc_window_open(&day, -1));
	CHECK(wh_gc_window_open(&day, -22 * H));    /* 02:00 */
	CHECK(!wh_gc_window_open(&night, -12 * H)); /* 12:00 */
}

int main(void)
{
	test_defaults();
	test_full_example();
	test_policy_keys();
	test_warnings();
	test_windows_parsed();
	test_errors();
	test_policy_choice();
	test_no_tag_retention();
	test_patterns();
	test_first_entry_wins();
	test_empty_patterns();
	test_pulled_within();
	test_pushed_within();
	test_long_window();
	test_zero_window();
	test_counts();
	test_count_ties();
	test_rules_or();
	test_no_stats();
	test_by_name();
	test_untagged();
	test_window_open();
	CHECK_DONE();
}
