/* Canonical ABI glue for the odoo-gateway plugin world, version 0.2.0 (wit/v0.2/plugin.wit):
 * lifts the exports' arguments into plugin.h's types and lowers their results. `odoo-gateway
 * plugin componentize` (or xtask) embeds the world of the version the imports below name and
 * wraps the module into a component.
 *
 * Layouts (canonical ABI, 32-bit): a string or list is (ptr, len); a delivery is four of them,
 * then its option<string> ordering key: a tag byte at 32 and the string at 36 (44 bytes);
 * result<list<delivery>, plugin-error> is a tag byte at 0, then either the list at 4 or the
 * error's case byte at 4 and its string at 8. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

__attribute__((import_module("odoo-gateway:plugin/log@0.2.0"), import_name("log"))) extern void
host_log(int32_t level, const char *ptr, size_t len);

__attribute__((import_module("odoo-gateway:plugin/config@0.2.0"), import_name("entries"))) extern void
host_config_entries(void *ret);

__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align,
                                                                 size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  void *out = realloc(ptr, new_size);
  if (!out) abort();
  return out;
}

void plugin_log(plugin_level level, plugin_str message) { host_log((int32_t)level, message.ptr, message.len); }

const plugin_pair *plugin_config_entries(size_t *count) {
  struct {
    const plugin_pair *ptr;
    size_t len;
  } ret;
  host_config_entries(&ret);
  *count = ret.len;
  return ret.ptr;
}

plugin_str plugin_cstr(const char *text) { return (plugin_str){text, strlen(text)}; }

plugin_str plugin_format(const char *format, ...) {
  va_list args;
  va_start(args, format);
  int len = vsnprintf(NULL, 0, format, args);
  va_end(args);
  char *buf = malloc((size_t)len + 1);
  va_start(args, format);
  vsnprintf(buf, (size_t)len + 1, format, args);
  va_end(args);
  return (plugin_str){buf, (size_t)len};
}

/* The lowered result of `handle`; its address is what the export returns. */
static struct {
  uint8_t tag;
  union {
    struct {
      const plugin_delivery *ptr;
      size_t len;
    } ok;
    struct {
      uint8_t kind;
      plugin_str message;
    } err;
  } u;
} handle_ret;

_Static_assert(sizeof(plugin_delivery) == 44, "a delivery is four (ptr, len) pairs and an option");
_Static_assert(offsetof(plugin_delivery, has_ordering_key) == 32, "the option's tag");
_Static_assert(offsetof(plugin_delivery, ordering_key) == 36, "the option's string");
_Static_assert(sizeof(plugin_pair) == 16, "a header is two strings");

__attribute__((export_name("handle"))) void *export_handle(const char *id, size_t id_len, const char *source,
                                                         size_t source_len, const char *model, size_t model_len,
                                                         const char *action, size_t action_len,
                                                         int32_t has_record_id, int64_t record_id,
                                                         int64_t received_at_ms, const char *payload,
                                                         size_t payload_len, const plugin_pair *headers,
                                                         size_t header_count) {
  plugin_event event = {
      .id = {id, id_len},
      .source = {source, source_len},
      .model = {model, model_len},
      .action = {action, action_len},
      .has_record_id = has_record_id != 0,
      .record_id = record_id,
      .received_at_ms = (uint64_t)received_at_ms,
      .payload = {payload, payload_len},
      .headers = headers,
      .header_count = header_count,
  };
  plugin_delivery *deliveries = NULL;
  size_t count = 0;
  plugin_str message = {"", 0};
  plugin_status status = plugin_handle(&event, &deliveries, &count, &message);
  if (status == PLUGIN_OK) {
    handle_ret.tag = 0;
    handle_ret.u.ok.ptr = deliveries;
    handle_ret.u.ok.len = count;
  } else {
    handle_ret.tag = 1;
    handle_ret.u.err.kind = (uint8_t)status;
    handle_ret.u.err.message = message;
  }
  return &handle_ret;
}

static struct {
  uint8_t tag;
  plugin_str message;
} validate_ret;

__attribute__((export_name("validate-config"))) void *export_validate_config(void) {
  plugin_str message = {"", 0};
  validate_ret.tag = plugin_validate_config(&message) ? 0 : 1;
  validate_ret.message = message;
  return &validate_ret;
}
