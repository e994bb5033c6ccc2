/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bulk import of mappings from CSV (RFC 4180, header row) or JSON lines.
 *
 * The parser is a pure function of its input (cs_import_parse) so it can be
 * fuzzed; cs_import feeds its rows into the caller's transaction.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_internal.h"

#define RECORD_MAX 65536 /* bytes of one record (CSV) or line (JSON) */
#define PROGRESS_EVERY 10000

typedef enum {
    COL_KIND,
    COL_KEY,
    COL_ACCOUNT,
    COL_NOT_BEFORE,
    COL_NOT_AFTER,
    COL_NOTE,
    COL_PIN,
    COL_ENABLED,
    COL_ACCOUNT_ENABLED,
    COL_NOT_ISSUED_BEFORE,
    COL_CREATED,
    COL_ID,
    COL_COUNT
} column;

/* What `certstore export --format csv|json` writes, so its output reads back whole. */
static const char *const column_names[COL_COUNT] = {
    "kind", "key",     "account",         "not_before",        "not_after", "note",
    "pin",  "enabled", "account_enabled", "not_issued_before", "created",   "id",
};

#define CSV_FIELDS_MAX COL_COUNT

/* ---- the byte source: a buffer or a stream --------------------------------- */

typedef struct {
    FILE *fp;
    const unsigned char *buf;
    size_t len, pos;
    int64_t line; /* 1-based physical line of the next byte */
    int peeked;   /* -2: none */
} byte_source;

static int src_next(byte_source *s)
{
    int c;

    if (s->peeked != -2) {
        c = s->peeked;
        s->peeked = -2;
    } else if (s->fp != NULL) {
        c = getc_unlocked(s->fp);
        if (c == EOF)
            c = -1;
    } else {
        c = s->pos < s->len ? s->buf[s->pos++] : -1;
    }
    if (c == '\n')
        s->line++;
    return c;
}

static int src_peek(byte_source *s)
{
    if (s->peeked == -2) {
        int64_t line = s->line;

        s->peeked = src_next(s);
        s->line = line; /* counted when really consumed */
    }
    return s->peeked;
}

/* ---- parser state ---------------------------------------------------------- */

typedef struct {
    byte_source src;
    cs_import_format fmt;
    char *text; /* record bytes, NUL-separated fields */
    size_t used;
    const char *values[COL_COUNT]; /* the current row, NULL when absent */
    column csv_columns[CSV_FIELDS_MAX];
    size_t csv_column_count;
    int64_t record_line;
    char *msg;
    size_t msglen;
} parser;

