/* The store: blobs, manifests and tags on the local filesystem, in Zot's
 * layout (see store.h). What is kept in memory (the table of upload
 * sessions, the catalog, the parsed index.json and manifest caches) is a
 * cache of what is on disk, and is touched on the loop thread only. The
 * changes of the root are operations (below: "operations that change the
 * store") whose blocking part may run in libuv's thread pool; that part
 * touches the filesystem and its own operation, nothing else of the store
 * but the read-only root and dedupe, and st->lock. It may log: wh_log
 * writes each line with one write(2) from a buffer on the stack. */
#include "wharf/store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/oci/manifest.h"
#include "wharf/store/meta.h"

#include "internal.h"

#define ANN_REF_NAME "org.opencontainers.image.ref.name"

#define OCI_LAYOUT  "{\"imageLayoutVersion\":\"1.0.0\"}"
#define EMPTY_INDEX "{\"schemaVersion\":2,\"mediaType\":\"" WH_MT_OCI_INDEX "\",\"manifests\":[]}"

/* index.json and manifests larger than this are refused rather than read
 * into memory: nothing legitimate comes close. */
#define JSON_MAX ((size_t)64 << 20)
#define COPY_BUF ((size_t)1 << 20)

/* Random bytes in a temp file's name (hex: twice as many characters). */
#define TMP_NAME_BYTES 16
/* A boot id: the 32 hex digits of /proc/sys/kernel/random/boot_id. */
#define BOOT_ID_BYTES 16
/* Times a random name is drawn again when it is taken (a temp file, a
 * session): with 122 random bits, more than once means something is wrong. */
#define NAME_ATTEMPTS 8

/* An upload session in memory. Its hash state is what makes it cheap: it
 * never has to read its bytes back. It goes to disk beside them when the
 * session leaves memory (eviction, close) and comes back from there. */
struct wh_upload {
	wh_store *st;
	wh_list link; /* in st->lru (most recently used first) or st->pinned */
	char *repo;
	char id[WH_UUID_LEN + 1];
	int fd;         /* -1 once a finish took it */
	int pins;       /* users that keep the pointer: never evicted while > 0 */
	int jobs;       /* catch-up jobs out (each holds a pin) */
	bool finishing; /* a finish operation owns it (and holds a pin) */
	/* Last got, written, pinned or unpinned: when (wh_now_ms) and in what
	 * order (st->touches then), for a sweep to spare what is in use. */
	uint64_t touched_ms, touched_seq;
	int64_t size;       /* bytes in the data file */
	int64_t hashed;     /* hash covers the first hashed bytes; < size: behind */
	int64_t saved;      /* bytes the hash file on disk covers; -1: none known */
	wh_digest_ctx hash; /* its algorithm: sha256 unless the client named another */
};

/* Reading index.json and a manifest from disk and parsing the index for
 * every manifest request would make a tag lookup cost an open, a read and a
 * JSON parse. The store keeps the parsed index of the repositories in use,
 * checked against index.json's inode, size and mtime with one stat(2) (so a
 * file replaced behind our back is read again), and the bytes of small
 * manifests by digest (content-addressed: never stale). Both are bounded. */
#define INDEX_CACHE          64            /* repositories */
#define MANIFEST_CACHE_BYTES (1024 * 1024) /* all cached manifest bytes */
#define MANIFEST_CACHE_ITEM  (64 * 1024)   /* larger manifests are read each time */
#define MANIFEST_CACHE_N     256

struct index_slot {
	char *repo; /* NULL: empty */
	cJSON *idx;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	uint64_t used; /* LRU tick */
};

struct manifest_slot {
	char digest[WH_DIGEST_LEN + 1]; /* "": empty */
	char *data;
	size_t len;
	uint64_t used;
};

/* Where a blob was last published or mounted, for a mount that names no
 * repository to take it from: a direct-mapped table of the digest's hash
 * and the repository, checked with a stat before it is believed. */
#define BLOB_HINTS 1024
/* Repositories a mount without `from` may stat when no hint helps, and
 * catalog entries it may look at (access checks are cheap, not free). */
#define FIND_STATS_MAX 256
#define FIND_NAMES_MAX 4096

struct blob_hint {
	uint64_t key; /* FNV-1a of the digest; 0: empty */
	char *repo;
};

struct wh_store {
	char *root;
	bool dedupe;
	struct blob_hint hints[BLOB_HINTS];
	wh_list lru;                       /* sessions nobody pinned: evicted from the tail */
	wh_list pinned;                    /* sessions in use: never evicted */
	int n_uploads;                     /* in both lists */
	wh_list sweeps;                    /* sweeps removing sessions: gone to lookups */
	uint64_t touches;                  /* sessions touched, ever (upload_touched) */
	unsigned char boot[BOOT_ID_BYTES]; /* this boot's id: saved hash states name it */
	/* Held by whoever changes what the root holds (see "operations"). */
	uv_mutex_t lock;
	int ops; /* operations in the thread pool */
	/* The catalog: every repository's name, in lexical order, unique. */
	char **repos;
	int n_repos, cap_repos;
	bool repos_loaded; /* a scan of the root was merged in */
	uint64_t tick;
	struct index_slot index_cache[INDEX_CACHE];
	struct manifest_slot manifest_cache[MANIFEST_CACHE_N];
	size_t manifest_cache_bytes;
	wh_meta *meta; /* pull and push times (meta.h) */
	/* Bytes the blobs take, each file once: -1 until a scan said (gc.c),
	 * then kept up to date by every operation. */
	int64_t usage;
	int64_t pending;            /* claimed by fills in flight (store.h) */
	void (*on_grow)(void *arg); /* after an operation added bytes */
	void *on_grow_arg;
	/* Told of every change of the manifests (wh_store_on_change). */
	struct listener {
		wh_store_change_fn fn;
		void *arg;
	} listeners[WH_STORE_LISTENERS_MAX];
	int n_listeners;
};

/* ---- small helpers ---- */

__attribute__((format(printf, 3, 4))) static int path_fmt(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= n)
		return -ENAMETOOLONG;
	return 0;
}

static bool repo_ok(const char *repo)
{
	return repo && wh_name_valid(repo, strlen(repo));
}

static bool digest_ok(const char *digest)
{
	return digest && wh_digest_check(digest, strlen(digest)) == WH_DIGEST_OK;
}

/* A full disk is the caller's to report, once, with what it was doing for
 * whom (a request, a fetch: wh_err_disk_full); the store's own line about
 * it is a detail, for debugging. Every other failure is an error here. */
static int err_level(int err)
{
	return wh_err_disk_full(err) ? WH_LOG_DEBUG : WH_LOG_ERROR;
}

static void log_err(const char *message, const char *path, int err)
{
	wh_log(err_level(err), message, "path", WH_LS, path, "error", WH_LS, wh_strerror(err),
	       NULL);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	size_t got = 0;
	int rc = 0, fd = -1;

	while (got < n) {
		ssize_t r = getrandom(p + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != ENOSYS) {
				rc = -errno;
				goto out;
			}
			break;
		}
		got += (size_t)r;
	}
	if (got < n) {
		fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		while (got < n) {
			ssize_t r = read(fd, p + got, n - got);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				rc = r < 0 ? -errno : -EIO;
				goto out;
			}
			got += (size_t)r;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* This boot's id, so that a hash state saved before a reboot is not
 * trusted. Without /proc, a random one: states then serve within this
 * process only. */
static void read_boot_id(unsigned char out[BOOT_ID_BYTES])
{
	char text[64]; /* a UUID and a newline */
	ssize_t n = -1;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	size_t k = 0;

	if (fd >= 0) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
	}
	for (ssize_t i = 0; i < n && k < 2 * BOOT_ID_BYTES; i++) {
		int v = text[i] >= '0' && text[i] <= '9'   ? text[i] - '0'
		        : text[i] >= 'a' && text[i] <= 'f' ? text[i] - 'a' + 10
		                                           : -1;
		if (v < 0)
			continue;
		out[k / 2] = (unsigned char)(k % 2 ? out[k / 2] | v : v << 4);
		k++;
	}
	/* Without one, every saved state is used only by this store. */
	if (k < 2 * BOOT_ID_BYTES && random_bytes(out, BOOT_ID_BYTES) < 0)
		memset(out, 0, BOOT_ID_BYTES);
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Open a regular file: the fd, or WH_ENOTFOUND when there is none (or it is
 * not a regular file), or -errno. sb receives its stat. */
static int open_regular(const char *path, int flags, struct stat *sb)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) ? WH_ENOTFOUND
		                                                               : -errno;
	if (fstat(fd, sb) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(sb->st_mode)) {
		close(fd);
		return WH_ENOTFOUND;
	}
	return fd;
}

/* Read a whole file (at most max bytes) into a NUL-terminated malloc'd buffer. */
static int read_file(const char *path, size_t max, char **buf, size_t *len)
{
	struct stat sb;
	int fd, rc;

	*buf = NULL;
	*len = 0;
	fd = open_regular(path, O_RDONLY, &sb);
	if (fd < 0)
		return fd;
	rc = wh_read_fd(fd, max, buf, len);
	close(fd);
	return rc;
}

static int fsync_dir(const char *path)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* fsync the file at path (through a descriptor of our own). */
static int fsync_path(const char *path)
{
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* fsync the directory that holds path, so a rename/link/unlink in it lasts. */
static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n;

	if (!slash)
		return fsync_dir(".");
	n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, n);
	dir[n] = '\0';
	return fsync_dir(dir);
}

/* mkdir -p, fsyncing the parent of every directory it creates. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	struct stat sb;
	size_t len = strlen(path);
	int rc = 0;

	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 0;
	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		if (buf[i - 1] == '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) == 0) {
			rc = fsync_parent(buf);
			if (rc < 0)
				break;
		} else if (errno != EEXIST) {
			rc = -errno;
			break;
		}
		if (i < len)
			buf[i] = '/';
	}
	return rc;
}

/* The slow path for placing a file where link/rename cannot (another
 * filesystem, a filesystem without hard links, too many links): copy into a
 * temp file beside dst, fsync, rename. */
static int copy_file_atomic(const char *src, const char *dst)
{
	char tmp[PATH_MAX], hex[2 * TMP_NAME_BYTES + 1];
	unsigned char rnd[TMP_NAME_BYTES];
	const char *slash = strrchr(dst, '/');
	char *buf = NULL;
	int in = -1, out = -1, rc;
	bool created = false;

	rc = random_bytes(rnd, sizeof(rnd));
	if (rc < 0)
		goto out;
	hex_encode(rnd, sizeof(rnd), hex);
	rc = path_fmt(tmp, sizeof(tmp), "%.*s/.wharf-tmp-%s", slash ? (int)(slash - dst) : 1,
	              slash ? dst : ".", hex);
	if (rc < 0)
		goto out;
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = -errno;
		goto out;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = -errno;
		goto out;
	}
	created = true;
	buf = wh_malloc(COPY_BUF);
	for (;;) {
		ssize_t n = read(in, buf, COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		rc = write_all(out, buf, (size_t)n);
		if (rc < 0)
			goto out;
	}
	if (fsync(out) < 0) {
		rc = -errno;
		goto out;
	}
	rc = close(out) < 0 ? -errno : 0;
	out = -1;
	if (rc < 0)
		goto out;
	if (rename(tmp, dst) < 0) {
		rc = -errno;
		goto out;
	}
	created = false;
	rc = fsync_parent(dst);
out:
	free(buf);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (created)
		unlink(tmp);
	return rc;
}

/* Put src at dst: hard link (src stays) or rename (src goes), falling back
 * to a copy when the filesystem refuses. An existing dst is success: content
 * is addressed by digest, so it is the same bytes. */
static int place_file(const char *src, const char *dst, bool keep_src)
{
	int rc = 0;

	if (keep_src) {
		struct stat sb;

		if (link(src, dst) == 0) {
			rc = 0;
		} else if (errno == EEXIST) {
			/* Same bytes if it is a file; a directory there (a repository
			 * named <repo>/blobs/sha256/<hex>) is not the blob. */
			if (lstat(dst, &sb) != 0 || !S_ISREG(sb.st_mode)) {
				rc = -EEXIST;
				goto out;
			}
			rc = 0;
		} else if (errno == EXDEV || errno == EMLINK || errno == EPERM ||
		           errno == ENOTSUP || errno == EOPNOTSUPP) {
			rc = copy_file_atomic(src, dst);
			goto out;
		} else {
			rc = -errno;
			goto out;
		}
	} else {
		if (rename(src, dst) == 0) {
			rc = 0;
		} else if (errno == EXDEV) {
			rc = copy_file_atomic(src, dst);
			if (rc == 0)
				unlink(src);
			goto out;
		} else {
			rc = -errno;
			goto out;
		}
	}
	rc = fsync_parent(dst);
out:
	return rc;
}

static bool file_exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The encoded part of a (checked) "<alg>:<hex>" digest: a blob's file name. */
static const char *digest_hex(const char *digest)
{
	return wh_digest_encoded(digest);
}

/* The directory of the digest's algorithm under blobs/: "sha256", "sha512",
 * as the image layout names them. */
static const char *digest_dir(const char *digest)
{
	return wh_digest_alg_name(wh_digest_alg_of(digest));
}

/* <root>/<repo>/blobs/<alg>/<hex>. A digest that is only "<alg>:" gives
 * the directory with a trailing slash (gc.c lists it so). */
static int blob_path(const wh_store *st, const char *repo, const char *digest, char *buf)
{
	return path_fmt(buf, PATH_MAX, "%s/%s/blobs/%s/%s", st->root, repo, digest_dir(digest),
	                digest_hex(digest));
}

/* <root>/.wharf/blobs/<alg>/<hex>: the shared copy when dedupe is on. */
static int shared_path(const wh_store *st, const char *digest, char *buf)
{
	return path_fmt(buf, PATH_MAX, "%s/.wharf/blobs/%s/%s", st->root, digest_dir(digest),
	                digest_hex(digest));
}

/* Make the directory that holds path (a blob's blobs/<alg>/: repo_init
 * makes blobs/sha256 only, as Zot does; the others come with their first
 * blob). */
static int parent_dir_make(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (n == 0 || n >= sizeof(dir))
		return 0;
	memcpy(dir, path, n);
	dir[n] = '\0';
	return mkdir_p(dir);
}

static int repo_path(const wh_store *st, const char *repo, const char *file, char *buf)
{
	return path_fmt(buf, PATH_MAX, "%s/%s/%s", st->root, repo, file);
}

/* A temp file in .wharf/tmp holding data, fsynced; tmp receives its name
 * (PATH_MAX bytes). Nothing is left behind on error. */
