/* HTTP/1.1 server: one libuv loop, llhttp per connection, a transport under
 * each connection (plain TCP, or TLS when http.tls is set: tls.c).
 *
 * Sockets are driven with uv_poll rather than uv_tcp streams: the connection
 * reads into one buffer shared by the whole loop, writes straight from its
 * own queue, and can sendfile(2) a blob, so no blob byte is copied through
 * user space and an idle connection holds no buffer at all.
 *
 * One request at a time per connection: on_message_complete pauses the
 * parser; the bytes after it (pipelined requests) wait in `pend` until the
 * response is sent. This keeps responses in order with no bookkeeping and
 * gives natural backpressure: a client that pipelines faster than we answer
 * is simply not read. */
#include "wharf/net/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/base/file.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/net/tls.h"
#include "wharf/net/transport.h"

#define READ_BUF_SIZE (64 * 1024)
#define SEG_SIZE      (16 * 1024)
/* The send queue's watermarks: a producer may add while below HIGH, and is
 * asked for more (on_writable) once the queue is under LOW. */
#define OUT_HIGH     (64 * 1024)
#define OUT_LOW      (16 * 1024)
#define ACCEPT_BATCH 64
/* Lingering close: how long, and how much, to read and drop after answering. */
#define LINGER_MS    2000
#define LINGER_BYTES (4 * 1024 * 1024)

/* One element of the send queue: bytes in memory, or a range of a file. */
struct seg {
	wh_list link;  /* in c->out */
	wh_file *file; /* NULL for memory; a reference held by the segment */
	int64_t off, len;
	size_t used, sent, cap;
	char mem[];
};

enum phase {
	PH_HANDSHAKE, /* the transport's handshake (TLS): handshake timeout */
	PH_IDLE,      /* between requests: idle timeout */
	PH_HEAD,      /* receiving a request head: header timeout, no reset */
	PH_REQ,       /* the handler has the request */
};

struct head_item {
	uint32_t off, len;
};

/* A block of wh_req_alloc: memory that lives as long as its request. */
struct req_mem {
	struct req_mem *next;
	max_align_t data[];
};

struct wh_conn {
	wh_server *srv;
	wh_list link; /* in srv->conns */
	/* In the server's reusable list while no request is in progress: idle
	 * between requests or still sending a head. Oldest first. */
	wh_list reuse_link;
	uv_poll_t poll;
	uv_timer_t timer;
	wh_transport *tp;
	/* In the server's ready list: the transport holds input already taken
	 * from the socket (TLS), so it is read again without waiting for it. */
	wh_list ready_link;
	/* In the server's posted list: an API call from outside the connection's
	 * own events left work for the loop (on_writable, completion). */
	wh_list post_link;
	llhttp_t parser;
	int events;
	enum phase phase;
	uint64_t activity; /* uv_now at the last progress that resets the timer */
	char client[INET6_ADDRSTRLEN + 8];

	/* Input not yet parsed because the parser was paused. */
	char *pend;
	size_t pend_len, pend_off;

	/* The head being received: pieces stored NUL-terminated in one arena. */
	char *arena;
	size_t arena_len, arena_cap;
	int last_piece; /* 0 none, 1 url, 2 field, 3 value */
	struct head_item url;
	struct head_item *fields; /* pairs: name, value */
	int n_fields, cap_fields;
	int err_status;       /* 431 etc. set by a parser callback */
	size_t trailer_bytes; /* trailer fields and chunk extensions, dropped */

	/* The request in progress. */
	wh_req req;
	bool req_active;
	bool handler_called;
	bool msg_complete;
	bool body_wanted;
	bool body_failed; /* on_body returned non-zero */
	/* wh_req_hold_body: the handler will say later whether it wants the
	 * body; reading stops, and what was parsed meanwhile is kept (at most
	 * one read's worth) for wh_req_read_body to hand over, posted. */
	bool body_held;
	bool held_end; /* the body ended while held */
	char *held;
	size_t held_len, held_cap;
	bool continue_sent;
	wh_body_cb on_body;
	wh_req_cb on_body_end;
	uint64_t started_ms;
	/* The request's own state: its done hooks, last registered first, and
	 * the blocks of wh_req_alloc, freed after the hooks have run. */
	wh_list hooks; /* wh_req_hook, newest first */
	struct req_mem *mem;

	/* The response. */
	int status;
	bool head_open; /* status line written, headers may follow */
	bool head_done; /* blank line written */
	bool resp_ended;
	int64_t resp_len;    /* declared Content-Length, -1 none */
	int64_t body_sent_q; /* body bytes queued */
	wh_list out;         /* struct seg, oldest first */
	size_t out_mem;
	bool write_blocked;
	int write_want;        /* WH_WANT_*: what a blocked write waits for */
	bool read_wants_write; /* a read (TLS handshake) waits for writability */
	bool handshaking;      /* the transport's handshake is not done yet */
	bool any_input;        /* something was read on this connection */

	bool keep_alive;
	bool http10; /* the request was HTTP/1.0 */
	bool close_after;
	bool eof;
	bool closing;
	bool in_parse;
	bool feeding_pend; /* conn_feed is parsing pend itself, in place */
	bool in_advance;   /* conn_advance is running: re-entry loops instead */
	bool advance_again;
	bool in_writable;
	bool lingering;   /* answered and shut down; reading and dropping input */
	bool hup_checked; /* the peer's FIN was seen while not reading */
	bool refused;     /* over the connection limit: 503, then close */
	int out_files;    /* file segments in the send queue */
	int pending_closes;
};

struct wh_server {
	uv_loop_t *loop;
	const wh_http_settings *cfg;
	wh_handler handler;
	void *ctx;
	int fd;
	int port;
	uv_poll_t listen_poll;
	bool listening;
	uv_timer_t accept_timer; /* resumes accepting after running out of fds */
	uint64_t emfile_logged, limit_logged;
	wh_list conns;      /* wh_conn, newest first */
	wh_list reusable;   /* wh_conn by reuse_link, oldest first */
	uint64_t reclaimed; /* reusable connections closed to make room */
	uint64_t reclaim_logged, reclaimed_at_log;
	int n_conns;   /* all open connections, refused ones included */
	int n_refused; /* answered 503 and lingering */
	bool shutting_down;
	uv_timer_t shutdown_timer;
	void (*shutdown_done)(void *);
	void *shutdown_arg;
	int pending_closes; /* close callbacks outstanding: connections, listener */
	bool timer_closing;
	int final_closes; /* the idle and check handles and the shutdown timer */
	llhttp_settings_t settings;
	wh_tls *tls; /* NULL: plain HTTP */
	/* How long a transport's handshake may take. No key of its own yet: the
	 * header timeout, which held handshakes before they had a phase. */
	int64_t handshake_timeout_ms;
	uv_idle_t ready_idle; /* runs while the ready list is not empty */
	wh_list ready;        /* wh_conn by ready_link, newest first */
	/* The posted list, oldest first, run from the loop: by post_check after
	 * the poll phase, or by post_idle, whose being active also keeps the
	 * loop from sleeping in poll while connections wait in the list. */
	uv_check_t post_check;
	uv_idle_t post_idle;
	wh_list posted;            /* wh_conn by post_link */
	uint64_t tls_probe_logged; /* last "TLS handshake on a plain HTTP listener" */
	uint64_t tls_probes;       /* since then */
};

static char read_buf[READ_BUF_SIZE];

/* Every server's connections together, for metrics (one loop, one thread). */
static wh_http_stats stats;

static void conn_close(wh_conn *c);
static void conn_linger(wh_conn *c);
static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void conn_flush(wh_conn *c);
static void resp_flush(wh_conn *c);
static void post_del(wh_conn *c);
static void conn_peer_hup(wh_conn *c);
static void reuse_del(wh_conn *c);
static void conn_advance(wh_conn *c);
static void conn_update_poll(wh_conn *c);
static void conn_update_timer(wh_conn *c);
static void conn_feed(wh_conn *c, const char *data, size_t len);
static void server_maybe_done(wh_server *srv);
static void conn_read(wh_conn *c);
static void conn_handshake_check(wh_conn *c);

static const char *reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 416:
		return "Range Not Satisfiable";
	case 417:
		return "Expectation Failed";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 507:
		return "Insufficient Storage";
	}
	return "Unknown";
}

/* ---- send queue ---- */

static struct seg *seg_new_mem(size_t cap)
{
	struct seg *s = wh_malloc(sizeof(*s) + cap);
	wh_list_init(&s->link);
	s->file = NULL;
	s->off = s->len = 0;
	s->used = s->sent = 0;
	s->cap = cap;
	return s;
}

/* The segment at l in c's queue; NULL at its end. */
static struct seg *seg_at(wh_conn *c, wh_list *l)
{
	return l == &c->out ? NULL : wh_list_entry(l, struct seg, link);
}

/* Take a segment off the queue and free it. */
static void seg_free(wh_conn *c, struct seg *s)
{
	wh_list_remove(&s->link);
	if (s->file) {
		wh_file_unref(s->file);
		c->out_files--;
	}
	free(s);
}

