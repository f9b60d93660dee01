/*
** A small strict JSON parser for the subset safetensors headers use:
** objects, strings (with every escape, \uXXXX and surrogate pairs; UTF-8
** checked), integers and arrays. Floats, true, false and null are refused:
** no safetensors header holds them. Duplicate keys in an object are an error.
** Not installed; used by safetensors.c.
*/
#ifndef DROPNET_JSON_H
#define DROPNET_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this is refused (a safetensors header needs 3). */
#define DN_JSON_MAX_DEPTH 32

typedef enum dn_json_kind { DN_JSON_OBJECT, DN_JSON_ARRAY, DN_JSON_STRING, DN_JSON_INTEGER } dn_json_kind;

typedef struct dn_json_member dn_json_member;

typedef struct dn_json_value {
  dn_json_kind kind;
  size_t position;              /* byte offset in the input, for messages */
  union {
    char *string;               /* NUL-terminated UTF-8 (\u0000 is refused) */
    int64_t integer;
    struct {
      dn_json_member *members;  /* in input order */
      size_t count;
    } object;
    struct {
      struct dn_json_value *items;
      size_t count;
    } array;
  } as;
} dn_json_value;

struct dn_json_member {
  char *key;
  dn_json_value value;
};

/* Parses text[0, length) (whitespace allowed around the value). On success
   returns 0 and fills *out (free with dn_json_free); on failure returns -1 and
   writes a message naming the byte offset into error (always NUL-terminated). */
int dn_json_parse(dn_json_value *out, const char *text, size_t length, char *error, size_t error_size);
void dn_json_free(dn_json_value *value);

/* "object", "array", "string", "integer". */
const char *dn_json_kind_name(dn_json_kind kind);

#endif