static cs_status parse_error(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static cs_status parse_error(parser *p, const char *fmt, ...)
{
    char text[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(p->msg, p->msglen, "line %lld: %s", (long long)p->record_line, text);
    return CS_INVALID;
}

/* A value fit for an error line: bounded, control bytes shown as '?'. */
static const char *printable(const char *value, char buf[48])
{
    size_t i = 0;

    for (; i < 40 && value[i] != '\0'; i++)
        buf[i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ? '?' : value[i];
    if (value[i] != '\0' && i >= 3)
        memcpy(buf + i - 3, "...", 3);
    buf[i] = '\0';
    return buf;
}

static int append_byte(parser *p, int c)
{
    if (p->used + 1 >= RECORD_MAX)
        return 0;
    p->text[p->used++] = (char)c;
    return 1;
}

static int column_by_name(const char *name, column *out)
{
    for (int c = 0; c < COL_COUNT; c++) {
        if (strcmp(name, column_names[c]) == 0) {
            *out = (column)c;
            return 1;
        }
    }
    return 0;
}

/* ---- CSV -------------------------------------------------------------------- */

typedef enum { RECORD_OK, RECORD_EOF, RECORD_BAD } record_status;

/* After a field: ',' continues, EOL/EOF ends the record. 1 more fields, 0 end, -1 bad. */
static int csv_field_end(parser *p, int c)
{
    if (c == ',')
        return 1;
    if (c == '\n' || c == -1)
        return 0;
    if (c == '\r' && src_peek(&p->src) == '\n') {
        src_next(&p->src);
        return 0;
    }
    return -1;
}

static int csv_quoted_field(parser *p)
{
    for (;;) {
        int c = src_next(&p->src);

        if (c == -1) {
            parse_error(p, "unterminated quoted field");
            return -1;
        }
        if (c == '"') {
            if (src_peek(&p->src) != '"') {
                int end = csv_field_end(p, src_next(&p->src));

                if (end < 0)
                    parse_error(p, "unexpected character after a closing quote");
                return end;
            }
            src_next(&p->src);
        }
        if (c == '\0' || !append_byte(p, c)) {
            parse_error(p, c == '\0' ? "NUL byte in the input" : "record longer than %d bytes",
                        RECORD_MAX);
            return -1;
        }
    }
}

static int csv_plain_field(parser *p, int c)
{
    for (;; c = src_next(&p->src)) {
        int end;

        if (c == ',' || c == '\n' || c == '\r' || c == -1) {
            end = csv_field_end(p, c);
            if (end < 0)
                parse_error(p, "carriage return without a line feed");
            return end;
        }
        if (c == '"') {
            parse_error(p, "quote inside an unquoted field");
            return -1;
        }
        if (c == '\0' || !append_byte(p, c)) {
            parse_error(p, c == '\0' ? "NUL byte in the input" : "record longer than %d bytes",
                        RECORD_MAX);
            return -1;
        }
    }
}

/* Fields of one record into fields[]; *count 0 for an empty line. */
static record_status csv_record(parser *p, const char *fields[CSV_FIELDS_MAX + 1], size_t *count)
{
    int c = src_next(&p->src), more = 1;

    p->used = 0;
    *count = 0;
    p->record_line = p->src.line - (c == '\n');
    if (c == -1)
        return RECORD_EOF;
    if (c == '\n' || (c == '\r' && src_peek(&p->src) == '\n' && src_next(&p->src) == '\n'))
        return RECORD_OK;
    while (more > 0) {
        size_t start = p->used;

        if (*count >= CSV_FIELDS_MAX + 1) {
            parse_error(p, "too many fields");
            return RECORD_BAD;
        }
        if (*count > 0)
            c = src_next(&p->src);
        more = c == '"' ? csv_quoted_field(p) : csv_plain_field(p, c);
        if (more < 0)
            return RECORD_BAD;
        /* Each field's terminator needs room too: empty fields add no bytes. */
        if (p->used >= RECORD_MAX) {
            parse_error(p, "record longer than %d bytes", RECORD_MAX);
            return RECORD_BAD;
        }
        p->text[p->used++] = '\0';
        fields[(*count)++] = p->text + start;
    }
    return RECORD_OK;
}

static cs_status csv_header(parser *p)
{
    const char *fields[CSV_FIELDS_MAX + 1];
    size_t count = 0;
    int seen[COL_COUNT] = {0};
    record_status rs;

    do
        rs = csv_record(p, fields, &count);
    while (rs == RECORD_OK && count == 0);
    if (rs == RECORD_BAD)
        return CS_INVALID;
    if (rs == RECORD_EOF)
        return parse_error(p, "no header row (kind,key,account)");
    if (count > CSV_FIELDS_MAX)
        return parse_error(p, "too many columns in the header");
    for (size_t i = 0; i < count; i++) {
        char shown[48];
        column col;
        /* A UTF-8 byte order mark is not part of the first name. */
        const char *name =
            i == 0 && strncmp(fields[0], "\xef\xbb\xbf", 3) == 0 ? fields[0] + 3 : fields[i];

        if (!column_by_name(name, &col))
            return parse_error(p, "unknown column '%s'", printable(name, shown));
        if (seen[col]++)
            return parse_error(p, "column '%s' given twice", column_names[col]);
        p->csv_columns[i] = col;
    }
    p->csv_column_count = count;
    for (int c = COL_KIND; c <= COL_ACCOUNT; c++)
        if (!seen[c])
            return parse_error(p, "missing column '%s'", column_names[c]);
    return CS_OK;
}

/* Next data row into p->values; CS_NOTFOUND at the end. */
static cs_status csv_row(parser *p)
{
    const char *fields[CSV_FIELDS_MAX + 1];
    size_t count = 0;
    record_status rs;

    do
        rs = csv_record(p, fields, &count);
    while (rs == RECORD_OK && count == 0);
    if (rs == RECORD_EOF)
        return CS_NOTFOUND;
    if (rs == RECORD_BAD)
        return CS_INVALID;
    if (count != p->csv_column_count)
        return parse_error(p, "expected %zu fields, found %zu", p->csv_column_count, count);
    memset(p->values, 0, sizeof(p->values));
    for (size_t i = 0; i < count; i++)
        p->values[p->csv_columns[i]] = fields[i];
    return CS_OK;
}

/* ---- JSON lines ----------------------------------------------------------- */

typedef struct {
    const char *s, *end;
} json_cursor;

static void json_ws(json_cursor *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\r'))
        j->s++;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

static size_t utf8_encode(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* \uXXXX (with a following low surrogate when needed); advances j->s past it. */
static int json_unicode_escape(json_cursor *j, unsigned *cp)
{
    unsigned low;

    if (j->end - j->s < 4 || !hex4(j->s, cp))
        return 0;
    j->s += 4;
    if (*cp >= 0xdc00 && *cp <= 0xdfff)
        return 0;
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        if (j->end - j->s < 6 || j->s[0] != '\\' || j->s[1] != 'u' || !hex4(j->s + 2, &low) ||
            low < 0xdc00 || low > 0xdfff)
            return 0;
        j->s += 6;
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (low - 0xdc00);
    }
    return *cp != 0; /* NUL cannot live in a C string */
}

static int json_simple_escape(char c, char *out)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(from, c) : NULL;

    if (hit == NULL)
        return 0;
    *out = to[hit - from];
    return 1;
}

/* A JSON string at j->s into p->text; its start in *out. */
static int json_string(parser *p, json_cursor *j, const char **out)
{
    size_t start = p->used;

    if (j->s >= j->end || *j->s != '"')
        return 0;
    for (j->s++; j->s < j->end && *j->s != '"';) {
        char c = *j->s++;
        char enc[4];
        size_t n = 1;
        unsigned cp;

        if ((unsigned char)c < 0x20)
            return 0;
        enc[0] = c;
        if (c == '\\') {
            if (j->s >= j->end)
                return 0;
            c = *j->s++;
            if (c == 'u') {
                if (!json_unicode_escape(j, &cp))
                    return 0;
                n = utf8_encode(cp, enc);
            } else if (!json_simple_escape(c, enc)) {
                return 0;
            }
        }
        for (size_t i = 0; i < n; i++)
            if (!append_byte(p, enc[i]))
                return 0;
    }
    if (j->s >= j->end)
        return 0;
    j->s++;
    if (p->used >= RECORD_MAX) {
        parse_error(p, "line longer than %d bytes", RECORD_MAX);
        return 0;
    }
    p->text[p->used++] = '\0';
    *out = p->text + start;
    return 1;
}

/*
 * true, false, a number (an exported "id"): their text, as a string would
 * be; null: empty, like an empty CSV field. Nothing else unquoted.
 */
static int json_literal(parser *p, json_cursor *j, const char **out)
{
    size_t start = p->used;
    const char *s = j->s;

    while (j->s < j->end && strchr("abcdefghijklmnopqrstuvwxyz0123456789+-.", *j->s) != NULL &&
           *j->s != '\0')
        j->s++;
    if (j->s == s)
        return 0;
    if ((size_t)(j->s - s) == 4 && memcmp(s, "null", 4) == 0)
        s = j->s;
    else if (!(((size_t)(j->s - s) == 4 && memcmp(s, "true", 4) == 0) ||
               ((size_t)(j->s - s) == 5 && memcmp(s, "false", 5) == 0) ||
               strchr("-0123456789", *s) != NULL))
        return 0;
    for (; s < j->s; s++)
        if (!append_byte(p, *s))
            return 0;
    if (p->used >= RECORD_MAX)
        return 0;
    p->text[p->used++] = '\0';
    *out = p->text + start;
    return 1;
}

static cs_status json_member(parser *p, json_cursor *j)
{
    const char *name = NULL, *value = NULL;
    char shown[48];
    column col;

    if (!json_string(p, j, &name))
        return parse_error(p, "expected a field name in double quotes");
    json_ws(j);
    if (j->s >= j->end || *j->s++ != ':')
        return parse_error(p, "expected ':' after a field name");
    json_ws(j);
    if (j->s < j->end && *j->s != '"') {
        if (!json_literal(p, j, &value))
            return parse_error(p,
                               "field '%s': values must be strings, true, false, null or numbers",
                               printable(name, shown));
    } else if (!json_string(p, j, &value)) {
        return parse_error(p, "bad string value for field '%s'", printable(name, shown));
    }
    if (!column_by_name(name, &col))
        return parse_error(p, "unknown field '%s'", printable(name, shown));
    if (p->values[col] != NULL)
        return parse_error(p, "field '%s' given twice", column_names[col]);
    p->values[col] = value;
    return CS_OK;
}

static cs_status json_object(parser *p, const char *line, size_t len)
{
    json_cursor j = {line, line + len};
    cs_status status;

    memset(p->values, 0, sizeof(p->values));
    json_ws(&j);
    if (j.s >= j.end || *j.s++ != '{')
        return parse_error(p, "expected a JSON object");
    json_ws(&j);
    if (j.s < j.end && *j.s == '}') {
        j.s++;
    } else {
        for (;;) {
            if ((status = json_member(p, &j)) != CS_OK)
                return status;
            json_ws(&j);
            if (j.s < j.end && *j.s == ',') {
                j.s++;
                json_ws(&j);
                continue;
            }
            if (j.s < j.end && *j.s == '}') {
                j.s++;
                break;
            }
            return parse_error(p, "expected ',' or '}'");
        }
    }
    json_ws(&j);
    if (j.s != j.end)
        return parse_error(p, "unexpected text after the object");
    return CS_OK;
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* One line of JSON into p->values; CS_NOTFOUND at the end. */
static cs_status json_row(parser *p, char *line)
{
    for (;;) {
        size_t len = 0;
        int c = src_next(&p->src);

        if (c == -1)
            return CS_NOTFOUND;
        p->record_line = p->src.line - (c == '\n');
        for (; c != '\n' && c != -1; c = src_next(&p->src)) {
            if (c == '\0')
                return parse_error(p, "NUL byte in the input");
            if (len + 1 >= RECORD_MAX)
                return parse_error(p, "line longer than %d bytes", RECORD_MAX);
            line[len++] = (char)c;
        }
        if (is_blank(line, len))
            continue;
        p->used = 0;
        return json_object(p, line, len);
    }
}

/* ---- rows into mapping specs ---------------------------------------------- */

static cs_status time_value(parser *p, column col, int64_t *out)
{
    const char *v = p->values[col];
    char shown[48];

    *out = CS_TIME_NONE;
    if (v == NULL || v[0] == '\0')
        return CS_OK;
    if (!cs_time_parse(v, out))
        return parse_error(p, "bad %s '%s' (YYYY-MM-DD or RFC 3339)", column_names[col],
                           printable(v, shown));
    return CS_OK;
}

/* true or false; `absent` when the field is missing or empty. */
static cs_status bool_value(parser *p, column col, int absent, int *out)
{
    const char *v = p->values[col];
    char shown[48];

    *out = absent;
    if (v == NULL || v[0] == '\0')
        return CS_OK;
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        *out = v[0] == 't';
        return CS_OK;
    }
    return parse_error(p, "%s must be true or false, not '%s'", column_names[col],
                       printable(v, shown));
}

/* The state beside the mapping: flags, the backdating check, when it was made. */
static cs_status row_state(parser *p, cs_import_row *row)
{
    const char *v;
    char shown[48];
    cs_status status;

    if ((status = bool_value(p, COL_ENABLED, 1, &row->enabled)) != CS_OK ||
        (status = bool_value(p, COL_ACCOUNT_ENABLED, -1, &row->account_enabled)) != CS_OK ||
        (status = time_value(p, COL_CREATED, &row->created)) != CS_OK)
        return status;
    v = p->values[COL_NOT_ISSUED_BEFORE];
    row->not_issued_before_created = v != NULL && v[0] != '\0';
    if (row->not_issued_before_created && strcmp(v, "created") != 0)
        return parse_error(p, "not_issued_before must be 'created' or empty, not '%s'",
                           printable(v, shown));
    /* Ids are given anew; an exported one is read and dropped. */
    v = p->values[COL_ID];
    if (v != NULL && v[0] != '\0' && strspn(v, "0123456789") != strlen(v))
        return parse_error(p, "bad id '%s'", printable(v, shown));
    return CS_OK;
}

static cs_status row_to_spec(parser *p, cs_import_row *row, char pin_hex[CS_FP_HEX_LEN + 1])
{
    const char **v = p->values;
    cs_mapping_spec *spec = &row->mapping;
    char shown[48];
    cs_status status;

    memset(row, 0, sizeof(*row));
    for (int c = COL_KIND; c <= COL_ACCOUNT; c++)
        if (v[c] == NULL || v[c][0] == '\0')
            return parse_error(p, "missing %s", column_names[c]);
    if (!cs_kind_parse(v[COL_KIND], &spec->kind))
        return parse_error(p, "unknown kind '%s'", printable(v[COL_KIND], shown));
    if (!cs_key_parse(spec->kind, v[COL_KEY], &spec->key))
        return parse_error(p, "bad %s key '%s'", cs_kind_name(spec->kind),
                           printable(v[COL_KEY], shown));
    if (!cs_account_name_valid(v[COL_ACCOUNT]))
        return parse_error(p, "invalid account name '%s'", printable(v[COL_ACCOUNT], shown));
    spec->account = v[COL_ACCOUNT];
    if ((status = time_value(p, COL_NOT_BEFORE, &spec->not_before)) != CS_OK ||
        (status = time_value(p, COL_NOT_AFTER, &spec->not_after)) != CS_OK)
        return status;
    if (spec->not_before != CS_TIME_NONE && spec->not_after != CS_TIME_NONE &&
        spec->not_before > spec->not_after)
        return parse_error(p, "not_before is after not_after");
    if (v[COL_NOTE] != NULL && strlen(v[COL_NOTE]) > CS_NOTE_MAX)
        return parse_error(p, "note longer than %d bytes", CS_NOTE_MAX);
    spec->note = v[COL_NOTE] && v[COL_NOTE][0] ? v[COL_NOTE] : NULL;
    if (v[COL_PIN] != NULL && v[COL_PIN][0] != '\0') {
        if (!cs_fp_normalise(v[COL_PIN], pin_hex))
            return parse_error(p, "bad pin fingerprint '%s'", printable(v[COL_PIN], shown));
        spec->pin_fp = pin_hex;
    }
    spec->cert_not_after = CS_TIME_NONE;
    return row_state(p, row);
}

/*
 * First non-space byte '{' means JSON lines. The blank space before it is
 * consumed, from a stream and a buffer alike, so both parse the same.
 */
static cs_import_format detect_format(byte_source *s)
{
    for (;;) {
        int c = src_peek(s);

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            src_next(s);
            continue;
        }
        return c == '{' ? CS_IMPORT_JSONL : CS_IMPORT_CSV;
    }
}

/*
 * A UTF-8 byte-order mark (what Windows editors and PowerShell write) is
 * read past, for CSV and JSON lines alike; 0 when the input starts with
 * EF but not a whole mark (not UTF-8 text).
 */
static int skip_bom(byte_source *s)
{
    static const unsigned char bom[] = {0xef, 0xbb, 0xbf};

    if (src_peek(s) != bom[0])
        return 1;
    for (size_t i = 0; i < sizeof(bom); i++)
        if (src_next(s) != bom[i])
            return 0;
    return 1;
}

typedef cs_status (*row_sink)(const cs_import_row *row, int64_t line, void *arg);

static cs_status parse_all(byte_source *src, cs_import_format fmt, row_sink sink, void *arg,
                           int64_t *bad_line, char *msg, size_t msglen)
{
    parser p = {.src = *src, .msg = msg, .msglen = msglen};
    char *line = NULL;
    cs_status status = CS_OK;

    p.src.peeked = -2;
    p.src.line = 1;
    p.text = malloc(RECORD_MAX);
    p.record_line = 1;
    if (!skip_bom(&p.src)) {
        snprintf(msg, msglen,
                 "line 1: the file does not start with text (a broken byte-order mark?)");
        status = CS_INVALID;
    } else if (fmt != CS_IMPORT_CSV) {
        cs_import_format found = detect_format(&p.src);

        if (fmt == CS_IMPORT_AUTO)
            fmt = found;
        if (src_peek(&p.src) == '[') {
            snprintf(msg, msglen,
                     "line %lld: a JSON array; certstore reads JSON lines, one object per line "
                     "as 'certstore export --format json' writes them (jq -c '.[]' turns an "
                     "array into them)",
                     (long long)p.src.line);
            status = CS_INVALID;
        }
    }
    if (status == CS_OK && fmt == CS_IMPORT_JSONL)
        line = malloc(RECORD_MAX);
    if (status != CS_OK) {
        /* said above */
    } else if (p.text == NULL || (fmt == CS_IMPORT_JSONL && line == NULL)) {
        snprintf(msg, msglen, "out of memory");
        status = CS_ERR;
    } else if (fmt == CS_IMPORT_CSV) {
        status = csv_header(&p);
    }
    while (status == CS_OK) {
        cs_import_row row;
        char pin_hex[CS_FP_HEX_LEN + 1];

        status = fmt == CS_IMPORT_CSV ? csv_row(&p) : json_row(&p, line);
        if (status == CS_NOTFOUND) {
            status = CS_OK;
            break;
        }
        if (status == CS_OK)
            status = row_to_spec(&p, &row, pin_hex);
        if (status == CS_OK && (status = sink(&row, p.record_line, arg)) != CS_OK)
            break;
    }
    if (status != CS_OK && bad_line != NULL)
        *bad_line = p.record_line;
    free(line);
    free(p.text);
    return status;
}

cs_status cs_import_parse(const void *data, size_t len, cs_import_format fmt, cs_import_row_cb cb,
                          void *arg, int64_t *bad_line, char *msg, size_t msglen)
{
    byte_source src = {.buf = data, .len = len};
    char fallback[8];
    cs_status status;

    if (msg == NULL || msglen == 0) {
        msg = fallback;
        msglen = sizeof(fallback);
    }
    msg[0] = '\0';
    if (bad_line != NULL)
        *bad_line = 0;
    status = parse_all(&src, fmt, cb, arg, bad_line, msg, msglen);
    if (status != CS_OK && msg[0] == '\0' && bad_line != NULL)
        snprintf(msg, msglen, "line %lld: rejected", (long long)*bad_line);
    return status;
}

/* ---- into the database ----------------------------------------------------- */

/*
 * Rows are validated and staged in memory, sorted by key and inserted in key
 * order: random keys inserted one by one cost a B-tree descent into cold
 * pages each, sorted ones append. Mapping ids therefore follow key order
 * within one import. Sorting also finds duplicate keys within the file.
 */
typedef struct {
    int64_t line, account_id, not_before, not_after, created;
    const char *pin_fp; /* NULL or 64 hex, in the arena */
    const char *note;   /* NULL or text, in the arena */
    unsigned char enabled, not_issued_before_created;
    unsigned char kind;
    unsigned char key_len;
    unsigned char key[];
} staged_row;

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    unsigned char data[];
} arena_chunk;

#define ARENA_CHUNK_BYTES (4u << 20)

/* Account name -> id, so a million rows do not mean a million lookups. */
typedef struct {
    char *name;
    int64_t id;
    int enabled; /* the account's state, as the database has it or will */
} cache_slot;

typedef struct {
    cs_db *db;
    sqlite3_stmt *insert, *account_enabled, *account_disable;
    cache_slot *slots;
    size_t cap, used;
    arena_chunk *arena;
    staged_row **rows;
    size_t row_count, row_cap;
    const char *default_pin; /* the pin of rows that name none; NULL: none */
    int update;              /* an existing kind+key is replaced, not a clash */
    cs_import_result *result;
    void (*progress)(int64_t rows, void *arg);
    void *progress_arg;
} import_ctx;

static void *arena_alloc(import_ctx *ctx, size_t size)
{
    arena_chunk *chunk = ctx->arena;
    void *p;

    size = (size + 7) & ~(size_t)7;
    if (chunk == NULL || chunk->size - chunk->used < size) {
        size_t bytes = size > ARENA_CHUNK_BYTES ? size : ARENA_CHUNK_BYTES;

        if ((chunk = malloc(sizeof(*chunk) + bytes)) == NULL)
            return NULL;
        chunk->next = ctx->arena;
        chunk->used = 0;
        chunk->size = bytes;
        ctx->arena = chunk;
    }
    p = chunk->data + chunk->used;
    chunk->used += size;
    return p;
}

static const char *arena_strdup(import_ctx *ctx, const char *text)
{
    size_t len;
    char *copy;

    if (text == NULL || text[0] == '\0')
        return NULL;
    len = strlen(text) + 1;
    if ((copy = arena_alloc(ctx, len)) != NULL)
        memcpy(copy, text, len);
    return copy;
}

static void ctx_free(import_ctx *ctx)
{
    sqlite3_finalize(ctx->insert);
    sqlite3_finalize(ctx->account_enabled);
    sqlite3_finalize(ctx->account_disable);
    while (ctx->arena != NULL) {
        arena_chunk *next = ctx->arena->next;

        free(ctx->arena);
        ctx->arena = next;
    }
    for (size_t i = 0; i < ctx->cap; i++)
        free(ctx->slots[i].name);
    free(ctx->slots);
    free(ctx->rows);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static cache_slot *cache_find(import_ctx *ctx, const char *name)
{
    size_t i = (size_t)name_hash(name) & (ctx->cap - 1);

    while (ctx->slots[i].name != NULL && strcmp(ctx->slots[i].name, name) != 0)
        i = (i + 1) & (ctx->cap - 1);
    return &ctx->slots[i];
}

static int cache_grow(import_ctx *ctx)
{
    size_t old_cap = ctx->cap;
    cache_slot *old = ctx->slots;

    ctx->cap = old_cap ? old_cap * 2 : 1024;
    ctx->slots = calloc(ctx->cap, sizeof(*ctx->slots));
    if (ctx->slots == NULL) {
        ctx->slots = old;
        ctx->cap = old_cap;
        return 0;
    }
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].name != NULL)
            *cache_find(ctx, old[i].name) = old[i];
    free(old);
    return 1;
}