static void queue_push(wh_conn *c, struct seg *s)
{
	wh_list_insert_tail(&c->out, &s->link);
}

static void queue_mem(wh_conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		struct seg *t = seg_at(c, wh_list_last(&c->out));
		if (!t || t->file || t->used == t->cap) {
			t = seg_new_mem(SEG_SIZE);
			queue_push(c, t);
		}
		size_t n = WH_MIN(len, t->cap - t->used);
		memcpy(t->mem + t->used, p, n);
		t->used += n;
		c->out_mem += n;
		p += n;
		len -= n;
	}
}

static void queue_clear(wh_conn *c)
{
	while (!wh_list_empty(&c->out))
		seg_free(c, seg_at(c, wh_list_first(&c->out)));
	c->out_mem = 0;
}

static void queue_printf(wh_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void queue_printf(wh_conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	queue_mem(c, buf, WH_MIN((size_t)n, sizeof(buf) - 1));
}

/* ---- request head ---- */

static void arena_reset(wh_conn *c)
{
	free(c->arena);
	free(c->fields);
	c->arena = NULL;
	c->fields = NULL;
	c->arena_len = c->arena_cap = 0;
	c->n_fields = c->cap_fields = 0;
	c->last_piece = 0;
	c->url.off = c->url.len = 0;
}

/* Append a piece of the url, a header name or a header value. Pieces of the
 * same item arrive in order, possibly split across reads. */
static int head_append(wh_conn *c, int kind, const char *at, size_t len)
{
	size_t limit = (size_t)c->srv->cfg->max_header_bytes;
	if (c->arena_len + len + 2 > limit) {
		c->err_status = 431;
		return -1;
	}
	if (c->arena_len + len + 2 > c->arena_cap) {
		/* Never more than the limit allows. */
		c->arena_cap =
		    WH_MIN(wh_grow_cap(c->arena_cap, c->arena_len + len + 2, 1024), limit + 2);
		c->arena = wh_realloc(c->arena, c->arena_cap);
	}
	if (kind != c->last_piece) {
		/* A new item: terminate the previous one. */
		if (c->last_piece)
			c->arena[c->arena_len++] = '\0';
		struct head_item *it;
		if (kind == 1) {
			it = &c->url;
		} else {
			if (kind == 2) {
				if (c->n_fields >= c->srv->cfg->max_headers) {
					c->err_status = 431;
					return -1;
				}
				/* Pairs: a name and its value. */
				c->fields = wh_grow(c->fields, 2 * sizeof(*c->fields), c->n_fields,
				                    &c->cap_fields, 16);
				c->n_fields++;
				c->fields[2 * (c->n_fields - 1) + 1] = (struct head_item){0, 0};
			}
			it = &c->fields[2 * (c->n_fields - 1) + (kind == 3)];
		}
		it->off = (uint32_t)c->arena_len;
		it->len = 0;
		c->last_piece = kind;
	}
	struct head_item *it =
	    kind == 1 ? &c->url : &c->fields[2 * (c->n_fields - 1) + (kind == 3)];
	memcpy(c->arena + c->arena_len, at, len);
	c->arena_len += len;
	it->len += (uint32_t)len;
	return 0;
}

static wh_conn *parser_conn(llhttp_t *p)
{
	return p->data;
}

static int on_message_begin(llhttp_t *p)
{
	wh_conn *c = parser_conn(p);
	if (c->phase == PH_IDLE) {
		c->phase = PH_HEAD;
		c->activity = uv_now(c->srv->loop);
		conn_update_timer(c);
	}
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	return head_append(parser_conn(p), 1, at, len);
}

/* Fields after a chunked body (trailers) come through the header callbacks
 * too, once the head has been handed to the handler: they must never touch
 * the head's arena, whose pieces the request points into (a reallocation
 * would leave req->path and req->headers dangling). Nothing uses trailers;
 * they are counted against the header limit and dropped. */
static int trailer_piece(wh_conn *c, size_t len)
{
	c->trailer_bytes += len;
	if (c->trailer_bytes > (size_t)c->srv->cfg->max_header_bytes) {
		c->err_status = 431;
		llhttp_set_error_reason(&c->parser, "trailer fields too large");
		return -1;
	}
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	wh_conn *c = parser_conn(p);
	if (c->handler_called)
		return trailer_piece(c, len);
	return head_append(c, 2, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	wh_conn *c = parser_conn(p);
	if (c->handler_called)
		return trailer_piece(c, len);
	return head_append(c, 3, at, len);
}

/* Chunk extensions are parsed by llhttp without storing them; bound them
 * anyway, so a chunk-size line cannot go on for ever. */
static int on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
	(void)at;
	return trailer_piece(parser_conn(p), len);
}

static void build_req(wh_conn *c)
{
	/* Terminate the last item; an empty value has no piece at all. */
	if (c->arena_len + 1 > c->arena_cap) {
		c->arena = wh_realloc(c->arena, c->arena_len + 1);
		c->arena_cap = c->arena_len + 1;
	}
	c->arena[c->arena_len++] = '\0';

	wh_req *r = &c->req;
	memset(r, 0, sizeof(*r));
	r->conn = c;
	r->client = c->client;
	r->tls_identity = c->tp->identity;
	r->method_id = llhttp_get_method(&c->parser);
	r->method = llhttp_method_name((llhttp_method_t)r->method_id);
	r->is_head = r->method_id == HTTP_HEAD;
	char *url = c->arena + c->url.off;
	r->target = url;
	char *q = strchr(url, '?');
	if (q) {
		/* The path is the target up to '?'; keep the target whole for the
		 * log and put a terminated copy of the path at the arena's end. */
		size_t plen = (size_t)(q - url);
		size_t need = c->arena_len + plen + 1;
		if (need > c->arena_cap) {
			c->arena = wh_realloc(c->arena, need);
			c->arena_cap = need;
			url = c->arena + c->url.off;
			q = url + plen;
		}
		char *path = c->arena + c->arena_len;
		memcpy(path, url, plen);
		path[plen] = '\0';
		c->arena_len += plen + 1;
		r->target = url;
		r->path = path;
		r->query = q + 1;
	} else {
		r->path = url;
		r->query = NULL;
	}
	r->n_headers = c->n_fields;
	r->headers = wh_malloc(sizeof(wh_header) * (size_t)(c->n_fields ? c->n_fields : 1));
	for (int i = 0; i < c->n_fields; i++) {
		struct head_item *n = &c->fields[2 * i], *v = &c->fields[2 * i + 1];
		r->headers[i].name = c->arena + n->off;
		r->headers[i].value = v->len ? c->arena + v->off : "";
	}
	r->has_body = (c->parser.flags & F_CHUNKED) || c->parser.content_length > 0;
	r->content_length = (c->parser.flags & F_CHUNKED) ? -1 : (int64_t)c->parser.content_length;
	if (!(c->parser.flags & F_CONTENT_LENGTH) && !(c->parser.flags & F_CHUNKED))
		r->content_length = 0;
}

/* The handler does not want the body (it did not ask for it before answering
 * or returning). A small one is read and dropped to keep the connection; for
 * a large one, or one the client waits to be invited to send, closing is
 * cheaper. Decided before the response head is finished, so that the head
 * says "Connection: close" when the connection will close. */
static void check_unwanted_body(wh_conn *c)
{
	if (!c->req_active || !c->req.has_body || c->body_wanted || c->body_held ||
	    c->msg_complete)
		return;
	const char *expect = wh_req_header(&c->req, "expect");
	if ((expect && !c->continue_sent) || c->req.content_length < 0 ||
	    c->req.content_length > 1024 * 1024)
		c->close_after = true;
}

/* llhttp checks some of a request's framing only after on_headers_complete
 * returns; a request it would reject must not run first (a DELETE with
 * `Transfer-Encoding: identity` would delete, then be refused). So the
 * framing is judged here, before dispatch: a Transfer-Encoding whose final
 * coding is not chunked, or together with Content-Length, is a 400
 * (RFC 9112 6.1, 6.3). An Upgrade (h2c, websocket) is declined by ignoring
 * it: the connection goes on as HTTP/1.1 (RFC 9110 7.8). */
static bool framing_ok(llhttp_t *p)
{
	if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED)) {
		llhttp_set_error_reason(p, "invalid Transfer-Encoding");
		return false;
	}
	if ((p->flags & F_CHUNKED) && (p->flags & F_CONTENT_LENGTH)) {
		llhttp_set_error_reason(p, "both Content-Length and Transfer-Encoding");
		return false;
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > (uint64_t)INT64_MAX) {
		llhttp_set_error_reason(p, "Content-Length out of range");
		return false;
	}
	return true;
}

