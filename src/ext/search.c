/* extensions.search: Zot's GraphQL search. See include/wharf/ext/search.h.
 *
 * A request goes: the document is parsed (graphql.c), the operation is
 * checked against the schema below (fields, arguments, variables and their
 * types: every error a 422 before anything runs; each field learns its id
 * here), then each top-level field runs against the search index and
 * writes its JSON straight into the answer, field by field in the order
 * the query asked, only what it asked.
 *
 * The queries follow Zot's resolvers (pkg/extensions/search/resolver.go,
 * convert/, pagination/): the same targets, ranks, filters, sort orders,
 * paging arithmetic and error texts, so zui cannot tell the difference
 * but for what Wharf does not compute (search.h). Ties in a sort, which
 * Go's unstable sort leaves to chance, are broken by name, then tag. */
#include "wharf/ext/search.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/ext/auth.h"
#include "wharf/ext/graphql.h"
#include "wharf/ext/search_index.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/route.h"
#include "wharf/store/meta.h"

#define PATH_SEARCH   "/v2/_zot/ext/search"
#define PATH_DISCOVER "/v2/_oci/ext/discover"
#define BODY_MAX      (WH_GQL_MAX_LEN * 4) /* a POST's JSON: the document and its variables */
#define QUERY_MAX     256                  /* GlobalSearch's query argument, as Zot's limit */
#define NESTING       4                    /* indexes of indexes followed this deep */

/* ---- settings ---- */

#define SET(m) offsetof(wh_search_settings, m)

const wh_conf_key wh_search_keys[] = {
    WH_CONF_KEY("enable", WH_CONF_BOOL, 0, SET(enable)),
    WH_CONF_IGNORED("cve", WH_CONF_WARN),
    WH_CONF_END,
};

/* ---- the answer's JSON ---- */

struct out {
	char *buf;
	size_t len, cap;
	bool comma[64]; /* a value was written at this depth: the next needs a comma */
	int depth;
};

static void put(struct out *o, const char *s, size_t n)
{
	wh_buf_append(&o->buf, &o->len, &o->cap, s, n);
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Before a value (or a key) at the current depth. */
static void sep(struct out *o)
{
	if (o->comma[o->depth])
		put(o, ",", 1);
	o->comma[o->depth] = true;
}

static void open_(struct out *o, char c)
{
	sep(o);
	put(o, &c, 1);
	o->depth++;
	o->comma[o->depth] = false;
}

static void close_(struct out *o, char c)
{
	o->depth--;
	put(o, &c, 1);
}

/* A JSON string: escaped, and invalid UTF-8 (annotations are whatever a
 * pushed manifest held) replaced by U+FFFD. */
static void str_raw(struct out *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	put(o, "\"", 1);
	size_t i = 0, run = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		int len = 0;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			run++;
			continue;
		}
		put(o, s + i - run, run);
		run = 0;
		if (c < 0x80) {
			char e[7] = {'\\', 0, 0, 0, 0, 0, 0};
			if (c == '"' || c == '\\') {
				e[1] = (char)c;
				put(o, e, 2);
			} else if (c == '\n' || c == '\r' || c == '\t') {
				e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
				put(o, e, 2);
			} else {
				e[1] = 'u';
				e[2] = e[3] = '0';
				e[4] = hex[c >> 4];
				e[5] = hex[c & 15];
				put(o, e, 6);
			}
			i++;
			continue;
		}
		/* A multi-byte character: copied when valid. */
		uint32_t cp = 0, min = 0;
		if ((c & 0xE0) == 0xC0)
			len = 2, cp = c & 0x1F, min = 0x80;
		else if ((c & 0xF0) == 0xE0)
			len = 3, cp = c & 0x0F, min = 0x800;
		else if ((c & 0xF8) == 0xF0)
			len = 4, cp = c & 0x07, min = 0x10000;
		bool ok = len > 0 && i + (size_t)len <= n;
		for (int k = 1; ok && k < len; k++) {
			ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
			cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
		}
		ok = ok && cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
		if (ok) {
			put(o, s + i, (size_t)len);
			i += (size_t)len;
		} else {
			put(o, "\xEF\xBF\xBD", 3);
			i++;
		}
	}
	put(o, s + i - run, run);
	put(o, "\"", 1);
}

static void key(struct out *o, const char *k)
{
	sep(o);
	str_raw(o, k, strlen(k));
	put(o, ":", 1);
	o->comma[o->depth] = false; /* the value follows without a comma */
}

static void v_str(struct out *o, const char *s)
{
	sep(o);
	str_raw(o, s ? s : "", s ? strlen(s) : 0);
}

static void v_null(struct out *o)
{
	sep(o);
	put(o, "null", 4);
}

static void v_bool(struct out *o, bool b)
{
	sep(o);
	puts_(o, b ? "true" : "false");
}

static void v_int(struct out *o, int64_t i)
{
	char b[24];
	sep(o);
	snprintf(b, sizeof(b), "%" PRId64, i);
	puts_(o, b);
}

/* Sizes are strings in Zot's schema (Int is 32 bits there). */
static void v_size(struct out *o, int64_t i)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRId64, i);
	v_str(o, b);
}

/* A Time: RFC 3339 with nanoseconds as Go writes them (trailing zeros
 * dropped), in UTC; Go's zero time when unknown, as Zot shows it. */
static void v_time(struct out *o, int64_t ns)
{
	if (ns == WH_SI_NO_TIME) {
		v_str(o, "0001-01-01T00:00:00Z");
		return;
	}
	int64_t secs = ns / 1000000000, frac = ns % 1000000000;
	if (frac < 0) {
		frac += 1000000000;
		secs--;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	char b[64], f[16] = "";
	gmtime_r(&t, &tm);
	if (frac) {
		snprintf(f, sizeof(f), ".%09" PRId64, frac);
		size_t n = strlen(f);
		while (f[n - 1] == '0')
			f[--n] = '\0';
	}
	snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, f);
	v_str(o, b);
}

static void v_digest(struct out *o, const uint8_t d[32])
{
	char s[WH_DIGEST_LEN + 1];
	wh_si_digest_str(d, s);
	v_str(o, s);
}

/* ---- the schema ---- */

enum type {
	T_QUERY,
	T_GLOBAL,
	T_PAGE,
	T_REPO,
	T_IMAGE,
	T_MANIFEST,
	T_PLATFORM,
	T_SIGNATURE,
	T_VULNS,
	T_LAYER,
	T_HISTORY,
	T_HISTDESC,
	T_REFERRER,
	T_ANNOTATION,
	T_REPOINFO,
	T_IMAGES,
	T_REPOS,
	T_N,
	T_SCALAR = -1,
};

struct sarg {
	const char *name;
	const char *type; /* as GraphQL writes it */
};

struct sfield {
	const char *name;
	const char *type; /* as GraphQL writes it, for messages */
	int sub;          /* its object type, or T_SCALAR */
	const struct sarg *args;
	bool opaque; /* its selection is not checked (the CVE queries: they only fail) */
};

struct stype {
	const char *name;
	const struct sfield *fields;
	int n;
};

#define F(n, t, s)                                                                                 \
	{                                                                                          \
		n, t, s, NULL, false                                                               \
	}
#define Q(n, t, s, a)                                                                              \
	{                                                                                          \
		n, t, s, a, false                                                                  \
	}
#define QO(n, t, a)                                                                                \
	{                                                                                          \
		n, t, T_SCALAR, a, true                                                            \
	}
#define TYPE(name, table)                                                                          \
	{                                                                                          \
		name, table, (int)WH_ARRAY_SIZE(table)                                             \
	}

/* Field ids are 1 + the index in their type's table (0: not checked yet). */
enum { F_TYPENAME = -1 };

enum { PAGE_TOTAL = 1, PAGE_ITEMS };
static const struct sfield page_fields[] = {
    F("TotalCount", "Int!", T_SCALAR),
    F("ItemCount", "Int!", T_SCALAR),
};

enum { PF_OS = 1, PF_ARCH };
static const struct sfield platform_fields[] = {
    F("Os", "String", T_SCALAR),
    F("Arch", "String", T_SCALAR),
};

static const struct sfield signature_fields[] = {
    F("Tool", "String", T_SCALAR),
    F("IsTrusted", "Boolean", T_SCALAR),
    F("Author", "String", T_SCALAR),
};

static const struct sfield vulns_fields[] = {
    F("MaxSeverity", "String", T_SCALAR), F("Count", "Int", T_SCALAR),
    F("UnknownCount", "Int", T_SCALAR),   F("LowCount", "Int", T_SCALAR),
    F("MediumCount", "Int", T_SCALAR),    F("HighCount", "Int", T_SCALAR),
    F("CriticalCount", "Int", T_SCALAR),
};

enum { LY_SIZE = 1, LY_DIGEST };
static const struct sfield layer_fields[] = {
    F("Size", "String", T_SCALAR),
    F("Digest", "String", T_SCALAR),
};

enum { HD_CREATED = 1, HD_CREATED_BY, HD_AUTHOR, HD_COMMENT, HD_EMPTY };
static const struct sfield histdesc_fields[] = {
    F("Created", "Time", T_SCALAR),       F("CreatedBy", "String", T_SCALAR),
    F("Author", "String", T_SCALAR),      F("Comment", "String", T_SCALAR),
    F("EmptyLayer", "Boolean", T_SCALAR),
};

enum { LH_LAYER = 1, LH_DESC };
static const struct sfield history_fields[] = {
    F("Layer", "LayerSummary", T_LAYER),
    F("HistoryDescription", "HistoryDescription", T_HISTDESC),
};

enum { AN_KEY = 1, AN_VALUE };
static const struct sfield annotation_fields[] = {
    F("Key", "String", T_SCALAR),
    F("Value", "String", T_SCALAR),
};

enum { RF_MEDIA_TYPE = 1, RF_ARTIFACT_TYPE, RF_SIZE, RF_DIGEST, RF_ANNOTATIONS };
static const struct sfield referrer_fields[] = {
    F("MediaType", "String", T_SCALAR),
    F("ArtifactType", "String", T_SCALAR),
    F("Size", "Int", T_SCALAR),
    F("Digest", "String", T_SCALAR),
    F("Annotations", "[Annotation]!", T_ANNOTATION),
};

enum {
	MS_DIGEST = 1,
	MS_CONFIG_DIGEST,
	MS_LAST_UPDATED,
	MS_SIZE,
	MS_IS_SIGNED,
	MS_SIGNATURE_INFO,
	MS_PLATFORM,
	MS_DOWNLOADS,
	MS_LAYERS,
	MS_HISTORY,
	MS_VULNS,
	MS_REFERRERS,
	MS_ARTIFACT_TYPE,
};
static const struct sfield manifest_fields[] = {
    F("Digest", "String", T_SCALAR),
    F("ConfigDigest", "String", T_SCALAR),
    F("LastUpdated", "Time", T_SCALAR),
    F("Size", "String", T_SCALAR),
    F("IsSigned", "Boolean", T_SCALAR),
    F("SignatureInfo", "[SignatureSummary]", T_SIGNATURE),
    F("Platform", "Platform", T_PLATFORM),
    F("DownloadCount", "Int", T_SCALAR),
    F("Layers", "[LayerSummary]", T_LAYER),
    F("History", "[LayerHistory]", T_HISTORY),
    F("Vulnerabilities", "ImageVulnerabilitySummary", T_VULNS),
    F("Referrers", "[Referrer]", T_REFERRER),
    F("ArtifactType", "String", T_SCALAR),
};

enum {
	IS_REPO_NAME = 1,
	IS_TAG,
	IS_DIGEST,
	IS_MEDIA_TYPE,
	IS_MANIFESTS,
	IS_SIZE,
	IS_DOWNLOADS,
	IS_LAST_PULL,
	IS_PUSH,
	IS_PUSHED_BY,
	IS_TAGGED,
	IS_LAST_UPDATED,
	IS_DESCRIPTION,
	IS_IS_SIGNED,
	IS_SIGNATURE_INFO,
	IS_LICENSES,
	IS_LABELS,
	IS_TITLE,
	IS_SOURCE,
	IS_DOCUMENTATION,
	IS_VENDOR,
	IS_AUTHORS,
	IS_VULNS,
	IS_REFERRERS,
	IS_IS_DELETABLE,
	IS_ARTIFACT_TYPE,
};
static const struct sfield image_fields[] = {
    F("RepoName", "String", T_SCALAR),
    F("Tag", "String", T_SCALAR),
    F("Digest", "String", T_SCALAR),
    F("MediaType", "String", T_SCALAR),
    F("Manifests", "[ManifestSummary]", T_MANIFEST),
    F("Size", "String", T_SCALAR),
    F("DownloadCount", "Int", T_SCALAR),
    F("LastPullTimestamp", "Time", T_SCALAR),
    F("PushTimestamp", "Time", T_SCALAR),
    F("PushedBy", "String", T_SCALAR),
    F("TaggedTimestamp", "Time", T_SCALAR),
    F("LastUpdated", "Time", T_SCALAR),
    F("Description", "String", T_SCALAR),
    F("IsSigned", "Boolean", T_SCALAR),
    F("SignatureInfo", "[SignatureSummary]", T_SIGNATURE),
    F("Licenses", "String", T_SCALAR),
    F("Labels", "String", T_SCALAR),
    F("Title", "String", T_SCALAR),
    F("Source", "String", T_SCALAR),
    F("Documentation", "String", T_SCALAR),
    F("Vendor", "String", T_SCALAR),
    F("Authors", "String", T_SCALAR),
    F("Vulnerabilities", "ImageVulnerabilitySummary", T_VULNS),
    F("Referrers", "[Referrer]", T_REFERRER),
    F("IsDeletable", "Boolean", T_SCALAR),
    F("ArtifactType", "String", T_SCALAR),
};

