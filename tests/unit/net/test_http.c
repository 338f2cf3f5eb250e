/* The HTTP/1.1 server (src/net/http.c), driven from a test: a real server on a
 * real libuv loop, one connection adopted from a socketpair (as
 * tests/fuzz/fuzz_http.c does), and a client in this file that writes
 * requests and reads the answers with llhttp. No server process, no
 * network: each test is a few turns of the loop.
 *
 * The handler is an application whose behaviour the request path picks; it
 * writes what happens (handler calls, done hooks, ...) into `trace`, which
 * the checks compare with what http.h promises. */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/net/http.h"

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

/* ---- the client ---- */

#define MAX_RESP 64

struct resp {
	int status;
	size_t body_len;
	char body[256]; /* the first bytes */
	bool keep_alive;
};

static struct {
	wh_server *srv;
	bool srv_done;
	int fd; /* the client's end, -1 once closed */
	uv_poll_t poll;
	bool polling;
	char *got; /* everything the server sent */
	size_t got_len, got_cap;
	bool eof;
} cl;

static void client_read(void)
{
	char buf[65536];
	for (;;) {
		ssize_t n = read(cl.fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			cl.eof = true;
			return;
		}
		wh_buf_append(&cl.got, &cl.got_len, &cl.got_cap, buf, (size_t)n);
	}
}

static void client_cb(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)events;
	client_read();
	if (cl.eof || status < 0) {
		uv_poll_stop(&cl.poll);
	}
}

/* Parse what the client got: the responses, in order. Returns how many are
 * complete. */
static struct resp resps[MAX_RESP];
static int n_resp;

static int r_headers_complete(llhttp_t *p)
{
	if (p->status_code >= 200 && n_resp < MAX_RESP) {
		resps[n_resp].status = p->status_code;
		resps[n_resp].keep_alive = llhttp_should_keep_alive(p);
	}
	return 0;
}

static int r_body(llhttp_t *p, const char *at, size_t len)
{
	(void)p;
	if (n_resp >= MAX_RESP)
		return 0;
	struct resp *r = &resps[n_resp];
	size_t room = sizeof(r->body) - 1 - WH_MIN(r->body_len, sizeof(r->body) - 1);
	memcpy(r->body + WH_MIN(r->body_len, sizeof(r->body) - 1), at, WH_MIN(len, room));
	r->body_len += len;
	return 0;
}

static int r_message_complete(llhttp_t *p)
{
	if (p->status_code >= 200 && n_resp < MAX_RESP)
		n_resp++;
	return 0;
}

static int parse_responses(void)
{
	static llhttp_settings_t s;
	llhttp_t p;
	memset(resps, 0, sizeof(resps));
	n_resp = 0;
	llhttp_settings_init(&s);
	s.on_headers_complete = r_headers_complete;
	s.on_body = r_body;
	s.on_message_complete = r_message_complete;
	llhttp_init(&p, HTTP_RESPONSE, &s);
	if (cl.got_len)
		llhttp_execute(&p, cl.got, cl.got_len);
	return n_resp;
}

static void client_send(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = send(cl.fd, data, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			CHECK(!"the client's write went through");
			return;
		}
		data += w;
		len -= (size_t)w;
	}
}

static void client_says(const char *s)
{
	client_send(s, strlen(s));
}

