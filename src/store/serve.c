/* Answers from the store. See include/wharf/store/serve.h. */
#include "wharf/store/serve.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/response.h"

void wh_serve_manifest_unknown(wh_req *req, wh_store *st, const char *name, const char *ref)
{
	if (!wh_store_repo_exists(st, name))
		wh_oci_name_unknown(req, name);
	else
		wh_oci_manifest_unknown(req, ref);
}

void wh_serve_manifest(wh_req *req, wh_store *st, const char *name, const char *ref)
{
	wh_manifest m = {0};
	int rc;
	if (req->is_head) {
		char *mt = NULL;
		int64_t size = 0;
		rc = wh_store_manifest_stat(st, name, ref, m.digest, &mt, &size);
		m.media_type = mt;
		m.len = (size_t)size;
	} else {
		rc = wh_store_manifest_get(st, name, ref, &m);
	}
	if (rc == WH_ENOTFOUND) {
		wh_serve_manifest_unknown(req, st, name, ref);
		return;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return;
	}
	wh_oci_start(req, 200);
	/* The store always knows one (store.h). */
	wh_resp_header(req, "Content-Type", "%s", m.media_type);
	wh_resp_header(req, "Docker-Content-Digest", "%s", m.digest);
	wh_resp_header(req, "ETag", "\"%s\"", m.digest);
	wh_resp_length(req, (int64_t)m.len);
	if (!req->is_head) {
		wh_resp_write(req, m.data, m.len);
		wh_store_note_pull(st, name, m.digest);
	}
	wh_resp_end(req);
	wh_manifest_free(&m);
}

int64_t wh_serve_blob(wh_req *req, wh_store *st, const char *name, const char *digest)
{
	int fd = -1;
	int64_t size = 0;
	int rc = wh_store_blob_open(st, name, digest, &fd, &size);
	if (rc == WH_ENOTFOUND) {
		wh_oci_blob_unknown(req, digest);
		return 0;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return 0;
	}
	int64_t rs, re, a = 0, z = size - 1;
	bool range = wh_req_range(req, &rs, &re);
	if (range && !wh_range_resolve(rs, re, size, &a, &z))
		a = 1, z = 0; /* unsatisfiable */
	if (!wh_oci_blob_head(req, digest, size, true, range, a, z)) {
		close(fd);
		return 0;
	}
	int64_t n = size ? z - a + 1 : 0;
	if (n > 0)
		wh_resp_sendfile(req, fd, a, n);
	else
		close(fd);
	wh_resp_end(req);
	return n;
}

static int cmp_desc_digest(const void *a, const void *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "digest");
	const cJSON *y = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "digest");
	return strcmp(x->valuestring, y->valuestring);
}

/* The store's referrers merged with the upstream's, in digest order as the
 * store lists them, filtered here. Returns a malloc'd index, or NULL when
 * out of memory. */
static char *referrers_merge(const char *local, const char *upstream, const char *filter)
{
	char *out = NULL;
	cJSON *doc = cJSON_Parse(local);
	cJSON *up = cJSON_Parse(upstream);
	cJSON *list = cJSON_DetachItemFromObjectCaseSensitive(doc, "manifests");
	cJSON *d;
	cJSON **v = NULL;
	int n = 0;
	if (!doc || !cJSON_IsArray(list) || !cJSON_IsArray(up))
		goto out;
	v = wh_malloc(sizeof(*v) * (size_t)(cJSON_GetArraySize(list) + cJSON_GetArraySize(up) + 1));
	cJSON_ArrayForEach(d, list)
	{
		v[n++] = d;
	}
	int n_local = n;
	cJSON_ArrayForEach(d, up)
	{
		const char *dg = cJSON_GetObjectItemCaseSensitive(d, "digest")->valuestring;
		bool dup = false;
		for (int i = 0; i < n_local && !dup; i++)
			dup = strcmp(cJSON_GetObjectItemCaseSensitive(v[i], "digest")->valuestring,
			             dg) == 0;
		if (!dup)
			v[n++] = d;
	}
	if (n > 0)
		qsort(v, (size_t)n, sizeof(*v), cmp_desc_digest);
	cJSON *merged = cJSON_AddArrayToObject(doc, "manifests");
	for (int i = 0; merged && i < n; i++) {
		const cJSON *at = cJSON_GetObjectItemCaseSensitive(v[i], "artifactType");
		if (filter && !(cJSON_IsString(at) && strcmp(at->valuestring, filter) == 0))
			continue;
		cJSON_AddItemToArray(merged, cJSON_Duplicate(v[i], true));
	}
	if (merged)
		out = cJSON_PrintUnformatted(doc);
out:
	free(v);
	cJSON_Delete(list);
	cJSON_Delete(up);
	cJSON_Delete(doc);
	return out;
}

