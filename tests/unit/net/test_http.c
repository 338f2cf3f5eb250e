/* The HTTP/1.1 server (src/net/http.c), driven from a test: a real server on a
 * real libuv loop, connections adopted from socketpairs (as
 * tests/fuzz/fuzz_http.c does), and clients in this file that write requests
 * and read the answers with llhttp. No server process, no network: each test
 * is a few turns of the loop, with small timeouts where time matters.
 *
 * The handler is an application whose behaviour the request path picks; it
 * writes what happens (handler calls, done hooks, ...) into `trace`, which
 * the checks compare with what http.h promises. Every call it makes into the
 * request API is marked (API()), so that anything of the application that
 * runs inside one is caught. */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/base/file.h"
#include "wharf/base/log.h"
#include "wharf/net/http.h"
#include "wharf/net/transport.h"

static uv_loop_t loop;
static wh_http_settings cfg;
static char address[] = "127.0.0.1";

/* What happened, in order: "h:/a " for a handler call, "done:/a " ... */
static char trace[8192];

static void tr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tr(const char *fmt, ...)
{
	size_t n = strlen(trace);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(trace + n, sizeof(trace) - n, fmt, ap);
	va_end(ap);
}

/* ---- the loop ---- */

static bool timed_out;

static void guard_cb(uv_timer_t *t)
{
	(void)t;
	timed_out = true;
}

/* Run the loop until pred() holds or ms have passed; returns pred(). */
static bool run_until(bool (*pred)(void), int ms)
{
	uv_timer_t guard;
	timed_out = false;
	uv_timer_init(&loop, &guard);
	uv_timer_start(&guard, guard_cb, (uint64_t)ms, 0);
	while (!(pred && pred()) && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return pred && pred();
}

static void run_for(int ms)
{
	(void)run_until(NULL, ms);
}

/* ---- the clients ---- */

#define MAX_CLIENTS 4
#define MAX_RESP    64

struct resp {
	int status;
	size_t body_len;
	char body[256]; /* the first bytes */
	bool keep_alive;
	char retry_after[16];
};

static struct client {
	int fd; /* the client's end, -1 once closed */
	uv_poll_t poll;
	bool reading;
	char *got; /* everything the server sent */
	size_t got_len, got_cap;
	bool eof;
	int err; /* a read error (ECONNRESET) */
} cls[MAX_CLIENTS];
static int n_cls;

static wh_server *srv;
static bool srv_finished;

static void client_cb(uv_poll_t *h, int status, int events);

static void client_read(struct client *c)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			c->eof = true;
			c->err = n < 0 ? errno : 0;
			return;
		}
		wh_buf_append(&c->got, &c->got_len, &c->got_cap, buf, (size_t)n);
	}
}

static void client_cb(uv_poll_t *h, int status, int events)
{
	struct client *c = h->data;
	(void)events;
	client_read(c);
	if (c->eof || status < 0) {
		uv_poll_stop(&c->poll);
		c->reading = false;
	}
}

/* A connection to the server: one end of a socketpair, the other adopted. */
static struct client *client_new(void)
{
	int sv[2];
	struct client *c = &cls[n_cls++];
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	/* Small buffers, so that a few hundred KiB fill them. */
	int sz = 32 * 1024;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	CHECK(wh_server_adopt(srv, sv[0]) == 0);
	c->fd = sv[1];
	uv_poll_init(&loop, &c->poll, c->fd);
	c->poll.data = c;
	c->reading = true;
	uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, client_cb);
	return c;
}

/* A client that stops reading (its socket fills up), and reads again. */
static void client_pause(struct client *c)
{
	uv_poll_stop(&c->poll);
	c->reading = false;
}

static void client_resume(struct client *c)
{
	c->reading = true;
	uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, client_cb);
}

static void client_send(struct client *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			run_for(1); /* the server reads meanwhile */
			continue;
		}
		if (w < 0) {
			CHECK(!"the client's write went through");
			return;
		}
		data += w;
		len -= (size_t)w;
	}
}

static void says(struct client *c, const char *s)
{
	client_send(c, s, strlen(s));
}

static void client_close(struct client *c)
{
	if (c->fd < 0)
		return;
	uv_close((uv_handle_t *)&c->poll, NULL);
	close(c->fd);
	c->fd = -1;
}