enum {
	RS_NAME = 1,
	RS_LAST_UPDATED,
	RS_SIZE,
	RS_PLATFORMS,
	RS_VENDORS,
	RS_NEWEST,
	RS_DOWNLOADS,
	RS_STARS,
	RS_IS_BOOKMARKED,
	RS_IS_STARRED,
	RS_RANK,
};
static const struct sfield repo_fields[] = {
    F("Name", "String", T_SCALAR),
    F("LastUpdated", "Time", T_SCALAR),
    F("Size", "String", T_SCALAR),
    F("Platforms", "[Platform]", T_PLATFORM),
    F("Vendors", "[String]", T_SCALAR),
    F("NewestImage", "ImageSummary", T_IMAGE),
    F("DownloadCount", "Int", T_SCALAR),
    F("StarCount", "Int", T_SCALAR),
    F("IsBookmarked", "Boolean", T_SCALAR),
    F("IsStarred", "Boolean", T_SCALAR),
    F("Rank", "Int", T_SCALAR),
};

enum { GS_PAGE = 1, GS_IMAGES, GS_REPOS, GS_LAYERS };
static const struct sfield global_fields[] = {
    F("Page", "PageInfo", T_PAGE),
    F("Images", "[ImageSummary]", T_IMAGE),
    F("Repos", "[RepoSummary]", T_REPO),
    F("Layers", "[LayerSummary]", T_LAYER),
};

enum { RI_IMAGES = 1, RI_SUMMARY };
static const struct sfield repoinfo_fields[] = {
    F("Images", "[ImageSummary]", T_IMAGE),
    F("Summary", "RepoSummary", T_REPO),
};

enum { PR_PAGE = 1, PR_RESULTS };
static const struct sfield images_fields[] = {
    F("Page", "PageInfo", T_PAGE),
    F("Results", "[ImageSummary!]!", T_IMAGE),
};
static const struct sfield repos_fields[] = {
    F("Page", "PageInfo", T_PAGE),
    F("Results", "[RepoSummary!]!", T_REPO),
};

static const struct sarg a_cve_image[] = {{"image", "String!"},      {"requestedPage", "PageInput"},
                                          {"searchedCVE", "String"}, {"excludedCVE", "String"},
                                          {"severity", "String"},    {NULL, NULL}};
static const struct sarg a_cve_diff[] = {
    {"minuend", "ImageInput!"}, {"subtrahend", "ImageInput!"}, {"requestedPage", "PageInput"},
    {"searchedCVE", "String"},  {"excludedCVE", "String"},     {NULL, NULL}};
