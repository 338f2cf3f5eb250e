/* Pull and push times of manifests: a table in memory, a log on disk. See
 * include/wharf/store/meta.h. */
#include "wharf/store/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/ref.h"

/* The log is read whole at start: a table of a million manifests is about
 * 120 MiB of lines, more than any root this is meant for. */
#define LOG_MAX ((size_t)256 << 20)
/* A line: kind, time, name, digest, check, separators. */
#define LINE_MAX_LEN (2 + 20 + 1 + WH_NAME_MAX + 1 + WH_DIGEST_LEN + 1 + 8 + 1)
/* Rewrite the log when it holds this many times the lines the table needs
 * (and at least COMPACT_MIN bytes). */
#define COMPACT_RATIO 4
#define COMPACT_MIN   ((uint64_t)1 << 20)
#define FLUSH_MS      1000

struct entry {
	char *key; /* "repo\0digest", NULL: free slot */
	size_t repo_len;
	uint32_t hash;
	int64_t pushed_ms, pulled_ms;
	int64_t logged_pull_ms; /* the pull time the log has */
	unsigned flags;
};

struct wh_meta {
	char *path; /* opened for each write: the log holds no descriptor */
	/* Held by the loop while it changes the table, and by wh_meta_get on
	 * any other thread (the scrubber asks what the cache stored). */
	uv_mutex_t lock;
	struct entry *tab;
	size_t cap, n; /* cap: a power of two */
	char *pend;    /* lines not written yet */
	size_t pend_len, pend_cap;
	uint64_t log_bytes; /* the log's size, as far as we wrote it */
	uint64_t written;   /* bytes written since open */
	uv_loop_t *loop;
	uv_timer_t *timer; /* NULL when not attached */
	/* One write (or rewrite) at a time in the pool. */
	bool busy;
	bool closing;
};

int64_t wh_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t fnv1a(const void *data, size_t n, uint32_t h)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}
#define FNV_SEED 2166136261u

static uint32_t key_hash(const char *repo, size_t rlen, const char *digest)
{
	uint32_t h = fnv1a(repo, rlen, FNV_SEED);
	h = fnv1a("", 1, h);
	return fnv1a(digest, strlen(digest), h);
}

/* ---- the table: open addressing, linear probing ---- */

static struct entry *find(const wh_meta *m, const char *repo, const char *digest, uint32_t h)
{
	size_t rlen = strlen(repo);
	if (!m->cap)
		return NULL;
	for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		struct entry *e = &m->tab[i];
		if (!e->key)
			return NULL;
		if (e->hash == h && e->repo_len == rlen && memcmp(e->key, repo, rlen) == 0 &&
		    strcmp(e->key + rlen + 1, digest) == 0)
			return e;
	}
}

static void place(struct entry *tab, size_t cap, const struct entry *e)
{
	size_t i = e->hash & (cap - 1);
	while (tab[i].key)
		i = (i + 1) & (cap - 1);
	tab[i] = *e;
}

static void grow(wh_meta *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct entry *tab = wh_calloc(cap, sizeof(*tab));
	for (size_t i = 0; i < m->cap; i++)
		if (m->tab[i].key)
			place(tab, cap, &m->tab[i]);
	free(m->tab);
	m->tab = tab;
	m->cap = cap;
}

static struct entry *get_or_add(wh_meta *m, const char *repo, const char *digest)
{
	uint32_t h = key_hash(repo, strlen(repo), digest);
	struct entry *e = find(m, repo, digest, h);
	if (e)
		return e;
	if ((m->n + 1) * 4 > m->cap * 3)
		grow(m);
	struct entry ne = {0};
	size_t rlen = strlen(repo), dlen = strlen(digest);
	ne.key = wh_malloc(rlen + 1 + dlen + 1);
	memcpy(ne.key, repo, rlen + 1);
	memcpy(ne.key + rlen + 1, digest, dlen + 1);
	ne.repo_len = rlen;
	ne.hash = h;
	place(m->tab, m->cap, &ne);
	m->n++;
	return find(m, repo, digest, h);
}

