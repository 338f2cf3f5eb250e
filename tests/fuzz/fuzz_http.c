/* The HTTP/1.1 server (src/net/http.c), whole: the fuzzer's bytes are a client's
 * side of a connection. As h2o's fuzz/driver.cc does, they go through a
 * socketpair into the real connection code, on a real libuv loop: each run
 * starts a server, hands it one end (wh_server_adopt), writes the input into
 * the other in pieces, half-closes, reads every answer, then shuts the
 * server down and runs the loop until it is freed. Nothing outlives a run,
 * so LeakSanitizer sees every leak, and a descriptor left open is caught too.
 *
 * The handler is a small application of the request API whose behaviour the
 * request path picks (see handler()): it answers at once or from the loop,
 * reads bodies or leaves them, streams, sends a file, cuts a response. What
 * the server sends back is parsed as HTTP/1.1 responses (llhttp): anything
 * that is not a valid response stream aborts, as does a request that breaks
 * the handler contract of http.h. */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "wharf/base/common.h"
#include "wharf/net/http.h"
#include "wharf/base/log.h"

#define FILE_SIZE   4096
#define BODY_SIZE   1000
#define STREAM_SIZE (40 * 1000) /* > 16 on_writable rounds of BODY_SIZE */
#define MAX_HEADS   4096
#define STALL_S     5

static uv_loop_t loop;
static wh_http_settings cfg;
static char address[] = "127.0.0.1";
static int file_fd = -1;  /* a FILE_SIZE file for wh_resp_sendfile */
static int first_free_fd; /* the lowest descriptor free between runs */
static char pattern[BODY_SIZE];
static bool trace; /* FUZZ_HTTP_TRACE=1: the server's answers go to stderr */

/* One run. */
static struct {
	wh_server *srv;
	bool server_done;
	int fd; /* the client's end */
	uv_poll_t poll;
	uv_timer_t guard;
	bool writing, eof;
	const uint8_t *in;
	size_t in_len, in_off, piece;
	/* The client's view: the responses it reads. */
	llhttp_t parser;
	bool is_head[MAX_HEADS]; /* of each response the handler started, in order */
	int n_started, n_final;
	int live_reqs; /* handler calls whose done hook has not run */
} run;

static llhttp_settings_t resp_settings;

/* Inside a call of the request API: http.h promises that nothing of the
 * application (handler, body callbacks, on_writable, done hooks) runs then. */
static int in_api;
#define API(call)                                                                                  \
	do {                                                                                       \
		in_api++;                                                                          \
		call;                                                                              \
		in_api--;                                                                          \
	} while (0)

/* ---- the application ---- */

struct rq {
	wh_req *req;
	uv_timer_t timer;
	bool timer_used;
	bool late, fail, nolen;
	int64_t got; /* body bytes */
	int64_t left;
	wh_req_hook done;
	bool hooked; /* hook_done ran (registered later, so before rq_done) */
};

/* A done hook in the request's own memory (wh_req_alloc), with a block that
 * the request frees after it: LeakSanitizer sees it if it does not. */
struct hooked {
	wh_req_hook hook;
	struct rq *x;
	char *scratch;
};

static void rq_free_cb(uv_handle_t *h)
{
	free(h->data);
}

static void hook_done(wh_req *req, wh_req_hook *hook)
{
	struct hooked *h = WH_CONTAINER_OF(hook, struct hooked, hook);
	FUZZ_ASSERT(!in_api);
	FUZZ_ASSERT(h->x->req == req && req->data == h->x && !h->x->hooked);
	FUZZ_ASSERT(h->scratch[0] == 'x'); /* still the request's */
	h->x->hooked = true;
}

static void rq_done(wh_req *req, wh_req_hook *hook)
{
	struct rq *x = WH_CONTAINER_OF(hook, struct rq, done);
	FUZZ_ASSERT(!in_api);
	FUZZ_ASSERT(x->req == req && req->data == x && x->hooked);
	x->req = NULL;
	req->data = NULL;
	run.live_reqs--;
	if (x->timer_used) {
		x->timer.data = x;
		uv_close((uv_handle_t *)&x->timer, rq_free_cb);
	} else {
		free(x);
	}
}

static void start(wh_req *req, int status)
{
	wh_resp_start(req, status);
	if (wh_resp_status(req) == status && run.n_started < MAX_HEADS)
		run.is_head[run.n_started++] = req->is_head;
}

