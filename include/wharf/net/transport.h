/* The byte transport under an HTTP connection: plain TCP here, TLS in tls.c,
 * two implementations of the same operations, so the HTTP code does not know
 * which one it drives. All operations are non-blocking on the connection's
 * socket.
 *
 * read/writev/sendfile return the number of bytes moved, 0 for end of stream
 * (read only), -EAGAIN when the socket is not ready, or another -errno. After
 * -EAGAIN, `want` tells which readiness (WH_WANT_READ / WH_WANT_WRITE) the
 * transport waits for: with TLS a write may need the socket readable. */
#ifndef WHARF_TRANSPORT_H
#define WHARF_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum { WH_WANT_READ = 1, WH_WANT_WRITE = 2 };

typedef struct wh_transport wh_transport;

typedef struct wh_transport_ops {
	ssize_t (*read)(wh_transport *t, char *buf, size_t len);
	/* more: more data follows at once (a file after a response head), so
	 * the transport may hold a partial packet back. */
	ssize_t (*writev)(wh_transport *t, const struct iovec *iov, int n, bool more);
	/* Copy len bytes of file fd at *off to the peer, advancing *off. NULL when
	 * the transport cannot send from a file directly (TLS): the caller then
	 * reads the file and uses writev. */
	ssize_t (*sendfile)(wh_transport *t, int fd, int64_t *off, size_t len);
	/* True when bytes already taken from the socket wait inside the
	 * transport (decrypted TLS data): the socket will not become readable
	 * for them, so the caller must read again without waiting. NULL: never. */
	bool (*pending)(wh_transport *t);
	/* Tell the peer, best effort and without blocking, that nothing more
	 * will be sent (a TLS close_notify) before the caller shuts the socket's
	 * write side. NULL: nothing to say. */
	void (*close_notify)(wh_transport *t);
	/* Release the transport's own state; does not close the socket. */
	void (*free)(wh_transport *t);
} wh_transport_ops;

struct wh_transport {
	const wh_transport_ops *ops;
	int fd;
	int want;
	/* True until a TLS handshake has completed (never for plain TCP): read
	 * and writev drive the handshake first and move no data before it. */
	bool handshaking;
	/* The verified client certificate's subject CN, or NULL (plain TCP, no
	 * client certificates asked for, or a certificate without a CN). Owned by
	 * the transport; set when the handshake completes. */
	const char *identity;
};

/* A plain TCP transport over fd. */
wh_transport *wh_transport_plain(int fd);

#endif