static int write_temp(wh_store *st, const void *data, size_t len, char *tmp)
{
	int fd, rc;

	fd = wh_store_tmp_create(st, tmp, PATH_MAX);
	if (fd < 0)
		return fd;
	rc = write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* Write data to dst atomically: temp file in .wharf/tmp, fsync, rename. */
static int write_atomic(wh_store *st, const char *dst, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	int rc;

	rc = write_temp(st, data, len, tmp);
	if (rc == 0) {
		rc = place_file(tmp, dst, false);
		if (rc < 0)
			unlink(tmp);
	}
	if (rc < 0)
		log_err("cannot write file", dst, rc);
	return rc;
}

/* Make repo an OCI image layout if it is not one yet. index.json is written
 * last: its presence is what makes the directory a repository. *created is
 * set when this made it (the catalog learns it on the loop). With st->lock
 * held. */
static int repo_init(wh_store *st, const char *repo, bool *created)
{
	char path[PATH_MAX];
	int rc;

	rc = repo_path(st, repo, "index.json", path);
	if (rc < 0 || file_exists(path))
		goto out;
	rc = repo_path(st, repo, "blobs/sha256", path);
	if (rc < 0)
		goto out;
	rc = mkdir_p(path);
	if (rc < 0) {
		log_err("cannot create repository", path, rc);
		goto out;
	}
	rc = repo_path(st, repo, "oci-layout", path);
	if (rc < 0)
		goto out;
	if (!file_exists(path)) {
		rc = write_atomic(st, path, OCI_LAYOUT, strlen(OCI_LAYOUT));
		if (rc < 0)
			goto out;
	}
	rc = repo_path(st, repo, "index.json", path);
	if (rc < 0)
		goto out;
	rc = write_atomic(st, path, EMPTY_INDEX, strlen(EMPTY_INDEX));
	if (rc == 0)
		*created = true;
out:
	return rc;
}

/* ---- index.json ---- */

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

static const char *entry_digest(const cJSON *e)
{
	return json_str(e, "digest");
}

static const char *entry_tag(const cJSON *e)
{
	return json_str(cJSON_GetObjectItemCaseSensitive(e, "annotations"), ANN_REF_NAME);
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static cJSON *index_manifests(cJSON *idx)
{
	return cJSON_GetObjectItemCaseSensitive(idx, "manifests");
}

/* The parsed index.json of repo. WH_ENOTFOUND when there is none (the repo
 * does not exist), WH_EIO when it cannot be understood. */
static int index_load(wh_store *st, const char *repo, cJSON **out)
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len;
	cJSON *idx = NULL, *m;
	int rc;

	*out = NULL;
	rc = repo_path(st, repo, "index.json", path);
	if (rc < 0)
		goto out;
	rc = read_file(path, JSON_MAX, &text, &len);
	if (rc < 0) {
		if (rc != WH_ENOTFOUND) {
			log_err("cannot read index.json", path, rc);
			rc = WH_EIO;
		}
		goto out;
	}
	idx = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(idx)) {
		wh_log(WH_LOG_ERROR, "index.json is not a JSON object", "path", WH_LS, path, NULL);
		rc = WH_EIO;
		goto out;
	}
	m = index_manifests(idx);
	if (!m) {
		if (!cJSON_AddArrayToObject(idx, "manifests")) {
			rc = WH_ENOMEM;
			goto out;
		}
	} else if (!cJSON_IsArray(m)) {
		wh_log(WH_LOG_ERROR, "index.json: manifests is not an array", "path", WH_LS, path,
		       NULL);
		rc = WH_EIO;
		goto out;
	}
	*out = idx;
	idx = NULL;
out:
	cJSON_Delete(idx);
	free(text);
	return rc;
}

int wh_store_entries_read(const wh_store *st, const char *repo, wh_store_entry **out, int *n)
{
	cJSON *idx = NULL, *e;
	wh_store_entry *v = NULL;
	int count = 0, cap = 0, rc;

	*out = NULL;
	*n = 0;
	if (!repo_ok(repo))
		return WH_EINVAL;
	/* index_load changes nothing of the store but its log lines. */
	rc = index_load((wh_store *)st, repo, &idx);
	if (rc < 0)
		return rc;
	cJSON_ArrayForEach(e, index_manifests(idx))
	{
		const char *d = entry_digest(e), *tag = entry_tag(e),
		           *mt = json_str(e, "mediaType");
		if (!digest_ok(d))
			continue;
		v = wh_grow(v, sizeof(*v), count, &cap, 16);
		wh_digest_copy(v[count].digest, d);
		v[count].tag = tag ? wh_strdup(tag) : NULL;
		v[count].media_type = mt ? wh_strdup(mt) : NULL;
		count++;
	}
	cJSON_Delete(idx);
	*out = v;
	*n = count;
	return 0;
}

void wh_store_entries_free(wh_store_entry *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].tag);
		free(v[i].media_type);
	}
	free(v);
}

int wh_store_blob_read(const wh_store *st, const char *repo, const char *digest, size_t max,
                       char **data, size_t *len)
{
	char path[PATH_MAX];
	int rc;

	*data = NULL;
	*len = 0;
	if (!repo_ok(repo) || !digest_ok(digest))
		return WH_EINVAL;
	rc = blob_path(st, repo, digest, path);
	return rc < 0 ? rc : read_file(path, max, data, len);
}

static struct index_slot *index_slot_find(wh_store *st, const char *repo)
{
	for (int i = 0; i < INDEX_CACHE; i++)
		if (st->index_cache[i].repo && strcmp(st->index_cache[i].repo, repo) == 0)
			return &st->index_cache[i];
	return NULL;
}

static void index_slot_clear(struct index_slot *s)
{
	free(s->repo);
	cJSON_Delete(s->idx);
	memset(s, 0, sizeof(*s));
}

/* The parsed index.json of repo for reading only: borrowed from the cache,
 * valid until the next store call. Errors as index_load. */
static int index_get(wh_store *st, const char *repo, cJSON **out)
{
	char path[PATH_MAX];
	struct stat sb;
	int rc = repo_path(st, repo, "index.json", path);
	*out = NULL;
	if (rc < 0)
		return rc;
	if (stat(path, &sb) < 0)
		return errno == ENOENT || errno == ENOTDIR ? WH_ENOTFOUND : WH_EIO;
	struct index_slot *s = index_slot_find(st, repo);
	if (s && s->ino == sb.st_ino && s->size == sb.st_size &&
	    s->mtime.tv_sec == sb.st_mtim.tv_sec && s->mtime.tv_nsec == sb.st_mtim.tv_nsec) {
		s->used = ++st->tick;
		*out = s->idx;
		return 0;
	}
	cJSON *idx;
	rc = index_load(st, repo, &idx);
	if (rc < 0)
		return rc;
	if (!s) {
		s = &st->index_cache[0];
		for (int i = 1; i < INDEX_CACHE && s->repo; i++)
			if (!st->index_cache[i].repo || st->index_cache[i].used < s->used)
				s = &st->index_cache[i];
	}
	index_slot_clear(s);
	s->repo = wh_strdup(repo);
	s->idx = idx;
	s->ino = sb.st_ino;
	s->size = sb.st_size;
	s->mtime = sb.st_mtim;
	s->used = ++st->tick;
	*out = idx;
	return 0;
}

/* Manifest bytes by digest, from the cache; NULL when not there. */
static struct manifest_slot *manifest_cached(wh_store *st, const char *digest)
{
	for (int i = 0; i < MANIFEST_CACHE_N; i++) {
		struct manifest_slot *m = &st->manifest_cache[i];
		if (m->digest[0] && strcmp(m->digest, digest) == 0) {
			m->used = ++st->tick;
			return m;
		}
	}
	return NULL;
}

static void manifest_slot_clear(wh_store *st, struct manifest_slot *m)
{
	st->manifest_cache_bytes -= m->len;
	free(m->data);
	memset(m, 0, sizeof(*m));
}

static void manifest_cache_put(wh_store *st, const char *digest, const char *data, size_t len)
{
	if (len > MANIFEST_CACHE_ITEM || manifest_cached(st, digest))
		return;
	for (;;) {
		/* The least recently used slot, or an empty one. */
		struct manifest_slot *victim = &st->manifest_cache[0];
		for (int i = 1; i < MANIFEST_CACHE_N && victim->digest[0]; i++)
			if (!st->manifest_cache[i].digest[0] ||
			    st->manifest_cache[i].used < victim->used)
				victim = &st->manifest_cache[i];
		if (!victim->digest[0] && st->manifest_cache_bytes + len <= MANIFEST_CACHE_BYTES) {
			wh_digest_copy(victim->digest, digest);
			victim->data = wh_malloc(len ? len : 1);
			memcpy(victim->data, data, len);
			victim->len = len;
			victim->used = ++st->tick;
			st->manifest_cache_bytes += len;
			return;
		}
		manifest_slot_clear(st, victim);
	}
}

/* Drop repo's parsed index.json from the cache, after it was replaced. */
static void index_forget(wh_store *st, const char *repo)
{
	struct index_slot *slot = index_slot_find(st, repo);

	if (slot)
		index_slot_clear(slot);
}

/* Write idx as repo's index.json (atomically). Any thread, with st->lock
 * held; the loop then forgets its cached copy (index_forget). */
static int index_write(wh_store *st, const char *repo, cJSON *idx)
{
	char path[PATH_MAX];
	char *text = NULL;
	int rc;

	if (!cJSON_GetObjectItemCaseSensitive(idx, "schemaVersion") &&
	    !cJSON_AddNumberToObject(idx, "schemaVersion", 2)) {
		rc = WH_ENOMEM;
		goto out;
	}
	if (!cJSON_GetObjectItemCaseSensitive(idx, "mediaType") &&
	    !cJSON_AddStringToObject(idx, "mediaType", WH_MT_OCI_INDEX)) {
		rc = WH_ENOMEM;
		goto out;
	}
	rc = repo_path(st, repo, "index.json", path);
	if (rc < 0)
		goto out;
	text = cJSON_PrintUnformatted(idx);
	if (!text) {
		rc = WH_ENOMEM;
		goto out;
	}
	rc = write_atomic(st, path, text, strlen(text));
out:
	cJSON_free(text);
	return rc;
}

static cJSON *find_by_tag(cJSON *arr, const char *tag)
{
	cJSON *e;

	cJSON_ArrayForEach(e, arr)
	{
		if (str_eq(entry_tag(e), tag))
			return e;
	}
	return NULL;
}

static cJSON *find_by_digest(cJSON *arr, const char *digest, bool untagged_only)
{
	cJSON *e;

	cJSON_ArrayForEach(e, arr)
	{
		if (str_eq(entry_digest(e), digest) && (!untagged_only || !entry_tag(e)))
			return e;
	}
	return NULL;
}

static int entry_set_tag(cJSON *e, const char *tag)
{
	cJSON *ann = cJSON_GetObjectItemCaseSensitive(e, "annotations");
	cJSON *val;

	if (!cJSON_IsObject(ann)) {
		cJSON_DeleteItemFromObjectCaseSensitive(e, "annotations");
		ann = cJSON_AddObjectToObject(e, "annotations");
		if (!ann)
			return WH_ENOMEM;
	}
	val = cJSON_CreateString(tag);
	if (!val)
		return WH_ENOMEM;
	if (cJSON_GetObjectItemCaseSensitive(ann, ANN_REF_NAME)
	        ? !cJSON_ReplaceItemInObjectCaseSensitive(ann, ANN_REF_NAME, val)
	        : !cJSON_AddItemToObject(ann, ANN_REF_NAME, val)) {
		cJSON_Delete(val);
		return WH_ENOMEM;
	}
	return 0;
}

/* Remove the tag from entry e. A digest keeps one entry at least, so it stays
 * reachable by digest; if another entry holds it, e goes. */
static void entry_untag(cJSON *arr, cJSON *e)
{
	cJSON *ann = cJSON_GetObjectItemCaseSensitive(e, "annotations");
	const char *digest = entry_digest(e);
	cJSON *o;

	if (cJSON_IsObject(ann)) {
		while (cJSON_GetObjectItemCaseSensitive(ann, ANN_REF_NAME))
			cJSON_DeleteItemFromObjectCaseSensitive(ann, ANN_REF_NAME);
		if (!ann->child)
			cJSON_DeleteItemFromObjectCaseSensitive(e, "annotations");
	}
	cJSON_ArrayForEach(o, arr)
	{
		if (o != e && str_eq(entry_digest(o), digest)) {
			cJSON_Delete(cJSON_DetachItemViaPointer(arr, e));
			break;
		}
	}
}

static int entry_add(cJSON *arr, const char *digest, const char *media_type, size_t size,
                     const char *tag)
{
	cJSON *e = cJSON_CreateObject();
	int rc = WH_ENOMEM;

	if (!e)
		goto out;
	if (media_type && !cJSON_AddStringToObject(e, "mediaType", media_type))
		goto out;
	if (!cJSON_AddStringToObject(e, "digest", digest) ||
	    !cJSON_AddNumberToObject(e, "size", (double)size))
		goto out;
	if (tag && entry_set_tag(e, tag) < 0)
		goto out;
	cJSON_AddItemToArray(arr, e);
	e = NULL;
	rc = 0;
out:
	cJSON_Delete(e);
	return rc;
}

/* ---- open / close / temp files ---- */

int wh_store_open(const char *root, bool dedupe, wh_store **out)
{
	char path[PATH_MAX];
	wh_store *st = NULL;
	DIR *dir = NULL;
	struct dirent *de;
	size_t len;
	int rc;

	*out = NULL;
	if (!root || !*root)
		return WH_EINVAL;
	st = wh_calloc(1, sizeof(*st));
	wh_list_init(&st->lru);
	wh_list_init(&st->pinned);
	wh_list_init(&st->sweeps);
	st->root = wh_strdup(root);
	st->dedupe = dedupe;
	st->usage = -1;
	rc = uv_mutex_init(&st->lock);
	if (rc < 0) {
		free(st->root);
		free(st);
		return rc;
	}
	read_boot_id(st->boot);
	len = strlen(st->root);
	while (len > 1 && st->root[len - 1] == '/')
		st->root[--len] = '\0';

	rc = mkdir_p(st->root);
	if (rc < 0)
		goto out;
	rc = path_fmt(path, sizeof(path), "%s/.wharf/blobs/sha256", st->root);
	if (rc < 0 || (dedupe && (rc = mkdir_p(path)) < 0))
		goto out;
	rc = path_fmt(path, sizeof(path), "%s/.wharf/blobs/sha512", st->root);
	if (rc < 0 || (dedupe && (rc = mkdir_p(path)) < 0))
		goto out;
	rc = path_fmt(path, sizeof(path), "%s/.wharf/uploads", st->root);
	if (rc < 0 || (rc = mkdir_p(path)) < 0)
		goto out;
	rc = path_fmt(path, sizeof(path), "%s/.wharf/tmp", st->root);
	if (rc < 0 || (rc = mkdir_p(path)) < 0)
		goto out;

	/* Whatever is in tmp was being written when we last stopped. */
	dir = opendir(path);
	if (!dir) {
		rc = -errno;
		goto out;
	}
	while ((de = readdir(dir)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(dir), de->d_name, 0) < 0)
			wh_log(WH_LOG_WARN, "cannot remove leftover temp file", "name", WH_LS,
			       de->d_name, "error", WH_LS, strerror(errno), NULL);
	}
	rc = path_fmt(path, sizeof(path), "%s/.wharf/meta.log", st->root);
	if (rc < 0 || (rc = wh_meta_open(path, &st->meta)) < 0)
		goto out;
	*out = st;
	st = NULL;
out:
	if (dir)
		closedir(dir);
	if (st) {
		uv_mutex_destroy(&st->lock);
		free(st->root);
		free(st);
	}
	return rc;
}

static void upload_evict(wh_store *st, wh_upload *up);

void wh_store_close(wh_store *st)
{
	if (!st)
		return;
	if (st->ops > 0)
		wh_log(WH_LOG_ERROR, "store closed with operations still in the thread pool",
		       "operations", WH_LI, (long long)st->ops, NULL);
	/* Each session's hash state goes to disk: the next process goes on
	 * from there without reading the bytes. */
	while (!wh_list_empty(&st->pinned))
		upload_evict(st, wh_list_entry(wh_list_first(&st->pinned), wh_upload, link));
	while (!wh_list_empty(&st->lru))
		upload_evict(st, wh_list_entry(wh_list_first(&st->lru), wh_upload, link));
	for (int i = 0; i < INDEX_CACHE; i++)
		index_slot_clear(&st->index_cache[i]);
	for (int i = 0; i < MANIFEST_CACHE_N; i++)
		manifest_slot_clear(st, &st->manifest_cache[i]);
	for (int i = 0; i < BLOB_HINTS; i++)
		free(st->hints[i].repo);
	wh_strv_free(st->repos, st->n_repos);
	wh_meta_close(st->meta);
	uv_mutex_destroy(&st->lock);
	free(st->root);
	free(st);
}

