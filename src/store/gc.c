/* Garbage collection, retention and the cache budget. See
 * include/wharf/store/gc.h.
 *
 * One job at a time runs in libuv's thread pool; the loop decides between
 * jobs. A sweep is: list the repositories (LIST), then for each one read it
 * (SCAN), decide on the loop, and apply (APPLY); then the shared copies and
 * the byte count (SHARED). Eviction (EVICT) jumps the queue whenever the
 * budget is crossed. */
#include "wharf/store/gc.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"
#include "wharf/store/meta.h"
#include "wharf/store/retention.h"

#include "internal.h"

/* Deletions per hold of the store's lock: between two slices a push or a
 * fill waiting for the lock gets it. */
#define SLICE 256
/* How deep an index's children are followed for what they reference. */
#define DEPTH_MAX 4
/* Manifests read per repository at most (a bigger repository is swept in
 * part: what is not read is neither reachable-known nor removed). */
#define MANIFESTS_MAX 100000
/* How often "over budget, nothing left to evict" may be logged. */
#define NOTHING_LOG_MS (10 * WH_MINUTE_MS)

/* ---- sets of digests: a sorted array ---- */

typedef struct dset {
	char **v;
	int n, cap;
	bool sorted;
} dset;

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void dset_add(dset *s, const char *d)
{
	s->v = wh_grow(s->v, sizeof(*s->v), s->n, &s->cap, 16);
	s->v[s->n++] = wh_strdup(d);
	s->sorted = false;
}

static void dset_sort(dset *s)
{
	if (s->sorted)
		return;
	if (s->n > 1)
		qsort(s->v, (size_t)s->n, sizeof(*s->v), cmp_str);
	int k = 0;
	for (int i = 0; i < s->n; i++) {
		if (k > 0 && strcmp(s->v[k - 1], s->v[i]) == 0)
			free(s->v[i]);
		else
			s->v[k++] = s->v[i];
	}
	s->n = k;
	s->sorted = true;
}

static bool dset_has(dset *s, const char *d)
{
	dset_sort(s);
	return s->n > 0 && bsearch(&d, s->v, (size_t)s->n, sizeof(*s->v), cmp_str) != NULL;
}

static void dset_free(dset *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- reading manifests ---- */

static bool digest_ok(const char *d)
{
	return d && wh_digest_check(d, strlen(d)) == WH_DIGEST_OK;
}

static const char *desc_digest(const cJSON *d)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, "digest");
	return cJSON_IsString(v) && digest_ok(v->valuestring) ? v->valuestring : NULL;
}

/* What a manifest of repo references: refs gets its config, layers, blobs
 * and children; children (may be NULL) its children alone; subject its
 * subject ("" for none). False when its bytes are not there or not a
 * manifest. */
static bool manifest_refs(wh_store *st, const char *repo, const char *digest, dset *refs,
                          dset *children, char subject[WH_DIGEST_LEN + 1])
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len;
	cJSON *doc, *e;

	if (subject)
		subject[0] = '\0';
	if (wh_store__blob_path(st, repo, digest, path) < 0 ||
	    wh_read_file(path, WH_MANIFEST_MAX, &text, &len) < 0)
		return false;
	doc = cJSON_ParseWithLength(text, len);
	free(text);
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		return false;
	}
	const char *d = desc_digest(cJSON_GetObjectItemCaseSensitive(doc, "config"));
	if (d)
		dset_add(refs, d);
	static const char *const lists[] = {"layers", "blobs", "manifests"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(lists); i++) {
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, lists[i]))
		{
			if (!(d = desc_digest(e)))
				continue;
			dset_add(refs, d);
			if (children && i == 2)
				dset_add(children, d);
		}
	}
	d = desc_digest(cJSON_GetObjectItemCaseSensitive(doc, "subject"));
	if (d && subject)
		snprintf(subject, WH_DIGEST_LEN + 1, "%s", d);
	cJSON_Delete(doc);
	return true;
}

/* Everything the manifests in `roots` reach in repo, themselves included:
 * their references, and what the children they list reference in turn. */
static void reach(wh_store *st, const char *repo, dset *roots, dset *out)
{
	dset frontier = {0};
	for (int i = 0; i < roots->n; i++) {
		dset_add(out, roots->v[i]);
		dset_add(&frontier, roots->v[i]);
	}
	for (int depth = 0; depth <= DEPTH_MAX && frontier.n > 0; depth++) {
		dset next = {0};
		for (int i = 0; i < frontier.n; i++) {
			dset refs = {0}, kids = {0};
			manifest_refs(st, repo, frontier.v[i], &refs, &kids, NULL);
			for (int j = 0; j < refs.n; j++)
				dset_add(out, refs.v[j]);
			for (int j = 0; j < kids.n; j++)
				dset_add(&next, kids.v[j]);
			dset_free(&refs);
			dset_free(&kids);
		}
		dset_free(&frontier);
		frontier = next;
	}
	dset_free(&frontier);
	dset_sort(out);
}

static int64_t mtime_ms(const struct stat *sb)
{
	return (int64_t)sb->st_mtim.tv_sec * 1000 + sb->st_mtim.tv_nsec / 1000000;
}

/* ---- a repository as a sweep sees it ---- */

struct mf { /* a manifest index.json names */
	char digest[WH_DIGEST_LEN + 1];
	char subject[WH_DIGEST_LEN + 1];
	bool present; /* its bytes are there */
	int64_t mtime_ms;
	dset children;
	dset reach; /* what it reaches, itself included */
	bool removed;
	const char *reason;
};

struct tg { /* a tag */
	char *tag;
	int m; /* its manifest, in model.m */
	bool removed;
	const char *reason;
};

struct blobf { /* a file of blobs/<alg> */
	char digest[WH_DIGEST_LEN + 1];
	int64_t mtime_ms;
};

struct model {
	wh_index_id id;
	bool truncated; /* more manifests than MANIFESTS_MAX: no orphan is known */
	int64_t bytes;  /* the files of blobs/sha256, each as often as it is there */
	struct mf *m;
	int n_m, cap_m;
	struct tg *t;
	int n_t, cap_t;
	struct blobf *b;
	int n_b, cap_b;
};

static void model_free(struct model *md)
{
	for (int i = 0; i < md->n_m; i++) {
		dset_free(&md->m[i].children);
		dset_free(&md->m[i].reach);
	}
	for (int i = 0; i < md->n_t; i++)
		free(md->t[i].tag);
	free(md->m);
	free(md->t);
	free(md->b);
	memset(md, 0, sizeof(*md));
}

static int model_manifest(struct model *md, const char *digest)
{
	for (int i = 0; i < md->n_m; i++)
		if (strcmp(md->m[i].digest, digest) == 0)
			return i;
	md->m = wh_grow(md->m, sizeof(*md->m), md->n_m, &md->cap_m, 16);
	struct mf *m = &md->m[md->n_m];
	memset(m, 0, sizeof(*m));
	snprintf(m->digest, sizeof(m->digest), "%s", digest);
	return md->n_m++;
}

