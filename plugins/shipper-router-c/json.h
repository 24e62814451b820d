/* A small JSON reader and writer for plugins: values as a tree, strings decoded, numbers kept
 * as written (so an integer stays an integer and 2.0 stays 2.0), objects with their keys in
 * order. Output is compact with sorted keys, escaped as serde_json escapes, integers as written
 * and floats as serde_json writes them (`1e2` is `100.0`). Nothing is freed: a plugin call's
 * instance is thrown away afterwards. */
#ifndef PLUGIN_JSON_H
#define PLUGIN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_value json_value;

typedef struct {
  const char *ptr;
  size_t len;
} json_str;

struct json_value {
  json_kind kind;
  json_str text;       /* a string's decoded UTF-8, a number as written */
  size_t count;        /* items of an array or members of an object */
  json_value *items;   /* array items, object member values */
  json_str *keys;      /* object member names */
};

/* Parses `text`; on error returns false and sets *error to a message. */
bool json_parse(const char *text, size_t len, json_value *out, const char **error);

/* The member `name` of an object, or NULL. */
const json_value *json_get(const json_value *object, const char *name);
/* Whether a value is set in Odoo's sense: neither false nor null (nor absent). */
bool json_is_set(const json_value *value);
/* The integer a number stands for, when it is one within int64. */
bool json_int(const json_value *value, int64_t *out);
bool json_str_eq(json_str a, const char *b);
int json_str_cmp(json_str a, json_str b);

/* Appends compact JSON with sorted keys to a growing buffer. */
typedef struct {
  char *ptr;
  size_t len, cap;
} json_buf;
void json_write(json_buf *out, const json_value *value);
void json_buf_put(json_buf *out, const char *bytes, size_t len);

#endif
