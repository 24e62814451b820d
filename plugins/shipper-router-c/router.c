/* shipper-router in C: splits a confirmed sale order into one JSON delivery per shipper.
 * Behaviour, configuration and error messages are those of the Rust plugin
 * (plugins/shipper-router/README.md); the golden tests compare both, byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

typedef struct {
  json_str name, destination;
} rule;

typedef struct {
  rule *products, *routes;
  size_t product_count, route_count;
  bool has_default;
  json_str default_destination;
} rules;

static json_str str_of(plugin_str s) { return (json_str){s.ptr, s.len}; }
static plugin_str plugin_of(json_str s) { return (plugin_str){s.ptr, s.len}; }

static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static json_str trim(json_str s) {
  while (s.len && is_space(s.ptr[0])) s.ptr++, s.len--;
  while (s.len && is_space(s.ptr[s.len - 1])) s.len--;
  return s;
}

static bool starts_with(json_str s, const char *prefix, json_str *rest) {
  size_t n = strlen(prefix);
  if (s.len < n || memcmp(s.ptr, prefix, n) != 0) return false;
  *rest = (json_str){s.ptr + n, s.len - n};
  return true;
}

/* A string quoted the way the Rust plugin quotes it in messages (Rust's `{:?}`). */
static plugin_str debug_str(json_str s) {
  json_buf out = {0};
  json_buf_put(&out, "\"", 1);
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      json_buf_put(&out, e, 2);
    } else if (c == '\n') json_buf_put(&out, "\\n", 2);
    else if (c == '\r') json_buf_put(&out, "\\r", 2);
    else if (c == '\t') json_buf_put(&out, "\\t", 2);
    else if (c == 0) json_buf_put(&out, "\\0", 2);
    else if (c < 0x20 || c == 0x7f) {
      plugin_str u = plugin_format("\\u{%x}", c);
      json_buf_put(&out, u.ptr, u.len);
    } else json_buf_put(&out, (const char *)&c, 1);
  }
  json_buf_put(&out, "\"", 1);
  return (plugin_str){out.ptr, out.len};
}

static plugin_str invalid(plugin_pair entry, const char *reason) {
  plugin_str value = debug_str(str_of(entry.value));
  return plugin_format("config key `%.*s`: invalid value %.*s: %s", (int)entry.name.len, entry.name.ptr,
                       (int)value.len, value.ptr, reason);
}

/* Reads the rules from the configuration; false (and *message) when it cannot work. */
static bool read_rules(rules *out, plugin_str *message) {
  size_t count;
  const plugin_pair *entries = plugin_config_entries(&count);
  memset(out, 0, sizeof *out);
  out->products = malloc((count + 1) * sizeof(rule));
  out->routes = malloc((count + 1) * sizeof(rule));
  for (size_t i = 0; i < count; i++) { /* the host gives them sorted by key */
    json_str key = str_of(entries[i].name), destination = trim(str_of(entries[i].value)), name;
    if (destination.len == 0) {
      *message = invalid(entries[i], "the destination name is empty");
      return false;
    }
    rule *table;
    size_t *size;
    if (starts_with(key, "product.", &name)) {
      table = out->products, size = &out->product_count;
    } else if (starts_with(key, "route.", &name)) {
      table = out->routes, size = &out->route_count;
    } else if (json_str_eq(key, "default_destination")) {
      out->has_default = true;
      out->default_destination = destination;
      continue;
    } else {
      *message = invalid(entries[i], "unknown key: expected `product.<id or default_code>`, "
                                     "`route.<id or name>` or `default_destination`");
      return false;
    }
    name = trim(name);
    if (name.len == 0) {
      *message = invalid(entries[i], "the key names no product or route");
      return false;
    }
    size_t at = 0; /* a later key trimmed to the same name replaces the earlier one */
    while (at < *size && json_str_cmp(table[at].name, name) != 0) at++;
    table[at] = (rule){name, destination};
    if (at == *size) (*size)++;
  }
  if (!out->product_count && !out->route_count && !out->has_default) {
    *message = plugin_cstr("config key `route.*`, `product.*` or `default_destination` is required but not set");
    return false;
  }
  return true;
}