/* Range requests over pattern (or the file): 200, 206 or 416. */
static void answer_range(wh_req *req, bool file)
{
	int64_t size = file ? FILE_SIZE : BODY_SIZE, start_ = 0, end = 0, a = 0, z = size - 1;
	int status = 200;
	if (wh_req_range(req, &start_, &end)) {
		if (wh_range_resolve(start_, end, size, &a, &z)) {
			FUZZ_ASSERT(0 <= a && a <= z && z < size);
			status = 206;
		} else {
			status = 416;
		}
	}
	start(req, status);
	wh_resp_header(req, "Accept-Ranges", "bytes");
	const char *echo = wh_req_header(req, "x-echo");
	if (echo) {
		wh_resp_header(req, "X-Echo", "%s", echo);
		wh_resp_header(req, "X-Echo-Formatted", "<%s>", echo);
	}
	if (status == 416) {
		wh_resp_header(req, "Content-Range", "bytes */%lld", (long long)size);
		wh_resp_length(req, 0);
		API(wh_resp_end(req));
		return;
	}
	if (status == 206)
		wh_resp_header(req, "Content-Range", "bytes %lld-%lld/%lld", (long long)a,
		               (long long)z, (long long)size);
	wh_resp_length(req, z - a + 1);
	if (file) {
		int fd = dup(file_fd);
		FUZZ_ASSERT(fd >= 0);
		API(wh_resp_sendfile(req, fd, a, z - a + 1));
	} else {
		API(wh_resp_write(req, pattern + a, (size_t)(z - a + 1)));
	}
	API(wh_resp_end(req));
}

/* One piece per call: on_writable comes back for the next one, from the
 * loop (never from inside wh_resp_write). */
static void stream_more(wh_req *req)
{
	struct rq *x = req->data;
	FUZZ_ASSERT(!in_api);
	if (x->left == 0) {
		x->left = -1;
		API(wh_resp_end(req));
		return;
	}
	if (x->left < 0 || !wh_resp_can_write(req))
		return;
	size_t n = (size_t)WH_MIN(x->left, (int64_t)BODY_SIZE);
	x->left -= (int64_t)n;
	API(wh_resp_write(req, pattern, n));
}

/* The answer, once the handler has what it needs. */
static void answer(wh_req *req)
{
	struct rq *x = req->data;
	const char *p = req->path;
	char q[32];
	if (strstr(p, "abort")) {
		start(req, 200);
		wh_resp_length(req, 100);
		API(wh_resp_write(req, pattern, 10));
		API(wh_req_abort(req)); /* req is not ours to touch after this */
	} else if (strstr(p, "nolen")) {
		start(req, 200);
		API(wh_resp_write(req, "no length", 9));
		API(wh_resp_end(req));
	} else if (strstr(p, "short")) {
		start(req, 200);
		wh_resp_length(req, 10);
		API(wh_resp_write(req, pattern, 5));
		API(wh_resp_end(req));
	} else if (strstr(p, "stream")) {
		start(req, 200);
		wh_resp_length(req, STREAM_SIZE);
		/* A HEAD answer's writes queue nothing, so on_writable would never
		 * come back: it ends at once. */
		x->left = req->is_head ? 0 : STREAM_SIZE;
		req->on_writable = stream_more;
		stream_more(req);
	} else if (strstr(p, "status") && wh_req_query(req, "s", q, sizeof(q))) {
		int s = (int)(strtol(q, NULL, 10) % 1000);
		bool bodyless = s == 204 || s == 304;
		start(req, s >= 200 ? s : 500);
		if (!bodyless)
			wh_resp_length(req, 2);
		API(wh_resp_write(req, bodyless ? "" : "{}", bodyless ? 0 : 2));
		API(wh_resp_end(req));
	} else if (req->has_body && !strstr(p, "drop")) {
		char text[64];
		int n = snprintf(text, sizeof(text), "%lld bytes", (long long)x->got);
		start(req, 201);
		wh_resp_header(req, "Location", "%s", req->target);
		wh_resp_length(req, n);
		API(wh_resp_write(req, text, (size_t)n));
		API(wh_resp_end(req));
	} else {
		answer_range(req, strstr(p, "file") != NULL);
	}
}

static void late_cb(uv_timer_t *t)
{
	struct rq *x = WH_CONTAINER_OF(t, struct rq, timer);
	if (x->req)
		answer(x->req);
}

/* Answer now, or from the loop (as after an upstream fetch) for "late". */
static void answer_when(wh_req *req)
{
	struct rq *x = req->data;
	if (!x->late) {
		answer(req);
		return;
	}
	x->timer_used = true;
	uv_timer_init(&loop, &x->timer);
	uv_timer_start(&x->timer, late_cb, 0, 0);
}

