/* HTTP/1.1 server on one libuv loop, llhttp per connection.
 *
 * A connection handles one request at a time; pipelined requests wait in the
 * connection's input until the response before them has been sent, so
 * responses are always in order. For each request the handler is called once
 * the head (request line + headers) has arrived. It then:
 *   - answers at once (wh_resp_*), or
 *   - reads the body with wh_req_read_body (bytes are streamed to on_body as
 *     they arrive, never buffered whole) and answers from on_body_end, or
 *   - answers later, from another event (an upstream fetch): it sets
 *     on_writable to be asked for more output when the send queue drains.
 *
 * A response is: wh_resp_start (status), wh_resp_header (any number),
 * then body by wh_resp_write (copied) and/or wh_resp_send_file (zero-copy on
 * plain TCP), then wh_resp_end. Content-Length must be set with
 * wh_resp_length before the first body byte (or for HEAD); a response whose
 * body does not match its length closes the connection, so a client never
 * takes a short body for a complete one.
 *
 * Lifetime: a wh_req is valid from the handler call until the request is
 * over (its response sent, or the connection gone); then its done hooks run
 * (wh_req_on_done), and then the memory of wh_req_alloc is freed. After that
 * no other callback fires and nothing of req may be touched.
 *
 * No function of this API calls the application back before it returns:
 * on_writable, the done hooks and the next pipelined request's handler run
 * from the loop (right after the event that called the application, or on
 * the loop's next turn), never inside a wh_resp_* call. After wh_resp_end
 * returns, req is still valid until the loop runs its done hooks; no handler
 * runs inside another's call.
 *
 * Request-scoped state has one owner, the request: a module that keeps state
 * for a request takes it from wh_req_alloc (or embeds a hook in its own
 * memory) and registers a done hook to detach it. req->data is the one
 * content handler's, for the callbacks that get only the request (on_body,
 * on_body_end, on_writable). */
#ifndef WHARF_HTTP_H
#define WHARF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/base/conf.h"
#include "wharf/base/file.h"
#include "wharf/base/list.h"

typedef struct wh_server wh_server;
typedef struct wh_conn wh_conn;
typedef struct wh_req wh_req;
struct wh_tls; /* tls.h */

/* The listener and its limits: http.address, http.port and Wharf's own
 * http.wharf keys (wh_http_keys, wh_http_wharf_keys). A second listener
 * gets a second struct. */
typedef struct wh_http_settings {
	char *address; /* absent: "127.0.0.1", Zot's default */
	/* 1..65535; Zot writes it as a string, "5000"; absent: 8080, Zot's default */
	int port;
	int64_t header_timeout_ms;   /* default 20s: whole request head must arrive within it */
	int64_t idle_timeout_ms;     /* default 60s: keep-alive connection with no request */
	int64_t body_timeout_ms;     /* default 60s: a request body that makes no progress */
	int64_t send_timeout_ms;     /* default 60s: a response the client does not read */
	int64_t shutdown_timeout_ms; /* default 10s: in-flight requests on SIGTERM */
	/* drainDelay, default 0: on SIGTERM, serve this long more (with /readyz
	 * failing) before the listener closes. */
	int64_t drain_delay_ms;
	int max_connections;  /* default 1024 */
	int max_header_bytes; /* default 65536: request line + headers; over → 431 */
	int max_headers;      /* default 100 header fields; over → 431 */
} wh_http_settings;

/* Keys of the http object (address, port) and of http.wharf (the limits). */
extern const wh_conf_key wh_http_keys[];
extern const wh_conf_key wh_http_wharf_keys[];
void wh_http_settings_init(wh_http_settings *s);
void wh_http_settings_free(wh_http_settings *s);

typedef struct wh_header {
	const char *name;
	const char *value;
} wh_header;

/* Body callbacks: on_body returns 0 to go on, or non-zero once the handler has
 * answered (e.g. an error): the rest of the body is then not delivered and the
 * connection is closed after the response. */
