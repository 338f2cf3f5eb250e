#include "wharf/base/file.h"

#include <stdlib.h>
#include <unistd.h>

#include "wharf/base/common.h"

struct wh_file {
	int fd;
	int refs;
};

wh_file *wh_file_new(int fd)
{
	wh_file *f = wh_malloc(sizeof(*f));
	f->fd = fd;
	f->refs = 1;
	return f;
}

wh_file *wh_file_ref(wh_file *f)
{
	f->refs++;
	return f;
}

void wh_file_unref(wh_file *f)
{
	if (!f || --f->refs > 0)
		return;
	close(f->fd);
	free(f);
}

int wh_file_fd(const wh_file *f)
{
	return f->fd;
}
