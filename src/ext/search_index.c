/* The search index. See include/wharf/ext/search_index.h.
 *
 * Everything is in one `struct table`: the repositories sorted by name and
 * the interned strings. The walk at start builds a table of its own in the
 * thread pool, from the filesystem only; the loop adopts it whole (nothing
 * was indexed before it) and then reads again, on the loop, the
 * repositories that changed meanwhile: what they still hold is known, so
 * that costs their index.json and the manifests pushed since. */
#include "wharf/ext/search_index.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"
#include "wharf/store/meta.h"

#define JSON_MAX WH_MANIFEST_MAX /* a config larger than a manifest may be is not read */
#define NESTING  4               /* indexes of indexes followed this deep */

/* ---- interned strings ---- */

struct strtab {
	char **v; /* id -> string; v[0] is "" */
	int n, cap;
	uint32_t *slots; /* open addressing: id, 0 free */
	uint32_t nslots;
};

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static void strtab_init(struct strtab *t)
{
	t->v = wh_grow(NULL, sizeof(*t->v), 0, &t->cap, 16);
	t->v[0] = wh_strdup("");
	t->n = 1;
	t->nslots = 64;
	t->slots = wh_calloc(t->nslots, sizeof(*t->slots));
}

static void strtab_free(struct strtab *t)
{
	for (int i = 0; i < t->n; i++)
		free(t->v[i]);
	free(t->v);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static void strtab_place(struct strtab *t, uint32_t id)
{
	uint32_t i = hash_str(t->v[id]) & (t->nslots - 1);
	while (t->slots[i])
		i = (i + 1) & (t->nslots - 1);
	t->slots[i] = id;
}

/* The id of s (added if new); 0 for "" or NULL, and once 65535 strings are
 * held (more platforms and media types than any registry has). */
static uint16_t intern(struct strtab *t, const char *s)
{
	if (!s || !*s || strlen(s) > WH_MEDIA_TYPE_MAX)
		return 0;
	uint32_t i = hash_str(s) & (t->nslots - 1);
	for (; t->slots[i]; i = (i + 1) & (t->nslots - 1))
		if (strcmp(t->v[t->slots[i]], s) == 0)
			return (uint16_t)t->slots[i];
	if (t->n >= UINT16_MAX)
		return 0;
	t->v = wh_grow(t->v, sizeof(*t->v), t->n, &t->cap, 16);
	t->v[t->n] = wh_strdup(s);
	uint16_t id = (uint16_t)t->n++;
	if ((uint32_t)t->n * 2 > t->nslots) {
		free(t->slots);
		t->nslots *= 2;
		t->slots = wh_calloc(t->nslots, sizeof(*t->slots));
		for (int k = 1; k < t->n; k++)
			strtab_place(t, (uint32_t)k);
	} else {
		t->slots[i] = id;
	}
	return id;
}

/* ---- digests ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool wh_si_digest_raw(const char *s, uint8_t out[32])
{
	if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != WH_SHA256_LEN)
		return false;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

void wh_si_digest_str(const uint8_t d[32], char out[WH_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[d[i] >> 4];
		out[8 + 2 * i] = hex[d[i] & 15];
	}
	out[WH_SHA256_LEN] = '\0';
}

static uint64_t key_of_raw(const uint8_t d[32])
{
	uint64_t k = 0;
	for (int i = 0; i < 8; i++)
		k = k << 8 | d[i];
	return k;
}

uint64_t wh_si_blob_key(const char *digest)
{
	uint8_t raw[32];
	if (wh_si_digest_raw(digest, raw))
		return key_of_raw(raw);
	/* Another algorithm: a hash of the whole string. */
	uint64_t h = 14695981039346656037ull;
	for (const char *s = digest ? digest : ""; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* ---- RFC 3339 times ---- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* "2006-01-02T15:04:05[.frac](Z|+hh:mm)" as ns since the epoch, or
 * WH_SI_NO_TIME: not one, Go's zero time (year 1), or out of int64's ns. */
static int64_t parse_time(const char *s)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	if (!s || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return WH_SI_NO_TIME;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return WH_SI_NO_TIME;
	const char *p = s + 19;
	int64_t frac = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 9)
				frac = frac * 10 + (*p - '0');
		if (n == 0)
			return WH_SI_NO_TIME;
		for (; n < 9; n++)
			frac *= 10;
	}
	int sign = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) && p[3] == ':' &&
	           digits(p + 4, 2, &om)) {
		sign = *p == '+' ? 1 : -1;
		p += 6;
	} else {
		return WH_SI_NO_TIME;
	}
	if (*p || y <= 1 || y < 1678 || y > 2261)
		return WH_SI_NO_TIME;
	int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
	               sec - sign * (oh * 3600 + om * 60);
	return secs * 1000000000 + frac;
}

/* ---- building an image from its manifest ---- */

struct table {
	wh_si_repo **repos; /* by name, wh_store_tag_cmp */
	int n, cap;
	struct strtab strs;
};

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jsize(const cJSON *o)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "size");
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15
	           ? (int64_t)v->valuedouble
	           : 0;
}