/* SCAN: read repo's index.json, its manifests and its blob files (no lock:
 * APPLY checks that index.json is still this one). */
static int model_read(wh_store *st, const char *repo, struct model *md)
{
	cJSON *idx = NULL, *e;
	char path[PATH_MAX];
	struct stat sb;
	int rc = wh_store__index_load(st, repo, &idx, &md->id);

	if (rc < 0)
		return rc;
	cJSON_ArrayForEach(e, wh_store__index_manifests(idx))
	{
		const char *d = wh_store__entry_digest(e), *tag = wh_store__entry_tag(e);
		if (!digest_ok(d))
			continue;
		if (md->n_m >= MANIFESTS_MAX) {
			md->truncated = true;
			continue;
		}
		int i = model_manifest(md, d);
		if (tag) {
			md->t = wh_grow(md->t, sizeof(*md->t), md->n_t, &md->cap_t, 16);
			md->t[md->n_t++] = (struct tg){.tag = wh_strdup(tag), .m = i};
		}
	}
	cJSON_Delete(idx);
	for (int i = 0; i < md->n_m; i++) {
		struct mf *m = &md->m[i];
		dset refs = {0};
		if (wh_store__blob_path(st, repo, m->digest, path) == 0 && stat(path, &sb) == 0) {
			m->present = true;
			m->mtime_ms = mtime_ms(&sb);
			manifest_refs(st, repo, m->digest, &refs, &m->children, m->subject);
		}
		dset_free(&refs);
		dset one = {0};
		dset_add(&one, m->digest);
		reach(st, repo, &one, &m->reach);
		dset_free(&one);
	}
	/* The blob files of each algorithm, with their age. */
	static const char *const algs[] = {"sha256", "sha512"};
	for (size_t a = 0; a < WH_ARRAY_SIZE(algs); a++) {
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "%s:", algs[a]);
		if (wh_store__blob_path(st, repo, prefix, path) < 0)
			continue;
		DIR *dir = opendir(path);
		if (!dir)
			continue;
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			char d[WH_DIGEST_LEN + 1];
			if (snprintf(d, sizeof(d), "%s%s", prefix, de->d_name) >= (int)sizeof(d) ||
			    !digest_ok(d) ||
			    fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(sb.st_mode))
				continue;
			md->bytes += (int64_t)sb.st_size;
			md->b = wh_grow(md->b, sizeof(*md->b), md->n_b, &md->cap_b, 64);
			struct blobf *b = &md->b[md->n_b++];
			memcpy(b->digest, d, sizeof(d));
			b->mtime_ms = mtime_ms(&sb);
		}
		closedir(dir);
	}
	return 0;
}

/* ---- jobs ---- */

enum kind { J_LIST, J_SCAN, J_APPLY, J_SHARED, J_EVICT };

struct job {
	uv_work_t work;
	wh_gc *gc;
	enum kind kind;
	char repo[WH_NAME_MAX + 1];
	int64_t now_ms;      /* wall clock when the job was decided */
	uint64_t started_ns; /* SCAN: when the repository's sweep began (uv_hrtime) */
	int64_t gc_delay_ms; /* orphans younger than this stay */
	bool dry_run;
	struct model md; /* SCAN's result, APPLY's input */
	dset orphans;    /* APPLY: blobs to remove if still old */
	dset evict;      /* EVICT: [the manifest], then the cached ones of repo */
	/* Results. */
	int rc;
	char **names; /* LIST: the repositories */
	int n_names;
	bool changed;      /* APPLY, EVICT: index.json moved under us: skipped */
	bool repo_removed; /* the repository is gone */
	bool index_written;
	int blobs_removed;
	int64_t freed;
	int64_t usage; /* SHARED: bytes held; -1 unknown */
	dset evicted;  /* EVICT: manifests removed */
};

struct wh_gc {
	uv_loop_t *loop;
	wh_store *st;
	const wh_store_settings *s;
	uv_timer_t timer; /* the next sweep */
	struct job *job;  /* in the pool */
	bool stopping;
	bool timer_closed;
	int room_calls; /* make_room calls not yet decided (their idle handles) */
	/* The sweep in progress. */
	bool sweep_wanted, sweeping;
	char **repos;
	int n_repos, at;
	bool listed, shared_done, uploads_done;
	bool uploads_busy;      /* the store's sweep of upload sessions is out */
	uint64_t sweep_started; /* uv_now */
	int64_t sweep_blobs, sweep_manifests;
	/* The budget. */
	bool budget;
	dset failed; /* "repo@digest" whose eviction failed: skipped until the next sweep */
	uint64_t nothing_logged; /* uv_now of the last "nothing left to evict" */
	struct room {
		int64_t bytes;
		void (*done)(void *arg, int rc);
		void *arg;
	} * rooms;
	int n_rooms, cap_rooms;
	wh_gc_stats stats;
	/* Bytes per repository as the sweeps' SCANs found them, sorted by name,
	 * at most WH_GC_REPOS_MAX; seen: the sweep (stats.sweeps + 1) that
	 * counted it, so that the repositories gone are dropped at its end. */
	struct repo_bytes {
		char *repo;
		int64_t bytes;
		uint64_t seen;
	} * repo_bytes;
	int n_repo_bytes, cap_repo_bytes;
};

static void kick(wh_gc *gc);

/* After wh_gc_stop: freed once nothing of it is left on the loop. */
static void maybe_free(wh_gc *gc)
{
	if (gc->stopping && gc->timer_closed && !gc->job && !gc->uploads_busy &&
	    gc->room_calls == 0) {
		dset_free(&gc->failed);
		for (int i = 0; i < gc->n_repo_bytes; i++)
			free(gc->repo_bytes[i].repo);
		free(gc->repo_bytes);
		free(gc->rooms);
		free(gc);
	}
}