typedef int (*wh_body_cb)(wh_req *req, const char *data, size_t len);
typedef void (*wh_req_cb)(wh_req *req);

struct wh_req {
	/* The request, read-only for handlers. Strings are NUL-terminated. */
	const char *method; /* "GET", "HEAD", ... */
	int method_id;      /* llhttp_method_t */
	const char *target; /* as received: path?query */
	const char *path;   /* target up to '?' */
	const char *query;  /* after '?', or NULL */
	wh_header *headers;
	int n_headers;
	int64_t content_length; /* -1 when chunked */
	bool has_body;
	bool is_head;
	const char *client; /* peer address, "ip:port" */
	/* Over TLS with http.tls.cacert: the verified client certificate's
	 * subject CN (for access control). NULL otherwise. */
	const char *tls_identity;

	/* Set by the content handler: its state for its body and on_writable
	 * callbacks. */
	void *data;
	wh_req_cb on_writable; /* the send queue drained: write more */

	wh_conn *conn; /* private */
};

typedef void (*wh_handler)(wh_req *req, void *ctx);

/* Create the listener on cfg->address:cfg->port and start accepting; over
 * TLS when tls is not NULL (tls.h). The settings and tls must outlive the
 * server. Returns 0 or -errno (the message is logged). */
int wh_server_start(uv_loop_t *loop, const wh_http_settings *cfg, struct wh_tls *tls,
                    wh_handler handler, void *ctx, wh_server **out);

/* SIGHUP: cfg's limits and timeouts from now on (the address and port stay
 * those it listens on). cfg must outlive the server, and so must the old
 * settings. */
void wh_server_reload(wh_server *srv, const wh_http_settings *cfg);

/* The bound port (useful with port 0). */
int wh_server_port(const wh_server *srv);

/* For tests and fuzzing only: serve fd, a connected stream socket (one end of
 * a socketpair, say), as if it had just been accepted, whatever the
 * connection limit. The server takes ownership of fd (made non-blocking) and
 * closes it with the connection. Returns 0, or -EINVAL once the server is
 * shutting down, or -errno (fd is then still the caller's). */
int wh_server_adopt(wh_server *srv, int fd);

/* Stop accepting; close idle connections; let in-flight requests finish
 * until cfg->shutdown_timeout_ms, then close the rest. done fires once every
 * connection is closed and the server is freed. */
void wh_server_shutdown(wh_server *srv, void (*done)(void *arg), void *arg);

/* Case-insensitive lookup; NULL when absent. */
const char *wh_req_header(const wh_req *req, const char *name);

/* Value of the first query parameter called name (compared as sent, not
 * decoded), percent-decoded into buf; a parameter without '=' has the value
 * "". NULL when there is none, when the value is longer than buflen - 1, or
 * when it decodes to a NUL byte: wh_req_query_has tells the last two from
 * the first, and a handler answers 400 for them rather than act as if the
 * parameter had not been sent. */
const char *wh_req_query(const wh_req *req, const char *name, char *buf, size_t buflen);

/* True when the query has a parameter called name, whatever its value. */
bool wh_req_query_has(const wh_req *req, const char *name);

/* A parameter that may repeat (?tag=a&tag=b): how many there are, and the
 * value of the nth (from 0), as wh_req_query gives the first. */
int wh_req_query_count(const wh_req *req, const char *name);
const char *wh_req_query_nth(const wh_req *req, const char *name, int nth, char *buf,
                             size_t buflen);

/* The Range header when it asks for one range of bytes (RFC 9110):
 * "bytes=a-b", "bytes=a-" (*end = -1), or a suffix "bytes=-n" (*start = -1,
 * *end = n). A reversed "bytes=a-b" with b < a is returned as it is: no
 * representation satisfies it, so wh_range_resolve refuses it and the
 * answer is a 416, not the whole representation. False when there is none
 * or it is not usable (several ranges, another unit, malformed): the whole
 * representation is the answer then. */