/* An annotation (or label) that is set and not empty. */
static const char *ann(const cJSON *a, const char *key)
{
	const char *v = jstr(a, key);
	return v && *v ? v : NULL;
}

/* GetAnnotationValue: the OCI key, else the label-schema one. */
static const char *ann2(const cJSON *a, const char *oci, const char *schema)
{
	const char *v = ann(a, oci);
	return v ? v : schema ? ann(a, schema) : NULL;
}

static const char *const text_keys[WH_SI_TEXT_N][2] = {
    [WH_SI_DESCRIPTION] = {"org.opencontainers.image.description", "org.label-schema.description"},
    [WH_SI_TITLE] = {"org.opencontainers.image.title", "org.label-schema.name"},
    [WH_SI_DOCUMENTATION] = {"org.opencontainers.image.documentation", "org.label-schema.usage"},
    [WH_SI_SOURCE] = {"org.opencontainers.image.source", "org.label-schema.vcs-url"},
    [WH_SI_LICENSES] = {"org.opencontainers.image.licenses", "org.label-schema.license"},
    [WH_SI_LABELS] = {"org.label-schema.labels", NULL},
    [WH_SI_VENDOR] = {"org.opencontainers.image.vendor", "org.label-schema.vendor"},
    [WH_SI_AUTHORS] = {"org.opencontainers.image.authors", NULL},
};

/* At most WH_SI_TEXT_MAX bytes of s, cut before a partial UTF-8 character. */
static size_t text_len(const char *s)
{
	size_t n = strlen(s);
	if (n <= WH_SI_TEXT_MAX)
		return n;
	n = WH_SI_TEXT_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* The packed text of an image: annotations first, then labels. */
static char *pack_text(const cJSON *annotations, const cJSON *labels, const char *author)
{
	const char *v[WH_SI_TEXT_N];
	size_t len[WH_SI_TEXT_N], total = 0;
	bool any = false;
	for (int i = 0; i < WH_SI_TEXT_N; i++) {
		v[i] = ann2(annotations, text_keys[i][0], text_keys[i][1]);
		if (!v[i])
			v[i] = ann2(labels, text_keys[i][0], text_keys[i][1]);
		if (!v[i] && i == WH_SI_AUTHORS && author && *author)
			v[i] = author;
		len[i] = v[i] ? text_len(v[i]) : 0;
		total += len[i] + 1;
		any |= len[i] > 0;
	}
	if (!any)
		return NULL;
	char *t = wh_malloc(total), *p = t;
	for (int i = 0; i < WH_SI_TEXT_N; i++) {
		if (len[i])
			memcpy(p, v[i], len[i]);
		p[len[i]] = '\0';
		p += len[i] + 1;
	}
	return t;
}

const char *wh_si_text(const wh_si_image *im, int which)
{
	const char *p = im->text;
	if (!p || which < 0 || which >= WH_SI_TEXT_N)
		return "";
	for (int i = 0; i < which; i++)
		p += strlen(p) + 1;
	return p;
}

static char *arch_of(const char *arch, const char *variant, char *buf, size_t n)
{
	if (!arch)
		arch = "";
	if (variant && *variant)
		snprintf(buf, n, "%s/%s", arch, variant);
	else
		snprintf(buf, n, "%s", arch);
	return buf;
}

/* What the config of an image manifest adds: platform, time, labels. */
static void from_config(struct strtab *strs, wh_si_image *im, const cJSON *manifest_ann,
                        const char *data, size_t len)
{
	cJSON *c = data ? cJSON_ParseWithLength(data, len) : NULL;
	const cJSON *cc = cJSON_GetObjectItemCaseSensitive(c, "config");
	const cJSON *labels = cJSON_GetObjectItemCaseSensitive(cc, "Labels");
	char arch[2 * WH_MEDIA_TYPE_MAX + 2];
	im->os = intern(strs, jstr(c, "os"));
	im->arch =
	    intern(strs, arch_of(jstr(c, "architecture"), jstr(c, "variant"), arch, sizeof(arch)));
	/* Zot's order: created annotation, created label, config created, the
	 * last history entry's. */
	int64_t t = parse_time(
	    ann2(manifest_ann, "org.opencontainers.image.created", "org.label-schema.build-date"));
	if (t == WH_SI_NO_TIME)
		t = parse_time(ann2(labels, "org.opencontainers.image.created",
		                    "org.label-schema.build-date"));
	im->annotated_time = t != WH_SI_NO_TIME;
	if (t == WH_SI_NO_TIME)
		t = parse_time(jstr(c, "created"));
	if (t == WH_SI_NO_TIME) {
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "history");
		int n = cJSON_IsArray(h) ? cJSON_GetArraySize(h) : 0;
		if (n > 0)
			t = parse_time(jstr(cJSON_GetArrayItem(h, n - 1), "created"));
	}
	im->created_ns = t;
	im->text =
	    pack_text(manifest_ann, cJSON_IsObject(labels) ? labels : NULL, jstr(c, "author"));
	cJSON_Delete(c);
}

