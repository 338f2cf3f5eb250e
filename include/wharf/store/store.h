/* The store: local content under rootDirectory, laid out as Zot lays it out,
 * so an existing Zot root is served as-is and skopeo/oras read what we write:
 *
 *   <root>/<repo>/oci-layout                {"imageLayoutVersion":"1.0.0"}
 *   <root>/<repo>/index.json                OCI image index; tags are the
 *                                           annotation org.opencontainers.image.ref.name
 *   <root>/<repo>/blobs/<alg>/<hex>         blobs and manifests, by digest
 *                                           (alg: sha256 or sha512)
 *   <root>/.wharf/blobs/<alg>/<hex>         one copy of every blob's bytes when
 *                                           dedupe is on; repositories hard-link it
 *   <root>/.wharf/uploads/<uuid>/repo       an upload session: its repository's
 *   <root>/.wharf/uploads/<uuid>/data       name, the bytes so far, and the
 *   <root>/.wharf/uploads/<uuid>/hash       hash state of a prefix of them
 *   <root>/.wharf/tmp/                      temp files being written
 *
 * Every write is temp file + incremental hash + fsync + rename (+ fsync of
 * the directory), so a reader never sees a partial object and a crash leaves
 * only temp files, which wh_store_open removes. The link count of a blob in
 * .wharf/blobs is the number of repositories that hold it (+1).
 *
 * Calls are meant for the one loop thread, and each change of what the root
 * holds is atomic with respect to every other, which is what makes
 * concurrent pushes of the same blob or tag safe. Reads are synchronous.
 * Changes come in two forms (see "Changes off the loop" below): the
 * synchronous call does its fsyncs on the calling thread; its _async twin
 * does them, and every other blocking part, in libuv's thread pool, and
 * calls back on the loop. Names, tags and digests must have been validated
 * with ref.h before they reach the store. */
#ifndef WHARF_STORE_H
#define WHARF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "wharf/base/conf.h"
#include "wharf/oci/ref.h"
#include "wharf/store/retention.h"

typedef struct wh_store wh_store;
typedef struct wh_upload wh_upload;

/* The `storage` section of the config (wh_store_keys). */
typedef struct wh_store_settings {
	char *root_dir; /* rootDirectory: required, as in Zot (unless storageDriver) */
	bool dedupe;    /* default true */
	bool gc;        /* default true */
	/* gcDelay and gcInterval: default 1h as in Zot, or 0 when gc is false */
	int64_t gc_delay_ms;
	int64_t gc_interval_ms;
	wh_gc_window gc_window; /* gcTimeWindow (retention.h): unset by default */
	bool commit; /* fsync before publishing; Zot default false, Wharf always fsyncs */
	wh_retention_settings retention; /* retention (retention.h) */
	/* storage.wharf.cacheMaxSize and cacheMinFree: the cache budget (gc.h);
	 * 0 when unset. */
	int64_t cache_max_bytes;
	int64_t cache_min_free_bytes;
	/* storageDriver was given (and refused): Zot needs no rootDirectory
	 * then, so its absence is not a second error. */
	bool remote_driver;
} wh_store_settings;

extern const wh_conf_key wh_store_keys[];
void wh_store_settings_init(wh_store_settings *s);
/* rootDirectory is required (but for a remote storageDriver, refused
 * already); the gc defaults that depend on gc: gcDelay,
 * gcInterval, then retention.delay (gcDelay when gc is on, else 0). */
int wh_store_settings_check(wh_conf *c, wh_store_settings *s);
void wh_store_settings_free(wh_store_settings *s);

/* Open (creating if needed) the store at root. Removes leftover temp files.
 * Does not scan repositories: metadata is read lazily. Returns 0, or a
 * WH_E* code or -errno, logging nothing: the caller says it once.
 *
 * Repositories are created when something is stored in them: blob_publish
 * (and so upload_finish), blob_mount and manifest_put make <root>/<repo> an
 * OCI image layout (oci-layout, an empty index.json, blobs/sha256/; a
 * blobs/sha512/ comes with its first blob) if it is not one yet, as Zot does, so a repository
 * exists (repo_exists, catalog) once anything has been pushed to it. Starting an upload stores
 * nothing: sessions live under .wharf/uploads, outside every repository. Every function taking a
 * repo/digest/tag re-checks it with ref.h and returns WH_EINVAL if it fails (defence in depth). */