static const json_str *lookup(const rule *table, size_t count, json_str name) {
  for (size_t i = 0; i < count; i++) {
    if (json_str_cmp(table[i].name, name) == 0) return &table[i].destination;
  }
  return NULL;
}

/* A field's value when set (neither absent, false nor null). */
static const json_value *field(const json_value *record, const char *name) {
  const json_value *value = json_get(record, name);
  return json_is_set(value) ? value : NULL;
}

typedef struct {
  int64_t id;
  bool has_name;
  json_str name;
} many2one;

/* From `[id, "name"]`, `[id]` or a bare id. */
static bool read_many2one(const json_value *value, many2one *out) {
  out->has_name = false;
  if (!value) return false;
  if (json_int(value, &out->id)) return true;
  if (value->kind != JSON_ARRAY || value->count < 1 || value->count > 2 || !json_int(&value->items[0], &out->id))
    return false;
  if (value->count == 1) return true;
  const json_value *name = &value->items[1];
  if (name->kind == JSON_STRING) {
    out->has_name = true;
    out->name = name->text;
    return true;
  }
  return name->kind == JSON_FALSE || name->kind == JSON_NULL;
}

static json_str int_text(int64_t n) {
  plugin_str s = plugin_format("%lld", (long long)n);
  return str_of(s);
}

/* The product's internal reference: `default_code`, else the `[CODE]` prefix of its name. */
static bool default_code(const json_value *line, const many2one *product, json_str *out) {
  const json_value *code = field(line, "default_code");
  if (code && code->kind == JSON_STRING) {
    *out = code->text;
    return true;
  }
  if (!product->has_name || product->name.len == 0 || product->name.ptr[0] != '[') return false;
  const char *close = memchr(product->name.ptr, ']', product->name.len);
  if (!close || close == product->name.ptr + 1) return false;
  *out = (json_str){product->name.ptr + 1, (size_t)(close - product->name.ptr - 1)};
  return true;
}

static const json_str *destination_for(const rules *r, const json_value *line) {
  many2one product, route;
  json_str code;
  if (read_many2one(field(line, "product_id"), &product)) {
    const json_str *found = lookup(r->products, r->product_count, int_text(product.id));
    if (!found && default_code(line, &product, &code)) found = lookup(r->products, r->product_count, code);
    if (found) return found;
  }
  if (read_many2one(field(line, "route_id"), &route)) {
    const json_str *found = lookup(r->routes, r->route_count, int_text(route.id));
    if (!found && route.has_name) found = lookup(r->routes, r->route_count, route.name);
    if (found) return found;
  }
  return r->has_default ? &r->default_destination : NULL;
}

/* "line 31 ([FURN_8888] Office Lamp)", for error messages. */
static json_str describe(const json_value *line) {
  int64_t id;
  many2one product;
  const json_value *name = field(line, "name");
  json_str label = {"no product", 10};
  if (read_many2one(field(line, "product_id"), &product) && product.has_name) label = product.name;
  else if (name && name->kind == JSON_STRING) label = name->text;
  json_str id_text = json_int(field(line, "id"), &id) ? int_text(id) : (json_str){"?", 1};
  return str_of(plugin_format("line %.*s (%.*s)", (int)id_text.len, id_text.ptr, (int)label.len, label.ptr));
}

typedef struct {
  json_str destination;
  json_value lines; /* an array */
} shipment;

static int by_destination(const void *a, const void *b) {
  return json_str_cmp(((const shipment *)a)->destination, ((const shipment *)b)->destination);
}

static plugin_status reject(plugin_str *message, plugin_str text) {
  *message = text;
  return PLUGIN_REJECT;
}

