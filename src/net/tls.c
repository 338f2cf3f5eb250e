/* TLS with mbedTLS 3 over the connection's non-blocking socket.
 *
 * mbedTLS talks to the socket itself (bio_send/bio_recv) and reports a
 * socket that is not ready as WANT_READ / WANT_WRITE; those become -EAGAIN
 * and wh_transport.want, so http.c polls for the right readiness and calls
 * again. Two mbedTLS rules shape the code:
 *   - after WANT_WRITE, mbedtls_ssl_write must be called again with the same
 *     length: it has already encrypted and half sent that record (wpending);
 *   - decrypted bytes can wait inside mbedTLS while the socket has nothing
 *     more: tls_pending tells http.c to read again without polling (as
 *     Redis's TLS pending list does).
 *
 * Certificates: each load of the cert/key pair is a generation with its own
 * mbedtls_ssl_config. A connection keeps the generation it started with
 * (mbedTLS reads the config through a pointer for the whole connection);
 * a reload makes a new one for later handshakes and the old one is freed
 * with its last connection. RNG, ticket keys and the CA are shared. */
#include "wharf/net/tls.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>
#include <psa/crypto.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"

/* Ticket keys rotate after this long; a ticket is accepted for as long. */
#define TICKET_LIFETIME_S 86400

struct gen {
	int refs; /* wh_tls.cur holds one, each transport made from it one */
	mbedtls_ssl_config conf;
	mbedtls_x509_crt cert;
	mbedtls_pk_context key;
	char serial[128];
	bool verify_clients; /* a cacert: client certificates asked for */
};

/* Contexts alive that use the PSA crypto library (loop thread only). */
static int psa_users;

struct wh_tls {
	struct gen *cur;
	char *cert_path, *key_path;
	bool verify_clients;
	bool psa; /* holds a use of the PSA crypto library (psa_users) */
	mbedtls_x509_crt ca;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_ticket_context ticket;
};

struct tls_tp {
	wh_transport base;
	mbedtls_ssl_context ssl;
	struct gen *gen;
	size_t wpending; /* length of the record mbedTLS holds after WANT_WRITE */
	int err;         /* sticky: a fatal error or end of stream seen (0 none) */
	bool eof;
	char *identity;
};

/* Handshakes of every context, for metrics (one loop, one thread). */
static wh_tls_stats stats;

/* What Zot (Go's crypto/tls with its cipher list) offers, in mbedTLS names.
 * TLS 1.3 suites are all AEAD; for 1.2 only ECDHE with AEAD. */
static const int suites[] = {
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static const uint16_t groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};

static const char *alpn[] = {"http/1.1", NULL};

static void mbed_err(int rc, char *buf, size_t len)
{
	mbedtls_strerror(rc, buf, len);
}

/* A file that cannot be opened is said so plainly, not as mbedTLS's
 * "PK - Read/write of file failed". */
static int check_readable(const char *key, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rbe");
	if (!f) {
		snprintf(err, errlen, "%s: %s: %s", key, path, strerror(errno));
		return WH_EINVAL;
	}
	fclose(f);
	return 0;
}

static void gen_unref(struct gen *g)
{
	if (!g || --g->refs > 0)
		return;
	mbedtls_ssl_config_free(&g->conf);
	mbedtls_x509_crt_free(&g->cert);
	mbedtls_pk_free(&g->key);
	free(g);
}

