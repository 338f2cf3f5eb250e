/* Zot's retention policy (storage.retention) and GC time window
 * (storage.gcTimeWindow): their settings and the decisions a GC sweep asks
 * of them, with Zot's semantics (pkg/retention, pkg/api/config/
 * gctimewindow.go). The decisions are pure functions: no I/O, no clock (the
 * caller passes now), no state kept between calls. What to do with them
 * (drop a tag from index.json, delete old untagged manifests, log) is the
 * sweep's work, not this module's.
 *
 * Settings are owned by wh_store_settings (store.h), which embeds them;
 * every pointer below lives as long as those settings, and the reason
 * strings the decisions return point into them (or are static). */
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

/* ---- decisions ---- */

/* Pull and push times of one manifest, in ms since the epoch; 0 is never
 * (never pulled) or unknown. known is false when there are no statistics
 * for it at all (Zot: no entry in the metaDB). */
typedef struct wh_ret_stats {
	int64_t pushed_ms;
	int64_t pulled_ms;
	bool known;
} wh_ret_stats;

/* One tag of a repository. The caller fills tag, digest (for its own
 * logging; not read here) and st; the decision fills keep and reason. */
typedef struct wh_ret_tag {
	const char *tag;
	const char *digest;
	wh_ret_stats st;
	bool keep;
	const char *reason;
} wh_ret_tag;

/* One untagged manifest of a repository, as wh_ret_tag. */
typedef struct wh_ret_untagged {
	const char *digest;
	wh_ret_stats st;
	bool keep;
	const char *reason;
} wh_ret_untagged;

/* Zot's reasons, as its "applied policy" log lines give them. Rules give
 * theirs from wh_ret_rules (above). */
#define WH_RET_BY_PATTERNS      "retained by patterns policy"
#define WH_RET_NO_TAG_STATS     "tag statistics not found"
#define WH_RET_NO_PATTERN       "didn't meet any tag 'patterns' rules"
#define WH_RET_NO_TAG_RULE      "didn't meet any tag retention rule"
#define WH_RET_NO_UNTAGGED_STAT "untagged manifest statistics not found"
#define WH_RET_NO_UNTAGGED_RULE "didn't meet any untagged retention rule"

/* The policy of repo: the first of r->policies one of whose repositories
 * globs matches it, or NULL. Globs match as doublestar's Match, which Zot
 * calls: wh_glob_match, and a glob ending in "/" and a doublestar matches
 * the name before it too (prod's doublestar: prod itself). */
const wh_ret_policy *wh_retention_policy(const wh_retention_settings *r, const char *repo);

/* What p (NULL: no policy) says of untagged manifests and referrers: Zot
 * deletes old untagged manifests unless a policy says deleteUntagged:
 * false, and referrers whose subject is gone only when a policy says
 * deleteReferrers: true. */
bool wh_retention_deletes_untagged(const wh_ret_policy *p);
bool wh_retention_deletes_referrers(const wh_ret_policy *p);

/* Which of a repository's n tags the policy p (NULL: none) keeps, with the
 * statistics (Zot with a metaDB). Pass every tag of the repository at once:
 * the counts rank tags among each other.
 *
 *  - No policy, or no keepTags: every tag is kept, reason NULL (Zot logs no
 *    decision then).
 *  - A tag without statistics (st.known false) is kept: WH_RET_NO_TAG_STATS.
 *    It takes no part in any ranking.
 *  - Every other tag goes to the first keepTags entry one of whose patterns
 *    matches it anywhere (v1 matches xv1.2; an entry without patterns
 *    matches every tag). None matches: deleted, WH_RET_NO_PATTERN.
 *  - An entry without rules keeps its tags: WH_RET_BY_PATTERNS.
 *  - Else a tag is kept when ANY of its entry's rules keeps it, and its
 *    reason is the last of those in Zot's order: mostRecentlyPulledCount,
 *    mostRecentlyPushedCount, pulledWithin, pushedWithin. None keeps it:
 *    deleted, WH_RET_NO_TAG_RULE.
 *      pulledWithin d: pulled OR pushed after now - d (strictly);
 *      pushedWithin d: pushed after now - d (a time of 0 is never after);
 *      mostRecently{Pulled,Pushed}Count n: the n latest by that time among
 *        the tags with statistics the same entry took, never-pulled ones
 *        (0) last. Exactly n are kept (all, if there are fewer); among
 *        equal times the earlier in tags wins (Zot's order among equals is
 *        unspecified: Go's sort.Slice is not stable).
 *
 * Allocates scratch memory (wh_malloc) and matches regular expressions whose
 * match data p's settings own: calls sharing a policy must not run at the
 * same time on different threads. */
void wh_retention_tags(const wh_ret_policy *p, wh_ret_tag *tags, int n, int64_t now_ms);

/* The same without statistics (Zot without a metaDB): patterns alone
 * decide, rules and st are ignored. No policy or no keepTags: all kept,
 * reason NULL; a tag some entry matches: kept, WH_RET_BY_PATTERNS; else
 * deleted, WH_RET_NO_PATTERN. */
void wh_retention_tags_by_name(const wh_ret_policy *p, wh_ret_tag *tags, int n);

/* Which of a repository's untagged manifests keepUntagged keeps. Pass every
 * untagged manifest or index entry of index.json, whatever its age, whether
 * an index lists it and whether it has a subject (Zot ranks the counts among
 * all of them); the sweep then deletes only those not kept that are older
 * than retention.delay, no index lists and have no subject.
 *
 *  - deleteUntagged false (wh_retention_deletes_untagged): all kept, reason
 *    NULL; nothing untagged is deleted.
 *  - No policy, or keepUntagged without rules: none kept, reason NULL (Zot
 *    logs "deleteUntagged" when it then removes one).
 *  - Else no statistics: kept, WH_RET_NO_UNTAGGED_STAT; kept by any rule
 *    (as for tags, over all the untagged manifests with statistics): the
 *    rule's reason; else not kept, WH_RET_NO_UNTAGGED_RULE.
 *
 * Without any statistics at all (Zot without a metaDB) keepUntagged is
 * ignored, with a warning: do not call this then, keep none. Allocates
 * scratch memory (wh_malloc). */
void wh_retention_untagged(const wh_ret_policy *p, wh_ret_untagged *u, int n, int64_t now_ms);

/* True when now (ms since the epoch) lies in the window, in UTC: start <=
 * minute of the day < end, or, when the window wraps midnight, minute >=
 * start or minute < end. Always true for an unset window. The window gates
 * only the start of a sweep: one already running goes on past its end. */
bool wh_gc_window_open(const wh_gc_window *w, int64_t now_ms);

#endif
