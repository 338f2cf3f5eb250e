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

/* Parsed, and still named in the warnings: nothing applies them yet. */
static void test_warnings(void)
{
	wh_store_settings s;
	wh_conf conf;
	char err[256];

	CHECK(parse_storage("{" ROOT
	                    ", 'gcTimeWindow': '01:00-02:00', 'retention': {'dryRun': true}}",
	                    &s, &conf, err, sizeof(err)) == 0);
	CHECK(conf.n_warnings == 2);
	if (conf.n_warnings == 2) {
		CHECK_STREQ(conf.warnings[0], "storage.gcTimeWindow");
		CHECK_STREQ(conf.warnings[1], "storage.retention");
	}
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
    {RET("{'policies': [{'repositories': 'infra/*'}]}"),
     POL0 ".repositories: expected an array of repository globs"},
    {RET("{'policies': [{'repositories': [5]}]}"), POL0 ".repositories[0]: expected a string"},
    {RET("{'policies': [{'repositories': ['ok/**', 'a/[b']}]}"),
     POL0 ".repositories[1]: invalid glob \"a/[b\": unbalanced '['"},
    {RET("{'policies': [{'repositories': ['{a,b']}]}"),
     POL0 ".repositories[0]: invalid glob \"{a,b\": unbalanced '{'"},
    {POLICY("'deleteUntagged': 'false'"), POL0 ".deleteUntagged: expected a boolean"},
    {POLICY("'deleteReferrers': 1"), POL0 ".deleteReferrers: expected a boolean"},
    /* keepTags */
    {POLICY("'keepTags': {}"), POL0 ".keepTags: expected an array"},
    {POLICY("'keepTags': ['v1']"), POL0 ".keepTags[0]: expected an object"},
    {POLICY("'keepTags': [{'pattern': ['v1']}]"), POL0 ".keepTags[0].pattern: unknown key"},
    {POLICY("'keepTags': [{'patterns': 'v1'}]"),
     POL0 ".keepTags[0].patterns: expected an array of regular expressions"},
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

int main(void)
{
	test_defaults();
	test_full_example();
	test_policy_keys();
	test_warnings();
	test_windows_parsed();
	test_errors();
	CHECK_DONE();
}
