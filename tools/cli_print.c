/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Printing untrusted strings (account names, notes, subjects, commands from
 * the change log). Text output shows them as typed (so a name can be pasted
 * back) and escapes, as \xNN, only what a terminal must not receive: control
 * characters and bytes that are not UTF-8. JSON output is always valid JSON.
 */
#include <string.h>

#include "cli.h"

/*
 * Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there
 * are not valid UTF-8 (overlong forms, surrogates, beyond U+10FFFF).
 * *cp receives the code point.
 */
static size_t utf8_sequence(const unsigned char *s, unsigned *cp)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, min = 0x80, c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, min = 0x800, c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* C0, DEL and C1 controls: terminals act on them. */
static int is_control(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

void cli_put_text(FILE *out, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str != NULL ? str : "");
    while (*s != '\0') {
        unsigned cp;
        size_t len = utf8_sequence(s, &cp);
        if (len == 0 || is_control(cp)) {
            /* One byte at a time, so invalid sequences show exactly. */
            for (size_t i = 0; i < (len == 0 ? 1 : len); i++)
                fprintf(out, "\\x%02x", s[i]);
            s += len == 0 ? 1 : len;
            continue;
        }
        fwrite(s, 1, len, out);
        s += len;
    }
}

static void put_json_escape(FILE *out, unsigned cp)
{
    switch (cp) {
    case '"':
        fputs("\\\"", out);
        break;
    case '\\':
        fputs("\\\\", out);
        break;
    case '\n':
        fputs("\\n", out);
        break;
    case '\r':
        fputs("\\r", out);
        break;
    case '\t':
        fputs("\\t", out);
        break;
    default:
        fprintf(out, "\\u%04x", cp);
        break;
    }
}

void cli_put_json_string(FILE *out, const char *str)
{
    if (str == NULL) {
        fputs("null", out);
        return;
    }
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', out);
    while (*s != '\0') {
        unsigned cp;
        size_t len = utf8_sequence(s, &cp);
        if (len == 0) {
            fputs("\\ufffd", out);
            s++;
        } else if (cp == '"' || cp == '\\' || is_control(cp)) {
            put_json_escape(out, cp);
            s += len;
        } else {
            fwrite(s, 1, len, out);
            s += len;
        }
    }
    fputc('"', out);
}

void cli_put_json_time(FILE *out, int64_t t)
{
    if (t == CS_TIME_NONE || t == CS_TIME_FOREVER) {
        fputs("null", out);
        return;
    }
    char buf[32];
    cs_time_format(t, buf);
    fprintf(out, "\"%s\"", buf);
}

void cli_put_text_time(FILE *out, int64_t t)
{
    if (t == CS_TIME_NONE || t == CS_TIME_FOREVER) {
        fputc('-', out);
        return;
    }
    char buf[32];
    cs_time_format(t, buf);
    fputs(buf, out);
}

void cli_put_hex(FILE *out, const unsigned char *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fprintf(out, "%02x", bytes[i]);
}

/*
 * The '[' waits for the first row or the end: a command that fails before
 * any row (no such account) prints nothing on stdout, not half an array.
 */
void cli_json_list_begin(cli_json_list *list, FILE *out)
{
    list->out = out;
    list->rows = 0;
}

void cli_json_list_row(cli_json_list *list)
{
    fputs(list->rows++ == 0 ? "[\n" : ",\n", list->out);
}

void cli_json_list_end(cli_json_list *list)
{
    fputs(list->rows == 0 ? "[]\n" : "\n]\n", list->out);
}