int wh_store_open(const char *root, bool dedupe, wh_store **out);
void wh_store_close(wh_store *st);
const char *wh_store_root(const wh_store *st);

/* ---- blobs ---- */

/* 0 and *size if repo holds the blob, WH_ENOTFOUND otherwise. */
int wh_store_blob_stat(wh_store *st, const char *repo, const char *digest, int64_t *size);

/* Open the blob for reading; the caller owns *fd (close it). */
int wh_store_blob_open(wh_store *st, const char *repo, const char *digest, int *fd, int64_t *size);

/* Remove the blob from repo. WH_ENOTFOUND if it was not there; WH_EINUSE
 * (and nothing removed) if digest is a manifest of repo (index.json names
 * it): its bytes go with wh_store_manifest_delete, which drops the tags
 * too, never from under a tag. */
int wh_store_blob_delete(wh_store *st, const char *repo, const char *digest);

/* Move repo's copy of a blob found corrupt aside, so that repo no longer
 * holds it and a pull through the cache fetches a good copy again:
 * <root>/<repo>/blobs/<alg>/<hex> is renamed to
 * <root>/.wharf/corrupt/<hex>.<unix time>[.<n>] (the directory created as
 * needed; what is there is never replaced), and .wharf/blobs/<alg>/<hex>
 * is unlinked too when it is the same file (the same inode): otherwise the
 * next publish of the digest would link the corrupt bytes back in. Other
 * repositories' links to the same bytes are left to each (the scrubber
 * finds them there too). Works for a manifest's bytes as well: index.json
 * is not changed, so the manifest reads as missing until it is stored
 * again; the loop's cache of small manifests (read-through, by digest) is
 * not touched. Takes st->lock itself, with fsyncs of the directories
 * involved: callable from any thread (the scrubber's), never from the
 * loop. Logs "moved corrupt blob aside". Returns 0; WH_ENOTFOUND when repo
 * does not hold the blob; WH_EINVAL for a bad name or digest; -errno. */
int wh_store_blob_quarantine(wh_store *st, const char *repo, const char *digest);

/* Make a blob that from_repo holds present in repo (hard link; a copy only
 * if the filesystem refuses links). WH_ENOTFOUND if from_repo does not hold it;
 * 0 if repo holds it already. */
int wh_store_blob_mount(wh_store *st, const char *repo, const char *from_repo, const char *digest);

/* A repository that holds the blob and that may_read(arg, name) allows,
 * for a mount that names none (?mount= without from): 0 with its name in
 * repo, WH_ENOTFOUND, or WH_EINVAL for a bad digest. Bounded work on the
 * loop, no walk of the root: with dedupe, no shared copy of the bytes
 * (.wharf/blobs/<alg>/<hex>, one stat) means no repository holds them;
 * then the repository where the store last published or mounted the
 * digest (a table of 1024 hints kept in memory, not across restarts),
 * checked with a stat; then the first 4096 names of the catalog in order,
 * a stat for each of at most 256 that may_read allows. So a blob held only
 * by repositories past those is not found, and the client uploads it. */
int wh_store_blob_find(wh_store *st, const char *digest,
                       bool (*may_read)(void *arg, const char *repo), void *arg,
                       char repo[WH_NAME_MAX + 1]);

/* A temp file in .wharf/tmp for content being written; path receives its
 * name (PATH_MAX bytes). Returns an fd open for read+write, or -errno. */
int wh_store_tmp_create(wh_store *st, char *path, size_t pathlen);

/* Publish a fully written temp file (its content already verified to hash to
 * digest) as a blob of repo: fsync, rename/link into place. The temp file is
 * consumed (gone afterwards) whether or not this succeeds. Publishing a blob
 * repo already holds is success (the temp file is dropped). tmp_path may be
 * any file on the root's filesystem (upload_finish passes the session file). */