static int on_headers_complete(llhttp_t *p)
{
	wh_conn *c = parser_conn(p);
	if (c->closing)
		return -1;
	if (!framing_ok(p)) {
		c->err_status = 400;
		return -1;
	}
	p->upgrade = 0;
	build_req(c);
	c->req_active = true;
	c->handler_called = true;
	c->msg_complete = false;
	c->keep_alive = llhttp_should_keep_alive(p) && !c->srv->shutting_down;
	c->http10 = p->http_major == 1 && p->http_minor == 0;
	c->status = 0;
	c->resp_len = -1;
	c->started_ms = uv_now(c->srv->loop);
	c->phase = PH_REQ;
	reuse_del(c);
	c->activity = c->started_ms;
	conn_update_timer(c);

	c->srv->handler(&c->req, c->srv->ctx);
	if (c->closing)
		return -1;
	check_unwanted_body(c);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	wh_conn *c = parser_conn(p);
	if (c->closing)
		return -1;
	c->activity = uv_now(c->srv->loop);
	if (c->body_held && !c->body_wanted) {
		wh_buf_append(&c->held, &c->held_len, &c->held_cap, at, len);
		return 0;
	}
	if (c->body_wanted && !c->body_failed && c->on_body) {
		if (c->on_body(&c->req, at, len) != 0) {
			c->body_failed = true;
			c->close_after = true;
		}
	}
	return c->closing ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
	wh_conn *c = parser_conn(p);
	if (c->closing)
		return -1;
	c->msg_complete = true;
	if (c->body_held && !c->body_wanted)
		c->held_end = true;
	else if (c->body_wanted && !c->body_failed && c->on_body_end)
		c->on_body_end(&c->req);
	if (c->closing)
		return -1;
	return HPE_PAUSED;
}

/* ---- connection ---- */

static void conn_timer_cb(uv_timer_t *t)
{
	wh_conn *c = WH_CONTAINER_OF(t, wh_conn, timer);
	conn_update_timer(c);
}

/* Arm the one timer for what the connection is waiting on. Progress only
 * moves `activity`; the timer re-arms itself for the remainder when it fires
 * early, so a busy connection costs no timer calls per read. */
static void conn_update_timer(wh_conn *c)
{
	if (c->closing)
		return;
	const wh_http_settings *cfg = c->srv->cfg;
	int64_t limit = 0;
	const char *what = NULL;
	if (!wh_list_empty(&c->out) && c->write_blocked) {
		limit = cfg->send_timeout_ms;
		what = "send timeout";
	} else if (c->phase == PH_HANDSHAKE) {
		limit = c->srv->handshake_timeout_ms;
		what = "handshake timeout";
	} else if (c->phase == PH_IDLE) {
		limit = cfg->idle_timeout_ms;
		what = NULL; /* an idle keep-alive connection just goes */
	} else if (c->phase == PH_HEAD) {
		limit = cfg->header_timeout_ms;
		what = "header timeout";
	} else if (c->phase == PH_REQ && c->req.has_body && !c->msg_complete) {
		limit = cfg->body_timeout_ms;
		what = "body timeout";
	}
	if (c->lingering) {
		limit = LINGER_MS;
		what = NULL;
	}
	if (limit <= 0) {
		uv_timer_stop(&c->timer);
		return;
	}
	uint64_t now = uv_now(c->srv->loop);
	uint64_t due = c->activity + (uint64_t)limit;
	if (now >= due) {
		if (what)
			wh_log(WH_LOG_INFO, "closing connection", "reason", WH_LS, what, "client",
			       WH_LS, c->client, NULL);
		if (c->phase == PH_HANDSHAKE && !c->lingering)
			stats.handshake_timeouts++;
		if (c->phase == PH_HEAD && !c->handler_called && !c->lingering &&
		    !c->tp->handshaking) {
			/* Best effort: tell the client why, then go. */
			static const char r408[] =
			    "HTTP/1.1 408 Request Timeout\r\nContent-Length: "
			    "0\r\nConnection: close\r\n\r\n";
			struct iovec iov = {(void *)r408, sizeof(r408) - 1};
			(void)c->tp->ops->writev(c->tp, &iov, 1, false);
		}
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, conn_timer_cb, due - now, 0);
}

/* ---- the ready list ----
 *
 * A TLS transport can hold input it has already taken from the socket
 * (decrypted, not yet handed over); the socket will not signal it again. Such
 * a connection is read from an idle handle on the next turn of the loop, as
 * Redis serves its TLS pending list before waiting, rather than at once: one
 * client's read budget per event still holds. */
static void ready_idle_cb(uv_idle_t *h);

static void ready_add(wh_conn *c)
{
	wh_server *srv = c->srv;
	if (wh_list_linked(&c->ready_link))
		return;
	if (wh_list_empty(&srv->ready))
		uv_idle_start(&srv->ready_idle, ready_idle_cb);
	wh_list_insert_head(&srv->ready, &c->ready_link);
}

static void ready_del(wh_conn *c)
{
	wh_server *srv = c->srv;
	if (!wh_list_linked(&c->ready_link))
		return;
	wh_list_remove(&c->ready_link);
	if (wh_list_empty(&srv->ready))
		uv_idle_stop(&srv->ready_idle);
}

static void ready_idle_cb(uv_idle_t *h)
{
	wh_server *srv = h->data;
	/* Connections added while this runs wait for the next turn. */
	size_t n = wh_list_count(&srv->ready);
	while (n-- > 0 && !wh_list_empty(&srv->ready)) {
		wh_conn *c = wh_list_entry(wh_list_first(&srv->ready), wh_conn, ready_link);
		ready_del(c);
		conn_read(c);
	}
}

/* Not reading: a request is being answered, or pipelined input waits. */
static bool conn_paused(const wh_conn *c)
{
	return c->pend != NULL || (c->req_active && c->msg_complete) || c->refused ||
	       c->body_held || c->held_len > 0 || c->held_end;
}

static void conn_update_poll(wh_conn *c)
{
	if (c->closing || c->lingering)
		return;
	int ev = 0;
	bool paused = conn_paused(c);
	if (!paused && !c->eof) {
		ev |= UV_READABLE;
		if (c->read_wants_write)
			ev |= UV_WRITABLE;
		if (c->tp->ops->pending && c->tp->ops->pending(c->tp))
			ready_add(c);
	} else if (!c->eof && !c->hup_checked) {
		ev |= UV_DISCONNECT; /* not reading, but told when the peer goes */
	}
	if (!(ev & UV_READABLE))
		ready_del(c);
	if (c->write_blocked)
		ev |= (c->write_want == WH_WANT_READ && !wh_list_empty(&c->out)) ? UV_READABLE
		                                                                 : UV_WRITABLE;
	if (ev == c->events)
		return;
	c->events = ev;
	if (ev)
		uv_poll_start(&c->poll, ev, conn_poll_cb);
	else
		uv_poll_stop(&c->poll);
}

/* One line per request; `completed` is false when the connection went away
 * (or was cut) before the response was sent. */
static void log_access(wh_conn *c, bool completed)
{
	uint64_t now = uv_now(c->srv->loop);
	/* Behind nginx or Caddy the peer is the proxy: log whom it speaks for.
	 * (Without the header the NULL key ends the field list there.) */
	const char *fwd = wh_req_header(&c->req, "x-forwarded-for");
	wh_log(WH_LOG_INFO, completed ? "request" : "request not completed", "method", WH_LS,
	       c->req.method, "path", WH_LS, c->req.target, "status", WH_LI, (long long)c->status,
	       "bytes", WH_LI, (long long)(c->req.is_head ? 0 : c->body_sent_q), "duration_ms",
	       WH_LI, (long long)(now - c->started_ms), "client", WH_LS, c->client,
	       fwd ? "forwardedFor" : NULL, WH_LS, fwd, NULL);
}

/* ---- reusable connections ----
 *
 * As nginx does: a connection that owes nobody an answer (idle between
 * requests, or not yet through its request head) is reusable. When the
 * server is out of slots or descriptors, the oldest reusable ones are closed
 * to admit new clients, so idle or half-open connections, however many,
 * cannot lock real clients out; only connections with requests in progress
 * make the server refuse. */
static void reuse_add(wh_conn *c)
{
	if (!wh_list_linked(&c->reuse_link))
		wh_list_insert_tail(&c->srv->reusable, &c->reuse_link);
}

static void reuse_del(wh_conn *c)
{
	wh_list_remove(&c->reuse_link);
}

/* Close up to n of the oldest reusable connections; returns how many. No
 * answer is owed to any of them, so they just go. */
static int reclaim(wh_server *srv, int n, const char *why)
{
	int done = 0;
	while (done < n && !wh_list_empty(&srv->reusable)) {
		conn_close(wh_list_entry(wh_list_first(&srv->reusable), wh_conn, reuse_link));
		done++;
	}
	srv->reclaimed += (uint64_t)done;
	uint64_t now = uv_now(srv->loop);
	if (done > 0 && (now - srv->reclaim_logged > 10000 || !srv->reclaim_logged)) {
		wh_log(WH_LOG_WARN, "closing idle connections to admit new ones", "reason", WH_LS,
		       why, "closed", WH_LI, (long long)(srv->reclaimed - srv->reclaimed_at_log),
		       "open", WH_LI, (long long)srv->n_conns, NULL);
		srv->reclaim_logged = now;
		srv->reclaimed_at_log = srv->reclaimed;
	}
	return done;
}