static int64_t free_bytes(const char *root)
{
	struct statvfs sv;
	if (statvfs(root, &sv) < 0)
		return INT64_MAX;
	return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

/* ---- SHARED: the shared copies nobody links, and the byte count ---- */

struct inode {
	dev_t dev;
	ino_t ino;
	int64_t size;
};

static int cmp_inode(const void *a, const void *b)
{
	const struct inode *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Files counted by inode: those with one link are counted at once, the
 * others remembered and counted once each at the end. */
struct count {
	struct inode *v;
	int n, cap;
	int64_t bytes;
};

static void count_unique(struct count *c)
{
	if (c->n > 1)
		qsort(c->v, (size_t)c->n, sizeof(*c->v), cmp_inode);
	int k = 0;
	for (int i = 0; i < c->n; i++)
		if (k == 0 || cmp_inode(&c->v[k - 1], &c->v[i]) != 0)
			c->v[k++] = c->v[i];
	c->n = k;
}

static void count_dir(const char *dir_path, struct count *c)
{
	DIR *dir = opendir(dir_path);
	struct dirent *de;
	struct stat sb;

	if (!dir)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' ||
		    fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if (sb.st_nlink == 1) {
			c->bytes += (int64_t)sb.st_size;
			continue;
		}
		c->v = wh_grow(c->v, sizeof(*c->v), c->n, &c->cap, 256);
		c->v[c->n++] = (struct inode){sb.st_dev, sb.st_ino, (int64_t)sb.st_size};
	}
	closedir(dir);
	if (c->n > 65536) /* many links to few inodes: keep memory to the inodes */
		count_unique(c);
}

static int64_t count_total(struct count *c)
{
	count_unique(c);
	int64_t total = c->bytes;
	for (int i = 0; i < c->n; i++)
		total += c->v[i].size;
	free(c->v);
	memset(c, 0, sizeof(*c));
	return total;
}

static void shared_run(struct job *j)
{
	wh_store *st = j->gc->st;
	const char *root = wh_store_root(st);
	char path[PATH_MAX];

	/* The shared copies: link count 1 is no repository's. */
	static const char *const algs[] = {"sha256", "sha512"};
	for (size_t a = 0; a < WH_ARRAY_SIZE(algs); a++) {
		if (!j->gc->s->gc || !wh_store__dedupe(st) ||
		    snprintf(path, sizeof(path), "%s/.wharf/blobs/%s", root, algs[a]) >=
		        (int)sizeof(path))
			continue;
		DIR *dir = opendir(path);
		struct dirent *de;
		struct stat sb;
		int in_slice = 0;
		while (dir && (de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.' ||
			    fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(sb.st_mode) || sb.st_nlink != 1 ||
			    j->now_ms - mtime_ms(&sb) < j->gc_delay_ms)
				continue;
			if (j->dry_run) {
				wh_log(WH_LOG_INFO, "unreferenced shared blob", "module", WH_LS,
				       "gc", "blob", WH_LS, de->d_name, "dry-run", WH_LB, true,
				       NULL);
				continue;
			}
			if (in_slice == 0)
				wh_store__lock(st);
			/* Again under the lock: a publish may have linked it. */
			if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			    sb.st_nlink == 1 && unlinkat(dirfd(dir), de->d_name, 0) == 0) {
				j->blobs_removed++;
				j->freed += (int64_t)sb.st_size;
			}
			if (++in_slice == SLICE) {
				wh_store__unlock(st);
				in_slice = 0;
			}
		}
		if (in_slice)
			wh_store__unlock(st);
		if (dir)
			closedir(dir);
	}

	/* The byte count: every repository's blobs and the shared copies,
	 * each inode once. */
	struct count c = {0};
	char **names;
	int n;
	wh_store_repos_scan(root, &names, &n);
	for (size_t a = 0; a < WH_ARRAY_SIZE(algs); a++) {
		for (int i = 0; i < n; i++)
			if (snprintf(path, sizeof(path), "%s/%s/blobs/%s", root, names[i],
			             algs[a]) < (int)sizeof(path))
				count_dir(path, &c);
		if (snprintf(path, sizeof(path), "%s/.wharf/blobs/%s", root, algs[a]) <
		    (int)sizeof(path))
			count_dir(path, &c);
	}
	wh_strv_free(names, n);
	j->usage = count_total(&c);
}

/* ---- APPLY: what the loop decided, if the repository is as it was ---- */

static void apply_run(struct job *j)
{
	wh_store *st = j->gc->st;
	struct model *md = &j->md;
	wh_index_id now_id;
	bool edits = false, unsynced = false;
	cJSON *idx = NULL;

	for (int i = 0; i < md->n_m && !edits; i++)
		edits = md->m[i].removed;
	for (int i = 0; i < md->n_t && !edits; i++)
		edits = md->t[i].removed;

	wh_store__lock(st);
	if (!wh_store__index_id(st, j->repo, &now_id) || !wh_store__index_id_eq(&now_id, &md->id)) {
		j->changed = true;
		goto unlock;
	}
	if (edits && !j->dry_run) {
		cJSON *arr, *e, *next;
		j->rc = wh_store__index_load(st, j->repo, &idx, NULL);
		if (j->rc < 0)
			goto unlock;
		arr = wh_store__index_manifests(idx);
		for (e = arr->child; e; e = next) {
			next = e->next;
			const char *d = wh_store__entry_digest(e), *tag = wh_store__entry_tag(e);
			bool drop = false, untag = false;
			for (int i = 0; i < md->n_m && d; i++)
				if (md->m[i].removed && strcmp(md->m[i].digest, d) == 0)
					drop = true;
			for (int i = 0; i < md->n_t && tag && !drop; i++)
				if (md->t[i].removed && strcmp(md->t[i].tag, tag) == 0)
					untag = true;
			if (drop)
				cJSON_Delete(cJSON_DetachItemViaPointer(arr, e));
			else if (untag)
				wh_store__entry_untag(arr, e);
		}
		j->rc = wh_store__index_write(st, j->repo, idx);
		if (j->rc < 0)
			goto unlock;
		j->index_written = true;
		wh_store__index_id(st, j->repo, &md->id);
	}
	/* The orphans, a slice at a time; between slices index.json must stay
	 * ours, else what reaches them may have changed. The unlinks are made
	 * to last after each slice, out of the lock. */
	for (int i = 0; i < j->orphans.n && !j->dry_run; i++) {
		char path[PATH_MAX];
		struct stat sb;
		if (i > 0 && i % SLICE == 0) {
			wh_store__unlock(st);
			if (unsynced)
				wh_store__blob_dirs_sync(st, j->repo);
			unsynced = false;
			wh_store__lock(st);
			if (!wh_store__index_id(st, j->repo, &now_id) ||
			    !wh_store__index_id_eq(&now_id, &md->id)) {
				j->changed = true;
				goto unlock;
			}
		}
		/* Still old: a push or a mount since makes it young (link_blob). */
		if (wh_store__blob_path(st, j->repo, j->orphans.v[i], path) < 0 ||
		    lstat(path, &sb) < 0 || j->now_ms - mtime_ms(&sb) < j->gc_delay_ms)
			continue;
		if (wh_store__blob_unlink_nosync(st, j->repo, j->orphans.v[i], &j->freed) == 0) {
			j->blobs_removed++;
			unsynced = true;
		}
	}
	if (!j->dry_run)
		j->repo_removed = wh_store__repo_remove_if_empty(st, j->repo);
unlock:
	wh_store__unlock(st);
	if (unsynced)
		wh_store__blob_dirs_sync(st, j->repo);
	cJSON_Delete(idx);
}

/* ---- EVICT: one cached image ---- */

/* Unlink what the evicted manifests reach (gone) and the rest of the
 * repository does not (keep), unless written since the job began (a fill or
 * a push linking it right now); nor what spare holds. */
