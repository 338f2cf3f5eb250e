/* Manifests as the OCI image spec and Docker's schema 2 define them: the
 * media types, and the one check every manifest passes before it is stored,
 * whether a client pushed it or an upstream sent it. The check is about the
 * document alone; whether the blobs and manifests it references are present
 * is the caller's business (a push requires them, a pull-through fills them
 * later). */
#ifndef WHARF_MANIFEST_H
#define WHARF_MANIFEST_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define WH_MANIFEST_MAX      (4 * 1024 * 1024) /* bytes: larger ones are refused */
#define WH_MANIFEST_MAX_TEXT "4 MiB"           /* the same, for messages */

#define WH_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define WH_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define WH_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define WH_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"

/* An Accept header naming every manifest type above, indexes first. */
#define WH_MT_ACCEPT_MANIFESTS                                                                     \
	WH_MT_OCI_INDEX ", " WH_MT_OCI_MANIFEST ", " WH_MT_DOCKER_LIST ", " WH_MT_DOCKER_MANIFEST

/* The longest media type: 127 + 1 + 127 bytes (RFC 6838). */
#define WH_MEDIA_TYPE_MAX 255

/* Room for wh_manifest_check's detail. */
#define WH_MANIFEST_DETAIL_MAX 256

/* What the check learnt. doc is the parsed document (the caller frees it with
 * cJSON_Delete); the other pointers point into it. */
typedef struct wh_manifest_doc {
	cJSON *doc;
	char media_type[128]; /* the manifest's type (always one of WH_MT_*) */
	bool is_index;
	const cJSON *config;    /* image manifest: the config descriptor */
	const cJSON *layers;    /* image manifest: array of descriptors, or NULL */
	const cJSON *manifests; /* index: array of descriptors */
	const char *subject;    /* the subject's digest, or NULL */
} wh_manifest_doc;

/* Check manifest bytes: a JSON object (nothing after it), schemaVersion 2,
 * a media type Wharf stores, agreeing between content_type and the
 * document's own mediaType, and well-formed descriptors (a digest of the
 * spec's grammar, a non-negative integer size, a string mediaType). The
 * media type is content_type when it names a manifest, else the document's
 * mediaType, else inferred (an index has "manifests"). content_type may be
 * NULL; parameters and the generic application/json and
 * application/octet-stream are ignored. Returns 0 and fills *out, or -1 with
 * *why (a static message) and detail (the offending value, or "") set and
 * nothing to free. */
int wh_manifest_check(const char *data, size_t len, const char *content_type, wh_manifest_doc *out,
                      const char **why, char *detail, size_t detail_len);

/* A descriptor's size: a non-negative integer that a double holds exactly
 * (at most 2^53). */
bool wh_descriptor_size_ok(const cJSON *size);

/* A media type as RFC 6838 has it: type/subtype of restricted-name
 * characters, at most WH_MEDIA_TYPE_MAX bytes (parameters are not part of
 * one here). */
bool wh_media_type_valid(const char *media_type);

/* A descriptor as the spec requires one wherever it is listed on its own
 * (referrers): a valid mediaType, a digest of the spec's grammar, a size,
 * an optional valid artifactType and annotations of strings. The manifest
 * check is more lenient with the descriptors inside a manifest (mediaType
 * need only be a string), as registries are. */
bool wh_descriptor_valid(const cJSON *d);

/* True for the four manifest types above. */
bool wh_manifest_type_known(const char *media_type);

/* True for the two index types (an OCI image index, a Docker manifest list). */
bool wh_manifest_type_is_index(const char *media_type);

/* The media type a parsed manifest gives itself: its mediaType when that is
 * a string, else inferred as the image spec suggests (a document with
 * "manifests" is an image index, anything else an image manifest). Points
 * into doc or to a constant. */
const char *wh_manifest_type_of(const cJSON *doc);

#endif