static void image_clear(wh_si_image *im)
{
	free(im->subject);
	free(im->layers);
	free(im->kids);
	free(im->text);
	memset(im, 0, sizeof(*im));
}

/* Build im from a manifest's bytes; media_type is the index.json entry's
 * (or the push's), may be NULL. An image manifest's config is read from
 * the store. False when the bytes are not a manifest of a known type. */
static bool image_build(struct strtab *strs, const wh_store *st, const char *repo,
                        const uint8_t digest[32], const char *media_type, const char *data,
                        size_t len, wh_si_image *im)
{
	memset(im, 0, sizeof(*im));
	cJSON *m = cJSON_ParseWithLength(data, len);
	if (!cJSON_IsObject(m)) {
		cJSON_Delete(m);
		return false;
	}
	const char *mt = wh_manifest_type_known(media_type) ? media_type : wh_manifest_type_of(m);
	if (!wh_manifest_type_known(mt)) {
		cJSON_Delete(m);
		return false;
	}
	memcpy(im->digest, digest, 32);
	im->media_type = intern(strs, mt);
	im->msize = (int64_t)len;
	im->created_ns = WH_SI_NO_TIME;
	const cJSON *annotations = cJSON_GetObjectItemCaseSensitive(m, "annotations");
	if (!cJSON_IsObject(annotations))
		annotations = NULL;
	uint8_t raw[32];
	const cJSON *subject = cJSON_GetObjectItemCaseSensitive(m, "subject");
	if (wh_si_digest_raw(jstr(subject, "digest"), raw)) {
		im->subject = wh_malloc(32);
		memcpy(im->subject, raw, 32);
	}
	const char *at = jstr(m, "artifactType");
	if (wh_manifest_type_is_index(mt)) {
		im->type = WH_SI_INDEX;
		im->artifact_type = intern(strs, at);
		const cJSON *ms = cJSON_GetObjectItemCaseSensitive(m, "manifests"), *d;
		int cap = 0;
		cJSON_ArrayForEach(d, ms)
		{
			/* Manifests and indexes only (not, say, a build cache's blobs). */
			if (im->n_kids == WH_SI_KIDS_MAX ||
			    !wh_manifest_type_known(jstr(d, "mediaType")) ||
			    !wh_si_digest_raw(jstr(d, "digest"), raw))
				continue;
			im->kids = wh_grow(im->kids, sizeof(*im->kids), im->n_kids, &cap, 4);
			wh_si_kid *k = &im->kids[im->n_kids++];
			memcpy(k->digest, raw, 32);
			const cJSON *pf = cJSON_GetObjectItemCaseSensitive(d, "platform");
			char arch[2 * WH_MEDIA_TYPE_MAX + 2];
			k->os = intern(strs, jstr(pf, "os"));
			k->arch = intern(strs, arch_of(jstr(pf, "architecture"),
			                               jstr(pf, "variant"), arch, sizeof(arch)));
		}
		if (cap > im->n_kids)
			im->kids = wh_realloc(im->kids, sizeof(*im->kids) * (size_t)im->n_kids);
		int64_t t = parse_time(ann2(annotations, "org.opencontainers.image.created",
		                            "org.label-schema.build-date"));
		im->annotated_time = t != WH_SI_NO_TIME;
		im->created_ns = t;
		im->text = pack_text(annotations, NULL, NULL);
	} else {
		im->type = WH_SI_MANIFEST;
		const cJSON *config = cJSON_GetObjectItemCaseSensitive(m, "config");
		const char *cd = jstr(config, "digest");
		im->artifact_type = intern(strs, at && *at ? at : jstr(config, "mediaType"));
		im->config_size = jsize(config);
		const cJSON *layers = cJSON_GetObjectItemCaseSensitive(m, "layers"), *l;
		int cap = 0;
		cJSON_ArrayForEach(l, layers)
		{
			int64_t size = jsize(l);
			im->layers_size += size;
			if (im->n_layers == WH_SI_LAYERS_MAX)
				continue;
			im->layers =
			    wh_grow(im->layers, sizeof(*im->layers), im->n_layers, &cap, 4);
			im->layers[im->n_layers++] =
			    (wh_si_blob){wh_si_blob_key(jstr(l, "digest")), size};
		}
		if (cap > im->n_layers) /* exactly what is kept: an index lives long */
			im->layers =
			    wh_realloc(im->layers, sizeof(*im->layers) * (size_t)im->n_layers);
		char *cdata = NULL;
		size_t clen = 0;
		if (wh_si_digest_raw(cd, im->config)) {
			/* A config the repository lacks yet (a cache fill stores the
			 * manifest first) is read when it arrives. */
			int rc = wh_store_blob_read(st, repo, cd, JSON_MAX, &cdata, &clen);
			if (rc != 0)
				cdata = NULL;
			im->config_missing = rc == WH_ENOTFOUND;
		}
		from_config(strs, im, annotations, cdata, clen);
		free(cdata);
	}
	cJSON_Delete(m);
	return true;
}

/* ---- repositories ---- */