static plugin_status route(const json_value *order, const rules *r, plugin_delivery **out, size_t *count,
                           plugin_str *message) {
  if (order->kind != JSON_OBJECT) return reject(message, plugin_cstr("payload is not a JSON object"));
  const json_value *lines = field(order, "order_line");
  if (!lines || lines->kind != JSON_ARRAY)
    return reject(message, plugin_cstr("the order has no `order_line` list of line records"));
  bool all_ids = true, all_records = true;
  int64_t id;
  for (size_t i = 0; i < lines->count; i++) {
    all_ids = all_ids && json_int(&lines->items[i], &id);
    all_records = all_records && lines->items[i].kind == JSON_OBJECT;
  }
  if (all_ids) {
    if (lines->count == 0) {
      *out = NULL, *count = 0;
      return PLUGIN_OK;
    }
    json_buf ids = {0};
    for (size_t i = 0; i < lines->count; i++) {
      json_int(&lines->items[i], &id);
      json_str text = int_text(id);
      if (i) json_buf_put(&ids, ", ", 2);
      json_buf_put(&ids, text.ptr, text.len);
    }
    return reject(message, plugin_format("`order_line` holds only ids [%.*s]: shipper-router needs the line "
                                         "records embedded in the payload (a richer Odoo payload or an "
                                         "enrichment step)",
                                         (int)ids.len, ids.ptr));
  }
  if (!all_records) return reject(message, plugin_cstr("the order has no `order_line` list of line records"));

  shipment *shipments = malloc((lines->count + 1) * sizeof *shipments);
  size_t shipment_count = 0;
  json_buf unmatched = {0};
  for (size_t i = 0; i < lines->count; i++) {
    const json_value *line = &lines->items[i];
    if (field(line, "display_type")) continue; /* a section or note line: nothing to ship */
    const json_str *destination = destination_for(r, line);
    if (!destination) {
      json_str text = describe(line);
      if (unmatched.len) json_buf_put(&unmatched, ", ", 2);
      json_buf_put(&unmatched, text.ptr, text.len);
      continue;
    }
    size_t s = 0;
    while (s < shipment_count && json_str_cmp(shipments[s].destination, *destination) != 0) s++;
    if (s == shipment_count) {
      shipments[s] = (shipment){*destination, {.kind = JSON_ARRAY, .items = malloc(lines->count * sizeof(json_value))}};
      shipment_count++;
    }
    shipments[s].lines.items[shipments[s].lines.count++] = *line;
  }
  if (unmatched.len) {
    return reject(message, plugin_format("no shipper for %.*s: add a `product.*` or `route.*` rule or set "
                                         "`default_destination`",
                                         (int)unmatched.len, unmatched.ptr));
  }
  qsort(shipments, shipment_count, sizeof *shipments, by_destination);
  plugin_delivery *deliveries = malloc((shipment_count + 1) * sizeof *deliveries);
  for (size_t s = 0; s < shipment_count; s++) {
    json_value part = *order; /* the order as received, with only this shipper's lines */
    part.items = malloc(order->count * sizeof(json_value));
    memcpy(part.items, order->items, order->count * sizeof(json_value));
    for (size_t k = 0; k < part.count; k++) {
      if (json_str_eq(part.keys[k], "order_line")) part.items[k] = shipments[s].lines;
    }
    json_buf body = {0};
    json_write(&body, &part);
    deliveries[s] = (plugin_delivery){plugin_of(shipments[s].destination), plugin_cstr("application/json"),
                                      (const uint8_t *)body.ptr, body.len, NULL, 0, false, {NULL, 0}};
  }
  *out = deliveries;
  *count = shipment_count;
  return PLUGIN_OK;
}

plugin_status plugin_handle(const plugin_event *event, plugin_delivery **deliveries, size_t *count,
                            plugin_str *message) {
  rules r;
  if (!read_rules(&r, message)) return PLUGIN_INVALID_CONFIG;
  if (!json_str_eq(str_of(event->model), "sale.order")) {
    plugin_log(PLUGIN_DEBUG, plugin_format("event %.*s: nothing to route", (int)event->id.len, event->id.ptr));
    *deliveries = NULL, *count = 0;
    return PLUGIN_OK;
  }
  json_value order;
  const char *error;
  if (!json_parse(event->payload.ptr, event->payload.len, &order, &error)) {
    return reject(message, plugin_format("payload is not valid JSON: %s", error));
  }
  return route(&order, &r, deliveries, count, message);
}

bool plugin_validate_config(plugin_str *message) {
  rules r;
  return read_rules(&r, message);
}