static const struct sarg a_for_cve[] = {
    {"id", "String!"}, {"filter", "Filter"}, {"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_cve_fixed[] = {{"id", "String!"},
                                          {"image", "String!"},
                                          {"filter", "Filter"},
                                          {"requestedPage", "PageInput"},
                                          {NULL, NULL}};
static const struct sarg a_for_digest[] = {
    {"id", "String!"}, {"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_page[] = {{"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_image_list[] = {
    {"repo", "String!"}, {"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_repo[] = {{"repo", "String!"}, {NULL, NULL}};
static const struct sarg a_global[] = {
    {"query", "String!"}, {"filter", "Filter"}, {"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_derived[] = {
    {"image", "String!"}, {"digest", "String"}, {"requestedPage", "PageInput"}, {NULL, NULL}};
static const struct sarg a_image[] = {{"image", "String!"}, {NULL, NULL}};
static const struct sarg a_referrers[] = {
    {"repo", "String!"}, {"digest", "String!"}, {"type", "[String!]"}, {NULL, NULL}};

enum {
	Q_CVE_LIST = 1,
	Q_CVE_DIFF,
	Q_FOR_CVE,
	Q_CVE_FIXED,
	Q_FOR_DIGEST,
	Q_NEWEST,
	Q_IMAGE_LIST,
	Q_EXPANDED,
	Q_GLOBAL,
	Q_DERIVED,
	Q_BASE,
	Q_IMAGE,
	Q_REFERRERS,
	Q_STARRED,
	Q_BOOKMARKED,
};
static const struct sfield query_fields[] = {
    QO("CVEListForImage", "CVEResultForImage!", a_cve_image),
    QO("CVEDiffListForImages", "CVEDiffResult!", a_cve_diff),
    QO("ImageListForCVE", "PaginatedImagesResult!", a_for_cve),
    QO("ImageListWithCVEFixed", "PaginatedImagesResult!", a_cve_fixed),
    Q("ImageListForDigest", "PaginatedImagesResult!", T_IMAGES, a_for_digest),
    Q("RepoListWithNewestImage", "PaginatedReposResult!", T_REPOS, a_page),
    Q("ImageList", "PaginatedImagesResult!", T_IMAGES, a_image_list),
    Q("ExpandedRepoInfo", "RepoInfo!", T_REPOINFO, a_repo),
    Q("GlobalSearch", "GlobalSearchResult!", T_GLOBAL, a_global),
    Q("DerivedImageList", "PaginatedImagesResult!", T_IMAGES, a_derived),
    Q("BaseImageList", "PaginatedImagesResult!", T_IMAGES, a_derived),
    Q("Image", "ImageSummary!", T_IMAGE, a_image),
    Q("Referrers", "[Referrer]!", T_REFERRER, a_referrers),
    Q("StarredRepos", "PaginatedReposResult!", T_REPOS, a_page),
    Q("BookmarkedRepos", "PaginatedReposResult!", T_REPOS, a_page),
};

static const struct stype types[T_N] = {
    [T_QUERY] = TYPE("Query", query_fields),
    [T_GLOBAL] = TYPE("GlobalSearchResult", global_fields),
    [T_PAGE] = TYPE("PageInfo", page_fields),
    [T_REPO] = TYPE("RepoSummary", repo_fields),
    [T_IMAGE] = TYPE("ImageSummary", image_fields),
    [T_MANIFEST] = TYPE("ManifestSummary", manifest_fields),
    [T_PLATFORM] = TYPE("Platform", platform_fields),
    [T_SIGNATURE] = TYPE("SignatureSummary", signature_fields),
    [T_VULNS] = TYPE("ImageVulnerabilitySummary", vulns_fields),
    [T_LAYER] = TYPE("LayerSummary", layer_fields),
    [T_HISTORY] = TYPE("LayerHistory", history_fields),
    [T_HISTDESC] = TYPE("HistoryDescription", histdesc_fields),
    [T_REFERRER] = TYPE("Referrer", referrer_fields),
    [T_ANNOTATION] = TYPE("Annotation", annotation_fields),
    [T_REPOINFO] = TYPE("RepoInfo", repoinfo_fields),
    [T_IMAGES] = TYPE("PaginatedImagesResult", images_fields),
    [T_REPOS] = TYPE("PaginatedReposResult", repos_fields),
};

/* Input types: their fields, and the enum. */
static const struct sarg page_input[] = {
    {"limit", "Int"}, {"offset", "Int"}, {"sortBy", "SortCriteria"}, {NULL, NULL}};
static const struct sarg filter_input[] = {
    {"Os", "[String]"},          {"Arch", "[String]"},     {"HasToBeSigned", "Boolean"},
    {"IsBookmarked", "Boolean"}, {"IsStarred", "Boolean"}, {NULL, NULL}};
static const struct sarg platform_input[] = {{"Os", "String"}, {"Arch", "String"}, {NULL, NULL}};
static const struct sarg image_input[] = {{"Repo", "String!"},
                                          {"Tag", "String!"},
                                          {"Digest", "String"},
                                          {"Platform", "PlatformInput"},
                                          {NULL, NULL}};
static const struct {
	const char *name;
	const struct sarg *fields;
} input_types[] = {
    {"PageInput", page_input},
    {"Filter", filter_input},
    {"PlatformInput", platform_input},
    {"ImageInput", image_input},
};

enum sort {
	SORT_NONE,
	SORT_RELEVANCE,
	SORT_UPDATE_TIME,
	SORT_ALPHA_ASC,
	SORT_ALPHA_DSC,
	SORT_SEVERITY,
	SORT_STARS,
	SORT_DOWNLOADS,
};
static const char *const sort_names[] = {
    [SORT_RELEVANCE] = "RELEVANCE",      [SORT_UPDATE_TIME] = "UPDATE_TIME",
    [SORT_ALPHA_ASC] = "ALPHABETIC_ASC", [SORT_ALPHA_DSC] = "ALPHABETIC_DSC",
    [SORT_SEVERITY] = "SEVERITY",        [SORT_STARS] = "STARS",
    [SORT_DOWNLOADS] = "DOWNLOADS",
};

static enum sort sort_of(const char *name)
{
	for (int i = SORT_RELEVANCE; i <= SORT_DOWNLOADS; i++)
		if (strcmp(sort_names[i], name) == 0)
			return (enum sort)i;
	return SORT_NONE;
}

/* ---- a request's execution ---- */

struct search {
	uv_loop_t *loop;
	wh_store *store;
	wh_auth *auth;
	wh_search_index *idx;
	wh_list waiting; /* struct pending: requests waiting for the index */
};

struct gerr {
	char *message;
	int line, col;
	const char *path; /* the top-level field's key, or NULL */
};

struct ex {
	struct search *s;
	const char *user;
	wh_gql_doc *doc;
	const wh_gql_op *op;
	wh_gql_value *vars; /* op->vars' values, from the request or defaults */
	bool *var_used;
	struct out o;
	struct gerr *errs;
	int n_errs, cap_errs;
	bool failed;     /* the current top-level field failed: it is null */
	const char *top; /* its key */
	/* Scratch, reused by the queries. */
	wh_manifest man; /* a manifest read for layers, history, annotations */
	cJSON *man_doc, *cfg_doc;
	uint8_t man_digest[32];
	const wh_si_repo *man_repo;
};

__attribute__((format(printf, 4, 5))) static void add_error(struct ex *x, int line, int col,
                                                            const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	x->errs = wh_grow(x->errs, sizeof(*x->errs), x->n_errs, &x->cap_errs, 4);
	x->errs[x->n_errs++] = (struct gerr){wh_strdup(msg), line, col, NULL};
}

/* An error of the field running: it fails (null), and data with it. */
#define fail_field(x, ...)                                                                         \
	do {                                                                                       \
		add_error(x, 0, 0, __VA_ARGS__);                                                   \
		(x)->errs[(x)->n_errs - 1].path = (x)->top;                                        \
		(x)->failed = true;                                                                \
	} while (0)

/* ---- checking the operation against the schema ---- */

/* A type as written: name, and its list and non-null marks. */
struct tref {
	char name[64];
	bool non_null, list, item_non_null;
};

static bool tref_parse(const char *s, struct tref *t)
{
	memset(t, 0, sizeof(*t));
	size_t n = strlen(s);
	if (n && s[n - 1] == '!') {
		t->non_null = true;
		n--;
	}
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		t->list = true;
		s++;
		n -= 2;
		if (n && s[n - 1] == '!') {
			t->item_non_null = true;
			n--;
		}
	}
	if (n == 0 || n >= sizeof(t->name) || memchr(s, '[', n) || memchr(s, ']', n) ||
	    memchr(s, '!', n))
		return false;
	memcpy(t->name, s, n);
	t->name[n] = '\0';
	return true;
}

static const struct sarg *input_fields(const char *name)
{
	for (size_t i = 0; i < WH_ARRAY_SIZE(input_types); i++)
		if (strcmp(input_types[i].name, name) == 0)
			return input_types[i].fields;
	return NULL;
}

static bool known_type(const char *name)
{
	static const char *const scalars[] = {"String",  "Int", "Float",
	                                      "Boolean", "ID",  "SortCriteria"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(scalars); i++)
		if (strcmp(scalars[i], name) == 0)
			return true;
	return input_fields(name) != NULL;
}

static const wh_gql_var *var_def(const struct ex *x, const char *name, int *i)
{
	for (int k = 0; k < x->op->n_vars; k++)
		if (strcmp(x->op->vars[k].name, name) == 0) {
			if (i)
				*i = k;
			return &x->op->vars[k];
		}
	return NULL;
}

/* A variable of type `have` may stand where `want` is expected: the same
 * type, or a non-null one where null is allowed (or a nullable one with a
 * default where it is not). */
static bool var_fits(const char *have, const char *want, bool has_default)
{
	size_t hl = strlen(have), wl = strlen(want);
	if (strcmp(have, want) == 0)
		return true;
	if (hl == wl + 1 && have[hl - 1] == '!' && strncmp(have, want, wl) == 0)
		return true;
	return has_default && wl == hl + 1 && want[wl - 1] == '!' && strncmp(have, want, hl) == 0;
}

static void value_text(const wh_gql_value *v, char *buf, size_t n)
{
	switch (v->kind) {
	case WH_GQL_STRING:
		snprintf(buf, n, "\"%.64s\"", v->str);
		break;
	case WH_GQL_INT:
		snprintf(buf, n, "%" PRId64, v->i);
		break;
	case WH_GQL_FLOAT:
		snprintf(buf, n, "%g", v->f);
		break;
	case WH_GQL_BOOL:
		snprintf(buf, n, "%s", v->b ? "true" : "false");
		break;
	case WH_GQL_ENUM:
		snprintf(buf, n, "%.64s", v->str);
		break;
	case WH_GQL_NULL:
		snprintf(buf, n, "null");
		break;
	case WH_GQL_LIST:
		snprintf(buf, n, "[...]");
		break;
	case WH_GQL_OBJECT:
		snprintf(buf, n, "{...}");
		break;
	case WH_GQL_VAR:
		snprintf(buf, n, "$%.64s", v->str);
		break;
	}
}

/* Does v fit type (as written)? from_json: a variable's value, where enums
 * come as strings. Reports the first misfit; false then. */
static bool check_input(struct ex *x, const wh_gql_value *v, const char *type, bool from_json,
                        int line, int col)
{
	struct tref t;
	char txt[96];
	if (!tref_parse(type, &t) || !known_type(t.name)) {
		add_error(x, line, col, "Unknown type \"%s\".", type);
		return false;
	}
	if (v->kind == WH_GQL_VAR) {
		int i;
		const wh_gql_var *d = var_def(x, v->str, &i);
		if (!d) {
			add_error(x, v->line, v->col, "Variable \"$%s\" is not defined.", v->str);
			return false;
		}
		x->var_used[i] = true;
		if (!var_fits(d->type, type, d->has_default)) {
			add_error(x, v->line, v->col,
			          "Variable \"$%s\" of type \"%s\" used in position expecting type "
			          "\"%s\".",
			          v->str, d->type, type);
			return false;
		}
		return true;
	}
	if (v->kind == WH_GQL_NULL) {
		if (t.non_null) {
			add_error(x, v->line ? v->line : line, v->line ? v->col : col,
			          "Expected value of type \"%s\", found null.", type);
			return false;
		}
		return true;
	}
	if (t.list) {
		char item[80];
		snprintf(item, sizeof(item), "%s%s", t.name, t.item_non_null ? "!" : "");
		if (v->kind != WH_GQL_LIST) /* a single value stands for a list of one */
			return check_input(x, v, item, from_json, line, col);
		for (int i = 0; i < v->n; i++)
			if (!check_input(x, &v->items[i], item, from_json, line, col))
				return false;
		return true;
	}
	const struct sarg *fields = input_fields(t.name);
	int l = v->line ? v->line : line, c = v->line ? v->col : col;
	value_text(v, txt, sizeof(txt));
	if (fields) {
		if (v->kind != WH_GQL_OBJECT) {
			add_error(x, l, c, "Expected value of type \"%s\", found %s.", type, txt);
			return false;
		}
		for (int i = 0; i < v->n; i++) {
			const struct sarg *a = fields;
			while (a->name && strcmp(a->name, v->keys[i]) != 0)
				a++;
			if (!a->name) {
				add_error(x, l, c, "Field \"%s.%s\" is not defined by type \"%s\".",
				          t.name, v->keys[i], t.name);
				return false;
			}
			if (!check_input(x, &v->items[i], a->type, from_json, l, c))
				return false;
		}
		for (const struct sarg *a = fields; a->name; a++) {
			bool given = false;
			for (int i = 0; i < v->n && !given; i++)
				given = strcmp(a->name, v->keys[i]) == 0;
			if (!given && a->type[strlen(a->type) - 1] == '!') {
				add_error(
				    x, l, c,
				    "Field \"%s.%s\" of required type \"%s\" was not provided.",
				    t.name, a->name, a->type);
				return false;
			}
		}
		return true;
	}
	bool ok;
	if (strcmp(t.name, "String") == 0 || strcmp(t.name, "ID") == 0)
		ok = v->kind == WH_GQL_STRING;
	else if (strcmp(t.name, "Int") == 0)
		ok = v->kind == WH_GQL_INT && v->i >= INT32_MIN && v->i <= INT32_MAX;
	else if (strcmp(t.name, "Float") == 0)
		ok = v->kind == WH_GQL_INT || v->kind == WH_GQL_FLOAT;
	else if (strcmp(t.name, "Boolean") == 0)
		ok = v->kind == WH_GQL_BOOL;
	else /* SortCriteria */
		ok = (v->kind == WH_GQL_ENUM || (from_json && v->kind == WH_GQL_STRING)) &&
		     sort_of(v->str) != SORT_NONE;
	if (!ok) {
		if (strcmp(t.name, "SortCriteria") == 0 &&
		    (v->kind == WH_GQL_ENUM || v->kind == WH_GQL_STRING))
			add_error(x, l, c,
			          "Value \"%.64s\" does not exist in \"SortCriteria\" enum.",
			          v->str);
		else
			add_error(x, l, c, "%s cannot represent value: %s", t.name, txt);
	}
	return ok;
}

static bool check_selection(struct ex *x, enum type t, wh_gql_field *sel, int n);

static bool check_field(struct ex *x, enum type t, wh_gql_field *f)
{
	const struct stype *ty = &types[t];
	if (strcmp(f->name, "__typename") == 0) {
		f->id = F_TYPENAME;
		if (f->n_args || f->n_sel) {
			add_error(x, f->line, f->col,
			          "Field \"__typename\" must not have a selection since type "
			          "\"String!\" has no subfields.");
			return false;
		}
		return true;
	}
	const struct sfield *sf = NULL;
	for (int i = 0; i < ty->n && !sf; i++)
		if (strcmp(ty->fields[i].name, f->name) == 0) {
			sf = &ty->fields[i];
			f->id = i + 1;
		}
	if (!sf) {
		add_error(x, f->line, f->col, "Cannot query field \"%s\" on type \"%s\".", f->name,
		          ty->name);
		return false;
	}
	for (int i = 0; i < f->n_args; i++) {
		const struct sarg *a = sf->args;
		while (a && a->name && strcmp(a->name, f->args[i].name) != 0)
			a++;
		if (!a || !a->name) {
			add_error(x, f->args[i].value.line, f->args[i].value.col,
			          "Unknown argument \"%s\" on field \"%s.%s\".", f->args[i].name,
			          ty->name, f->name);
			return false;
		}
		if (!check_input(x, &f->args[i].value, a->type, false, f->line, f->col))
			return false;
	}
	for (const struct sarg *a = sf->args; a && a->name; a++) {
		if (a->type[strlen(a->type) - 1] != '!')
			continue;
		bool given = false;
		for (int i = 0; i < f->n_args && !given; i++)
			given = strcmp(f->args[i].name, a->name) == 0;
		if (!given) {
			add_error(x, f->line, f->col,
			          "Field \"%s\" argument \"%s\" of type \"%s\" is required, but it "
			          "was not provided.",
			          f->name, a->name, a->type);
			return false;
		}
	}
	if (sf->opaque)
		return true;
	if (sf->sub == T_SCALAR && f->n_sel) {
		add_error(x, f->line, f->col,
		          "Field \"%s\" must not have a selection since type \"%s\" has no "
		          "subfields.",
		          f->name, sf->type);
		return false;
	}
	if (sf->sub != T_SCALAR && !f->n_sel) {
		add_error(x, f->line, f->col,
		          "Field \"%s\" of type \"%s\" must have a selection of subfields. Did "
		          "you mean \"%s { ... }\"?",
		          f->name, sf->type, f->name);
		return false;
	}
	return sf->sub == T_SCALAR || check_selection(x, (enum type)sf->sub, f->sel, f->n_sel);
}

static bool check_selection(struct ex *x, enum type t, wh_gql_field *sel, int n)
{
	for (int i = 0; i < n; i++)
		if (!check_field(x, t, &sel[i]))
			return false;
	return true;
}

/* The variables' values: the request's (JSON), else the defaults; each
 * checked against its declared type. */
static bool check_variables(struct ex *x, const cJSON *json)
{
	if (json && !cJSON_IsNull(json) && !cJSON_IsObject(json)) {
		add_error(x, 0, 0, "variables must be a JSON object");
		return false;
	}
	for (int i = 0; i < x->op->n_vars; i++) {
		const wh_gql_var *d = &x->op->vars[i];
		struct tref t;
		if (!tref_parse(d->type, &t) || !known_type(t.name)) {
			add_error(x, d->line, d->col, "Unknown type \"%s\".", d->type);
			return false;
		}
		const cJSON *j = json ? cJSON_GetObjectItemCaseSensitive(json, d->name) : NULL;
		if (j) {
			if (wh_gql_from_json(x->doc, j, &x->vars[i]) != 0) {
				add_error(x, d->line, d->col,
				          "Variable \"$%s\" has an invalid value.", d->name);
				return false;
			}
		} else if (d->has_default) {
			x->vars[i] = d->def;
		} else {
			x->vars[i].kind = WH_GQL_NULL;
			if (t.non_null) {
				add_error(
				    x, d->line, d->col,
				    "Variable \"$%s\" of required type \"%s\" was not provided.",
				    d->name, d->type);
				return false;
			}
		}
		if (!check_input(x, &x->vars[i], d->type, j != NULL, d->line, d->col))
			return false;
	}
	return true;
}

/* ---- reading arguments (checked: only their shapes remain to use) ---- */

static const wh_gql_value *resolve(const struct ex *x, const wh_gql_value *v)
{
	int i;
	if (v && v->kind == WH_GQL_VAR && var_def(x, v->str, &i))
		return &x->vars[i];
	return v;
}

static const wh_gql_value *arg(const struct ex *x, const wh_gql_field *f, const char *name)
{
	for (int i = 0; i < f->n_args; i++)
		if (strcmp(f->args[i].name, name) == 0) {
			const wh_gql_value *v = resolve(x, &f->args[i].value);
			return v && v->kind != WH_GQL_NULL ? v : NULL;
		}
	return NULL;
}

static const wh_gql_value *member(const struct ex *x, const wh_gql_value *o, const char *name)
{
	for (int i = 0; o && o->kind == WH_GQL_OBJECT && i < o->n; i++)
		if (strcmp(o->keys[i], name) == 0) {
			const wh_gql_value *v = resolve(x, &o->items[i]);
			return v && v->kind != WH_GQL_NULL ? v : NULL;
		}
	return NULL;
}

static const char *arg_str(const struct ex *x, const wh_gql_field *f, const char *name)
{
	const wh_gql_value *v = arg(x, f, name);
	return v && v->kind == WH_GQL_STRING ? v->str : NULL;
}

/* requestedPage: limit, offset (0 when absent), sortBy (def when absent). */
struct page {
	int64_t limit, offset;
	enum sort sort;
};

static struct page page_of(const struct ex *x, const wh_gql_field *f, enum sort def)
{
	const wh_gql_value *p = arg(x, f, "requestedPage"), *v;
	struct page pg = {0, 0, def};
	if ((v = member(x, p, "limit")))
		pg.limit = v->i;
	if ((v = member(x, p, "offset")))
		pg.offset = v->i;
	if ((v = member(x, p, "sortBy")))
		pg.sort = sort_of(v->str);
	return pg;
}

/* Zot's Filter, cleaned as Zot cleans it (lower-cased, trimmed, empty
 * strings dropped). A list given, even empty, is not an absent one. */
struct filter {
	char **os, **arch;
	int n_os, n_arch;
	bool has_os, has_arch;
	int signed_, bookmarked, starred; /* -1: not given */
};

static void filter_list(const struct ex *x, const wh_gql_value *v, char ***out, int *n, bool *has)
{
	*out = NULL;
	*n = 0;
	*has = v != NULL;
	if (!v)
		return;
	int count = v->kind == WH_GQL_LIST ? v->n : 1, cap = 0;
	for (int i = 0; i < count; i++) {
		const wh_gql_value *s = v->kind == WH_GQL_LIST ? resolve(x, &v->items[i]) : v;
		if (!s || s->kind != WH_GQL_STRING)
			continue;
		const char *b = s->str, *e = s->str + s->len;
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (b == e)
			continue;
		char *c = wh_strndup(b, (size_t)(e - b));
		for (char *p = c; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		*out = wh_grow(*out, sizeof(**out), *n, &cap, 4);
		(*out)[(*n)++] = c;
	}
}

static int filter_bool(const struct ex *x, const wh_gql_value *f, const char *name)
{
	const wh_gql_value *v = member(x, f, name);
	return v && v->kind == WH_GQL_BOOL ? v->b : -1;
}

static void filter_of(const struct ex *x, const wh_gql_field *f, struct filter *flt)
{
	const wh_gql_value *v = arg(x, f, "filter");
	memset(flt, 0, sizeof(*flt));
	filter_list(x, member(x, v, "Os"), &flt->os, &flt->n_os, &flt->has_os);
	filter_list(x, member(x, v, "Arch"), &flt->arch, &flt->n_arch, &flt->has_arch);
	flt->signed_ = filter_bool(x, v, "HasToBeSigned");
	flt->bookmarked = filter_bool(x, v, "IsBookmarked");
	flt->starred = filter_bool(x, v, "IsStarred");
}

static void filter_free(struct filter *flt)
{
	wh_strv_free(flt->os, flt->n_os);
	wh_strv_free(flt->arch, flt->n_arch);
}

static bool in_list(char **v, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(v[i], s) == 0)
			return true;
	return false;
}

/* Does one of the platforms (os << 16 | arch) pass the Os and Arch filters?
 * As Zot: with no platforms and neither filter given, yes. */
static bool platforms_pass(const struct ex *x, const struct filter *flt, const uint32_t *p, int n)
{
	if (n == 0 && !flt->has_os && !flt->has_arch)
		return true;
	for (int i = 0; i < n; i++) {
		const char *os = wh_search_index_str(x->s->idx, (uint16_t)(p[i] >> 16));
		const char *arch = wh_search_index_str(x->s->idx, (uint16_t)(p[i] & 0xFFFF));
		if ((flt->n_os == 0 || in_list(flt->os, flt->n_os, os)) &&
		    (flt->n_arch == 0 || in_list(flt->arch, flt->n_arch, arch)))
			return true;
	}
	return false;
}

/* ---- what a result is made of ---- */

static bool may(const struct ex *x, const char *repo, unsigned action)
{
	return wh_auth_may(x->s->auth, x->user, repo, action);
}

/* An image in a list: a tag of a repository, and which of an index's
 * children it shows (all, or those a digest search matched). */
struct img {
	const wh_si_repo *r;
	const wh_si_image *im;
	const char *tag;
	int64_t time;  /* for UPDATE_TIME */
	uint64_t kids; /* bit i: the i-th child listed (first 64); ~0: all */
	bool all_kids;
};

struct rep {
	const wh_si_repo *r;
	int rank;
};

static const wh_si_image *child(const wh_si_repo *r, const wh_si_image *im, int i)
{
	return wh_si_image_find(r, im->kids[i].digest);
}

/* The image manifests an image shows (an index's children, flattened, that
 * the repository holds; itself for a manifest), each with the descriptor
 * it was reached by. At most max. */
struct shown {
	const wh_si_image *m;
	const wh_si_kid *via;
};

static int shown_of(const struct img *g, struct shown *out, int max)
{
	if (g->im->type == WH_SI_MANIFEST) {
		out[0] = (struct shown){g->im, NULL};
		return 1;
	}
	int n = 0;
	for (int i = 0; i < g->im->n_kids && n < max; i++) {
		if (!g->all_kids && (i >= 64 || !(g->kids >> i & 1)))
			continue;
		const wh_si_image *k = child(g->r, g->im, i);
		if (!k)
			continue;
		if (k->type == WH_SI_MANIFEST) {
			out[n++] = (struct shown){k, &g->im->kids[i]};
		} else {
			/* An index inside: its own children, one level at a time. */
			struct img inner = {g->r, k, g->tag, 0, 0, true};
			struct shown sub[64];
			int m = shown_of(&inner, sub, (int)WH_ARRAY_SIZE(sub));
			for (int j = 0; j < m && n < max; j++)
				out[n++] = sub[j];
		}
	}
	return n;
}

/* Platforms of the manifests an image shows (empty ones too, as Zot's
 * image filter sees them). */
static int img_platforms(const struct img *g, uint32_t *out, int max)
{
	struct shown s[128];
	int n = shown_of(g, s, (int)WH_ARRAY_SIZE(s)), k = 0;
	for (int i = 0; i < n && k < max; i++) {
		uint16_t os = s[i].m->os, arch = s[i].m->arch;
		if (!os && !arch && s[i].via) {
			os = s[i].via->os;
			arch = s[i].via->arch;
		}
		out[k++] = (uint32_t)os << 16 | arch;
	}
	return k;
}

static bool img_passes(const struct ex *x, const struct filter *flt, const struct img *g)
{
	if (flt->signed_ == 1)
		return false; /* nothing is known to be signed */
	uint32_t p[128];
	int n = img_platforms(g, p, (int)WH_ARRAY_SIZE(p));
	return platforms_pass(x, flt, p, n);
}

static bool repo_passes(const struct ex *x, const struct filter *flt, const wh_si_repo *r)
{
	if (flt->signed_ == 1 || flt->bookmarked == 1 || flt->starred == 1)
		return false;
	return platforms_pass(x, flt, r->platforms, r->n_platforms);
}

/* The size an image shows: its manifests' (an index's own bytes are not
 * counted, as Zot's). */
static int64_t img_size(const struct img *g)
{
	if (g->im->type == WH_SI_MANIFEST)
		return wh_si_image_size(g->r, g->im);
	struct shown s[128];
	int n = shown_of(g, s, (int)WH_ARRAY_SIZE(s));
	int64_t size = 0;
	for (int i = 0; i < n; i++)
		size += wh_si_image_size(g->r, s[i].m);
	return size;
}

/* An annotation of an image: an index's own, else its first child's. */
static const char *img_text(const struct img *g, int which)
{
	const char *t = wh_si_text(g->im, which);
	if (*t || g->im->type == WH_SI_MANIFEST)
		return t;
	for (int i = 0; i < g->im->n_kids; i++) {
		const wh_si_image *k = child(g->r, g->im, i);
		if (k && k->type == WH_SI_MANIFEST)
			return wh_si_text(k, which);
	}
	return t;
}

static bool meta_of(const struct ex *x, const wh_si_repo *r, const uint8_t d[32], wh_meta_stats *ms)
{
	char s[WH_DIGEST_LEN + 1];
	wh_si_digest_str(d, s);
	memset(ms, 0, sizeof(*ms));
	return wh_meta_get(wh_store_meta(x->s->store), r->name, s, ms);
}

static int64_t ms_ns(int64_t ms)
{
	return ms > 0 ? ms * 1000000 : WH_SI_NO_TIME;
}

/* ---- sorting and paging, as Zot's page finders ---- */

static enum sort g_sort; /* qsort has no argument: the loop is one thread */

static int img_cmp(const void *pa, const void *pb)
{
	const struct img *a = pa, *b = pb;
	int c = 0;
	switch (g_sort) {
	case SORT_UPDATE_TIME:
		/* Newest first; unknown times last. */
		c = a->time == b->time         ? 0
		    : a->time == WH_SI_NO_TIME ? 1
		    : b->time == WH_SI_NO_TIME ? -1
		    : a->time > b->time        ? -1
		                               : 1;
		break;
	case SORT_DOWNLOADS:
		c = a->im->downloads == b->im->downloads  ? 0
		    : a->im->downloads > b->im->downloads ? -1
		                                          : 1;
		break;
	case SORT_ALPHA_DSC:
		c = strcmp(b->r->name, a->r->name);
		if (!c)
			c = strcmp(b->tag, a->tag);
		break;
	default:
		break;
	}
	if (!c)
		c = strcmp(a->r->name, b->r->name);
	return c ? c : strcmp(a->tag, b->tag);
}

static int rep_cmp(const void *pa, const void *pb)
{
	const struct rep *a = pa, *b = pb;
	int c = 0;
	int64_t ta = a->r->last_updated_ns, tb = b->r->last_updated_ns;
	switch (g_sort) {
	case SORT_RELEVANCE:
		c = a->rank - b->rank;
		break;
	case SORT_UPDATE_TIME:
		c = ta == tb              ? 0
		    : ta == WH_SI_NO_TIME ? 1
		    : tb == WH_SI_NO_TIME ? -1
		    : ta > tb             ? -1
		                          : 1;
		break;
	case SORT_DOWNLOADS:
		c = a->r->downloads == b->r->downloads  ? 0
		    : a->r->downloads > b->r->downloads ? -1
		                                        : 1;
		break;
	case SORT_ALPHA_DSC:
		c = strcmp(b->r->name, a->r->name);
		break;
	default:
		break;
	}
	return c ? c : strcmp(a->r->name, b->r->name);
}

/* Check a page (negative numbers, an order the list cannot be sorted by). */
static bool page_ok(struct ex *x, const struct page *pg, bool repos)
{
	if (pg->limit < 0) {
		fail_field(x, "pagination limit has negative value");
		return false;
	}
	if (pg->offset < 0) {
		fail_field(x, "pagination offset has negative value");
		return false;
	}
	enum sort s = pg->sort == SORT_NONE ? SORT_ALPHA_ASC : pg->sort;
	(void)repos; /* neither repositories nor images sort by severity or stars in Zot */
	if (s == SORT_SEVERITY || s == SORT_STARS) {
		fail_field(x,
		           "sorting repos by '%s' is not supported the pagination sort criteria is "
		           "not supported",
		           sort_names[s]);
		return false;
	}
	return true;
}

/* Zot's arithmetic: [offset, offset+limit) of the sorted list; a limit of 0
 * with an offset of 0 is everything. */
static void page_range(const struct page *pg, int n, int *start, int *end)
{
	int64_t s = pg->offset, e = pg->offset + pg->limit;
	if (s >= n) {
		s = n;
		e = s;
	}
	if (e >= n)
		e = n;
	if (s == 0 && e == 0)
		e = n;
	*start = (int)s;
	*end = (int)e;
}

/* ---- emitting the types ---- */

typedef void (*emit_fn)(struct ex *x, const void *ctx, const wh_gql_field *f);

/* An object of type t: each selected field by fn, or null for all of them
 * when ctx is NULL (Zot's empty summaries, for what the caller may not
 * read). */
static void object(struct ex *x, enum type t, const wh_gql_field *sel, int n, const void *ctx,
                   emit_fn fn)
{
	open_(&x->o, '{');
	for (int i = 0; i < n; i++) {
		const wh_gql_field *f = &sel[i];
		key(&x->o, wh_gql_key(f));
		if (f->id == F_TYPENAME)
			v_str(&x->o, types[t].name);
		else if (!ctx)
			v_null(&x->o);
		else
			fn(x, ctx, f);
	}
	close_(&x->o, '}');
}

struct page_ctx {
	int total, items;
};

static void emit_page(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct page_ctx *p = ctx;
	v_int(&x->o, f->id == PAGE_TOTAL ? p->total : p->items);
}

static void page_object(struct ex *x, const wh_gql_field *f, int total, int items)
{
	struct page_ctx p = {total, items};
	object(x, T_PAGE, f->sel, f->n_sel, &p, emit_page);
}

struct platform_ctx {
	const char *os, *arch;
};

static void emit_platform(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct platform_ctx *p = ctx;
	v_str(&x->o, f->id == PF_OS ? p->os : p->arch);
}

static void platform_object(struct ex *x, const wh_gql_field *f, uint16_t os, uint16_t arch)
{
	struct platform_ctx p = {wh_search_index_str(x->s->idx, os),
	                         wh_search_index_str(x->s->idx, arch)};
	object(x, T_PLATFORM, f->sel, f->n_sel, &p, emit_platform);
}

static void empty_list(struct ex *x)
{
	open_(&x->o, '[');
	close_(&x->o, ']');
}

/* Read (once per manifest) the manifest of m and its config, for layers,
 * history and annotations: what the index does not keep. */
static bool load_manifest(struct ex *x, const wh_si_repo *r, const uint8_t d[32], bool config)
{
	if (x->man_repo == r && x->man_doc && memcmp(x->man_digest, d, 32) == 0) {
		if (!config || x->cfg_doc)
			return true;
	} else {
		wh_manifest_free(&x->man);
		memset(&x->man, 0, sizeof(x->man));
		cJSON_Delete(x->man_doc);
		cJSON_Delete(x->cfg_doc);
		x->man_doc = x->cfg_doc = NULL;
		x->man_repo = NULL;
		char s[WH_DIGEST_LEN + 1];
		wh_si_digest_str(d, s);
		if (wh_store_manifest_get(x->s->store, r->name, s, &x->man) != 0)
			return false;
		x->man_doc = cJSON_ParseWithLength(x->man.data, x->man.len);
		if (!x->man_doc)
			return false;
		x->man_repo = r;
		memcpy(x->man_digest, d, 32);
	}
	if (config) {
		const char *cd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(x->man_doc, "config"), "digest"));
		char *data = NULL;
		size_t len = 0;
		if (cd &&
		    wh_store_blob_read(x->s->store, r->name, cd, WH_MANIFEST_MAX, &data, &len) == 0)
			x->cfg_doc = cJSON_ParseWithLength(data, len);
		free(data);
		if (!x->cfg_doc)
			x->cfg_doc = cJSON_CreateObject();
	}
	return true;
}

struct layer_ctx {
	const char *digest;
	int64_t size;
};

static void emit_layer(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct layer_ctx *l = ctx;
	if (f->id == LY_SIZE)
		v_size(&x->o, l->size);
	else
		v_str(&x->o, l->digest);
}

static void layer_at(const cJSON *layers, int i, struct layer_ctx *l)
{
	const cJSON *d = cJSON_GetArrayItem(layers, i);
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(d, "size");
	l->digest = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "digest"));
	l->size = cJSON_IsNumber(size) ? (int64_t)size->valuedouble : 0;
}

static void layers_list(struct ex *x, const wh_si_repo *r, const wh_si_image *m,
                        const wh_gql_field *f)
{
	open_(&x->o, '[');
	if (load_manifest(x, r, m->digest, false)) {
		const cJSON *layers = cJSON_GetObjectItemCaseSensitive(x->man_doc, "layers");
		int n = cJSON_GetArraySize(layers);
		for (int i = 0; i < n; i++) {
			struct layer_ctx l;
			layer_at(layers, i, &l);
			object(x, T_LAYER, f->sel, f->n_sel, &l, emit_layer);
		}
	}
	close_(&x->o, ']');
}

struct history_ctx {
	const cJSON *h;         /* the config's history entry, or NULL */
	struct layer_ctx layer; /* digest NULL: none */
};

static void emit_histdesc(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const cJSON *h = ((const struct history_ctx *)ctx)->h;
	const cJSON *v;
	if (!h) { /* no history in the config: every field null */
		v_null(&x->o);
		return;
	}
	switch (f->id) {
	case HD_CREATED: {
		const char *s =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "created"));
		if (s)
			v_str(&x->o, s);
		else
			v_null(&x->o);
		break;
	}
	case HD_CREATED_BY:
		v_str(&x->o,
		      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "created_by")));
		break;
	case HD_AUTHOR:
		v_str(&x->o, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "author")));
		break;
	case HD_COMMENT:
		v_str(&x->o, cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "comment")));
		break;
	default:
		v = cJSON_GetObjectItemCaseSensitive(h, "empty_layer");
		v_bool(&x->o, cJSON_IsTrue(v));
	}
}