/* The request is over: its done hooks run (last registered first), then the
 * request's memory is freed. A hook may register or cancel hooks; whatever
 * is registered by then runs. */
static void req_finish(wh_conn *c)
{
	while (!wh_list_empty(&c->hooks)) {
		wh_req_hook *h = wh_list_entry(wh_list_first(&c->hooks), wh_req_hook, link);
		wh_list_remove(&h->link);
		h->fn(&c->req, h);
	}
	while (c->mem) {
		struct req_mem *m = c->mem;
		c->mem = m->next;
		free(m);
	}
}

static void conn_free_cb(uv_handle_t *h)
{
	wh_conn *c = h->data;
	if (--c->pending_closes > 0)
		return;
	wh_server *srv = c->srv;
	if (c->req_active) {
		log_access(c, false);
		req_finish(c);
	}
	free(c->req.headers);
	arena_reset(c);
	free(c->pend);
	free(c->held);
	queue_clear(c);
	c->tp->ops->close(c->tp);
	free(c);
	srv->pending_closes--;
	server_maybe_done(srv);
}

/* Close at a safe time: handles are closed now, memory is freed (and the
 * request's done hooks run) from the close callbacks, never inside a parser
 * or handler callback. */
static void conn_close(wh_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	wh_server *srv = c->srv;
	reuse_del(c);
	ready_del(c);
	post_del(c);
	wh_list_remove(&c->link);
	srv->n_conns--;
	stats.connections--;
	if (c->refused)
		srv->n_refused--;
	srv->pending_closes++;
	c->pending_closes = 2;
	uv_close((uv_handle_t *)&c->poll, conn_free_cb);
	uv_close((uv_handle_t *)&c->timer, conn_free_cb);
}

/* The request is over when the parser has seen all of it and the response is
 * sent. Then the next pipelined request (if any) is parsed. Never called from
 * inside llhttp_execute. */
static void conn_advance_once(wh_conn *c);

/* Iterative, not recursive: parsing the next pipelined request ends in
 * conn_advance again (conn_feed calls it), and a recursion per request would
 * grow the stack with the number of requests in one read. */
static void conn_advance(wh_conn *c)
{
	/* Inside on_writable too: the conn_flush that called it advances once
	 * it has returned. */
	if (c->closing || c->in_parse || c->in_writable)
		return;
	if (c->in_advance) {
		c->advance_again = true;
		return;
	}
	c->in_advance = true;
	do {
		c->advance_again = false;
		conn_advance_once(c);
	} while (c->advance_again && !c->closing && !c->in_parse);
	c->in_advance = false;
}

