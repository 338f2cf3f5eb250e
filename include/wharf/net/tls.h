/* TLS for the HTTP listener (http.tls): mbedTLS 3, as the second transport.
 *
 * Settings follow Zot: TLS 1.2 and 1.3; ECDHE with AES-GCM or
 * ChaCha20-Poly1305; groups X25519, P-256, P-384, P-521; ALPN http/1.1.
 * Sessions resume from tickets (keys kept in memory, rotated daily), so a
 * client reconnecting skips the certificate exchange and the key agreement.
 *
 * With cacert, a client certificate is asked for and verified if given
 * (Zot >= 2.1.13's VerifyClientCertIfGiven): one that does not chain to the
 * CA fails the handshake; a client without one finishes it with no identity
 * and the access phase (auth.h) treats it as anonymous; a verified
 * certificate's subject CN becomes the connection's identity
 * (wh_transport.identity), which the access phase takes as the user.
 *
 * The cert/key pair can be reloaded (SIGHUP): new handshakes use the new
 * pair, connections already established keep theirs. The CA is read once,
 * as in Zot. */
#ifndef WHARF_TLS_H
#define WHARF_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "wharf/base/conf.h"
#include "wharf/net/transport.h"

typedef struct wh_tls wh_tls;

/* http.tls: served over TLS when cert and key are both set (as Zot). Paths
 * as written; the files are read by wh_tls_new, not by the config loader.
 * cacert: client certificates are required and verified against it. */
typedef struct wh_tls_settings {
	char *cert;
	char *key;
	char *cacert;
} wh_tls_settings;

extern const wh_conf_key wh_tls_keys[];
/* The checks across the keys of http.tls (cert without key...); "" is unset. */
int wh_tls_settings_check(wh_conf *c, wh_tls_settings *s);
void wh_tls_settings_free(wh_tls_settings *s);

/* Read cfg->cert, key and cacert and set up a server context.
 * Returns 0 with *out set, or WH_EINVAL with a message in err that names the
 * key and the file ("http.tls.key: /etc/wharf/key.pem: cannot parse the
 * private key: ..."). cfg must have both cert and key. */
int wh_tls_new(const wh_tls_settings *cfg, wh_tls **out, char *err, size_t errlen);

/* Read the cert/key pair again: from cfg's paths (a config read again), or
 * from the same ones when cfg is NULL. On failure the pair (and paths) in
 * use stay and err says why (WH_EINVAL). The CA is not read again, as in
 * Zot. */
int wh_tls_reload(wh_tls *tls, const wh_tls_settings *cfg, char *err, size_t errlen);

/* The serial number of the certificate new handshakes present, in hex (for
 * the log). */
const char *wh_tls_serial(const wh_tls *tls);

/* Server-side handshakes so far, every context together (for metrics),
 * each counted once when it ends. Counted on the loop's thread. A
 * handshake that runs out of time is the server's to count (http.h). */
typedef struct wh_tls_stats {
	uint64_t ok;      /* done */
	uint64_t failed;  /* a protocol error (no common suite, a bad record, ...) */
	uint64_t refused; /* a client certificate that does not verify */
	uint64_t closed;  /* the peer closed or reset the connection before the end */
} wh_tls_stats;
void wh_tls_get_stats(wh_tls_stats *out);

/* Free the context, after every transport made from it has been closed. */
void wh_tls_free(wh_tls *tls);

/* A server-side TLS transport over the non-blocking socket fd, which it owns
 * from now on; the handshake runs from its first read or writev (or
 * sendfile). Never NULL. */
wh_transport *wh_transport_tls(wh_tls *tls, int fd);

#endif