/* What a client got, as responses, in order. */
static struct resp resps[MAX_RESP];
static int n_resp;
static int head_from = MAX_RESP; /* the responses from this one on answer HEADs */
static const char *hdr_at;
static size_t hdr_len;

static int r_header_field(llhttp_t *p, const char *at, size_t len)
{
	(void)p;
	hdr_at = at;
	hdr_len = len;
	return 0;
}

static int r_header_value(llhttp_t *p, const char *at, size_t len)
{
	(void)p;
	if (n_resp < MAX_RESP && hdr_len == 11 && strncasecmp(hdr_at, "retry-after", 11) == 0)
		snprintf(resps[n_resp].retry_after, sizeof(resps[n_resp].retry_after), "%.*s",
		         (int)len, at);
	return 0;
}

static int r_headers_complete(llhttp_t *p)
{
	if (p->status_code >= 200 && n_resp < MAX_RESP) {
		resps[n_resp].status = p->status_code;
		resps[n_resp].keep_alive = llhttp_should_keep_alive(p);
	}
	return n_resp >= head_from ? 1 : 0;
}

static int r_body(llhttp_t *p, const char *at, size_t len)
{
	(void)p;
	if (n_resp >= MAX_RESP)
		return 0;
	struct resp *r = &resps[n_resp];
	size_t have = WH_MIN(r->body_len, sizeof(r->body) - 1);
	memcpy(r->body + have, at, WH_MIN(len, sizeof(r->body) - 1 - have));
	r->body_len += len;
	return 0;
}

static int r_message_complete(llhttp_t *p)
{
	if (p->status_code >= 200 && n_resp < MAX_RESP)
		n_resp++;
	return 0;
}

/* Parse what c got; returns how many responses are complete. */
static int parse(struct client *c)
{
	static llhttp_settings_t s;
	llhttp_t p;
	memset(resps, 0, sizeof(resps));
	n_resp = 0;
	llhttp_settings_init(&s);
	s.on_header_field = r_header_field;
	s.on_header_value = r_header_value;
	s.on_headers_complete = r_headers_complete;
	s.on_body = r_body;
	s.on_message_complete = r_message_complete;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	if (c->got_len && llhttp_execute(&p, c->got, c->got_len) == HPE_OK && c->eof)
		llhttp_finish(&p);
	return n_resp;
}

static struct client *wait_c;
static int wait_n;

static bool have_resps(void)
{
	return parse(wait_c) >= wait_n;
}

/* Run until c has n complete responses (or 2 s); resps holds them. */
static bool wait_resps(struct client *c, int n)
{
	wait_c = c;
	wait_n = n;
	return run_until(have_resps, 2000);
}

static bool got_eof(void)
{
	return wait_c->eof;
}

/* Run until the server closed c's connection (or ms). */
static bool wait_eof(struct client *c, int ms)
{
	wait_c = c;
	return run_until(got_eof, ms);
}

/* ---- the application ---- */

/* Inside a call of the request API made by the application: nothing of the
 * application may run then (http.h). */
static int in_api;
#define API(call)                                                                                  \
	do {                                                                                       \
		in_api++;                                                                          \
		call;                                                                              \
		in_api--;                                                                          \
	} while (0)

static void app_entered(const char *what)
{
	if (in_api)
		tr("REENTERED(%s) ", what);
}

static void answer(wh_req *req, int status, const char *body)
{
	API(wh_resp_start(req, status));
	API(wh_resp_header(req, "Content-Type", "text/plain"));
	API(wh_resp_length(req, (int64_t)strlen(body)));
	API(wh_resp_write(req, body, strlen(body)));
	API(wh_resp_end(req));
}

/* An answer from a timer, as after an upstream fetch: outside every event of
 * the connection. The timer is not the request's: it outlives it. */
struct late {
	uv_timer_t timer;
	struct rq *x;
	void (*fn)(struct rq *x);
};

/* Every request's own state, from wh_req_alloc, with a done hook. */
struct rq {
	struct rq *next; /* in live */
	wh_req *req;
	wh_req_hook hook;
	char path[64];
	struct late *late;
	int64_t left;     /* streaming: body bytes still to write */
	int64_t sent;     /* streaming: written so far */
	int64_t got;      /* body bytes received */
	int writables;    /* on_writable calls */
	bool was_blocked; /* wh_resp_can_write said no at some point */
};