static cs_status cache_put(import_ctx *ctx, const char *name, int64_t id, int enabled)
{
    cache_slot *slot;

    if ((ctx->used + 1) * 2 > ctx->cap && !cache_grow(ctx))
        return cs_fail(ctx->db, CS_ERR, "out of memory");
    slot = cache_find(ctx, name);
    if ((slot->name = strdup(name)) == NULL)
        return cs_fail(ctx->db, CS_ERR, "out of memory");
    slot->id = id;
    slot->enabled = enabled;
    ctx->used++;
    return CS_OK;
}

/* A statement of the import's own, prepared once per import. */
static sqlite3_stmt *ctx_stmt(import_ctx *ctx, sqlite3_stmt **slot, const char *sql)
{
    if (*slot == NULL) {
        if (sqlite3_prepare_v2(ctx->db->sql, sql, -1, slot, NULL) != SQLITE_OK) {
            cs_sql_fail(ctx->db, "preparing the import");
            return NULL;
        }
        return *slot;
    }
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
}

/* 1/0 for an account the database has; -1 (message set) on failure. */
static int stored_account_enabled(import_ctx *ctx, int64_t id)
{
    sqlite3_stmt *stmt =
        ctx_stmt(ctx, &ctx->account_enabled, "SELECT enabled FROM accounts WHERE id = ?1");
    int enabled = -1;

    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        enabled = sqlite3_column_int(stmt, 0) != 0;
    else
        cs_sql_fail(ctx->db, "reading an account");
    sqlite3_reset(stmt);
    return enabled;
}

