/* What the access phase parses from outside, white-box (the .c is included
 * to reach its static functions): the htpasswd file as it is read at start
 * and on SIGHUP (load_users), and a client's Authorization header
 * (parse_basic). No password is hashed: crypt_r is the library's.
 *
 * Input: one byte whose low bit picks the parser, then its bytes. */
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

#include "../../src/ext/auth.c"

/* The htpasswd file, read from a file as the server does. */
static void htpasswd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("htpasswd", MFD_CLOEXEC);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	struct user *u = NULL;
	int n = -1;
	FUZZ_ASSERT(load_users(path, &u, &n) == 0);
	FUZZ_ASSERT(n >= 0 && (n == 0 || u));
	for (int i = 0; i < n; i++) {
		/* Split at the first ':', line ends gone; the hash judged by its
		 * prefix alone. */
		FUZZ_ASSERT(!strchr(u[i].name, ':'));
		FUZZ_ASSERT(!strpbrk(u[i].hash, "\n"));
		FUZZ_ASSERT(u[i].supported == hash_supported(u[i].hash));
	}
	users_free(u, n);
	close(fd);
}

/* An Authorization header's value. */
static void basic(const uint8_t *data, size_t size)
{
	char *h = fuzz_strndup(data, size);
	char buf[256], *user = NULL, *pass = NULL;
	memset(buf, 0x5a, sizeof(buf));
	int rc = parse_basic(h, buf, sizeof(buf), &user, &pass);
	FUZZ_ASSERT(rc >= -1 && rc <= 1);
	if (rc >= 0) {
		/* Both inside the buffer, terminated, the user without ':'. */
		FUZZ_ASSERT(user == buf && pass > user && pass < buf + sizeof(buf));
		FUZZ_ASSERT(memchr(pass, '\0', (size_t)(buf + sizeof(buf) - pass)));
		FUZZ_ASSERT(!strchr(user, ':'));
		FUZZ_ASSERT(rc == ((*user || *pass) ? 1 : 0));
	}
	free(h);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	wh_log_setup(WH_LOG_OFF, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		basic(data + 1, size - 1);
	else
		htpasswd(data + 1, size - 1);
	return 0;
}