static void conn_advance_once(wh_conn *c)
{
	if (c->closing || c->in_parse)
		return;
	if (!c->req_active) {
		if (c->resp_ended && wh_list_empty(&c->out))
			conn_linger(c); /* a request the server rejected itself */
		else
			conn_update_poll(c);
		return;
	}
	if (!(c->resp_ended && wh_list_empty(&c->out)))
		return;
	if (!c->msg_complete && !c->close_after)
		return; /* a small unwanted body still being read and dropped */

	log_access(c, true);
	req_finish(c);
	c->req_active = false;
	if (c->closing)
		return;
	free(c->req.headers);
	memset(&c->req, 0, sizeof(c->req));
	arena_reset(c);
	c->handler_called = c->msg_complete = c->body_wanted = c->body_failed = false;
	c->body_held = c->held_end = false;
	free(c->held);
	c->held = NULL;
	c->held_len = c->held_cap = 0;
	c->continue_sent = false;
	c->on_body = NULL;
	c->on_body_end = NULL;
	c->head_open = c->head_done = c->resp_ended = false;
	c->body_sent_q = 0;
	c->status = 0;
	c->err_status = 0;
	c->trailer_bytes = 0;

	if (c->close_after || !c->keep_alive || c->srv->shutting_down) {
		conn_linger(c);
		return;
	}
	c->phase = PH_IDLE;
	reuse_add(c);
	c->activity = uv_now(c->srv->loop);
	llhttp_resume(&c->parser);
	if (c->pend) {
		/* Parsed in place: conn_feed moves pend_off on, or frees pend once
		 * it is used up. */
		c->feeding_pend = true;
		conn_feed(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
		c->feeding_pend = false;
		if (c->closing)
			return;
	}
	if (c->eof && !c->pend && !(c->req_active && c->msg_complete)) {
		/* The peer's end came while we were not reading (conn_peer_hup)
		 * and what it sent before is parsed: nothing more will come. A
		 * head or a body cut short is a request that never was. */
		if (c->phase == PH_HEAD)
			llhttp_finish(&c->parser);
		conn_close(c);
		return;
	}
	conn_update_poll(c);
	conn_update_timer(c);
}

/* Close after an answer while the client may still be sending: shut down our
 * side, then read and drop what arrives for a moment. Closing with unread
 * input would reset the connection and could destroy the answer before the
 * client reads it (a 431 for a huge header, say). */
static void conn_linger(wh_conn *c)
{
	if (c->closing || c->lingering)
		return;
	if (c->eof) {
		conn_close(c);
		return;
	}
	c->lingering = true;
	reuse_del(c);
	ready_del(c);
	c->tp->ops->shutdown_write(c->tp);
	c->activity = uv_now(c->srv->loop);
	c->events = 0;
	uv_poll_start(&c->poll, UV_READABLE, conn_poll_cb);
	conn_update_timer(c);
}

/* Over TLS the records are decrypted to be dropped: the transport's read is
 * the only way to tell its end of stream, and a peer that sends garbage is
 * closed on at once. Input that waits inside the transport is read here too,
 * since the loop goes on until the socket has nothing. */
static void conn_drain(wh_conn *c)
{
	for (size_t total = 0; total < LINGER_BYTES;) {
		ssize_t n = c->tp->ops->read(c->tp, read_buf, sizeof(read_buf));
		if (n == -EAGAIN)
			return;
		if (n <= 0)
			break;
		total += (size_t)n;
	}
	conn_close(c);
}

/* An error answered by the server itself (bad request, too large), then close. */
static void conn_reject(wh_conn *c, int status)
{
	char buf[256];
	static const char body[] = "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"%s\"}]}";
	char json[160];
	int jn = snprintf(json, sizeof(json), body, reason(status));
	int n = snprintf(buf, sizeof(buf),
	                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
	                 "%d\r\nConnection: close\r\n\r\n%s",
	                 status, reason(status), jn, json);
	wh_log(WH_LOG_INFO, "bad request", "status", WH_LI, (long long)status, "reason", WH_LS,
	       llhttp_get_error_reason(&c->parser), "client", WH_LS, c->client, NULL);
	c->close_after = true;
	if (c->head_open) {
		/* Mid-response: nothing more can be said. */
		conn_close(c);
		return;
	}
	c->status = status;
	c->head_open = c->head_done = c->resp_ended = true;
	queue_mem(c, buf, (size_t)n);
	conn_flush(c);
	if (!c->closing && wh_list_empty(&c->out))
		conn_linger(c);
}

/* Parse bytes. If the parser pauses (a request is complete), the rest is kept
 * in `pend` and reading stops until the response is done. */
static void conn_feed(wh_conn *c, const char *data, size_t len)
{
	bool from_pend = c->feeding_pend;
	c->feeding_pend = false;
	c->in_parse = true;
	llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
	c->in_parse = false;
	if (c->closing)
		return;
	size_t used = len;
	if (err == HPE_PAUSED)
		used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
	if (from_pend && (err == HPE_OK || err == HPE_PAUSED)) {
		/* data is pend itself: move on, no copy. */
		c->pend_off += used;
		if (c->pend_off >= c->pend_len) {
			free(c->pend);
			c->pend = NULL;
			c->pend_len = c->pend_off = 0;
		}
	} else if (err == HPE_PAUSED) {
		if (used < len) {
			c->pend = wh_malloc(len - used);
			memcpy(c->pend, data + used, len - used);
			c->pend_len = len - used;
			c->pend_off = 0;
		}
	} else if (err != HPE_OK) {
		int status = c->err_status ? c->err_status : 400;
		if (err == HPE_PAUSED_UPGRADE)
			status = 400;
		conn_reject(c, status);
		return;
	}
	/* A handler may have started a response and left its first bytes
	 * queued: writes are not flushed from inside the parser. */
	if (!wh_list_empty(&c->out) && !c->write_blocked)
		conn_flush(c);
	if (c->closing)
		return;
	conn_advance(c);
	conn_update_poll(c);
}

static void tls_probe(wh_conn *c)
{
	wh_server *srv = c->srv;
	uint64_t now = uv_now(srv->loop);
	srv->tls_probes++;
	if (!srv->tls_probe_logged || now - srv->tls_probe_logged >= 60000) {
		wh_log(WH_LOG_DEBUG, "TLS handshake on a plain HTTP listener", "client", WH_LS,
		       c->client, "count", WH_LI, (long long)srv->tls_probes, NULL);
		srv->tls_probe_logged = now;
		srv->tls_probes = 0;
	}
	conn_close(c);
}

/* The transport's handshake is done (by a read or a write): until a request
 * begins, the connection is idle. */
static void conn_handshake_check(wh_conn *c)
{
	if (!c->handshaking || c->tp->handshaking)
		return;
	c->handshaking = false;
	if (c->phase == PH_HANDSHAKE) {
		c->phase = PH_IDLE;
		c->activity = uv_now(c->srv->loop);
		conn_update_timer(c);
	}
}

static void conn_read(wh_conn *c)
{
	/* A bounded number of reads per event, so one fast client cannot starve
	 * the others. */
	for (int i = 0; i < 4 && !c->closing && !c->pend && !(c->req_active && c->msg_complete);
	     i++) {
		ssize_t n = c->tp->ops->read(c->tp, read_buf, sizeof(read_buf));
		c->read_wants_write = n == -EAGAIN && c->tp->want == WH_WANT_WRITE;
		conn_handshake_check(c);
		if (n == -EAGAIN)
			break;
		if (n > 0 && !c->any_input && !c->srv->tls && read_buf[0] == 0x16) {
			/* A TLS record (handshake, 0x16 0x03 ...) on a plain
			 * listener: a client configured for https. No HTTP method
			 * starts with that byte; llhttp would log "Invalid method"
			 * as a 400 per attempt. Said at debug, once in a while. */
			tls_probe(c);
			return;
		}
		c->any_input = true;
		if (n <= 0) {
			c->eof = true;
			if (n < 0 || !c->req_active) {
				if (n == 0 && c->phase == PH_HEAD)
					llhttp_finish(&c->parser);
				conn_close(c);
				return;
			}
			/* Half-closed while a request is in progress: answer it, then go. */
			c->close_after = true;
			if (!c->msg_complete) {
				/* The request itself was cut short. */
				llhttp_finish(&c->parser);
				conn_close(c);
				return;
			}
			conn_update_poll(c);
			return;
		}
		conn_feed(c, read_buf, (size_t)n);
		if ((size_t)n < sizeof(read_buf))
			break;
	}
	if (!c->closing)
		conn_update_poll(c);
}

/* Write what the queue holds until it is empty or the socket is full.
 * Returns -1 when the connection failed (and is closing). */
static int conn_write(wh_conn *c)
{
	while (!wh_list_empty(&c->out)) {
		struct seg *s = seg_at(c, wh_list_first(&c->out));
		ssize_t n;
		size_t asked = 0;
		if (s->file) {
			if (s->len == 0) {
				n = 0;
			} else {
				asked = (size_t)WH_MIN(s->len, (int64_t)1 << 30);
				n = c->tp->ops->sendfile(c->tp, wh_file_fd(s->file), &s->off,
				                         asked);
				if (n > 0)
					s->len -= n;
				else if (n == 0)
					n = -EPIPE; /* the file is shorter than promised */
			}
			if (n >= 0 && s->len == 0)
				seg_free(c, s);
		} else {
			struct iovec iov[16];
			int cnt = 0;
			struct seg *m = s;
			for (; m && !m->file && cnt < 16; m = seg_at(c, m->link.next)) {
				iov[cnt].iov_base = m->mem + m->sent;
				iov[cnt].iov_len = m->used - m->sent;
				cnt++;
			}
			/* A head followed by a file: let it share the file's first packet. */
			bool more = m && m->file;
			for (int i = 0; i < cnt; i++)
				asked += iov[i].iov_len;
			n = c->tp->ops->writev(c->tp, iov, cnt, more);
			if (n > 0) {
				size_t left = (size_t)n;
				c->out_mem -= left;
				while (left > 0) {
					struct seg *t = seg_at(c, wh_list_first(&c->out));
					size_t k = WH_MIN(left, t->used - t->sent);
					t->sent += k;
					left -= k;
					if (t->sent == t->used)
						seg_free(c, t);
				}
			}
		}
		if (n == -EAGAIN) {
			c->write_blocked = true;
			c->write_want = c->tp->want;
			break;
		}
		if (n < 0) {
			wh_log(WH_LOG_DEBUG, "write failed", "error", WH_LS, wh_strerror((int)n),
			       "client", WH_LS, c->client, NULL);
			conn_close(c);
			return -1;
		}
		c->activity = uv_now(c->srv->loop);
		if (n > 0 && (size_t)n < asked) {
			/* A short write: the socket buffer is full. Trying again now
			 * would only return EAGAIN; wait until it drains. */
			c->write_blocked = true;
			c->write_want = WH_WANT_WRITE;
			break;
		}
	}
	if (wh_list_empty(&c->out))
		c->write_blocked = false;
	conn_handshake_check(c); /* a write can finish it (a refused client's 503) */
	return 0;
}

/* Send what is queued, asking the producer for more (on_writable) while the
 * socket takes it, and complete the request once its response is sent.
 * Bounded per call so that one fast download cannot hold the loop: what is
 * left is picked up when the socket is next writable. Called only from the
 * connection's own events (never from inside a wh_resp_* call): it calls
 * the application. */
static void conn_flush(wh_conn *c)
{
	if (c->closing)
		return;
	for (int round = 0;; round++) {
		if (conn_write(c) != 0)
			return;
		if (c->write_blocked || c->in_writable || !c->req_active || !c->head_open ||
		    c->resp_ended || c->out_mem >= OUT_LOW || c->out_files > 0 ||
		    !c->req.on_writable)
			break;
		if (round == 16) {
			c->write_blocked = true; /* come back when the loop has run */
			break;
		}
		c->in_writable = true;
		c->req.on_writable(&c->req);
		c->in_writable = false;
		if (c->closing)
			return;
		if (wh_list_empty(&c->out))
			break; /* the producer has nothing yet */
	}
	conn_update_poll(c);
	conn_update_timer(c);
	/* Not from inside on_writable (a response ended there): the next
	 * pipelined request would be dispatched while in_writable still holds
	 * its writes back, and if it produced nothing at once nobody would ask
	 * it again. The conn_flush that called on_writable advances on return. */
	if (wh_list_empty(&c->out) && c->resp_ended && !c->in_writable)
		conn_advance(c);
}

/* ---- the posted list ----
 *
 * The request API never calls the application back from inside a call: a
 * wh_resp_end from a timer or an upstream's callback must not run the done
 * hooks, nor the next pipelined request's handler, while its caller is still
 * on the stack (as nginx posts requests and libuv feeds I/O events rather
 * than recursing). What a call leaves to do is posted; the loop runs it
 * after the poll phase of the same turn, or before polling on the next one,
 * so it costs no system call. */
static void post_cb(uv_check_t *h);
static void post_idle_cb(uv_idle_t *h);

static void post_add(wh_conn *c)
{
	wh_server *srv = c->srv;
	if (wh_list_linked(&c->post_link) || c->closing)
		return;
	if (wh_list_empty(&srv->posted)) {
		uv_check_start(&srv->post_check, post_cb);
		uv_idle_start(&srv->post_idle, post_idle_cb);
	}
	wh_list_insert_tail(&srv->posted, &c->post_link);
}

static void post_del(wh_conn *c)
{
	wh_server *srv = c->srv;
	if (!wh_list_linked(&c->post_link))
		return;
	wh_list_remove(&c->post_link);
	if (wh_list_empty(&srv->posted)) {
		uv_check_stop(&srv->post_check);
		uv_idle_stop(&srv->post_idle);
	}
}

/* The body parsed while the handler held it, to the reader it chose now. */
static void deliver_held(wh_conn *c)
{
	char *held = c->held;
	size_t len = c->held_len;
	bool end = c->held_end;
	c->held = NULL;
	c->held_len = c->held_cap = 0;
	c->held_end = false;
	if (len > 0 && c->body_wanted && !c->body_failed && c->on_body &&
	    c->on_body(&c->req, held, len) != 0) {
		c->body_failed = true;
		c->close_after = true;
	}
	free(held);
	if (!c->closing && end && c->body_wanted && !c->body_failed && c->on_body_end)
		c->on_body_end(&c->req);
	if (!c->closing)
		conn_update_poll(c);
}

static void post_run(wh_server *srv)
{
	/* Connections posted while this runs (by the applications it calls)
	 * wait for the next turn, so that this always ends. */
	size_t n = wh_list_count(&srv->posted);
	while (n-- > 0 && !wh_list_empty(&srv->posted)) {
		wh_conn *c = wh_list_entry(wh_list_first(&srv->posted), wh_conn, post_link);
		post_del(c);
		if (c->req_active && c->body_wanted && (c->held_len > 0 || c->held_end))
			deliver_held(c);
		if (!c->closing)
			conn_flush(c);
	}
}

static void post_cb(uv_check_t *h)
{
	post_run(h->data);
}

static void post_idle_cb(uv_idle_t *h)
{
	post_run(h->data);
}

/* Flush for the request API (wh_resp_*): write what the socket takes now,
 * without calling the application. Inside the connection's own events (the
 * parser, on_writable) the event goes on when the application returns;
 * from anywhere else (a timer, an upstream's callback, another request's
 * hook) what is left to do is posted: asking for more (on_writable) once the
 * queue drained, completing the request once its response is sent. */
static void resp_flush(wh_conn *c)
{
	if (c->closing)
		return;
	if (conn_write(c) != 0)
		return;
	conn_update_poll(c);
	conn_update_timer(c);
	if (c->in_parse || c->in_writable || !wh_list_empty(&c->out))
		return; /* the event, or the socket's writability, comes back */
	if (c->resp_ended || (c->req_active && c->head_open && c->req.on_writable))
		post_add(c);
}

/* The peer shut its side while the connection was not being read (a request
 * waiting on an upstream fetch, or pipelined input held back). Without this a
 * client that leaves would hold its slot for as long as the answer takes. As
 * nginx does, a FIN with nothing left to read, before any of the answer was
 * sent, means the client is gone: the request is dropped. Once the answer
 * has begun it is finished (a write to a closed peer fails by itself); when
 * input is still waiting it is parsed first, and the end of it seen then. */
static void conn_peer_hup(wh_conn *c)
{
	int n = c->tp->ops->peek(c->tp);
	if (n == -EAGAIN)
		return;
	c->hup_checked = true; /* the event is level-triggered: once is enough */
	if (n < 0 || (n == 0 && !c->head_open && c->req_active)) {
		wh_log(WH_LOG_DEBUG, "client went away before its answer", "client", WH_LS,
		       c->client, NULL);
		conn_close(c);
		return;
	}
	if (n == 0)
		c->eof = true;
	conn_update_poll(c);
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
	wh_conn *c = WH_CONTAINER_OF(h, wh_conn, poll);
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->write_blocked &&
	    (events & (c->write_want == WH_WANT_READ && !wh_list_empty(&c->out) ? UV_READABLE
	                                                                        : UV_WRITABLE))) {
		c->write_blocked = false;
		conn_flush(c);
	}
	if (!c->closing && (events & UV_READABLE)) {
		if (c->lingering)
			conn_drain(c);
		else
			conn_read(c);
	} else if (!c->closing && c->read_wants_write && (events & UV_WRITABLE)) {
		conn_read(c);
	} else if (!c->closing && (events & UV_DISCONNECT)) {
		/* The write above may have ended the request and resumed reading:
		 * then the peer's end is read as any end is. */
		if (conn_paused(c))
			conn_peer_hup(c);
		else
			conn_read(c);
	}
}

