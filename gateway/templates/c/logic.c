/* The plugin's logic: keeps sale.order events whose amount_total is at least the
 * subscription's min_amount_total and delivers {"amount_total","id","name"}, keyed by customer:
 * on a subscription with `ordering`, one customer's summaries are delivered in order. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "plugin.h"

static bool min_amount_total(double *out, plugin_str *message) {
  size_t count;
  const plugin_pair *entries = plugin_config_entries(&count);
  *out = 0;
  for (size_t i = 0; i < count; i++) {
    if (entries[i].name.len == 16 && memcmp(entries[i].name.ptr, "min_amount_total", 16) == 0) {
      char *text = plugin_format("%.*s", (int)entries[i].value.len, entries[i].value.ptr).ptr, *end;
      *out = strtod(text, &end);
      if (end == text || *end != '\0') {
        *message = plugin_format("config key `min_amount_total`: \"%s\" is not a number", text);
        return false;
      }
    }
  }
  return true;
}

plugin_status plugin_handle(const plugin_event *event, plugin_delivery **deliveries, size_t *count,
                            plugin_str *message) {
  double minimum;
  if (!min_amount_total(&minimum, message)) return PLUGIN_INVALID_CONFIG;
  *deliveries = NULL, *count = 0;
  if (event->model.len != 10 || memcmp(event->model.ptr, "sale.order", 10) != 0) return PLUGIN_OK;
  json_value order;
  const char *error;
  if (!json_parse(event->payload.ptr, event->payload.len, &order, &error)) {
    *message = plugin_format("payload is not valid JSON: %s", error);
    return PLUGIN_REJECT;
  }
  const json_value *total = json_get(&order, "amount_total"), *id = json_get(&order, "id"),
                   *name = json_get(&order, "name");
  double amount = total && total->kind == JSON_NUMBER ? strtod(plugin_format("%.*s", (int)total->text.len, total->text.ptr).ptr, NULL) : 0;
  if (amount < minimum) {
    plugin_log(PLUGIN_DEBUG, plugin_format("event %.*s filtered out", (int)event->id.len, event->id.ptr));
    return PLUGIN_OK;
  }
  json_value summary = {.kind = JSON_OBJECT, .count = 0};
  json_str keys[3];
  json_value items[3];
  const char *names[3] = {"amount_total", "id", "name"};
  const json_value *values[3] = {total, id, name};
  for (int i = 0; i < 3; i++) {
    if (!values[i]) continue;
    keys[summary.count] = (json_str){names[i], strlen(names[i])};
    items[summary.count++] = *values[i];
  }
  summary.keys = keys, summary.items = items;
  json_buf body = {0};
  json_write(&body, &summary);
  plugin_delivery *one = malloc(sizeof *one);
  *one = (plugin_delivery){{"", 0}, plugin_cstr("application/json"), (const uint8_t *)body.ptr, body.len, NULL, 0, false, {NULL, 0}};
  /* partner_id is [id, "name"] (or a bare id); false when the order has none. */
  const json_value *partner = json_get(&order, "partner_id");
  if (partner && partner->kind == JSON_ARRAY && partner->count > 0) partner = &partner->items[0];
  int64_t customer;
  if (partner && json_int(partner, &customer)) {
    one->has_ordering_key = true;
    one->ordering_key = plugin_format("customer-%lld", (long long)customer);
  }
  *deliveries = one, *count = 1;
  return PLUGIN_OK;
}

bool plugin_validate_config(plugin_str *message) {
  double minimum;
  return min_amount_total(&minimum, message);
}