static int on_body(wh_req *req, const char *data, size_t len)
{
	struct rq *x = req->data;
	FUZZ_ASSERT(!in_api);
	FUZZ_ASSERT(x && x->req == req && len > 0);
	FUZZ_ASSERT(req->content_length < 0 || x->got + (int64_t)len <= req->content_length);
	(void)data;
	x->got += (int64_t)len;
	if (x->fail && x->got > 16) {
		start(req, 413);
		wh_resp_length(req, 0);
		API(wh_resp_end(req));
		return 1;
	}
	return 0;
}

static void on_body_end(wh_req *req)
{
	struct rq *x = req->data;
	FUZZ_ASSERT(!in_api);
	FUZZ_ASSERT(x && x->req == req);
	FUZZ_ASSERT(req->content_length < 0 || x->got == req->content_length);
	answer_when(req);
}

/* What http.h promises of every request the handler gets. */
static void check_req(const wh_req *req)
{
	FUZZ_ASSERT(req->method && req->target && req->path && req->client);
	size_t plen = strlen(req->path);
	FUZZ_ASSERT(strncmp(req->target, req->path, plen) == 0);
	if (req->query)
		FUZZ_ASSERT(req->target[plen] == '?' &&
		            strcmp(req->target + plen + 1, req->query) == 0);
	else
		FUZZ_ASSERT(req->target[plen] == '\0' && !strchr(req->path, '?'));
	FUZZ_ASSERT(req->n_headers >= 0 && req->n_headers <= cfg.max_headers);
	for (int i = 0; i < req->n_headers; i++)
		FUZZ_ASSERT(req->headers[i].name && req->headers[i].value);
	FUZZ_ASSERT(req->content_length >= -1);
	FUZZ_ASSERT(req->has_body == (req->content_length != 0));
	FUZZ_ASSERT(req->is_head == (strcmp(req->method, "HEAD") == 0));
	char buf[64];
	(void)wh_req_header(req, "host");
	(void)wh_req_query(req, "n", buf, sizeof(buf));
	(void)wh_req_query(req, "last", buf, 4);
	(void)wh_req_query(req, "digest", buf, sizeof(buf));
}

static void handler(wh_req *req, void *ctx)
{
	FUZZ_ASSERT(!in_api);
	FUZZ_ASSERT(ctx == &run);
	check_req(req);
	struct rq *x = calloc(1, sizeof(*x));
	FUZZ_ASSERT(x);
	x->req = req;
	x->late = strstr(req->path, "late") != NULL;
	x->fail = strstr(req->path, "fail") != NULL;
	req->data = x;
	wh_req_on_done(req, &x->done, rq_done);
	struct hooked *h = wh_req_alloc(req, sizeof(*h));
	FUZZ_ASSERT(h->x == NULL); /* zeroed */
	h->x = x;
	h->scratch = wh_req_alloc(req, 1 + req->n_headers);
	h->scratch[0] = 'x';
	wh_req_on_done(req, &h->hook, hook_done);
	run.live_reqs++;
	if (req->has_body && !strstr(req->path, "drop"))
		API(wh_req_read_body(req, on_body, on_body_end));
	else
		answer_when(req);
}

/* ---- the client ---- */

static int resp_headers_complete(llhttp_t *p)
{
	if (p->status_code < 200)
		return 0; /* 100 Continue */
	int i = run.n_final++;
	/* A HEAD response has no body whatever its Content-Length says. */
	return i < run.n_started && run.is_head[i] ? 1 : 0;
}

static void read_answers(void)
{
	static char buf[65536];
	for (;;) {
		ssize_t n = read(run.fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			run.eof = true;
			return;
		}
		if (trace)
			fwrite(buf, 1, (size_t)n, stderr);
		llhttp_errno_t err = llhttp_execute(&run.parser, buf, (size_t)n);
		if (err != HPE_OK) {
			fprintf(stderr, "the server's answer is not HTTP/1.1: %s (%s)\n",
			        llhttp_errno_name(err), llhttp_get_error_reason(&run.parser));
			FUZZ_ASSERT(!"valid response stream");
		}
	}
}

static void write_input(void)
{
	while (run.in_off < run.in_len) {
		size_t n = WH_MIN(run.piece, run.in_len - run.in_off);
		ssize_t w = send(run.fd, run.in + run.in_off, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0) {
			run.in_off = run.in_len; /* the server has gone: nothing more to say */
			break;
		}
		run.in_off += (size_t)w;
		return; /* one piece per turn of the loop: the server reads in between */
	}
	shutdown(run.fd, SHUT_WR);
	run.writing = false;
}

static void server_done_cb(void *arg)
{
	(void)arg;
	run.server_done = true;
	uv_close((uv_handle_t *)&run.guard, NULL);
}