static bool evict_unlink(struct job *j, dset *gone, dset *keep, dset *spare)
{
	wh_store *st = j->gc->st;
	bool any = false;
	for (int i = 0; i < gone->n; i++) {
		char path[PATH_MAX];
		struct stat sb;
		if (dset_has(keep, gone->v[i]) || (spare && dset_has(spare, gone->v[i])) ||
		    wh_store__blob_path(st, j->repo, gone->v[i], path) < 0 ||
		    lstat(path, &sb) < 0 || mtime_ms(&sb) >= j->now_ms)
			continue;
		if (wh_store__blob_unlink_nosync(st, j->repo, gone->v[i], &j->freed) == 0) {
			j->blobs_removed++;
			any = true;
		}
	}
	return any; /* the caller syncs the directories once out of the lock */
}

static void evict_run(struct job *j)
{
	wh_store *st = j->gc->st;
	const char *root_digest = j->evict.v[0];
	dset cached = {0}, removed = {0}, kids = {0}, refs = {0}, keep_roots = {0}, keep = {0},
	     gone = {0};
	cJSON *idx = NULL, *arr, *e, *next;
	bool found = false, unsynced = false;

	for (int i = 1; i < j->evict.n; i++)
		dset_add(&cached, j->evict.v[i]);
	wh_store__lock(st);
	j->rc = wh_store__index_load(st, j->repo, &idx, NULL);
	if (j->rc < 0)
		goto unlock;
	arr = wh_store__index_manifests(idx);
	/* The manifest, and the children of an index that the cache stored and
	 * nothing tags. */
	dset_add(&removed, root_digest);
	manifest_refs(st, j->repo, root_digest, &refs, &kids, NULL);
	cJSON_ArrayForEach(e, arr)
	{
		const char *d = wh_store__entry_digest(e);
		if (!d)
			continue;
		if (strcmp(d, root_digest) == 0)
			found = true;
		if (wh_store__entry_tag(e) && dset_has(&kids, d))
			dset_add(&keep_roots, d); /* tagged: stays */
	}
	if (!found) {
		j->rc = WH_ENOTFOUND;
		goto unlock;
	}
	for (int i = 0; i < kids.n; i++)
		if (dset_has(&cached, kids.v[i]) && !dset_has(&keep_roots, kids.v[i]))
			dset_add(&removed, kids.v[i]);
	dset_free(&keep_roots);
	for (e = arr->child; e; e = next) {
		next = e->next;
		const char *d = wh_store__entry_digest(e);
		if (d && dset_has(&removed, d))
			cJSON_Delete(cJSON_DetachItemViaPointer(arr, e));
		else if (d)
			dset_add(&keep_roots, d);
	}
	/* What the rest of the repository reaches stays; of the rest, what the
	 * evicted manifests reached goes, once index.json no longer names
	 * them. */
	reach(st, j->repo, &keep_roots, &keep);
	reach(st, j->repo, &removed, &gone);
	j->rc = wh_store__index_write(st, j->repo, idx);
	if (wh_err_disk_full(j->rc)) {
		/* No room even for the new index.json, on the full disk that
		 * room is wanted for: their blobs go first, the manifests' own
		 * bytes excepted (index.json still names them), and it is
		 * written again. A crash in between leaves cached manifests
		 * without their blobs, which a pull fetches again. */
		unsynced |= evict_unlink(j, &gone, &keep, &removed);
		j->rc = wh_store__index_write(st, j->repo, idx);
	}
	if (j->rc < 0)
		goto unlock;
	j->index_written = true;
	for (int i = 0; i < removed.n; i++)
		dset_add(&j->evicted, removed.v[i]);
	unsynced |= evict_unlink(j, &gone, &keep, NULL);
	j->repo_removed = wh_store__repo_remove_if_empty(st, j->repo);
unlock:
	wh_store__unlock(st);
	/* The unlinks last from here, out of the lock (internal.h). */
	if (unsynced)
		wh_store__blob_dirs_sync(st, j->repo);
	cJSON_Delete(idx);
	dset_free(&cached);
	dset_free(&removed);
	dset_free(&kids);
	dset_free(&refs);
	dset_free(&keep_roots);
	dset_free(&keep);
	dset_free(&gone);
}

static void work_cb(uv_work_t *w)
{
	struct job *j = w->data;
	switch (j->kind) {
	case J_LIST:
		wh_store_repos_scan(wh_store_root(j->gc->st), &j->names, &j->n_names);
		break;
	case J_SCAN:
		j->rc = model_read(j->gc->st, j->repo, &j->md);
		break;
	case J_APPLY:
		apply_run(j);
		break;
	case J_SHARED:
		shared_run(j);
		break;
	case J_EVICT:
		evict_run(j);
		break;
	}
}

static void job_free(struct job *j)
{
	model_free(&j->md);
	dset_free(&j->orphans);
	dset_free(&j->evict);
	dset_free(&j->evicted);
	wh_strv_free(j->names, j->n_names);
	free(j);
}

static void after_work(uv_work_t *w, int status);

static struct job *job_new(wh_gc *gc, enum kind kind, const char *repo)
{
	struct job *j = wh_calloc(1, sizeof(*j));
	j->gc = gc;
	j->kind = kind;
	j->work.data = j;
	j->now_ms = wh_wall_ms();
	j->gc_delay_ms = gc->s->gc_delay_ms;
	j->dry_run = gc->s->retention.dry_run;
	j->usage = -1;
	if (kind == J_SCAN)
		j->started_ns = uv_hrtime();
	if (repo)
		snprintf(j->repo, sizeof(j->repo), "%s", repo);
	return j;
}

static void job_queue(wh_gc *gc, struct job *j)
{
	gc->job = j;
	if (uv_queue_work(gc->loop, &j->work, work_cb, after_work) < 0) {
		/* Cannot happen with a live loop; do it here rather than never. */
		work_cb(&j->work);
		after_work(&j->work, 0);
	}
}

/* ---- deciding, on the loop ---- */

static wh_ret_stats stats_of(wh_gc *gc, const char *repo, const char *digest)
{
	wh_meta_stats ms;
	wh_ret_stats rs = {0};
	if (wh_meta_get(wh_store_meta(gc->st), repo, digest, &ms) && (ms.flags || ms.pulled_ms)) {
		rs.known = true;
		rs.pushed_ms = ms.pushed_ms;
		rs.pulled_ms = ms.pulled_ms;
	}
	return rs;
}

static bool tagged(const struct model *md, int m)
{
	for (int i = 0; i < md->n_t; i++)
		if (md->t[i].m == m && !md->t[i].removed)
			return true;
	return false;
}