static cs_status create_account(import_ctx *ctx, const char *name, int enabled, int64_t *id)
{
    sqlite3_stmt *stmt;
    cs_status status = cs_account_insert(ctx->db, name, NULL, id);

    if (status != CS_OK)
        return status;
    ctx->result->accounts_created++;
    if (enabled)
        return CS_OK;
    stmt = ctx_stmt(ctx, &ctx->account_disable, "UPDATE accounts SET enabled = 0 WHERE id = ?1");
    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, *id);
    return cs_stmt_exec(ctx->db, stmt, "disabling an imported account");
}

/*
 * The row's account, created (in the state the row gives) when missing. A
 * row that gives a state other than the account has, in the database or
 * from an earlier row, is refused: an import never changes an account.
 */
static cs_status account_for_row(import_ctx *ctx, const cs_import_row *row, int64_t *id)
{
    const char *name = row->mapping.account;
    cache_slot *slot = ctx->cap ? cache_find(ctx, name) : NULL;
    cs_status status;
    int enabled;

    if (slot == NULL || slot->name == NULL) {
        status = cs_account_id(ctx->db, name, id);
        if (status == CS_OK)
            enabled = stored_account_enabled(ctx, *id);
        else if (status == CS_NOTFOUND)
            enabled = row->account_enabled != 0, status = create_account(ctx, name, enabled, id);
        if (status != CS_OK)
            return status;
        if (enabled < 0)
            return CS_ERR;
        if ((status = cache_put(ctx, name, *id, enabled)) != CS_OK)
            return status;
        slot = cache_find(ctx, name);
    }
    *id = slot->id;
    if (row->account_enabled >= 0 && row->account_enabled != slot->enabled)
        return cs_fail(ctx->db, CS_INVALID,
                       "account_enabled is %s but account '%.200s' is %s (in the database or an "
                       "earlier line); an import does not change accounts",
                       row->account_enabled ? "true" : "false", name,
                       slot->enabled ? "enabled" : "disabled");
    return CS_OK;
}

