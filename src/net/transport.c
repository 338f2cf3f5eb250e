#include "wharf/net/transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wharf/base/common.h"

/* One record of TLS, and a good size for a copy through user space. */
#define COPY_PIECE (16 * 1024)

static ssize_t plain_read(wh_transport *t, char *buf, size_t len)
{
	ssize_t n;
	do
		n = read(t->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return n;
	t->want = WH_WANT_READ;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static ssize_t plain_writev(wh_transport *t, const struct iovec *iov, int n, bool more)
{
	struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
	ssize_t w;
	do
		w = sendmsg(t->fd, &msg, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	while (w < 0 && errno == EINTR);
	if (w >= 0)
		return w;
	t->want = WH_WANT_WRITE;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t wh_transport_copy_file(wh_transport *t, int fd, int64_t *off, size_t len)
{
	char buf[COPY_PIECE];
	size_t total = 0;
	ssize_t rc = 0;
	while (total < len) {
		ssize_t r;
		do
			r = pread(fd, buf, WH_MIN(len - total, sizeof(buf)), (off_t)*off);
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			rc = r < 0 ? -errno : 0;
			break;
		}
		struct iovec iov = {buf, (size_t)r};
		ssize_t w = t->ops->writev(t, &iov, 1, false);
		if (w <= 0) {
			rc = w == 0 ? -EPIPE : w;
			break;
		}
		*off += w;
		total += (size_t)w;
		if (w < r)
			break; /* the socket is full */
	}
	/* What moved is reported; an error or -EAGAIN comes back next time. */
	return total > 0 ? (ssize_t)total : rc;
}

static ssize_t plain_sendfile(wh_transport *t, int fd, int64_t *off, size_t len)
{
	off_t o = (off_t)*off;
	ssize_t w;
	do
		w = sendfile(t->fd, fd, &o, len);
	while (w < 0 && errno == EINTR);
	if (w >= 0) {
		*off = (int64_t)o;
		return w;
	}
	if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)
		return wh_transport_copy_file(t, fd, off, len); /* not a file sendfile takes */
	t->want = WH_WANT_WRITE;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int wh_transport_peek_socket(int fd)
{
	char b;
	ssize_t n;
	do
		n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n > 0 ? 1 : 0;
}

static int plain_peek(wh_transport *t)
{
	return wh_transport_peek_socket(t->fd);
}

static void plain_shutdown_write(wh_transport *t)
{
	shutdown(t->fd, SHUT_WR);
}

void wh_transport_socket_setup(int fd)
{
	int one = 1;
	/* Fails harmlessly on a socket that is not TCP (a socketpair in tests). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void wh_transport_socket_abort(int fd)
{
	struct linger lg = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void plain_abort(wh_transport *t)
{
	wh_transport_socket_abort(t->fd);
}

static void plain_close(wh_transport *t)
{
	close(t->fd);
	free(t);
}

static const wh_transport_ops plain_ops = {
    .read = plain_read,
    .writev = plain_writev,
    .sendfile = plain_sendfile,
    .peek = plain_peek,
    .shutdown_write = plain_shutdown_write,
    .abort = plain_abort,
    .close = plain_close,
};

wh_transport *wh_transport_plain(int fd)
{
	wh_transport *t = wh_malloc(sizeof(*t));
	t->ops = &plain_ops;
	t->fd = fd;
	t->want = 0;
	t->handshaking = false;
	t->identity = NULL;
	wh_transport_socket_setup(fd);
	return t;
}