static void emit_history(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct history_ctx *h = ctx;
	if (f->id == LH_LAYER) {
		if (h->layer.digest)
			object(x, T_LAYER, f->sel, f->n_sel, &h->layer, emit_layer);
		else
			v_null(&x->o);
	} else {
		object(x, T_HISTDESC, f->sel, f->n_sel, h, emit_histdesc);
	}
}

/* Zot's getAllHistory: each history entry, with the next layer unless it
 * is an empty one; without history, each layer alone. */
static void history_list(struct ex *x, const wh_si_repo *r, const wh_si_image *m,
                         const wh_gql_field *f)
{
	open_(&x->o, '[');
	if (load_manifest(x, r, m->digest, true)) {
		const cJSON *layers = cJSON_GetObjectItemCaseSensitive(x->man_doc, "layers");
		const cJSON *hist = cJSON_GetObjectItemCaseSensitive(x->cfg_doc, "history");
		int nl = cJSON_GetArraySize(layers),
		    nh = cJSON_IsArray(hist) ? cJSON_GetArraySize(hist) : 0;
		if (nh == 0) {
			for (int i = 0; i < nl; i++) {
				struct history_ctx h = {NULL, {NULL, 0}};
				layer_at(layers, i, &h.layer);
				object(x, T_HISTORY, f->sel, f->n_sel, &h, emit_history);
			}
		}
		int li = 0;
		for (int i = 0; i < nh; i++) {
			struct history_ctx h = {cJSON_GetArrayItem(hist, i), {NULL, 0}};
			if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h.h, "empty_layer")) &&
			    li < nl)
				layer_at(layers, li++, &h.layer);
			object(x, T_HISTORY, f->sel, f->n_sel, &h, emit_history);
		}
	}
	close_(&x->o, ']');
}

