#include "wharf/net/transport.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wharf/base/common.h"

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
	t->want = WH_WANT_WRITE;
	return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

static void plain_free(wh_transport *t)
{
	free(t);
}

static const wh_transport_ops plain_ops = {
    .read = plain_read,
    .writev = plain_writev,
    .sendfile = plain_sendfile,
    .free = plain_free,
};

wh_transport *wh_transport_plain(int fd)
{
	wh_transport *t = wh_malloc(sizeof(*t));
	t->ops = &plain_ops;
	t->fd = fd;
	t->want = 0;
	t->handshaking = false;
	t->identity = NULL;
	return t;
}