/* Zot's CleanRepo, steps 1-3 (gc.h), on the model. */
static void decide(wh_gc *gc, struct job *j)
{
	struct model *md = &j->md;
	const wh_ret_policy *p = wh_retention_policy(&gc->s->retention, j->repo);
	int64_t now = j->now_ms, delay = gc->s->retention.delay_ms;
	bool dry = j->dry_run;

	/* 1. Tags retention does not keep. */
	if (p && p->n_keep_tags > 0 && md->n_t > 0) {
		wh_ret_tag *t = wh_calloc((size_t)md->n_t, sizeof(*t));
		for (int i = 0; i < md->n_t; i++) {
			t[i].tag = md->t[i].tag;
			t[i].digest = md->m[md->t[i].m].digest;
			t[i].st = stats_of(gc, j->repo, t[i].digest);
		}
		wh_retention_tags(p, t, md->n_t, now);
		for (int i = 0; i < md->n_t; i++) {
			md->t[i].removed = !t[i].keep;
			md->t[i].reason = t[i].reason;
			if (t[i].reason)
				wh_log(WH_LOG_INFO, "applied policy", "module", WH_LS, "retention",
				       "repository", WH_LS, j->repo, "tag", WH_LS, t[i].tag,
				       "digest", WH_LS, t[i].digest, "decision", WH_LS,
				       t[i].keep ? "keep" : "delete", "reason", WH_LS, t[i].reason,
				       "dry-run", WH_LB, dry, NULL);
		}
		free(t);
	}

	/* keepUntagged ranks every untagged manifest, whatever its age. */
	bool *kept = wh_calloc((size_t)md->n_m + 1, sizeof(*kept));
	bool del_untagged = wh_retention_deletes_untagged(p);
	if (del_untagged) {
		wh_ret_untagged *u = wh_calloc((size_t)md->n_m + 1, sizeof(*u));
		int *at = wh_calloc((size_t)md->n_m + 1, sizeof(*at)), n = 0;
		for (int i = 0; i < md->n_m; i++) {
			if (tagged(md, i))
				continue;
			u[n].digest = md->m[i].digest;
			u[n].st = stats_of(gc, j->repo, md->m[i].digest);
			at[n++] = i;
		}
		wh_retention_untagged(p, u, n, now);
		for (int i = 0; i < n; i++)
			kept[at[i]] = u[i].keep;
		free(u);
		free(at);
	}

	/* 2. Until a pass removes nothing. */
	bool del_referrers = wh_retention_deletes_referrers(p);
	for (bool again = true; again;) {
		again = false;
		dset present = {0}, children = {0};
		for (int i = 0; i < md->n_m; i++) {
			if (md->m[i].removed)
				continue;
			dset_add(&present, md->m[i].digest);
			for (int k = 0; k < md->m[i].children.n; k++)
				dset_add(&children, md->m[i].children.v[k]);
		}
		for (int i = 0; i < md->n_m; i++) {
			struct mf *m = &md->m[i];
			bool old = m->present && now - m->mtime_ms > delay;
			if (m->removed || !old)
				continue;
			if (del_referrers && m->subject[0] && !dset_has(&present, m->subject)) {
				m->removed = true;
				m->reason = "deleteReferrers";
			} else if (del_untagged && !m->subject[0] && !tagged(md, i) &&
			           !dset_has(&children, m->digest) && !kept[i]) {
				m->removed = true;
				m->reason = "deleteUntagged";
			}
			again |= m->removed;
		}
		dset_free(&present);
		dset_free(&children);
	}
	free(kept);

	/* 3. Entries whose bytes are gone name nothing. */
	for (int i = 0; i < md->n_m; i++)
		if (!md->m[i].present && !md->m[i].removed) {
			md->m[i].removed = true;
			md->m[i].reason = "missing";
		}
	for (int i = 0; i < md->n_t; i++)
		if (md->m[md->t[i].m].removed)
			md->t[i].removed = true;

	/* 4. Orphans: blob files nothing left reaches, old enough (APPLY
	 * looks at their age again, under the lock). */
	if (md->truncated)
		return; /* what the unread manifests reach is unknown */
	dset reached = {0};
	for (int i = 0; i < md->n_m; i++)
		if (!md->m[i].removed)
			for (int k = 0; k < md->m[i].reach.n; k++)
				dset_add(&reached, md->m[i].reach.v[k]);
	for (int i = 0; i < md->n_b; i++)
		if (now - md->b[i].mtime_ms >= j->gc_delay_ms &&
		    !dset_has(&reached, md->b[i].digest))
			dset_add(&j->orphans, md->b[i].digest);
	dset_free(&reached);
}

static bool decided_anything(const struct job *j)
{
	for (int i = 0; i < j->md.n_m; i++)
		if (j->md.m[i].removed)
			return true;
	for (int i = 0; i < j->md.n_t; i++)
		if (j->md.t[i].removed)
			return true;
	/* An empty repository is removed too. */
	return j->orphans.n > 0 || j->md.n_m == 0;
}

/* ---- the budget ---- */

static bool over_budget(wh_gc *gc, int64_t need)
{
	const wh_store_settings *s = gc->s;
	int64_t usage = wh_store_usage(gc->st);
	/* Fills in flight count with what is stored; the free space has them
	 * already (their room is reserved on the disk). */
	if (s->cache_max_bytes > 0 && usage >= 0 &&
	    usage + wh_store_pending(gc->st) + need > s->cache_max_bytes)
		return true;
	if (s->cache_min_free_bytes > 0 || need > 0)
		return free_bytes(wh_store_root(gc->st)) < s->cache_min_free_bytes + need;
	return false;
}

/* The most room asked for by a make_room caller still waiting. */
static int64_t room_needed(const wh_gc *gc)
{
	int64_t need = 0;
	for (int i = 0; i < gc->n_rooms; i++)
		need = WH_MAX(need, gc->rooms[i].bytes);
	return need;
}

struct lru {
	wh_gc *gc;
	char repo[WH_NAME_MAX + 1];
	char digest[WH_DIGEST_LEN + 1];
	int64_t when;
	bool found;
};

static bool lru_visit(void *arg, const char *repo, const char *digest, const wh_meta_stats *st)
{
	struct lru *l = arg;
	if (!(st->flags & WH_META_CACHED) || (st->flags & WH_META_PUSHED))
		return true;
	int64_t when = WH_MAX(st->pulled_ms, st->pushed_ms);
	if (!l->found || when < l->when) {
		if (l->gc->failed.n > 0) {
			char key[WH_NAME_MAX + WH_DIGEST_LEN + 2];
			snprintf(key, sizeof(key), "%s@%s", repo, digest);
			if (dset_has(&l->gc->failed, key))
				return true;
		}
		snprintf(l->repo, sizeof(l->repo), "%s", repo);
		snprintf(l->digest, sizeof(l->digest), "%s", digest);
		l->when = when;
		l->found = true;
	}
	return true;
}

struct cached_of {
	const char *repo;
	dset *out;
};

static bool cached_visit(void *arg, const char *repo, const char *digest, const wh_meta_stats *st)
{
	struct cached_of *c = arg;
	if ((st->flags & WH_META_CACHED) && !(st->flags & WH_META_PUSHED) &&
	    strcmp(repo, c->repo) == 0)
		dset_add(c->out, digest);
	return true;
}

static void rooms_answer(wh_gc *gc, int rc)
{
	/* Called back from an idle handle: never inside make_room, and each
	 * caller once. */
	struct room *r = gc->rooms;
	int n = gc->n_rooms;
	gc->rooms = NULL;
	gc->n_rooms = gc->cap_rooms = 0;
	for (int i = 0; i < n; i++)
		r[i].done(r[i].arg, rc);
	free(r);
}

