/* Shared definitions: the project's error codes and a few small helpers.
 *
 * Functions return 0 on success or a negative WH_E* code. libuv, curl,
 * mbedTLS and cJSON errors are translated where they are called; errno
 * values from system calls are returned as -errno (all WH_E* codes are
 * below -4096 so the two never collide). */
#ifndef WHARF_COMMON_H
#define WHARF_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	WH_EINVAL = -5001,    /* bad input: the caller's data is wrong */
	WH_ENOMEM = -5002,    /* allocation failed */
	WH_ENOTFOUND = -5003, /* the object does not exist */
	WH_EEXIST = -5004,    /* the object exists already */
	WH_ETOOBIG = -5005,   /* over a configured limit */
	WH_EIO = -5006,       /* storage failed: see the log for the system error */
	WH_EDIGEST = -5007,   /* content does not match its digest */
	WH_ERANGE = -5008,    /* offset or range not satisfiable */
	WH_EUPSTREAM = -5009, /* the upstream registry failed or refused */
	WH_EINUSE = -5010,    /* something else still uses or references the object */
};

#define WH_ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))
#define WH_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define WH_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define WH_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A human-readable text for a WH_E* code or a -errno value. */
const char *wh_strerror(int err);

/* True when err (a -errno value) says the storage is full: no space left
 * on the device (-ENOSPC) or the quota is used up (-EDQUOT). The one test
 * for it: every write's error reaches its caller as -errno, and whoever
 * answers a request or a fetch asks this, not the errno itself. */
bool wh_err_disk_full(int err);

/* Allocation that never returns NULL: on failure it logs and aborts. Memory
 * exhaustion on an edge box is not an error we can serve through. */
void *wh_malloc(size_t n);
void *wh_calloc(size_t n, size_t size);
void *wh_realloc(void *p, size_t n);
char *wh_strdup(const char *s);
char *wh_strndup(const char *s, size_t n);

/* What a capacity grows to so that it holds need: doubled (from first when
 * it is 0) until it does. Every growing buffer and array here grows so. */
size_t wh_grow_cap(size_t cap, size_t need, size_t first);

/* Room for one more element in v, an array of *cap elements of size bytes
 * of which n are used: when it is full, *cap grows (wh_grow_cap, from
 * first) and v is reallocated. Returns v, perhaps moved. */
void *wh_grow(void *v, size_t size, int n, int *cap, int first);

/* Append n bytes to a buffer that grows by doubling (*buf holds *len bytes
 * of *cap), always keeping room for a NUL after them, which is written. The
 * caller bounds how much it appends. */
void wh_buf_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n);

/* Read what fd holds, to its end, into a malloc'd NUL-terminated *buf of
 * *len bytes (a regular file in one read, sized by fstat). Returns 0,
 * -errno, or WH_ETOOBIG when it holds more than max bytes; nothing is
 * returned (*buf NULL) but on success. fd stays open. */
int wh_read_fd(int fd, size_t max, char **buf, size_t *len);

/* wh_read_fd on the file at path (links followed), opened and closed here.
 * An error opening it is -errno. */
int wh_read_file(const char *path, size_t max, char **buf, size_t *len);

/* Binary search in v, n elements of size bytes sorted by cmp(element,
 * key): the index of key with *found set, or where it would be inserted. */
int wh_bsearch_pos(const void *v, int n, size_t size, const void *key,
                   int (*cmp)(const void *elem, const void *key), bool *found);

/* The same for elements sorted by strcmp of the string each points to at
 * byte offset off (a char * member). */
int wh_sorted_pos(const void *v, int n, size_t size, size_t off, const char *want, bool *found);

/* Monotonic time in milliseconds. */
uint64_t wh_now_ms(void);

#endif
