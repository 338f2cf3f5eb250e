/* Periodic sync: catalog, tags, and images fetched through sync's own
 * machinery. See include/wharf/cache/poll.h for the contract.
 *
 * Per registry, one run is a set of jobs: the catalog listing, then one tag
 * listing per matching repository, then one job per image. At most
 * ACTIVE_MAX jobs are in progress; images go before further listings, so
 * a run works through the upstream repository by repository rather than
 * listing everything first. Nothing here waits: every step is an upstream
 * callback or a sync callback from the loop. */
#include "wharf/cache/poll.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"
#include "wharf/store/store.h"
#include "wharf/cache/sync.h"
#include "wharf/cache/upstream.h"

#define ACTIVE_MAX    3    /* listings or images of one registry in progress */
#define PAGE_CATALOG  100  /* names asked for a catalog page */
#define PAGE_TAGS     1000 /* tags asked for a tags/list page */
#define NAMES_MAX     10000
#define TAGS_MAX      10000
#define LIST_BODY_MAX (1024 * 1024)
#define ITEMS_MAX     4096 /* manifests and blobs of one image */
#define DEPTH_MAX     4    /* indexes within indexes */

static const wh_up_opts LIST_GET = {.max_body = LIST_BODY_MAX};

enum kind { J_CATALOG, J_TAGS, J_IMAGE };

struct item {
	char digest[WH_DIGEST_LEN + 1];
	int64_t size;
	bool manifest;
	int depth;
};

struct preg;

struct job {
	wh_list link; /* in its registry's active, images or repos */
	struct preg *pr;
	enum kind kind;
	wh_sync_map map;
	char name[WH_NAME_MAX + 1]; /* the local repository */
	char tag[WH_TAG_MAX + 1];
	/* listings */
	wh_up_req *up;
	int status;
	char *buf;
	size_t len, cap;
	char last[WH_NAME_MAX + 16]; /* the greatest name or tag seen: the next page's `last` */
	int seen;
	/* images: what is left to check, a stack */
	struct item *todo;
	int n, items_cap, items_total;
	struct item cur; /* being fetched */
	bool begun;      /* the tag's manifest was asked for */
	int fetched;
};

struct preg {
	wh_poll *p;
	const wh_sync_registry *reg;
	uv_timer_t timer;
	bool running;
	bool no_catalog; /* reported; not tried again until restart */
	wh_list active;  /* struct job, newest first */
	int n_active;
	wh_list images; /* waiting, oldest first */
	wh_list repos;  /* tag listings waiting, oldest first */
	bool scheduling, again;
	/* this run */
	int n_repos, n_images, n_synced, n_skipped, n_failed;
	uint64_t started_ms;
};

struct wh_poll {
	uv_loop_t *loop;
	wh_sync *sync;
	wh_upstream *up;
	wh_store *store;
	struct preg *regs;
	int n_regs;
	int open_timers;
};

static void schedule(struct preg *pr);
static void list_request(struct job *j);
static void image_step(struct job *j);

/* ---- jobs ---- */

static void job_free(struct job *j)
{
	if (j->up)
		wh_upstream_cancel(j->up);
	free(j->buf);
	free(j->todo);
	free(j);
}

/* A job is over: make room for the next. */
static void job_end(struct job *j)
{
	struct preg *pr = j->pr;
	wh_list_remove(&j->link);
	pr->n_active--;
	job_free(j);
	schedule(pr);
}

static struct job *job_new(struct preg *pr, enum kind kind)
{
	struct job *j = wh_calloc(1, sizeof(*j));
	wh_list_init(&j->link);
	j->pr = pr;
	j->kind = kind;
	return j;
}

/* ---- runs ---- */

static void on_timer(uv_timer_t *t);

static void run_end(struct preg *pr)
{
	pr->running = false;
	wh_log(WH_LOG_INFO, "periodic sync finished", "upstream", WH_LS, pr->reg->urls[0], "repos",
	       WH_LI, (long long)pr->n_repos, "images", WH_LI, (long long)pr->n_images, "synced",
	       WH_LI, (long long)pr->n_synced, "skipped", WH_LI, (long long)pr->n_skipped, "failed",
	       WH_LI, (long long)pr->n_failed, "ms", WH_LI,
	       (long long)(uv_now(pr->p->loop) - pr->started_ms), NULL);
	if (!pr->no_catalog)
		uv_timer_start(&pr->timer, on_timer, (uint64_t)pr->reg->poll_interval_ms, 0);
}