/* Start evicting if the budget is crossed; true when a job was queued. */
static bool evict_next(wh_gc *gc)
{
	int64_t need = room_needed(gc);
	if (!gc->budget) {
		/* Without a budget nothing cached is evicted, not even to make
		 * room: the operator has not said what may go. */
		if (gc->n_rooms)
			rooms_answer(gc, -ENOSPC);
		return false;
	}
	if (!over_budget(gc, need)) {
		if (gc->n_rooms)
			rooms_answer(gc, 0);
		return false;
	}
	struct lru l = {.gc = gc};
	wh_meta_each(wh_store_meta(gc->st), lru_visit, &l);
	if (!l.found) {
		uint64_t now = uv_now(gc->loop);
		if (gc->budget &&
		    (!gc->nothing_logged || now - gc->nothing_logged > NOTHING_LOG_MS)) {
			wh_log(WH_LOG_WARN,
			       "cache budget exceeded and no cached image is left to evict",
			       "usage", WH_LI, (long long)wh_store_usage(gc->st), "cacheMaxSize",
			       WH_LI, (long long)gc->s->cache_max_bytes, "free", WH_LI,
			       (long long)free_bytes(wh_store_root(gc->st)), NULL);
			gc->nothing_logged = now;
		}
		if (gc->n_rooms)
			rooms_answer(gc, -ENOSPC);
		return false;
	}
	struct job *j = job_new(gc, J_EVICT, l.repo);
	dset_add(&j->evict, l.digest);
	struct cached_of c = {l.repo, &j->evict};
	wh_meta_each(wh_store_meta(gc->st), cached_visit, &c);
	job_queue(gc, j);
	return true;
}

static void on_grow(void *arg)
{
	wh_gc *gc = arg;
	/* Called from inside other modules' callbacks too (a fill claiming
	 * room, in its upstream's): nothing waiting for room may be answered
	 * from here. With a make_room call not yet decided, its turn comes
	 * soon and kicks; without one, whoever waits, waits for a job or the
	 * sweep of upload sessions, and kick does not answer them. */
	if (!gc->budget)
		return;
	if (gc->room_calls == 0)
		kick(gc);
}

/* ---- what the sweep counts, for metrics ---- */

static int repo_bytes_find(const wh_gc *gc, const char *repo, bool *found)
{
	return wh_sorted_pos(gc->repo_bytes, gc->n_repo_bytes, sizeof(*gc->repo_bytes),
	                     offsetof(struct repo_bytes, repo), repo, found);
}

/* A SCAN counted repo's bytes. Past WH_GC_REPOS_MAX repositories the others
 * are not kept: the table's memory is bounded whatever the root holds. */
static void repo_bytes_note(wh_gc *gc, const char *repo, int64_t bytes)
{
	bool found;
	int i = repo_bytes_find(gc, repo, &found);
	if (!found) {
		if (gc->n_repo_bytes >= WH_GC_REPOS_MAX)
			return;
		gc->repo_bytes = wh_grow(gc->repo_bytes, sizeof(*gc->repo_bytes), gc->n_repo_bytes,
		                         &gc->cap_repo_bytes, 16);
		memmove(&gc->repo_bytes[i + 1], &gc->repo_bytes[i],
		        sizeof(*gc->repo_bytes) * (size_t)(gc->n_repo_bytes - i));
		gc->n_repo_bytes++;
		gc->repo_bytes[i].repo = wh_strdup(repo);
	}
	gc->repo_bytes[i].bytes = bytes;
	gc->repo_bytes[i].seen = gc->stats.sweeps + 1;
}

static void repo_bytes_remove(wh_gc *gc, int i)
{
	free(gc->repo_bytes[i].repo);
	memmove(&gc->repo_bytes[i], &gc->repo_bytes[i + 1],
	        sizeof(*gc->repo_bytes) * (size_t)(gc->n_repo_bytes - i - 1));
	gc->n_repo_bytes--;
}

/* The repository is gone (removed empty, or by an eviction). */
static void repo_bytes_forget(wh_gc *gc, const char *repo)
{
	bool found;
	int i = repo_bytes_find(gc, repo, &found);
	if (found)
		repo_bytes_remove(gc, i);
}

/* A sweep ended: what it did not find any more goes. */
static void repo_bytes_prune(wh_gc *gc)
{
	uint64_t sweep = gc->stats.sweeps + 1;
	for (int i = gc->n_repo_bytes - 1; i >= 0; i--)
		if (gc->repo_bytes[i].seen != sweep)
			repo_bytes_remove(gc, i);
}

/* One repository's collection is over (SCAN without anything to apply, or
 * APPLY): counted as Zot counts its per-repository GC runs. */
static void repo_swept(wh_gc *gc, const struct job *j)
{
	gc->stats.repo_sweeps++;
	if (j->rc < 0 && j->rc != WH_ENOTFOUND)
		gc->stats.repo_sweep_errors++;
	gc->stats.repo_sweep_ns += uv_hrtime() - j->started_ns;
}

/* ---- the sweep ---- */

static void schedule(wh_gc *gc, uint64_t ms);

static void sweep_done(wh_gc *gc)
{
	uint64_t took = uv_now(gc->loop) - gc->sweep_started;
	dset_free(&gc->failed); /* evictions that failed may be tried again */
	gc->sweeping = false;
	if (gc->s->gc)
		repo_bytes_prune(gc);
	gc->stats.sweeps++;
	gc->stats.sweeping = false;
	gc->stats.last_sweep_ms = (int64_t)took;
	wh_strv_free(gc->repos, gc->n_repos);
	gc->repos = NULL;
	gc->n_repos = gc->at = 0;
	if (gc->sweep_blobs > 0)
		wh_log(WH_LOG_INFO, "garbage collected blobs", "module", WH_LS, "gc", "count",
		       WH_LI, (long long)gc->sweep_blobs, NULL);
	wh_log(WH_LOG_INFO, "gc successfully completed", "module", WH_LS, "gc", "path", WH_LS,
	       wh_store_root(gc->st), "manifests", WH_LI, (long long)gc->sweep_manifests, "blobs",
	       WH_LI, (long long)gc->sweep_blobs, "duration_ms", WH_LI, (long long)took, NULL);
	if (gc->s->gc && gc->s->gc_interval_ms > 0)
		schedule(gc, (uint64_t)gc->s->gc_interval_ms);
}

/* Upload sessions nobody finished (a client that left, a crash) hold their
 * bytes until this: sessions older than gcDelay and not in use go. */
static void uploads_swept(int rc, void *arg)
{
	wh_gc *gc = arg;
	gc->uploads_busy = false;
	if (rc < 0) {
		wh_log(WH_LOG_WARN, "cannot remove stale upload sessions", "module", WH_LS, "gc",
		       "error", WH_LS, wh_strerror(rc), NULL);
	} else if (rc > 0) {
		wh_log(WH_LOG_INFO, "removed stale upload sessions", "module", WH_LS, "gc", "count",
		       WH_LI, (long long)rc, NULL);
		gc->stats.uploads_removed += (uint64_t)rc;
	}
	if (gc->stopping) {
		maybe_free(gc);
		return;
	}
	kick(gc);
}

