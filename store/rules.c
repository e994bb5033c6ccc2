/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Many-to-one rules: an issuer pin plus match conditions -> an account
 * (allow) or a rejection (deny). Conditions are validated on the way in and
 * stored as given; the policy parses them again on every use (dn_match.c),
 * so what `rule ls` shows is exactly what is enforced.
 */
#include <string.h>

#include "cs_internal.h"

static int present(const char *s)
{
    return s != NULL && *s != '\0';
}

static int field_valid(const char *name, const char *text, char *msg, size_t msglen)
{
    if (!present(text))
        return 1;
    if (strlen(text) > CS_RULE_TEXT_MAX) {
        snprintf(msg, msglen, "%s: longer than %d bytes", name, CS_RULE_TEXT_MAX);
        return 0;
    }
    return 1;
}

static int name_condition_valid(const char *name, const char *text, char *msg, size_t msglen)
{
    cs_dn_pair pairs[CS_DN_PAIRS_MAX];
    char why[200];

    if (!present(text))
        return 1;
    if (cs_dn_parse(text, pairs, CS_DN_PAIRS_MAX, why, sizeof(why)) < 0) {
        snprintf(msg, msglen, "%s: %s", name, why);
        return 0;
    }
    return 1;
}

static int list_condition_valid(const char *name, const char *text,
                                int (*valid)(const char *, char *, size_t), char *msg,
                                size_t msglen)
{
    char why[200];

    if (!present(text))
        return 1;
    if (!valid(text, why, sizeof(why))) {
        snprintf(msg, msglen, "%s: %s", name, why);
        return 0;
    }
    return 1;
}

static int action_valid(const cs_rule_spec *spec, char *msg, size_t msglen)
{
    if (spec->action != CS_RULE_ALLOW && spec->action != CS_RULE_DENY) {
        snprintf(msg, msglen, "unknown rule action %d", (int)spec->action);
        return 0;
    }
    if (spec->action == CS_RULE_ALLOW && !cs_account_name_valid(spec->account)) {
        snprintf(msg, msglen, "an allow rule needs a valid account name");
        return 0;
    }
    if (spec->action == CS_RULE_DENY && present(spec->account)) {
        snprintf(msg, msglen, "a deny rule has no account");
        return 0;
    }
    return 1;
}

cs_status cs_rule_check(const cs_rule_spec *spec, char *msg, size_t msglen)
{
    char pin[CS_FP_HEX_LEN + 1];

    if (spec == NULL) {
        snprintf(msg, msglen, "no rule given");
        return CS_INVALID;
    }
    if (!action_valid(spec, msg, msglen))
        return CS_INVALID;
    if (!present(spec->pin_fp) || !cs_fp_normalise(spec->pin_fp, pin)) {
        snprintf(msg, msglen, "a rule needs its issuer pin (a SHA-256 fingerprint)");
        return CS_INVALID;
    }
    if (!field_valid("subject", spec->subject, msg, msglen) ||
        !field_valid("issuer", spec->issuer, msg, msglen) ||
        !field_valid("san", spec->san, msg, msglen) ||
        !field_valid("eku", spec->eku, msg, msglen) ||
        !field_valid("policy", spec->policy, msg, msglen) ||
        !name_condition_valid("subject", spec->subject, msg, msglen) ||
        !name_condition_valid("issuer", spec->issuer, msg, msglen) ||
        !list_condition_valid("san", spec->san, cs_san_list_valid, msg, msglen) ||
        !list_condition_valid("eku", spec->eku, cs_oid_list_valid, msg, msglen) ||
        !list_condition_valid("policy", spec->policy, cs_oid_list_valid, msg, msglen))
        return CS_INVALID;
    if (spec->note != NULL && strlen(spec->note) > CS_NOTE_MAX) {
        snprintf(msg, msglen, "note longer than %d bytes", CS_NOTE_MAX);
        return CS_INVALID;
    }
    return CS_OK;
}

/* An allow rule's account id, created on request. */
static cs_status rule_account(cs_db *db, const cs_rule_spec *spec, int create_account,
                              int64_t *account_id)
{
    cs_status status;

    *account_id = 0;
    if (spec->action == CS_RULE_DENY)
        return CS_OK;
    status = cs_account_id(db, spec->account, account_id);
    if (status == CS_NOTFOUND && create_account) {
        status = cs_account_insert(db, spec->account, NULL, account_id);
        if (status == CS_OK)
            status = cs_log_change(db, "account add name=%s", spec->account);
    } else if (status == CS_NOTFOUND) {
        status = cs_fail(db, CS_NOTFOUND, "no account '%s'", spec->account);
    }
    return status;
}

static cs_status pin_exists(cs_db *db, const char *fp)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_PIN_ENABLED_GET);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_text(stmt, 1, fp, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no pin %s (pin the issuing CA first)", fp);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading pins");
}

static void bind_rule(sqlite3_stmt *stmt, const cs_rule_spec *spec, int64_t account_id,
                      const char *pin)
{
    sqlite3_bind_int64(stmt, 1, spec->priority);
    sqlite3_bind_int(stmt, 2, (int)spec->action);
    if (account_id > 0)
        sqlite3_bind_int64(stmt, 3, account_id);
    else
        sqlite3_bind_null(stmt, 3);
    sqlite3_bind_text(stmt, 4, pin, -1, SQLITE_STATIC);
    cs_bind_text_or_null(stmt, 5, spec->subject);
    cs_bind_text_or_null(stmt, 6, spec->issuer);
    cs_bind_text_or_null(stmt, 7, spec->san);
    cs_bind_text_or_null(stmt, 8, spec->eku);
    cs_bind_text_or_null(stmt, 9, spec->policy);
    sqlite3_bind_int(stmt, 10, spec->case_sensitive != 0);
    sqlite3_bind_int(stmt, 11, spec->not_issued_before_created != 0);
    cs_bind_text_or_null(stmt, 12, spec->note);
    sqlite3_bind_int64(stmt, 13, cs_now());
    sqlite3_bind_int(stmt, 14, spec->subject_exact != 0);
    sqlite3_bind_int(stmt, 15, spec->issuer_exact != 0);
}