/* Load the pair and build a config around it. */
static int gen_load(wh_tls *tls, struct gen **out, char *err, size_t errlen)
{
	char m[160];
	int rc = WH_EINVAL, r;
	struct gen *g = wh_calloc(1, sizeof(*g));
	g->refs = 1;
	mbedtls_ssl_config_init(&g->conf);
	mbedtls_x509_crt_init(&g->cert);
	mbedtls_pk_init(&g->key);

	if (check_readable("http.tls.cert", tls->cert_path, err, errlen) != 0 ||
	    check_readable("http.tls.key", tls->key_path, err, errlen) != 0)
		goto out;
	r = mbedtls_x509_crt_parse_file(&g->cert, tls->cert_path);
	if (r != 0) {
		mbed_err(r, m, sizeof(m));
		snprintf(err, errlen, "http.tls.cert: %s: not a PEM certificate chain (%s)",
		         tls->cert_path, r > 0 ? "some certificates could not be parsed" : m);
		goto out;
	}
	r = mbedtls_pk_parse_keyfile(&g->key, tls->key_path, NULL, mbedtls_ctr_drbg_random,
	                             &tls->drbg);
	if (r != 0) {
		mbed_err(r, m, sizeof(m));
		snprintf(err, errlen, "http.tls.key: %s: cannot parse the private key (%s)",
		         tls->key_path, m);
		goto out;
	}
	r = mbedtls_pk_check_pair(&g->cert.pk, &g->key, mbedtls_ctr_drbg_random, &tls->drbg);
	if (r != 0) {
		snprintf(err, errlen, "http.tls.key: %s: does not match the certificate in %s",
		         tls->key_path, tls->cert_path);
		goto out;
	}
	if (mbedtls_x509_serial_gets(g->serial, sizeof(g->serial), &g->cert.serial) < 0)
		snprintf(g->serial, sizeof(g->serial), "?");

	r = mbedtls_ssl_config_defaults(&g->conf, MBEDTLS_SSL_IS_SERVER,
	                                MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (r != 0)
		goto mbed_fail;
	mbedtls_ssl_conf_min_tls_version(&g->conf, MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(&g->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_ciphersuites(&g->conf, suites);
	mbedtls_ssl_conf_groups(&g->conf, groups);
	mbedtls_ssl_conf_rng(&g->conf, mbedtls_ctr_drbg_random, &tls->drbg);
	mbedtls_ssl_conf_renegotiation(&g->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
	r = mbedtls_ssl_conf_alpn_protocols(&g->conf, alpn);
	if (r != 0)
		goto mbed_fail;
	mbedtls_ssl_conf_session_tickets_cb(&g->conf, mbedtls_ssl_ticket_write,
	                                    mbedtls_ssl_ticket_parse, &tls->ticket);
	g->verify_clients = tls->verify_clients;
	if (tls->verify_clients) {
		mbedtls_ssl_conf_ca_chain(&g->conf, &tls->ca, NULL);
		/* Zot's VerifyClientCertIfGiven: asked for, checked if sent (the
		 * verdict is read when the handshake is done). */
		mbedtls_ssl_conf_authmode(&g->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
	} else {
		mbedtls_ssl_conf_authmode(&g->conf, MBEDTLS_SSL_VERIFY_NONE);
	}
	r = mbedtls_ssl_conf_own_cert(&g->conf, &g->cert, &g->key);
	if (r != 0)
		goto mbed_fail;
	*out = g;
	g = NULL;
	rc = 0;
	goto out;
mbed_fail:
	mbed_err(r, m, sizeof(m));
	snprintf(err, errlen, "http.tls: cannot set up TLS: %s", m);
out:
	if (g) {
		g->refs = 1;
		gen_unref(g);
	}
	return rc;
}

int wh_tls_new(const wh_tls_settings *cfg, wh_tls **out, char *err, size_t errlen)
{
	char m[160];
	int rc = WH_EINVAL, r;
	wh_tls *tls = wh_calloc(1, sizeof(*tls));
	*out = NULL;
	tls->cert_path = wh_strdup(cfg->cert ? cfg->cert : "");
	tls->key_path = wh_strdup(cfg->key ? cfg->key : "");
	mbedtls_x509_crt_init(&tls->ca);
	mbedtls_entropy_init(&tls->entropy);
	mbedtls_ctr_drbg_init(&tls->drbg);
	mbedtls_ssl_ticket_init(&tls->ticket);

	/* TLS 1.3 in mbedTLS 3 runs on the PSA crypto API, whose state is the
	 * process's: counted, so that freeing a second context (verify's, on a
	 * SIGHUP) never tears it down under the one serving. */
	if (psa_users == 0 && psa_crypto_init() != PSA_SUCCESS) {
		snprintf(err, errlen, "http.tls: cannot initialise the crypto library");
		goto out;
	}
	psa_users++;
	tls->psa = true;
	r = mbedtls_ctr_drbg_seed(&tls->drbg, mbedtls_entropy_func, &tls->entropy,
	                          (const unsigned char *)"wharf", 5);
	if (r == 0)
		r = mbedtls_ssl_ticket_setup(&tls->ticket, mbedtls_ctr_drbg_random, &tls->drbg,
		                             MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S);
	if (r != 0) {
		mbed_err(r, m, sizeof(m));
		snprintf(err, errlen, "http.tls: cannot set up TLS: %s", m);
		goto out;
	}
	if (cfg->cacert) {
		if (check_readable("http.tls.cacert", cfg->cacert, err, errlen) != 0)
			goto out;
		/* As Zot: a file that adds no certificate is an error
		 * (ErrBadCACert); one bad certificate among good ones is too. */
		r = mbedtls_x509_crt_parse_file(&tls->ca, cfg->cacert);
		if (r != 0 || tls->ca.version == 0) {
			if (r < 0)
				mbed_err(r, m, sizeof(m));
			snprintf(err, errlen, "http.tls.cacert: %s: not a PEM CA certificate (%s)",
			         cfg->cacert,
			         r > 0   ? "some certificates could not be parsed"
			         : r < 0 ? m
			                 : "no certificate in the file");
			goto out;
		}
		tls->verify_clients = true;
	}
	rc = gen_load(tls, &tls->cur, err, errlen);
out:
	if (rc != 0)
		wh_tls_free(tls);
	else
		*out = tls;
	return rc;
}

int wh_tls_reload(wh_tls *tls, const wh_tls_settings *cfg, char *err, size_t errlen)
{
	struct gen *g = NULL;
	char *cert = tls->cert_path, *key = tls->key_path;
	if (cfg) {
		tls->cert_path = wh_strdup(cfg->cert ? cfg->cert : "");
		tls->key_path = wh_strdup(cfg->key ? cfg->key : "");
	}
	int rc = gen_load(tls, &g, err, errlen);
	if (cfg && rc != 0) {
		free(tls->cert_path);
		free(tls->key_path);
		tls->cert_path = cert;
		tls->key_path = key;
	} else if (cfg) {
		free(cert);
		free(key);
	}
	if (rc != 0)
		return rc;
	gen_unref(tls->cur);
	tls->cur = g;
	return 0;
}

const char *wh_tls_serial(const wh_tls *tls)
{
	return tls->cur->serial;
}

void wh_tls_free(wh_tls *tls)
{
	if (!tls)
		return;
	gen_unref(tls->cur);
	mbedtls_ssl_ticket_free(&tls->ticket);
	mbedtls_ctr_drbg_free(&tls->drbg);
	mbedtls_entropy_free(&tls->entropy);
	mbedtls_x509_crt_free(&tls->ca);
	free(tls->cert_path);
	free(tls->key_path);
	if (tls->psa && --psa_users == 0)
		mbedtls_psa_crypto_free();
	free(tls);
}

/* ---- the transport ---- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_tp *t = ctx;
	ssize_t n;
	do
		n = send(t->base.fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_tp *t = ctx;
	ssize_t n;
	do
		n = read(t->base.fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n; /* 0: mbedTLS takes it as the end of the stream */
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return MBEDTLS_ERR_SSL_WANT_READ;
	return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* The leaf's subject CN, kept once the chain verified (depth 0 comes last). */
static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls_tp *t = ctx;
	if (depth != 0 || *flags != 0)
		return 0;
	for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
			continue;
		free(t->identity);
		t->identity = NULL;
		/* A CN with a NUL in it cannot be an identity. */
		if (!memchr(n->val.p, '\0', n->val.len))
			t->identity = wh_strndup((const char *)n->val.p, n->val.len);
		break;
	}
	return 0;
}

/* An mbedTLS result as a transport result: -EAGAIN with want set, 0 for the
 * end of the stream, or a negative errno for a failure. */
static ssize_t map_err(struct tls_tp *t, int r, const char *what)
{
	char m[160];
	switch (r) {
	case MBEDTLS_ERR_SSL_WANT_READ:
		t->base.want = WH_WANT_READ;
		return -EAGAIN;
	case MBEDTLS_ERR_SSL_WANT_WRITE:
		t->base.want = WH_WANT_WRITE;
		return -EAGAIN;
	case 0:
	case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
	case MBEDTLS_ERR_SSL_CONN_EOF:
		t->eof = true;
		return 0;
	case MBEDTLS_ERR_NET_SEND_FAILED:
	case MBEDTLS_ERR_NET_RECV_FAILED:
		t->err = -ECONNRESET;
		return t->err;
	default:
		if (wh_log_enabled(WH_LOG_DEBUG)) {
			mbed_err(r, m, sizeof(m));
			wh_log(WH_LOG_DEBUG, what, "error", WH_LS, m, NULL);
		}
		t->err = -EPROTO;
		return t->err;
	}
}

/* Returns 1 once the handshake is complete, else what read/writev return. */
static ssize_t handshake(struct tls_tp *t)
{
	int r = mbedtls_ssl_handshake(&t->ssl);
	if (r != 0) {
		ssize_t e = map_err(t, r, "TLS handshake failed");
		if (e == 0 || e == -ECONNRESET)
			stats.closed++;
		else if (e != -EAGAIN)
			stats.failed++;
		return e;
	}
	/* With a cacert, a client that sent no certificate is anonymous (the
	 * access phase decides); one whose certificate does not verify is
	 * refused here, as Zot's TLS layer does. */
	uint32_t v = mbedtls_ssl_get_verify_result(&t->ssl);
	if (t->gen->verify_clients && v != 0 && v != MBEDTLS_X509_BADCERT_MISSING) {
		wh_log(WH_LOG_DEBUG, "TLS client certificate refused", "flags", WH_LI, (long long)v,
		       NULL);
		free(t->identity);
		t->identity = NULL;
		t->err = -EACCES;
		stats.refused++;
		return t->err;
	}
	if (v != 0) {
		free(t->identity);
		t->identity = NULL;
	}
	t->base.handshaking = false;
	t->base.identity = t->identity;
	stats.ok++;
	if (wh_log_enabled(WH_LOG_DEBUG))
		wh_log(WH_LOG_DEBUG, "TLS handshake done", "version", WH_LS,
		       mbedtls_ssl_get_version(&t->ssl), "cipher", WH_LS,
		       mbedtls_ssl_get_ciphersuite(&t->ssl), "identity", WH_LS, t->identity, NULL);
	return 1;
}

void wh_tls_get_stats(wh_tls_stats *out)
{
	*out = stats;
}

static ssize_t tls_read(wh_transport *tp, char *buf, size_t len)
{
	struct tls_tp *t = (struct tls_tp *)tp;
	if (t->err)
		return t->err;
	if (t->eof)
		return 0;
	if (tp->handshaking) {
		ssize_t h = handshake(t);
		if (h != 1)
			return h;
	}
	/* Read whole records while a whole one still fits, so that little is
	 * left decrypted inside mbedTLS when we return. */
	size_t got = 0;
	while (got < len) {
		int r = mbedtls_ssl_read(&t->ssl, (unsigned char *)buf + got, len - got);
		if (r > 0) {
			got += (size_t)r;
			if (len - got < MBEDTLS_SSL_IN_CONTENT_LEN)
				break;
			continue;
		}
		ssize_t e = map_err(t, r, "TLS read failed");
		if (got > 0)
			break; /* eof or err stays for the next call */
		return e;
	}
	return (ssize_t)got;
}

static ssize_t tls_writev(wh_transport *tp, const struct iovec *iov, int n, bool more)
{
	/* One record's worth, gathered from several iovecs. One loop, one
	 * thread: a static buffer serves every connection. */
	static unsigned char stage[MBEDTLS_SSL_OUT_CONTENT_LEN];
	struct tls_tp *t = (struct tls_tp *)tp;
	if (t->err)
		return t->err;
	if (tp->handshaking) {
		ssize_t h = handshake(t);
		if (h != 1)
			return h == 0 ? -EPIPE : h;
	}
	int maxp = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
	size_t max = maxp > 0 ? WH_MIN((size_t)maxp, sizeof(stage)) : sizeof(stage);
	size_t left = 0, total = 0, off = 0;
	int i = 0;
	for (int k = 0; k < n; k++)
		left += iov[k].iov_len;
	while (left > 0) {
		/* After WANT_WRITE the same length again: mbedTLS already holds
		 * those bytes encrypted, and they are the first ones here. */
		size_t clen = t->wpending ? t->wpending : WH_MIN(left, max);
		if (clen > left)
			return -EIO; /* the caller broke the retry contract */
		const unsigned char *p;
		while (i < n && off == iov[i].iov_len) {
			i++;
			off = 0;
		}
		if (iov[i].iov_len - off >= clen) {
			p = (const unsigned char *)iov[i].iov_base + off;
		} else {
			size_t have = 0;
			int j = i;
			size_t o = off;
			while (have < clen) {
				size_t k = WH_MIN(iov[j].iov_len - o, clen - have);
				memcpy(stage + have, (const char *)iov[j].iov_base + o, k);
				have += k;
				j++;
				o = 0;
			}
			p = stage;
		}
		int r = mbedtls_ssl_write(&t->ssl, p, clen);
		if (r < 0) {
			ssize_t e = map_err(t, r, "TLS write failed");
			if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ)
				t->wpending = clen;
			else if (e == 0)
				e = -EPIPE;
			return total > 0 && e == -EAGAIN ? (ssize_t)total : e;
		}
		t->wpending = 0;
		total += (size_t)r;
		left -= (size_t)r;
		/* Advance over the r bytes taken. */
		for (size_t adv = (size_t)r; adv > 0;) {
			size_t k = WH_MIN(iov[i].iov_len - off, adv);
			off += k;
			adv -= k;
			if (off == iov[i].iov_len && adv > 0) {
				i++;
				off = 0;
			}
		}
	}
	return (ssize_t)total;
}

static bool tls_pending(wh_transport *tp)
{
	struct tls_tp *t = (struct tls_tp *)tp;
	return !tp->handshaking && !t->err && !t->eof && mbedtls_ssl_get_bytes_avail(&t->ssl) > 0;
}

/* Decrypted input waits; else whatever the socket holds (records not yet
 * decrypted, a close_notify alert) counts as input, as on plain TCP. */
static int tls_peek(wh_transport *tp)
{
	if (tls_pending(tp))
		return 1;
	return wh_transport_peek_socket(tp->fd);
}

static void tls_shutdown_write(wh_transport *tp)
{
	struct tls_tp *t = (struct tls_tp *)tp;
	if (!tp->handshaking && !t->err)
		(void)mbedtls_ssl_close_notify(&t->ssl); /* best effort: WANT_WRITE drops it */
	shutdown(tp->fd, SHUT_WR);
}

static void tls_abort(wh_transport *tp)
{
	/* No close_notify: a reset says the answer was cut. */
	wh_transport_socket_abort(tp->fd);
}

static void tls_close(wh_transport *tp)
{
	struct tls_tp *t = (struct tls_tp *)tp;
	mbedtls_ssl_free(&t->ssl);
	gen_unref(t->gen);
	free(t->identity);
	close(tp->fd);
	free(t);
}

static const wh_transport_ops tls_ops = {
    .read = tls_read,
    .writev = tls_writev,
    /* The bytes must pass through the cipher: pread, then writev, a record
     * at a time (the same range again after -EAGAIN gives the same record). */
    .sendfile = wh_transport_copy_file,
    .pending = tls_pending,
    .peek = tls_peek,
    .shutdown_write = tls_shutdown_write,
    .abort = tls_abort,
    .close = tls_close,
};

wh_transport *wh_transport_tls(wh_tls *tls, int fd)
{
	struct tls_tp *t = wh_calloc(1, sizeof(*t));
	t->base.ops = &tls_ops;
	t->base.fd = fd;
	t->base.handshaking = true;
	wh_transport_socket_setup(fd);
	t->gen = tls->cur;
	t->gen->refs++;
	mbedtls_ssl_init(&t->ssl);
	int r = mbedtls_ssl_setup(&t->ssl, &t->gen->conf);
	if (r != 0) {
		/* Only allocation fails here; the first read reports it. */
		t->err = -ENOMEM;
		return &t->base;
	}
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	if (tls->verify_clients)
		mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
	return &t->base;
}

/* ---- configuration: http.tls ---- */

const wh_conf_key wh_tls_keys[] = {
    WH_CONF_KEY("cert", WH_CONF_STRING, 0, offsetof(wh_tls_settings, cert)),
    WH_CONF_KEY("key", WH_CONF_STRING, 0, offsetof(wh_tls_settings, key)),
    WH_CONF_KEY("cacert", WH_CONF_STRING, 0, offsetof(wh_tls_settings, cacert)),
    WH_CONF_END,
};

int wh_tls_settings_check(wh_conf *c, wh_tls_settings *s)
{
	char **paths[] = {&s->cert, &s->key, &s->cacert};

	for (size_t i = 0; i < WH_ARRAY_SIZE(paths); i++)
		if (*paths[i] && !**paths[i]) {
			free(*paths[i]); /* "" is unset, as in Zot */
			*paths[i] = NULL;
		}
	/* Zot serves plain HTTP when only one of cert and key is set; a config
	 * that asks for TLS and would silently not get it is an error here. */
	if (!s->cert != !s->key) {
		wh_conf_push_key(c, s->cert ? "http.tls.key" : "http.tls.cert");
		return wh_conf_fail(c, "required with http.tls.%s", s->cert ? "cert" : "key");
	}
	if (s->cacert && !s->cert) {
		wh_conf_push_key(c, "http.tls.cacert");
		return wh_conf_fail(c, "needs http.tls.cert and http.tls.key");
	}
	return 0;
}

void wh_tls_settings_free(wh_tls_settings *s)
{
	free(s->cert);
	free(s->key);
	free(s->cacert);
	memset(s, 0, sizeof(*s));
}