int wh_store_blob_publish(wh_store *st, const char *repo, const char *tmp_path, const char *digest);

/* ---- upload sessions ---- */

/* Start a session for repo; id receives its uuid (and a NUL). The
 * repository is not created (finishing the upload creates it). A session
 * nobody finishes stays until a sweep (wh_store_uploads_sweep_async, below)
 * finds it stale. */
int wh_store_upload_create(wh_store *st, const char *repo, char id[WH_UUID_LEN + 1]);

/* Sessions in memory: at most this many, each with an open fd, unless more
 * are pinned (in use by a request: then the connection limit bounds them).
 * When one more is needed, the least recently used unpinned session leaves
 * memory: its files stay, and its hash state is saved beside them (<uuid>/
 * hash) so that getting it again never reads its bytes. wh_store_close saves
 * every session's state the same way. */
#define WH_UPLOADS_OPEN_MAX 256

/* Find a session by repo and uuid: from memory, or from disk after a restart
 * or an eviction. From disk, the bytes are not read: the size is the data
 * file's, the hash state the saved one; when there is no usable saved state
 * (after a crash or a reboot), the session is "behind" (below). WH_ENOTFOUND
 * if there is none, if it belongs to another repository, if it is being
 * finished (wh_store_upload_finish_async: it is as good as gone), or id is
 * not a uuid as upload_create makes them. The session stays owned by the store.
 * The pointer is valid until the next call to wh_store_upload_create or
 * wh_store_upload_get (either may evict it), finish/cancel on it, or
 * wh_store_close, unless it is pinned: then until it is unpinned (or
 * finished or cancelled). A request that uses a session across returns to
 * the loop gets it once and pins it. */
int wh_store_upload_get(wh_store *st, const char *repo, const char *id, wh_upload **out);

/* Pins count: a pinned session is never evicted, so the pointer stays valid.
 * Unpinning the last pin may evict it (or another one) at once, to bring
 * the table back to WH_UPLOADS_OPEN_MAX. Pinned also means "in use": the
 * registry lets one request at a time write to a session and refuses the
 * others while it is pinned. */
void wh_upload_pin(wh_upload *up);
void wh_upload_unpin(wh_upload *up);
bool wh_upload_pinned(const wh_upload *up);

/* Bytes received so far. */
int64_t wh_upload_size(const wh_upload *up);

/* Append bytes, hashing them unless the session is behind (then the hash
 * waits for a catch-up). On error (-errno) the bytes that did reach the
 * file are counted in wh_upload_size, so the session stays consistent and
 * the client can resume from there. A full disk (wh_err_disk_full) is the
 * caller's to end: a server cancels the session (its bytes would keep the
 * disk full for everyone). */
int wh_upload_write(wh_upload *up, const void *data, size_t len);

/* True when the hash does not cover every byte: the session was got from
 * disk without a usable saved state, or its algorithm changed. Writes still
 * append; the bytes the hash lacks are hashed by a catch-up before the
 * session can finish. */
bool wh_upload_hash_behind(const wh_upload *up);

/* The algorithm the session hashes with: sha256 unless set below (a
 * session got from disk hashes with its saved state's algorithm). */
wh_digest_alg wh_upload_hash_alg(const wh_upload *up);

/* Hash the session with alg (sha256 or sha512, else WH_EINVAL) from now
 * on. Nothing to do when it does already. Otherwise its hash starts over
 * and it is behind by every byte it holds: a new session costs nothing,
 * one with bytes needs a catch-up (below) to hash them again, off the
 * loop. WH_EINUSE while a catch-up is out or it is being finished. A
 * session's algorithm is saved with its hash state when it leaves memory
 * (one with no byte yet included), so it comes back hashing the same. */
int wh_upload_set_alg(wh_upload *up, wh_digest_alg alg);