static int image_cmp(const void *elem, const void *key)
{
	return memcmp(((const wh_si_image *)elem)->digest, key, 32);
}

static int image_pos(const wh_si_repo *r, const uint8_t d[32], bool *found)
{
	return wh_bsearch_pos(r->images, r->n_images, sizeof(*r->images), d, image_cmp, found);
}

static int tag_pos(const wh_si_repo *r, const char *tag, bool *found)
{
	return wh_sorted_pos(r->tags, r->n_tags, sizeof(*r->tags), offsetof(wh_si_tag, name), tag,
	                     found);
}

const wh_si_image *wh_si_image_find(const wh_si_repo *r, const uint8_t digest[32])
{
	bool found;
	int i = image_pos(r, digest, &found);
	return found ? &r->images[i] : NULL;
}

const wh_si_tag *wh_si_tag_find(const wh_si_repo *r, const char *tag)
{
	bool found;
	int i = tag_pos(r, tag, &found);
	return found ? &r->tags[i] : NULL;
}

static void repo_free(wh_si_repo *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_tags; i++)
		free(r->tags[i].name);
	for (int i = 0; i < r->n_images; i++)
		image_clear(&r->images[i]);
	free(r->tags);
	free(r->images);
	free(r->platforms);
	free(r->name);
	free(r);
}

static void tag_set(wh_si_repo *r, const char *tag, const uint8_t digest[32])
{
	bool found;
	int i = tag_pos(r, tag, &found);
	if (!found) {
		r->tags = wh_grow(r->tags, sizeof(*r->tags), r->n_tags, &r->cap_tags, 4);
		memmove(r->tags + i + 1, r->tags + i, sizeof(*r->tags) * (size_t)(r->n_tags - i));
		r->n_tags++;
		r->tags[i].name = wh_strdup(tag);
	}
	memcpy(r->tags[i].digest, digest, 32);
}

static void tag_drop(wh_si_repo *r, int i)
{
	free(r->tags[i].name);
	memmove(r->tags + i, r->tags + i + 1, sizeof(*r->tags) * (size_t)(r->n_tags - i - 1));
	r->n_tags--;
}

/* Insert a built image (by digest), taking what it owns. */
static void image_insert(wh_si_repo *r, wh_si_image *im)
{
	bool found;
	int i = image_pos(r, im->digest, &found);
	if (found) {
		image_clear(im); /* known already: manifests never change */
		return;
	}
	r->images = wh_grow(r->images, sizeof(*r->images), r->n_images, &r->cap_images, 4);
	memmove(r->images + i + 1, r->images + i, sizeof(*r->images) * (size_t)(r->n_images - i));
	r->images[i] = *im;
	r->n_images++;
}

int64_t wh_si_image_time(const wh_si_repo *r, const wh_si_image *im)
{
	if (im->type == WH_SI_MANIFEST || im->created_ns != WH_SI_NO_TIME)
		return im->created_ns;
	/* An index: its first child's annotated time, else its latest child's. */
	int64_t latest = WH_SI_NO_TIME;
	bool first = true;
	for (int i = 0; i < im->n_kids; i++) {
		const wh_si_image *k = wh_si_image_find(r, im->kids[i].digest);
		if (!k || k->type != WH_SI_MANIFEST)
			continue;
		if (first && k->annotated_time)
			return k->created_ns;
		first = false;
		latest = WH_MAX(latest, k->created_ns);
	}
	return latest;
}

int64_t wh_si_image_size(const wh_si_repo *r, const wh_si_image *im)
{
	if (im->type == WH_SI_MANIFEST)
		return im->msize + im->config_size + im->layers_size;
	int64_t size = 0;
	for (int i = 0; i < im->n_kids; i++) {
		const wh_si_image *k = wh_si_image_find(r, im->kids[i].digest);
		if (k && k->type == WH_SI_MANIFEST)
			size += k->msize + k->config_size + k->layers_size;
	}
	return size;
}

/* A set of blob keys, to count each blob once. */
struct keyset {
	uint64_t *v; /* 0: free (a key of 0 is stored as 1) */
	uint32_t n, cap;
};

static bool keyset_add(struct keyset *s, uint64_t k)
{
	k = k ? k : 1;
	if ((s->n + 1) * 2 > s->cap) {
		struct keyset big = {wh_calloc(s->cap ? s->cap * 2 : 64, sizeof(uint64_t)), 0,
		                     s->cap ? s->cap * 2 : 64};
		for (uint32_t i = 0; i < s->cap; i++)
			if (s->v[i])
				keyset_add(&big, s->v[i]);
		free(s->v);
		*s = big;
	}
	uint32_t i = (uint32_t)(k ^ k >> 29) & (s->cap - 1);
	for (; s->v[i]; i = (i + 1) & (s->cap - 1))
		if (s->v[i] == k)
			return false;
	s->v[i] = k;
	s->n++;
	return true;
}

