/* The OCI distribution grammars for repository names, tags and digests, and
 * sha256 hashing (mbedTLS). Everything that reaches the store from the network
 * is validated here first; a name that passes cannot escape rootDirectory. */
#ifndef WHARF_REF_H
#define WHARF_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_NAME_MAX   255 /* whole repository name, bytes */
#define WH_TAG_MAX    128
#define WH_DIGEST_HEX 64                           /* sha256 */
#define WH_DIGEST_LEN (7 + WH_DIGEST_HEX)          /* "sha256:" + hex */
#define WH_REF_MAX    (WH_TAG_MAX + WH_DIGEST_LEN) /* a reference: a tag or a digest */
#define WH_UUID_LEN   36                           /* an upload session's id, a UUID as text */

/* `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
 * at most WH_NAME_MAX bytes. len is the length of s (s need not be NUL-terminated). */
bool wh_name_valid(const char *s, size_t len);

/* A valid name that an image layout can hold: each repository is a
 * directory holding oci-layout, index.json and blobs/sha256/, so a nested
 * repository may not take one of those paths (the grammar allows such
 * names). name is NUL-terminated. */
bool wh_name_storable(const char *name);

/* `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` */
bool wh_tag_valid(const char *s, size_t len);

enum {
	WH_DIGEST_OK = 0,
	WH_DIGEST_BAD = -1,         /* not `algorithm:encoded` per the grammar */
	WH_DIGEST_UNSUPPORTED = -2, /* well formed, but not sha256 (e.g. sha512) */
};
/* Check a digest string. sha256 digests must be "sha256:" + 64 lower-case hex;
 * other algorithms that match the spec's general grammar are UNSUPPORTED. */
int wh_digest_check(const char *s, size_t len);

/* True when s looks like a digest (contains ':'), i.e. a reference that must
 * be treated as a digest rather than as a tag. */
bool wh_ref_is_digest(const char *s, size_t len);

/* Incremental sha256 (src/oci/sha256.c). On x86-64 CPUs with the SHA
 * extensions a hardware path is chosen at run time; elsewhere mbedTLS does
 * the work. The context is plain memory: embed it, no free needed. */
typedef struct wh_sha256 {
	int impl;            /* which implementation holds the state */
	uint64_t opaque[32]; /* its state */
} wh_sha256;

void wh_sha256_init(wh_sha256 *h);
void wh_sha256_update(wh_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<64 hex>" and a NUL into out[WH_DIGEST_LEN + 1]. h is
 * spent afterwards: wh_sha256_init it again to reuse it. A context is plain
 * bytes (the software implementation holds no pointers): copying it by value
 * forks the hash. */
void wh_sha256_final(wh_sha256 *h, char out[WH_DIGEST_LEN + 1]);
/* The state of a context between updates, in a form that does not depend on
 * the implementation that holds it (the hardware path and mbedTLS keep it
 * differently): the eight chaining words, the byte count, and the bytes of
 * the last partial block. Export from one implementation and import into
 * another continues the same hash; an upload session saves it beside its
 * bytes so a later process goes on from there without reading them again. */
typedef struct wh_sha256_state {
	uint32_t h[8];
	uint64_t total;    /* bytes hashed so far */
	uint8_t block[64]; /* the first total % 64 bytes are the pending block */
} wh_sha256_state;

void wh_sha256_export(const wh_sha256 *h, wh_sha256_state *out);
/* Replace h's state with in's, in the implementation new contexts use. */
void wh_sha256_import(wh_sha256 *h, const wh_sha256_state *in);

/* One-shot helper. */
void wh_sha256_digest(const void *data, size_t len, char out[WH_DIGEST_LEN + 1]);

/* The implementation new contexts use: "sha-ni" or "mbedtls". */
const char *wh_sha256_impl(void);
/* Tests and benchmarks: use mbedTLS even where the hardware path exists
 * (portable = true), or go back to the best one. Affects new contexts. */
void wh_sha256_force_portable(bool portable);

#endif