/* The catch-up hashes a behind session's missing bytes in three steps, so
 * that the reading and hashing run off the loop (libuv's thread pool):
 *   begin (loop)  snapshots what is missing and pins the session; WH_EINVAL
 *                 when it is not behind or a catch-up is already out, -errno
 *                 if its fd cannot be duplicated.
 *   run (any thread) reads and hashes the bytes; it touches only
 *                 the job (its own fd and hash copy), so the loop may go on
 *                 using the session, even appending to it.
 *   end (loop)    installs the hash if the session has not changed under it,
 *                 unpins, frees the job; 0, or the error run met (-errno,
 *                 WH_EIO if the file was cut): the session is then left as
 *                 it was, still behind. Bytes appended meanwhile keep it
 *                 behind for those; begin again.
 * While a catch-up is out, finish and cancel answer WH_EINUSE; begin answers
 * WH_EINVAL on a session being finished. Every begun job must be ended
 * before wh_store_close. */
typedef struct wh_upload_catchup wh_upload_catchup;
int wh_upload_catchup_begin(wh_upload *up, wh_upload_catchup **out);
void wh_upload_catchup_run(wh_upload_catchup *job);
int wh_upload_catchup_end(wh_upload_catchup *job);

/* Finish: if the content hashes to digest, publish it as a blob of the
 * session's repo (creating the repository) and end the session (0). If not,
 * WH_EDIGEST and the session is ended too (its bytes are dropped). A digest
 * that is not valid, of an algorithm the session does not hash with
 * (wh_upload_set_alg first), or a session that is behind, is
 * WH_EINVAL and leaves the session as it was; WH_EINUSE while a catch-up is
 * out or the session is being finished. Otherwise the session (pins and
 * all) is gone afterwards. The fsync of the bytes runs on the calling
 * thread: a server calls wh_store_upload_finish_async (below). */
int wh_store_upload_finish(wh_store *st, wh_upload *up, const char *digest);

/* End a session and drop its bytes (WH_EINUSE while a catch-up is out or
 * the session is being finished). Otherwise the session (pins and all) is
 * gone afterwards. The close and unlinks run on the calling thread: a server
 * calls wh_store_upload_cancel_async (below). */
int wh_store_upload_cancel(wh_store *st, wh_upload *up);

/* ---- manifests and tags ---- */

/* A manifest as stored. data (NUL-terminated, len bytes) and media_type are
 * malloc'd; free both with wh_manifest_free. media_type is the index.json
 * entry's, else the type the manifest gives itself (wh_manifest_type_of:
 * its mediaType, else an image index when it has "manifests", else an
 * image manifest). */
typedef struct wh_manifest {
	char digest[WH_DIGEST_LEN + 1];
	char *media_type;
	char *data;
	size_t len;
} wh_manifest;
void wh_manifest_free(wh_manifest *m);

/* Look up by tag or digest (ref is one or the other, already validated).
 * WH_ENOTFOUND if the repo has no such tag, or does not hold that manifest. */
int wh_store_manifest_get(wh_store *st, const char *repo, const char *ref, wh_manifest *out);

/* Same, without reading the bytes: digest, media type (malloc'd: free() it)
 * and size. */
int wh_store_manifest_stat(wh_store *st, const char *repo, const char *ref,
                           char digest[WH_DIGEST_LEN + 1], char **media_type, int64_t *size);

/* Store manifest bytes (digest = the hash of data, computed by the caller) with
 * the given media type; if tag is not NULL, point the tag at it (moving it if
 * it pointed elsewhere). Creates the repository if needed. A pushed manifest
 * (not the cache's) must reference only what repo holds (its config and
 * layers, an index's children; descriptors with urls aside): checked again
 * under the store's lock, so a GC sweep that removed an old orphan since
 * the caller checked makes this WH_EINUSE (nothing stored), never a
 * manifest naming a blob that is gone. index.json holds
 * one entry per (digest, tag); a digest without tags keeps one untagged entry,
 * so a manifest whose tag moved away stays reachable by digest. For a digest
 * already held, only the tag is added/moved. */
