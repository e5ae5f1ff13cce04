// config_internal.h — the descriptor tables behind rd/config.h (private to common/config.c and
// its tests).
//
// Every configuration struct is described by a table of ck_key rows: YAML key, value type, byte
// offset in the struct, size, range, allowed names and default text. The loader, the range
// checker, the default filler and the printer all walk these tables, so adding a configuration
// key is adding one row (and the field in rd/config.h).
//
// Invariants: a row's offset and C type are checked at compile time (_Generic in the row macros);
// default texts are parsed by the same scalar parser as YAML values (a bad default aborts in
// rd_config_defaults, caught by the unit tests).
#ifndef RD_CONFIG_INTERNAL_H
#define RD_CONFIG_INTERNAL_H

#include <stddef.h>

typedef enum ck_type {
    CK_INT,      // int
    CK_INT64,    // int64_t
    CK_UINT64,   // uint64_t (CK_BYTES: also "64MiB")
    CK_FLOAT,    // float
    CK_DOUBLE,   // double
    CK_BOOL,     // int 0/1 from true/false/yes/no/on/off/1/0
    CK_STR,      // char[size]; `names` (if set) restricts the value to a list
    CK_ENUM,     // int index into `names`
    CK_INT_LIST, // int[max_count] + int count at count_off
    CK_STR_LIST, // char[max_count][size] + int count at count_off
    CK_MAP,      // nested struct `sub` at off
    CK_MAP_LIST, // array of `sub` structs (each `size` bytes) + int count at count_off
    CK_LABEL,    // data.schema.label: a map (like CK_MAP) or a rule string "column OP number"
} ck_type;

enum {
    CK_REQUIRED = 1u << 0, // the key must be given (strings also non-empty)
    CK_RANGE = 1u << 1,    // numbers: lo <= v <= hi
    CK_EXCL_LO = 1u << 2,  // ... lo < v
    CK_EXCL_HI = 1u << 3,  // ... v < hi
    CK_BYTES = 1u << 4,    // integers: accept KiB/MiB/GiB/TiB suffixes
    CK_DELIM = 1u << 5,    // strings: a delimiter, also by name (tab, comma, ...: one byte)
};

typedef struct ck_struct ck_struct;

typedef struct ck_key {
    const char *key;          // YAML key
    ck_type type;             // value type
    size_t off;               // offset of the field in its struct
    size_t size;              // CK_STR/CK_STR_LIST: bytes of one string; CK_MAP_LIST: of one entry
    size_t count_off;         // lists: offset of the int entry count
    int max_count;            // lists: capacity of the array
    unsigned flags;           // CK_REQUIRED | CK_RANGE | ...
    double lo, hi;            // numeric range (with CK_RANGE)
    const char *const *names; // CK_ENUM names (index = value), CK_STR allowed values; NULL-ended
    const ck_struct *sub;     // CK_MAP, CK_MAP_LIST, CK_LABEL
    const char *def;          // default as YAML scalar text; NULL = zero / empty
} ck_key;

struct ck_struct {
    const char *name;   // C struct name, for messages about the tables themselves
    const ck_key *keys; // rows
    size_t n_keys;      // rows in keys
};

/** The root table (rd_config). Tests walk it to check that every key has a default or is
 *  required, and that configs/reference.yaml mentions every key. */
extern const ck_struct rd__config_root;

#endif // RD_CONFIG_INTERNAL_H
