/* A file shared by whoever sends from it: a descriptor with a count of
 * references, closed when the last one goes. The tee's temp file is one: the
 * fetch holds a reference and every range queued to a client holds another,
 * so a client's send queue may outlive the fetch, and no range costs a
 * dup(). One loop, one thread: the count is not atomic. */
#ifndef WHARF_FILE_H
#define WHARF_FILE_H

typedef struct wh_file wh_file;

/* Take fd, an open descriptor: it is closed with the last reference. The
 * caller holds the one reference there is. Never NULL. */
wh_file *wh_file_new(int fd);

/* Another reference to f; returns f. */
wh_file *wh_file_ref(wh_file *f);

/* Drop a reference; the last one closes the descriptor. NULL: nothing. */
void wh_file_unref(wh_file *f);

/* The descriptor, valid while the caller holds a reference. */
int wh_file_fd(const wh_file *f);

#endif