static void add_platform(wh_si_repo *r, uint16_t os, uint16_t arch, int *cap)
{
	if (!os && !arch)
		return;
	uint32_t p = (uint32_t)os << 16 | arch;
	for (int i = 0; i < r->n_platforms; i++)
		if (r->platforms[i] == p)
			return;
	r->platforms = wh_grow(r->platforms, sizeof(*r->platforms), r->n_platforms, cap, 4);
	r->platforms[r->n_platforms++] = p;
}

/* Size and platforms of what a tag reaches, each blob once. */
static void reach(wh_si_repo *r, const wh_si_image *im, struct keyset *seen, int *cap, int depth,
                  const wh_si_kid *via)
{
	if (!keyset_add(seen, key_of_raw(im->digest)))
		return;
	r->size += im->msize;
	if (im->type == WH_SI_MANIFEST) {
		if (keyset_add(seen, key_of_raw(im->config)))
			r->size += im->config_size;
		for (int i = 0; i < im->n_layers; i++)
			if (keyset_add(seen, im->layers[i].key))
				r->size += im->layers[i].size;
		/* Layers past the ones kept count as they are. */
		int64_t kept = 0;
		for (int i = 0; i < im->n_layers; i++)
			kept += im->layers[i].size;
		r->size += im->layers_size - kept;
		if (im->os || im->arch)
			add_platform(r, im->os, im->arch, cap);
		else if (via)
			add_platform(r, via->os, via->arch, cap);
		return;
	}
	if (depth >= NESTING)
		return;
	for (int i = 0; i < im->n_kids; i++) {
		const wh_si_image *k = wh_si_image_find(r, im->kids[i].digest);
		if (k)
			reach(r, k, seen, cap, depth + 1, &im->kids[i]);
	}
}

/* The aggregates, after any change of r. meta: push times (may be NULL).
 * The arrays are cut to what they hold: a change is rare, a repository
 * stays for long. */
static void repo_finish(wh_si_repo *r, wh_meta *meta)
{
	if (r->cap_images > r->n_images && r->n_images > 0) {
		r->images = wh_realloc(r->images, sizeof(*r->images) * (size_t)r->n_images);
		r->cap_images = r->n_images;
	}
	if (r->cap_tags > r->n_tags && r->n_tags > 0) {
		r->tags = wh_realloc(r->tags, sizeof(*r->tags) * (size_t)r->n_tags);
		r->cap_tags = r->n_tags;
	}
	struct keyset seen = {0};
	int cap = 0;
	free(r->platforms);
	r->platforms = NULL;
	r->n_platforms = 0;
	r->size = 0;
	r->newest = -1;
	r->last_updated_ns = WH_SI_NO_TIME;
	int64_t newest = WH_SI_NO_TIME, pushed = WH_SI_NO_TIME;
	r->n_config_missing = 0;
	for (int i = 0; i < r->n_images; i++)
		r->n_config_missing += r->images[i].config_missing;
	for (int i = 0; i < r->n_tags; i++) {
		const wh_si_image *im = wh_si_image_find(r, r->tags[i].digest);
		if (!im)
			continue;
		reach(r, im, &seen, &cap, 0, NULL);
		int64_t t = wh_si_image_time(r, im);
		if (r->newest < 0 || t > newest) {
			r->newest = i;
			newest = t;
		}
		char d[WH_DIGEST_LEN + 1];
		wh_meta_stats ms;
		wh_si_digest_str(im->digest, d);
		if (meta && wh_meta_get(meta, r->name, d, &ms) && ms.pushed_ms > 0)
			pushed = WH_MAX(pushed, ms.pushed_ms * 1000000);
	}
	free(seen.v);
	r->last_updated_ns = WH_MAX(newest, pushed);
}

/* Read repo from the store: index.json, and the manifests old (the record
 * so far, or NULL) does not know; what old knows moves to the new record.
 * NULL when the repository is gone or holds nothing. */
static wh_si_repo *repo_read(struct strtab *strs, const wh_store *st, const char *name,
                             wh_si_repo *old, bool *failed)
{
	wh_store_entry *e = NULL;
	int n = 0;
	*failed = false;
	int rc = wh_store_entries_read(st, name, &e, &n);
	if (rc != 0) {
		*failed = rc != WH_ENOTFOUND;
		return NULL;
	}
	wh_si_repo *r = wh_calloc(1, sizeof(*r));
	r->name = wh_strdup(name);
	r->newest = -1;
	for (int i = 0; i < n; i++) {
		uint8_t raw[32];
		bool found;
		if (!wh_si_digest_raw(e[i].digest, raw))
			continue;
		image_pos(r, raw, &found);
		if (!found) {
			int k = old ? image_pos(old, raw, &found) : 0;
			wh_si_image im;
			if (old && found && !old->images[k].config_missing) {
				im = old->images[k];
				memset(&old->images[k], 0, sizeof(old->images[k])); /* taken */
				memcpy(old->images[k].digest, raw, 32);
				image_insert(r, &im);
			} else {
				char *data = NULL;
				size_t len = 0;
				if (wh_store_blob_read(st, name, e[i].digest, WH_MANIFEST_MAX,
				                       &data, &len) == 0 &&
				    image_build(strs, st, name, raw, e[i].media_type, data, len,
				                &im))
					image_insert(r, &im);
				free(data);
			}
		}
		if (e[i].tag && wh_si_image_find(r, raw))
			tag_set(r, e[i].tag, raw);
	}
	wh_store_entries_free(e, n);
	return r;
}