void wh_store_attach(wh_store *st, uv_loop_t *loop)
{
	wh_meta_attach(st->meta, loop);
}

void wh_store_detach(wh_store *st)
{
	wh_meta_detach(st->meta);
}

wh_meta *wh_store_meta(wh_store *st)
{
	return st->meta;
}

void wh_store_note_pull(wh_store *st, const char *repo, const char *digest)
{
	wh_meta_pulled(st->meta, repo, digest, wh_wall_ms());
	wh_store__notify(
	    st, &(wh_store_change){.kind = WH_STORE_PULLED, .repo = repo, .digest = digest});
}

bool wh_store_cached(void *arg, const char *repo, const char *digest)
{
	wh_store *st = arg;
	wh_meta_stats ms;
	return wh_meta_get(st->meta, repo, digest, &ms) && (ms.flags & WH_META_CACHED) &&
	       !(ms.flags & WH_META_PUSHED);
}

int64_t wh_store_usage(const wh_store *st)
{
	return st->usage;
}

void wh_store_on_grow(wh_store *st, void (*fn)(void *arg), void *arg)
{
	st->on_grow = fn;
	st->on_grow_arg = arg;
}

int wh_store_on_change(wh_store *st, wh_store_change_fn fn, void *arg)
{
	if (st->n_listeners == WH_STORE_LISTENERS_MAX)
		return WH_ETOOBIG;
	st->listeners[st->n_listeners++] = (struct listener){fn, arg};
	return 0;
}

void wh_store_off_change(wh_store *st, wh_store_change_fn fn, void *arg)
{
	for (int i = 0; i < st->n_listeners; i++) {
		if (st->listeners[i].fn != fn || st->listeners[i].arg != arg)
			continue;
		memmove(st->listeners + i, st->listeners + i + 1,
		        sizeof(st->listeners[0]) * (size_t)(st->n_listeners - i - 1));
		st->n_listeners--;
		return;
	}
}

void wh_store__notify(wh_store *st, const wh_store_change *ch)
{
	/* A copy: a listener may take itself off meanwhile. */
	struct listener l[WH_STORE_LISTENERS_MAX];
	int n = st->n_listeners;

	memcpy(l, st->listeners, sizeof(l[0]) * (size_t)n);
	for (int i = 0; i < n; i++)
		l[i].fn(l[i].arg, ch);
}

void wh_store__usage_add(wh_store *st, int64_t delta)
{
	if (st->usage < 0 || delta == 0)
		return; /* unknown until a scan said */
	st->usage = WH_MAX(st->usage + delta, 0);
	if (delta > 0 && st->on_grow)
		st->on_grow(st->on_grow_arg);
}

void wh_store_pending_add(wh_store *st, int64_t delta)
{
	st->pending = WH_MAX(st->pending + delta, 0);
	if (delta > 0 && st->on_grow)
		st->on_grow(st->on_grow_arg);
}

int64_t wh_store_pending(const wh_store *st)
{
	return st->pending;
}

void wh_store__usage_set(wh_store *st, int64_t usage)
{
	st->usage = usage;
	if (st->on_grow)
		st->on_grow(st->on_grow_arg);
}

const char *wh_store_root(const wh_store *st)
{
	return st->root;
}

int wh_store_tmp_create(wh_store *st, char *path, size_t pathlen)
{
	unsigned char rnd[TMP_NAME_BYTES];
	char hex[2 * TMP_NAME_BYTES + 1];
	int fd = -EEXIST, rc;

	for (int attempt = 0; attempt < NAME_ATTEMPTS && fd == -EEXIST; attempt++) {
		rc = random_bytes(rnd, sizeof(rnd));
		if (rc < 0)
			return rc;
		hex_encode(rnd, sizeof(rnd), hex);
		rc = path_fmt(path, pathlen, "%s/.wharf/tmp/%s", st->root, hex);
		if (rc < 0)
			return rc;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			fd = -errno;
	}
	return fd;
}

/* ---- blobs ---- */

int wh_store_blob_stat(wh_store *st, const char *repo, const char *digest, int64_t *size)
{
	char path[PATH_MAX];
	struct stat sb;
	int rc;

	if (!repo_ok(repo) || !digest_ok(digest))
		return WH_EINVAL;
	rc = blob_path(st, repo, digest, path);
	if (rc < 0)
		return rc;
	if (stat(path, &sb) < 0)
		return (errno == ENOENT || errno == ENOTDIR) ? WH_ENOTFOUND : -errno;
	if (!S_ISREG(sb.st_mode))
		return WH_ENOTFOUND;
	if (size)
		*size = (int64_t)sb.st_size;
	return 0;
}

int wh_store_blob_open(wh_store *st, const char *repo, const char *digest, int *fd, int64_t *size)
{
	char path[PATH_MAX];
	struct stat sb;
	int f = -1, rc;

	*fd = -1;
	if (!repo_ok(repo) || !digest_ok(digest)) {
		rc = WH_EINVAL;
		goto out;
	}
	rc = blob_path(st, repo, digest, path);
	if (rc < 0)
		goto out;
	f = open_regular(path, O_RDONLY, &sb);
	if (f < 0) {
		rc = f;
		goto out;
	}
	if (size)
		*size = (int64_t)sb.st_size;
	*fd = f;
	f = -1;
out:
	if (f >= 0)
		close(f);
	return rc;
}

/* The blob bodies below run with st->lock held, on whichever thread does the
 * work (see "operations that change the store"); arguments were checked. */

/* Link the blob file src (another repository's, or the shared copy) into a
 * repository at dst. The inode's mtime becomes now: it is what the GC reads
 * as "recently referenced" (a blob pushed again, or mounted, is young
 * whatever the age of the bytes it shares), so a blob that a push is about
 * to reference is never collected under it. A copy (a filesystem without
 * links) adds its bytes to *added. */
static int link_blob(const char *src, const char *dst, int64_t *added)
{
	struct stat sb;
	int rc = place_file(src, dst, true);

	if (rc == 0 && stat(dst, &sb) == 0) {
		if (sb.st_nlink == 1)
			*added += (int64_t)sb.st_size;
		utimensat(AT_FDCWD, dst, NULL, 0);
	}
	return rc;
}

static int blob_unlink(wh_store *st, const char *repo, const char *digest, int64_t *freed,
                       bool sync)
{
	char path[PATH_MAX], global[PATH_MAX];
	struct stat sb, gb;
	int rc = blob_path(st, repo, digest, path);

	if (rc < 0)
		return rc;
	if (lstat(path, &sb) < 0)
		return (errno == ENOENT || errno == ENOTDIR) ? WH_ENOTFOUND : -errno;
	if (!S_ISREG(sb.st_mode))
		return WH_ENOTFOUND;
	if (unlink(path) < 0)
		return (errno == ENOENT || errno == ENOTDIR) ? WH_ENOTFOUND : -errno;
	if (sb.st_nlink == 1) {
		*freed += (int64_t)sb.st_size;
	} else if (st->dedupe && sb.st_nlink == 2 && shared_path(st, digest, global) == 0 &&
	           lstat(global, &gb) == 0 && gb.st_ino == sb.st_ino && gb.st_dev == sb.st_dev &&
	           gb.st_nlink == 1) {
		/* The shared copy was all that was left: no repository holds the
		 * bytes any more. */
		if (unlink(global) == 0) {
			*freed += (int64_t)sb.st_size;
			if (sync)
				fsync_parent(global);
		}
	}
	return sync ? fsync_parent(path) : 0;
}

int wh_store__blob_unlink(wh_store *st, const char *repo, const char *digest, int64_t *freed)
{
	return blob_unlink(st, repo, digest, freed, true);
}

int wh_store__blob_unlink_nosync(wh_store *st, const char *repo, const char *digest, int64_t *freed)
{
	return blob_unlink(st, repo, digest, freed, false);
}

void wh_store__blob_dirs_sync(wh_store *st, const char *repo)
{
	char path[PATH_MAX];

	if (repo_path(st, repo, "blobs/sha256", path) == 0)
		fsync_dir(path); /* fails when the repository went: its removal was synced */
	if (st->dedupe && path_fmt(path, sizeof(path), "%s/.wharf/blobs/sha256", st->root) == 0)
		fsync_dir(path);
}

static int blob_delete_locked(wh_store *st, const char *repo, const char *digest, int64_t *freed)
{
	cJSON *idx = NULL;
	int rc;

	/* A manifest's bytes: index.json (its tags, or its untagged entry) would
	 * name a file that is gone. Read from the file, not the loop's cache. */
	rc = index_load(st, repo, &idx);
	if (rc < 0 && rc != WH_ENOTFOUND)
		goto out;
	if (rc == 0 && find_by_digest(index_manifests(idx), digest, false)) {
		rc = WH_EINUSE;
		goto out;
	}
	rc = wh_store__blob_unlink(st, repo, digest, freed);
out:
	cJSON_Delete(idx);
	return rc;
}

static int blob_mount_locked(wh_store *st, const char *repo, const char *from_repo,
                             const char *digest, bool *created, int64_t *added)
{
	char src[PATH_MAX], dst[PATH_MAX];
	int rc;

	rc = blob_path(st, from_repo, digest, src);
	if (rc < 0)
		goto out;
	rc = blob_path(st, repo, digest, dst);
	if (rc < 0)
		goto out;
	if (!file_exists(src)) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	rc = repo_init(st, repo, created);
	if (rc < 0 || file_exists(dst))
		goto out;
	rc = parent_dir_make(dst);
	if (rc == 0)
		rc = link_blob(src, dst, added);
	if (rc < 0)
		log_err("cannot mount blob", dst, rc);
out:
	return rc;
}

/* Publish tmp_path as a blob of repo (wh_store_blob_publish). synced: the
 * caller fsynced it already, before taking the lock. */
static int publish_locked(wh_store *st, const char *repo, const char *tmp_path, const char *digest,
                          bool synced, bool *created, int64_t *added)
{
	char dst[PATH_MAX], global[PATH_MAX];
	bool consumed = false;
	struct stat sb;
	int64_t size = stat(tmp_path, &sb) == 0 ? (int64_t)sb.st_size : 0;
	int rc;

	rc = blob_path(st, repo, digest, dst);
	if (rc < 0)
		goto out;
	rc = repo_init(st, repo, created);
	if (rc < 0)
		goto out;
	if (file_exists(dst))
		goto out; /* same digest, same bytes: the temp file is dropped below */
	if (!synced) {
		rc = fsync_path(tmp_path);
		if (rc < 0)
			goto out;
	}
	rc = parent_dir_make(dst);
	if (rc < 0)
		goto out;

	if (!st->dedupe) {
		rc = place_file(tmp_path, dst, false);
		consumed = rc == 0;
		if (rc == 0)
			*added += size;
		goto out;
	}
	rc = shared_path(st, digest, global);
	if (rc == 0)
		rc = parent_dir_make(global); /* a root made before sha512 lacks it */
	if (rc < 0)
		goto out;
	if (!file_exists(global)) {
		rc = place_file(tmp_path, global, false);
		if (rc < 0)
			goto out;
		consumed = true;
		*added += size;
	}
	rc = link_blob(global, dst, added);
out:
	if (!consumed)
		unlink(tmp_path);
	if (rc < 0)
		wh_log(err_level(rc), "cannot publish blob", "repo", WH_LS, repo, "digest", WH_LS,
		       digest, "error", WH_LS, wh_strerror(rc), NULL);
	return rc;
}

/* ---- corrupt blobs ---- */

/* Names tried in .wharf/corrupt for one digest within one second. */
#define QUARANTINE_NAMES 100

/* A file found corrupt may be the one copy of its bytes that anyone has:
 * it is kept (under .wharf/corrupt, which nothing reads) for whoever
 * investigates, never deleted. Its new name is taken with link(2), which
 * never replaces what is there; a filesystem without hard links gets a
 * rename to a name checked free under the lock. */
int wh_store_blob_quarantine(wh_store *st, const char *repo, const char *digest)
{
	char src[PATH_MAX], dir[PATH_MAX], dst[PATH_MAX], global[PATH_MAX];
	struct stat sb, gb;
	long long now = (long long)time(NULL);
	int rc;

	if (!repo_ok(repo) || !digest_ok(digest))
		return WH_EINVAL;
	rc = blob_path(st, repo, digest, src);
	if (rc == 0)
		rc = path_fmt(dir, sizeof(dir), "%s/.wharf/corrupt", st->root);
	if (rc == 0)
		rc = shared_path(st, digest, global);
	if (rc < 0)
		return rc;

	uv_mutex_lock(&st->lock);
	if (lstat(src, &sb) < 0) {
		rc = (errno == ENOENT || errno == ENOTDIR) ? WH_ENOTFOUND : -errno;
		goto unlock;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = WH_ENOTFOUND;
		goto unlock;
	}
	rc = mkdir_p(dir);
	if (rc < 0)
		goto unlock;
	rc = -EEXIST;
	for (int n = 0; n < QUARANTINE_NAMES && rc == -EEXIST; n++) {
		rc =
		    n ? path_fmt(dst, sizeof(dst), "%s/%s.%lld.%d", dir, digest_hex(digest), now, n)
		      : path_fmt(dst, sizeof(dst), "%s/%s.%lld", dir, digest_hex(digest), now);
		if (rc < 0)
			break;
		if (link(src, dst) == 0) {
			rc = unlink(src) < 0 ? -errno : 0;
			if (rc < 0)
				unlink(dst); /* as it was: the blob stays where it is */
		} else if (errno == EEXIST) {
			rc = -EEXIST;
		} else if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP ||
		           errno == EMLINK || errno == EXDEV) {
			struct stat taken;
			if (lstat(dst, &taken) == 0)
				rc = -EEXIST;
			else
				rc = rename(src, dst) < 0 ? -errno : 0;
		} else {
			rc = -errno;
		}
	}
	if (rc < 0)
		goto unlock;
	wh_log(WH_LOG_WARN, "moved corrupt blob aside", "repo", WH_LS, repo, "digest", WH_LS,
	       digest, "path", WH_LS, dst, NULL);
	/* The blob is out of the repository once its directory says so. */
	rc = fsync_parent(src);
	if (rc == 0)
		rc = fsync_dir(dir);
	if (lstat(global, &gb) == 0 && gb.st_dev == sb.st_dev && gb.st_ino == sb.st_ino) {
		if (unlink(global) < 0)
			rc = rc ? rc : -errno;
		else if (rc == 0)
			rc = fsync_parent(global);
	}
unlock:
	uv_mutex_unlock(&st->lock);
	if (rc < 0 && rc != WH_ENOTFOUND)
		wh_log(WH_LOG_ERROR, "cannot move corrupt blob aside", "repo", WH_LS, repo,
		       "digest", WH_LS, digest, "error", WH_LS, wh_strerror(rc), NULL);
	return rc;
}

/* ---- upload sessions ---- */

/* A UUID's text: 16 bytes in hex, a dash before bytes 4, 6, 8 and 10. */
#define UUID_BYTES 16

static bool uuid_dash_before(int byte)
{
	return byte == 4 || byte == 6 || byte == 8 || byte == 10;
}