/* Remove e, shifting the entries after it back so no probe chain breaks. */
static void remove_entry(wh_meta *m, struct entry *e)
{
	size_t mask = m->cap - 1, i = (size_t)(e - m->tab);
	free(e->key);
	m->tab[i].key = NULL;
	m->n--;
	for (size_t j = (i + 1) & mask; m->tab[j].key; j = (j + 1) & mask) {
		size_t home = m->tab[j].hash & mask;
		/* j's entry may move to i when i lies on its probe path. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->tab[i] = m->tab[j];
			m->tab[j].key = NULL;
			i = j;
		}
	}
}

/* ---- lines ---- */

static void append_line(wh_meta *m, char kind, int64_t ms, const char *repo, size_t rlen,
                        const char *digest)
{
	char line[LINE_MAX_LEN + 16];
	int n = snprintf(line, sizeof(line), "%c %" PRId64 " %.*s %s", kind, ms, (int)rlen, repo,
	                 digest);
	if (n < 0 || (size_t)n + 10 >= sizeof(line))
		return; /* names and digests were validated: cannot happen */
	uint32_t c = fnv1a(line, (size_t)n, FNV_SEED);
	n += snprintf(line + n, sizeof(line) - (size_t)n, " %08" PRIx32 "\n", c);
	wh_buf_append(&m->pend, &m->pend_len, &m->pend_cap, line, (size_t)n);
}

/* Apply one line of the log; false when it does not parse or check. */
static bool replay(wh_meta *m, char *line, size_t len)
{
	if (len < 12 || line[1] != ' ')
		return false;
	char *sp = memrchr(line, ' ', len);
	if (!sp || line + len - sp != 9)
		return false;
	char *end;
	unsigned long c = strtoul(sp + 1, &end, 16);
	if (end != line + len || (uint32_t)c != fnv1a(line, (size_t)(sp - line), FNV_SEED))
		return false;
	*sp = '\0';
	char kind = line[0];
	errno = 0;
	long long ms = strtoll(line + 2, &end, 10);
	if (errno || *end != ' ' || ms < 0)
		return false;
	char *repo = end + 1;
	char *digest = strchr(repo, ' ');
	if (!digest)
		return false;
	*digest++ = '\0';
	if (!wh_name_valid(repo, strlen(repo)) ||
	    wh_digest_check(digest, strlen(digest)) != WH_DIGEST_OK)
		return false;
	struct entry *e;
	switch (kind) {
	case 'U':
	case 'C':
		e = get_or_add(m, repo, digest);
		e->pushed_ms = ms;
		e->flags |= kind == 'U' ? WH_META_PUSHED : WH_META_CACHED;
		break;
	case 'L':
		e = get_or_add(m, repo, digest);
		e->pulled_ms = e->logged_pull_ms = ms;
		break;
	case 'D':
		e = find(m, repo, digest, key_hash(repo, strlen(repo), digest));
		if (e)
			remove_entry(m, e);
		break;
	default:
		return false;
	}
	return true;
}

/* The table as lines: what a rewritten log holds. */
static void snapshot(wh_meta *m, char **buf, size_t *len)
{
	char *save = m->pend;
	size_t save_len = m->pend_len, save_cap = m->pend_cap;

	m->pend = NULL;
	m->pend_len = m->pend_cap = 0;
	for (size_t i = 0; i < m->cap; i++) {
		struct entry *e = &m->tab[i];
		if (!e->key)
			continue;
		const char *digest = e->key + e->repo_len + 1;
		if (e->flags & WH_META_CACHED)
			append_line(m, 'C', e->pushed_ms, e->key, e->repo_len, digest);
		if (e->flags & WH_META_PUSHED)
			append_line(m, 'U', e->pushed_ms, e->key, e->repo_len, digest);
		if (e->pulled_ms) {
			append_line(m, 'L', e->pulled_ms, e->key, e->repo_len, digest);
			e->logged_pull_ms = e->pulled_ms;
		}
		/* Known but neither pushed nor cached nor pulled: nothing to keep. */
	}
	*buf = m->pend;
	*len = m->pend_len;
	m->pend = save;
	m->pend_len = save_len;
	m->pend_cap = save_cap;
}

static int write_fd(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Append buf to the log; any thread. */
static int append(const char *path, const char *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = write_fd(fd, buf, len);
	close(fd);
	return rc;
}

/* Replace the log by buf (temp file, fsync, rename, fsync of the directory);
 * any thread. */
static int rewrite(const char *path, const char *buf, size_t len)
{
	char tmp[4096], dir[4096];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rc = write_fd(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		int d = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (d >= 0) {
			fsync(d);
			close(d);
		}
	}
	return 0;
}

static bool bloated(const wh_meta *m)
{
	uint64_t need = (uint64_t)m->n * 120;
	return m->log_bytes > COMPACT_MIN && m->log_bytes > COMPACT_RATIO * need;
}

int wh_meta_open(const char *path, wh_meta **out)
{
	wh_meta *m = wh_calloc(1, sizeof(*m));
	char *text = NULL;
	size_t len = 0;
	int fd, rc;

	*out = NULL;
	m->path = wh_strdup(path);
	uv_mutex_init(&m->lock);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = wh_read_fd(fd, LOG_MAX, &text, &len);
	if (rc < 0) {
		/* Too big to be ours, or unreadable: start over. */
		wh_log(WH_LOG_WARN, "cannot read the metadata log: starting an empty one", "path",
		       WH_LS, path, "error", WH_LS, wh_strerror(rc), NULL);
		len = 0;
	}
	long bad = 0;
	size_t good_end = 0;
	for (size_t at = 0; at < len;) {
		char *nl = memchr(text + at, '\n', len - at);
		if (!nl)
			break; /* a torn last line */
		size_t n = (size_t)(nl - (text + at));
		if (!replay(m, text + at, n))
			bad++;
		at += n + 1;
		good_end = at;
	}
	/* Cut a torn last line (or all of an unreadable log) so the next
	 * line appended starts a line of its own. */
	if ((good_end < len || rc < 0) && ftruncate(fd, (off_t)good_end) < 0) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	close(fd);
	m->log_bytes = good_end;
	if (bad > 0)
		wh_log(WH_LOG_WARN, "skipped damaged lines of the metadata log", "path", WH_LS,
		       path, "lines", WH_LI, (long long)bad, NULL);
	free(text);
	text = NULL;
	if (bloated(m) || bad > 0) {
		char *buf;
		size_t blen;
		snapshot(m, &buf, &blen);
		if (rewrite(path, buf ? buf : "", blen) == 0)
			m->log_bytes = blen;
		free(buf);
	}
	*out = m;
	return 0;
fail:
	free(text);
	wh_log(WH_LOG_ERROR, "cannot open the metadata log", "path", WH_LS, path, "error", WH_LS,
	       wh_strerror(rc), NULL);
	wh_meta_close(m);
	return rc;
}

/* ---- writing, batched ---- */

struct job {
	uv_work_t work;
	wh_meta *m;
	char *buf;
	size_t len;
	bool rewrite; /* buf is the whole log */
	int rc;
};

static void job_run(uv_work_t *w)
{
	struct job *j = w->data;
	j->rc =
	    j->rewrite ? rewrite(j->m->path, j->buf, j->len) : append(j->m->path, j->buf, j->len);
}

static void job_done(uv_work_t *w, int status)
{
	struct job *j = w->data;
	wh_meta *m = j->m;
	(void)status;
	m->busy = false;
	if (j->rc < 0) {
		wh_log(WH_LOG_WARN, "cannot write the metadata log", "path", WH_LS, m->path,
		       "error", WH_LS, wh_strerror(j->rc), NULL);
	} else if (j->rewrite) {
		m->log_bytes = j->len;
	} else {
		m->log_bytes += j->len;
	}
	m->written += j->len;
	free(j->buf);
	free(j);
	if (m->closing)
		wh_meta_close(m);
}

static void kick(wh_meta *m)
{
	if (m->busy || !m->loop || (!m->pend_len && !bloated(m)))
		return;
	struct job *j = wh_calloc(1, sizeof(*j));
	j->m = m;
	j->work.data = j;
	if (bloated(m)) {
		/* The table as it is now replaces the log and what is pending. */
		j->rewrite = true;
		snapshot(m, &j->buf, &j->len);
		m->pend_len = 0;
	} else {
		j->buf = m->pend;
		j->len = m->pend_len;
		m->pend = NULL;
		m->pend_len = m->pend_cap = 0;
	}
	if (uv_queue_work(m->loop, &j->work, job_run, job_done) < 0) {
		job_run(&j->work);
		m->busy = true;
		job_done(&j->work, 0);
		return;
	}
	m->busy = true;
}

static void on_timer(uv_timer_t *t)
{
	kick(t->data);
}

void wh_meta_attach(wh_meta *m, uv_loop_t *loop)
{
	m->loop = loop;
	m->timer = wh_malloc(sizeof(*m->timer));
	uv_timer_init(loop, m->timer);
	m->timer->data = m;
	uv_timer_start(m->timer, on_timer, FLUSH_MS, FLUSH_MS);
	uv_unref((uv_handle_t *)m->timer); /* never what keeps the loop running */
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

void wh_meta_detach(wh_meta *m)
{
	if (!m || !m->timer)
		return;
	uv_close((uv_handle_t *)m->timer, timer_closed);
	m->timer = NULL;
	m->loop = NULL;
}

void wh_meta_flush(wh_meta *m)
{
	if (m->busy || !m->pend_len)
		return;
	int rc = append(m->path, m->pend, m->pend_len);
	if (rc < 0)
		wh_log(WH_LOG_WARN, "cannot write the metadata log", "path", WH_LS, m->path,
		       "error", WH_LS, wh_strerror(rc), NULL);
	else
		m->log_bytes += m->pend_len;
	m->written += m->pend_len;
	m->pend_len = 0;
}

void wh_meta_close(wh_meta *m)
{
	if (!m)
		return;
	if (m->busy) {
		/* A write is out: its completion closes us. */
		m->closing = true;
		return;
	}
	wh_meta_detach(m);
	wh_meta_flush(m);
	for (size_t i = 0; i < m->cap; i++)
		free(m->tab[i].key);
	free(m->tab);
	free(m->pend);
	free(m->path);
	uv_mutex_destroy(&m->lock);
	free(m);
}

/* ---- changes ---- */

void wh_meta_stored(wh_meta *m, const char *repo, const char *digest, bool cached, int64_t now_ms)
{
	uv_mutex_lock(&m->lock);
	struct entry *e = get_or_add(m, repo, digest);
	unsigned flag = cached ? WH_META_CACHED : WH_META_PUSHED;
	/* A cache fill of what a user pushed changes nothing. */
	bool change = !(cached && (e->flags & WH_META_PUSHED));
	if (change) {
		e->pushed_ms = now_ms;
		e->flags |= flag;
	}
	uv_mutex_unlock(&m->lock);
	if (!change)
		return;
	append_line(m, cached ? 'C' : 'U', now_ms, repo, strlen(repo), digest);
	kick(m);
}

void wh_meta_pulled(wh_meta *m, const char *repo, const char *digest, int64_t now_ms)
{
	uv_mutex_lock(&m->lock);
	struct entry *e = get_or_add(m, repo, digest);
	bool log = false;
	if (now_ms > e->pulled_ms) {
		e->pulled_ms = now_ms;
		if (now_ms - e->logged_pull_ms >= WH_META_PULL_GRAIN_MS) {
			e->logged_pull_ms = now_ms;
			log = true;
		}
	}
	uv_mutex_unlock(&m->lock);
	if (log)
		append_line(m, 'L', now_ms, repo, strlen(repo), digest);
}

void wh_meta_forget(wh_meta *m, const char *repo, const char *digest)
{
	uv_mutex_lock(&m->lock);
	struct entry *e = find(m, repo, digest, key_hash(repo, strlen(repo), digest));
	if (e)
		remove_entry(m, e);
	uv_mutex_unlock(&m->lock);
	if (e)
		append_line(m, 'D', wh_wall_ms(), repo, strlen(repo), digest);
}

bool wh_meta_get(wh_meta *m, const char *repo, const char *digest, wh_meta_stats *out)
{
	uv_mutex_lock(&m->lock);
	const struct entry *e = find(m, repo, digest, key_hash(repo, strlen(repo), digest));
	if (e) {
		out->pushed_ms = e->pushed_ms;
		out->pulled_ms = e->pulled_ms;
		out->flags = e->flags;
	}
	uv_mutex_unlock(&m->lock);
	return e != NULL;
}

void wh_meta_each(const wh_meta *m,
                  bool (*fn)(void *arg, const char *repo, const char *digest,
                             const wh_meta_stats *st),
                  void *arg)
{
	char repo[WH_NAME_MAX + 1];
	for (size_t i = 0; i < m->cap; i++) {
		const struct entry *e = &m->tab[i];
		if (!e->key)
			continue;
		wh_meta_stats st = {e->pushed_ms, e->pulled_ms, e->flags};
		memcpy(repo, e->key, e->repo_len + 1);
		if (!fn(arg, repo, e->key + e->repo_len + 1, &st))
			return;
	}
}

int wh_meta_count(const wh_meta *m)
{
	return (int)m->n;
}

uint64_t wh_meta_bytes_written(const wh_meta *m)
{
	return m->written + m->pend_len;
}