bool wh_req_range(const wh_req *req, int64_t *start, int64_t *end);

/* Resolve a range from wh_req_range against a size: true with the inclusive
 * [*a, *z], false when it cannot be satisfied (answer 416): it starts past
 * the end, is reversed, or is an empty suffix. */
bool wh_range_resolve(int64_t start, int64_t end, int64_t size, int64_t *a, int64_t *z);

/* A done hook, embedded by its owner (no allocation): fn runs once when the
 * request is over (response sent, or the connection gone), hooks in reverse
 * order of registration, before the request's memory (wh_req_alloc) is
 * freed. After it ran, nothing of req may be
 * touched. A hook may cancel another hook that has not run yet; one
 * registered while the hooks run runs too. The hook's memory must stay valid
 * until it has run or has been cancelled. */
typedef struct wh_req_hook wh_req_hook;
struct wh_req_hook {
	wh_list link; /* the request's; set by wh_req_on_done */
	void (*fn)(wh_req *req, wh_req_hook *hook);
};
void wh_req_on_done(wh_req *req, wh_req_hook *hook, void (*fn)(wh_req *req, wh_req_hook *hook));
/* Remove a hook that has not run (it will not run). No-op if not registered
 * any more (it ran, or was cancelled) or, in zeroed memory, never was. */
void wh_req_cancel_done(wh_req *req, wh_req_hook *hook);
/* Zeroed memory that lives as long as the request (freed after its done
 * hooks). Never NULL (aborts on OOM like wh_malloc). */
void *wh_req_alloc(wh_req *req, size_t size);

/* Start receiving the body; sends "100 Continue" when the client asked.
 * After wh_req_hold_body, what was parsed meanwhile is handed over first,
 * from the loop (never from inside this call). */
void wh_req_read_body(wh_req *req, wh_body_cb on_body, wh_req_cb on_body_end);

/* The handler returns before it knows whether it wants the body (a
 * password being checked in the thread pool): stop reading, and keep what
 * was already parsed of it, until wh_req_read_body (the body is wanted) or
 * a response (it is not, and is dropped as an unwanted body is). Without
 * this, a body not asked for while the handler's call ran is dropped. */
void wh_req_hold_body(wh_req *req);

/* Response. */
void wh_resp_start(wh_req *req, int status);
void wh_resp_header(wh_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void wh_resp_length(wh_req *req, int64_t len);
void wh_resp_write(wh_req *req, const void *data, size_t len);
/* Send len bytes of f from off (zero-copy on plain TCP). The connection
 * takes a reference to f, dropped when the range is sent or the connection
 * goes away; the caller keeps its own. Several requests may send from one
 * file, each range at its own pace. */
void wh_resp_send_file(wh_req *req, wh_file *f, int64_t off, int64_t len);
/* The same with a descriptor, whose ownership the connection takes: it is
 * closed when sent or when the connection goes away. */
void wh_resp_sendfile(wh_req *req, int fd, int64_t off, int64_t len);
void wh_resp_end(wh_req *req);
/* True while the send queue is below its high watermark: a producer should
 * write more only then, and otherwise wait for on_writable. */
bool wh_resp_can_write(const wh_req *req);
/* Drop the connection now, mid-response: the client sees the body cut. */
void wh_req_abort(wh_req *req);

/* The status the handler answered (0 before wh_resp_start). */
int wh_resp_status(const wh_req *req);

/* How long the request has taken so far, from its head's arrival, in the
 * loop's milliseconds (uv_now: the time of the loop's turn). */
uint64_t wh_req_duration_ms(const wh_req *req);

/* What every server of the process has done, together (for metrics).
 * Counted on the loop's thread; read it there. */
typedef struct wh_http_stats {
	int64_t connections;         /* open now, refused ones (503) included */
	uint64_t accepted;           /* connections accepted since start */
	uint64_t handshake_timeouts; /* a transport's handshake (TLS) ran out of time */
} wh_http_stats;
void wh_http_get_stats(wh_http_stats *out);

#endif