static void job_start(struct job *j)
{
	if (j->kind == J_IMAGE)
		image_step(j);
	else
		list_request(j);
}

/* Start what waits while there is room; end the run when nothing is left.
 * Not re-entered: a job ending while jobs are being started only asks for
 * another pass. */
static void schedule(struct preg *pr)
{
	if (pr->scheduling) {
		pr->again = true;
		return;
	}
	pr->scheduling = true;
	do {
		pr->again = false;
		while (pr->n_active < ACTIVE_MAX &&
		       (!wh_list_empty(&pr->images) || !wh_list_empty(&pr->repos))) {
			wh_list *from = !wh_list_empty(&pr->images) ? &pr->images : &pr->repos;
			struct job *j = wh_list_entry(wh_list_first(from), struct job, link);
			wh_list_remove(&j->link);
			wh_list_insert_head(&pr->active, &j->link);
			pr->n_active++;
			job_start(j);
		}
	} while (pr->again);
	pr->scheduling = false;
	if (pr->running && pr->n_active == 0 && wh_list_empty(&pr->images) &&
	    wh_list_empty(&pr->repos))
		run_end(pr);
}

static void on_timer(uv_timer_t *t)
{
	struct preg *pr = t->data;
	pr->running = true;
	pr->n_repos = pr->n_images = pr->n_synced = pr->n_skipped = pr->n_failed = 0;
	pr->started_ms = uv_now(pr->p->loop);
	wh_log(WH_LOG_INFO, "periodic sync started", "upstream", WH_LS, pr->reg->urls[0], NULL);
	struct job *j = job_new(pr, J_CATALOG);
	wh_list_insert_tail(&pr->repos, &j->link);
	schedule(pr);
}

/* ---- listings: the catalog and tags/list, paged ---- */

static void l_on_head(wh_up_req *r, const wh_up_head *h, void *arg)
{
	struct job *j = arg;
	(void)r;
	j->status = h->status;
}

static int l_on_data(wh_up_req *r, const char *data, size_t len, void *arg)
{
	struct job *j = arg;
	(void)r;
	/* Never past LIST_BODY_MAX: the upstream client holds the body to it. */
	wh_buf_append(&j->buf, &j->len, &j->cap, data, len);
	return 0;
}

static void l_on_done(wh_up_req *r, int err, void *arg);

static const wh_up_cbs lcbs = {l_on_head, l_on_data, l_on_done};

static void list_request(struct job *j)
{
	char path[WH_NAME_MAX + 2 * WH_NAME_MAX + 64];
	int n = j->kind == J_CATALOG ? PAGE_CATALOG : PAGE_TAGS;
	if (j->kind == J_CATALOG)
		snprintf(path, sizeof(path), "/v2/_catalog?n=%d%s%s", n, j->last[0] ? "&last=" : "",
		         j->last);
	else
		snprintf(path, sizeof(path), "/v2/%s/tags/list?n=%d%s%s", j->map.upstream, n,
		         j->last[0] ? "&last=" : "", j->last);
	j->len = 0;
	j->status = 0;
	j->up = wh_upstream_request(j->pr->p->up, j->pr->reg, "GET", path,
	                            j->kind == J_CATALOG ? "" : j->map.upstream, NULL, &LIST_GET,
	                            &lcbs, j);
}

/* Referrers stored as tags (cosign's sha256-<hex>.sig, .att, .sbom, and
 * the referrers tag schema's <alg>-<hex>, the hex cut to 64 characters
 * for sha512) are not images to sync. */
static bool referrer_tag(const char *tag)
{
	if (strncmp(tag, "sha256-", 7) != 0 && strncmp(tag, "sha512-", 7) != 0)
		return false;
	size_t hex = strspn(tag + 7, "0123456789abcdef");
	return hex == 64 && (tag[71] == '\0' || tag[71] == '.');
}

static void catalog_name(struct preg *pr, const char *upname)
{
	struct job *t = job_new(pr, J_TAGS);
	if (!wh_sync_map_upstream(pr->p->sync, pr->reg, upname, t->name, sizeof(t->name),
	                          &t->map)) {
		free(t);
		return;
	}
	pr->n_repos++;
	wh_list_insert_tail(&pr->repos, &t->link);
}

