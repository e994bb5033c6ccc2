/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fingerprints as operators type them: whole (any case, colons), or a
 * unique prefix of a pinned CA's, like git's abbreviated hashes. An
 * ambiguous prefix is refused with the candidates.
 */
#include <string.h>

#include "cli.h"

#define CANDIDATES_SHOWN 6

typedef struct {
    char want[CS_FP_HEX_LEN + 1];
    int count;
    char found[CANDIDATES_SHOWN][CS_FP_HEX_LEN + 1];
    char subject[CANDIDATES_SHOWN][256];
} pin_prefix;

static int note_pin(const cs_pin *pin, void *arg)
{
    pin_prefix *p = arg;
    if (strncmp(pin->fp, p->want, strlen(p->want)) != 0)
        return 0;
    if (p->count < CANDIDATES_SHOWN) {
        snprintf(p->found[p->count], sizeof(p->found[0]), "%s", pin->fp);
        snprintf(p->subject[p->count], sizeof(p->subject[0]), "%s", pin->subject);
    }
    p->count++;
    return 0;
}

/* Lowercase hex without colons, at least CS_PREFIX_MIN digits; 0 if not. */
static int normalise_prefix(const char *text, char out[CS_FP_HEX_LEN + 1])
{
    size_t n = 0;
    for (const char *s = text; *s != '\0'; s++) {
        if (*s == ':')
            continue;
        if (strchr("0123456789abcdefABCDEF", *s) == NULL || n == CS_FP_HEX_LEN)
            return 0;
        out[n++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
    }
    out[n] = '\0';
    return n >= CS_PREFIX_MIN;
}

int cli_pin_fp(const cli_ctx *ctx, const char *what, const char *text, char fp[CS_FP_HEX_LEN + 1])
{
    pin_prefix p = {0};
    if (cs_fp_normalise(text, fp))
        return CLI_CONTINUE;
    if (!normalise_prefix(text, p.want))
        return cli_usage_error(ctx,
                               "%s: '%s' is not a SHA-256 fingerprint (64 hex digits) or a "
                               "prefix of one (at least %d)",
                               what, text, CS_PREFIX_MIN);
    cs_db *db = cli_open_read(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_status st = cs_pin_foreach(db, note_pin, &p);
    int rc = st == CS_OK ? CLI_CONTINUE : cli_store_fail(ctx, db);
    cs_db_close(db);
    if (rc != CLI_CONTINUE)
        return rc;
    if (p.count == 0)
        return cli_fail(ctx, "%s: no pinned CA's fingerprint starts with '%s'", what, text);
    if (p.count > 1) {
        cli_fail(ctx, "%s: '%s' is ambiguous: %d pinned CAs' fingerprints start with it:", what,
                 text, p.count);
        for (int i = 0; i < p.count && i < CANDIDATES_SHOWN; i++) {
            fprintf(stderr, "  %s ", p.found[i]);
            cli_put_text(stderr, p.subject[i]);
            fputc('\n', stderr);
        }
        return CLI_FAIL;
    }
    memcpy(fp, p.found[0], CS_FP_HEX_LEN + 1);
    return CLI_CONTINUE;
}