struct annotation_ctx {
	const char *key, *value;
};

static void emit_annotation(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct annotation_ctx *a = ctx;
	v_str(&x->o, f->id == AN_KEY ? a->key : a->value);
}

struct referrer_ctx {
	const wh_si_repo *r;
	const wh_si_image *im;
};

static void emit_referrer(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct referrer_ctx *c = ctx;
	switch (f->id) {
	case RF_MEDIA_TYPE:
		v_str(&x->o, wh_search_index_str(x->s->idx, c->im->media_type));
		break;
	case RF_ARTIFACT_TYPE:
		v_str(&x->o, wh_search_index_str(x->s->idx, c->im->artifact_type));
		break;
	case RF_SIZE:
		v_int(&x->o, c->im->msize);
		break;
	case RF_DIGEST:
		v_digest(&x->o, c->im->digest);
		break;
	default: {
		open_(&x->o, '[');
		if (load_manifest(x, c->r, c->im->digest, false)) {
			const cJSON *a;
			cJSON_ArrayForEach(
			    a, cJSON_GetObjectItemCaseSensitive(x->man_doc, "annotations"))
			{
				if (!cJSON_IsString(a))
					continue;
				struct annotation_ctx ac = {a->string, a->valuestring};
				object(x, T_ANNOTATION, f->sel, f->n_sel, &ac, emit_annotation);
			}
		}
		close_(&x->o, ']');
	}
	}
}

/* The manifests of r whose subject is d, of the artifact types asked (none:
 * all; "" among them: all). */
static void referrers_list(struct ex *x, const wh_si_repo *r, const uint8_t d[32],
                           const wh_gql_value *types_, const wh_gql_field *f)
{
	open_(&x->o, '[');
	for (int i = 0; i < r->n_images; i++) {
		const wh_si_image *im = &r->images[i];
		if (!im->subject || memcmp(im->subject, d, 32) != 0)
			continue;
		/* A single value stands for a list of one. */
		int n_types = !types_ ? 0 : types_->kind == WH_GQL_LIST ? types_->n : 1;
		if (n_types > 0) {
			const char *at = wh_search_index_str(x->s->idx, im->artifact_type);
			bool ok = false;
			for (int k = 0; k < n_types && !ok; k++) {
				const wh_gql_value *t = types_->kind == WH_GQL_LIST
				                            ? resolve(x, &types_->items[k])
				                            : types_;
				ok = t->kind == WH_GQL_STRING &&
				     (!*t->str || strcmp(t->str, at) == 0);
			}
			if (!ok)
				continue;
		}
		struct referrer_ctx c = {r, im};
		object(x, T_REFERRER, f->sel, f->n_sel, &c, emit_referrer);
	}
	close_(&x->o, ']');
}

struct manifest_ctx {
	const wh_si_repo *r;
	struct shown s;
};

static void emit_manifest(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct manifest_ctx *c = ctx;
	const wh_si_image *m = c->s.m;
	switch (f->id) {
	case MS_DIGEST:
		v_digest(&x->o, m->digest);
		break;
	case MS_CONFIG_DIGEST:
		v_digest(&x->o, m->config);
		break;
	case MS_LAST_UPDATED:
		v_time(&x->o, wh_si_image_time(c->r, m));
		break;
	case MS_SIZE:
		v_size(&x->o, wh_si_image_size(c->r, m));
		break;
	case MS_IS_SIGNED:
		v_bool(&x->o, false);
		break;
	case MS_SIGNATURE_INFO:
		empty_list(x);
		break;
	case MS_PLATFORM:
		if (!m->os && !m->arch && c->s.via)
			platform_object(x, f, c->s.via->os, c->s.via->arch);
		else
			platform_object(x, f, m->os, m->arch);
		break;
	case MS_DOWNLOADS:
		v_int(&x->o, m->downloads);
		break;
	case MS_LAYERS:
		layers_list(x, c->r, m, f);
		break;
	case MS_HISTORY:
		history_list(x, c->r, m, f);
		break;
	case MS_VULNS:
		v_null(&x->o);
		break;
	case MS_REFERRERS:
		referrers_list(x, c->r, m->digest, NULL, f);
		break;
	default:
		v_str(&x->o, wh_search_index_str(x->s->idx, m->artifact_type));
	}
}

static const int image_text[] = {
    [IS_DESCRIPTION] = WH_SI_DESCRIPTION, [IS_LICENSES] = WH_SI_LICENSES,
    [IS_LABELS] = WH_SI_LABELS,           [IS_TITLE] = WH_SI_TITLE,
    [IS_SOURCE] = WH_SI_SOURCE,           [IS_DOCUMENTATION] = WH_SI_DOCUMENTATION,
    [IS_VENDOR] = WH_SI_VENDOR,           [IS_AUTHORS] = WH_SI_AUTHORS,
};

static void emit_image(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct img *g = ctx;
	wh_meta_stats ms;
	switch (f->id) {
	case IS_REPO_NAME:
		v_str(&x->o, g->r->name);
		break;
	case IS_TAG:
		v_str(&x->o, g->tag);
		break;
	case IS_DIGEST:
		v_digest(&x->o, g->im->digest);
		break;
	case IS_MEDIA_TYPE:
		v_str(&x->o, wh_search_index_str(x->s->idx, g->im->media_type));
		break;
	case IS_MANIFESTS: {
		struct shown s[128];
		int n = shown_of(g, s, (int)WH_ARRAY_SIZE(s));
		open_(&x->o, '[');
		for (int i = 0; i < n; i++) {
			struct manifest_ctx c = {g->r, s[i]};
			object(x, T_MANIFEST, f->sel, f->n_sel, &c, emit_manifest);
		}
		close_(&x->o, ']');
		break;
	}
	case IS_SIZE:
		v_size(&x->o, img_size(g));
		break;
	case IS_DOWNLOADS:
		v_int(&x->o, g->im->downloads);
		break;
	case IS_LAST_PULL:
		meta_of(x, g->r, g->im->digest, &ms);
		v_time(&x->o, ms_ns(ms.pulled_ms));
		break;
	case IS_PUSH:
	case IS_TAGGED: /* when the tag was set is not kept: its push, as Zot falls back */
		meta_of(x, g->r, g->im->digest, &ms);
		v_time(&x->o, ms_ns(ms.pushed_ms));
		break;
	case IS_PUSHED_BY:
	case IS_VULNS:
		v_null(&x->o);
		break;
	case IS_LAST_UPDATED:
		v_time(&x->o, wh_si_image_time(g->r, g->im));
		break;
	case IS_IS_SIGNED:
		v_bool(&x->o, false);
		break;
	case IS_SIGNATURE_INFO:
		empty_list(x);
		break;
	case IS_REFERRERS:
		referrers_list(x, g->r, g->im->digest, NULL, f);
		break;
	case IS_IS_DELETABLE:
		v_bool(&x->o, may(x, g->r->name, WH_ACTION_DELETE));
		break;
	case IS_ARTIFACT_TYPE:
		v_str(&x->o, wh_search_index_str(x->s->idx, g->im->artifact_type));
		break;
	default:
		v_str(&x->o, img_text(g, image_text[f->id]));
	}
}

static struct img img_of(const wh_si_repo *r, const wh_si_image *im, const char *tag)
{
	struct img g = {r, im, tag, 0, ~(uint64_t)0, true};
	g.time = wh_si_image_time(r, im);
	return g;
}

static void image_object(struct ex *x, const wh_gql_field *f, const struct img *g)
{
	object(x, T_IMAGE, f->sel, f->n_sel, g, emit_image);
}

static void emit_repo(struct ex *x, const void *ctx, const wh_gql_field *f)
{
	const struct rep *p = ctx;
	const wh_si_repo *r = p->r;
	switch (f->id) {
	case RS_NAME:
		v_str(&x->o, r->name);
		break;
	case RS_LAST_UPDATED:
		v_time(&x->o, r->last_updated_ns);
		break;
	case RS_SIZE:
		v_size(&x->o, r->size);
		break;
	case RS_PLATFORMS:
		open_(&x->o, '[');
		for (int i = 0; i < r->n_platforms; i++)
			platform_object(x, f, (uint16_t)(r->platforms[i] >> 16),
			                (uint16_t)(r->platforms[i] & 0xFFFF));
		close_(&x->o, ']');
		break;
	case RS_VENDORS: {
		/* Each tagged image's vendor, once. */
		const char *seen[64];
		int n = 0;
		open_(&x->o, '[');
		for (int i = 0; i < r->n_tags && n < (int)WH_ARRAY_SIZE(seen); i++) {
			const wh_si_image *im = wh_si_image_find(r, r->tags[i].digest);
			if (!im)
				continue;
			struct img g = img_of(r, im, r->tags[i].name);
			const char *v = img_text(&g, WH_SI_VENDOR);
			bool dup = !*v;
			for (int k = 0; k < n && !dup; k++)
				dup = strcmp(seen[k], v) == 0;
			if (!dup) {
				seen[n++] = v;
				v_str(&x->o, v);
			}
		}
		close_(&x->o, ']');
		break;
	}
	case RS_NEWEST: {
		const wh_si_image *im =
		    r->newest >= 0 ? wh_si_image_find(r, r->tags[r->newest].digest) : NULL;
		if (!im) {
			v_null(&x->o);
			break;
		}
		struct img g = img_of(r, im, r->tags[r->newest].name);
		image_object(x, f, &g);
		break;
	}
	case RS_DOWNLOADS:
		v_int(&x->o, (int64_t)WH_MIN(r->downloads, (uint64_t)INT32_MAX));
		break;
	case RS_STARS:
		v_int(&x->o, 0);
		break;
	case RS_IS_BOOKMARKED:
	case RS_IS_STARRED:
		v_bool(&x->o, false);
		break;
	default:
		v_int(&x->o, p->rank);
	}
}