static void tags_name(struct job *j, const char *tag)
{
	struct preg *pr = j->pr;
	if (referrer_tag(tag) || !wh_sync_tag_allowed(pr->p->sync, &j->map, tag))
		return;
	struct job *i = job_new(pr, J_IMAGE);
	i->map = j->map;
	memcpy(i->name, j->name, sizeof(i->name));
	snprintf(i->tag, sizeof(i->tag), "%s", tag);
	pr->n_images++;
	wh_list_insert_tail(&pr->images, &i->link);
}

static void l_on_done(wh_up_req *r, int err, void *arg)
{
	struct job *j = arg;
	struct preg *pr = j->pr;
	bool catalog = j->kind == J_CATALOG;
	(void)r;
	j->up = NULL;
	if (err != 0 || j->status != 200) {
		if (catalog && err == 0 &&
		    (j->status == 404 || j->status == 401 || j->status == 403 ||
		     j->status == 405)) {
			/* Docker Hub and others do not list their repositories. */
			pr->no_catalog = true;
			wh_log(WH_LOG_WARN,
			       "upstream has no catalog: periodic sync is not possible for it (use "
			       "onDemand); not tried again until restart",
			       "upstream", WH_LS, pr->reg->urls[0], "status", WH_LI,
			       (long long)j->status, NULL);
		} else {
			char why[64];
			snprintf(why, sizeof(why), "upstream answered %d", j->status);
			wh_log(WH_LOG_WARN,
			       catalog ? "cannot list the upstream catalog, trying again next run"
			               : "cannot list the upstream tags, skipping the repository",
			       "upstream", WH_LS, pr->reg->urls[0], "remote", WH_LS,
			       catalog ? "" : j->map.upstream, "error", WH_LS,
			       err ? (err == WH_ETOOBIG ? "listing over 1 MiB" : wh_strerror(err))
			           : why,
			       NULL);
		}
		job_end(j);
		return;
	}
	cJSON *doc = cJSON_ParseWithLength(j->buf ? j->buf : "", j->len);
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, catalog ? "repositories" : "tags");
	if (!doc || !(cJSON_IsArray(arr) || cJSON_IsNull(arr) || (!arr && !catalog))) {
		wh_log(WH_LOG_WARN, "upstream sent an invalid listing", "upstream", WH_LS,
		       pr->reg->urls[0], "remote", WH_LS, catalog ? "_catalog" : j->map.upstream,
		       NULL);
		cJSON_Delete(doc);
		job_end(j);
		return;
	}
	int page = 0, max = catalog ? NAMES_MAX : TAGS_MAX;
	bool progress = false;
	char greatest[sizeof(j->last)];
	memcpy(greatest, j->last, sizeof(greatest));
	const cJSON *v;
	cJSON_ArrayForEach(v, arr)
	{
		page++;
		if (!cJSON_IsString(v))
			continue;
		const char *s = v->valuestring;
		size_t len = strlen(s);
		if (catalog ? !wh_name_valid(s, len) : !wh_tag_valid(s, len))
			continue;
		/* A later page holds only names past `last`: anything else is an
		 * upstream going round in circles. */
		if (j->last[0] && strcmp(s, j->last) <= 0)
			continue;
		if (j->seen >= max) {
			wh_log(WH_LOG_WARN, "upstream listing too long, the rest is not synced",
			       "upstream", WH_LS, pr->reg->urls[0], "remote", WH_LS,
			       catalog ? "_catalog" : j->map.upstream, "limit", WH_LI,
			       (long long)max, NULL);
			progress = false;
			page = 0;
			break;
		}
		j->seen++;
		progress = true;
		if (strcmp(s, greatest) > 0)
			snprintf(greatest, sizeof(greatest), "%s", s);
		if (catalog)
			catalog_name(pr, s);
		else
			tags_name(j, s);
	}
	cJSON_Delete(doc);
	if (progress && page >= (catalog ? PAGE_CATALOG : PAGE_TAGS)) {
		memcpy(j->last, greatest, sizeof(j->last));
		list_request(j);
		schedule(pr);
		return;
	}
	job_end(j);
}

/* ---- images ---- */