static struct rq *live; /* requests whose done hook has not run */
static int n_done;      /* done hooks run */
static struct rq last;  /* a copy of the last request done */

static struct rq *rq_of(wh_req *req)
{
	for (struct rq *x = live; x; x = x->next)
		if (x->req == req)
			return x;
	return NULL;
}

static void rq_done(wh_req *req, wh_req_hook *hook)
{
	struct rq *x = WH_CONTAINER_OF(hook, struct rq, hook);
	app_entered("done hook");
	CHECK(x->req == req);
	CHECK_STREQ(req->path, x->path);
	tr("done:%s ", x->path);
	if (x->late)
		x->late->x = NULL;
	for (struct rq **pp = &live; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	n_done++;
	last = *x;
}

static void late_closed(uv_handle_t *h)
{
	free(h->data);
}

static void late_cb(uv_timer_t *t)
{
	struct late *l = t->data;
	if (l->x) {
		l->x->late = NULL;
		l->fn(l->x);
	}
	uv_close((uv_handle_t *)t, late_closed);
}

static void later(struct rq *x, int ms, void (*fn)(struct rq *x))
{
	struct late *l = wh_calloc(1, sizeof(*l));
	l->x = x;
	l->fn = fn;
	x->late = l;
	uv_timer_init(&loop, &l->timer);
	l->timer.data = l;
	uv_timer_start(&l->timer, late_cb, (uint64_t)ms, 0);
}

static void answer_path(struct rq *x)
{
	wh_req *req = x->req;
	answer(req, 200, x->path);
	/* The request stays valid until the loop runs its done hooks. */
	CHECK_STREQ(req->path, x->path);
	tr("ended:%s ", x->path);
}

/* A body of x->left bytes, written while the queue takes it: 'a'..'z'. */
static void stream_more(wh_req *req)
{
	struct rq *x = rq_of(req);
	app_entered("on_writable");
	CHECK(x != NULL);
	if (!x)
		return;
	x->writables++;
	char buf[4096];
	while (x->left > 0) {
		if (!wh_resp_can_write(req)) {
			x->was_blocked = true;
			return;
		}
		size_t n = (size_t)WH_MIN(x->left, (int64_t)sizeof(buf));
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)('a' + (x->sent + (int64_t)i) % 26);
		x->left -= (int64_t)n;
		x->sent += (int64_t)n;
		API(wh_resp_write(req, buf, n));
	}
	tr("streamed:%s ", x->path);
	API(wh_resp_end(req));
}

static void stream_start(struct rq *x)
{
	wh_req *req = x->req;
	char q[32];
	x->left = wh_req_query(req, "n", q, sizeof(q)) ? strtoll(q, NULL, 10) : 100000;
	API(wh_resp_start(req, 200));
	API(wh_resp_length(req, x->left));
	req->on_writable = stream_more;
	stream_more(req);
}

static int on_body(wh_req *req, const char *data, size_t len)
{
	struct rq *x = rq_of(req);
	app_entered("on_body");
	(void)data;
	x->got += (int64_t)len;
	return 0;
}

static void on_body_end(wh_req *req)
{
	struct rq *x = rq_of(req);
	char text[64];
	app_entered("on_body_end");
	snprintf(text, sizeof(text), "%lld bytes", (long long)x->got);
	answer(req, 201, text);
}

/* The file two requests send from at once (test_shared_file). */
static wh_file *shared;
static int64_t shared_size;

static void send_shared(struct rq *x)
{
	wh_req *req = x->req;
	API(wh_resp_start(req, 200));
	API(wh_resp_length(req, shared_size));
	API(wh_resp_send_file(req, shared, 0, shared_size));
	API(wh_resp_end(req));
}

/* Done hooks: two registered from the request's own memory, one cancelled. */
struct hooked {
	wh_req_hook a, b, c;
	char path[32];
	int zero_check;
};

static void hook_a(wh_req *req, wh_req_hook *hook)
{
	struct hooked *x = WH_CONTAINER_OF(hook, struct hooked, a);
	/* The request is still whole while its hooks run. */
	CHECK_STREQ(req->path, x->path);
	tr("hookA:%s ", x->path);
}