/* ---- the table ---- */

/* The catalog's order (wh_store_tag_cmp) over the table's records. */
static int repo_cmp(const void *elem, const void *key)
{
	return wh_store_tag_cmp(&(*(wh_si_repo *const *)elem)->name, key);
}

static int repo_pos(const struct table *t, const char *name, bool *found)
{
	return wh_bsearch_pos(t->repos, t->n, sizeof(*t->repos), &name, repo_cmp, found);
}

/* Put r (NULL: remove) as name's record; the one it replaces is freed. */
static void table_set(struct table *t, const char *name, wh_si_repo *r)
{
	bool found;
	int i = repo_pos(t, name, &found);
	if (found) {
		repo_free(t->repos[i]);
		if (r) {
			t->repos[i] = r;
			return;
		}
		memmove(t->repos + i, t->repos + i + 1, sizeof(*t->repos) * (size_t)(t->n - i - 1));
		t->n--;
		return;
	}
	if (!r)
		return;
	t->repos = wh_grow(t->repos, sizeof(*t->repos), t->n, &t->cap, 64);
	memmove(t->repos + i + 1, t->repos + i, sizeof(*t->repos) * (size_t)(t->n - i));
	t->repos[i] = r;
	t->n++;
}

static void table_free(struct table *t)
{
	for (int i = 0; i < t->n; i++)
		repo_free(t->repos[i]);
	free(t->repos);
	strtab_free(&t->strs);
	memset(t, 0, sizeof(*t));
}

/* ---- the index ---- */

struct walk {
	uv_work_t work;
	wh_search_index *idx; /* NULL once it is freed */
	wh_store *st;
	struct table t;
	int failed;
	uint64_t started_ms;
};

struct wh_search_index {
	uv_loop_t *loop;
	wh_store *st;
	struct table t;
	bool loaded;
	struct walk *walk;
	char **dirty; /* repositories changed during the walk */
	int n_dirty, cap_dirty;
	void (*loaded_cb)(void *arg);
	void *loaded_arg;
};

/* Read name again, on the loop, reusing what its record knows. */
static void refresh(wh_search_index *idx, const char *name)
{
	bool found, failed;
	int i = repo_pos(&idx->t, name, &found);
	wh_si_repo *r =
	    repo_read(&idx->t.strs, idx->st, name, found ? idx->t.repos[i] : NULL, &failed);
	if (failed) {
		wh_log(WH_LOG_WARN, "search index: cannot read repository", "repository", WH_LS,
		       name, NULL);
		return; /* what was known stays */
	}
	if (r && r->n_images == 0) {
		repo_free(r);
		r = NULL;
	}
	if (r) {
		if (found)
			r->downloads = idx->t.repos[i]->downloads; /* the manifests kept theirs */
		repo_finish(r, wh_store_meta(idx->st));
	}
	table_set(&idx->t, name, r);
}

static wh_si_repo *repo_get(wh_search_index *idx, const char *name)
{
	bool found;
	int i = repo_pos(&idx->t, name, &found);
	if (found)
		return idx->t.repos[i];
	wh_si_repo *r = wh_calloc(1, sizeof(*r));
	r->name = wh_strdup(name);
	r->newest = -1;
	table_set(&idx->t, name, r);
	return r;
}

static void on_put(wh_search_index *idx, const wh_store_change *ch)
{
	uint8_t raw[32];
	if (!wh_si_digest_raw(ch->digest, raw))
		return;
	wh_si_repo *r = repo_get(idx, ch->repo);
	if (!wh_si_image_find(r, raw)) {
		wh_si_image im;
		if (!image_build(&idx->t.strs, idx->st, ch->repo, raw, ch->media_type, ch->data,
		                 ch->len, &im))
			return;
		image_insert(r, &im);
	}
	if (ch->tag)
		tag_set(r, ch->tag, raw);
	repo_finish(r, wh_store_meta(idx->st));
}

static void on_delete(wh_search_index *idx, const wh_store_change *ch)
{
	wh_si_repo *r = wh_search_index_repo(idx, ch->repo);
	if (!r)
		return;
	bool found;
	if (ch->tag) {
		int i = tag_pos(r, ch->tag, &found);
		if (found)
			tag_drop(r, i);
	} else {
		uint8_t raw[32];
		if (!wh_si_digest_raw(ch->digest, raw))
			return;
		for (int i = r->n_tags - 1; i >= 0; i--)
			if (memcmp(r->tags[i].digest, raw, 32) == 0)
				tag_drop(r, i);
		int i = image_pos(r, raw, &found);
		if (found) {
			image_clear(&r->images[i]);
			memmove(r->images + i, r->images + i + 1,
			        sizeof(*r->images) * (size_t)(r->n_images - i - 1));
			r->n_images--;
		}
	}
	if (r->n_images == 0 && r->n_tags == 0)
		table_set(&idx->t, ch->repo, NULL);
	else
		repo_finish(r, wh_store_meta(idx->st));
}