cs_status cs_rule_add(cs_db *db, const cs_rule_spec *spec, int create_account, int64_t *id_out)
{
    char pin[CS_FP_HEX_LEN + 1], msg[256];
    int64_t account_id = 0, id;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status != CS_OK)
        return status;
    if (cs_rule_check(spec, msg, sizeof(msg)) != CS_OK)
        return cs_fail(db, CS_INVALID, "%s", msg);
    cs_fp_normalise(spec->pin_fp, pin);
    status = pin_exists(db, pin);
    if (status == CS_OK)
        status = rule_account(db, spec, create_account, &account_id);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_RULE_ADD)) == NULL)
        return CS_ERR;
    bind_rule(stmt, spec, account_id, pin);
    status = cs_stmt_exec(db, stmt, "adding the rule");
    if (status != CS_OK)
        return status;
    id = sqlite3_last_insert_rowid(db->sql);
    if (id_out != NULL)
        *id_out = id;
    status = cs_log_change(db, "rule add id=%lld action=%s account=%s pin=%.16s priority=%lld",
                           (long long)id, spec->action == CS_RULE_DENY ? "deny" : "allow",
                           spec->action == CS_RULE_DENY ? "-" : spec->account, pin,
                           (long long)spec->priority);
    return status;
}

static cs_status rule_enabled(cs_db *db, int64_t id, int *enabled)
{
    sqlite3_stmt *stmt = cs_stmt(db, STMT_RULE_ENABLED_GET);
    int rc;

    if (stmt == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *enabled = sqlite3_column_int(stmt, 0) != 0;
    sqlite3_reset(stmt);
    if (rc == SQLITE_DONE)
        return cs_fail(db, CS_NOTFOUND, "no rule with id %lld", (long long)id);
    return rc == SQLITE_ROW ? CS_OK : cs_sql_fail(db, "reading the rule");
}

cs_status cs_rule_remove(cs_db *db, int64_t id)
{
    int enabled = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    if (status == CS_OK)
        status = rule_enabled(db, id, &enabled);
    if (status != CS_OK)
        return status;
    if ((stmt = cs_stmt(db, STMT_RULE_REMOVE)) == NULL)
        return CS_ERR;
    sqlite3_bind_int64(stmt, 1, id);
    status = cs_stmt_exec(db, stmt, "removing the rule");
    if (status == CS_OK)
        status = cs_log_change(db, "rule rm id=%lld", (long long)id);
    return status;
}

cs_status cs_rule_set_enabled(cs_db *db, int64_t id, int enabled)
{
    int current = 0;
    sqlite3_stmt *stmt;
    cs_status status = cs_require_write(db);

    enabled = enabled != 0;
    if (status == CS_OK)
        status = rule_enabled(db, id, &current);
    if (status != CS_OK)
        return status;
    if (current != enabled) {
        if ((stmt = cs_stmt(db, STMT_RULE_SET_ENABLED)) == NULL)
            return CS_ERR;
        sqlite3_bind_int(stmt, 1, enabled);
        sqlite3_bind_int64(stmt, 2, id);
        status = cs_stmt_exec(db, stmt, "updating the rule");
    }
    if (status == CS_OK)
        status =
            cs_log_change(db, "rule %s id=%lld", enabled ? "enable" : "disable", (long long)id);
    return status;
}

static const char *column_text(sqlite3_stmt *stmt, int col)
{
    return (const char *)sqlite3_column_text(stmt, col);
}

static void rule_from_row(sqlite3_stmt *stmt, cs_rule *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(stmt, 0);
    r->spec.priority = sqlite3_column_int64(stmt, 1);
    r->enabled = sqlite3_column_int(stmt, 2) != 0;
    r->spec.action = sqlite3_column_int(stmt, 3) == CS_RULE_DENY ? CS_RULE_DENY : CS_RULE_ALLOW;
    r->spec.account = column_text(stmt, 4);
    r->spec.pin_fp = column_text(stmt, 5);
    r->spec.subject = column_text(stmt, 6);
    r->spec.issuer = column_text(stmt, 7);
    r->spec.san = column_text(stmt, 8);
    r->spec.eku = column_text(stmt, 9);
    r->spec.policy = column_text(stmt, 10);
    r->spec.case_sensitive = sqlite3_column_int(stmt, 11) != 0;
    r->spec.not_issued_before_created = sqlite3_column_int(stmt, 12) != 0;
    r->spec.note = column_text(stmt, 13);
    if (r->spec.note == NULL)
        r->spec.note = "";
    r->created = sqlite3_column_int64(stmt, 14);
    r->spec.subject_exact = sqlite3_column_int(stmt, 15) != 0;
    r->spec.issuer_exact = sqlite3_column_int(stmt, 16) != 0;
}

cs_status cs_rule_foreach(cs_db *db, cs_rule_cb cb, void *arg)
{
    sqlite3_stmt *stmt;
    int rc;

    if (db == NULL || db->sql == NULL)
        return CS_ERR;
    if ((stmt = cs_stmt(db, STMT_RULE_LIST)) == NULL)
        return CS_ERR;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        cs_rule r;

        rule_from_row(stmt, &r);
        if (cb(&r, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? CS_OK : cs_sql_fail(db, "reading rules");
}