static cs_status stage_row(import_ctx *ctx, const cs_import_row *in, int64_t account_id,
                           int64_t line)
{
    const cs_mapping_spec *spec = &in->mapping;
    char pin_hex[CS_FP_HEX_LEN + 1];
    staged_row *row;
    cs_status status = cs_mapping_spec_check(ctx->db, spec, pin_hex);

    if (status != CS_OK)
        return status;
    if (ctx->row_count == ctx->row_cap) {
        size_t cap = ctx->row_cap ? ctx->row_cap * 2 : 4096;
        staged_row **rows = realloc(ctx->rows, cap * sizeof(*rows));

        if (rows == NULL)
            return cs_fail(ctx->db, CS_ERR, "out of memory");
        ctx->rows = rows;
        ctx->row_cap = cap;
    }
    if ((row = arena_alloc(ctx, sizeof(*row) + spec->key.len)) == NULL)
        return cs_fail(ctx->db, CS_ERR, "out of memory");
    row->line = line;
    row->account_id = account_id;
    row->not_before = spec->not_before;
    row->not_after = spec->not_after;
    row->created = in->created != CS_TIME_NONE ? in->created : cs_now();
    row->enabled = in->enabled != 0;
    row->not_issued_before_created = in->not_issued_before_created != 0;
    row->kind = (unsigned char)spec->kind;
    row->key_len = (unsigned char)spec->key.len;
    memcpy(row->key, spec->key.bytes, spec->key.len);
    row->pin_fp = arena_strdup(ctx, pin_hex);
    row->note = arena_strdup(ctx, spec->note);
    if ((pin_hex[0] && row->pin_fp == NULL) || (spec->note && spec->note[0] && row->note == NULL))
        return cs_fail(ctx->db, CS_ERR, "out of memory");
    ctx->rows[ctx->row_count++] = row;
    return CS_OK;
}