/* A blob arrived: the config of images that waited for it? They are
 * built again, from their manifests (the annotations and the labels are
 * taken together). */
static void on_blob(wh_search_index *idx, const wh_store_change *ch)
{
	uint8_t raw[32];
	wh_si_repo *r = wh_search_index_repo(idx, ch->repo);
	if (!r || r->n_config_missing == 0 || !wh_si_digest_raw(ch->digest, raw))
		return;
	bool changed = false;
	for (int i = 0; i < r->n_images; i++) {
		wh_si_image *im = &r->images[i];
		if (!im->config_missing || memcmp(im->config, raw, 32) != 0)
			continue;
		char d[WH_DIGEST_LEN + 1], *data = NULL;
		size_t len = 0;
		wh_si_image fresh;
		wh_si_digest_str(im->digest, d);
		if (wh_store_blob_read(idx->st, r->name, d, WH_MANIFEST_MAX, &data, &len) == 0 &&
		    image_build(&idx->t.strs, idx->st, r->name, im->digest,
		                wh_search_index_str(idx, im->media_type), data, len, &fresh)) {
			fresh.downloads = im->downloads;
			image_clear(im);
			*im = fresh; /* the same digest: the order holds */
			changed = true;
		}
		free(data);
	}
	if (changed)
		repo_finish(r, wh_store_meta(idx->st));
}

static void on_pull(wh_search_index *idx, const wh_store_change *ch)
{
	uint8_t raw[32];
	wh_si_repo *r = wh_search_index_repo(idx, ch->repo);
	if (!r || !wh_si_digest_raw(ch->digest, raw))
		return;
	bool found;
	int i = image_pos(r, raw, &found);
	if (!found)
		return;
	if (r->images[i].downloads < UINT32_MAX)
		r->images[i].downloads++;
	r->downloads++;
}

static void mark_dirty(wh_search_index *idx, const char *name)
{
	for (int i = 0; i < idx->n_dirty; i++)
		if (strcmp(idx->dirty[i], name) == 0)
			return;
	idx->dirty = wh_grow(idx->dirty, sizeof(*idx->dirty), idx->n_dirty, &idx->cap_dirty, 8);
	idx->dirty[idx->n_dirty++] = wh_strdup(name);
}

static void on_change(void *arg, const wh_store_change *ch)
{
	wh_search_index *idx = arg;
	if (!idx->loaded) {
		/* A blob too: the walk may have read a manifest before its config. */
		if (ch->kind != WH_STORE_PULLED)
			mark_dirty(idx, ch->repo);
		return;
	}
	switch (ch->kind) {
	case WH_STORE_MANIFEST_PUT:
		on_put(idx, ch);
		break;
	case WH_STORE_MANIFEST_DELETE:
		on_delete(idx, ch);
		break;
	case WH_STORE_REPO_CHANGED:
		refresh(idx, ch->repo);
		break;
	case WH_STORE_REPO_REMOVED:
		table_set(&idx->t, ch->repo, NULL);
		break;
	case WH_STORE_PULLED:
		on_pull(idx, ch);
		break;
	case WH_STORE_BLOB_ADDED:
		on_blob(idx, ch);
		break;
	}
}

static void walk_work(uv_work_t *w)
{
	struct walk *wk = w->data;
	char **names = NULL;
	int n = 0;
	wh_store_repos_scan(wh_store_root(wk->st), &names, &n);
	strtab_init(&wk->t.strs);
	for (int i = 0; i < n; i++) {
		bool failed;
		wh_si_repo *r = repo_read(&wk->t.strs, wk->st, names[i], NULL, &failed);
		wk->failed += failed;
		if (r && r->n_images == 0) {
			repo_free(r); /* blobs only: nothing to find there yet */
			r = NULL;
		}
		if (!r)
			continue;
		repo_finish(r, wh_store_meta(wk->st));
		/* The scan's order is the table's: append. */
		wk->t.repos = wh_grow(wk->t.repos, sizeof(*wk->t.repos), wk->t.n, &wk->t.cap, 64);
		wk->t.repos[wk->t.n++] = r;
	}
	wh_strv_free(names, n);
}

