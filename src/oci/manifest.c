/* The manifest check shared by pushes and pull-through fills. */
#include "wharf/oci/manifest.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wharf/oci/ref.h"

bool wh_manifest_type_known(const char *mt)
{
	return strcmp(mt, WH_MT_OCI_MANIFEST) == 0 || strcmp(mt, WH_MT_OCI_INDEX) == 0 ||
	       strcmp(mt, WH_MT_DOCKER_MANIFEST) == 0 || strcmp(mt, WH_MT_DOCKER_LIST) == 0;
}

bool wh_manifest_type_is_index(const char *mt)
{
	return strcmp(mt, WH_MT_OCI_INDEX) == 0 || strcmp(mt, WH_MT_DOCKER_LIST) == 0;
}

const char *wh_manifest_type_of(const cJSON *doc)
{
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(doc, "mediaType");
	if (cJSON_IsString(mt))
		return mt->valuestring;
	return cJSON_GetObjectItemCaseSensitive(doc, "manifests") ? WH_MT_OCI_INDEX
	                                                          : WH_MT_OCI_MANIFEST;
}

bool wh_descriptor_size_ok(const cJSON *sz)
{
	if (!cJSON_IsNumber(sz))
		return false;
	double v = sz->valuedouble;
	/* In range first, so the cast below is defined. */
	return isfinite(v) && v >= 0 && v <= 9007199254740992.0 && (double)(int64_t)v == v;
}

bool wh_media_type_valid(const char *mt)
{
	size_t n = strlen(mt);
	const char *slash = strchr(mt, '/');
	if (!slash || slash == mt || n - (size_t)(slash - mt) - 1 == 0 || n > WH_MEDIA_TYPE_MAX)
		return false;
	for (const char *p = mt; *p; p++)
		if (p != slash && !isalnum((unsigned char)*p) && !strchr("!#$&-^_.+", *p))
			return false;
	return true;
}

bool wh_descriptor_valid(const cJSON *d)
{
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(d, "mediaType");
	const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(d, "artifactType");
	const cJSON *ann = cJSON_GetObjectItemCaseSensitive(d, "annotations");
	const cJSON *a;
	if (!cJSON_IsObject(d) || !cJSON_IsString(mt) || !wh_media_type_valid(mt->valuestring) ||
	    !cJSON_IsString(dg) ||
	    wh_digest_check(dg->valuestring, strlen(dg->valuestring)) != WH_DIGEST_OK ||
	    !wh_descriptor_size_ok(cJSON_GetObjectItemCaseSensitive(d, "size")))
		return false;
	if (at && (!cJSON_IsString(at) || !wh_media_type_valid(at->valuestring)))
		return false;
	if (ann) {
		if (!cJSON_IsObject(ann))
			return false;
		cJSON_ArrayForEach(a, ann)
		{
			if (!cJSON_IsString(a))
				return false;
		}
	}
	return true;
}

static int check_descriptor(const cJSON *d, const char **why, const char **detail)
{
	const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(d, "mediaType");
	if (!cJSON_IsObject(d) || !cJSON_IsString(dg) ||
	    !wh_descriptor_size_ok(cJSON_GetObjectItemCaseSensitive(d, "size")) ||
	    (mt && !cJSON_IsString(mt))) {
		*why = "invalid descriptor";
		return -1;
	}
	if (wh_digest_check(dg->valuestring, strlen(dg->valuestring)) != WH_DIGEST_OK) {
		*why = "invalid digest in descriptor";
		*detail = dg->valuestring;
		return -1;
	}
	return 0;
}

static int check_array(const cJSON *arr, const char **why, const char **detail)
{
	const cJSON *d;
	cJSON_ArrayForEach(d, arr)
	{
		if (check_descriptor(d, why, detail) != 0)
			return -1;
	}
	return 0;
}

/* The content type as a manifest type: parameters dropped, generic types
 * (which say nothing about the manifest) as none. */
static void declared_type(const char *ct, char *out, size_t outlen)
{
	out[0] = '\0';
	if (!ct)
		return;
	size_t n = strcspn(ct, "; \t");
	if (n >= outlen)
		n = 0; /* longer than any type we know: not one of them */
	memcpy(out, ct, n);
	out[n] = '\0';
	if (strcmp(out, "application/json") == 0 || strcmp(out, "application/octet-stream") == 0)
		out[0] = '\0';
}

int wh_manifest_check(const char *data, size_t len, const char *content_type, wh_manifest_doc *out,
                      const char **why, char *detail, size_t detail_len)
{
	const char *d = NULL;
	memset(out, 0, sizeof(*out));
	*why = NULL;
	if (detail_len)
		detail[0] = '\0';
	char ct[128];
	declared_type(content_type, ct, sizeof(ct));
	if (len > WH_MANIFEST_MAX) {
		*why = "manifest too large";
		return -1;
	}
	const char *end = data;
	cJSON *doc = cJSON_ParseWithLengthOpts(data, len, &end, false);
	/* Whitespace may follow the document; nothing else. */
	bool trailing = false;
	for (const char *p = end; doc && p < data + len; p++)
		trailing |= *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n';
	if (!cJSON_IsObject(doc) || trailing) {
		*why = "manifest is not a JSON object";
		goto fail;
	}
	const cJSON *sv = cJSON_GetObjectItemCaseSensitive(doc, "schemaVersion");
	if (!cJSON_IsNumber(sv) || sv->valuedouble != 2) {
		*why = "schemaVersion must be 2";
		goto fail;
	}
	const cJSON *jmt = cJSON_GetObjectItemCaseSensitive(doc, "mediaType");
	if (jmt && !cJSON_IsString(jmt)) {
		*why = "mediaType must be a string";
		goto fail;
	}
	const char *mt = ct[0] ? ct : NULL;
	if (jmt && mt && strcmp(jmt->valuestring, mt) != 0) {
		*why = "Content-Type does not match the manifest's mediaType";
		d = jmt->valuestring;
		goto fail;
	}
	if (!mt)
		mt = wh_manifest_type_of(doc);
	if (!wh_manifest_type_known(mt)) {
		*why = "unsupported manifest media type";
		d = mt;
		goto fail;
	}
	snprintf(out->media_type, sizeof(out->media_type), "%s", mt);
	out->is_index = wh_manifest_type_is_index(mt);
	if (out->is_index) {
		out->manifests = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
		if (!cJSON_IsArray(out->manifests)) {
			*why = "manifests must be an array";
			goto fail;
		}
		if (check_array(out->manifests, why, &d) != 0)
			goto fail;
	} else {
		out->config = cJSON_GetObjectItemCaseSensitive(doc, "config");
		out->layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
		if (!out->config || (out->layers && !cJSON_IsArray(out->layers))) {
			*why = "an image manifest needs a config and a layers array";
			goto fail;
		}
		if (check_descriptor(out->config, why, &d) != 0 ||
		    check_array(out->layers, why, &d) != 0)
			goto fail;
	}
	const cJSON *subject = cJSON_GetObjectItemCaseSensitive(doc, "subject");
	if (subject) {
		const cJSON *sdg = cJSON_GetObjectItemCaseSensitive(subject, "digest");
		if (!cJSON_IsString(sdg) ||
		    wh_digest_check(sdg->valuestring, strlen(sdg->valuestring)) != WH_DIGEST_OK) {
			*why = "invalid subject";
			goto fail;
		}
		out->subject = sdg->valuestring;
	}
	out->doc = doc;
	return 0;
fail:
	if (d)
		snprintf(detail, detail_len, "%s", d); /* d may point into doc */
	cJSON_Delete(doc);
	memset(out, 0, sizeof(*out));
	return -1;
}