static void repo_object(struct ex *x, const wh_gql_field *f, const struct rep *p)
{
	object(x, T_REPO, f->sel, f->n_sel, p, emit_repo);
}

/* ---- the queries ---- */

/* A list of images, sorted and paged: the field's Page and Results (or, in
 * GlobalSearchResult, Page and Images; Repos null, Layers []). */
struct img_list {
	struct img *v;
	int n, cap;
};

static void img_add(struct img_list *l, const struct img *g)
{
	l->v = wh_grow(l->v, sizeof(*l->v), l->n, &l->cap, 16);
	l->v[l->n++] = *g;
}

struct rep_list {
	struct rep *v;
	int n, cap;
};

static void rep_add(struct rep_list *l, const wh_si_repo *r, int rank)
{
	l->v = wh_grow(l->v, sizeof(*l->v), l->n, &l->cap, 16);
	l->v[l->n++] = (struct rep){r, rank};
}

enum shape { PAGINATED, GLOBAL_IMAGES, GLOBAL_REPOS };

/* What differs between a list of images and a list of repositories in the
 * answers that page them. */
struct list_kind {
	size_t size;                              /* of an element */
	int (*cmp)(const void *a, const void *b); /* by g_sort */
	void (*object)(struct ex *x, const wh_gql_field *f, const void *elem);
	const char *paginated_type; /* PaginatedImagesResult, ... */
	int global_results;         /* GS_IMAGES or GS_REPOS */
	int global_null;            /* a GlobalSearchResult field answered null, or -1 */
};

static void image_elem(struct ex *x, const wh_gql_field *f, const void *e)
{
	image_object(x, f, e);
}

static void repo_elem(struct ex *x, const wh_gql_field *f, const void *e)
{
	repo_object(x, f, e);
}

/* Zot answers an images search with Repos null, a repositories search with
 * Images []. */
static const struct list_kind image_list = {sizeof(struct img),      img_cmp,   image_elem,
                                            "PaginatedImagesResult", GS_IMAGES, GS_REPOS};
static const struct list_kind repo_list = {sizeof(struct rep),     rep_cmp,  repo_elem,
                                           "PaginatedReposResult", GS_REPOS, -1};

/* Sort v (n elements of k), and answer the page pg of it in the shape the
 * field asks: Page and Results, or GlobalSearchResult's Page and Images or
 * Repos (the other as k says; Layers []). */
static void answer_list(struct ex *x, const wh_gql_field *f, const struct list_kind *k, void *v,
                        int n, const struct page *pg, enum shape shape)
{
	g_sort = pg->sort == SORT_NONE ? SORT_ALPHA_ASC : pg->sort;
	if (n > 1)
		qsort(v, (size_t)n, k->size, k->cmp);
	int start, end;
	page_range(pg, n, &start, &end);
	open_(&x->o, '{');
	for (int i = 0; i < f->n_sel; i++) {
		const wh_gql_field *s = &f->sel[i];
		key(&x->o, wh_gql_key(s));
		if (s->id == F_TYPENAME) {
			v_str(&x->o, shape == PAGINATED ? k->paginated_type : "GlobalSearchResult");
		} else if (s->id == (shape == PAGINATED ? PR_PAGE : GS_PAGE)) {
			page_object(x, s, n, end - start);
		} else if (s->id == (shape == PAGINATED ? PR_RESULTS : k->global_results)) {
			open_(&x->o, '[');
			for (int j = start; j < end; j++)
				k->object(x, s, (const char *)v + (size_t)j * k->size);
			close_(&x->o, ']');
		} else if (shape != PAGINATED && s->id == k->global_null) {
			v_null(&x->o);
		} else {
			empty_list(x); /* Layers */
		}
	}
	close_(&x->o, '}');
}

static void answer_images(struct ex *x, const wh_gql_field *f, struct img_list *l,
                          const struct page *pg, enum shape shape)
{
	answer_list(x, f, &image_list, l->v, l->n, pg, shape);
}

static void answer_repos(struct ex *x, const wh_gql_field *f, struct rep_list *l,
                         const struct page *pg, enum shape shape)
{
	answer_list(x, f, &repo_list, l->v, l->n, pg, shape);
}

/* Zot's RankRepoName: lower is better, -1 no match. */
static int rank_repo(const char *q, const char *name)
{
	size_t ql = strlen(q);
	while (ql && q[ql - 1] == '/')
		ql--;
	while (ql && *q == '/') {
		q++;
		ql--;
	}
	char qs[QUERY_MAX + 1];
	snprintf(qs, sizeof(qs), "%.*s", (int)ql, q);
	int qn = 1, rn = 1;
	for (const char *c = qs; *c; c++)
		qn += *c == '/';
	for (const char *c = name; *c; c++)
		rn += *c == '/';
	if (qn > rn)
		return -1;
	if (strcmp(qs, name) == 0)
		return 0;
	const char *last = strrchr(name, '/');
	last = last ? last + 1 : name;
	const char *hit;
	if (qn == 1) {
		if ((hit = strstr(last, qs)))
			return (int)(hit - last) + 1;
		size_t first_len = strcspn(name, "/");
		char first[WH_NAME_MAX + 1];
		snprintf(first, sizeof(first), "%.*s", (int)first_len, name);
		if ((hit = strstr(first, qs)))
			return ((int)(hit - first) + 1) * 10;
	}
	/* The query's directories are the name's first ones: its last part in
	 * the name's last part. */
	const char *qlast = strrchr(qs, '/');
	size_t qdirs = qlast ? (size_t)(qlast - qs) : 0;
	bool prefix = qdirs == 0 || (strncmp(name, qs, qdirs) == 0 && name[qdirs] == '/');
	if (prefix) {
		if ((hit = strstr(last, qlast ? qlast + 1 : qs)))
			return (int)(hit - last) + 1;
	}
	if (strncmp(name, qs, strlen(qs)) == 0)
		return 10;
	if ((hit = strstr(name, qs)))
		return ((int)(hit - name) + 1) * 100;
	return -1;
}

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

/* A digest search: "sha256:" and a hex prefix, as nibbles, to compare with
 * digests without writing them out. */
struct dprefix {
	const char *q; /* as asked */
	uint8_t raw[32];
	int nibbles; /* -1: not "sha256:" and hex, so no digest starts with it */
};

static void dprefix_of(const char *q, struct dprefix *p)
{
	memset(p, 0, sizeof(*p));
	p->q = q;
	p->nibbles = -1;
	if (!has_prefix(q, "sha256:") || strlen(q + 7) > 64)
		return;
	int n = 0;
	for (const char *c = q + 7; *c; c++, n++) {
		int v = *c >= '0' && *c <= '9'   ? *c - '0'
		        : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10
		                                 : -1;
		if (v < 0)
			return;
		p->raw[n / 2] |= (uint8_t)(n % 2 ? v : v << 4);
	}
	p->nibbles = n;
}

/* Do the first nibbles of d (len bytes) match? (At most len * 2 of them.) */
static bool nibbles_match(const struct dprefix *p, const uint8_t *d, int len)
{
	int n = WH_MIN(p->nibbles, len * 2);
	if (n < 0 || memcmp(d, p->raw, (size_t)(n / 2)) != 0)
		return false;
	return n % 2 == 0 || (d[n / 2] & 0xF0) == p->raw[n / 2];
}

/* The digest target: does a manifest, its config or a layer start with the
 * query? Layers are known by the first 8 bytes of their digests; a longer
 * query is confirmed against the manifest itself. */
static bool manifest_matches(struct ex *x, const wh_si_repo *r, const wh_si_image *m,
                             const struct dprefix *p)
{
	if (nibbles_match(p, m->digest, 32))
		return true;
	if (m->type != WH_SI_MANIFEST || p->nibbles < 0)
		return false;
	if (nibbles_match(p, m->config, 32))
		return true;
	bool confirm = false;
	for (int i = 0; i < m->n_layers && !confirm; i++) {
		uint8_t k[8];
		for (int b = 0; b < 8; b++)
			k[b] = (uint8_t)(m->layers[i].key >> (56 - 8 * b));
		if (!nibbles_match(p, k, 8))
			continue;
		if (p->nibbles <= 16)
			return true;
		confirm = true;
	}
	if (!confirm && m->n_layers < WH_SI_LAYERS_MAX)
		return false;
	/* A candidate (or layers past those kept): the manifest says. */
	if (!load_manifest(x, r, m->digest, false))
		return false;
	const cJSON *l;
	cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(x->man_doc, "layers"))
	{
		const char *ld =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, "digest"));
		if (ld && has_prefix(ld, p->q))
			return true;
	}
	return false;
}

/* Images of every tag the caller may read that the digest search matches:
 * an index with only the children that matched (all, when its own digest
 * is the query). */
static void digest_images(struct ex *x, const char *q, struct img_list *l)
{
	struct dprefix p;
	dprefix_of(q, &p);
	for (int i = 0; i < wh_search_index_count(x->s->idx); i++) {
		const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
		if (!r->n_tags || !may(x, r->name, WH_ACTION_READ))
			continue;
		for (int t = 0; t < r->n_tags; t++) {
			const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
			if (!im)
				continue;
			struct img g = img_of(r, im, r->tags[t].name);
			if (im->type == WH_SI_MANIFEST) {
				if (manifest_matches(x, r, im, &p))
					img_add(l, &g);
				continue;
			}
			char d[WH_DIGEST_LEN + 1];
			wh_si_digest_str(im->digest, d);
			if (strcmp(d, q) != 0) {
				g.all_kids = false;
				g.kids = 0;
				for (int k = 0; k < im->n_kids && k < 64; k++) {
					const wh_si_image *c = child(r, im, k);
					if (c && manifest_matches(x, r, c, &p))
						g.kids |= (uint64_t)1 << k;
				}
				if (!g.kids)
					continue;
			}
			img_add(l, &g);
		}
	}
}

