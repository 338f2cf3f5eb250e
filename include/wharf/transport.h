/* The byte transport under an HTTP connection: plain TCP now, TLS later as a
 * second implementation of the same four operations, so the HTTP code never
 * changes. All operations are non-blocking on the connection's socket.
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
	/* Release the transport's own state; does not close the socket. */
	void (*free)(wh_transport *t);
} wh_transport_ops;

struct wh_transport {
	const wh_transport_ops *ops;
	int fd;
	int want;
};

/* A plain TCP transport over fd. */
wh_transport *wh_transport_plain(int fd);

#endif