static void hook_b(wh_req *req, wh_req_hook *hook)
{
	struct hooked *x = WH_CONTAINER_OF(hook, struct hooked, b);
	tr("hookB:%s ", req->path);
	CHECK(x->zero_check == 0);
}

static void hook_c(wh_req *req, wh_req_hook *hook)
{
	(void)hook;
	tr("hookC:%s ", req->path);
}

/* The request as the handler saw it, for test_parse. */
static char seen[512];

static void handler(wh_req *req, void *ctx)
{
	(void)ctx;
	app_entered("handler");
	tr("h:%s ", req->path);
	if (strcmp(req->path, "/hooks") == 0) {
		struct hooked *x = wh_req_alloc(req, sizeof(*x));
		/* Zeroed, as promised. */
		CHECK(x->a.fn == NULL && x->b.link.next == NULL && x->path[0] == '\0');
		snprintf(x->path, sizeof(x->path), "%s", req->path);
		wh_req_on_done(req, &x->a, hook_a);
		wh_req_on_done(req, &x->b, hook_b);
		wh_req_on_done(req, &x->c, hook_c);
		wh_req_cancel_done(req, &x->c);
		wh_req_cancel_done(req, &x->c); /* not registered any more: nothing */
		/* Many small blocks: each one must be freed (LeakSanitizer). */
		for (int i = 0; i < 100; i++)
			memset(wh_req_alloc(req, (size_t)i + 1), 0xab, (size_t)i + 1);
		answer(req, 200, "hooked");
		return;
	}
	if (strcmp(req->path, "/hang") == 0) {
		/* Never answered: the hooks run when the connection goes. */
		struct hooked *x = wh_req_alloc(req, sizeof(*x));
		snprintf(x->path, sizeof(x->path), "%s", req->path);
		wh_req_on_done(req, &x->a, hook_a);
		return;
	}
	struct rq *x = wh_req_alloc(req, sizeof(*x));
	x->req = req;
	snprintf(x->path, sizeof(x->path), "%s", req->path);
	wh_req_on_done(req, &x->hook, rq_done);
	x->next = live;
	live = x;
	const char *p = req->path;
	if (strcmp(p, "/parse") == 0) {
		char q[64], e[8];
		const char *d = wh_req_query(req, "d", q, sizeof(q));
		snprintf(seen, sizeof(seen), "%s %s %s q=%s d=%s e=%s has_e=%d x=%s cl=%lld",
		         req->method, req->target, req->path, req->query ? req->query : "-",
		         d ? d : "-", wh_req_query(req, "e", e, sizeof(e)) ? e : "-",
		         wh_req_query_has(req, "e"), wh_req_header(req, "X-TEST"),
		         (long long)req->content_length);
		answer(req, 200, "parsed");
	} else if (strncmp(p, "/late/", 6) == 0) {
		later(x, 1, answer_path);
	} else if (strncmp(p, "/now/", 5) == 0) {
		answer_path(x);
	} else if (strcmp(p, "/stream/now") == 0) {
		stream_start(x);
	} else if (strcmp(p, "/stream/late") == 0) {
		later(x, 1, stream_start);
	} else if (strcmp(p, "/body") == 0) {
		API(wh_req_read_body(req, on_body, on_body_end));
	} else if (strcmp(p, "/shared") == 0) {
		send_shared(x);
	} else if (strcmp(p, "/abort") == 0) {
		API(wh_resp_start(req, 200));
		API(wh_resp_length(req, 1000));
		API(wh_resp_write(req, "0123456789", 10));
		API(wh_req_abort(req));
	} else if (strcmp(p, "/wait") != 0) {
		answer(req, 404, "no");
	}
}

/* ---- set up and tear down ---- */

static void defaults(void)
{
	cfg.address = address;
	cfg.port = 0;
	cfg.header_timeout_ms = 10000;
	cfg.idle_timeout_ms = 10000;
	cfg.body_timeout_ms = 10000;
	cfg.send_timeout_ms = 10000;
	cfg.shutdown_timeout_ms = 1000;
	cfg.max_connections = 16;
	cfg.max_header_bytes = 8192;
	cfg.max_headers = 32;
}