static void q_global(struct ex *x, const wh_gql_field *f)
{
	const char *raw = arg_str(x, f, "query");
	struct page pg = page_of(x, f, SORT_RELEVANCE);
	struct filter flt;
	if (!raw)
		raw = "";
	if (strlen(raw) > QUERY_MAX) {
		fail_field(x,
		           "max string size limit exceeded for query parameter. max=%d current=%zu "
		           "request parameter has invalid value",
		           QUERY_MAX, strlen(raw));
		return;
	}
	if (pg.limit < 0 || pg.offset < 0) {
		fail_field(x,
		           "requested page %s parameter can't be negative request parameter has "
		           "invalid value",
		           pg.limit < 0 ? "limit" : "offset");
		return;
	}
	/* cleanQuery: trimmed of blanks and slashes, lower-cased. */
	char q[QUERY_MAX + 1];
	const char *b = raw, *e = raw + strlen(raw);
	while (b < e && isspace((unsigned char)*b))
		b++;
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	while (b < e && *b == '/')
		b++;
	while (e > b && e[-1] == '/')
		e--;
	snprintf(q, sizeof(q), "%.*s", (int)(e - b), b);
	for (char *c = q; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	filter_of(x, f, &flt);

	const char *colon = strchr(q, ':');
	if (!strpbrk(q, ":@")) {
		/* Repository names, ranked. */
		struct rep_list l = {0};
		if (page_ok(x, &pg, true)) {
			for (int i = 0; i < wh_search_index_count(x->s->idx); i++) {
				const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
				if (!r->n_tags || !may(x, r->name, WH_ACTION_READ))
					continue;
				int rank = rank_repo(q, r->name);
				if (rank >= 0 && repo_passes(x, &flt, r))
					rep_add(&l, r, rank);
			}
			answer_repos(x, f, &l, &pg, GLOBAL_REPOS);
		}
		free(l.v);
		filter_free(&flt);
		return;
	}
	struct img_list l = {0};
	if (has_prefix(q, "sha256:")) {
		digest_images(x, q, &l);
	} else if (colon && colon != q) {
		/* repo:tagprefix: exactly one colon. */
		if (strchr(colon + 1, ':')) {
			fail_field(x, "failed to parse search text, invalid format invalid image "
			              "reference format, use [repo:tag] or [repo@digest]");
			goto out;
		}
		char repo[QUERY_MAX + 1], tag[QUERY_MAX + 1];
		snprintf(repo, sizeof(repo), "%.*s", (int)(colon - q), q);
		snprintf(tag, sizeof(tag), "%s", colon + 1);
		/* Each part trimmed. */
		char *rb = repo, *re = repo + strlen(repo), *tb = tag, *te = tag + strlen(tag);
		while (rb < re && isspace((unsigned char)*rb))
			rb++;
		while (re > rb && isspace((unsigned char)re[-1]))
			*--re = '\0';
		while (tb < te && isspace((unsigned char)*tb))
			tb++;
		while (te > tb && isspace((unsigned char)te[-1]))
			*--te = '\0';
		const wh_si_repo *r = wh_search_index_repo(x->s->idx, rb);
		if (r && strcmp(r->name, rb) == 0 && may(x, r->name, WH_ACTION_READ)) {
			for (int t = 0; t < r->n_tags; t++) {
				const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
				if (im && has_prefix(r->tags[t].name, tb)) {
					struct img g = img_of(r, im, r->tags[t].name);
					img_add(&l, &g);
				}
			}
		}
	} else if (colon == q && q[1]) {
		/* :tag, in every repository: a tag that contains it. */
		const char *want = q + 1;
		for (int i = 0; i < wh_search_index_count(x->s->idx); i++) {
			const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
			if (!r->n_tags || !may(x, r->name, WH_ACTION_READ))
				continue;
			for (int t = 0; t < r->n_tags; t++) {
				char lower[WH_TAG_MAX + 1];
				snprintf(lower, sizeof(lower), "%s", r->tags[t].name);
				for (char *c = lower; *c; c++)
					*c = (char)tolower((unsigned char)*c);
				const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
				if (im && strstr(lower, want)) {
					struct img g = img_of(r, im, r->tags[t].name);
					img_add(&l, &g);
				}
			}
		}
	} else {
		fail_field(x, "invalid search query");
		goto out;
	}
	if (page_ok(x, &pg, false)) {
		int kept = 0;
		for (int i = 0; i < l.n; i++)
			if (img_passes(x, &flt, &l.v[i]))
				l.v[kept++] = l.v[i];
		l.n = kept;
		answer_images(x, f, &l, &pg, GLOBAL_IMAGES);
	}
out:
	free(l.v);
	filter_free(&flt);
}

/* Every tag of the repositories the caller may read (of repo only, unless
 * it is ""). */
static void q_image_list(struct ex *x, const wh_gql_field *f)
{
	const char *repo = arg_str(x, f, "repo");
	struct page pg = page_of(x, f, SORT_RELEVANCE);
	struct img_list l = {0};
	if (!page_ok(x, &pg, false))
		return;
	for (int i = 0; i < wh_search_index_count(x->s->idx); i++) {
		const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
		if ((repo && *repo && strcmp(r->name, repo) != 0) ||
		    !may(x, r->name, WH_ACTION_READ))
			continue;
		for (int t = 0; t < r->n_tags; t++) {
			const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
			if (im) {
				struct img g = img_of(r, im, r->tags[t].name);
				img_add(&l, &g);
			}
		}
	}
	answer_images(x, f, &l, &pg, PAGINATED);
	free(l.v);
}

static void q_for_digest(struct ex *x, const wh_gql_field *f)
{
	const char *id = arg_str(x, f, "id");
	struct page pg = page_of(x, f, SORT_RELEVANCE);
	struct img_list l = {0};
	char q[WH_DIGEST_LEN + 8];
	if (!page_ok(x, &pg, false))
		return;
	/* A digest, or a hex prefix of one. */
	snprintf(q, sizeof(q), "%s%.*s",
	         has_prefix(id ? id : "", "sha256:") ? "" : "sha256:", WH_DIGEST_LEN, id ? id : "");
	digest_images(x, q, &l);
	answer_images(x, f, &l, &pg, PAGINATED);
	free(l.v);
}

static void q_repo_list(struct ex *x, const wh_gql_field *f, bool none)
{
	struct page pg = page_of(x, f, SORT_UPDATE_TIME);
	struct rep_list l = {0};
	if (!page_ok(x, &pg, true))
		return;
	for (int i = 0; !none && i < wh_search_index_count(x->s->idx); i++) {
		const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
		if (r->n_tags && may(x, r->name, WH_ACTION_READ))
			rep_add(&l, r, 0);
	}
	answer_repos(x, f, &l, &pg, PAGINATED);
	free(l.v);
}

static void q_expanded(struct ex *x, const wh_gql_field *f)
{
	const char *name = arg_str(x, f, "repo");
	const wh_si_repo *r = name ? wh_search_index_repo(x->s->idx, name) : NULL;
	if (name && !may(x, name, WH_ACTION_READ)) {
		/* Nothing said to whom may not read it: an empty RepoInfo. */
		object(x, T_REPOINFO, f->sel, f->n_sel, NULL, NULL);
		return;
	}
	if (!r || !r->n_tags) {
		fail_field(x, "repo metadata not found for given repo name");
		return;
	}
	open_(&x->o, '{');
	for (int i = 0; i < f->n_sel; i++) {
		const wh_gql_field *s = &f->sel[i];
		key(&x->o, wh_gql_key(s));
		if (s->id == F_TYPENAME) {
			v_str(&x->o, "RepoInfo");
		} else if (s->id == RI_SUMMARY) {
			struct rep p = {r, 0};
			repo_object(x, s, &p);
		} else {
			struct img_list l = {0};
			for (int t = 0; t < r->n_tags; t++) {
				const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
				if (im) {
					struct img g = img_of(r, im, r->tags[t].name);
					img_add(&l, &g);
				}
			}
			g_sort = SORT_UPDATE_TIME;
			if (l.n > 1)
				qsort(l.v, (size_t)l.n, sizeof(*l.v), img_cmp);
			open_(&x->o, '[');
			for (int k = 0; k < l.n; k++)
				image_object(x, s, &l.v[k]);
			close_(&x->o, ']');
			free(l.v);
		}
	}
	close_(&x->o, '}');
}

/* "repo:tag" as Zot's Image finds it (and DerivedImageList, BaseImageList):
 * 0 and *g; 1: the caller may not read it (an empty summary, no error);
 * -1: failed (the error is set). digest: the image is that manifest. */
static int find_image(struct ex *x, const char *ref, const char *digest, const char *gone,
                      struct img *g)
{
	char repo[WH_NAME_MAX + 1];
	const char *colon = ref ? strchr(ref, ':') : NULL;
	if (!colon || !colon[1]) {
		fail_field(x, "no reference provided");
		return -1;
	}
	snprintf(repo, sizeof(repo), "%.*s", (int)WH_MIN(colon - ref, WH_NAME_MAX), ref);
	if (!may(x, repo, WH_ACTION_READ))
		return 1;
	const wh_si_repo *r = wh_search_index_repo(x->s->idx, repo);
	if (!r || !r->n_tags) {
		fail_field(x, "%s", gone);
		return -1;
	}
	const wh_si_tag *t = wh_si_tag_find(r, colon + 1);
	if (!t) {
		fail_field(x, "can't find image: %s:%s", repo, colon + 1);
		return -1;
	}
	uint8_t raw[32];
	const wh_si_image *im = wh_si_image_find(r, t->digest);
	if (digest && (!wh_si_digest_raw(digest, raw) || !(im = wh_si_image_find(r, raw)))) {
		fail_field(x, "image meta not found");
		return -1;
	}
	if (!im) {
		fail_field(x, "can't find image: %s:%s", repo, colon + 1);
		return -1;
	}
	*g = img_of(r, im, t->name);
	return 0;
}

static void q_image(struct ex *x, const wh_gql_field *f)
{
	struct img g;
	int rc = find_image(x, arg_str(x, f, "image"), NULL,
	                    "repo metadata not found for given repo name", &g);
	if (rc < 0)
		return;
	object(x, T_IMAGE, f->sel, f->n_sel, rc == 0 ? &g : NULL, emit_image);
}

/* Is base's layer list a prefix of derived's (and not empty)? */
static bool layers_prefix(const wh_si_image *base, const wh_si_image *derived)
{
	if (base->n_layers == 0 || base->n_layers > derived->n_layers ||
	    memcmp(base->digest, derived->digest, 32) == 0)
		return false;
	for (int i = 0; i < base->n_layers; i++)
		if (base->layers[i].key != derived->layers[i].key)
			return false;
	return true;
}

/* DerivedImageList (derived true) and BaseImageList: the tagged images,
 * each manifest of which builds on (or under) one of the image's. */
static void q_lineage(struct ex *x, const wh_gql_field *f, bool derived)
{
	struct img g;
	struct page pg = page_of(x, f, SORT_UPDATE_TIME);
	int rc = find_image(x, arg_str(x, f, "image"), arg_str(x, f, "digest"),
	                    "repository not found", &g);
	if (rc < 0 || !page_ok(x, &pg, false))
		return;
	struct shown mine[128];
	int n_mine = rc == 0 ? shown_of(&g, mine, (int)WH_ARRAY_SIZE(mine)) : 0;
	struct img_list l = {0};
	for (int i = 0; n_mine && i < wh_search_index_count(x->s->idx); i++) {
		const wh_si_repo *r = wh_search_index_at(x->s->idx, i);
		if (!r->n_tags || !may(x, r->name, WH_ACTION_READ))
			continue;
		for (int t = 0; t < r->n_tags; t++) {
			const wh_si_image *im = wh_si_image_find(r, r->tags[t].digest);
			if (!im)
				continue;
			struct img c = img_of(r, im, r->tags[t].name);
			struct shown theirs[128];
			int n = shown_of(&c, theirs, (int)WH_ARRAY_SIZE(theirs));
			if (im->type == WH_SI_INDEX) {
				c.all_kids = false;
				c.kids = 0;
			}
			bool any = false;
			for (int k = 0; k < n; k++) {
				bool hit = false;
				for (int m = 0; m < n_mine && !hit; m++)
					hit = derived ? layers_prefix(mine[m].m, theirs[k].m)
					              : layers_prefix(theirs[k].m, mine[m].m);
				if (!hit)
					continue;
				any = true;
				for (int j = 0; im->type == WH_SI_INDEX && j < im->n_kids && j < 64;
				     j++)
					if (memcmp(im->kids[j].digest, theirs[k].m->digest, 32) ==
					    0)
						c.kids |= (uint64_t)1 << j;
			}
			if (any)
				img_add(&l, &c);
		}
	}
	answer_images(x, f, &l, &pg, PAGINATED);
	free(l.v);
}

static void q_referrers(struct ex *x, const wh_gql_field *f)
{
	const char *repo = arg_str(x, f, "repo"), *digest = arg_str(x, f, "digest");
	uint8_t raw[32];
	if (!repo || !may(x, repo, WH_ACTION_READ)) {
		empty_list(x);
		return;
	}
	if (!digest || !wh_si_digest_raw(digest, raw)) {
		fail_field(x, "bad digest string from request '%s' invalid checksum digest format",
		           digest ? digest : "");
		return;
	}
	const wh_si_repo *r = wh_search_index_repo(x->s->idx, repo);
	if (!r) {
		fail_field(x, "repo metadata not found for given repo name");
		return;
	}
	referrers_list(x, r, raw, arg(x, f, "type"), f);
}

/* Run one top-level field into x->o; false when it failed (the caller
 * drops what it wrote). */
static bool run_field(struct ex *x, const wh_gql_field *f)
{
	x->failed = false;
	x->top = wh_gql_key(f);
	switch (f->id) {
	case F_TYPENAME:
		v_str(&x->o, "Query");
		break;
	case Q_CVE_LIST:
	case Q_CVE_DIFF:
	case Q_FOR_CVE:
	case Q_CVE_FIXED:
		fail_field(x, "cve search is disabled");
		break;
	case Q_FOR_DIGEST:
		q_for_digest(x, f);
		break;
	case Q_NEWEST:
		q_repo_list(x, f, false);
		break;
	case Q_IMAGE_LIST:
		q_image_list(x, f);
		break;
	case Q_EXPANDED:
		q_expanded(x, f);
		break;
	case Q_GLOBAL:
		q_global(x, f);
		break;
	case Q_DERIVED:
		q_lineage(x, f, true);
		break;
	case Q_BASE:
		q_lineage(x, f, false);
		break;
	case Q_IMAGE:
		q_image(x, f);
		break;
	case Q_REFERRERS:
		q_referrers(x, f);
		break;
	default: /* starred, bookmarked: nothing is */
		q_repo_list(x, f, true);
	}
	return !x->failed;
}

/* ---- the answer ---- */

static void errors_json(struct out *o, const struct gerr *e, int n, const char *code)
{
	key(o, "errors");
	open_(o, '[');
	for (int i = 0; i < n; i++) {
		open_(o, '{');
		key(o, "message");
		v_str(o, e[i].message);
		if (e[i].line > 0) {
			key(o, "locations");
			open_(o, '[');
			open_(o, '{');
			key(o, "line");
			v_int(o, e[i].line);
			key(o, "column");
			v_int(o, e[i].col);
			close_(o, '}');
			close_(o, ']');
		}
		if (e[i].path) {
			key(o, "path");
			open_(o, '[');
			v_str(o, e[i].path);
			close_(o, ']');
		}
		if (code) {
			key(o, "extensions");
			open_(o, '{');
			key(o, "code");
			v_str(o, code);
			close_(o, '}');
		}
		close_(o, '}');
	}
	close_(o, ']');
}

static void respond(wh_req *req, int status, const char *body, size_t len)
{
	wh_resp_start(req, status);
	wh_resp_header(req, "Content-Type", "application/json");
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

/* A request refused before running: {"errors": [...], "data": null}. */
static void refuse(wh_req *req, int status, const struct gerr *e, int n, const char *code)
{
	struct out o = {0};
	open_(&o, '{');
	errors_json(&o, e, n, code);
	key(&o, "data");
	v_null(&o);
	close_(&o, '}');
	respond(req, status, o.buf, o.len);
	free(o.buf);
}

static void refuse_one(wh_req *req, int status, const char *message, int line, int col,
                       const char *code)
{
	struct gerr e = {(char *)message, line, col, NULL};
	refuse(req, status, &e, 1, code);
}

static void ex_free(struct ex *x)
{
	for (int i = 0; i < x->n_errs; i++)
		free(x->errs[i].message);
	free(x->errs);
	free(x->vars);
	free(x->var_used);
	free(x->o.buf);
	wh_manifest_free(&x->man);
	cJSON_Delete(x->man_doc);
	cJSON_Delete(x->cfg_doc);
}

/* Parse, check and run a document; answer req. */
static void execute(struct search *s, wh_req *req, const char *user, const char *query,
                    size_t query_len, const cJSON *variables, const char *op_name)
{
	wh_gql_doc *doc = NULL;
	wh_gql_error perr;
	struct ex x;
	memset(&x, 0, sizeof(x));
	x.s = s;
	x.user = user;
	if (!query || query_len == 0) {
		refuse_one(req, 422, "no operation provided", 0, 0, "GRAPHQL_VALIDATION_FAILED");
		return;
	}
	if (wh_gql_parse(query, query_len, &doc, &perr) != 0) {
		refuse_one(req, 422, perr.message, perr.line, perr.col,
		           perr.validation ? "GRAPHQL_VALIDATION_FAILED" : "GRAPHQL_PARSE_FAILED");
		return;
	}
	x.doc = doc;
	x.op = wh_gql_operation(doc, op_name, &perr);
	if (!x.op) {
		refuse_one(req, 422, perr.message, 0, 0, "GRAPHQL_VALIDATION_FAILED");
		goto out;
	}
	if (x.op->kind != WH_GQL_QUERY) {
		refuse_one(req, 422,
		           x.op->kind == WH_GQL_MUTATION
		               ? "Schema is not configured for mutations."
		               : "Schema is not configured for subscriptions.",
		           x.op->line, x.op->col, "GRAPHQL_VALIDATION_FAILED");
		goto out;
	}
	/* The document first (fields, arguments, which variables are used),
	 * then the variables' values. Cast: the ids are the executor's, in the
	 * document's own memory. */
	x.vars = wh_calloc((size_t)x.op->n_vars + 1, sizeof(*x.vars));
	x.var_used = wh_calloc((size_t)x.op->n_vars + 1, sizeof(*x.var_used));
	bool ok = check_selection(&x, T_QUERY, (wh_gql_field *)x.op->sel, x.op->n_sel);
	for (int i = 0; ok && i < x.op->n_vars; i++)
		if (!x.var_used[i]) {
			add_error(&x, x.op->vars[i].line, x.op->vars[i].col,
			          "Variable \"$%s\" is never used.", x.op->vars[i].name);
			ok = false;
		}
	ok = ok && check_variables(&x, variables);
	if (!ok) {
		refuse(req, 422, x.errs, x.n_errs, "GRAPHQL_VALIDATION_FAILED");
		goto out;
	}
	/* Each query field into the data; one that fails makes data null (every
	 * query is non-null), its error said. */
	bool data_null = false;
	struct out data = {0};
	open_(&data, '{');
	for (int i = 0; i < x.op->n_sel; i++) {
		const wh_gql_field *f = &x.op->sel[i];
		x.o.len = 0;
		x.o.depth = 0;
		x.o.comma[0] = false;
		if (!run_field(&x, f)) {
			data_null = true;
			continue;
		}
		key(&data, wh_gql_key(f));
		put(&data, x.o.buf, x.o.len);
		data.comma[data.depth] = true;
	}
	close_(&data, '}');
	x.o.len = 0;
	x.o.depth = 0;
	x.o.comma[0] = false;
	open_(&x.o, '{');
	if (x.n_errs)
		errors_json(&x.o, x.errs, x.n_errs, NULL);
	key(&x.o, "data");
	if (data_null)
		v_null(&x.o);
	else {
		sep(&x.o);
		put(&x.o, data.buf, data.len);
	}
	close_(&x.o, '}');
	free(data.buf);
	respond(req, 200, x.o.buf, x.o.len);
out:
	ex_free(&x);
	wh_gql_free(doc);
}

/* ---- requests ---- */

/* A request: its document and variables, read from the query string or
 * the body, kept while it waits for the index. */
struct pending {
	struct search *s;
	wh_req *req;
	char *user;
	char *body; /* a POST's */
	size_t len, cap;
	bool too_big;
	char *query, *op_name;
	size_t query_len;
	cJSON *json;      /* the POST's document */
	cJSON *variables; /* owned when from a GET */
	bool own_variables;
	wh_list link; /* in s->waiting */
	wh_req_hook done;
};

static void pending_clear(struct pending *p)
{
	free(p->user);
	free(p->body);
	free(p->query);
	free(p->op_name);
	cJSON_Delete(p->json);
	if (p->own_variables)
		cJSON_Delete(p->variables);
	p->user = p->body = p->query = p->op_name = NULL;
	p->json = p->variables = NULL;
}

static void pending_done(wh_req *req, wh_req_hook *hook)
{
	struct pending *p = WH_CONTAINER_OF(hook, struct pending, done);
	if (wh_list_linked(&p->link))
		wh_list_remove(&p->link);
	pending_clear(p);
}

static void run_pending(struct pending *p)
{
	if (!wh_search_index_loaded(p->s->idx)) {
		wh_list_insert_tail(&p->s->waiting, &p->link);
		return; /* answered when the index is loaded */
	}
	const char *q = p->query;
	size_t ql = p->query_len;
	const char *op = p->op_name;
	const cJSON *vars = p->variables;
	if (p->json) {
		const cJSON *jq = cJSON_GetObjectItemCaseSensitive(p->json, "query");
		const cJSON *jo = cJSON_GetObjectItemCaseSensitive(p->json, "operationName");
		q = cJSON_IsString(jq) ? jq->valuestring : NULL;
		ql = q ? strlen(q) : 0;
		op = cJSON_IsString(jo) ? jo->valuestring : NULL;
		vars = cJSON_GetObjectItemCaseSensitive(p->json, "variables");
	}
	execute(p->s, p->req, p->user, q, ql, vars, op);
}

static void index_loaded(void *arg)
{
	struct search *s = arg;
	while (!wh_list_empty(&s->waiting)) {
		struct pending *p = wh_list_entry(wh_list_first(&s->waiting), struct pending, link);
		wh_list_remove(&p->link);
		run_pending(p);
	}
}

static int body_piece(wh_req *req, const char *data, size_t len)
{
	struct pending *p = req->data;
	if (p->len + len > BODY_MAX) {
		p->too_big = true;
		refuse_one(req, 413, "the request body is larger than 256 KiB", 0, 0, NULL);
		return 1;
	}
	wh_buf_append(&p->body, &p->len, &p->cap, data, len);
	return 0;
}

static void body_end(wh_req *req)
{
	struct pending *p = req->data;
	if (p->too_big)
		return;
	const char *end = NULL;
	p->json = p->body ? cJSON_ParseWithLengthOpts(p->body, p->len, &end, 0) : NULL;
	if (!cJSON_IsObject(p->json)) {
		refuse_one(req, 400,
		           "json request body could not be decoded: the body must be a JSON object",
		           0, 0, NULL);
		return;
	}
	free(p->body);
	p->body = NULL;
	run_pending(p);
}

static void search_request(struct search *s, wh_call *call)
{
	wh_req *req = call->req;
	bool get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
	if (!get && !post) {
		static const char body[] = "{\"errors\":[{\"message\":\"the search answers GET and "
		                           "POST\"}],\"data\":null}";
		wh_resp_start(req, 405);
		wh_resp_header(req, "Allow", "GET, POST");
		wh_resp_header(req, "Content-Type", "application/json");
		wh_resp_length(req, sizeof(body) - 1);
		wh_resp_write(req, body, sizeof(body) - 1);
		wh_resp_end(req);
		return;
	}
	struct pending *p = wh_req_alloc(req, sizeof(*p));
	p->s = s;
	p->req = req;
	p->user = call->user ? wh_strdup(call->user) : NULL;
	wh_list_init(&p->link);
	wh_req_on_done(req, &p->done, pending_done);
	if (post) {
		req->data = p;
		wh_req_read_body(req, body_piece, body_end);
		return;
	}
	if (!wh_req_query_has(req, "query")) {
		refuse_one(req, 422, "no operation provided", 0, 0, "GRAPHQL_VALIDATION_FAILED");
		return;
	}
	p->query = wh_malloc(WH_GQL_MAX_LEN + 1);
	if (!wh_req_query(req, "query", p->query, WH_GQL_MAX_LEN + 1)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "the document is longer than %d bytes, or holds a NUL",
		         WH_GQL_MAX_LEN);
		refuse_one(req, 422, msg, 0, 0, "GRAPHQL_PARSE_FAILED");
		return;
	}
	p->query_len = strlen(p->query);
	if (wh_req_query_has(req, "operationName")) {
		p->op_name = wh_malloc(WH_GQL_MAX_NAME + 1);
		if (!wh_req_query(req, "operationName", p->op_name, WH_GQL_MAX_NAME + 1))
			p->op_name[0] = '\0';
	}
	if (wh_req_query_has(req, "variables")) {
		char *v = wh_malloc(BODY_MAX + 1);
		bool ok = wh_req_query(req, "variables", v, BODY_MAX + 1) != NULL;
		if (ok && *v) {
			p->variables = cJSON_Parse(v);
			p->own_variables = true;
			ok = p->variables != NULL;
		}
		free(v);
		if (!ok) {
			refuse_one(req, 400, "variables could not be decoded", 0, 0, NULL);
			return;
		}
	}
	run_pending(p);
}

/* ---- discovery ---- */

static void discover(struct search *s, wh_req *req)
{
	static const char none[] = "{\"extensions\":[]}";
	static const char zot[] =
	    "{\"extensions\":[{\"name\":\"_zot\",\"url\":\"https://github.com/project-zot/zot/"
	    "blob/main/pkg/extensions/_zot.md\",\"description\":\"zot registry extensions\","
	    "\"endpoints\":[\"" PATH_SEARCH "\",\"/v2/_zot/ext/mgmt\"]}]}";
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		wh_resp_start(req, 405);
		wh_resp_header(req, "Allow", "GET");
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}
	if (s)
		respond(req, 200, zot, sizeof(zot) - 1);
	else
		respond(req, 200, none, sizeof(none) - 1);
}

