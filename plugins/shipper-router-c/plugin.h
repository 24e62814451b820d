/* The odoo-gateway plugin world, version 0.2.0 (wit/v0.2/plugin.wit), for C: the types a plugin sees, the two
 * functions it implements, and the host functions it may call. plugin.c holds the canonical
 * ABI glue behind them; a plugin includes this header and never deals with the ABI.
 *
 * Memory: every call runs in a fresh instance that is thrown away afterwards, so a plugin may
 * allocate with malloc and never free. */
#ifndef ODOO_GATEWAY_PLUGIN_H
#define ODOO_GATEWAY_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* UTF-8 text, not NUL-terminated. */
typedef struct {
  const char *ptr;
  size_t len;
} plugin_str;

typedef struct {
  plugin_str name, value;
} plugin_pair;

typedef struct {
  plugin_str id, source, model, action;
  bool has_record_id;
  int64_t record_id;
  uint64_t received_at_ms;
  plugin_str payload; /* the record as JSON text */
  const plugin_pair *headers;
  size_t header_count;
} plugin_event;

typedef struct {
  plugin_str destination, content_type;
  const uint8_t *body;
  size_t body_len;
  const plugin_pair *headers;
  size_t header_count;
  /* For a subscription with `ordering`: the key this delivery is ordered by, instead of the
   * event's (at most 256 bytes). Left zero, the delivery takes its event's key: build a
   * delivery with a compound literal or calloc, so that has_ordering_key is never garbage. */
  bool has_ordering_key;
  plugin_str ordering_key;
} plugin_delivery;

typedef enum { PLUGIN_OK = -1, PLUGIN_REJECT = 0, PLUGIN_RETRY = 1, PLUGIN_INVALID_CONFIG = 2 } plugin_status;

typedef enum { PLUGIN_TRACE, PLUGIN_DEBUG, PLUGIN_INFO, PLUGIN_WARN, PLUGIN_ERROR } plugin_level;

/* Implemented by the plugin. On success `handle` sets *deliveries (malloc'd) and *count and
 * returns PLUGIN_OK; otherwise it sets *message and returns the error's kind. */
plugin_status plugin_handle(const plugin_event *event, plugin_delivery **deliveries, size_t *count,
                            plugin_str *message);
/* Returns true when the configuration can work; otherwise sets *message. */
bool plugin_validate_config(plugin_str *message);

/* Provided by the gateway. */
void plugin_log(plugin_level level, plugin_str message);
/* Every (key, value) pair of the subscription's configuration, sorted by key. */
const plugin_pair *plugin_config_entries(size_t *count);

/* Helpers. */
plugin_str plugin_cstr(const char *text);
/* printf into a fresh buffer. */
plugin_str plugin_format(const char *format, ...) __attribute__((format(printf, 1, 2)));

#endif