static wh_conn *conn_new(wh_server *srv, int fd, const struct sockaddr_storage *ss)
{
	wh_conn *c = wh_calloc(1, sizeof(*c));
	c->srv = srv;
	wh_list_init(&c->reuse_link);
	wh_list_init(&c->ready_link);
	wh_list_init(&c->post_link);
	wh_list_init(&c->hooks);
	wh_list_init(&c->out);
	c->tp = srv->tls ? wh_transport_tls(srv->tls, fd) : wh_transport_plain(fd);
	c->handshaking = c->tp->handshaking;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(c->client, sizeof(c->client), "%s:%d", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(c->client, sizeof(c->client), "[%s]:%d", ip, port);
	}
	llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
	c->parser.data = c;
	uv_poll_init(srv->loop, &c->poll, c->tp->fd);
	uv_timer_init(srv->loop, &c->timer);
	c->poll.data = c;
	c->timer.data = c;
	c->phase = c->handshaking ? PH_HANDSHAKE : PH_IDLE;
	c->activity = uv_now(srv->loop);
	wh_list_insert_head(&srv->conns, &c->link);
	srv->n_conns++;
	stats.connections++;
	stats.accepted++;
	reuse_add(c);
	conn_update_poll(c);
	conn_update_timer(c);
	return c;
}

/* ---- listener ---- */

/* Over the connection limit: answer 503 and close. A refused connection
 * still gets the lingering close (so its client reads the answer rather than
 * a reset), as long as few are lingering; past that it is just closed. */
#define REFUSED_MAX 64
static void refuse(wh_server *srv, int fd, const struct sockaddr_storage *ss)
{
	static const char r503[] =
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
	    "Retry-After: 1\r\nConnection: close\r\nContent-Length: 79\r\n\r\n"
	    "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"too many connections, "
	    "retry\"}]}";
	if (srv->n_refused >= REFUSED_MAX) {
		/* Best effort: one write, whatever the socket takes; on TLS the
		 * answer would need a handshake first, so the socket is just closed. */
		wh_transport *tp = wh_transport_plain(fd);
		struct iovec iov = {(void *)r503, sizeof(r503) - 1};
		if (!srv->tls)
			(void)tp->ops->writev(tp, &iov, 1, false);
		tp->ops->close(tp);
		return;
	}
	wh_conn *c = conn_new(srv, fd, ss);
	reuse_del(c); /* it owes its client the 503 */
	c->refused = true;
	srv->n_refused++;
	c->status = 503;
	c->head_open = c->head_done = c->resp_ended = true;
	c->close_after = true;
	queue_mem(c, r503, sizeof(r503) - 1);
	conn_flush(c);
	if (!c->closing && wh_list_empty(&c->out))
		conn_linger(c);
}

static void listen_cb(uv_poll_t *h, int status, int events);

static void accept_resume(uv_timer_t *t)
{
	wh_server *srv = t->data;
	if (srv->listening)
		uv_poll_start(&srv->listen_poll, UV_READABLE, listen_cb);
}

static void listen_cb(uv_poll_t *h, int status, int events)
{
	wh_server *srv = WH_CONTAINER_OF(h, wh_server, listen_poll);
	if (status < 0)
		return;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd =
		    accept4(srv->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				/* Descriptors of reclaimed connections are released by
				 * their close callbacks, before the loop polls again: the
				 * listener is still readable then, and accepting goes on. */
				if (reclaim(srv, 32, "out of file descriptors") > 0)
					break;
				/* The connection stays in the backlog and the listener
				 * stays readable: stop watching it for a moment rather
				 * than spin. */
				uint64_t now = uv_now(srv->loop);
				if (now - srv->emfile_logged > 10000 || !srv->emfile_logged) {
					srv->emfile_logged = now;
					wh_log(WH_LOG_WARN,
					       "out of file descriptors; accepting again soon",
					       "open", WH_LI, (long long)srv->n_conns, NULL);
				}
				uv_poll_stop(&srv->listen_poll);
				uv_timer_start(&srv->accept_timer, accept_resume, 100, 0);
				break;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				wh_log(WH_LOG_WARN, "accept failed", "error", WH_LS,
				       strerror(errno), NULL);
			break;
		}
		if (srv->n_conns - srv->n_refused >= srv->cfg->max_connections &&
		    reclaim(srv, 1, "connection limit") == 0) {
			uint64_t now = uv_now(srv->loop);
			if (now - srv->limit_logged > 10000 || !srv->limit_logged) {
				srv->limit_logged = now; /* once in a while, not per connection */
				wh_log(WH_LOG_WARN,
				       "connection limit reached, every connection busy: refusing",
				       "limit", WH_LI, (long long)srv->cfg->max_connections, NULL);
			}
			refuse(srv, fd, &ss);
			continue;
		}
		conn_new(srv, fd, &ss);
	}
}

void wh_server_reload(wh_server *srv, const wh_http_settings *cfg)
{
	srv->cfg = cfg;
}

int wh_server_start(uv_loop_t *loop, const wh_http_settings *cfg, wh_tls *tls, wh_handler handler,
                    void *ctx, wh_server **out)
{
	int rc = 0, fd = -1;
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", cfg->port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	const char *addr = cfg->address && *cfg->address ? cfg->address : NULL;
	int gai = getaddrinfo(addr, port, &hints, &res);
	if (gai != 0) {
		wh_log(WH_LOG_ERROR, "cannot resolve listen address", "address", WH_LS, addr,
		       "error", WH_LS, gai_strerror(gai), NULL);
		rc = -EADDRNOTAVAIL;
		goto out;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 511) < 0) {
		rc = -errno;
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);

	wh_server *srv = wh_calloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->cfg = cfg;
	srv->handler = handler;
	srv->ctx = ctx;
	srv->tls = tls;
	srv->handshake_timeout_ms = cfg->header_timeout_ms;
	wh_list_init(&srv->conns);
	wh_list_init(&srv->reusable);
	wh_list_init(&srv->ready);
	wh_list_init(&srv->posted);
	uv_idle_init(loop, &srv->ready_idle);
	srv->ready_idle.data = srv;
	uv_check_init(loop, &srv->post_check);
	srv->post_check.data = srv;
	uv_idle_init(loop, &srv->post_idle);
	srv->post_idle.data = srv;
	srv->fd = fd;
	srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                           : ((struct sockaddr_in *)&ss)->sin_port);
	llhttp_settings_init(&srv->settings);
	srv->settings.on_message_begin = on_message_begin;
	srv->settings.on_url = on_url;
	srv->settings.on_header_field = on_header_field;
	srv->settings.on_header_value = on_header_value;
	srv->settings.on_headers_complete = on_headers_complete;
	srv->settings.on_body = on_body;
	srv->settings.on_message_complete = on_message_complete;
	srv->settings.on_chunk_extension_name = on_chunk_extension;
	srv->settings.on_chunk_extension_value = on_chunk_extension;
	uv_poll_init(loop, &srv->listen_poll, fd);
	uv_poll_start(&srv->listen_poll, UV_READABLE, listen_cb);
	uv_timer_init(loop, &srv->accept_timer);
	srv->accept_timer.data = srv;
	srv->listening = true;
	*out = srv;
	fd = -1;
	goto out;