void wh_serve_referrers(wh_req *req, wh_store *st, const char *name, const char *digest,
                        const char *upstream)
{
	char at[WH_MEDIA_TYPE_MAX + 1];
	int qa = wh_oci_query(req, "artifactType", at, sizeof(at));
	if (qa < 0) {
		wh_oci_error(req, 400, "UNSUPPORTED", "artifactType is too long", NULL);
		return;
	}
	const char *filter = qa > 0 ? at : NULL;
	char *json = NULL;
	int rc = wh_store_referrers(st, name, digest, upstream ? NULL : filter, &json);
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return;
	}
	if (upstream) {
		char *merged = referrers_merge(json, upstream, filter);
		free(json);
		json = merged;
		if (!json) {
			wh_oci_storage_error(req, WH_ENOMEM);
			return;
		}
	}
	wh_oci_start(req, 200);
	wh_resp_header(req, "Content-Type", WH_MT_OCI_INDEX);
	if (filter)
		wh_resp_header(req, "OCI-Filters-Applied", "artifactType");
	wh_resp_length(req, (int64_t)strlen(json));
	wh_resp_write(req, json, strlen(json));
	wh_resp_end(req);
	free(json);
}

void wh_serve_tags(wh_req *req, wh_store *st, const char *name, const wh_upstream_tags *up)
{
	int n;
	char last[WH_TAG_MAX + 2];
	bool has_last;
	if (wh_oci_page_params(req, &n, last, sizeof(last), &has_last))
		return;
	bool known = up && up->known;
	int n_up = known ? up->n : 0;
	char **tags = NULL;
	int count = 0;
	bool more = false;
	int rc = wh_store_tags(st, name, known ? NULL : (has_last ? last : NULL), known ? -1 : n,
	                       &tags, &count, &more);
	if (rc == WH_ENOTFOUND && n_up == 0) {
		if (up && !known)
			wh_oci_error(req, 502, "UNKNOWN",
			             up->why ? up->why : "the upstream registry is unavailable",
			             "and nothing of this repository is cached");
		else
			wh_oci_name_unknown(req, name);
		return;
	}
	if (rc != 0 && rc != WH_ENOTFOUND) {
		wh_oci_storage_error(req, rc);
		return;
	}
	char **page = tags;
	int n_page = count;
	char **all = NULL;
	if (known) {
		/* Both lists are sorted; merged, repeats dropped, then paged. */
		int n_all = 0;
		all = wh_malloc(sizeof(*all) * (size_t)(count + n_up + 1));
		for (int i = 0; i < count; i++)
			all[n_all++] = tags[i];
		for (int i = 0; i < n_up; i++)
			all[n_all++] = up->tags[i];
		if (n_all > 0)
			qsort(all, (size_t)n_all, sizeof(*all), wh_store_tag_cmp);
		n_page = wh_store_page(all, n_all, has_last ? last : NULL, n, &more);
		page = all;
	}
	char link[WH_NAME_MAX + 32];
	snprintf(link, sizeof(link), "/v2/%s/tags/list", name);
	wh_oci_list(req, link, "tags", name, page, n_page, more, n);
	free(all); /* its strings are tags' and up's */
	wh_strv_free(tags, count);
}
