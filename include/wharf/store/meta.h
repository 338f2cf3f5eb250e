/* What the store remembers about its manifests beyond their bytes: when each
 * was pushed and last pulled, and whether a user pushed it or the cache
 * stored it from an upstream. Retention (pulledWithin, mostRecently*Count,
 * keepUntagged) and the cache budget (least recently pulled first, pushed
 * content never) decide from it.
 *
 * It is not a database. The whole table lives in memory, one entry per
 * (repository, manifest digest), and every change is a line appended to
 * <root>/.wharf/meta.log:
 *
 *   <kind> <ms> <repo> <digest> <check>\n
 *
 * kind is U (pushed by a user), C (stored by the cache), L (pulled), D
 * (deleted); ms the wall-clock time in milliseconds; check eight hex digits
 * of FNV-1a over what precedes it on the line. Loading replays the lines;
 * one that does not parse or check (a torn write, a flipped bit) is skipped,
 * and a torn last line is cut off, so a damaged log loses at most what it
 * damaged: a manifest without a record is "unknown", which retention keeps
 * and the budget never evicts. When the log has grown to several times what
 * the table needs, it is rewritten (temp file, fsync, rename).
 *
 * The hot path costs no I/O and no fsync: a pull changes memory; the lines
 * wait in a buffer that a timer appends every second, in libuv's thread
 * pool, without fsync (losing the last second of pull times in a crash is
 * harmless). A pull is written only when it moves the recorded time by a
 * minute or more, so an image pulled a thousand times a minute costs one
 * line a minute. Without a loop (tools, tests), lines are written by
 * wh_meta_flush and wh_meta_close. Loop thread only, but wh_meta_get. */
#ifndef WHARF_META_H
#define WHARF_META_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

typedef struct wh_meta wh_meta;

enum {
	WH_META_PUSHED = 1 << 0, /* a user pushed it: never evicted */
	WH_META_CACHED = 1 << 1, /* the cache stored it from an upstream */
};

typedef struct wh_meta_stats {
	int64_t pushed_ms; /* stored (pushed or filled), ms since the epoch */
	int64_t pulled_ms; /* last pulled, 0: never */
	unsigned flags;    /* WH_META_* */
} wh_meta_stats;

/* A pull is written to the log only when it is this much newer than the
 * one written before. */
#define WH_META_PULL_GRAIN_MS (60 * 1000)

/* Load the log at path (creating it if absent): never fails for a damaged
 * log, only when the file cannot be opened (-errno). */
int wh_meta_open(const char *path, wh_meta **out);

/* From now on, lines are appended by a timer on loop, in the thread pool.
 * wh_meta_detach stops the timer (its handle closes with the loop's next
 * turn) and leaves the remaining lines to wh_meta_close. */
void wh_meta_attach(wh_meta *m, uv_loop_t *loop);
void wh_meta_detach(wh_meta *m);

/* Write what is pending, here and now (no fsync). */
void wh_meta_flush(wh_meta *m);

/* Flush and free. Call after the loop stopped (every write it queued done). */
void wh_meta_close(wh_meta *m);

/* A manifest was stored in repo at now_ms: by a user (cached false), or by
 * the cache. Once pushed by a user, always pushed. */
void wh_meta_stored(wh_meta *m, const char *repo, const char *digest, bool cached, int64_t now_ms);

/* A manifest was pulled (GET) at now_ms. Unknown manifests get an entry
 * that is neither pushed nor cached. */
void wh_meta_pulled(wh_meta *m, const char *repo, const char *digest, int64_t now_ms);

/* A manifest left repo. */
void wh_meta_forget(wh_meta *m, const char *repo, const char *digest);

/* Its record, or false when there is none. The one call safe on any thread
 * (the scrubber asks from its own). */
bool wh_meta_get(wh_meta *m, const char *repo, const char *digest, wh_meta_stats *out);

/* Each entry, in no order; fn must not change m. Returns early when fn
 * returns false. */
void wh_meta_each(const wh_meta *m,
                  bool (*fn)(void *arg, const char *repo, const char *digest,
                             const wh_meta_stats *st),
                  void *arg);

/* Entries, and bytes written to the log since it was opened (for the
 * benchmark: the metadata's I/O per pull). */
int wh_meta_count(const wh_meta *m);
uint64_t wh_meta_bytes_written(const wh_meta *m);

/* Wall-clock time, ms since the epoch. */
int64_t wh_wall_ms(void);

#endif
