/* The manifest check (src/oci/manifest.c) every manifest passes before it is
 * stored, pushed by a client or sent by an upstream. A manifest it accepts
 * must be what manifest.h promises; one it refuses leaves nothing behind.
 *
 * Input: the manifest bytes. When the first byte is below 0x09 it is not
 * part of them but picks the Content-Type the manifest came with (and, for
 * 0, takes it from the input: up to the first newline). */
#include "fuzz.h"

#include <stdbool.h>

#include "wharf/base/common.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"

static const char *const types[] = {
    NULL,
    WH_MT_OCI_MANIFEST,
    WH_MT_OCI_INDEX,
    WH_MT_DOCKER_MANIFEST,
    WH_MT_DOCKER_LIST,
    "application/json; charset=utf-8",
    "application/octet-stream",
    WH_MT_OCI_INDEX "; q=1",
    "application/vnd.oci.image.manifest.v1+json\tx",
};

static bool descriptor_ok(const cJSON *d)
{
	const cJSON *dg = cJSON_GetObjectItemCaseSensitive(d, "digest");
	return cJSON_IsObject(d) && cJSON_IsString(dg) &&
	       wh_digest_check(dg->valuestring, strlen(dg->valuestring)) == WH_DIGEST_OK &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "size"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ct = NULL;
	char *ct_buf = NULL;
	if (size > 0 && data[0] < 0x09) {
		if (data[0] == 0) {
			const uint8_t *nl = memchr(data + 1, '\n', size - 1);
			size_t n = nl ? (size_t)(nl - data - 1) : size - 1;
			ct = ct_buf = fuzz_strndup(data + 1, n);
			size -= n + 1 + (nl != NULL);
			data += n + 1 + (nl != NULL);
		} else {
			ct = types[data[0]];
			data++;
			size--;
		}
	}
	/* Exactly the manifest's bytes: ASan sees a read past them. */
	char *m = malloc(size ? size : 1);
	if (!m)
		abort();
	memcpy(m, data, size);

	wh_manifest_doc doc;
	const char *why = "untouched";
	char detail[24]; /* short: long values are cut, always terminated */
	memset(detail, 'x', sizeof(detail));
	int rc = wh_manifest_check(m, size, ct, &doc, &why, detail, sizeof(detail));
	FUZZ_ASSERT(memchr(detail, '\0', sizeof(detail)) != NULL);
	if (rc == 0) {
		FUZZ_ASSERT(why == NULL && detail[0] == '\0');
		FUZZ_ASSERT(cJSON_IsObject(doc.doc));
		FUZZ_ASSERT(wh_manifest_type_known(doc.media_type));
		bool index = strcmp(doc.media_type, WH_MT_OCI_INDEX) == 0 ||
		             strcmp(doc.media_type, WH_MT_DOCKER_LIST) == 0;
		FUZZ_ASSERT(doc.is_index == index);
		const cJSON *d;
		if (index) {
			FUZZ_ASSERT(cJSON_IsArray(doc.manifests) && !doc.config && !doc.layers);
			cJSON_ArrayForEach(d, doc.manifests) FUZZ_ASSERT(descriptor_ok(d));
		} else {
			FUZZ_ASSERT(descriptor_ok(doc.config) && !doc.manifests);
			FUZZ_ASSERT(!doc.layers || cJSON_IsArray(doc.layers));
			cJSON_ArrayForEach(d, doc.layers) FUZZ_ASSERT(descriptor_ok(d));
		}
		if (doc.subject)
			FUZZ_ASSERT(wh_digest_check(doc.subject, strlen(doc.subject)) ==
			            WH_DIGEST_OK);
		/* The declared type, when it names a manifest, is the type. */
		if (ct && wh_manifest_type_known(ct))
			FUZZ_ASSERT(strcmp(ct, doc.media_type) == 0);
		cJSON_Delete(doc.doc);
	} else {
		static const wh_manifest_doc zero;
		FUZZ_ASSERT(rc == -1 && why != NULL && strcmp(why, "untouched") != 0);
		FUZZ_ASSERT(memcmp(&doc, &zero, sizeof(doc)) == 0);
	}
	free(m);
	free(ct_buf);
	return 0;
}
