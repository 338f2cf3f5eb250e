/* An intrusive, circular, doubly linked list, as libuv's queue and nginx's
 * ngx_queue_t: the links live inside the element (a wh_list member), the
 * list's head is a wh_list of its own, and no operation allocates or fails.
 *
 *     struct job { wh_list link; ... };
 *     wh_list jobs;                        wh_list_init(&jobs);
 *     wh_list_insert_tail(&jobs, &j->link);
 *     wh_list_foreach_safe(l, next, &jobs) {
 *             struct job *j = wh_list_entry(l, struct job, link);
 *             ...may wh_list_remove(l)...
 *     }
 *
 * An element's link is either in a list or "unlinked" (pointing at itself,
 * after wh_list_init or wh_list_remove), so removing twice is harmless and
 * wh_list_linked says which. */
#ifndef WHARF_LIST_H
#define WHARF_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wh_list {
	struct wh_list *prev, *next;
} wh_list;

static inline void wh_list_init(wh_list *l)
{
	l->prev = l->next = l;
}

/* For a head: no element. For an element: not in a list. */
static inline bool wh_list_empty(const wh_list *l)
{
	return l->next == l;
}

static inline bool wh_list_linked(const wh_list *l)
{
	return l->next != l;
}

static inline void wh_list_insert_after(wh_list *at, wh_list *l)
{
	l->prev = at;
	l->next = at->next;
	at->next->prev = l;
	at->next = l;
}

static inline void wh_list_insert_head(wh_list *head, wh_list *l)
{
	wh_list_insert_after(head, l);
}

static inline void wh_list_insert_tail(wh_list *head, wh_list *l)
{
	wh_list_insert_after(head->prev, l);
}

static inline void wh_list_remove(wh_list *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	wh_list_init(l);
}

/* How many elements head holds (walks the list). */
static inline size_t wh_list_count(const wh_list *head)
{
	size_t n = 0;
	for (const wh_list *l = head->next; l != head; l = l->next)
		n++;
	return n;
}

/* First and last element; the head itself when empty. */
#define wh_list_first(head) ((head)->next)
#define wh_list_last(head)  ((head)->prev)

/* The element a link is in. */
#define wh_list_entry(link, type, member) ((type *)(void *)((char *)(link)-offsetof(type, member)))

/* Every link of head, in order; the current one may be removed. */
#define wh_list_foreach_safe(l, nx, head)                                                          \
	for (wh_list *l = (head)->next, *nx = l->next; l != (head); l = nx, nx = l->next)

#endif