int wh_store_manifest_put(wh_store *st, const char *repo, const char *tag, const char *digest,
                          const char *media_type, const char *data, size_t len);

/* Delete by digest: the manifest and every tag pointing at it. By tag: only
 * the tag (the manifest stays, reachable by digest). WH_ENOTFOUND if there
 * was nothing to delete (a digest that is a blob but not a manifest of repo
 * is not deleted). */
int wh_store_manifest_delete(wh_store *st, const char *repo, const char *ref);

/* ---- changes off the loop ----
 *
 * Every call above that changes the root fsyncs what it wrote, renames or
 * links it into place and fsyncs the directory, on the calling thread. A
 * fsync waits for the disk: for an upload's bytes, as long as the disk
 * takes to write them (seconds for gigabytes), during which a loop thread
 * serves nobody. Each such call therefore has an _async twin, with the same
 * arguments, checks and results, that runs in three parts:
 *
 *   prepare (loop, inside the call)  checks the arguments and copies what
 *        the work needs (the caller's buffers are free once it returns);
 *        an error is returned at once (< 0), nothing was done, and cb will
 *        not be called. Otherwise 0.
 *   work (libuv's thread pool)  the filesystem only: writes, fsyncs,
 *        renames, links, unlinks, reading index.json.
 *   complete (loop)  what lives in memory (the catalog, the index cache,
 *        the session table) catches up, then cb(rc, arg) is called once,
 *        with what the synchronous call would have returned. Never from
 *        inside the _async call itself.
 *
 * Once prepared, an operation always runs to the end and its callback
 * always fires: the store has no way to drop one halfway, so a client that
 * leaves meanwhile leaves the store as it would have been had it stayed
 * (the blob is published, the tag written). The store keeps no pointer to
 * arg except to pass it to cb; if what arg refers to can go away first (a
 * request whose client left), arg is the caller's to keep valid, e.g. a
 * small record the request clears when it ends and cb frees.
 *
 * Atomicity: the part of the work that changes what the root holds (repo
 * creation, placing a blob, index.json read-changed-written, deletes) runs
 * with the store's lock held, whichever thread runs it; the synchronous
 * calls take it too. So changes are applied one at a time, as when they
 * all ran on the loop, and concurrent pushes of one tag or blob stay safe.
 * The fsync of bytes nobody else sees yet (an upload's data file, a temp
 * file) runs before the lock is taken, so a big one never holds it. While
 * a pool thread holds the lock, a synchronous change waits for it on the
 * loop: for as long as a few small fsyncs (a directory, an index.json),
 * never a blob's.
 *
 * What stays on the loop, because it never fsyncs nor reads more than
 * metadata: the reads (blob_stat/open, manifest_get/stat, tags, referrers,
 * repo_exists, upload_get: index.json, manifests of at most 64 MiB, the
 * small files of a session), upload_create, wh_upload_write (page cache),
 * and the eviction of a session (its small hash file written and renamed,
 * not fsynced). A server calls none of the synchronous changes above: the
 * registry (finish, cancel, mount, deletes, pushed manifests) and the cache (a
 * fetched blob's publish and links, synced manifests) use the _async ones
 * and answer from their callbacks; the synchronous ones remain for callers
 * with no loop to wait on (the unit tests).
 *
 * Every operation must have called back before wh_store_close: run the
 * loop until it has no more work (uv_run does). */
typedef void (*wh_store_cb)(int rc, void *arg);

/* wh_store_upload_finish. The session is claimed at once: from a 0 return
 * on, the caller neither uses nor unpins up again (the pointer dies with
 * the session); wh_store_upload_get answers WH_ENOTFOUND for it, cancel and
 * a second finish WH_EINUSE. A digest mismatch is known at once but
 * reported through cb (WH_EDIGEST), the session's files removed off the
 * loop. */
int wh_store_upload_finish_async(uv_loop_t *loop, wh_store *st, wh_upload *up, const char *digest,
                                 wh_store_cb cb, void *arg);