fail:
	wh_log(WH_LOG_ERROR, "cannot listen", "address", WH_LS, addr, "port", WH_LI,
	       (long long)cfg->port, "error", WH_LS, strerror(-rc), NULL);
out:
	if (fd >= 0)
		close(fd);
	if (res)
		freeaddrinfo(res);
	return rc;
}

int wh_server_port(const wh_server *srv)
{
	return srv->port;
}

int wh_server_adopt(wh_server *srv, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fl = fcntl(fd, F_GETFL);
	if (srv->shutting_down)
		return -EINVAL;
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		ss.ss_family = AF_UNSPEC; /* the client is then logged as "" */
	conn_new(srv, fd, &ss);
	return 0;
}

static void server_free_cb(uv_handle_t *h)
{
	wh_server *srv = h->data;
	if (--srv->final_closes > 0)
		return;
	void (*done)(void *) = srv->shutdown_done;
	void *arg = srv->shutdown_arg;
	free(srv);
	if (done)
		done(arg);
}

static void server_maybe_done(wh_server *srv)
{
	if (!srv->shutting_down || srv->n_conns > 0 || srv->pending_closes > 0 ||
	    srv->timer_closing)
		return;
	srv->timer_closing = true;
	srv->final_closes = 4;
	uv_close((uv_handle_t *)&srv->ready_idle, server_free_cb);
	uv_close((uv_handle_t *)&srv->post_check, server_free_cb);
	uv_close((uv_handle_t *)&srv->post_idle, server_free_cb);
	uv_close((uv_handle_t *)&srv->shutdown_timer, server_free_cb);
}

static void shutdown_timer_cb(uv_timer_t *t)
{
	wh_server *srv = t->data;
	wh_log(WH_LOG_WARN, "shutdown deadline reached, closing connections", "open", WH_LI,
	       (long long)srv->n_conns, NULL);
	while (!wh_list_empty(&srv->conns))
		conn_close(wh_list_entry(wh_list_first(&srv->conns), wh_conn, link));
}

static void accept_timer_closed(uv_handle_t *h)
{
	wh_server *srv = h->data;
	srv->pending_closes--;
	server_maybe_done(srv);
}

static void listen_close_cb(uv_handle_t *h)
{
	wh_server *srv = h->data;
	close(srv->fd);
	srv->fd = -1;
	srv->pending_closes--;
	server_maybe_done(srv);
}

void wh_server_shutdown(wh_server *srv, void (*done)(void *arg), void *arg)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv->shutdown_done = done;
	srv->shutdown_arg = arg;
	uv_timer_init(srv->loop, &srv->shutdown_timer);
	srv->shutdown_timer.data = srv;
	uv_timer_start(&srv->shutdown_timer, shutdown_timer_cb,
	               (uint64_t)WH_MAX(srv->cfg->shutdown_timeout_ms, 0), 0);
	uv_unref((uv_handle_t *)&srv->shutdown_timer);
	if (srv->listening) {
		srv->listening = false;
		srv->pending_closes++;
		srv->listen_poll.data = srv;
		uv_close((uv_handle_t *)&srv->listen_poll, listen_close_cb);
		srv->pending_closes++;
		uv_close((uv_handle_t *)&srv->accept_timer, accept_timer_closed);
	}
	/* Idle connections and ones still sending a head go now; requests in
	 * progress finish (keep-alive off) or are cut at the deadline. */
	wh_list_foreach_safe(l, next, &srv->conns) {
		wh_conn *c = wh_list_entry(l, wh_conn, link);
		if (!c->req_active)
			conn_close(c);
		else
			c->keep_alive = false;
	}
	server_maybe_done(srv);
}

/* ---- request API ---- */

