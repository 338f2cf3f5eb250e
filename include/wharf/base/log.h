/* Logging: one JSON object per line, as Zot writes them:
 *   {"time":"2026-11-28T12:00:00.123Z","level":"info","message":"...", <fields>}
 *
 * Fields are given as a NULL-terminated list of (key, type, value) triples:
 *   wh_log(WH_LOG_INFO, "request", "method", WH_LS, "GET", "status", WH_LI, 200L, NULL);
 * WH_LS takes a const char * (NULL prints null), WH_LI a long long, WH_LB an int (bool). */
#ifndef WHARF_LOG_H
#define WHARF_LOG_H

#include "wharf/base/conf.h"

enum { WH_LOG_DEBUG, WH_LOG_INFO, WH_LOG_WARN, WH_LOG_ERROR, WH_LOG_OFF };
enum { WH_LS = 1, WH_LI, WH_LB };

/* The `log` section of the config. */
typedef struct wh_log_settings {
	int level;    /* WH_LOG_*; default info (Zot's is debug) */
	char *output; /* NULL: stderr; else a file path, appended */
	char *audit;  /* parsed; not implemented (a warning) */
} wh_log_settings;

extern const wh_conf_key wh_log_keys[];
void wh_log_settings_init(wh_log_settings *s);
void wh_log_settings_free(wh_log_settings *s);

/* Parse "debug", "info", "warn", "error" (Zot's names; "warning" and
 * "fatal"/"panic" too). Returns the level or -1. */
int wh_log_level_parse(const char *s);

/* Set the threshold and the output: NULL or "" for stderr, else a file opened
 * for append. Returns 0 or -errno (the previous output stays). */
int wh_log_setup(int level, const char *path);

/* Open path again (logrotate moved the file away; SIGHUP says so) in place
 * of the output file, so that lines go to the new file from now on. Safe
 * while other threads log. Nothing to do when logging to stderr. Returns 0
 * or -errno (the old file stays). */
int wh_log_reopen(const char *path);

/* The threshold from now on (SIGHUP). */
void wh_log_set_level(int level);

int wh_log_enabled(int level);

void wh_log(int level, const char *message, ...);

#endif
