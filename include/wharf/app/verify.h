/* What `wharf verify` checks beyond the config text: that `wharf serve`
 * would start with it. Every file the config names must exist and parse
 * (http.tls's cert, key and CA, the htpasswd file, the sync credentialsFile,
 * each registry's certDir), log.output must be writable, http.address must
 * resolve, and rootDirectory must be a writable directory or creatable.
 * Nothing is created or changed: the checks only read and ask access(2). */
#ifndef WHARF_VERIFY_H
#define WHARF_VERIFY_H

#include "wharf/app/config.h"

/* Every problem found, one line each ("key.path: what"), into a malloc'd
 * array of malloc'd strings (*problems, *n; free with wh_strv_free). Returns
 * the number of problems. reload: for a running server's SIGHUP, on its
 * loop: http.address is not resolved (it may block on DNS, and the address
 * only changes with a restart anyway). */
int wh_verify_runtime(const wh_config *cfg, bool reload, char ***problems, int *n);

#endif