static bool upload_id_valid(const char *id)
{
	if (!id || strlen(id) != WH_UUID_LEN)
		return false;
	for (int i = 0; i < WH_UUID_LEN; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23; /* before bytes 4, 6, 8, 10 */
		char c = id[i];
		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* A session is the directory .wharf/uploads/<id>, outside every repository
 * (a POST to any name must not make that name a repository), holding:
 *   repo   the owning repository's name and a newline, written before data
 *   data   the bytes so far
 *   hash   the hash state of a prefix of data, when the session left memory
 * It exists when both do and repo is whole (the newline is there): a crash
 * while one is created or removed leaves a directory that is not a session,
 * never a session of the wrong repository. file NULL: the directory. */
static int session_path(const wh_store *st, const char *id, const char *file, char *buf)
{
	if (!file)
		return path_fmt(buf, PATH_MAX, "%s/.wharf/uploads/%s", st->root, id);
	return path_fmt(buf, PATH_MAX, "%s/.wharf/uploads/%s/%s", st->root, id, file);
}

/* Remove what is left of a session: data first (then it is no session at
 * all), the rest after. *existed (may be NULL) tells whether there was
 * anything to remove. */
static int session_remove_counted(const wh_store *st, const char *id, bool *existed)
{
	static const char *const files[] = {"data", "hash", "repo"};
	char path[PATH_MAX];
	bool found = false;
	int rc = 0;

	for (size_t i = 0; i < WH_ARRAY_SIZE(files); i++) {
		if (session_path(st, id, files[i], path) < 0)
			continue;
		if (unlink(path) == 0)
			found = true;
		else if (errno != ENOENT && rc == 0)
			rc = -errno;
	}
	if (session_path(st, id, NULL, path) == 0) {
		if (rmdir(path) == 0)
			found = true;
		else if (errno != ENOENT && rc == 0)
			rc = -errno;
	}
	if (existed)
		*existed = found;
	if (rc < 0)
		log_err("cannot remove upload session", path, rc);
	return rc;
}

static int session_remove(const wh_store *st, const char *id)
{
	return session_remove_counted(st, id, NULL);
}

/* True when the session directory's repo file names repo, whole. */
static bool session_owned_by(const wh_store *st, const char *id, const char *repo)
{
	char path[PATH_MAX], buf[WH_NAME_MAX + 2];
	size_t len = strlen(repo);
	ssize_t n;
	int fd;

	if (session_path(st, id, "repo", path) < 0)
		return false;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n == (ssize_t)len + 1 && buf[len] == '\n' && memcmp(buf, repo, len) == 0;
}

/* ---- the saved hash state ----
 *
 * When a session leaves memory its hash state is written to <id>/hash, so
 * that getting it again costs a read of that small file, never of the
 * bytes. The file says which bytes it covers (a prefix: data only grows),
 * which session and which boot it was written in, and ends with its own
 * sha256. It is not fsynced: within one boot the page cache is the truth
 * for data and hash alike (a killed process loses nothing), and after a
 * reboot, when data may have lost what was not synced, the boot id no
 * longer matches and the state is not used. A state that is missing,
 * damaged, from another boot or for more bytes than data holds leaves the
 * session "behind": see wh_upload_hash_behind. */

/* The file, integers little endian: magic (8 bytes), version (4), 4 bytes
 * reserved, boot id (16), session id (36), then the hash state, then the
 * sha256 of all that as text. Version 1 is a sha256 state: bytes hashed
 * (8), the eight words (4 each), the pending block (64). Version 2 is a
 * sha512 state: bytes hashed (8), the eight words (8 each), the pending
 * block (128). The version is the algorithm: a file says which hash it
 * continues, so a session that hashes sha512 comes back hashing sha512. */
#define HASH_MAGIC      "WHARFUPH"
#define HASH_MAGIC_LEN  8
#define HASH_V_SHA256   1u
#define HASH_V_SHA512   2u
#define HASH_AT_VERSION HASH_MAGIC_LEN
#define HASH_AT_BOOT    (HASH_AT_VERSION + 4 + 4)
#define HASH_AT_ID      (HASH_AT_BOOT + BOOT_ID_BYTES)
#define HASH_AT_STATE   (HASH_AT_ID + WH_UUID_LEN)
#define HASH_BODY       (HASH_AT_STATE + 8 + 8 * 4 + 64)
#define HASH_BODY_512   (HASH_AT_STATE + 8 + 8 * 8 + 128)
#define HASH_CHECK_LEN  WH_SHA256_LEN /* the check is a sha256 as text, whatever the state */
#define HASH_FILE_SIZE  (HASH_BODY + HASH_CHECK_LEN)
#define HASH_FILE_512   (HASH_BODY_512 + HASH_CHECK_LEN)
#define HASH_FILE_MAX   HASH_FILE_512
_Static_assert(HASH_BODY == 172, "the hash file's layout is fixed: older files are read");
_Static_assert(HASH_FILE_SIZE == 243, "the hash file's layout is fixed: older files are read");

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The hash file's bytes for session id whose hash state is h; returns how
 * many (HASH_FILE_SIZE or HASH_FILE_512). */
static size_t hash_encode(const wh_store *st, const char *id, const wh_digest_ctx *h,
                          unsigned char out[HASH_FILE_MAX])
{
	bool wide = h->alg == WH_ALG_SHA512;
	size_t body = wide ? HASH_BODY_512 : HASH_BODY;
	char check[WH_DIGEST_LEN + 1];
	unsigned char *p = out;

	memcpy(p, HASH_MAGIC, HASH_MAGIC_LEN);
	put_le(p + HASH_AT_VERSION, wide ? HASH_V_SHA512 : HASH_V_SHA256, 4);
	put_le(p + HASH_AT_VERSION + 4, 0, 4);
	memcpy(p + HASH_AT_BOOT, st->boot, BOOT_ID_BYTES);
	memcpy(p + HASH_AT_ID, id, WH_UUID_LEN);
	p += HASH_AT_STATE;
	if (wide) {
		wh_sha512_state state;
		wh_sha512_export(&h->u.sha512, &state);
		put_le(p, state.total, 8);
		p += 8;
		for (int i = 0; i < 8; i++, p += 8)
			put_le(p, state.h[i], 8);
		memcpy(p, state.block, 128);
		p += 128;
	} else {
		wh_sha256_state state;
		wh_sha256_export(&h->u.sha256, &state);
		put_le(p, state.total, 8);
		p += 8;
		for (int i = 0; i < 8; i++, p += 4)
			put_le(p, state.h[i], 4);
		memcpy(p, state.block, 64);
		p += 64;
	}
	wh_sha256_digest(out, body, check);
	memcpy(p, check, HASH_CHECK_LEN);
	return body + HASH_CHECK_LEN;
}

static bool hash_decode(const wh_store *st, const char *id, const unsigned char *in, size_t n,
                        wh_digest_ctx *h, int64_t *count)
{
	char check[WH_DIGEST_LEN + 1];
	const unsigned char *p = in;
	uint64_t total;

	if (n != HASH_FILE_SIZE && n != HASH_FILE_512)
		return false;
	size_t body = n - HASH_CHECK_LEN;
	uint64_t version = get_le(p + HASH_AT_VERSION, 4);
	wh_sha256_digest(in, body, check);
	if (memcmp(in + body, check, HASH_CHECK_LEN) != 0 ||
	    memcmp(p, HASH_MAGIC, HASH_MAGIC_LEN) != 0 ||
	    version != (body == HASH_BODY ? HASH_V_SHA256 : HASH_V_SHA512) ||
	    memcmp(p + HASH_AT_BOOT, st->boot, BOOT_ID_BYTES) != 0 ||
	    memcmp(p + HASH_AT_ID, id, WH_UUID_LEN) != 0)
		return false;
	p += HASH_AT_STATE;
	total = get_le(p, 8);
	p += 8;
	if (total > INT64_MAX)
		return false;
	if (version == HASH_V_SHA512) {
		wh_sha512_state state;
		state.total = total;
		for (int i = 0; i < 8; i++, p += 8)
			state.h[i] = get_le(p, 8);
		memcpy(state.block, p, 128);
		h->alg = WH_ALG_SHA512;
		wh_sha512_import(&h->u.sha512, &state);
	} else {
		wh_sha256_state state;
		state.total = total;
		for (int i = 0; i < 8; i++, p += 4)
			state.h[i] = (uint32_t)get_le(p, 4);
		memcpy(state.block, p, 64);
		h->alg = WH_ALG_SHA256;
		wh_sha256_import(&h->u.sha256, &state);
	}
	*count = (int64_t)total;
	return true;
}

/* Write up's hash state beside its bytes (temp file + rename: a reader sees
 * the old file or the new one). Nothing to do when the file already covers
 * what the hash does, or there is nothing to say (no byte hashed, with the
 * default algorithm). A failure only costs a catch-up later. */
static void hash_save(wh_upload *up)
{
	unsigned char buf[HASH_FILE_MAX];
	char tmp[PATH_MAX], path[PATH_MAX];
	size_t n;
	int fd, rc;

	if ((up->hashed == 0 && up->hash.alg == WH_ALG_SHA256) || up->hashed == up->saved)
		return;
	n = hash_encode(up->st, up->id, &up->hash, buf);
	rc = session_path(up->st, up->id, "hash", path);
	if (rc < 0)
		goto out;
	fd = wh_store_tmp_create(up->st, tmp, sizeof(tmp));
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	rc = write_all(fd, buf, n);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	else
		up->saved = up->hashed;
out:
	if (rc < 0)
		wh_log(WH_LOG_WARN, "cannot save the hash state of an upload session", "upload",
		       WH_LS, up->id, "error", WH_LS, wh_strerror(rc), NULL);
}

/* The saved state of session id if it is usable for a data file of size
 * bytes: true with *h and *count. */
static bool hash_load(const wh_store *st, const char *id, int64_t size, wh_digest_ctx *h,
                      int64_t *count)
{
	unsigned char buf[HASH_FILE_MAX + 1];
	char path[PATH_MAX];
	ssize_t n;
	int fd;
	bool ok;

	if (session_path(st, id, "hash", path) < 0)
		return false;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	close(fd);
	/* Into a context of its own: a state for more bytes than data holds
	 * leaves h as it was (fresh, for a catch-up from the first byte). */
	wh_digest_ctx got;
	int64_t got_count = 0;
	ok = n > 0 && hash_decode(st, id, buf, (size_t)n, &got, &got_count) && got_count <= size;
	if (ok) {
		*h = got;
		*count = got_count;
	}
	if (!ok && n >= 0)
		wh_log(WH_LOG_INFO, "upload session: saved hash state not usable, hashing later",
		       "upload", WH_LS, id, NULL);
	return ok;
}

/* ---- sessions in memory ---- */

/* Move a session to the front of a list: the most recently used. */
static void move_to_front(wh_list *list, wh_upload *up)
{
	wh_list_remove(&up->link);
	wh_list_insert_head(list, &up->link);
}

static void upload_touched(wh_upload *up)
{
	up->touched_ms = wh_now_ms();
	up->touched_seq = ++up->st->touches;
}

static void touch(wh_upload *up)
{
	upload_touched(up);
	if (up->pins == 0)
		move_to_front(&up->st->lru, up);
}

static void upload_free(wh_store *st, wh_upload *up)
{
	wh_list_remove(&up->link);
	st->n_uploads--;
	if (up->fd >= 0)
		close(up->fd);
	free(up->repo);
	free(up);
}

/* Drop a session from memory; its files stay, with its hash state. */
static void upload_evict(wh_store *st, wh_upload *up)
{
	hash_save(up);
	upload_free(st, up);
}

/* Evict least recently used unpinned sessions while more than limit are in
 * memory. Pinned ones may keep the table above it. */
static void uploads_trim(wh_store *st, int limit)
{
	while (st->n_uploads > limit && !wh_list_empty(&st->lru))
		upload_evict(st, wh_list_entry(wh_list_last(&st->lru), wh_upload, link));
}

/* Adopt an open session file (the hash state is the caller's to set). */
static wh_upload *upload_add(wh_store *st, const char *repo, const char *id, int fd)
{
	wh_upload *up;

	uploads_trim(st, WH_UPLOADS_OPEN_MAX - 1);
	up = wh_calloc(1, sizeof(*up));
	up->st = st;
	up->repo = wh_strdup(repo);
	memcpy(up->id, id, WH_UUID_LEN + 1);
	up->fd = fd;
	up->saved = -1;
	upload_touched(up);
	wh_digest_init(&up->hash, WH_ALG_SHA256);
	wh_list_insert_head(&st->lru, &up->link);
	st->n_uploads++;
	return up;
}

static wh_upload *upload_find(wh_store *st, const char *id)
{
	wh_list *lists[] = {&st->pinned, &st->lru};
	for (int i = 0; i < 2; i++) {
		wh_list_foreach_safe(l, next, lists[i]) {
			wh_upload *up = wh_list_entry(l, wh_upload, link);
			if (strcmp(up->id, id) == 0)
				return up;
		}
	}
	return NULL;
}

int wh_store_upload_create(wh_store *st, const char *repo, char id[WH_UUID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	char path[PATH_MAX], line[WH_NAME_MAX + 2];
	unsigned char b[UUID_BYTES];
	size_t len;
	int fd = -1, rc = -EEXIST;
	bool made = false;

	if (!repo_ok(repo))
		return WH_EINVAL;
	for (int attempt = 0; attempt < NAME_ATTEMPTS && rc == -EEXIST; attempt++) {
		size_t j = 0;
		rc = random_bytes(b, sizeof(b));
		if (rc < 0)
			goto out;
		b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
		b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
		for (int i = 0; i < UUID_BYTES; i++) {
			if (uuid_dash_before(i))
				id[j++] = '-';
			id[j++] = hex[b[i] >> 4];
			id[j++] = hex[b[i] & 0xf];
		}
		id[WH_UUID_LEN] = '\0';
		rc = session_path(st, id, NULL, path);
		if (rc < 0)
			goto out;
		/* mkdir is the exclusive step: the id is ours once it succeeds. */
		rc = mkdir(path, 0755) < 0 ? -errno : 0;
	}
	if (rc < 0)
		goto out;
	made = true;
	len = strlen(repo);
	memcpy(line, repo, len);
	line[len] = '\n';
	rc = session_path(st, id, "repo", path);
	if (rc < 0)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = write_all(fd, line, len + 1);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	fd = -1;
	if (rc < 0)
		goto out;
	rc = session_path(st, id, "data", path);
	if (rc < 0)
		goto out;
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	upload_add(st, repo, id, fd);
	rc = 0;
out:
	if (rc < 0) {
		log_err("cannot create upload session", repo, rc);
		if (made)
			session_remove(st, id);
	}
	return rc;
}

static bool session_doomed(wh_store *st, const char *id);

int wh_store_upload_get(wh_store *st, const char *repo, const char *id, wh_upload **out)
{
	char path[PATH_MAX];
	struct stat sb;
	wh_upload *up;
	int fd = -1, rc = 0;

	*out = NULL;
	if (!repo_ok(repo)) {
		rc = WH_EINVAL;
		goto out;
	}
	if (!upload_id_valid(id)) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	up = upload_find(st, id);
	if (up) {
		/* Being finished is as good as gone; and it must not be got from
		 * disk meanwhile, so it stays in the table until then. */
		if (strcmp(up->repo, repo) != 0 || up->finishing) {
			rc = WH_ENOTFOUND;
		} else {
			touch(up);
			*out = up;
		}
		goto out;
	}
	if (session_doomed(st, id)) {
		rc = WH_ENOTFOUND; /* a sweep is removing it */
		goto out;
	}

	/* Not in memory: after a restart or an eviction. The files are the
	 * truth; a session of another repository is none of this one's. The
	 * bytes are not read: their hash state comes from the hash file, or
	 * the session is behind and the rest is hashed when it finishes. */
	if (!session_owned_by(st, id, repo)) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	rc = session_path(st, id, "data", path);
	if (rc < 0)
		goto out;
	fd = open_regular(path, O_RDWR | O_NOFOLLOW, &sb);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	up = upload_add(st, repo, id, fd);
	fd = -1;
	up->size = (int64_t)sb.st_size;
	if (hash_load(st, id, up->size, &up->hash, &up->hashed))
		up->saved = up->hashed;
	*out = up;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int64_t wh_upload_size(const wh_upload *up)
{
	return up->size;
}

bool wh_upload_hash_behind(const wh_upload *up)
{
	return up->hashed < up->size;
}

void wh_upload_pin(wh_upload *up)
{
	upload_touched(up);
	if (up->pins++ == 0)
		move_to_front(&up->st->pinned, up);
}

void wh_upload_unpin(wh_upload *up)
{
	wh_store *st = up->st;

	if (up->pins <= 0)
		return;
	upload_touched(up);
	if (--up->pins == 0) {
		move_to_front(&st->lru, up);
		/* Back within bounds now that one more may go. */
		uploads_trim(st, WH_UPLOADS_OPEN_MAX);
	}
}

bool wh_upload_pinned(const wh_upload *up)
{
	return up->pins > 0;
}

int wh_upload_write(wh_upload *up, const void *data, size_t len)
{
	const char *p = data;
	int rc = 0;

	while (len > 0) {
		ssize_t n = pwrite(up->fd, p, len, (off_t)up->size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		/* Behind, the hash waits for the catch-up to reach the end. */
		if (up->hashed == up->size) {
			wh_digest_update(&up->hash, p, (size_t)n);
			up->hashed += n;
		}
		up->size += n;
		p += n;
		len -= (size_t)n;
	}
	touch(up);
	return rc;
}

struct wh_upload_catchup {
	wh_upload *up; /* pinned by the job */
	int fd;        /* the job's own descriptor of data */
	int64_t from, to;
	wh_digest_ctx hash;
	int rc;
};

wh_digest_alg wh_upload_hash_alg(const wh_upload *up)
{
	return up->hash.alg;
}

int wh_upload_set_alg(wh_upload *up, wh_digest_alg alg)
{
	if (alg != WH_ALG_SHA256 && alg != WH_ALG_SHA512)
		return WH_EINVAL;
	if (alg == up->hash.alg)
		return 0;
	if (up->jobs > 0 || up->finishing)
		return WH_EINUSE;
	/* The bytes so far were hashed with the other algorithm: start over,
	 * behind by all of them (a catch-up hashes them in the pool). The
	 * hash file on disk still holds a state of the old algorithm, which
	 * stays true of its prefix: were the session evicted before it hashed
	 * anything, it would come back with that one. */
	wh_digest_init(&up->hash, alg);
	up->hashed = 0;
	up->saved = -1;
	touch(up);
	return 0;
}

int wh_upload_catchup_begin(wh_upload *up, wh_upload_catchup **out)
{
	wh_upload_catchup *job;
	int fd;

	*out = NULL;
	if (!wh_upload_hash_behind(up) || up->jobs > 0 || up->finishing)
		return WH_EINVAL;
	fd = fcntl(up->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	job = wh_calloc(1, sizeof(*job));
	job->up = up;
	job->fd = fd;
	job->from = up->hashed;
	job->to = up->size;
	job->hash = up->hash; /* a context is plain bytes: the copy goes on alone */
	job->rc = -ECANCELED; /* until run: a job ended unrun installs nothing */
	up->jobs++;
	wh_upload_pin(up);
	*out = job;
	return 0;
}

void wh_upload_catchup_run(wh_upload_catchup *job)
{
	char *buf = wh_malloc(COPY_BUF);
	int64_t off = job->from;

	job->rc = 0;
	while (off < job->to) {
		size_t want = (size_t)WH_MIN(job->to - off, (int64_t)COPY_BUF);
		ssize_t n = pread(job->fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Shorter than it was: someone else cut the file. */
			job->rc = n < 0 ? -errno : WH_EIO;
			break;
		}
		wh_digest_update(&job->hash, buf, (size_t)n);
		off += n;
	}
	/* No fsync: finishing does it, off the loop as well. */
	free(buf);
}

int wh_upload_catchup_end(wh_upload_catchup *job)
{
	wh_upload *up = job->up;
	int rc = job->rc;

	if (rc == 0 && up->hashed == job->from && up->hash.alg == job->hash.alg) {
		up->hash = job->hash;
		up->hashed = job->to;
	}
	if (rc < 0)
		wh_log(WH_LOG_ERROR, "cannot read upload session", "upload", WH_LS, up->id, "error",
		       WH_LS, wh_strerror(rc), NULL);
	close(job->fd);
	free(job);
	up->jobs--;
	wh_upload_unpin(up);
	return rc;
}

/* ---- manifests and tags ---- */

void wh_manifest_free(wh_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	free(m->data);
	m->media_type = NULL;
	m->data = NULL;
	m->len = 0;
}

static bool ref_ok(const char *ref)
{
	size_t len = ref ? strlen(ref) : 0;

	if (!ref)
		return false;
	if (wh_ref_is_digest(ref, len))
		return wh_digest_check(ref, len) == WH_DIGEST_OK;
	return wh_tag_valid(ref, len);
}

/* Find ref (tag or digest) in repo's index: its digest and media type (NULL
 * when the entry has none; malloc'd otherwise). */
static int lookup(wh_store *st, const char *repo, const char *ref, char digest[WH_DIGEST_LEN + 1],
                  char **media_type)
{
	cJSON *idx = NULL, *arr, *e;
	const char *d, *mt;
	int rc;

	*media_type = NULL;
	if (!repo_ok(repo) || !ref_ok(ref))
		return WH_EINVAL;
	rc = index_get(st, repo, &idx);
	if (rc < 0)
		goto out;
	arr = index_manifests(idx);
	if (wh_ref_is_digest(ref, strlen(ref)))
		e = find_by_digest(arr, ref, false);
	else
		e = find_by_tag(arr, ref);
	if (!e) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	d = entry_digest(e);
	if (!digest_ok(d)) {
		wh_log(WH_LOG_WARN, "index.json entry has an unsupported digest", "repo", WH_LS,
		       repo, "ref", WH_LS, ref, NULL);
		rc = WH_ENOTFOUND;
		goto out;
	}
	wh_digest_copy(digest, d);
	mt = json_str(e, "mediaType");
	if (mt)
		*media_type = wh_strdup(mt);
out:
	return rc; /* idx is the cache's */
}

/* The type a manifest gives itself, for an index.json entry that names
 * none: as a push's check decides it (wh_manifest_type_of). Reported only;
 * never written back to index.json. */
static char *declared_media_type(const char *data, size_t len)
{
	cJSON *m = cJSON_ParseWithLength(data, len);
	char *res = wh_strdup(wh_manifest_type_of(m));

	cJSON_Delete(m);
	return res;
}

int wh_store_manifest_get(wh_store *st, const char *repo, const char *ref, wh_manifest *out)
{
	char path[PATH_MAX];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = lookup(st, repo, ref, out->digest, &out->media_type);
	if (rc < 0)
		goto out;
	struct manifest_slot *hit = manifest_cached(st, out->digest);
	if (hit) {
		out->data = wh_malloc(hit->len + 1);
		memcpy(out->data, hit->data, hit->len);
		out->data[hit->len] = '\0';
		out->len = hit->len;
	} else {
		rc = blob_path(st, repo, out->digest, path);
		if (rc < 0)
			goto out;
		rc = read_file(path, JSON_MAX, &out->data, &out->len);
		if (rc == WH_ENOTFOUND)
			wh_log(WH_LOG_WARN, "index.json names a manifest that is missing", "path",
			       WH_LS, path, NULL);
		if (rc < 0)
			goto out;
		manifest_cache_put(st, out->digest, out->data, out->len);
	}
	if (!out->media_type)
		out->media_type = declared_media_type(out->data, out->len);
out:
	if (rc < 0) {
		wh_manifest_free(out);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

int wh_store_manifest_stat(wh_store *st, const char *repo, const char *ref,
                           char digest[WH_DIGEST_LEN + 1], char **media_type, int64_t *size)
{
	char path[PATH_MAX];
	struct stat sb;
	char *data = NULL;
	size_t len;
	int rc;

	rc = lookup(st, repo, ref, digest, media_type);
	if (rc < 0)
		goto out;
	struct manifest_slot *hit = manifest_cached(st, digest);
	if (hit && *media_type) {
		if (size)
			*size = (int64_t)hit->len;
		goto out;
	}
	rc = blob_path(st, repo, digest, path);
	if (rc < 0)
		goto out;
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	if (size)
		*size = (int64_t)sb.st_size;
	if (!*media_type) {
		rc = read_file(path, JSON_MAX, &data, &len);
		if (rc < 0)
			goto out;
		*media_type = declared_media_type(data, len);
	}
out:
	free(data);
	if (rc < 0) {
		free(*media_type);
		*media_type = NULL;
	}
	return rc;
}

/* ---- operations that change the store ----
 *
 * Each change of the root is an operation in three parts (store.h, "changes
 * off the loop"): prepare on the loop (check the arguments, copy them into
 * the operation, claim the session), work on any thread, complete on the
 * loop. The synchronous calls run the three in a row; the _async ones send
 * the work to libuv's thread pool. The work touches the filesystem and its
 * operation only; the memory of the store is brought up to date by
 * complete, from what the work noted (created, index_written). The part of
 * the work that changes what the root holds runs with st->lock held: one
 * change at a time, whatever the thread, as when they all ran on the loop. */

#define REF_MAX (WH_TAG_MAX > WH_DIGEST_LEN ? WH_TAG_MAX : WH_DIGEST_LEN)

struct store_op {
	uv_work_t work;
	wh_store *st;
	void (*run)(struct store_op *op); /* the work */
	wh_store_cb cb;                   /* NULL: synchronous */
	void *arg;
	char repo[WH_NAME_MAX + 1];
	char from[WH_NAME_MAX + 1]; /* mount: the repository that holds the blob */
	char ref[REF_MAX + 1];      /* manifest delete: tag or digest */
	char **tags;                /* manifest put: the tags to point at it (malloc'd) */
	int n_tags;
	char digest[WH_DIGEST_LEN + 1]; /* of the blob or manifest */
	char path[PATH_MAX];            /* publish: the temp file; finish: the session's data */
	char *media_type;               /* manifest put; may be NULL */
	char *data;                     /* manifest put: a copy of the bytes */
	size_t len;
	wh_upload *up;            /* finish: the session, claimed */
	char id[WH_UUID_LEN + 1]; /* finish: its id */
	int fd;                   /* finish: its data file, taken from it */
	bool matched;             /* finish: the bytes hash to digest */
	/* What the work did, for complete. */
	int rc;
	bool created;       /* made the repository: the catalog learns it */
	bool index_written; /* replaced repo's index.json: the cache forgets it */
	bool cached;        /* manifest put: the cache stored it, no user pushed it */
	int64_t added;      /* bytes of files that did not exist before */
	int64_t freed;      /* bytes of files whose last link went */
};

static void catalog_insert(wh_store *st, const char *repo);
static void hint_note(wh_store *st, const char *digest, const char *repo);
static void publish_run(struct store_op *op);
static void finish_run(struct store_op *op);
static void mount_run(struct store_op *op);
static void manifest_put_run(struct store_op *op);
static void manifest_delete_run(struct store_op *op);

static struct store_op *op_new(wh_store *st, void (*run)(struct store_op *), const char *repo)
{
	struct store_op *op = wh_calloc(1, sizeof(*op));

	op->st = st;
	op->run = run;
	op->fd = -1;
	snprintf(op->repo, sizeof(op->repo), "%s", repo);
	return op;
}

/* The loop's part after the work: the memory of the store catches up. */
static int op_complete(struct store_op *op)
{
	wh_store *st = op->st;
	int rc = op->rc;

	if (op->created)
		catalog_insert(st, op->repo);
	if (op->created || op->index_written)
		index_forget(st, op->repo);
	if (rc == 0 && op->run == manifest_put_run) {
		wh_meta_stored(st->meta, op->repo, op->digest, op->cached, wh_wall_ms());
		/* One change per tag it now carries (?tag= may give several), or
		 * one untagged. */
		for (int t = 0; t < (op->n_tags ? op->n_tags : 1); t++)
			wh_store__notify(st,
			                 &(wh_store_change){.kind = WH_STORE_MANIFEST_PUT,
			                                    .repo = op->repo,
			                                    .tag = op->n_tags ? op->tags[t] : NULL,
			                                    .digest = op->digest,
			                                    .media_type = op->media_type,
			                                    .data = op->data,
			                                    .len = op->len,
			                                    .cached = op->cached});
	}
	if (rc == 0 && (op->run == publish_run || op->run == finish_run || op->run == mount_run))
		wh_store__notify(st, &(wh_store_change){.kind = WH_STORE_BLOB_ADDED,
		                                        .repo = op->repo,
		                                        .digest = op->digest});
	if (rc == 0 && op->run == manifest_delete_run) {
		bool by_digest = wh_ref_is_digest(op->ref, strlen(op->ref));
		if (by_digest)
			wh_meta_forget(st->meta, op->repo, op->ref);
		wh_store__notify(st, &(wh_store_change){.kind = WH_STORE_MANIFEST_DELETE,
		                                        .repo = op->repo,
		                                        .tag = by_digest ? NULL : op->ref,
		                                        .digest = by_digest ? op->ref : NULL});
	}
	if (rc == 0 && (op->run == publish_run || op->run == finish_run || op->run == mount_run))
		hint_note(st, op->digest, op->repo);
	wh_store__usage_add(st, op->added - op->freed);
	if (op->up)
		upload_free(st, op->up); /* finished: the session is gone, pins and all */
	wh_strv_free(op->tags, op->n_tags);
	free(op->media_type);
	free(op->data);
	free(op);
	return rc;
}

/* The synchronous call: all three parts here (prepare was done). */
static int op_run(struct store_op *op)
{
	op->run(op);
	return op_complete(op);
}

static void op_work_cb(uv_work_t *w)
{
	struct store_op *op = w->data;

	op->run(op);
}

static void op_done_cb(uv_work_t *w, int status)
{
	struct store_op *op = w->data;
	wh_store_cb cb = op->cb;
	void *arg = op->arg;

	/* Nothing calls uv_cancel on an operation; were one cancelled, it is
	 * done here rather than left half prepared. */
	if (status < 0)
		op->run(op);
	op->st->ops--;
	cb(op_complete(op), arg);
}

/* Undo what prepare did, when the work cannot be queued. */
static void op_abandon(struct store_op *op)
{
	if (op->up) {
		op->up->fd = op->fd;
		op->up->finishing = false;
		wh_upload_unpin(op->up);
		op->up = NULL;
	}
	if (op->run == publish_run)
		unlink(op->path); /* a publish consumes its temp file in every case */
	op->rc = 0;
	op_complete(op);
}

static int op_queue(uv_loop_t *loop, struct store_op *op, wh_store_cb cb, void *arg)
{
	int rc;

	op->cb = cb;
	op->arg = arg;
	op->work.data = op;
	rc = uv_queue_work(loop, &op->work, op_work_cb, op_done_cb);
	if (rc < 0) {
		op_abandon(op);
		return rc;
	}
	op->st->ops++;
	return 0;
}

/* -- blobs -- */

static void publish_run(struct store_op *op)
{
	wh_store *st = op->st;
	char dst[PATH_MAX];
	bool synced = false;
	int rc = 0;

	/* The fsync before the lock: the bytes are the caller's alone until
	 * they are placed, and a big blob's fsync must not hold every other
	 * change up. Not when the repository holds the blob already: the bytes
	 * are dropped then. Never tried twice: a failed fsync may have dropped
	 * the pages it could not write, and a second one would not know. */
	if (blob_path(st, op->repo, op->digest, dst) == 0 && !file_exists(dst)) {
		rc = fsync_path(op->path);
		if (rc < 0) {
			unlink(op->path);
			wh_log(err_level(rc), "cannot publish blob", "repo", WH_LS, op->repo,
			       "digest", WH_LS, op->digest, "error", WH_LS, wh_strerror(rc), NULL);
			goto out;
		}
		synced = true;
	}
	uv_mutex_lock(&st->lock);
	rc = publish_locked(st, op->repo, op->path, op->digest, synced, &op->created, &op->added);
	uv_mutex_unlock(&st->lock);
out:
	op->rc = rc;
}

static int publish_prepare(wh_store *st, const char *repo, const char *tmp_path, const char *digest,
                           struct store_op **out)
{
	int rc = 0;

	*out = NULL;
	if (!repo_ok(repo) || !digest_ok(digest))
		rc = WH_EINVAL;
	else if (strlen(tmp_path) >= PATH_MAX)
		rc = -ENAMETOOLONG;
	if (rc < 0) {
		unlink(tmp_path);
		wh_log(err_level(rc), "cannot publish blob", "repo", WH_LS, repo, "digest", WH_LS,
		       digest, "error", WH_LS, wh_strerror(rc), NULL);
		return rc;
	}
	*out = op_new(st, publish_run, repo);
	wh_digest_copy((*out)->digest, digest);
	memcpy((*out)->path, tmp_path, strlen(tmp_path) + 1);
	return 0;
}

int wh_store_blob_publish(wh_store *st, const char *repo, const char *tmp_path, const char *digest)
{
	struct store_op *op;
	int rc = publish_prepare(st, repo, tmp_path, digest, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_blob_publish_async(uv_loop_t *loop, wh_store *st, const char *repo,
                                const char *tmp_path, const char *digest, wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = publish_prepare(st, repo, tmp_path, digest, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

static void mount_run(struct store_op *op)
{
	uv_mutex_lock(&op->st->lock);
	op->rc =
	    blob_mount_locked(op->st, op->repo, op->from, op->digest, &op->created, &op->added);
	uv_mutex_unlock(&op->st->lock);
}

static int mount_prepare(wh_store *st, const char *repo, const char *from_repo, const char *digest,
                         struct store_op **out)
{
	*out = NULL;
	if (!repo_ok(repo) || !repo_ok(from_repo) || !digest_ok(digest))
		return WH_EINVAL;
	*out = op_new(st, mount_run, repo);
	snprintf((*out)->from, sizeof((*out)->from), "%s", from_repo);
	wh_digest_copy((*out)->digest, digest);
	return 0;
}

int wh_store_blob_mount(wh_store *st, const char *repo, const char *from_repo, const char *digest)
{
	struct store_op *op;
	int rc = mount_prepare(st, repo, from_repo, digest, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_blob_mount_async(uv_loop_t *loop, wh_store *st, const char *repo,
                              const char *from_repo, const char *digest, wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = mount_prepare(st, repo, from_repo, digest, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

static void blob_delete_run(struct store_op *op)
{
	uv_mutex_lock(&op->st->lock);
	op->rc = blob_delete_locked(op->st, op->repo, op->digest, &op->freed);
	uv_mutex_unlock(&op->st->lock);
}

static int blob_delete_prepare(wh_store *st, const char *repo, const char *digest,
                               struct store_op **out)
{
	*out = NULL;
	if (!repo_ok(repo) || !digest_ok(digest))
		return WH_EINVAL;
	*out = op_new(st, blob_delete_run, repo);
	wh_digest_copy((*out)->digest, digest);
	return 0;
}

int wh_store_blob_delete(wh_store *st, const char *repo, const char *digest)
{
	struct store_op *op;
	int rc = blob_delete_prepare(st, repo, digest, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_blob_delete_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *digest,
                               wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = blob_delete_prepare(st, repo, digest, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

/* -- finishing an upload -- */

static void finish_run(struct store_op *op)
{
	wh_store *st = op->st;
	int rc = 0;

	/* The longest wait of all, before the lock: the bytes are the
	 * session's alone, claimed by this operation. */
	if (!op->matched) {
		rc = WH_EDIGEST;
	} else if (fsync(op->fd) < 0) {
		rc = -errno;
		log_err("cannot sync upload", op->path, rc);
	}
	close(op->fd);
	op->fd = -1;
	if (rc == 0) {
		/* Publishing consumes the data file, whether or not it succeeds. */
		uv_mutex_lock(&st->lock);
		rc = publish_locked(st, op->repo, op->path, op->digest, true, &op->created,
		                    &op->added);
		uv_mutex_unlock(&st->lock);
	}
	session_remove(st, op->id);
	op->rc = rc;
}

/* Claim the session for a finish: from here on it is the operation's. */
static int finish_prepare(wh_store *st, wh_upload *up, const char *digest, struct store_op **out)
{
	char got[WH_DIGEST_LEN + 1];
	struct store_op *op;
	wh_digest_ctx h;
	int rc;

	*out = NULL;
	/* The hash must be the digest's algorithm, over every byte. */
	if (!digest_ok(digest) || wh_upload_hash_behind(up) ||
	    wh_digest_alg_of(digest) != up->hash.alg)
		return WH_EINVAL;
	if (up->jobs > 0 || up->finishing)
		return WH_EINUSE;
	op = op_new(st, finish_run, up->repo);
	rc = session_path(st, up->id, "data", op->path);
	if (rc < 0) {
		op_complete(op);
		return rc;
	}
	h = up->hash; /* a copy: were the work not queued, the session goes on as it was */
	wh_digest_final(&h, got);
	op->matched = strcmp(got, digest) == 0;
	wh_digest_copy(op->digest, digest);
	memcpy(op->id, up->id, WH_UUID_LEN + 1);
	op->up = up;
	op->fd = up->fd;
	up->fd = -1;
	up->finishing = true;
	wh_upload_pin(up); /* the operation's own: the caller's may go any time */
	*out = op;
	return 0;
}

int wh_store_upload_finish(wh_store *st, wh_upload *up, const char *digest)
{
	struct store_op *op;
	int rc = finish_prepare(st, up, digest, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_upload_finish_async(uv_loop_t *loop, wh_store *st, wh_upload *up, const char *digest,
                                 wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = finish_prepare(st, up, digest, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

/* A cancel closes the session's data file and removes its directory: only
 * the session's own files, which nobody else reaches once it is claimed, so
 * no lock. The close is the slow part for a big session: the filesystem
 * frees the unlinked file's blocks then. */
static void cancel_run(struct store_op *op)
{
	if (op->fd >= 0)
		close(op->fd);
	op->fd = -1;
	op->rc = session_remove(op->st, op->id);
}

static int cancel_prepare(wh_store *st, wh_upload *up, struct store_op **out)
{
	struct store_op *op;

	*out = NULL;
	if (up->jobs > 0 || up->finishing)
		return WH_EINUSE;
	op = op_new(st, cancel_run, up->repo);
	memcpy(op->id, up->id, WH_UUID_LEN + 1);
	op->up = up;
	op->fd = up->fd;
	up->fd = -1;
	up->finishing = true; /* claimed, as by a finish: lookups no longer find it */
	wh_upload_pin(up);
	*out = op;
	return 0;
}

int wh_store_upload_cancel(wh_store *st, wh_upload *up)
{
	struct store_op *op;
	int rc = cancel_prepare(st, up, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_upload_cancel_async(uv_loop_t *loop, wh_store *st, wh_upload *up, wh_store_cb cb,
                                 void *arg)
{
	struct store_op *op;
	int rc = cancel_prepare(st, up, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

/* -- stale upload sessions --
 *
 * A sweep runs in four parts. list (any thread): the sessions on disk
 * whose data file (or, without one, whose directory: a session a crash
 * left half made) is at least max_age_ms old. filter (loop): of those, a
 * session in memory that is pinned (a request or a job uses it), being
 * finished or cancelled, or touched within max_age_ms or since the sweep
 * began is spared; the rest leave memory (no hash state saved: they are
 * going) and the sweep is put on st->sweeps, so that a lookup finds none
 * of them from then on. remove (any thread): each one's files and
 * directory. complete (loop): off st->sweeps, cb with the count. */

struct sweep {
	uv_work_t work;
	wh_store *st;
	wh_store_cb cb; /* NULL: synchronous */
	void *arg;
	int64_t max_age_ms;
	uint64_t started_seq; /* st->touches when it began: sessions touched since are in use */
	char (*ids)[WH_UUID_LEN + 1];
	int n, cap;
	int removed;
	int rc;
	wh_list link; /* in st->sweeps while its sessions are being removed */
};

static bool session_doomed(wh_store *st, const char *id)
{
	wh_list_foreach_safe(l, next, &st->sweeps) {
		const struct sweep *sw = wh_list_entry(l, struct sweep, link);
		for (int i = 0; i < sw->n; i++)
			if (strcmp(sw->ids[i], id) == 0)
				return true;
	}
	return false;
}

static void sweep_list(struct sweep *sw)
{
	char path[PATH_MAX];
	struct timespec now;
	struct dirent *de;
	struct stat sb;
	DIR *dir;
	int rc;

	rc = path_fmt(path, sizeof(path), "%s/.wharf/uploads", sw->st->root);
	if (rc < 0)
		goto out;
	dir = opendir(path);
	if (!dir) {
		rc = errno == ENOENT ? 0 : -errno;
		goto out;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	while ((de = readdir(dir)) != NULL) {
		char data[WH_UUID_LEN + 8];
		int64_t age_ms;

		if (!upload_id_valid(de->d_name))
			continue;
		snprintf(data, sizeof(data), "%.*s/data", WH_UUID_LEN, de->d_name);
		if (fstatat(dirfd(dir), data, &sb, AT_SYMLINK_NOFOLLOW) < 0 &&
		    fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		age_ms = ((int64_t)now.tv_sec - (int64_t)sb.st_mtim.tv_sec) * 1000 +
		         ((int64_t)now.tv_nsec - (int64_t)sb.st_mtim.tv_nsec) / 1000000;
		if (age_ms < sw->max_age_ms)
			continue; /* written to lately (or in the future: the clock moved) */
		sw->ids = wh_grow(sw->ids, sizeof(*sw->ids), sw->n, &sw->cap, 16);
		memcpy(sw->ids[sw->n++], de->d_name, WH_UUID_LEN + 1);
	}
	closedir(dir);
out:
	if (rc < 0)
		log_err("cannot list upload sessions", path, rc);
	sw->rc = rc;
}

/* Spare what is in use; what goes leaves memory and lookups. */
static void sweep_filter(struct sweep *sw)
{
	wh_store *st = sw->st;
	uint64_t now = wh_now_ms();
	int k = 0;

	for (int i = 0; i < sw->n; i++) {
		wh_upload *up = upload_find(st, sw->ids[i]);
		if (up) {
			if (up->pins > 0 || up->jobs > 0 || up->finishing ||
			    up->touched_seq > sw->started_seq ||
			    now - up->touched_ms < (uint64_t)sw->max_age_ms)
				continue;
			upload_free(st, up);
		}
		if (k != i)
			memcpy(sw->ids[k], sw->ids[i], WH_UUID_LEN + 1);
		k++;
	}
	sw->n = k;
	wh_list_insert_head(&st->sweeps, &sw->link);
}

static void sweep_remove(struct sweep *sw)
{
	for (int i = 0; i < sw->n; i++) {
		bool existed = false;
		session_remove_counted(sw->st, sw->ids[i], &existed);
		sw->removed += existed;
	}
}

static int sweep_complete(struct sweep *sw)
{
	int rc = sw->rc < 0 ? sw->rc : sw->removed;

	if (wh_list_linked(&sw->link))
		wh_list_remove(&sw->link);
	free(sw->ids);
	free(sw);
	return rc;
}

static struct sweep *sweep_new(wh_store *st, int64_t max_age_ms)
{
	struct sweep *sw = wh_calloc(1, sizeof(*sw));

	sw->st = st;
	sw->max_age_ms = max_age_ms;
	sw->started_seq = st->touches;
	sw->work.data = sw;
	wh_list_init(&sw->link);
	return sw;
}

int wh_store_uploads_sweep(wh_store *st, int64_t max_age_ms)
{
	struct sweep *sw;

	if (max_age_ms < 0)
		return WH_EINVAL;
	sw = sweep_new(st, max_age_ms);
	sweep_list(sw);
	if (sw->rc == 0) {
		sweep_filter(sw);
		sweep_remove(sw);
	}
	return sweep_complete(sw);
}

static void sweep_list_cb(uv_work_t *w)
{
	sweep_list(w->data);
}

static void sweep_remove_cb(uv_work_t *w)
{
	sweep_remove(w->data);
}

static void sweep_callback(struct sweep *sw)
{
	wh_store_cb cb = sw->cb;
	void *arg = sw->arg;

	cb(sweep_complete(sw), arg);
}

static void sweep_removed_cb(uv_work_t *w, int status)
{
	struct sweep *sw = w->data;

	(void)status; /* nothing cancels it */
	sw->st->ops--;
	sweep_callback(sw);
}

static void sweep_listed_cb(uv_work_t *w, int status)
{
	struct sweep *sw = w->data;
	wh_store *st = sw->st;

	(void)status;
	st->ops--;
	if (sw->rc == 0 && sw->n > 0) {
		sweep_filter(sw);
		if (uv_queue_work(w->loop, &sw->work, sweep_remove_cb, sweep_removed_cb) == 0) {
			st->ops++;
			return;
		}
		sweep_remove(sw); /* not expected: done here rather than not at all */
	}
	sweep_callback(sw);
}

int wh_store_uploads_sweep_async(uv_loop_t *loop, wh_store *st, int64_t max_age_ms, wh_store_cb cb,
                                 void *arg)
{
	struct sweep *sw;
	int rc;

	if (max_age_ms < 0)
		return WH_EINVAL;
	sw = sweep_new(st, max_age_ms);
	sw->cb = cb;
	sw->arg = arg;
	rc = uv_queue_work(loop, &sw->work, sweep_list_cb, sweep_listed_cb);
	if (rc < 0) {
		sweep_complete(sw);
		return rc;
	}
	st->ops++;
	return 0;
}

/* -- manifests -- */

/* With the lock held: does repo still hold everything a pushed manifest
 * references (its config and layers, an index's children)? The registry
 * checked before queueing the push; a GC sweep may have removed an old
 * orphan since (it deletes under this lock), and a manifest naming what is
 * gone must not be stored. Descriptors with urls live elsewhere. */
static bool references_held(wh_store *st, const char *repo, const char *data, size_t len)
{
	cJSON *doc = cJSON_ParseWithLength(data, len), *e;
	static const char *const lists[] = {"layers", "manifests"};
	char path[PATH_MAX];
	bool ok = true;

	if (!doc)
		return true; /* checked by the caller: nothing to say here */
	const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(doc, "config");
	const char *d = json_str(cfg, "digest");
	if (d && digest_ok(d) && !cJSON_GetObjectItemCaseSensitive(cfg, "urls"))
		ok = blob_path(st, repo, d, path) == 0 && file_exists(path);
	for (size_t i = 0; i < WH_ARRAY_SIZE(lists) && ok; i++) {
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, lists[i]))
		{
			d = json_str(e, "digest");
			if (!d || !digest_ok(d) || cJSON_GetObjectItemCaseSensitive(e, "urls"))
				continue;
			if (blob_path(st, repo, d, path) < 0 || !file_exists(path)) {
				ok = false;
				break;
			}
		}
	}
	cJSON_Delete(doc);
	return ok;
}

static void manifest_put_run(struct store_op *op)
{
	wh_store *st = op->st;
	char path[PATH_MAX], tmp[PATH_MAX] = "";
	cJSON *idx = NULL, *arr, *e, *next;
	bool changed = false;
	int rc;

	rc = blob_path(st, op->repo, op->digest, path);
	if (rc < 0)
		goto out;
	/* The bytes are written and fsynced before the lock: nobody sees the
	 * temp file. */
	if (!file_exists(path)) {
		rc = write_temp(st, op->data, op->len, tmp);
		if (rc < 0)
			goto out;
	}
	uv_mutex_lock(&st->lock);
	if (!op->cached && !references_held(st, op->repo, op->data, op->len)) {
		rc = WH_EINUSE;
		goto unlock;
	}
	rc = repo_init(st, op->repo, &op->created);
	if (rc < 0)
		goto unlock;
	if (!tmp[0] && !file_exists(path)) {
		rc = write_temp(st, op->data, op->len, tmp); /* deleted meanwhile */
		if (rc < 0)
			goto unlock;
	}
	if (tmp[0]) {
		rc = publish_locked(st, op->repo, tmp, op->digest, true, &op->created, &op->added);
		tmp[0] = '\0'; /* consumed */
		if (rc < 0)
			goto unlock;
	}

	rc = index_load(st, op->repo, &idx);
	if (rc < 0)
		goto unlock;
	arr = index_manifests(idx);
	for (int t = 0; t < op->n_tags; t++) {
		const char *tag = op->tags[t];
		bool tagged = false;
		/* Move the tag: entries that carry it for another digest lose it. */
		for (e = arr->child; e; e = next) {
			next = e->next;
			if (!str_eq(entry_tag(e), tag))
				continue;
			if (str_eq(entry_digest(e), op->digest)) {
				tagged = true;
			} else {
				entry_untag(arr, e);
				changed = true;
			}
		}
		if (!tagged) {
			e = find_by_digest(arr, op->digest, true);
			rc = e ? entry_set_tag(e, tag)
			       : entry_add(arr, op->digest, op->media_type, op->len, tag);
			if (rc < 0)
				goto unlock;
			changed = true;
		}
	}
	if (op->n_tags == 0 && !find_by_digest(arr, op->digest, false)) {
		rc = entry_add(arr, op->digest, op->media_type, op->len, NULL);
		if (rc < 0)
			goto unlock;
		changed = true;
	}
	if (changed) {
		rc = index_write(st, op->repo, idx);
		op->index_written = true;
	}
unlock:
	uv_mutex_unlock(&st->lock);
out:
	if (tmp[0])
		unlink(tmp);
	cJSON_Delete(idx);
	op->rc = rc;
}

static int manifest_put_prepare(wh_store *st, const char *repo, const char *const *tags, int n_tags,
                                const char *digest, const char *media_type, const char *data,
                                size_t len, struct store_op **out)
{
	struct store_op *op;

	*out = NULL;
	if (!repo_ok(repo) || !digest_ok(digest) || n_tags < 0 || (!data && len > 0))
		return WH_EINVAL;
	for (int i = 0; i < n_tags; i++)
		if (!tags[i] || !wh_tag_valid(tags[i], strlen(tags[i])))
			return WH_EINVAL;
	op = op_new(st, manifest_put_run, repo);
	if (n_tags > 0) {
		op->tags = wh_malloc(sizeof(*op->tags) * (size_t)n_tags);
		for (int i = 0; i < n_tags; i++)
			op->tags[i] = wh_strdup(tags[i]);
		op->n_tags = n_tags;
	}
	wh_digest_copy(op->digest, digest);
	op->media_type = media_type ? wh_strdup(media_type) : NULL;
	op->data = wh_malloc(len ? len : 1);
	if (len > 0)
		memcpy(op->data, data, len);
	op->len = len;
	*out = op;
	return 0;
}

int wh_store_manifest_put(wh_store *st, const char *repo, const char *tag, const char *digest,
                          const char *media_type, const char *data, size_t len)
{
	struct store_op *op;
	int rc =
	    manifest_put_prepare(st, repo, &tag, tag ? 1 : 0, digest, media_type, data, len, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_manifest_put_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *tag,
                                const char *digest, const char *media_type, const char *data,
                                size_t len, wh_store_cb cb, void *arg)
{
	return wh_store_manifest_put_tags_async(loop, st, repo, &tag, tag ? 1 : 0, digest,
	                                        media_type, data, len, cb, arg);
}

int wh_store_manifest_put_tags_async(uv_loop_t *loop, wh_store *st, const char *repo,
                                     const char *const *tags, int n_tags, const char *digest,
                                     const char *media_type, const char *data, size_t len,
                                     wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = manifest_put_prepare(st, repo, tags, n_tags, digest, media_type, data, len, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

int wh_store_manifest_cache_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *tag,
                                  const char *digest, const char *media_type, const char *data,
                                  size_t len, wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc =
	    manifest_put_prepare(st, repo, &tag, tag ? 1 : 0, digest, media_type, data, len, &op);

	if (rc < 0)
		return rc;
	op->cached = true;
	return op_queue(loop, op, cb, arg);
}

static void manifest_delete_run(struct store_op *op)
{
	wh_store *st = op->st;
	const char *ref = op->ref;
	char path[PATH_MAX];
	cJSON *idx = NULL, *arr, *e, *next;
	bool found = false, by_digest = wh_ref_is_digest(ref, strlen(ref));
	int rc;

	uv_mutex_lock(&st->lock);
	rc = index_load(st, op->repo, &idx);
	if (rc < 0)
		goto out;
	arr = index_manifests(idx);
	for (e = arr->child; e; e = next) {
		next = e->next;
		if (by_digest && str_eq(entry_digest(e), ref)) {
			cJSON_Delete(cJSON_DetachItemViaPointer(arr, e));
			found = true;
		} else if (!by_digest && str_eq(entry_tag(e), ref)) {
			entry_untag(arr, e);
			found = true;
		}
	}
	if (!found) {
		rc = WH_ENOTFOUND;
		goto out;
	}
	rc = index_write(st, op->repo, idx);
	op->index_written = true;
	if (rc < 0 || !by_digest)
		goto out;
	/* The index no longer names it; only then do the bytes go, so a crash
	 * in between leaves an orphan blob, never a dangling entry. */
	rc = wh_store__blob_unlink(st, op->repo, ref, &op->freed);
	if (rc == WH_ENOTFOUND) {
		rc = 0;
	} else if (rc < 0) {
		if (blob_path(st, op->repo, ref, path) == 0)
			log_err("cannot remove manifest blob", path, rc);
		rc = 0; /* the manifest is gone; its bytes are an orphan for the GC */
	}
out:
	uv_mutex_unlock(&st->lock);
	cJSON_Delete(idx);
	op->rc = rc;
}

static int manifest_delete_prepare(wh_store *st, const char *repo, const char *ref,
                                   struct store_op **out)
{
	*out = NULL;
	if (!repo_ok(repo) || !ref_ok(ref))
		return WH_EINVAL;
	*out = op_new(st, manifest_delete_run, repo);
	snprintf((*out)->ref, sizeof((*out)->ref), "%s", ref);
	return 0;
}

int wh_store_manifest_delete(wh_store *st, const char *repo, const char *ref)
{
	struct store_op *op;
	int rc = manifest_delete_prepare(st, repo, ref, &op);

	return rc < 0 ? rc : op_run(op);
}

int wh_store_manifest_delete_async(uv_loop_t *loop, wh_store *st, const char *repo, const char *ref,
                                   wh_store_cb cb, void *arg)
{
	struct store_op *op;
	int rc = manifest_delete_prepare(st, repo, ref, &op);

	return rc < 0 ? rc : op_queue(loop, op, cb, arg);
}

/* The spec's "lexical order (i.e. case-insensitive alphanumeric order)";
 * names differing only in case are ordered bytewise, so the order is total. */
static int lexical(const char *a, const char *b)
{
	int c = strcasecmp(a, b);
	return c ? c : strcmp(a, b);
}

int wh_store_tag_cmp(const void *a, const void *b)
{
	return lexical(*(char *const *)a, *(char *const *)b);
}

int wh_store_page(char **v, int n, const char *last, int limit, bool *more)
{
	int i = 0, k = 0;

	while (last && i < n && lexical(v[i], last) <= 0)
		i++;
	for (; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0)
			continue;
		if (limit >= 0 && k == limit)
			break;
		v[k++] = v[i];
	}
	/* Anything left that is not a repeat of the last one kept? */
	while (i < n && k > 0 && strcmp(v[k - 1], v[i]) == 0)
		i++;
	*more = i < n;
	return k;
}

int wh_store_tags(wh_store *st, const char *repo, const char *last, int n, char ***tags, int *count,
                  bool *more)
{
	cJSON *idx = NULL, *e;
	char **v = NULL;
	int nv = 0, rc;

	*tags = NULL;
	*count = 0;
	*more = false;
	if (!repo_ok(repo))
		return WH_EINVAL;
	rc = index_get(st, repo, &idx);
	if (rc < 0)
		goto out;
	v = wh_malloc(sizeof(*v) * ((size_t)cJSON_GetArraySize(index_manifests(idx)) + 1));
	cJSON_ArrayForEach(e, index_manifests(idx))
	{
		const char *t = entry_tag(e);
		/* Other tools write full references here; only tags are tags. */
		if (t && wh_tag_valid(t, strlen(t)))
			v[nv++] = (char *)t;
	}
	if (nv > 0)
		qsort(v, (size_t)nv, sizeof(*v), wh_store_tag_cmp);
	*count = wh_store_page(v, nv, last, n, more);
	*tags = wh_malloc(sizeof(**tags) * (size_t)(*count + 1));
	for (int i = 0; i < *count; i++)
		(*tags)[i] = wh_strdup(v[i]);
out:
	free(v); /* idx is the cache's */
	return rc;
}

struct strv {
	char **v;
	int n, cap;
};

static void strv_push(struct strv *s, char *str)
{
	s->v = wh_grow(s->v, sizeof(*s->v), s->n, &s->cap, 64);
	s->v[s->n++] = str;
}

/* Walk the directory `name` under parent_fd, whose path below the root is
 * rel[0..rel_len). Repositories are directories holding index.json; a
 * repository's own blobs/ and dot-directories are not descended into, nor is
 * anything that cannot be part of a valid name. */
/* in_blobs: name is a repository's blobs/ directory, whose sha256/ and
 * sha512/ hold content, not repositories (a repository a/blobs/b is still
 * found). */
static void walk_repos(int parent_fd, const char *name, char *rel, size_t rel_len, bool in_blobs,
                       struct strv *out)
{
	struct stat sb;
	struct dirent *de;
	DIR *dir;
	bool is_repo;
	int fd;

	/* The root itself may be a symlink (/var/lib/wharf -> /data); below it,
	 * links are not followed. */
	fd = openat(parent_fd, name,
	            O_RDONLY | O_DIRECTORY | O_CLOEXEC | (rel_len ? O_NOFOLLOW : 0));
	if (fd < 0)
		return;
	is_repo = rel_len > 0 && fstatat(fd, "index.json", &sb, 0) == 0 && S_ISREG(sb.st_mode);
	if (is_repo && wh_name_valid(rel, rel_len))
		strv_push(out, wh_strndup(rel, rel_len));
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		size_t nlen = strlen(de->d_name);
		size_t new_len = rel_len + (rel_len ? 1 : 0) + nlen;

		if (de->d_name[0] == '.' ||
		    (in_blobs &&
		     wh_digest_alg_named(de->d_name, strlen(de->d_name)) != WH_ALG_NONE))
			continue;
		if (new_len > WH_NAME_MAX || !wh_name_valid(de->d_name, nlen))
			continue;
		if (de->d_type != DT_DIR) {
			if (de->d_type != DT_UNKNOWN)
				continue;
			if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(sb.st_mode))
				continue;
		}
		if (rel_len)
			rel[rel_len] = '/';
		memcpy(rel + new_len - nlen, de->d_name, nlen + 1);
		walk_repos(dirfd(dir), de->d_name, rel, new_len,
		           is_repo && !strcmp(de->d_name, "blobs"), out);
		rel[rel_len] = '\0';
	}
	closedir(dir);
}

void wh_store_repos_scan(const char *root, char ***names, int *count)
{
	char rel[WH_NAME_MAX + 2] = "";
	struct strv all = {0};

	walk_repos(AT_FDCWD, root, rel, 0, false, &all);
	if (all.n > 0)
		qsort(all.v, (size_t)all.n, sizeof(*all.v), wh_store_tag_cmp);
	*names = all.v;
	*count = all.n;
}

/* The first index in the catalog whose name sorts after name (n_repos when
 * none does); *found when name itself is there. */
static int catalog_after(const wh_store *st, const char *name, bool *found)
{
	int lo = 0, hi = st->n_repos;

	*found = false;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2, c = lexical(st->repos[mid], name);
		if (c == 0)
			*found = true;
		if (c <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void catalog_insert(wh_store *st, const char *repo)
{
	bool found;
	int i = catalog_after(st, repo, &found);

	if (found)
		return;
	st->repos = wh_grow(st->repos, sizeof(*st->repos), st->n_repos, &st->cap_repos, 64);
	memmove(st->repos + i + 1, st->repos + i, sizeof(*st->repos) * (size_t)(st->n_repos - i));
	st->repos[i] = wh_strdup(repo);
	st->n_repos++;
}

void wh_store_catalog_load(wh_store *st, char **names, int count)
{
	/* Merge: what the scan found, and what was created meanwhile (the scan
	 * may or may not have seen it). Both are sorted and unique. */
	char **v = wh_malloc(sizeof(*v) * ((size_t)count + (size_t)st->n_repos + 1));
	int i = 0, j = 0, k = 0;

	while (i < count || j < st->n_repos) {
		int c = i == count ? 1 : j == st->n_repos ? -1 : lexical(names[i], st->repos[j]);
		if (c < 0) {
			v[k++] = names[i++];
		} else if (c > 0) {
			v[k++] = st->repos[j++];
		} else {
			v[k++] = names[i++];
			free(st->repos[j++]);
		}
	}
	free(names);
	free(st->repos);
	st->repos = v;
	st->n_repos = st->cap_repos = k;
	st->repos_loaded = true;
}

bool wh_store_catalog_loaded(const wh_store *st)
{
	return st->repos_loaded;
}

int wh_store_repos(wh_store *st, const char *last, int n, char ***repos, int *count, bool *more)
{
	int i = 0, k;
	bool found;

	if (!st->repos_loaded) {
		char **names;
		int nnames;
		wh_store_repos_scan(st->root, &names, &nnames);
		wh_store_catalog_load(st, names, nnames);
	}
	if (last)
		i = catalog_after(st, last, &found);
	k = st->n_repos - i;
	if (n >= 0 && k > n)
		k = n;
	*repos = wh_malloc(sizeof(**repos) * ((size_t)k + 1));
	for (int j = 0; j < k; j++)
		(*repos)[j] = wh_strdup(st->repos[i + j]);
	*count = k;
	*more = i + k < st->n_repos;
	return 0;
}

/* Orders index entries by digest (only entries with a valid one are sorted). */
static int cmp_entry_digest(const void *a, const void *b)
{
	const char *da = entry_digest(*(const cJSON *const *)a);
	const char *db = entry_digest(*(const cJSON *const *)b);

	return strcmp(da ? da : "", db ? db : "");
}

/* The referrers descriptor for manifest m (bytes len), or NULL when it does
 * not pass the artifact type filter. */
static cJSON *referrer_desc(const cJSON *m, const char *digest, const char *entry_mt, size_t len,
                            const char *artifact_type)
{
	const char *mt = json_str(m, "mediaType");
	const char *at = json_str(m, "artifactType");
	const cJSON *ann = cJSON_GetObjectItemCaseSensitive(m, "annotations");
	bool is_index;
	cJSON *d = NULL;

	if (!mt)
		mt = entry_mt;
	is_index = (mt && wh_manifest_type_is_index(mt)) ||
	           cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m, "manifests"));
	if (at && !*at)
		at = NULL;
	if (!at && !is_index)
		at = json_str(cJSON_GetObjectItemCaseSensitive(m, "config"), "mediaType");
	if (artifact_type && !str_eq(at, artifact_type))
		goto out;
	d = cJSON_CreateObject();
	if (!d)
		goto out;
	if ((mt && !cJSON_AddStringToObject(d, "mediaType", mt)) ||
	    !cJSON_AddStringToObject(d, "digest", digest) ||
	    !cJSON_AddNumberToObject(d, "size", (double)len) ||
	    (at && !cJSON_AddStringToObject(d, "artifactType", at)) ||
	    (cJSON_IsObject(ann) &&
	     !cJSON_AddItemToObject(d, "annotations", cJSON_Duplicate(ann, 1)))) {
		cJSON_Delete(d);
		d = NULL;
	}
out:
	return d;
}

int wh_store_referrers(wh_store *st, const char *repo, const char *digest,
                       const char *artifact_type, char **json)
{
	char path[PATH_MAX];
	cJSON *res = NULL, *list = NULL, *idx = NULL, *e, *m = NULL;
	cJSON **entries = NULL;
	char *data = NULL;
	size_t len;
	int n = 0, rc;

	*json = NULL;
	if (!repo_ok(repo) || !digest_ok(digest))
		return WH_EINVAL;
	res = cJSON_CreateObject();
	if (!res || !cJSON_AddNumberToObject(res, "schemaVersion", 2) ||
	    !cJSON_AddStringToObject(res, "mediaType", WH_MT_OCI_INDEX) ||
	    !(list = cJSON_AddArrayToObject(res, "manifests"))) {
		rc = WH_ENOMEM;
		goto out;
	}
	rc = index_load(st, repo, &idx);
	if (rc == WH_ENOTFOUND)
		rc = 0;
	if (rc < 0 || !idx)
		goto print;

	/* Each manifest once, in digest order. */
	entries =
	    wh_malloc(sizeof(*entries) * ((size_t)cJSON_GetArraySize(index_manifests(idx)) + 1));
	cJSON_ArrayForEach(e, index_manifests(idx))
	{
		if (digest_ok(entry_digest(e)))
			entries[n++] = e;
	}
	if (n > 0)
		qsort(entries, (size_t)n, sizeof(*entries), cmp_entry_digest);
	for (int i = 0; i < n; i++) {
		const char *d = entry_digest(entries[i]), *subject;
		cJSON *desc;

		if (i > 0 && !strcmp(d, entry_digest(entries[i - 1])))
			continue;
		if (blob_path(st, repo, d, path) < 0 || read_file(path, JSON_MAX, &data, &len) < 0)
			continue;
		m = cJSON_ParseWithLength(data, len);
		subject = json_str(cJSON_GetObjectItemCaseSensitive(m, "subject"), "digest");
		if (str_eq(subject, digest)) {
			desc = referrer_desc(m, d, json_str(entries[i], "mediaType"), len,
			                     artifact_type);
			if (desc)
				cJSON_AddItemToArray(list, desc);
		}
		cJSON_Delete(m);
		m = NULL;
		free(data);
		data = NULL;
	}
print:
	if (rc == 0) {
		*json = cJSON_PrintUnformatted(res);
		if (!*json)
			rc = WH_ENOMEM;
	}
out:
	free(entries);
	cJSON_Delete(idx);
	cJSON_Delete(res);
	return rc;
}

/* ---- finding a repository that holds a blob ---- */

static uint64_t hint_key(const char *digest)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *p = digest; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h ? h : 1;
}

static void hint_note(wh_store *st, const char *digest, const char *repo)
{
	uint64_t k = hint_key(digest);
	struct blob_hint *h = &st->hints[k % BLOB_HINTS];

	if (h->key == k && h->repo && strcmp(h->repo, repo) == 0)
		return;
	free(h->repo);
	h->key = k;
	h->repo = wh_strdup(repo);
}

int wh_store_blob_find(wh_store *st, const char *digest,
                       bool (*may_read)(void *arg, const char *repo), void *arg,
                       char repo[WH_NAME_MAX + 1])
{
	char path[PATH_MAX];
	int stats = 0;

	repo[0] = '\0';
	if (!digest_ok(digest))
		return WH_EINVAL;
	/* With dedupe every blob's bytes have their shared copy: none, and no
	 * repository holds them (one stat answers for the whole root). */
	if (st->dedupe && (shared_path(st, digest, path) < 0 || !file_exists(path)))
		return WH_ENOTFOUND;
	uint64_t k = hint_key(digest);
	struct blob_hint *h = &st->hints[k % BLOB_HINTS];
	if (h->key == k && h->repo && may_read(arg, h->repo) &&
	    wh_store_blob_stat(st, h->repo, digest, NULL) == 0) {
		snprintf(repo, WH_NAME_MAX + 1, "%s", h->repo);
		return 0;
	}
	/* Then the catalog (in memory), a stat per repository the caller may
	 * read, at most FIND_STATS_MAX of them: bounded work on the loop. */
	for (int i = 0;
	     st->repos_loaded && i < st->n_repos && i < FIND_NAMES_MAX && stats < FIND_STATS_MAX;
	     i++) {
		if (!may_read(arg, st->repos[i]))
			continue;
		stats++;
		if (wh_store_blob_stat(st, st->repos[i], digest, NULL) == 0) {
			snprintf(repo, WH_NAME_MAX + 1, "%s", st->repos[i]);
			hint_note(st, digest, repo);
			return 0;
		}
	}
	return WH_ENOTFOUND;
}

bool wh_store_repo_exists(wh_store *st, const char *repo)
{
	char path[PATH_MAX];

	return repo_ok(repo) && repo_path(st, repo, "index.json", path) == 0 && file_exists(path);
}

void wh_strv_free(char **v, int n)
{
	if (!v)
		return;
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- configuration: storage ---- */

#define STO(m) offsetof(wh_store_settings, m)

/* A remote storage driver (s3, gcs, azure): Wharf keeps content under
 * rootDirectory and nowhere else. Serving from an empty local directory
 * instead of the bucket the config names would look like lost images. */
static int storage_driver(wh_conf *c, const cJSON *v, char *base)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
	((wh_store_settings *)(void *)base)->remote_driver = true;
	return wh_conf_fail(c,
	                    "Wharf stores content on the local filesystem only (rootDirectory), "
	                    "not in %s%s%s: remove storageDriver to store under rootDirectory, "
	                    "or serve this config with Zot",
	                    cJSON_IsString(name) ? "\"" : "a remote store",
	                    cJSON_IsString(name) ? name->valuestring : "",
	                    cJSON_IsString(name) ? "\"" : "");
}

/* subPaths: Zot stores the repositories whose first path component is a
 * route ("/a" for "a/foo") under that route's own rootDirectory, each with
 * its own gc, gcDelay and retention (not inherited: gc is off unless set).
 * Wharf keeps every repository under one rootDirectory, so ignoring the key
 * would serve those repositories from a directory where they are not (they
 * would look lost) and collect them with the top-level gc and retention,
 * which may delete what their own settings keep. Refused, as storageDriver
 * is; an empty map routes nothing and is accepted. */
static int sub_paths(wh_conf *c, const cJSON *v, char *base)
{
	const cJSON *route = v ? v->child : NULL, *root;
	char where[160] = "";
	(void)base;
	if (!cJSON_IsObject(v))
		return wh_conf_fail(c, "expected an object");
	if (!route)
		return 0;
	root = cJSON_IsObject(route) ? route->child : NULL;
	for (; root; root = root->next)
		if (strcasecmp(root->string, "rootDirectory") == 0)
			break;
	if (cJSON_IsString(root))
		snprintf(where, sizeof(where), " (\"%.40s/...\" in \"%.40s\")",
		         route->string[0] == '/' ? route->string + 1 : route->string,
		         root->valuestring);
	return wh_conf_fail(c,
	                    "not implemented by wharf: every repository is kept under "
	                    "rootDirectory, so those this config routes elsewhere%s would not "
	                    "be found, and would be collected by the top-level gc and retention, "
	                    "not by their own; move them under rootDirectory and remove subPaths, "
	                    "or serve this config with Zot",
	                    where);
}

/* Wharf's own, under storage.wharf (gc.h says what they do). */
static const wh_conf_key store_wharf_keys[] = {
    WH_CONF_KEY("cacheMaxSize", WH_CONF_SIZE, 0, STO(cache_max_bytes)),
    WH_CONF_KEY("cacheMinFree", WH_CONF_SIZE, 0, STO(cache_min_free_bytes)),
    WH_CONF_END,
};

const wh_conf_key wh_store_keys[] = {
    WH_CONF_KEY("rootDirectory", WH_CONF_STRING, WH_CONF_NONEMPTY, STO(root_dir)),
    WH_CONF_KEY("dedupe", WH_CONF_BOOL, 0, STO(dedupe)),
    WH_CONF_KEY("gc", WH_CONF_BOOL, 0, STO(gc)),
    WH_CONF_KEY("gcDelay", WH_CONF_DURATION, 0, STO(gc_delay_ms)),
    WH_CONF_KEY("gcInterval", WH_CONF_DURATION, 0, STO(gc_interval_ms)),
    WH_CONF_KEY("commit", WH_CONF_BOOL, 0, STO(commit)),
    {"remoteCache", WH_CONF_BOOL, WH_CONF_WARN_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    {"redirectBlobURL", WH_CONF_BOOL, WH_CONF_WARN_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    {"hydrateBlobOnRead", WH_CONF_BOOL, WH_CONF_WARN_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    WH_CONF_IGNORED("fastRestart", WH_CONF_WARN),
    WH_CONF_IGNORED("maxRepos", WH_CONF_WARN),
    WH_CONF_FN("gcTimeWindow", STO(gc_window), wh_gc_window_conf),
    WH_CONF_SUB("retention", WH_CONF_SECTION, 0, STO(retention), wh_retention_keys),
    WH_CONF_SUB("wharf", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, store_wharf_keys),
    WH_CONF_FN("storageDriver", WH_CONF_NOSTORE, storage_driver),
    WH_CONF_IGNORED("cacheDriver", WH_CONF_WARN),
    WH_CONF_FN("subPaths", WH_CONF_NOSTORE, sub_paths),
    WH_CONF_END,
};

void wh_store_settings_init(wh_store_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->dedupe = true;
	s->gc = true;
	s->gc_delay_ms = -1; /* -1: absent, resolved by the check from gc */
	s->gc_interval_ms = -1;
	wh_gc_window_init(&s->gc_window);
	wh_retention_settings_init(&s->retention);
}

int wh_store_settings_check(wh_conf *c, wh_store_settings *s)
{
	if (!s->root_dir && !s->remote_driver) { /* with one, storageDriver says it */
		wh_conf_push_key(c, "storage.rootDirectory");
		return wh_conf_fail(c, "required");
	}
	/* Zot: without gc, an absent gcDelay/gcInterval is 0, not the default. */
	if (s->gc_delay_ms < 0)
		s->gc_delay_ms = s->gc ? WH_HOUR_MS : 0;
	if (s->gc_interval_ms < 0)
		s->gc_interval_ms = s->gc ? WH_HOUR_MS : 0;
	/* Zot: retention.delay is gcDelay (given or default) unless set, and 0
	 * without gc. */
	if (s->retention.delay_ms < 0)
		s->retention.delay_ms = s->gc ? s->gc_delay_ms : 0;
	if (!s->gc && s->gc_window.start_min >= 0) {
		size_t old = wh_conf_push_key(c, "storage.gcTimeWindow");
		wh_conf_notice(c, "gc is false: the window is ignored (as in Zot)");
		wh_conf_pop(c, old);
	}
	return 0;
}

void wh_store_settings_free(wh_store_settings *s)
{
	wh_retention_settings_free(&s->retention);
	free(s->root_dir);
	memset(s, 0, sizeof(*s));
}

/* ---- for the store's own modules (internal.h) ---- */

void wh_store__lock(wh_store *st)
{
	uv_mutex_lock(&st->lock);
}

void wh_store__unlock(wh_store *st)
{
	uv_mutex_unlock(&st->lock);
}

bool wh_store__dedupe(const wh_store *st)
{
	return st->dedupe;
}

static void index_id_of(const struct stat *sb, wh_index_id *id)
{
	id->ino = (uint64_t)sb->st_ino;
	id->size = (uint64_t)sb->st_size;
	id->mtime_ns = (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

bool wh_store__index_id(wh_store *st, const char *repo, wh_index_id *id)
{
	char path[PATH_MAX];
	struct stat sb;

	if (repo_path(st, repo, "index.json", path) < 0 || stat(path, &sb) < 0)
		return false;
	index_id_of(&sb, id);
	return true;
}

bool wh_store__index_id_eq(const wh_index_id *a, const wh_index_id *b)
{
	return a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

int wh_store__index_load(wh_store *st, const char *repo, cJSON **out, wh_index_id *id)
{
	/* The identity first: a file replaced between the two reads looks
	 * changed, never unchanged. */
	if (id && !wh_store__index_id(st, repo, id)) {
		*out = NULL;
		return WH_ENOTFOUND;
	}
	return index_load(st, repo, out);
}

int wh_store__index_write(wh_store *st, const char *repo, cJSON *idx)
{
	return index_write(st, repo, idx);
}

cJSON *wh_store__index_manifests(cJSON *idx)
{
	return index_manifests(idx);
}

const char *wh_store__entry_digest(const cJSON *e)
{
	return entry_digest(e);
}

const char *wh_store__entry_tag(const cJSON *e)
{
	return entry_tag(e);
}

void wh_store__entry_untag(cJSON *arr, cJSON *e)
{
	entry_untag(arr, e);
}

int wh_store__blob_path(const wh_store *st, const char *repo, const char *digest, char *buf)
{
	return blob_path(st, repo, digest, buf);
}

bool wh_store__repo_remove_if_empty(wh_store *st, const char *repo)
{
	char path[PATH_MAX];
	cJSON *idx = NULL;
	bool empty;

	if (index_load(st, repo, &idx) < 0)
		return false;
	empty = cJSON_GetArraySize(index_manifests(idx)) == 0;
	cJSON_Delete(idx);
	/* blobs/sha512 goes first when there is one: a repository that still
	 * holds a sha512 blob is not empty. */
	if (!empty || repo_path(st, repo, "blobs/sha512", path) < 0 ||
	    (rmdir(path) < 0 && errno != ENOENT) || repo_path(st, repo, "blobs/sha256", path) < 0 ||
	    rmdir(path) < 0)
		return false;
	/* From here the repository is going: what is left is its layout. */
	if (repo_path(st, repo, "blobs", path) == 0)
		rmdir(path);
	if (repo_path(st, repo, "index.json", path) == 0)
		unlink(path);
	if (repo_path(st, repo, "oci-layout", path) == 0)
		unlink(path);
	if (repo_path(st, repo, "", path) < 0)
		return true;
	path[strlen(path) - 1] = '\0'; /* the trailing slash */
	rmdir(path);                   /* fails when a nested repository lives there */
	fsync_parent(path);
	return true;
}

void wh_store__index_forget(wh_store *st, const char *repo)
{
	index_forget(st, repo);
}

void wh_store__catalog_remove(wh_store *st, const char *repo)
{
	bool found;
	int i = catalog_after(st, repo, &found);

	if (!found)
		return;
	i--; /* catalog_after points past it */
	free(st->repos[i]);
	memmove(st->repos + i, st->repos + i + 1,
	        sizeof(*st->repos) * (size_t)(st->n_repos - i - 1));
	st->n_repos--;
}