static void sweep_step(wh_gc *gc)
{
	if (!gc->listed) {
		job_queue(gc, job_new(gc, J_LIST, NULL));
		return;
	}
	if (gc->at < gc->n_repos && gc->s->gc) {
		job_queue(gc, job_new(gc, J_SCAN, gc->repos[gc->at++]));
		return;
	}
	if (!gc->shared_done) {
		job_queue(gc, job_new(gc, J_SHARED, NULL));
		return;
	}
	if (!gc->uploads_done && gc->s->gc) {
		gc->uploads_done = true;
		gc->uploads_busy = true;
		int rc = wh_store_uploads_sweep_async(gc->loop, gc->st, gc->s->gc_delay_ms,
		                                      uploads_swept, gc);
		if (rc != 0)
			uploads_swept(rc, gc);
		return;
	}
	sweep_done(gc);
}

static void kick(wh_gc *gc)
{
	if (gc->job || gc->uploads_busy || gc->stopping)
		return;
	if (evict_next(gc))
		return;
	if (gc->sweeping) {
		sweep_step(gc);
		return;
	}
	if (gc->sweep_wanted) {
		gc->sweep_wanted = false;
		gc->sweeping = true;
		gc->stats.sweeping = true;
		gc->listed = gc->shared_done = gc->uploads_done = false;
		gc->at = 0;
		gc->sweep_blobs = gc->sweep_manifests = 0;
		gc->sweep_started = uv_now(gc->loop);
		if (gc->s->gc)
			wh_log(WH_LOG_DEBUG, "executing gc of orphaned blobs", "module", WH_LS,
			       "gc", "path", WH_LS, wh_store_root(gc->st), NULL);
		sweep_step(gc);
	}
}

static void apply_done(wh_gc *gc, struct job *j)
{
	if (j->changed) {
		wh_log(WH_LOG_DEBUG, "repository changed during gc: left to the next sweep",
		       "module", WH_LS, "gc", "repository", WH_LS, j->repo, NULL);
	}
	if (j->index_written) {
		wh_store__index_forget(gc->st, j->repo);
		wh_store__notify(
		    gc->st, &(wh_store_change){.kind = WH_STORE_REPO_CHANGED, .repo = j->repo});
	}
	int manifests = 0, tags = 0;
	for (int i = 0; i < j->md.n_m; i++) {
		const struct mf *m = &j->md.m[i];
		if (!m->removed || j->changed || (!j->index_written && !j->dry_run))
			continue;
		wh_log(WH_LOG_INFO,
		       m->subject[0] ? "removed manifest without reference"
		                     : "removed untagged manifest",
		       "module", WH_LS, "gc", "repository", WH_LS, j->repo, "digest", WH_LS,
		       m->digest, "reason", WH_LS, m->reason, "dry-run", WH_LB, j->dry_run, NULL);
		if (j->dry_run)
			continue;
		wh_meta_forget(wh_store_meta(gc->st), j->repo, m->digest);
		manifests++;
	}
	for (int i = 0; i < j->md.n_t; i++)
		tags += j->md.t[i].removed && j->index_written;
	if (j->repo_removed) {
		wh_store__index_forget(gc->st, j->repo);
		wh_store__catalog_remove(gc->st, j->repo);
		wh_store__notify(
		    gc->st, &(wh_store_change){.kind = WH_STORE_REPO_REMOVED, .repo = j->repo});
		wh_log(WH_LOG_INFO, "removed empty repository", "module", WH_LS, "gc", "repository",
		       WH_LS, j->repo, NULL);
	}
	gc->stats.manifests_removed += (uint64_t)manifests;
	gc->stats.tags_removed += (uint64_t)tags;
	gc->stats.blobs_removed += (uint64_t)j->blobs_removed;
	gc->sweep_manifests += manifests;
	gc->sweep_blobs += j->blobs_removed;
	if (j->dry_run && j->orphans.n > 0)
		wh_log(WH_LOG_INFO, "orphan blobs", "module", WH_LS, "gc", "repository", WH_LS,
		       j->repo, "count", WH_LI, (long long)j->orphans.n, "dry-run", WH_LB, true,
		       NULL);
	wh_store__usage_add(gc->st, -j->freed);
}

static void evict_done(wh_gc *gc, struct job *j)
{
	wh_meta *meta = wh_store_meta(gc->st);
	if (j->rc == WH_ENOTFOUND) {
		/* Gone already (deleted, or never where the record says): the
		 * record goes, so it is not chosen again. */
		wh_meta_forget(meta, j->repo, j->evict.v[0]);
		return;
	}
	if (j->rc < 0) {
		/* Its blobs may have gone (counted); the image stays listed and is
		 * tried again after the next fill, not now and again. */
		wh_log(WH_LOG_ERROR, "cannot evict cached image", "repository", WH_LS, j->repo,
		       "digest", WH_LS, j->evict.v[0], "error", WH_LS, wh_strerror(j->rc), "freed",
		       WH_LI, (long long)j->freed, NULL);
		wh_store__usage_add(gc->st, -j->freed);
		char key[WH_NAME_MAX + WH_DIGEST_LEN + 2];
		snprintf(key, sizeof(key), "%s@%s", j->repo, j->evict.v[0]);
		dset_add(&gc->failed, key);
		return;
	}
	wh_meta_stats ms = {0};
	wh_meta_get(meta, j->repo, j->evict.v[0], &ms);
	for (int i = 0; i < j->evicted.n; i++)
		wh_meta_forget(meta, j->repo, j->evicted.v[i]);
	wh_store__index_forget(gc->st, j->repo);
	wh_store__notify(gc->st,
	                 &(wh_store_change){.kind = WH_STORE_REPO_CHANGED, .repo = j->repo});
	if (j->repo_removed) {
		wh_store__catalog_remove(gc->st, j->repo);
		repo_bytes_forget(gc, j->repo);
		wh_store__notify(
		    gc->st, &(wh_store_change){.kind = WH_STORE_REPO_REMOVED, .repo = j->repo});
	}
	wh_store__usage_add(gc->st, -j->freed);
	gc->stats.evictions++;
	gc->stats.evicted_bytes += (uint64_t)j->freed;
	wh_log(WH_LOG_INFO, "evicted cached image", "module", WH_LS, "cache", "repository", WH_LS,
	       j->repo, "digest", WH_LS, j->evict.v[0], "manifests", WH_LI, (long long)j->evicted.n,
	       "blobs", WH_LI, (long long)j->blobs_removed, "bytes", WH_LI, (long long)j->freed,
	       "lastPulled_ms", WH_LI, (long long)ms.pulled_ms, "usage", WH_LI,
	       (long long)wh_store_usage(gc->st), NULL);
}

