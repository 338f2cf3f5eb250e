/* YAML configuration files, as Zot reads them (viper, go-yaml): the document
 * is turned into the same cJSON tree a JSON file gives, and the config
 * engine walks that. libyaml parses; this maps its events:
 *
 *   mapping -> object (keys are scalars), sequence -> array;
 *   a plain scalar: null ("", "~", "null"), true/false (any case), an
 *     integer (decimal, 0x hex, 0o octal) or a float -> number, anything
 *     else a string; a quoted or block scalar is always a string;
 *   aliases are expanded (copies of the anchored node), within a bound on
 *     the tree's size (a "billion laughs" file fails instead of growing).
 *
 * One document per file: a second one, or a tag other than the core
 * schema's, is an error with its line and column. */
#ifndef WHARF_YAML_H
#define WHARF_YAML_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Nodes a document may expand to, aliases included. */
#define WH_YAML_NODES_MAX 100000

/* Parse text into *out (free with cJSON_Delete). Returns 0, or WH_EINVAL
 * with a message ("mapping values are not allowed here at line 3, column
 * 9") in err. */
int wh_yaml_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen);

#endif