static void client_close(void)
{
	if (cl.fd < 0)
		return;
	uv_close((uv_handle_t *)&cl.poll, NULL);
	close(cl.fd);
	cl.fd = -1;
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

static int want_resp;
static bool have_resps(void)
{
	return parse_responses() >= want_resp;
}

/* Run until n responses are complete (or 2 s). */
static bool wait_resps(int n)
{
	want_resp = n;
	return run_until(have_resps, 2000);
}

/* ---- the application ---- */

static void handler(wh_req *req, void *ctx);

static void start(void)
{
	int sv[2];
	memset(trace, 0, sizeof(trace));
	free(cl.got);
	memset(&cl, 0, sizeof(cl));
	CHECK(wh_server_start(&loop, &cfg, NULL, handler, NULL, &cl.srv) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(wh_server_adopt(cl.srv, sv[0]) == 0);
	cl.fd = sv[1];
	uv_poll_init(&loop, &cl.poll, cl.fd);
	uv_poll_start(&cl.poll, UV_READABLE | UV_DISCONNECT, client_cb);
}

static void server_done(void *arg)
{
	(void)arg;
	cl.srv_done = true;
}

static bool srv_done(void)
{
	return cl.srv_done;
}

/* End of a test: the client goes, the server shuts down, and nothing of
 * either is left on the loop. */
static void finish(void)
{
	client_close();
	wh_server_shutdown(cl.srv, server_done, NULL);
	CHECK(run_until(srv_done, 3000));
	CHECK(uv_loop_alive(&loop) == 0);
}

/* Inside a call of the request API made by the application: nothing of
 * the application may run then (http.h). */
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
	wh_req *req;
	wh_req_hook hook;
	char path[64];
	struct late *late;
	int64_t left;     /* streaming: body bytes still to write */
	int64_t sent;     /* streaming: written so far */
	int writables;    /* on_writable calls */
	bool was_blocked; /* wh_resp_can_write said no at some point */
};

static struct rq *last_rq; /* the latest request not done, or NULL */

static void rq_done(wh_req *req, wh_req_hook *hook)
{
	struct rq *x = WH_CONTAINER_OF(hook, struct rq, hook);
	app_entered("done hook");
	CHECK(x->req == req);
	CHECK_STREQ(req->path, x->path);
	tr("done:%s ", x->path);
	if (x->late)
		x->late->x = NULL;
	if (last_rq == x)
		last_rq = NULL;
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
	struct rq *x = last_rq && last_rq->req == req ? last_rq : NULL;
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

/* Done hooks: two registered from the request's own memory, one cancelled,
 * one legacy on_done. */
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

static void legacy_done(wh_req *req)
{
	tr("legacy:%s ", req->path);
}

static void handler(wh_req *req, void *ctx)
{
	(void)ctx;
	app_entered("handler");
	tr("h:%s ", req->path);
	if (strcmp(req->path, "/hooks") == 0) {
		struct hooked *x = wh_req_alloc(req, sizeof(*x));
		/* Zeroed, as promised. */
		CHECK(x->a.fn == NULL && x->b.next == NULL && x->path[0] == '\0');
		snprintf(x->path, sizeof(x->path), "%s", req->path);
		wh_req_on_done(req, &x->a, hook_a);
		wh_req_on_done(req, &x->b, hook_b);
		wh_req_on_done(req, &x->c, hook_c);
		wh_req_cancel_done(req, &x->c);
		wh_req_cancel_done(req, &x->c); /* not registered any more: nothing */
		req->on_done = legacy_done;
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
		req->on_done = legacy_done;
		return;
	}
	struct rq *x = wh_req_alloc(req, sizeof(*x));
	x->req = req;
	snprintf(x->path, sizeof(x->path), "%s", req->path);
	wh_req_on_done(req, &x->hook, rq_done);
	last_rq = x;
	if (strncmp(req->path, "/late/", 6) == 0)
		later(x, 1, answer_path);
	else if (strncmp(req->path, "/now/", 5) == 0)
		answer_path(x);
	else if (strncmp(req->path, "/stream/now", 11) == 0)
		stream_start(x);
	else if (strncmp(req->path, "/stream/late", 12) == 0)
		later(x, 1, stream_start);
	else if (strncmp(req->path, "/wait", 5) == 0)
		; /* the test answers */
	else
		answer(req, 404, "no");
}

/* ---- the tests ---- */

static void test_hooks(void)
{
	start();
	client_says("GET /hooks HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(1));
	run_for(10);
	CHECK(resps[0].status == 200);
	CHECK_STREQ(resps[0].body, "hooked");
	/* Last registered first, the cancelled one never, the legacy one last. */
	CHECK_STREQ(trace, "h:/hooks hookB:/hooks hookA:/hooks legacy:/hooks ");
	finish();
}

static void test_hooks_when_connection_goes(void)
{
	start();
	client_says("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
	run_for(20);
	CHECK_STREQ(trace, "h:/hang ");
	client_close();
	run_for(20);
	CHECK_STREQ(trace, "h:/hang hookA:/hang legacy:/hang ");
	finish();
}

/* Pipelined requests answered from timers and at once: in order, and each
 * handler, each done hook, runs from the loop, not inside the wh_resp_end
 * that finished the request before it. */
static void test_pipelined_late(void)
{
	start();
	client_says("GET /late/1 HTTP/1.1\r\nHost: x\r\n\r\n"
	            "GET /late/2 HTTP/1.1\r\nHost: x\r\n\r\n"
	            "GET /now/3 HTTP/1.1\r\nHost: x\r\n\r\n"
	            "GET /late/4 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(4));
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

/* A body produced from on_writable, started from a timer: on_writable is
 * never called from inside wh_resp_write, and the next request waits. */
static void test_stream_late(void)
{
	start();
	client_says("GET /stream/late?n=300000 HTTP/1.1\r\nHost: x\r\n\r\n"
	            "GET /now/2 HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(wait_resps(2));
	run_for(5);
	CHECK(resps[0].status == 200 && resps[0].body_len == 300000);
	CHECK(strncmp(resps[0].body, "abcdefghijklmnopqrstuvwxyzabc", 29) == 0);
	CHECK_STREQ(resps[1].body, "/now/2");
	CHECK_STREQ(trace, "h:/stream/late streamed:/stream/late done:/stream/late "
	                   "h:/now/2 ended:/now/2 done:/now/2 ");
	finish();
}

int main(void)
{
	wh_log_setup(WH_LOG_ERROR, "/dev/null");
	CHECK(uv_loop_init(&loop) == 0);
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

	test_hooks();
	test_hooks_when_connection_goes();
	test_pipelined_late();
	test_stream_late();

	free(cl.got);
	CHECK(uv_loop_close(&loop) == 0);
	CHECK_DONE();
}
