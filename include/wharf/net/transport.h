/* The transport under an HTTP connection: a whole connection type, as Redis's
 * ConnectionType. Plain TCP here, TLS in tls.c: two implementations of every
 * operation the HTTP code needs on a connection, so http.c does not know
 * which one it drives and never touches the socket itself (it only watches
 * t->fd with a uv_poll). All operations are non-blocking.
 *
 * read/writev/sendfile return the number of bytes moved, 0 for the end of
 * the stream (read) or of the file (sendfile), -EAGAIN when the socket is
 * not ready, or another -errno. After -EAGAIN, `want` tells which readiness
 * (WH_WANT_READ / WH_WANT_WRITE) the transport waits for: with TLS a write
 * may need the socket readable, and a read writable.
 *
 * The retry rule (mbedTLS's, made every transport's): after writev or
 * sendfile returned -EAGAIN, or took fewer bytes than offered, the caller
 * offers the same bytes again, starting with the first one not taken: the
 * same data to writev (at least as many bytes as before), the same file
 * range to sendfile. A TLS transport has already encrypted a record of them
 * and must send exactly that record. A file being sent is never rewritten
 * where it is sent from (it may grow), so a range read again is the same. */
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
	/* Copy len bytes of file fd at *off to the peer, advancing *off; 0 when
	 * the file ends at *off. Fewer bytes than len only when the socket is
	 * full (or the file ends). Never NULL: a transport that cannot hand the
	 * file to the kernel (TLS) reads and writes it itself
	 * (wh_transport_copy_file). */
	ssize_t (*sendfile)(wh_transport *t, int fd, int64_t *off, size_t len);
	/* True when bytes already taken from the socket wait inside the
	 * transport (decrypted TLS data): the socket will not become readable
	 * for them, so the caller must read again without waiting. NULL: never. */
	bool (*pending)(wh_transport *t);
	/* For a connection not being read, told that its peer may have gone:
	 * 1 when input waits (it is not taken), 0 when the peer has ended its
	 * side with nothing before the end, -EAGAIN when nothing has come, or
	 * -errno (the connection failed). */
	int (*peek)(wh_transport *t);
	/* Nothing more will be sent: say so to the peer (a TLS close_notify,
	 * best effort and without blocking), then shut the socket's write side.
	 * Reading goes on (a lingering close drains the input through read). */
	void (*shutdown_write)(wh_transport *t);
	/* Make the coming close a reset, not an orderly end, so that the peer
	 * cannot take what it got for a whole answer. Nothing is said first. */
	void (*abort)(wh_transport *t);
	/* Close the socket and free the transport. */
	void (*close)(wh_transport *t);
} wh_transport_ops;

struct wh_transport {
	const wh_transport_ops *ops;
	int fd; /* the socket, to be watched for readiness; owned by the transport */
	int want;
	/* True until a TLS handshake has completed (never for plain TCP): read
	 * and writev drive the handshake first and move no data before it. The
	 * caller holds the handshake to a deadline of its own. */
	bool handshaking;
	/* The verified client certificate's subject CN, or NULL (plain TCP, no
	 * client certificates asked for, or a certificate without a CN). Owned by
	 * the transport; set when the handshake completes. */
	const char *identity;
};

/* A plain TCP transport over fd, a connected non-blocking stream socket
 * (TCP_NODELAY is set on it). It owns fd from now on. Never NULL. */
wh_transport *wh_transport_plain(int fd);

/* For implementations. sendfile without the kernel's help: read the next
 * piece of the file at *off and write it with t->ops->writev, piece after
 * piece until len bytes went, the socket is full or the file ends;
 * returns as sendfile does. */
ssize_t wh_transport_copy_file(wh_transport *t, int fd, int64_t *off, size_t len);
/* The peek of a socket (recv with MSG_PEEK), as the peek operation returns. */
int wh_transport_peek_socket(int fd);
/* Socket options every transport sets: TCP_NODELAY at the start, SO_LINGER
 * 0 for abort. */
void wh_transport_socket_setup(int fd);
void wh_transport_socket_abort(int fd);

#endif
