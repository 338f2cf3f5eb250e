/* GET /v2/_zot/ext/mgmt: the configuration, stripped, that zui reads before
 * anything else to know how to log in (zot-reference.md §9):
 *
 *   {"distSpecVersion": ..., "commit": "", "releaseTag": <Wharf's version>,
 *    "binaryType": "", "http": {"auth": {...}}}
 *
 * where auth is {} without authentication (zui then skips its login page)
 * and {"htpasswd": {}} with an htpasswd file (its path stripped). As Zot,
 * it is served only when search is enabled (404 otherwise), answers GET
 * only, and needs no credentials: the UI asks before it has any. */
#ifndef WHARF_MGMT_H
#define WHARF_MGMT_H

#include "wharf/ext/module.h"

/* Its settings are search's (search.h: enable, the distSpecVersion). It
 * asks the auth module whether passwords are checked. */
extern const wh_module wh_mgmt_module;

#endif