/* A server and its first client. */
static struct client *start(void)
{
	memset(trace, 0, sizeof(trace));
	for (int i = 0; i < MAX_CLIENTS; i++)
		free(cls[i].got);
	memset(cls, 0, sizeof(cls));
	n_cls = 0;
	n_done = 0;
	head_from = MAX_RESP;
	srv_finished = false;
	CHECK(wh_server_start(&loop, &cfg, NULL, handler, NULL, &srv) == 0);
	return client_new();
}

static void server_done(void *arg)
{
	(void)arg;
	srv_finished = true;
}

static bool srv_done(void)
{
	return srv_finished;
}

/* End of a test: the clients go, the server shuts down, and nothing of
 * either is left on the loop; every request's done hook has run. */
static void finish(void)
{
	for (int i = 0; i < n_cls; i++)
		client_close(&cls[i]);
	wh_server_shutdown(srv, server_done, NULL);
	CHECK(run_until(srv_done, 3000));
	CHECK(live == NULL);
	CHECK(uv_loop_alive(&loop) == 0);
	defaults();
}

/* ---- the tests ---- */

/* The request as a handler sees it. */
static void test_parse(void)
{
	struct client *c = start();
	says(c, "GET /parse?d=a%2Fb+c&e HTTP/1.1\r\nHost: x\r\nx-test:  v1\r\n\r\n");
	CHECK(wait_resps(c, 1));
	CHECK(resps[0].status == 200 && resps[0].keep_alive);
	CHECK_STREQ(seen, "GET /parse?d=a%2Fb+c&e /parse q=d=a%2Fb+c&e d=a/b c e= has_e=1 x=v1 "
	                  "cl=0");
	/* A HEAD answer has the head, not the body. */
	head_from = 1;
	says(c, "HEAD /parse HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(c, 2));
	CHECK(resps[1].status == 200 && resps[1].body_len == 0);
	CHECK(strstr(c->got, "Content-Length: 6\r\n") != NULL);
	finish();
}

static void test_hooks(void)
{
	struct client *c = start();
	says(c, "GET /hooks HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(c, 1));
	run_for(5);
	CHECK(resps[0].status == 200);
	CHECK_STREQ(resps[0].body, "hooked");
	/* Last registered first, the cancelled one never. */
	CHECK_STREQ(trace, "h:/hooks hookB:/hooks hookA:/hooks ");
	finish();
}

static void test_hooks_when_connection_goes(void)
{
	struct client *c = start();
	says(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(10);
	CHECK_STREQ(trace, "h:/hang ");
	client_close(c);
	run_for(10);
	CHECK_STREQ(trace, "h:/hang hookA:/hang ");
	finish();
}

/* Pipelined requests answered from timers and at once: in order, and each
 * handler, each done hook, runs from the loop, not inside the wh_resp_end
 * that finished the request before it. */
static void test_pipelined_late(void)
{
	struct client *c = start();
	says(c, "GET /late/1 HTTP/1.1\r\nHost: x\r\n\r\n"
	        "GET /late/2 HTTP/1.1\r\nHost: x\r\n\r\n"
	        "GET /now/3 HTTP/1.1\r\nHost: x\r\n\r\n"
	        "GET /late/4 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(c, 4));
	run_for(5);
	CHECK_STREQ(resps[0].body, "/late/1");
	CHECK_STREQ(resps[1].body, "/late/2");
	CHECK_STREQ(resps[2].body, "/now/3");
	CHECK_STREQ(resps[3].body, "/late/4");
	CHECK(resps[3].keep_alive);
	CHECK_STREQ(trace, "h:/late/1 ended:/late/1 done:/late/1 "
	                   "h:/late/2 ended:/late/2 done:/late/2 "
	                   "h:/now/3 ended:/now/3 done:/now/3 "
	                   "h:/late/4 ended:/late/4 done:/late/4 ");
	finish();
}

/* Many pipelined requests in one write, answered at once: all of them, in
 * order, however many there are. */
static void test_pipelined_many(void)
{
	struct client *c = start();
	char buf[64 * 40];
	size_t n = 0;
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
		                      "GET /now/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
	client_send(c, buf, n);
	CHECK(wait_resps(c, 40));
	bool in_order = true;
	for (int i = 0; i < 40; i++) {
		char want[16];
		snprintf(want, sizeof(want), "/now/%d", i);
		in_order = in_order && strcmp(resps[i].body, want) == 0;
	}
	CHECK(in_order);
	CHECK(strstr(trace, "REENTERED") == NULL);
	finish();
}

/* A body produced from on_writable, started from a timer: on_writable is
 * never called from inside wh_resp_write, and the next request waits. */
static void test_stream_late(void)
{
	struct client *c = start();
	says(c, "GET /stream/late?n=300000 HTTP/1.1\r\nHost: x\r\n\r\n"
	        "GET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(c, 2));
	run_for(5);
	CHECK(resps[0].status == 200 && resps[0].body_len == 300000);
	CHECK(strncmp(resps[0].body, "abcdefghijklmnopqrstuvwxyzabc", 29) == 0);
	CHECK_STREQ(resps[1].body, "/now/2");
	CHECK_STREQ(trace, "h:/stream/late streamed:/stream/late done:/stream/late "
	                   "h:/now/2 ended:/now/2 done:/now/2 ");
	finish();
}

/* Backpressure: a client that does not read holds the producer back (the
 * queue stays near its high watermark), and on_writable brings it back
 * once the client reads again. */
static void test_backpressure(void)
{
	struct client *c = start();
	client_pause(c);
	says(c, "GET /stream/now?n=4000000 HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(50);
	struct rq *x = live;
	CHECK(x != NULL);
	if (!x) {
		finish();
		return;
	}
	/* Socket buffers (a few hundred KiB at most) plus the queue's 64 KiB. */
	CHECK(x->was_blocked);
	CHECK(x->sent < 1024 * 1024);
	int64_t held = x->sent;
	run_for(30);
	CHECK(x->sent == held); /* nothing more while the client does not read */
	client_resume(c);
	CHECK(wait_resps(c, 1));
	CHECK(resps[0].body_len == 4000000);
	CHECK(last.writables > 10);
	CHECK(strstr(trace, "REENTERED") == NULL);
	finish();
}

/* Bodies stream to on_body: by length, chunked, and after 100-continue. */
static void test_body(void)
{
	struct client *c = start();
	says(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
	        "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	        "5\r\nabcde\r\n3\r\nfgh\r\n0\r\n\r\n");
	CHECK(wait_resps(c, 2));
	CHECK(resps[0].status == 201);
	CHECK_STREQ(resps[0].body, "10 bytes");
	CHECK_STREQ(resps[1].body, "8 bytes");
	says(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
	        "Expect: 100-continue\r\n\r\n");
	run_for(20);
	CHECK(strstr(c->got, "HTTP/1.1 100 Continue\r\n\r\n") != NULL);
	says(c, "wxyz");
	CHECK(wait_resps(c, 3));
	CHECK_STREQ(resps[2].body, "4 bytes");
	CHECK(strstr(trace, "REENTERED") == NULL);
	finish();
}

/* Limits: a head over maxHeaders fields or maxHeaderBytes is a 431, a
 * request with bad framing a 400; no handler runs, and the connection
 * closes after the answer. */
static void limit_case(const char *request, int status)
{
	struct client *c = start();
	says(c, request);
	CHECK(wait_resps(c, 1));
	CHECK(resps[0].status == status);
	CHECK(!resps[0].keep_alive);
	CHECK(wait_eof(c, 1000));
	CHECK(trace[0] == '\0'); /* no handler ran */
	finish();
}

static void test_limits(void)
{
	char head[16384];
	size_t n = (size_t)snprintf(head, sizeof(head), "GET /now/x HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(head + n, sizeof(head) - n, "X-H%d: v\r\n", i);
	snprintf(head + n, sizeof(head) - n, "\r\n");
	limit_case(head, 431); /* 41 fields, 32 allowed */

	n = (size_t)snprintf(head, sizeof(head), "GET /now/x HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(head + n, 'a', 9000);
	n += 9000;
	snprintf(head + n, sizeof(head) - n, "\r\n\r\n");
	limit_case(head, 431); /* 9 KiB of head, 8 KiB allowed */

	limit_case("POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
	limit_case("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	           400);
	limit_case(
	    "GET /now/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	    400);
	limit_case("HELLO\r\n\r\n", 400);
}

/* The deadlines, with small values: header (slowloris), idle keep-alive,
 * body progress, send progress. */
static void test_timeouts(void)
{
	/* Header: a head that never ends gets a 408, then the connection goes. */
	cfg.header_timeout_ms = 60;
	struct client *c = start();
	uint64_t t0 = uv_now(&loop);
	says(c, "GET /now/x HTTP/1.1\r\nHost: x\r\n");
	CHECK(wait_eof(c, 1000));
	uint64_t dt = uv_now(&loop) - t0;
	CHECK(dt >= 50 && dt < 500);
	CHECK(parse(c) == 1 && resps[0].status == 408);
	CHECK(trace[0] == '\0');
	finish();

	/* Idle: after an answer, a connection with nothing more to say goes,
	 * without a word. */
	cfg.idle_timeout_ms = 60;
	c = start();
	says(c, "GET /now/1 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(c, 1));
	t0 = uv_now(&loop);
	CHECK(wait_eof(c, 1000));
	dt = uv_now(&loop) - t0;
	CHECK(dt >= 40 && dt < 500);
	CHECK(parse(c) == 1);
	finish();

	/* Body: a body that stops coming closes the connection; the request's
	 * done hook runs. */
	cfg.body_timeout_ms = 60;
	c = start();
	says(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
	CHECK(wait_eof(c, 1000));
	CHECK(parse(c) == 0);
	CHECK_STREQ(trace, "h:/body done:/body ");
	CHECK(last.got == 10);
	finish();

	/* Send: a client that stops reading a long answer is dropped. */
	cfg.send_timeout_ms = 60;
	c = start();
	client_pause(c);
	says(c, "GET /stream/now?n=4000000 HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(300);
	CHECK_STREQ(trace, "h:/stream/now done:/stream/now ");
	finish();
}

/* One file, two requests sending it at once: each range holds a reference,
 * so the file outlives its owner's reference until both are sent, and is
 * closed then. */
static void test_shared_file(void)
{
	shared_size = 1 << 20;
	int fd = memfd_create("test_http", MFD_CLOEXEC);
	CHECK(fd >= 0);
	char block[4096];
	for (int64_t off = 0; off < shared_size; off += (int64_t)sizeof(block)) {
		for (size_t i = 0; i < sizeof(block); i++)
			block[i] = (char)('A' + (off + (int64_t)i) / 4096 % 26);
		CHECK(write(fd, block, sizeof(block)) == (ssize_t)sizeof(block));
	}
	shared = wh_file_new(fd);

	struct client *a = start();
	struct client *b = client_new();
	client_pause(a);
	client_pause(b);
	says(a, "GET /shared HTTP/1.1\r\nHost: x\r\n\r\n");
	says(b, "GET /shared HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(20);
	CHECK_STREQ(trace, "h:/shared h:/shared ");
	/* The owner lets go; the queued ranges still hold the file. */
	wh_file_unref(shared);
	shared = NULL;
	CHECK(fcntl(fd, F_GETFD) != -1);
	client_resume(a);
	CHECK(wait_resps(a, 1));
	CHECK(resps[0].body_len == (size_t)shared_size);
	CHECK(strncmp(resps[0].body, "AAAA", 4) == 0);
	CHECK(a->got_len >= (size_t)shared_size &&
	      a->got[a->got_len - 1] == (char)('A' + (shared_size - 1) / 4096 % 26));
	CHECK(fcntl(fd, F_GETFD) != -1); /* b still sends from it */
	client_resume(b);
	CHECK(wait_resps(b, 1));
	CHECK(resps[0].body_len == (size_t)shared_size);
	run_for(5);
	CHECK(n_done == 2);
	errno = 0;
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
	finish();
}

/* wh_req_abort resets the connection: the client cannot take the cut body
 * for a whole one; the done hook runs. */
static void test_abort(void)
{
	struct client *c = start();
	says(c, "GET /abort HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_eof(c, 1000));
	CHECK(parse(c) == 0);
	CHECK_STREQ(trace, "h:/abort done:/abort ");
	finish();
}

/* A client that leaves while its request waits (not being read) is noticed
 * at once: the request's done hook runs, no answer is written. */
static void test_peer_gone(void)
{
	struct client *c = start();
	says(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(10);
	CHECK_STREQ(trace, "h:/wait ");
	shutdown(c->fd, SHUT_WR);
	run_for(20);
	CHECK_STREQ(trace, "h:/wait done:/wait ");
	finish();
}

/* The plain transport's copy of a file (what TLS uses for sendfile): every
 * byte, in pieces, stopping when the socket is full. */
static void test_copy_file(void)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	int sz = 16 * 1024;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	int fd = memfd_create("copy", MFD_CLOEXEC);
	static char data[200000], got[200000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	CHECK(write(fd, data, sizeof(data)) == (ssize_t)sizeof(data));
	wh_transport *t = wh_transport_plain(sv[0]);
	int64_t off = 0;
	size_t have = 0;
	int full = 0;
	while (off < (int64_t)sizeof(data)) {
		ssize_t n = wh_transport_copy_file(t, fd, &off, sizeof(data) - (size_t)off);
		if (n == -EAGAIN || (n > 0 && off < (int64_t)sizeof(data)))
			full++;
		CHECK(n > 0 || n == -EAGAIN);
		if (n < 0 && n != -EAGAIN)
			break;
		ssize_t r;
		while ((r = read(sv[1], got + have, sizeof(got) - have)) > 0)
			have += (size_t)r;
	}
	ssize_t r;
	while ((r = read(sv[1], got + have, sizeof(got) - have)) > 0)
		have += (size_t)r;
	CHECK(have == sizeof(data) && memcmp(got, data, sizeof(data)) == 0);
	CHECK(full > 0); /* the socket filled at least once */
	/* At the end of the file: 0, as sendfile says it. */
	CHECK(wh_transport_copy_file(t, fd, &off, 100) == 0);
	CHECK(t->ops->sendfile(t, fd, &off, 100) == 0);
	t->ops->close(t);
	close(sv[1]);
	close(fd);
}

/* Parameters that repeat (?tag=a&tag=b), and a reversed Range, on requests
 * made by hand: nothing of a connection is needed. */
static void test_query_nth_and_range(void)
{
	char buf[16];
	wh_req req;
	memset(&req, 0, sizeof(req));
	req.query = "tag=a&x=tag=b&tag=c%2Ed&tagx=e&tag";
	CHECK(wh_req_query_count(&req, "tag") == 3);
	CHECK(wh_req_query_nth(&req, "tag", 0, buf, sizeof(buf)) && !strcmp(buf, "a"));
	CHECK(wh_req_query_nth(&req, "tag", 1, buf, sizeof(buf)) && !strcmp(buf, "c.d"));
	CHECK(wh_req_query_nth(&req, "tag", 2, buf, sizeof(buf)) && !strcmp(buf, ""));
	CHECK(!wh_req_query_nth(&req, "tag", 3, buf, sizeof(buf)));
	CHECK(wh_req_query(&req, "tag", buf, sizeof(buf)) && !strcmp(buf, "a"));
	CHECK(wh_req_query_count(&req, "nope") == 0);
	req.query = NULL;
	CHECK(wh_req_query_count(&req, "tag") == 0);

	wh_header h[] = {{"Range", "bytes=500-0"}};
	req.headers = h;
	req.n_headers = 1;
	int64_t a = 7, z = 7, from, to;
	CHECK(wh_req_range(&req, &a, &z) && a == 500 && z == 0);
	CHECK(!wh_range_resolve(a, z, 1000, &from, &to)); /* 416, not the whole */
	h[0].value = "bytes=5-5";
	CHECK(wh_req_range(&req, &a, &z) && wh_range_resolve(a, z, 1000, &from, &to));
	CHECK(from == 5 && to == 5);
}

int main(void)
{
	test_query_nth_and_range();
	wh_log_setup(WH_LOG_ERROR, "/dev/null");
	CHECK(uv_loop_init(&loop) == 0);
	defaults();

	test_parse();
	test_hooks();
	test_hooks_when_connection_goes();
	test_pipelined_late();
	test_pipelined_many();
	test_stream_late();
	test_backpressure();
	test_body();
	test_limits();
	test_timeouts();
	test_shared_file();
	test_abort();
	test_peer_gone();
	test_copy_file();

	for (int i = 0; i < MAX_CLIENTS; i++)
		free(cls[i].got);
	CHECK(uv_loop_close(&loop) == 0);
	CHECK_DONE();
}