static void image_fail(struct job *j, const char *why)
{
	struct preg *pr = j->pr;
	pr->n_failed++;
	wh_log(WH_LOG_WARN, "failed to sync image", "repo", WH_LS, j->name, "reference", WH_LS,
	       j->tag, "upstream", WH_LS, pr->reg->urls[0], "remote", WH_LS, j->map.upstream,
	       "error", WH_LS, why, NULL);
	job_end(j);
}

static bool push_item(struct job *j, const cJSON *d, bool manifest, int depth)
{
	const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
	const cJSON *sz = cJSON_GetObjectItemCaseSensitive(d, "size");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(d, "mediaType");
	if (!cJSON_IsString(dg) ||
	    wh_digest_check(dg->valuestring, strlen(dg->valuestring)) != WH_DIGEST_OK ||
	    strlen(dg->valuestring) > WH_DIGEST_LEN)
		return false;
	/* Foreign layers live elsewhere: clients do not fetch them from here. */
	if (!manifest && cJSON_IsString(mt) &&
	    (strstr(mt->valuestring, "foreign") || strstr(mt->valuestring, "nondistributable")))
		return true;
	if (j->items_total >= ITEMS_MAX || depth > DEPTH_MAX)
		return false;
	j->todo = wh_grow(j->todo, sizeof(*j->todo), j->n, &j->items_cap, 16);
	struct item *it = &j->todo[j->n++];
	j->items_total++;
	memset(it, 0, sizeof(*it));
	snprintf(it->digest, sizeof(it->digest), "%s", dg->valuestring);
	it->size = cJSON_IsNumber(sz) ? (int64_t)sz->valuedouble : -1;
	it->manifest = manifest;
	it->depth = depth;
	return true;
}

/* Add what the stored manifest name@ref references. */
static int push_manifest(struct job *j, const char *ref, int depth)
{
	wh_store *st = j->pr->p->store;
	wh_manifest m;
	int rc = wh_store_manifest_get(st, j->name, ref, &m);
	if (rc != 0)
		return rc;
	wh_manifest_doc doc;
	const char *why;
	char detail[WH_MANIFEST_DETAIL_MAX];
	rc = wh_manifest_check(m.data, m.len, m.media_type, &doc, &why, detail, sizeof(detail));
	wh_manifest_free(&m);
	if (rc != 0)
		return WH_EINVAL;
	bool ok = true;
	const cJSON *d;
	if (doc.is_index) {
		cJSON_ArrayForEach(d, doc.manifests)
		{
			ok = ok && push_item(j, d, true, depth + 1);
		}
	} else {
		ok = push_item(j, doc.config, false, depth);
		cJSON_ArrayForEach(d, doc.layers)
		{
			ok = ok && push_item(j, d, false, depth);
		}
	}
	cJSON_Delete(doc.doc);
	return ok ? 0 : WH_ETOOBIG;
}

static void image_done(struct job *j)
{
	struct preg *pr = j->pr;
	if (j->fetched == 0) {
		pr->n_skipped++;
		wh_log(WH_LOG_DEBUG, "skipping image because it's already synced", "repo", WH_LS,
		       j->name, "reference", WH_LS, j->tag, "remote", WH_LS, j->map.upstream, NULL);
	} else {
		pr->n_synced++;
		char digest[WH_DIGEST_LEN + 1] = "";
		char *mt = NULL;
		int64_t size;
		wh_store_manifest_stat(pr->p->store, j->name, j->tag, digest, &mt, &size);
		free(mt);
		wh_log(WH_LOG_INFO, "successfully synced image", "repo", WH_LS, j->name,
		       "reference", WH_LS, j->tag, "digest", WH_LS, digest, "upstream", WH_LS,
		       pr->reg->urls[0], "remote", WH_LS, j->map.upstream, "fetched", WH_LI,
		       (long long)j->fetched, NULL);
	}
	job_end(j);
}

static void on_item(void *arg, int err, bool changed)
{
	struct job *j = arg;
	(void)changed;
	if (err != 0) {
		/* Our storage's failure says so (a full disk), not the fetch's. */
		image_fail(j, err != WH_EUPSTREAM ? wh_strerror(err)
		              : j->cur.manifest   ? "cannot fetch a child manifest"
		                                  : "cannot fetch a blob");
		return;
	}
	j->fetched++;
	if (j->cur.manifest) {
		int rc = push_manifest(j, j->cur.digest, j->cur.depth);
		if (rc != 0) {
			image_fail(j, wh_strerror(rc));
			return;
		}
	}
	image_step(j);
}