static cs_status import_row(const cs_import_row *in, int64_t line, void *arg)
{
    import_ctx *ctx = arg;
    cs_import_row row = *in;
    cs_mapping_spec *spec = &row.mapping;
    int64_t account_id = 0;
    cs_status status;

    if ((spec->pin_fp == NULL || spec->pin_fp[0] == '\0') && ctx->default_pin != NULL)
        spec->pin_fp = ctx->default_pin;
    if ((spec->pin_fp == NULL || spec->pin_fp[0] == '\0') && cs_kind_needs_pin(spec->kind))
        return cs_fail(ctx->db, CS_INVALID,
                       "kind %s needs a pin (a pin column, or --pin): the mapping is bound to "
                       "the CA that issued the certificate",
                       cs_kind_name(spec->kind));
    status = account_for_row(ctx, &row, &account_id);
    if (status == CS_OK)
        status = stage_row(ctx, &row, account_id, line);
    if (status != CS_OK)
        return status;
    if (++ctx->result->rows % PROGRESS_EVERY == 0 && ctx->progress != NULL)
        ctx->progress(ctx->result->rows, ctx->progress_arg);
    return CS_OK;
}

static int same_key(const staged_row *a, const staged_row *b)
{
    return a->kind == b->kind && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0;
}

static int compare_rows(const void *pa, const void *pb)
{
    const staged_row *a = *(staged_row *const *)pa, *b = *(staged_row *const *)pb;
    size_t common = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c;

    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if ((c = memcmp(a->key, b->key, common)) != 0)
        return c;
    if (a->key_len != b->key_len)
        return a->key_len < b->key_len ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

/*
 * Sorting pointers makes every comparison chase two rows through memory.
 * Each entry carries the kind and the key's first seven bytes, zero-padded,
 * so almost every comparison of random keys is one integer compare; ties
 * fall back to compare_rows. Padding keeps the order the same: a key that
 * is a prefix of another never gets the larger prefix.
 */
typedef struct {
    uint64_t prefix;
    staged_row *row;
} sort_entry;

static uint64_t row_prefix(const staged_row *row)
{
    uint64_t prefix = (uint64_t)row->kind << 56;

    for (unsigned i = 0; i < 7 && i < row->key_len; i++)
        prefix |= (uint64_t)row->key[i] << (48 - 8 * i);
    return prefix;
}

static int compare_entries(const void *pa, const void *pb)
{
    const sort_entry *a = pa, *b = pb;

    if (a->prefix != b->prefix)
        return a->prefix < b->prefix ? -1 : 1;
    return compare_rows(&a->row, &b->row);
}

static cs_status sort_rows(import_ctx *ctx)
{
    sort_entry *entries;

    if (ctx->row_count < 2)
        return CS_OK;
    if ((entries = malloc(ctx->row_count * sizeof(*entries))) == NULL)
        return cs_fail(ctx->db, CS_ERR, "out of memory sorting %zu rows", ctx->row_count);
    for (size_t i = 0; i < ctx->row_count; i++) {
        entries[i].prefix = row_prefix(ctx->rows[i]);
        entries[i].row = ctx->rows[i];
    }
    qsort(entries, ctx->row_count, sizeof(*entries), compare_entries);
    for (size_t i = 0; i < ctx->row_count; i++)
        ctx->rows[i] = entries[i].row;
    free(entries);
    return CS_OK;
}

/* Lines of the first duplicate in the file (and its first copy); 0 if none. */
static int64_t first_duplicate(const import_ctx *ctx, int64_t *first_copy)
{
    int64_t best = 0;
    size_t group = 0;

    for (size_t i = 1; i < ctx->row_count; i++) {
        if (!same_key(ctx->rows[i], ctx->rows[group])) {
            group = i;
            continue;
        }
        if (i == group + 1 && (best == 0 || ctx->rows[i]->line < best)) {
            best = ctx->rows[i]->line;
            *first_copy = ctx->rows[group]->line;
        }
    }
    return best;
}

/* --update met a row a directory sync owns: the same refusal as the IIS and altsecid imports. */
static cs_status refuse_owned(import_ctx *ctx, const staged_row *row)
{
    sqlite3_stmt *stmt = NULL;
    cs_status status;

    ctx->result->bad_line = row->line;
    if (sqlite3_prepare_v2(
            ctx->db->sql,
            "SELECT m.id, a.name, m.source FROM mappings m"
            " JOIN accounts a ON a.id = m.account_id WHERE m.kind = ?1 AND m.key = ?2",
            -1, &stmt, NULL) != SQLITE_OK)
        return cs_sql_fail(ctx->db, "adding imported mappings");
    sqlite3_bind_int(stmt, 1, row->kind);
    sqlite3_bind_blob(stmt, 2, row->key, row->key_len, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        status = cs_fail(ctx->db, CS_INVALID,
                         "mapping %lld -> %s is owned by %s: an import does not change it "
                         "(change it in the directory)",
                         (long long)sqlite3_column_int64(stmt, 0),
                         (const char *)sqlite3_column_text(stmt, 1),
                         (const char *)sqlite3_column_text(stmt, 2));
    else
        status = cs_fail(ctx->db, CS_ERR, "an imported mapping was neither added nor updated");
    sqlite3_finalize(stmt);
    return status;
}

static cs_status insert_staged(import_ctx *ctx, const staged_row *row)
{
    cs_db *db = ctx->db;
    sqlite3_stmt *stmt = ctx_stmt(
        ctx, &ctx->insert,
        ctx->update
            ? "INSERT INTO mappings (kind, key, account_id, pin_fp, not_before, not_after,"
              " enabled, note, created, not_issued_before_created)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
              " ON CONFLICT (kind, key) DO UPDATE SET account_id = excluded.account_id,"
              " pin_fp = excluded.pin_fp, not_before = excluded.not_before,"
              " not_after = excluded.not_after, enabled = excluded.enabled,"
              " note = excluded.note,"
              " not_issued_before_created = excluded.not_issued_before_created"
              /* A sync's row comes back at its next run: refused below. */
              " WHERE mappings.source IS NULL"
            : "INSERT INTO mappings (kind, key, account_id, pin_fp, not_before, not_after, enabled,"
              " note, created, not_issued_before_created)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int(stmt, 1, row->kind);
    sqlite3_bind_blob(stmt, 2, row->key, row->key_len, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, row->account_id);
    cs_bind_text_or_null(stmt, 4, row->pin_fp);
    cs_bind_time(stmt, 5, row->not_before);
    cs_bind_time(stmt, 6, row->not_after);
    sqlite3_bind_int(stmt, 7, row->enabled);
    cs_bind_text_or_null(stmt, 8, row->note);
    sqlite3_bind_int64(stmt, 9, row->created);
    sqlite3_bind_int(stmt, 10, row->not_issued_before_created);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE && ctx->update && sqlite3_changes(db->sql) == 0)
        return refuse_owned(ctx, row);
    if (rc == SQLITE_DONE)
        return CS_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return CS_EXISTS;
    return cs_sql_fail(db, "adding imported mappings");
}

/*
 * After a clash with the database: the first line whose key was already
 * there, and the id and account of the mapping that has it.
 */
static int64_t first_existing(cs_db *db, const import_ctx *ctx, int64_t *id,
                              char account[CS_ACCOUNT_MAX + 1])
{
    int64_t best = 0;

    for (size_t i = 0; i < ctx->row_count; i++) {
        const staged_row *row = ctx->rows[i];
        sqlite3_stmt *stmt;

        if (best != 0 && row->line >= best)
            continue;
        if ((stmt = cs_stmt(db, STMT_MAPPING_FIND_KEY)) == NULL)
            return best;
        sqlite3_bind_int(stmt, 1, row->kind);
        sqlite3_bind_blob(stmt, 2, row->key, row->key_len, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            const unsigned char *name = sqlite3_column_text(stmt, 3);

            best = row->line;
            *id = sqlite3_column_int64(stmt, 0);
            snprintf(account, CS_ACCOUNT_MAX + 1, "%s", name != NULL ? (const char *)name : "");
        }
        sqlite3_reset(stmt);
    }
    return best;
}

/*
 * Keeping mappings_by_account current row by row costs about a fifth of a
 * large import; building it once afterwards (a sort) is cheaper whenever the
 * import is big next to what the table already holds. Both statements run
 * inside the import's transaction, so the index is never seen missing.
 */
#define INDEX_REBUILD_MIN_ROWS 50000

static int rebuild_account_index(cs_db *db, size_t rows)
{
    sqlite3_stmt *stmt;
    int64_t existing = 0;

    if (rows < INDEX_REBUILD_MIN_ROWS)
        return 0;
    if (sqlite3_prepare_v2(db->sql, "SELECT max(id) FROM mappings", -1, &stmt, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        existing = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return (int64_t)rows * 4 >= existing;
}

/* Helper threads for SQLite's sorter: one per further online CPU, at most 3. */
static int sorter_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    return cpus <= 1 ? 0 : cpus > 4 ? 3 : (int)cpus - 1;
}

static cs_status insert_all(import_ctx *ctx)
{
    cs_db *db = ctx->db;
    int64_t copy = 0, duplicate, existing, existing_id = 0;
    char existing_account[CS_ACCOUNT_MAX + 1] = "";
    cs_status status = CS_OK;
    int rebuild;

    if ((status = sort_rows(ctx)) != CS_OK)
        return status;
    duplicate = first_duplicate(ctx, &copy);
    /* A savepoint lets a clash be undone so the database can say which line. */
    if (sqlite3_exec(db->sql, "SAVEPOINT import_rows", NULL, NULL, NULL) != SQLITE_OK)
        return cs_sql_fail(db, "starting the import");
    rebuild = duplicate == 0 && rebuild_account_index(db, ctx->row_count);
    if (rebuild &&
        sqlite3_exec(db->sql, "DROP INDEX mappings_by_account", NULL, NULL, NULL) != SQLITE_OK)
        status = cs_sql_fail(db, "preparing the import");
    for (size_t i = 0; status == CS_OK && duplicate == 0 && i < ctx->row_count; i++)
        status = insert_staged(ctx, ctx->rows[i]);
    if (status == CS_OK && rebuild) {
        /* The index build is a sort: let SQLite's sorter use a second core. */
        char sql[64];

        snprintf(sql, sizeof(sql), "PRAGMA threads = %d", sorter_threads());
        sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
        if (sqlite3_exec(db->sql, "CREATE INDEX mappings_by_account ON mappings(account_id)", NULL,
                         NULL, NULL) != SQLITE_OK)
            status = cs_sql_fail(db, "indexing the imported mappings");
        sqlite3_exec(db->sql, "PRAGMA threads = 0", NULL, NULL, NULL);
    }
    if (status == CS_OK && duplicate == 0)
        return sqlite3_exec(db->sql, "RELEASE import_rows", NULL, NULL, NULL) == SQLITE_OK
                   ? CS_OK
                   : cs_sql_fail(db, "finishing the import");
    sqlite3_exec(db->sql, "ROLLBACK TO import_rows; RELEASE import_rows", NULL, NULL, NULL);
    if (status != CS_OK && status != CS_EXISTS)
        return status;
    existing = first_existing(db, ctx, &existing_id, existing_account);
    if (existing > 0 && (duplicate == 0 || existing < duplicate)) {
        ctx->result->bad_line = existing;
        return cs_fail(db, CS_INVALID,
                       "line %lld: a mapping with this kind and key already exists: mapping %lld "
                       "-> %s",
                       (long long)existing, (long long)existing_id, existing_account);
    }
    if (duplicate > 0) {
        ctx->result->bad_line = duplicate;
        return cs_fail(db, CS_INVALID, "line %lld: same kind and key as line %lld",
                       (long long)duplicate, (long long)copy);
    }
    return cs_fail(db, CS_ERR, "import clashed with the database but no line was found");
}

static int64_t mapping_count(cs_db *db)
{
    sqlite3_stmt *stmt;
    int64_t n = -1;

    if (sqlite3_prepare_v2(db->sql, "SELECT count(*) FROM mappings", -1, &stmt, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
}

cs_status cs_import(cs_db *db, FILE *in, cs_import_format fmt, const char *pin_fp,
                    cs_import_result *result, void (*progress)(int64_t rows, void *arg), void *arg)
{
    return cs_import_ex(db, in, fmt, pin_fp, NULL, result, progress, arg);
}

cs_status cs_import_ex(cs_db *db, FILE *in, cs_import_format fmt, const char *pin_fp,
                       const cs_import_opts *opts, cs_import_result *result,
                       void (*progress)(int64_t rows, void *arg), void *arg)
{
    cs_import_result local;
    import_ctx ctx = {.db = db,
                      .progress = progress,
                      .progress_arg = arg,
                      .update = opts != NULL && opts->update};
    int64_t before = 0;
    char pin_hex[CS_FP_HEX_LEN + 1];
    byte_source src = {.fp = in};
    char msg[sizeof(db->errmsg)];
    cs_status status = cs_require_write(db);

    if (result == NULL)
        result = &local;
    memset(result, 0, sizeof(*result));
    ctx.result = result;
    if (status != CS_OK)
        return status;
    if (in == NULL)
        return cs_fail(db, CS_INVALID, "no input");
    if (pin_fp != NULL && !cs_fp_normalise(pin_fp, pin_hex))
        return cs_fail(db, CS_INVALID, "'%s' is not a SHA-256 fingerprint (64 hex digits)", pin_fp);
    ctx.default_pin = pin_fp != NULL ? pin_hex : NULL;
    if ((status = cs_bulk_write_begin(db)) != CS_OK)
        return status;
    msg[0] = '\0';
    db->errmsg[0] = '\0';
    status = parse_all(&src, fmt, import_row, &ctx, &result->bad_line, msg, sizeof(msg));
    if (status == CS_OK && ferror(in))
        status = cs_fail(db, CS_ERR, "reading the input failed");
    if (status != CS_OK && result->bad_line > 0) {
        /* A database complaint about a row is still that row's fault. */
        if (msg[0] == '\0')
            snprintf(msg, sizeof(msg), "line %lld: %.400s", (long long)result->bad_line,
                     db->errmsg);
        status = status == CS_BUSY || status == CS_ERR ? status : CS_INVALID;
        cs_fail(db, status, "%s", msg);
    }
    if (status == CS_OK && ctx.update && (before = mapping_count(db)) < 0)
        status = cs_sql_fail(db, "counting mappings");
    if (status == CS_OK)
        status = insert_all(&ctx);
    if (status == CS_OK && ctx.update) {
        int64_t after = mapping_count(db);

        if (after < 0)
            status = cs_sql_fail(db, "counting mappings");
        else
            result->updated = result->rows - (after - before);
    }
    ctx_free(&ctx);
    if (status == CS_OK)
        status = cs_bulk_write_end(db);
    if (status != CS_OK)
        return status;
    if (ctx.update)
        return cs_log_change(db, "import rows=%lld updated=%lld accounts_created=%lld",
                             (long long)result->rows, (long long)result->updated,
                             (long long)result->accounts_created);
    return cs_log_change(db, "import rows=%lld accounts_created=%lld", (long long)result->rows,
                         (long long)result->accounts_created);
}
