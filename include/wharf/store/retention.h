/* Zot's retention policy (storage.retention) and GC time window
 * (storage.gcTimeWindow): their settings, parsed and checked as Zot reads
 * them (pkg/api/config, pkg/cli/server/root.go).
 *
 * Settings are owned by wh_store_settings (store.h), which embeds them;
 * every pointer below lives as long as those settings. */
#ifndef WHARF_RETENTION_H
#define WHARF_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "wharf/base/conf.h"
#include "wharf/base/pattern.h"

/* ---- settings ---- */

/* The rules of one keepTags entry, or keepUntagged's. A rule is absent when
 * its key is: a duration of -1, a count of 0. "pulledWithin": "0s" is a rule
 * (it keeps nothing), not an absent one, as in Zot. */
typedef struct wh_ret_rules {
	int64_t pulled_within_ms; /* pulledWithin, -1: absent */
	int64_t pushed_within_ms; /* pushedWithin, -1: absent */
	int most_recently_pushed_count;
	int most_recently_pulled_count;
	/* The reason each rule gives when it keeps something, as Zot logs it:
	 * "retained by mostRecentlyPulledCount:5 policy", "retained by
	 * pulledWithin:604800000000000 policy" (Go prints a duration's
	 * nanoseconds there). Built when the rules are parsed. */
	char why_pulled_count[64];
	char why_pushed_count[64];
	char why_pulled_within[64];
	char why_pushed_within[64];
} wh_ret_rules;

/* keepTags[i]. */
typedef struct wh_ret_keep_tags {
	char **patterns; /* as written, n_patterns of them */
	wh_regex **re;   /* each compiled (PCRE2, RE2's syntax), unanchored */
	int n_patterns;  /* 0: the entry matches every tag */
	wh_ret_rules rules;
} wh_ret_keep_tags;

/* policies[i]. */
typedef struct wh_ret_policy {
	char **repositories; /* doublestar globs, validated */
	int n_repositories;
	bool delete_referrers; /* deleteReferrers, default false */
	bool delete_untagged;  /* deleteUntagged, default true (absent or null) */
	wh_ret_keep_tags *keep_tags;
	int n_keep_tags;            /* 0: every tag is kept */
	wh_ret_rules keep_untagged; /* no rules: as if keepUntagged were absent */
} wh_ret_policy;

/* storage.retention. */
typedef struct wh_retention_settings {
	bool dry_run; /* dryRun: the sweep decides and logs, and changes nothing */
	/* delay: how old an untagged manifest or a referrer must be to go. -1
	 * until wh_store_settings_check resolves it: gcDelay when gc is on, 0
	 * when it is off (Zot's defaults). */
	int64_t delay_ms;
	wh_ret_policy *policies;
	int n_policies;
} wh_retention_settings;

/* storage.gcTimeWindow, "HH:MM-HH:MM" in UTC, as minutes of the day; both -1
 * when unset (or ""). start == end is refused; start > end wraps midnight. */
typedef struct wh_gc_window {
	int start_min;
	int end_min;
} wh_gc_window;

/* The keys of storage.retention, over a wh_retention_settings: dryRun,
 * delay, policies[] {repositories, deleteReferrers, deleteUntagged,
 * keepTags[] {patterns, pulledWithin, pushedWithin, mostRecentlyPushedCount,
 * mostRecentlyPulledCount}, keepUntagged {the four rules}}. A glob or regular
 * expression that does not compile is an error naming its path
 * ("storage.retention.policies[0].keepTags[1].patterns[0]: ..."). */
extern const wh_conf_key wh_retention_keys[];
void wh_retention_settings_init(wh_retention_settings *r);
void wh_retention_settings_free(wh_retention_settings *r);

/* The custom parser of storage.gcTimeWindow (a WH_CONF_FN over a
 * wh_gc_window). wh_gc_window_init makes it unset. */
int wh_gc_window_conf(wh_conf *c, const cJSON *v, char *base);
void wh_gc_window_init(wh_gc_window *w);

#endif