/* wh_store_upload_cancel. As a finish, the session is claimed at once (the
 * caller neither uses nor unpins up again); its file is closed and its
 * directory removed in the pool (closing a big unlinked file is when the
 * filesystem frees its blocks). */
int wh_store_upload_cancel_async(uv_loop_t *loop, wh_store *st, wh_upload *up, wh_store_cb cb,
                                 void *arg);

/* wh_store_blob_publish (the temp file is consumed whether or not it
 * succeeds, an error returned at once included). */
int wh_store_blob_publish_async(uv_loop_t *loop, wh_store *st, const char *repo,
                                const char *tmp_path, const char *digest, wh_store_cb cb,
                                void *arg);

int wh_store_blob_mount_async(uv_loop_t *loop, wh_store *st, const char *repo,
                              const char *from_repo, const char *digest, wh_store_cb cb, void *arg);

int wh_store_blob_delete_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *digest,
                               wh_store_cb cb, void *arg);

/* wh_store_manifest_put; data is copied. */
int wh_store_manifest_put_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *tag,
                                const char *digest, const char *media_type, const char *data,
                                size_t len, wh_store_cb cb, void *arg);

/* The same with any number of tags (n_tags >= 0, each valid, else
 * WH_EINVAL and nothing done): each is pointed at the manifest (moved if it
 * pointed elsewhere) in one write of index.json, all or none. For a push
 * by digest with ?tag= parameters. */
int wh_store_manifest_put_tags_async(uv_loop_t *loop, wh_store *st, const char *repo,
                                     const char *const *tags, int n_tags, const char *digest,
                                     const char *media_type, const char *data, size_t len,
                                     wh_store_cb cb, void *arg);

/* wh_store_manifest_put_async for content the cache fetched from an
 * upstream: the same, but the manifest is recorded as cached (meta.h), which
 * the cache budget may evict; a user's push never is. */
int wh_store_manifest_cache_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *tag,
                                  const char *digest, const char *media_type, const char *data,
                                  size_t len, wh_store_cb cb, void *arg);

int wh_store_manifest_delete_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *ref,
                                   wh_store_cb cb, void *arg);

/* ---- stale upload sessions ----
 *
 * Remove every session (.wharf/uploads/<uuid>) whose data file was last
 * written at least max_age_ms ago (a directory without a data file: the
 * directory's age) and that is not in use: a session in memory that is
 * pinned, has a catch-up out, is being finished or cancelled, or was got,
 * written to or pinned within max_age_ms (or since the sweep began) is
 * kept. max_age_ms 0: every session not in use. The listing and the
 * removal run in libuv's thread pool; in between, on the loop, the
 * sessions in memory are judged and the others leave memory, and from
 * then on wh_store_upload_get answers WH_ENOTFOUND for each of them. cb
 * gets the number of sessions removed, or a -errno when the sessions
 * could not be listed. Returns 0, or an error at once (WH_EINVAL for a
 * negative max_age_ms; cb will not be called). An operation as those
 * above: it must have called back before wh_store_close. For the server's
 * start (storage.gcDelay) and the GC. */
int wh_store_uploads_sweep_async(uv_loop_t *loop, wh_store *st, int64_t max_age_ms, wh_store_cb cb,
                                 void *arg);

/* The same on the calling thread (for tests and tools): the count, or an
 * error. */
int wh_store_uploads_sweep(wh_store *st, int64_t max_age_ms);

/* Tags of repo in lexical order, after `last` (NULL: from the start), at most
 * n (n < 0: all). *tags is a malloc'd array of malloc'd strings; free with
 * wh_strv_free. *more is set when tags remain after the last one returned.
 * WH_ENOTFOUND if the repository does not exist. */
int wh_store_tags(wh_store *st, const char *repo, const char *last, int n, char ***tags, int *count,
                  bool *more);

/* The order tags (and repository names) are listed in: the spec's lexical
 * order, case-insensitive; names differing only in case bytewise, so the
 * order is total. For qsort over an array of char *. */
int wh_store_tag_cmp(const void *a, const void *b);