static void walk_done(uv_work_t *w, int status)
{
	struct walk *wk = w->data;
	wh_search_index *idx = wk->idx;
	if (!idx || status < 0) {
		table_free(&wk->t);
		if (idx) {
			/* Cancelled: nothing is indexed; changes are still followed. */
			idx->walk = NULL;
			idx->loaded = true;
		}
		free(wk);
		if (idx && idx->loaded_cb)
			idx->loaded_cb(idx->loaded_arg);
		return;
	}
	idx->walk = NULL;
	/* Repositories the scan missed are added as they change; the sort is
	 * the catalog's, which the table keeps. */
	table_free(&idx->t);
	idx->t = wk->t;
	if (idx->t.strs.v == NULL)
		strtab_init(&idx->t.strs);
	idx->loaded = true;
	for (int i = 0; i < idx->n_dirty; i++) {
		refresh(idx, idx->dirty[i]);
		free(idx->dirty[i]);
	}
	int dirty = idx->n_dirty;
	free(idx->dirty);
	idx->dirty = NULL;
	idx->n_dirty = idx->cap_dirty = 0;
	int images = 0, tags = 0;
	for (int i = 0; i < idx->t.n; i++) {
		images += idx->t.repos[i]->n_images;
		tags += idx->t.repos[i]->n_tags;
	}
	wh_log(WH_LOG_INFO, "search index loaded", "repositories", WH_LI, (long long)idx->t.n,
	       "tags", WH_LI, (long long)tags, "manifests", WH_LI, (long long)images, "bytes",
	       WH_LI, (long long)wh_search_index_bytes(idx), "changed_meanwhile", WH_LI,
	       (long long)dirty, "unreadable", WH_LI, (long long)wk->failed, "duration_ms", WH_LI,
	       (long long)(uv_now(idx->loop) - wk->started_ms), NULL);
	free(wk);
	if (idx->loaded_cb)
		idx->loaded_cb(idx->loaded_arg);
}

int wh_search_index_new(uv_loop_t *loop, wh_store *store, void (*loaded)(void *arg), void *arg,
                        wh_search_index **out)
{
	*out = NULL;
	wh_search_index *idx = wh_calloc(1, sizeof(*idx));
	idx->loop = loop;
	idx->st = store;
	idx->loaded_cb = loaded;
	idx->loaded_arg = arg;
	strtab_init(&idx->t.strs);
	int rc = wh_store_on_change(store, on_change, idx);
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "search index: cannot follow the store's changes", "error",
		       WH_LS, wh_strerror(rc), NULL);
		table_free(&idx->t);
		free(idx);
		return rc;
	}
	struct walk *wk = wh_calloc(1, sizeof(*wk));
	wk->work.data = wk;
	wk->idx = idx;
	wk->st = store;
	wk->started_ms = uv_now(loop);
	rc = uv_queue_work(loop, &wk->work, walk_work, walk_done);
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "search index: cannot start the walk", "error", WH_LS,
		       uv_strerror(rc), NULL);
		free(wk);
		wh_store_off_change(store, on_change, idx);
		table_free(&idx->t);
		free(idx);
		return WH_EIO;
	}
	idx->walk = wk;
	*out = idx;
	return 0;
}

void wh_search_index_free(wh_search_index *idx)
{
	if (!idx)
		return;
	wh_store_off_change(idx->st, on_change, idx);
	if (idx->walk)
		idx->walk->idx = NULL;
	for (int i = 0; i < idx->n_dirty; i++)
		free(idx->dirty[i]);
	free(idx->dirty);
	table_free(&idx->t);
	free(idx);
}

bool wh_search_index_loaded(const wh_search_index *idx)
{
	return idx->loaded;
}

int wh_search_index_count(const wh_search_index *idx)
{
	return idx->t.n;
}

wh_si_repo *wh_search_index_at(const wh_search_index *idx, int i)
{
	return i >= 0 && i < idx->t.n ? idx->t.repos[i] : NULL;
}

wh_si_repo *wh_search_index_repo(const wh_search_index *idx, const char *name)
{
	bool found;
	int i = repo_pos(&idx->t, name, &found);
	return found ? idx->t.repos[i] : NULL;
}

const char *wh_search_index_str(const wh_search_index *idx, uint16_t id)
{
	return id < idx->t.strs.n ? idx->t.strs.v[id] : "";
}

size_t wh_search_index_bytes(const wh_search_index *idx)
{
	const struct table *t = &idx->t;
	size_t n = sizeof(*idx) + sizeof(*t->repos) * (size_t)t->cap;
	n += sizeof(*t->strs.v) * (size_t)t->strs.cap + sizeof(*t->strs.slots) * t->strs.nslots;
	for (int i = 0; i < t->strs.n; i++)
		n += strlen(t->strs.v[i]) + 1;
	for (int i = 0; i < t->n; i++) {
		const wh_si_repo *r = t->repos[i];
		n += sizeof(*r) + strlen(r->name) + 1;
		n += sizeof(*r->tags) * (size_t)r->cap_tags +
		     sizeof(*r->images) * (size_t)r->cap_images;
		n += sizeof(*r->platforms) * (size_t)r->n_platforms;
		for (int k = 0; k < r->n_tags; k++)
			n += strlen(r->tags[k].name) + 1;
		for (int k = 0; k < r->n_images; k++) {
			const wh_si_image *im = &r->images[k];
			n += (im->subject ? 32 : 0) + sizeof(*im->layers) * (size_t)im->n_layers +
			     sizeof(*im->kids) * (size_t)im->n_kids;
			if (im->text) {
				const char *p = im->text;
				for (int f = 0; f < WH_SI_TEXT_N; f++) {
					n += strlen(p) + 1;
					p += strlen(p) + 1;
				}
			}
		}
	}
	return n;
}
