/* The OCI Distribution API's answers. See include/wharf/oci/response.h. */
#include "wharf/oci/response.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"

#define PAGE_N_MAX 100000 /* the largest n a list request may ask for */

void wh_oci_start(wh_req *req, int status)
{
	wh_resp_start(req, status);
	wh_resp_header(req, "Docker-Distribution-API-Version", WH_API_VERSION);
}

void wh_oci_error(wh_req *req, int status, const char *code, const char *message,
                  const char *detail)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *errs = cJSON_AddArrayToObject(root, "errors");
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", message);
	if (detail)
		cJSON_AddStringToObject(e, "detail", detail);
	cJSON_AddItemToArray(errs, e);
	char *body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	wh_oci_start(req, status);
	wh_resp_header(req, "Content-Type", "application/json");
	wh_resp_length(req, (int64_t)strlen(body));
	wh_resp_write(req, body, strlen(body));
	wh_resp_end(req);
	cJSON_free(body);
}

void wh_oci_name_unknown(wh_req *req, const char *name)
{
	wh_oci_error(req, 404, "NAME_UNKNOWN", "repository name not known to registry", name);
}

void wh_oci_manifest_unknown(wh_req *req, const char *detail)
{
	wh_oci_error(req, 404, "MANIFEST_UNKNOWN", "manifest unknown to registry", detail);
}

void wh_oci_blob_unknown(wh_req *req, const char *detail)
{
	wh_oci_error(req, 404, "BLOB_UNKNOWN", "blob unknown to registry", detail);
}

void wh_oci_method_not_allowed(wh_req *req)
{
	wh_oci_error(req, 405, "UNSUPPORTED", "method not allowed", req->method);
}

void wh_oci_storage_error(wh_req *req, int rc)
{
	wh_log(WH_LOG_ERROR, wh_err_disk_full(rc) ? "disk full" : "storage error", "method", WH_LS,
	       req->method, "path", WH_LS, req->path, "error", WH_LS, wh_strerror(rc), NULL);
	wh_oci_storage_answer(req, rc, wh_strerror(rc));
}

void wh_oci_storage_answer(wh_req *req, int rc, const char *detail)
{
	/* 507 Insufficient Storage (RFC 4918): the request may well succeed
	 * once room is made, which a client (or its operator) can tell from a
	 * 500. The code stays UNKNOWN: the spec has none for it. */
	if (wh_err_disk_full(rc))
		wh_oci_error(req, 507, "UNKNOWN", "storage is full", detail);
	else
		wh_oci_error(req, 500, "UNKNOWN", "storage error", detail);
}

void wh_oci_empty(wh_req *req, int status)
{
	wh_oci_start(req, status);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

bool wh_oci_blob_head(wh_req *req, const char *digest, int64_t size, bool immutable, bool range,
                      int64_t a, int64_t z)
{
	if (range && a > z) {
		wh_oci_start(req, 416);
		wh_resp_header(req, "Content-Range", "bytes */%" PRId64, size);
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return false;
	}
	wh_oci_start(req, range ? 206 : 200);
	wh_resp_header(req, "Content-Type", "application/octet-stream");
	wh_resp_header(req, "Docker-Content-Digest", "%s", digest);
	wh_resp_header(req, "Accept-Ranges", "bytes");
	if (immutable) {
		/* Content-addressed: the bytes behind a digest never change. */
		wh_resp_header(req, "ETag", "\"%s\"", digest);
		wh_resp_header(req, "Cache-Control", "max-age=31536000, immutable");
	}
	if (range)
		wh_resp_header(req, "Content-Range", "bytes %" PRId64 "-%" PRId64 "/%" PRId64, a, z,
		               size);
	if (range)
		wh_resp_length(req, z - a + 1);
	else if (size >= 0)
		wh_resp_length(req, size);
	return true;
}

void wh_oci_list(wh_req *req, const char *link_path, const char *key, const char *name,
                 char *const *items, int count, bool more, int n)
{
	cJSON *doc = cJSON_CreateObject();
	if (name)
		cJSON_AddStringToObject(doc, "name", name);
	cJSON *arr = cJSON_AddArrayToObject(doc, key);
	for (int i = 0; i < count; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
	char *body = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	wh_oci_start(req, 200);
	wh_resp_header(req, "Content-Type", "application/json");
	if (more && count > 0 && n > 0)
		wh_resp_header(req, "Link", "<%s?n=%d&last=%s>; rel=\"next\"", link_path, n,
		               items[count - 1]);
	wh_resp_length(req, (int64_t)strlen(body));
	wh_resp_write(req, body, strlen(body));
	wh_resp_end(req);
	cJSON_free(body);
}

int wh_oci_query(const wh_req *req, const char *name, char *buf, size_t len)
{
	if (wh_req_query(req, name, buf, len))
		return 1;
	return wh_req_query_has(req, name) ? -1 : 0;
}

bool wh_oci_page_params(wh_req *req, int *n, char *last, size_t lastlen, bool *has_last)
{
	char buf[32];
	*n = -1;
	int ql = wh_oci_query(req, "last", last, lastlen);
	if (ql < 0) {
		/* Read as absent, it would restart the listing from the top. */
		wh_oci_error(req, 400, "UNSUPPORTED", "last is longer than any name or tag", NULL);
		return true;
	}
	*has_last = ql > 0;
	int qn = wh_oci_query(req, "n", buf, sizeof(buf));
	if (qn < 0) {
		wh_oci_error(req, 400, "UNSUPPORTED", "n must be a non-negative integer", NULL);
		return true;
	}
	if (qn > 0) {
		char *e;
		errno = 0;
		long v = strtol(buf, &e, 10);
		if (!*buf || *e || errno || v < 0 || v > PAGE_N_MAX) {
			wh_oci_error(req, 400, "UNSUPPORTED", "n must be a non-negative integer",
			             buf);
			return true;
		}
		*n = (int)v;
	}
	return false;
}