/* One page of v[0..n), sorted by wh_store_tag_cmp and maybe with repeats:
 * the names after last (NULL: from the first), each once, at most limit of
 * them (limit < 0: all), moved to the front of v in place; returns how many.
 * *more is set when another name remains after them. Nothing is copied or
 * freed. */
int wh_store_page(char **v, int n, const char *last, int limit, bool *more);

/* ---- the catalog ----
 *
 * Repository names are listed from memory: a sorted array, filled once by
 * a scan of the root and kept up to date by the store itself, which adds a
 * name whenever it creates a repository (the GC removes the ones it
 * empties). Walking 20,000 repositories takes about a second, too long for
 * the loop, so a server scans in libuv's thread pool at start and loads the
 * result; a repository that another tool writes into the root while Wharf
 * runs is served (its index.json is read when asked for) and listed from the
 * GC's next sweep on (its walk is loaded too), or after a restart. */

/* Find the repositories under root: every directory below it that holds an
 * index.json and whose path is a valid name (dot-directories and a
 * repository's blobs/sha256/ and blobs/sha512/ are not searched), in lexical order. *names
 * is a malloc'd array of malloc'd strings. Touches nothing but the
 * filesystem: safe on any thread. */
void wh_store_repos_scan(const char *root, char ***names, int *count);

/* Adopt a scan's result (ownership of names passes to the store) as the
 * catalog, merged with the repositories the store created since the scan
 * began, which it may or may not have seen. */
void wh_store_catalog_load(wh_store *st, char **names, int count);

/* True once a scan was loaded. */
bool wh_store_catalog_loaded(const wh_store *st);

/* Repository names in lexical order, paginated as wh_store_tags (last is
 * found by binary search). Before a scan was loaded, this scans the root
 * first, here and now: tools and tests may rely on that; a server loads the
 * catalog off the loop before it answers a catalog request. */
int wh_store_repos(wh_store *st, const char *last, int n, char ***repos, int *count, bool *more);

/* Descriptors (as JSON text of an OCI image index, media type
 * application/vnd.oci.image.index.v1+json) of the manifests in repo whose
 * `subject` is digest, filtered by artifact_type when not NULL. An unknown
 * subject or repository yields an empty index. *json is malloc'd (free()).
 * Reads every manifest of the repo: O(manifests) file reads. */
int wh_store_referrers(wh_store *st, const char *repo, const char *digest,
                       const char *artifact_type, char **json);

/* True when repo exists (has an index.json). */
bool wh_store_repo_exists(wh_store *st, const char *repo);

/* ---- what the store remembers and how much it holds ---- */

/* The pull and push times of manifests (meta.h). A manifest put records a
 * push (or a cache fill), a delete by digest forgets it; the server notes
 * each manifest GET. */
typedef struct wh_meta wh_meta;
wh_meta *wh_store_meta(wh_store *st);
void wh_store_note_pull(wh_store *st, const char *repo, const char *digest);

/* True when the cache stored manifest digest in repo from an upstream and
 * no user pushed it (it may be fetched again). Safe on any thread; the
 * signature is wh_scrub_cached_fn's (arg is the store). */
bool wh_store_cached(void *st, const char *repo, const char *digest);

/* A server's store writes its metadata from the loop (batched, in the thread
 * pool) between attach and detach; detach before the loop's last run. */
void wh_store_attach(wh_store *st, uv_loop_t *loop);
void wh_store_detach(wh_store *st);

/* Bytes the blobs (and manifests) take on disk, each file counted once
 * however many repositories link it; -1 until a scan counted them (the GC
 * does, at start and every sweep). Temp files and upload sessions are not
 * counted. Kept up to date by every operation from then on. */
int64_t wh_store_usage(const wh_store *st);

/* fn(arg) is called on the loop after an operation added bytes (a fill, a
 * push), or a fill claimed room (below): the cache budget checks itself
 * there. */
void wh_store_on_grow(wh_store *st, void (*fn)(void *arg), void *arg);