static void on_tag(void *arg, int err, bool changed)
{
	struct job *j = arg;
	if (err != 0) {
		image_fail(j, err != WH_EUPSTREAM ? wh_strerror(err) : "cannot fetch the manifest");
		return;
	}
	if (changed)
		j->fetched++;
	int rc = push_manifest(j, j->tag, 0);
	if (rc != 0) {
		image_fail(j, wh_strerror(rc));
		return;
	}
	image_step(j);
}

/* Check what is left, one at a time: what the store holds is passed over,
 * the first thing missing is fetched and this runs again from its
 * callback. The first step is the tag itself. */
static void image_step(struct job *j)
{
	wh_poll *p = j->pr->p;
	if (!j->begun) {
		wh_log(WH_LOG_DEBUG, "syncing image", "repo", WH_LS, j->name, "reference", WH_LS,
		       j->tag, "remote", WH_LS, j->map.upstream, NULL);
		j->begun = true;
		wh_sync_prefetch_manifest(p->sync, &j->map, j->name, j->tag, on_tag, j);
		return;
	}
	while (j->n > 0) {
		struct item it = j->todo[--j->n];
		if (it.manifest) {
			char d[WH_DIGEST_LEN + 1];
			char *mt = NULL;
			int64_t sz;
			if (wh_store_manifest_stat(p->store, j->name, it.digest, d, &mt, &sz) ==
			    0) {
				free(mt);
				int rc = push_manifest(j, it.digest, it.depth);
				if (rc != 0) {
					image_fail(j, wh_strerror(rc));
					return;
				}
				continue;
			}
			j->cur = it;
			wh_sync_prefetch_manifest(p->sync, &j->map, j->name, it.digest, on_item, j);
			return;
		}
		int64_t sz;
		if (wh_store_blob_stat(p->store, j->name, it.digest, &sz) == 0)
			continue;
		j->cur = it;
		int rc = wh_sync_prefetch_blob(p->sync, &j->map, j->name, it.digest, it.size,
		                               on_item, j);
		if (rc != 0)
			image_fail(j, wh_strerror(rc));
		return;
	}
	image_done(j);
}

/* ---- life ---- */

wh_poll *wh_poll_new(uv_loop_t *loop, const struct wh_sync_settings *cfg, wh_sync *sync)
{
	int n = 0;
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *r = &cfg->registries[i];
		n += r->poll_interval_ms > 0 && r->content_given && r->n_urls > 0;
	}
	if (n == 0)
		return NULL;
	wh_poll *p = wh_calloc(1, sizeof(*p));
	p->loop = loop;
	p->sync = sync;
	p->up = wh_sync_upstream(sync);
	p->store = wh_sync_store(sync);
	p->regs = wh_calloc((size_t)n, sizeof(*p->regs));
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *r = &cfg->registries[i];
		if (!(r->poll_interval_ms > 0 && r->content_given && r->n_urls > 0))
			continue;
		struct preg *pr = &p->regs[p->n_regs++];
		pr->p = p;
		pr->reg = r;
		wh_list_init(&pr->active);
		wh_list_init(&pr->images);
		wh_list_init(&pr->repos);
		uv_timer_init(loop, &pr->timer);
		pr->timer.data = pr;
		p->open_timers++;
		/* The first run right after startup, as Zot. */
		uv_timer_start(&pr->timer, on_timer, 0, 0);
	}
	return p;
}

static void timer_closed(uv_handle_t *h)
{
	struct preg *pr = h->data;
	wh_poll *p = pr->p;
	if (--p->open_timers == 0) {
		free(p->regs);
		free(p);
	}
}

static void free_list(wh_list *jobs)
{
	while (!wh_list_empty(jobs)) {
		struct job *j = wh_list_entry(wh_list_first(jobs), struct job, link);
		wh_list_remove(&j->link);
		job_free(j);
	}
}

void wh_poll_free(wh_poll *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_regs; i++) {
		struct preg *pr = &p->regs[i];
		if (pr->running)
			wh_log(WH_LOG_INFO, "periodic sync stopped mid-run", "upstream", WH_LS,
			       pr->reg->urls[0], NULL);
		free_list(&pr->active);
		free_list(&pr->images);
		free_list(&pr->repos);
		uv_timer_stop(&pr->timer);
		uv_close((uv_handle_t *)&pr->timer, timer_closed);
	}
}
