/* The OCI Distribution API's answers, as every part of Wharf that answers a
 * registry client gives them: the spec's JSON errors and their usual
 * forms, the head of a blob answer, the list answers (tags, catalog) and
 * the request parameters they share. Each function answers req completely
 * unless it says otherwise. */
#ifndef WHARF_RESPONSE_H
#define WHARF_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wharf/net/http.h"

/* Docker-Distribution-API-Version, on every answer of the API. */
#define WH_API_VERSION "registry/2.0"

/* Start an answer of the API: status, then Docker-Distribution-API-Version.
 * The caller adds its headers and ends it. */
void wh_oci_start(wh_req *req, int status);

/* The spec's JSON error: {"errors":[{"code":...,"message":...,"detail":...}]}
 * with status. detail may be NULL (then absent). */
void wh_oci_error(wh_req *req, int status, const char *code, const char *message,
                  const char *detail);

/* The usual errors of the spec, each one way everywhere. */
void wh_oci_name_unknown(wh_req *req, const char *name);       /* 404 NAME_UNKNOWN */
void wh_oci_manifest_unknown(wh_req *req, const char *detail); /* 404 MANIFEST_UNKNOWN */
void wh_oci_blob_unknown(wh_req *req, const char *detail);     /* 404 BLOB_UNKNOWN */
void wh_oci_method_not_allowed(wh_req *req);                   /* 405 UNSUPPORTED */

/* A failure of our own storage (rc a WH_E* code or -errno): one line
 * logged with the request's method and path ("disk full" when
 * wh_err_disk_full(rc), else "storage error"), and answered as
 * wh_oci_storage_answer with the reason as detail. */
void wh_oci_storage_error(wh_req *req, int rc);

/* The answer to a failure of our own storage, not logged (for a failure
 * logged once for several clients, a cache fill's): 507 UNKNOWN "storage
 * is full" when wh_err_disk_full(rc), else 500 UNKNOWN "storage error";
 * detail may be NULL. */
void wh_oci_storage_answer(wh_req *req, int rc, const char *detail);

/* An answer with no body: status, the API version, Content-Length: 0. */
void wh_oci_empty(wh_req *req, int status);

/* Start the answer to a blob GET/HEAD: 200, or 206 for [a, z] when range,
 * with the blob's headers and Content-Length; size < 0 (not known; never
 * with range) sends no Content-Length. immutable adds a strong ETag and
 * Cache-Control: immutable (the bytes behind a digest never change): false
 * only for a HEAD answered from what the upstream said, which Wharf has not
 * fetched. The caller sends the body (or not, for HEAD) and ends. When
 * range is set and cannot be satisfied (a > z), answers 416 completely and
 * returns false. */
bool wh_oci_blob_head(wh_req *req, const char *digest, int64_t size, bool immutable, bool range,
                      int64_t a, int64_t z);

/* A list answer, {"name": name, key: [items...]} (no "name" when NULL),
 * with a Link to the next page (link_path?n=&last=) when more and n > 0. */
void wh_oci_list(wh_req *req, const char *link_path, const char *key, const char *name,
                 char *const *items, int count, bool more, int n);

/* A query parameter: 1 with its value in buf, 0 when it was not sent, -1
 * when it was sent but cannot be used (longer than buf, or a NUL in it): the
 * caller answers 400 rather than act as if it had not been sent. */
int wh_oci_query(const wh_req *req, const char *name, char *buf, size_t len);

/* A list's paging parameters: n (*n = -1 when not given; at most 100000)
 * and last (into last[lastlen], *has_last). Returns false, or answers 400
 * and returns true. */
bool wh_oci_page_params(wh_req *req, int *n, char *last, size_t lastlen, bool *has_last);

#endif
