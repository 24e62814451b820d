/* See json.h. */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *at, *end;
  const char *error;
} reader;

static void space(reader *r) {
  while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r')) r->at++;
}

static bool fail(reader *r, const char *what) {
  if (!r->error) r->error = what;
  return false;
}

static void put_utf8(char *out, size_t *len, uint32_t cp) {
  if (cp < 0x80) {
    out[(*len)++] = (char)cp;
  } else if (cp < 0x800) {
    out[(*len)++] = (char)(0xC0 | (cp >> 6));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out[(*len)++] = (char)(0xE0 | (cp >> 12));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  } else {
    out[(*len)++] = (char)(0xF0 | (cp >> 18));
    out[(*len)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[(*len)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[(*len)++] = (char)(0x80 | (cp & 0x3F));
  }
}

static bool hex4(reader *r, uint32_t *out) {
  if (r->end - r->at < 4) return fail(r, "truncated \\u escape");
  *out = 0;
  for (int i = 0; i < 4; i++) {
    char c = *r->at++;
    uint32_t d = (c >= '0' && c <= '9') ? (uint32_t)(c - '0')
                 : (c >= 'a' && c <= 'f') ? (uint32_t)(c - 'a' + 10)
                 : (c >= 'A' && c <= 'F') ? (uint32_t)(c - 'A' + 10)
                                          : 99;
    if (d == 99) return fail(r, "invalid \\u escape");
    *out = *out * 16 + d;
  }
  return true;
}

static bool string(reader *r, json_str *out) {
  r->at++; /* the opening quote */
  char *buf = malloc((size_t)(r->end - r->at) + 1);
  size_t len = 0;
  while (r->at < r->end && *r->at != '"') {
    unsigned char c = (unsigned char)*r->at++;
    if (c < 0x20) return fail(r, "control character in a string");
    if (c != '\\') {
      buf[len++] = (char)c;
      continue;
    }
    if (r->at >= r->end) break;
    char e = *r->at++;
    switch (e) {
      case '"': buf[len++] = '"'; break;
      case '\\': buf[len++] = '\\'; break;
      case '/': buf[len++] = '/'; break;
      case 'b': buf[len++] = '\b'; break;
      case 'f': buf[len++] = '\f'; break;
      case 'n': buf[len++] = '\n'; break;
      case 'r': buf[len++] = '\r'; break;
      case 't': buf[len++] = '\t'; break;
      case 'u': {
        uint32_t cp, low;
        if (!hex4(r, &cp)) return false;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(r, "lone trailing surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (r->end - r->at < 6 || r->at[0] != '\\' || r->at[1] != 'u') return fail(r, "lone leading surrogate");
          r->at += 2;
          if (!hex4(r, &low) || low < 0xDC00 || low > 0xDFFF) return fail(r, "invalid surrogate pair");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        put_utf8(buf, &len, cp);
        break;
      }
      default: return fail(r, "invalid escape");
    }
  }
  if (r->at >= r->end) return fail(r, "unterminated string");
  r->at++;
  *out = (json_str){buf, len};
  return true;
}

static bool value(reader *r, json_value *out, int depth);

static bool items(reader *r, json_value *out, bool object, int depth) {
  char close = object ? '}' : ']';
  size_t cap = 4;
  r->at++;
  out->count = 0;
  out->items = malloc(cap * sizeof *out->items);
  out->keys = object ? malloc(cap * sizeof *out->keys) : NULL;
  space(r);
  if (r->at < r->end && *r->at == close) {
    r->at++;
    return true;
  }
  for (;;) {
    if (out->count == cap) {
      cap *= 2;
      out->items = realloc(out->items, cap * sizeof *out->items);
      if (object) out->keys = realloc(out->keys, cap * sizeof *out->keys);
    }
    space(r);
    if (object) {
      if (r->at >= r->end || *r->at != '"') return fail(r, "expected a key");
      if (!string(r, &out->keys[out->count])) return false;
      space(r);
      if (r->at >= r->end || *r->at++ != ':') return fail(r, "expected `:`");
    }
    if (!value(r, &out->items[out->count], depth + 1)) return false;
    out->count++;
    space(r);
    if (r->at < r->end && *r->at == ',') {
      r->at++;
    } else if (r->at < r->end && *r->at == close) {
      r->at++;
      return true;
    } else {
      return fail(r, object ? "expected `,` or `}`" : "expected `,` or `]`");
    }
  }
}

static bool literal(reader *r, const char *word, json_kind kind, json_value *out) {
  size_t n = strlen(word);
  if ((size_t)(r->end - r->at) < n || memcmp(r->at, word, n) != 0) return fail(r, "unexpected character");
  r->at += n;
  out->kind = kind;
  return true;
}

static bool digits(reader *r) {
  const char *start = r->at;
  while (r->at < r->end && *r->at >= '0' && *r->at <= '9') r->at++;
  return r->at > start;
}

static bool number(reader *r, json_value *out) {
  const char *start = r->at;
  if (*r->at == '-') r->at++;
  if (r->at < r->end && *r->at == '0') {
    r->at++;
  } else if (!digits(r)) {
    return fail(r, "unexpected character");
  }
  if (r->at < r->end && *r->at == '.') {
    r->at++;
    if (!digits(r)) return fail(r, "invalid number");
  }
  if (r->at < r->end && (*r->at == 'e' || *r->at == 'E')) {
    r->at++;
    if (r->at < r->end && (*r->at == '+' || *r->at == '-')) r->at++;
    if (!digits(r)) return fail(r, "invalid number");
  }
  out->kind = JSON_NUMBER;
  out->text = (json_str){start, (size_t)(r->at - start)};
  return true;
}

static bool value(reader *r, json_value *out, int depth) {
  memset(out, 0, sizeof *out);
  if (depth > 128) return fail(r, "nested too deeply");
  space(r);
  if (r->at >= r->end) return fail(r, "unexpected end of input");
  switch (*r->at) {
    case '{': out->kind = JSON_OBJECT; return items(r, out, true, depth);
    case '[': out->kind = JSON_ARRAY; return items(r, out, false, depth);
    case '"': out->kind = JSON_STRING; return string(r, &out->text);
    case 't': return literal(r, "true", JSON_TRUE, out);
    case 'f': return literal(r, "false", JSON_FALSE, out);
    case 'n': return literal(r, "null", JSON_NULL, out);
    default: return number(r, out);
  }
}

bool json_parse(const char *text, size_t len, json_value *out, const char **error) {
  reader r = {text, text + len, NULL};
  bool ok = value(&r, out, 0);
  space(&r);
  if (ok && r.at != r.end) ok = fail(&r, "trailing characters");
  if (!ok) *error = r.error;
  return ok;
}

bool json_str_eq(json_str a, const char *b) { return a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0; }

int json_str_cmp(json_str a, json_str b) {
  int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
  return c != 0 ? c : (a.len > b.len) - (a.len < b.len);
}

const json_value *json_get(const json_value *object, const char *name) {
  if (!object || object->kind != JSON_OBJECT) return NULL;
  for (size_t i = 0; i < object->count; i++) {
    if (json_str_eq(object->keys[i], name)) return &object->items[i];
  }
  return NULL;
}

bool json_is_set(const json_value *value) {
  return value && value->kind != JSON_NULL && value->kind != JSON_FALSE;
}

bool json_int(const json_value *value, int64_t *out) {
  if (!value || value->kind != JSON_NUMBER) return false;
  const char *p = value->text.ptr, *end = p + value->text.len;
  bool negative = *p == '-';
  if (negative) p++;
  uint64_t n = 0, limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9') return false; /* a fraction or an exponent: not an integer */
    uint64_t d = (uint64_t)(*p - '0');
    if (n > (limit - d) / 10) return false;
    n = n * 10 + d;
  }
  *out = negative ? (int64_t)(0 - n) : (int64_t)n;
  return true;
}

void json_buf_put(json_buf *out, const char *bytes, size_t len) {
  if (out->len + len > out->cap) {
    out->cap = (out->len + len) * 2 + 64;
    out->ptr = realloc(out->ptr, out->cap);
  }
  memcpy(out->ptr + out->len, bytes, len);
  out->len += len;
}

static void write_string(json_buf *out, json_str s) {
  static const char hex[] = "0123456789abcdef";
  json_buf_put(out, "\"", 1);
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    const char *escape = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                       : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
    if (escape) {
      json_buf_put(out, escape, 2);
    } else if (c < 0x20) {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      json_buf_put(out, u, 6);
    } else {
      json_buf_put(out, (const char *)&c, 1);
    }
  }
  json_buf_put(out, "\"", 1);
}

/* Whether a float as written is already what serde_json writes: positional, no exponent, no
 * trailing zero after the point (one "0" for an integral value), at most 15 significant digits
 * (so the shortest that reads back the same), between 1e-5 and 1e16. Most floats in Odoo
 * payloads are (`2.0`, `1184.5`), and they are copied as they are. */
static bool canonical_float(json_str text) {
  const char *p = text.ptr, *end = p + text.len, *point = memchr(p, '.', text.len);
  if (!point || memchr(p, 'e', text.len) || memchr(p, 'E', text.len)) return false;
  if (*p == '-') p++;
  const char *last = end - 1;
  if (*last == '0' && last != point + 1) return false;
  size_t whole = (size_t)(point - p), significant = 0, leading = 0;
  bool seen = false;
  for (const char *c = p; c < end; c++) {
    if (c == point) continue;
    if (*c != '0') seen = true;
    if (seen) significant++;
    else if (c > point) leading++;
  }
  /* An integral value's digits end with the "0" after the point, and maybe more zeros. */
  if (last == point + 1) {
    for (const char *c = point - 1; c >= p && *c == '0' && significant > 0; c--) significant--;
    if (significant > 0) significant--;
  }
  if (significant > 15) return false;
  if (whole == 1 && *p == '0') return leading <= 4 || !seen; /* 0.0000x, or zero */
  return whole <= 16;
}

/* A float as serde_json writes it: the shortest digits that read back the same (found by asking
 * printf for more digits until they do), positional from 1e-5 up to 1e16 with at least one
 * decimal, else `<digits>e<exponent>`. */
static void write_float(json_buf *out, double value) {
  char text[40], digits[24];
  int n = 0, exponent = 0;
  if (value == 0) {
    json_buf_put(out, signbit(value) ? "-0.0" : "0.0", signbit(value) ? 4 : 3);
    return;
  }
  if (!isfinite(value)) { /* beyond a double (1e400): serde_json refuses it; no number here */
    json_buf_put(out, "null", 4);
    return;
  }
  for (int precision = 1; precision <= 17; precision++) {
    snprintf(text, sizeof text, "%.*e", precision - 1, value);
    if (strtod(text, NULL) == value) break;
  }
  /* text is [-]d[.ddd]e[+-]xx */
  const char *c = text + (text[0] == '-');
  for (; *c != 'e'; c++)
    if (*c != '.') digits[n++] = *c;
  exponent = atoi(c + 1);
  while (n > 1 && digits[n - 1] == '0') n--;
  int point = exponent + 1; /* the decimal point sits `point` digits after the first */
  char buf[64];
  size_t len = 0;
  if (value < 0) buf[len++] = '-';
  if (point > 0 && point <= 16) {
    for (int i = 0; i < point; i++) buf[len++] = i < n ? digits[i] : '0';
    buf[len++] = '.';
    if (point >= n) buf[len++] = '0';
    for (int i = point; i < n; i++) buf[len++] = digits[i];
  } else if (point > -5 && point <= 0) {
    buf[len++] = '0';
    buf[len++] = '.';
    for (int i = 0; i < -point; i++) buf[len++] = '0';
    for (int i = 0; i < n; i++) buf[len++] = digits[i];
  } else {
    buf[len++] = digits[0];
    if (n > 1) buf[len++] = '.';
    for (int i = 1; i < n; i++) buf[len++] = digits[i];
    len += (size_t)snprintf(buf + len, sizeof buf - len, "e%d", point - 1);
  }
  json_buf_put(out, buf, len);
}

/* Integers as written (exact at any size); floats as serde_json writes them. */
static void write_number(json_buf *out, json_str text) {
  bool integer = !memchr(text.ptr, '.', text.len) && !memchr(text.ptr, 'e', text.len) && !memchr(text.ptr, 'E', text.len);
  if (integer || canonical_float(text)) {
    json_buf_put(out, text.ptr, text.len);
    return;
  }
  char copy[400];
  size_t len = text.len < sizeof copy - 1 ? text.len : sizeof copy - 1;
  memcpy(copy, text.ptr, len);
  copy[len] = '\0';
  write_float(out, strtod(copy, NULL));
}

static const json_value *sorting;

static int by_key(const void *a, const void *b) {
  return json_str_cmp(sorting->keys[*(const size_t *)a], sorting->keys[*(const size_t *)b]);
}

void json_write(json_buf *out, const json_value *value) {
  switch (value->kind) {
    case JSON_NULL: json_buf_put(out, "null", 4); break;
    case JSON_FALSE: json_buf_put(out, "false", 5); break;
    case JSON_TRUE: json_buf_put(out, "true", 4); break;
    case JSON_NUMBER: write_number(out, value->text); break;
    case JSON_STRING: write_string(out, value->text); break;
    case JSON_ARRAY:
      json_buf_put(out, "[", 1);
      for (size_t i = 0; i < value->count; i++) {
        if (i) json_buf_put(out, ",", 1);
        json_write(out, &value->items[i]);
      }
      json_buf_put(out, "]", 1);
      break;
    case JSON_OBJECT: {
      size_t *order = malloc((value->count + 1) * sizeof *order);
      for (size_t i = 0; i < value->count; i++) order[i] = i;
      sorting = value;
      qsort(order, value->count, sizeof *order, by_key);
      json_buf_put(out, "{", 1);
      for (size_t i = 0; i < value->count; i++) {
        if (i) json_buf_put(out, ",", 1);
        write_string(out, value->keys[order[i]]);
        json_buf_put(out, ":", 1);
        json_write(out, &value->items[order[i]]);
      }
      json_buf_put(out, "}", 1);
      break;
    }
  }
}