/* ---- the module ---- */

static const char *const paths[] = {PATH_SEARCH, PATH_DISCOVER, NULL};

static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	const wh_search_settings *cfg = settings;
	*state = NULL;
	if (!cfg || !cfg->enable)
		return 0;
	struct search *s = wh_calloc(1, sizeof(*s));
	s->loop = env->loop;
	s->store = env->store;
	s->auth = env->state_of(env, &wh_auth_module);
	wh_list_init(&s->waiting);
	int rc = wh_search_index_new(env->loop, env->store, index_loaded, s, &s->idx);
	if (rc != 0) {
		free(s);
		return rc;
	}
	*state = s;
	return 0;
}

static void module_free(void *state)
{
	struct search *s = state;
	if (!s)
		return;
	while (!wh_list_empty(&s->waiting))
		wh_list_remove(wh_list_first(&s->waiting));
	wh_search_index_free(s->idx);
	free(s);
}

static bool handle(void *state, wh_call *call)
{
	struct search *s = state;
	if (strcmp(call->req->path, PATH_DISCOVER) == 0) {
		discover(s, call->req);
		return true;
	}
	if (!s)
		return false; /* search is not enabled: no such route */
	search_request(s, call);
	return true;
}

const wh_module wh_search_module = {
    .name = "search",
    .paths = paths,
    .init = module_init,
    .free = module_free,
    .handle = handle,
};