const char *wh_req_header(const wh_req *req, const char *name)
{
	for (int i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The raw value of the nth (from 0) parameter named name in the query:
 * [*val, *end), or false when there is none. A parameter without '=' has
 * an empty value. Names are compared as sent (not percent-decoded). */
static bool query_find_nth(const wh_req *req, const char *name, int nth, const char **val,
                           const char **end)
{
	const char *q = req->query;
	size_t nlen = strlen(name);
	while (q && *q) {
		const char *amp = strchr(q, '&');
		const char *e = amp ? amp : q + strlen(q);
		const char *eq = memchr(q, '=', (size_t)(e - q));
		const char *kend = eq ? eq : e;
		if ((size_t)(kend - q) == nlen && memcmp(q, name, nlen) == 0 && nth-- == 0) {
			*val = eq ? eq + 1 : e;
			*end = e;
			return true;
		}
		q = amp ? amp + 1 : NULL;
	}
	return false;
}

static bool query_find(const wh_req *req, const char *name, const char **val, const char **end)
{
	return query_find_nth(req, name, 0, val, end);
}

int wh_req_query_count(const wh_req *req, const char *name)
{
	const char *v, *end;
	int n = 0;
	while (query_find_nth(req, name, n, &v, &end))
		n++;
	return n;
}

const char *wh_req_query(const wh_req *req, const char *name, char *buf, size_t buflen)
{
	return wh_req_query_nth(req, name, 0, buf, buflen);
}

const char *wh_req_query_nth(const wh_req *req, const char *name, int nth, char *buf, size_t buflen)
{
	const char *v, *end;
	size_t o = 0;
	if (!query_find_nth(req, name, nth, &v, &end))
		return NULL;
	for (const char *p = v; p < end; p++) {
		int ch = (unsigned char)*p;
		if (ch == '%' && end - p >= 3 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
			ch = hexval(p[1]) * 16 + hexval(p[2]);
			p += 2;
		} else if (ch == '+') {
			ch = ' ';
		}
		/* A NUL would cut the value short where the caller reads it: a
		 * digest followed by %00 and anything would pass as the digest. */
		if (ch == '\0' || o + 1 >= buflen)
			return NULL;
		buf[o++] = (char)ch;
	}
	if (o >= buflen)
		return NULL; /* an empty value, and no room for its NUL */
	buf[o] = '\0';
	return buf;
}

bool wh_req_query_has(const wh_req *req, const char *name)
{
	const char *v, *end;
	return query_find(req, name, &v, &end);
}

bool wh_req_range(const wh_req *req, int64_t *start, int64_t *end)
{
	const char *h = wh_req_header(req, "range");
	if (!h || strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return false;
	const char *p = h + 6;
	char *e;
	errno = 0;
	if (*p == '-') {
		if (p[1] < '0' || p[1] > '9')
			return false;
		long long n = strtoll(p + 1, &e, 10);
		if (*e || errno)
			return false;
		*start = -1;
		*end = n;
		return true;
	}
	if (*p < '0' || *p > '9')
		return false;
	long long a = strtoll(p, &e, 10);
	if (*e != '-' || errno)
		return false;
	long long z = -1;
	if (e[1]) {
		const char *b = e + 1;
		if (*b < '0' || *b > '9')
			return false;
		z = strtoll(b, &e, 10);
		if (*e || errno)
			return false;
		/* z < a, "bytes=500-0", is a range all the same, one that no
		 * representation satisfies: wh_range_resolve says so (416). */
	}
	*start = a;
	*end = z;
	return true;
}

bool wh_range_resolve(int64_t start, int64_t end, int64_t size, int64_t *a, int64_t *z)
{
	if (start >= 0 && end >= 0 && end < start)
		return false; /* reversed */
	if (start < 0) {
		/* The last `end` bytes. */
		if (end <= 0 || size <= 0)
			return false;
		*a = size > end ? size - end : 0;
		*z = size - 1;
		return true;
	}
	if (start >= size)
		return false;
	*a = start;
	*z = end < 0 || end >= size ? size - 1 : end;
	return true;
}

void wh_req_on_done(wh_req *req, wh_req_hook *hook, void (*fn)(wh_req *req, wh_req_hook *hook))
{
	wh_conn *c = req->conn;
	hook->fn = fn;
	wh_list_insert_head(&c->hooks, &hook->link);
}

void wh_req_cancel_done(wh_req *req, wh_req_hook *hook)
{
	/* Zeroed memory never registered: its links are NULL, not its own. */
	if (hook->link.next)
		wh_list_remove(&hook->link);
}

void *wh_req_alloc(wh_req *req, size_t size)
{
	wh_conn *c = req->conn;
	/* A size that cannot be had fails as any failed allocation does. */
	size_t n =
	    size > SIZE_MAX - sizeof(struct req_mem) ? SIZE_MAX : sizeof(struct req_mem) + size;
	struct req_mem *m = wh_calloc(1, n);
	m->next = c->mem;
	c->mem = m;
	return m->data;
}

void wh_req_hold_body(wh_req *req)
{
	wh_conn *c = req->conn;
	if (!c->req.has_body || c->body_wanted || c->msg_complete || c->head_open)
		return;
	c->body_held = true;
	conn_update_poll(c);
}

void wh_req_read_body(wh_req *req, wh_body_cb on_body_cb, wh_req_cb on_body_end)
{
	wh_conn *c = req->conn;
	c->body_wanted = true;
	c->on_body = on_body_cb;
	c->on_body_end = on_body_end;
	if (c->body_held) {
		/* What was parsed meanwhile goes first, from the loop (never from
		 * inside this call), then reading resumes. */
		c->body_held = false;
		if (c->held_len > 0 || c->held_end)
			post_add(c);
		else
			conn_update_poll(c);
	}
	const char *expect = wh_req_header(req, "expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 && !c->head_open &&
	    !c->msg_complete && !c->continue_sent) {
		c->continue_sent = true;
		queue_mem(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		resp_flush(c);
	}
}

void wh_resp_start(wh_req *req, int status)
{
	wh_conn *c = req->conn;
	if (c->closing || c->head_open)
		return;
	if (c->body_held && !c->body_wanted) {
		/* Answered without the body it held (a 401): dropped, as a body
		 * never asked for is (a large one closes the connection). */
		c->body_held = c->held_end = false;
		free(c->held);
		c->held = NULL;
		c->held_len = c->held_cap = 0;
		check_unwanted_body(c);
		conn_update_poll(c);
	}
	c->status = status;
	c->head_open = true;
	char line[64];
	const char *why = reason(status);
	size_t wl = strlen(why);
	memcpy(line, "HTTP/1.1 ", 9);
	line[9] = (char)('0' + status / 100 % 10);
	line[10] = (char)('0' + status / 10 % 10);
	line[11] = (char)('0' + status % 10);
	line[12] = ' ';
	memcpy(line + 13, why, wl);
	memcpy(line + 13 + wl, "\r\n", 2);
	queue_mem(c, line, 15 + wl);
}

void wh_resp_header(wh_req *req, const char *name, const char *fmt, ...)
{
	wh_conn *c = req->conn;
	if (c->closing || !c->head_open || c->head_done)
		return;
	char val[2048];
	const char *v = val;
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	if (strchr(fmt, '%') == NULL) {
		v = fmt; /* a constant: no formatting needed */
		n = strlen(fmt);
	} else if (strcmp(fmt, "%s") == 0) {
		v = va_arg(ap, const char *);
		n = strlen(v);
	} else {
		int k = vsnprintf(val, sizeof(val), fmt, ap);
		n = k < 0 ? sizeof(val) : (size_t)k;
	}
	va_end(ap);
	if (n >= sizeof(val))
		return;
	/* Never let a value carry a line break into the head. */
	if (v[strcspn(v, "\r\n")] != '\0') {
		if (v != val)
			memcpy(val, v, n + 1);
		for (size_t i = 0; i < n; i++)
			if (val[i] == '\r' || val[i] == '\n')
				val[i] = ' ';
		v = val;
	}
	size_t nl = strlen(name);
	queue_mem(c, name, nl);
	queue_mem(c, ": ", 2);
	queue_mem(c, v, n);
	queue_mem(c, "\r\n", 2);
}

void wh_resp_length(wh_req *req, int64_t len)
{
	req->conn->resp_len = len;
}

static void finish_head(wh_conn *c)
{
	if (c->head_done)
		return;
	c->head_done = true;
	if (c->resp_len >= 0)
		queue_printf(c, "Content-Length: %lld\r\n", (long long)c->resp_len);
	else if (c->status != 204 && c->status != 304 && c->status >= 200)
		c->close_after = true; /* no length: the body ends with the connection */
	check_unwanted_body(c);
	if (c->close_after || !c->keep_alive || c->srv->shutting_down)
		queue_mem(c, "Connection: close\r\n", 19);
	else if (c->http10)
		queue_mem(c, "Connection: keep-alive\r\n", 24); /* 1.0 closes unless told */
	queue_mem(c, "\r\n", 2);
}

void wh_resp_write(wh_req *req, const void *data, size_t len)
{
	wh_conn *c = req->conn;
	if (c->closing || !c->head_open || c->resp_ended)
		return;
	finish_head(c);
	if (req->is_head || len == 0)
		return;
	c->body_sent_q += (int64_t)len;
	queue_mem(c, data, len);
	if (!c->in_parse && !c->in_writable)
		resp_flush(c);
}

void wh_resp_send_file(wh_req *req, wh_file *f, int64_t off, int64_t len)
{
	wh_conn *c = req->conn;
	if (c->closing || !c->head_open || c->resp_ended || req->is_head || len <= 0) {
		if (!c->closing && c->head_open)
			finish_head(c);
		return;
	}
	finish_head(c);
	struct seg *s = seg_new_mem(0);
	s->file = wh_file_ref(f);
	s->off = off;
	s->len = len;
	c->body_sent_q += len;
	c->out_files++;
	queue_push(c, s);
	if (!c->in_parse && !c->in_writable)
		resp_flush(c);
}

void wh_resp_sendfile(wh_req *req, int fd, int64_t off, int64_t len)
{
	wh_file *f = wh_file_new(fd);
	wh_resp_send_file(req, f, off, len);
	wh_file_unref(f);
}

void wh_resp_end(wh_req *req)
{
	wh_conn *c = req->conn;
	if (c->closing || !c->head_open || c->resp_ended)
		return;
	finish_head(c);
	c->resp_ended = true;
	if (!req->is_head && c->resp_len >= 0 && c->body_sent_q != c->resp_len)
		c->close_after = true;
	if (c->req_active && !c->msg_complete && c->body_wanted)
		c->close_after = true; /* answered before the body was read */
	resp_flush(c);
}

bool wh_resp_can_write(const wh_req *req)
{
	const wh_conn *c = req->conn;
	return !c->closing && c->out_mem < OUT_HIGH && c->out_files == 0;
}

void wh_req_abort(wh_req *req)
{
	wh_conn *c = req->conn;
	if (c->closing)
		return;
	/* Reset rather than close cleanly: the client must not mistake what it
	 * got for a whole body. */
	c->tp->ops->abort(c->tp);
	conn_close(c);
}

int wh_resp_status(const wh_req *req)
{
	return req->conn->status;
}

uint64_t wh_req_duration_ms(const wh_req *req)
{
	const wh_conn *c = req->conn;
	return uv_now(c->srv->loop) - c->started_ms;
}

void wh_http_get_stats(wh_http_stats *out)
{
	*out = stats;
}

/* ---- configuration: http (address, port) and http.wharf (limits) ---- */

#define HTTP(m) offsetof(wh_http_settings, m)

const wh_conf_key wh_http_keys[] = {
    WH_CONF_KEY("address", WH_CONF_STRING, 0, HTTP(address)),
    WH_CONF_KEY("port", WH_CONF_PORT, 0, HTTP(port)),
    WH_CONF_END,
};

const wh_conf_key wh_http_wharf_keys[] = {
    WH_CONF_KEY("headerTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, HTTP(header_timeout_ms)),
    WH_CONF_KEY("idleTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, HTTP(idle_timeout_ms)),
    WH_CONF_KEY("bodyTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, HTTP(body_timeout_ms)),
    WH_CONF_KEY("sendTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, HTTP(send_timeout_ms)),
    WH_CONF_KEY("shutdownTimeout", WH_CONF_DURATION, 0, HTTP(shutdown_timeout_ms)),
    WH_CONF_KEY("drainDelay", WH_CONF_DURATION, 0, HTTP(drain_delay_ms)),
    WH_CONF_KEY("maxConnections", WH_CONF_INT, WH_CONF_POSITIVE, HTTP(max_connections)),
    WH_CONF_KEY("maxHeaderBytes", WH_CONF_INT, WH_CONF_POSITIVE, HTTP(max_header_bytes)),
    WH_CONF_KEY("maxHeaders", WH_CONF_INT, WH_CONF_POSITIVE, HTTP(max_headers)),
    WH_CONF_END,
};

void wh_http_settings_init(wh_http_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->address = wh_strdup("127.0.0.1");
	s->port = 8080;
	s->header_timeout_ms = 20 * WH_SECOND_MS;
	s->idle_timeout_ms = 60 * WH_SECOND_MS;
	s->body_timeout_ms = 60 * WH_SECOND_MS;
	s->send_timeout_ms = 60 * WH_SECOND_MS;
	s->shutdown_timeout_ms = 10 * WH_SECOND_MS;
	s->max_connections = 1024;
	s->max_header_bytes = 65536;
	s->max_headers = 100;
}

void wh_http_settings_free(wh_http_settings *s)
{
	free(s->address);
	memset(s, 0, sizeof(*s));
}
