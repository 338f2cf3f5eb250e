/* The OCI distribution grammars for repository names, tags and digests, and
 * the hashes of the two registered digest algorithms, sha256 and sha512
 * (mbedTLS, sha256 in hardware where the CPU has it). Everything that reaches
 * the store from the network is validated here first; a name that passes
 * cannot escape rootDirectory. */
#ifndef WHARF_REF_H
#define WHARF_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_NAME_MAX   255 /* whole repository name, bytes */
#define WH_TAG_MAX    128
#define WH_SHA256_HEX 64                           /* the encoded part of a sha256 digest */
#define WH_SHA512_HEX 128                          /* of a sha512 digest */
#define WH_SHA256_LEN (7 + WH_SHA256_HEX)          /* "sha256:" + hex */
#define WH_SHA512_LEN (7 + WH_SHA512_HEX)          /* "sha512:" + hex */
#define WH_DIGEST_HEX WH_SHA512_HEX                /* the longest encoded part Wharf takes */
#define WH_DIGEST_LEN (7 + WH_DIGEST_HEX)          /* the longest digest: room for any, as text */
#define WH_REF_MAX    (WH_TAG_MAX + WH_DIGEST_LEN) /* a reference: a tag or a digest */
#define WH_UUID_LEN   36                           /* an upload session's id, a UUID as text */

/* `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
 * at most WH_NAME_MAX bytes. len is the length of s (s need not be NUL-terminated). */
bool wh_name_valid(const char *s, size_t len);

/* A valid name that an image layout can hold: each repository is a
 * directory holding oci-layout, index.json and blobs/<alg>/ (sha256,
 * sha512), so a nested repository may not take one of those paths (the
 * grammar allows such names). name is NUL-terminated. */
bool wh_name_storable(const char *name);

/* `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` */
bool wh_tag_valid(const char *s, size_t len);

enum {
	WH_DIGEST_OK = 0,
	WH_DIGEST_BAD = -1,         /* not `algorithm:encoded` per the grammar */
	WH_DIGEST_UNSUPPORTED = -2, /* well formed, but neither sha256 nor sha512 */
};
/* Check a digest string. The registered algorithms are checked as the image
 * spec defines them: "sha256:" + 64 and "sha512:" + 128 lower-case hex;
 * other algorithms that match the spec's general grammar are UNSUPPORTED. */
int wh_digest_check(const char *s, size_t len);

/* The digest algorithms Wharf hashes with. */
typedef enum wh_digest_alg {
	WH_ALG_NONE = 0,
	WH_ALG_SHA256 = 1,
	WH_ALG_SHA512 = 2,
} wh_digest_alg;

/* The algorithm of a digest that wh_digest_check found OK (WH_ALG_NONE for
 * anything else: it looks at the algorithm part only). */
wh_digest_alg wh_digest_alg_of(const char *digest);

/* An algorithm by its name as a digest spells it ("sha256", "sha512"; len
 * bytes of s), WH_ALG_NONE when it is neither. */
wh_digest_alg wh_digest_alg_named(const char *s, size_t len);

/* "sha256" or "sha512" (the directory under blobs/ too); "" for NONE. */
const char *wh_digest_alg_name(wh_digest_alg alg);

/* The encoded part of a digest (after the ':'): a blob's file name. digest
 * must have been checked (it has a ':'). */
const char *wh_digest_encoded(const char *digest);

/* Copy a digest into a buffer of WH_DIGEST_LEN + 1 bytes, truncating what
 * could not be one (never reading past src's NUL). */
void wh_digest_copy(char dst[WH_DIGEST_LEN + 1], const char *src);

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

/* Incremental sha512 (src/oci/digest.c, mbedTLS's portable code: x86-64
 * has no instructions for it). Plain memory as wh_sha256: embed it, copy
 * it by value to fork the hash, no free needed. */
typedef struct wh_sha512 {
	uint64_t opaque[28];
} wh_sha512;

void wh_sha512_init(wh_sha512 *h);
void wh_sha512_update(wh_sha512 *h, const void *data, size_t len);
/* Writes "sha512:<128 hex>" and a NUL into out[WH_DIGEST_LEN + 1]; h is
 * spent afterwards. */
void wh_sha512_final(wh_sha512 *h, char out[WH_DIGEST_LEN + 1]);

/* The state of a sha512 context between updates, as wh_sha256_state: the
 * eight chaining words, the byte count, the pending bytes. */
typedef struct wh_sha512_state {
	uint64_t h[8];
	uint64_t total;     /* bytes hashed so far */
	uint8_t block[128]; /* the first total % 128 bytes are the pending block */
} wh_sha512_state;

void wh_sha512_export(const wh_sha512 *h, wh_sha512_state *out);
void wh_sha512_import(wh_sha512 *h, const wh_sha512_state *in);

/* A hash of either algorithm, chosen when it starts: what verifies content
 * against the digest a client or an upstream names. Plain memory (copying
 * it forks the hash). */
typedef struct wh_digest_ctx {
	wh_digest_alg alg;
	union {
		wh_sha256 sha256;
		wh_sha512 sha512;
	} u;
} wh_digest_ctx;

/* Start a hash with alg (WH_ALG_NONE is taken as sha256, the default
 * algorithm of the spec). */
void wh_digest_init(wh_digest_ctx *c, wh_digest_alg alg);
void wh_digest_update(wh_digest_ctx *c, const void *data, size_t len);
/* "<alg>:<hex>" and a NUL into out; c is spent afterwards. */
void wh_digest_final(wh_digest_ctx *c, char out[WH_DIGEST_LEN + 1]);
/* One-shot. */
void wh_digest_of(wh_digest_alg alg, const void *data, size_t len, char out[WH_DIGEST_LEN + 1]);

#endif