/* Bytes claimed by fills in flight: a fill that reserved room for its blob
 * in a temp file claims its size (delta > 0) until it ends, and gives the
 * claim back (delta < 0) before its blob is published (the usage counts it
 * from then on) or when it fails. The cache budget counts them with the
 * usage, so that room is made while a blob is fetched, not only once it is
 * stored. Loop thread only. */
void wh_store_pending_add(wh_store *st, int64_t delta);
int64_t wh_store_pending(const wh_store *st);

/* ---- changes, for what is kept beside the store ----
 *
 * A module that keeps something derived from the manifests (the search
 * index) is told of every change of them, on the loop, once the store's
 * own memory caught up and before the operation's callback: a client
 * answered from that callback finds its push (or delete) already seen.
 * Listeners must not call the store's changes from here; reads are fine. */
typedef enum wh_store_change_kind {
	/* A manifest was stored (pushed, or filled by the cache: cached), and
	 * tag, when not NULL, points at it now. data/len are its bytes and
	 * media_type the type it was stored with (may be NULL). */
	WH_STORE_MANIFEST_PUT,
	/* By tag (tag set, digest NULL): the tag is gone, the manifest stays.
	 * By digest (digest set, tag NULL): the manifest and every tag on it. */
	WH_STORE_MANIFEST_DELETE,
	/* repo's index.json was rewritten otherwise (a GC sweep, retention, an
	 * eviction: tags and manifests removed): read it again. */
	WH_STORE_REPO_CHANGED,
	/* repo is gone (an empty repository the GC removed). */
	WH_STORE_REPO_REMOVED,
	/* A client pulled manifest digest of repo (wh_store_note_pull). */
	WH_STORE_PULLED,
	/* repo holds blob digest now (an upload finished, a blob published or
	 * mounted; perhaps one it held already). A manifest the cache stored
	 * before its config finds the config here. */
	WH_STORE_BLOB_ADDED,
} wh_store_change_kind;

typedef struct wh_store_change {
	wh_store_change_kind kind;
	const char *repo;
	const char *tag;
	const char *digest;
	const char *media_type;
	const char *data;
	size_t len;
	bool cached;
} wh_store_change;

typedef void (*wh_store_change_fn)(void *arg, const wh_store_change *ch);

/* Listeners are called in the order they were added; at most this many. */
#define WH_STORE_LISTENERS_MAX 4

/* Add a listener: 0, or WH_ETOOBIG when there are WH_STORE_LISTENERS_MAX
 * already. wh_store_off_change removes it (the same fn and arg), before
 * what arg points to goes: operations still in the thread pool complete
 * on the loop later and would call it. */
int wh_store_on_change(wh_store *st, wh_store_change_fn fn, void *arg);
void wh_store_off_change(wh_store *st, wh_store_change_fn fn, void *arg);

/* ---- reading a repository off the loop ----
 *
 * What a thread of the pool may read (a start-up scan): the filesystem
 * only, none of the loop's caches; files are replaced by renames, so no
 * lock is needed. */

/* One entry of repo's index.json. */
typedef struct wh_store_entry {
	char digest[WH_DIGEST_LEN + 1];
	char *tag;        /* its ref.name annotation, or NULL */
	char *media_type; /* the entry's, or NULL */
} wh_store_entry;

/* repo's entries, in index.json's order; entries without a valid digest are
 * left out. *out is malloc'd (free with wh_store_entries_free). 0,
 * WH_ENOTFOUND when repo has no index.json, WH_EIO when it cannot be read. */
int wh_store_entries_read(const wh_store *st, const char *repo, wh_store_entry **out, int *n);
void wh_store_entries_free(wh_store_entry *v, int n);

/* The bytes of a blob (or manifest) of repo, at most max of them: *data is
 * malloc'd and NUL-terminated. 0, WH_ENOTFOUND, WH_ETOOBIG, -errno. */
int wh_store_blob_read(const wh_store *st, const char *repo, const char *digest, size_t max,
                       char **data, size_t *len);

void wh_strv_free(char **v, int n);

#endif