/* A run takes milliseconds. One still going after seconds is stuck: the
 * server waits for something that will not come (so would a real client). */
static void guard_cb(uv_timer_t *t)
{
	(void)t;
	fprintf(stderr,
	        "stalled: after %d s, %d of %zu input bytes written, %d responses "
	        "read, %d requests not done\n",
	        STALL_S, (int)run.in_off, run.in_len, run.n_final, run.live_reqs);
	FUZZ_ASSERT(!"the server answers or closes");
}

static void client_cb(uv_poll_t *h, int status, int events)
{
	(void)h;
	if (run.writing && (events & UV_WRITABLE))
		write_input();
	if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT)))
		read_answers();
	if (run.eof) {
		/* The server closed (or shut down) its side: all it had to say. */
		uv_close((uv_handle_t *)&run.poll, NULL);
		wh_server_shutdown(run.srv, server_done_cb, NULL);
	} else {
		uv_poll_start(&run.poll, UV_READABLE | (run.writing ? UV_WRITABLE : 0), client_cb);
	}
}

/* A socket, or the file, still open after a run was the server's and leaked
 * (other descriptors may come and go: libFuzzer's symbolizer pipes). */
static void check_descriptors(void)
{
	struct stat file_st, st;
	FUZZ_ASSERT(fstat(file_fd, &file_st) == 0);
	for (int fd = first_free_fd; fd < first_free_fd + 32; fd++) {
		if (fstat(fd, &st) != 0)
			continue;
		if (S_ISSOCK(st.st_mode) ||
		    (st.st_ino == file_st.st_ino && st.st_dev == file_st.st_dev)) {
			fprintf(stderr, "descriptor %d left open (%s)\n", fd,
			        S_ISSOCK(st.st_mode) ? "a socket" : "the file");
			FUZZ_ASSERT(!"no descriptor left open");
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Every log line is formatted (they carry the client's bytes), none kept. */
	trace = getenv("FUZZ_HTTP_TRACE") != NULL;
	wh_log_setup(WH_LOG_DEBUG, trace ? NULL : "/dev/null");
	FUZZ_ASSERT(uv_loop_init(&loop) == 0);
	cfg.address = address;
	cfg.port = 0;
	cfg.header_timeout_ms = 20000;
	cfg.idle_timeout_ms = 60000;
	cfg.body_timeout_ms = 60000;
	cfg.send_timeout_ms = 60000;
	cfg.shutdown_timeout_ms = 1000;
	cfg.max_connections = 16;
	/* Small limits, so that inputs of a few KiB reach them. */
	cfg.max_header_bytes = 2048;
	cfg.max_headers = 16;
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (char)('a' + i % 26);
	file_fd = memfd_create("fuzz_http", MFD_CLOEXEC);
	FUZZ_ASSERT(file_fd >= 0);
	for (int i = 0; i < FILE_SIZE / BODY_SIZE + 1; i++)
		FUZZ_ASSERT(write(file_fd, pattern, sizeof(pattern)) == sizeof(pattern));
	FUZZ_ASSERT(ftruncate(file_fd, FILE_SIZE) == 0);
	llhttp_settings_init(&resp_settings);
	resp_settings.on_headers_complete = resp_headers_complete;
	first_free_fd = dup(0);
	FUZZ_ASSERT(first_free_fd >= 0);
	close(first_free_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	memset(&run, 0, sizeof(run));
	run.in = data;
	run.in_len = size;
	/* Pieces of a size the input decides, so a head or a chunk is split
	 * at many places across the runs. */
	run.piece = size % 251 + 1;
	run.writing = true;
	FUZZ_ASSERT(wh_server_start(&loop, &cfg, NULL, handler, &run, &run.srv) == 0);
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	FUZZ_ASSERT(wh_server_adopt(run.srv, sv[0]) == 0);
	run.fd = sv[1];
	llhttp_init(&run.parser, HTTP_RESPONSE, &resp_settings);
	uv_poll_init(&loop, &run.poll, run.fd);
	uv_poll_start(&run.poll, UV_READABLE | UV_WRITABLE, client_cb);
	uv_timer_init(&loop, &run.guard);
	uv_timer_start(&run.guard, guard_cb, STALL_S * 1000, 0);
	uv_unref((uv_handle_t *)&run.guard); /* it keeps nothing alive */

	uv_run(&loop, UV_RUN_DEFAULT);

	/* Everything went: the server, its connection, the requests. */
	FUZZ_ASSERT(run.eof && run.server_done && run.live_reqs == 0);
	FUZZ_ASSERT(uv_loop_alive(&loop) == 0);
	close(run.fd);
	check_descriptors();
	return 0;
}