static void after_work(uv_work_t *w, int status)
{
	struct job *j = w->data;
	wh_gc *gc = j->gc;
	(void)status;
	gc->job = NULL;
	switch (j->kind) {
	case J_LIST: {
		/* The walk also finds what another tool wrote into the root: the
		 * catalog lists it from now on, not only after a restart. */
		char **copy = wh_malloc(sizeof(*copy) * ((size_t)j->n_names + 1));
		for (int i = 0; i < j->n_names; i++)
			copy[i] = wh_strdup(j->names[i]);
		wh_store_catalog_load(gc->st, copy, j->n_names);
		gc->listed = true;
		gc->repos = j->names;
		gc->n_repos = j->n_names;
		j->names = NULL;
		j->n_names = 0;
		break;
	}
	case J_SCAN:
		if (j->rc == 0)
			repo_bytes_note(gc, j->repo, j->md.bytes);
		if (j->rc == 0 && !gc->stopping && gc->s->gc) {
			decide(gc, j);
			if (decided_anything(j)) {
				j->kind = J_APPLY;
				job_queue(gc, j);
				return;
			}
		}
		repo_swept(gc, j);
		break;
	case J_APPLY:
		apply_done(gc, j);
		repo_swept(gc, j);
		if (j->repo_removed)
			repo_bytes_forget(gc, j->repo);
		break;
	case J_SHARED:
		gc->shared_done = true;
		gc->stats.blobs_removed += (uint64_t)j->blobs_removed;
		gc->sweep_blobs += j->blobs_removed;
		if (j->usage >= 0)
			wh_store__usage_set(gc->st, j->usage);
		break;
	case J_EVICT:
		evict_done(gc, j);
		break;
	}
	job_free(j);
	if (gc->stopping) {
		maybe_free(gc);
		return;
	}
	kick(gc);
}

/* ---- scheduling ---- */

static void on_timer(uv_timer_t *t)
{
	wh_gc *gc = t->data;
	if (!wh_gc_window_open(&gc->s->gc_window, wh_wall_ms())) {
		/* Outside the window: look again in a minute. */
		uv_timer_start(&gc->timer, on_timer, WH_MINUTE_MS, 0);
		return;
	}
	gc->sweep_wanted = true;
	kick(gc);
}

static void schedule(wh_gc *gc, uint64_t ms)
{
	uv_timer_start(&gc->timer, on_timer, ms, 0);
}

int wh_gc_start(uv_loop_t *loop, wh_store *st, const wh_store_settings *s, wh_gc **out)
{
	wh_gc *gc = wh_calloc(1, sizeof(*gc));
	gc->loop = loop;
	gc->st = st;
	gc->s = s;
	gc->budget = s->cache_max_bytes > 0 || s->cache_min_free_bytes > 0;
	uv_timer_init(loop, &gc->timer);
	gc->timer.data = gc;
	uv_unref((uv_handle_t *)&gc->timer);
	wh_store_on_grow(st, on_grow, gc);
	/* The first sweep right after start, as Zot's; it counts the bytes
	 * too, which the budget needs (a sweep with gc off does only that). */
	if (s->gc || gc->budget)
		schedule(gc, 0);
	*out = gc;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	wh_gc *gc = h->data;
	gc->timer_closed = true;
	maybe_free(gc);
}

void wh_gc_stop(wh_gc *gc)
{
	if (!gc || gc->stopping)
		return;
	gc->stopping = true;
	wh_store_on_grow(gc->st, NULL, NULL);
	if (gc->n_rooms)
		rooms_answer(gc, -ECANCELED);
	wh_strv_free(gc->repos, gc->n_repos);
	gc->repos = NULL;
	uv_close((uv_handle_t *)&gc->timer, timer_closed);
}

struct room_call {
	uv_idle_t idle;
	wh_gc *gc;
};

static void room_closed(uv_handle_t *h)
{
	struct room_call *rc = h->data;
	wh_gc *gc = rc->gc;
	free(rc);
	gc->room_calls--;
	if (gc->stopping) {
		if (gc->n_rooms)
			rooms_answer(gc, -ECANCELED);
		maybe_free(gc);
		return;
	}
	/* Evicting, or about to: the job's end answers; so does the end of the
	 * store's sweep of upload sessions, which holds kick back meanwhile.
	 * Else answer now. */
	if (!gc->job)
		kick(gc);
	if (!gc->job && !gc->uploads_busy && gc->n_rooms)
		rooms_answer(gc, over_budget(gc, room_needed(gc)) ? -ENOSPC : 0);
}

static void room_idle(uv_idle_t *h)
{
	uv_idle_stop(h);
	uv_close((uv_handle_t *)h, room_closed);
}

void wh_gc_make_room(wh_gc *gc, int64_t bytes, void (*done)(void *done_arg, int rc), void *done_arg)
{
	gc->rooms = wh_grow(gc->rooms, sizeof(*gc->rooms), gc->n_rooms, &gc->cap_rooms, 4);
	gc->rooms[gc->n_rooms++] = (struct room){bytes > 0 ? bytes : 1, done, done_arg};
	/* Decide on the loop's next turn, never inside this call. */
	struct room_call *rc = wh_calloc(1, sizeof(*rc));
	rc->gc = gc;
	gc->room_calls++;
	uv_idle_init(gc->loop, &rc->idle);
	rc->idle.data = rc;
	uv_idle_start(&rc->idle, room_idle);
}

void wh_gc_reload(wh_gc *gc, const wh_store_settings *s)
{
	bool was = gc->s->gc || gc->budget;
	gc->s = s;
	gc->budget = s->cache_max_bytes > 0 || s->cache_min_free_bytes > 0;
	/* Nothing scheduled (gc was off, or gcInterval 0): start now. A sweep
	 * already scheduled keeps its time, and schedules the next by s. */
	if (!was && (s->gc || gc->budget) && !gc->sweeping &&
	    !uv_is_active((uv_handle_t *)&gc->timer))
		schedule(gc, 0);
	if (gc->budget)
		kick(gc);
}

void wh_gc_sweep_now(wh_gc *gc)
{
	gc->sweep_wanted = true;
	kick(gc);
}

void wh_gc_get_stats(const wh_gc *gc, wh_gc_stats *out)
{
	*out = gc->stats;
}

void wh_gc_each_repo_bytes(const wh_gc *gc, void (*fn)(void *arg, const char *repo, int64_t bytes),
                           void *arg)
{
	for (int i = 0; i < gc->n_repo_bytes; i++)
		fn(arg, gc->repo_bytes[i].repo, gc->repo_bytes[i].bytes);
}

void wh_gc_budget(const wh_gc *gc, int64_t *max_bytes, int64_t *min_free_bytes,
                  int64_t *fs_free_bytes)
{
	*max_bytes = gc->s->cache_max_bytes;
	*min_free_bytes = gc->s->cache_min_free_bytes;
	int64_t f = free_bytes(wh_store_root(gc->st));
	*fs_free_bytes = f == INT64_MAX ? -1 : f;
}
