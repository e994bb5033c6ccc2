/* SPDX-License-Identifier: Apache-2.0 */
/* certstore rule: many-to-one rules (issuer pin + conditions -> account, or deny). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LIST_MAX (CS_RULE_TEXT_MAX + 1)

/*
 * --san, --eku and --policy may be given several times: every one must
 * hold. cli_parse keeps only the last value, so collect them all here, one
 * per line, as the store keeps them.
 */
static int collect_repeated(const cli_ctx *ctx, int argc, char **argv, const char *option,
                            char *out, size_t outlen)
{
    size_t optlen = strlen(option), used = 0;

    out[0] = '\0';
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *value = NULL;

        if (strcmp(argv[i], option) == 0 && i + 1 < argc)
            value = argv[++i];
        else if (strncmp(argv[i], option, optlen) == 0 && argv[i][optlen] == '=')
            value = argv[i] + optlen + 1;
        if (value == NULL)
            continue;
        if (*value == '\0' || strchr(value, '\n') != NULL)
            return cli_usage_error(ctx, "%s: empty value or a newline in '%s'", option, value);
        if (used + strlen(value) + 2 > outlen)
            return cli_usage_error(ctx, "%s: too many or too long values", option);
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? "\n" : "", value);
    }
    return CLI_CONTINUE;
}

typedef struct {
    const char *pin, *account, *priority, *subject, *issuer, *note, *not_issued_before;
    const char *subject_exact, *issuer_exact;
    const char *ignored; /* --san/--eku/--policy: collected separately */
    int deny, case_sensitive, create_account, any;
    char san[LIST_MAX], eku[LIST_MAX], policy[LIST_MAX];
    char pin_fp[CS_FP_HEX_LEN + 1];
} rule_add_options;

static int given(const char *text)
{
    return text != NULL && *text != '\0';
}

static int parse_priority(const cli_ctx *ctx, const char *text, int64_t *out)
{
    char *end = NULL;
    long long v;

    *out = CS_RULE_PRIORITY_DEFAULT;
    if (text == NULL)
        return CLI_CONTINUE;
    v = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < 0 || v > 1000000)
        return cli_usage_error(ctx, "--priority: '%s' is not a number from 0 to 1000000", text);
    *out = v;
    return CLI_CONTINUE;
}

static int fill_rule_spec(const cli_ctx *ctx, rule_add_options *o, cs_rule_spec *spec)
{
    char msg[256];
    int rc;

    memset(spec, 0, sizeof(*spec));
    if (o->pin == NULL)
        return cli_usage_error(ctx, "missing --pin (a rule never spans issuing CAs)");
    if ((o->account == NULL) == !o->deny)
        return cli_usage_error(ctx, "give exactly one of --account NAME and --deny");
    if (o->not_issued_before != NULL && strcmp(o->not_issued_before, "created") != 0)
        return cli_usage_error(ctx, "--not-issued-before: only 'created' is supported");
    if ((o->subject != NULL && o->subject_exact != NULL) ||
        (o->issuer != NULL && o->issuer_exact != NULL))
        return cli_usage_error(ctx, "--subject and --subject-exact (--issuer and --issuer-exact) "
                                    "exclude each other");
    if ((rc = parse_priority(ctx, o->priority, &spec->priority)) != CLI_CONTINUE)
        return rc;
    int conditions = given(o->subject) || given(o->subject_exact) || given(o->issuer) ||
                     given(o->issuer_exact) || given(o->san) || given(o->eku) || given(o->policy);
    if (!o->deny && !conditions && !o->any)
        return cli_usage_error(ctx, "an allow rule without a condition admits every certificate "
                                    "of its CA: give a condition, or --any to mean that");
    if (o->any && conditions)
        return cli_usage_error(ctx, "--any is for a rule without conditions");
    if ((rc = cli_pin_fp(ctx, "--pin", o->pin, o->pin_fp)) != CLI_CONTINUE)
        return rc;
    spec->action = o->deny ? CS_RULE_DENY : CS_RULE_ALLOW;
    spec->account = o->account;
    spec->pin_fp = o->pin_fp;
    spec->subject = o->subject_exact != NULL ? o->subject_exact : o->subject;
    spec->issuer = o->issuer_exact != NULL ? o->issuer_exact : o->issuer;
    spec->subject_exact = o->subject_exact != NULL;
    spec->issuer_exact = o->issuer_exact != NULL;
    spec->san = o->san;
    spec->eku = o->eku;
    spec->policy = o->policy;
    spec->case_sensitive = o->case_sensitive;
    spec->not_issued_before_created = o->not_issued_before != NULL;
    spec->note = o->note;
    if (cs_rule_check(spec, msg, sizeof(msg)) != CS_OK)
        return cli_usage_error(ctx, "%s", msg);
    return CLI_CONTINUE;
}

static int parse_rule_add(cli_ctx *ctx, int argc, char **argv, rule_add_options *o)
{
    const cli_option opts[] = {
        {"pin", &o->pin, NULL},
        {"account", &o->account, NULL},
        {"deny", NULL, &o->deny},
        {"priority", &o->priority, NULL},
        {"subject", &o->subject, NULL},
        {"issuer", &o->issuer, NULL},
        {"subject-exact", &o->subject_exact, NULL},
        {"issuer-exact", &o->issuer_exact, NULL},
        {"san", &o->ignored, NULL},
        {"eku", &o->ignored, NULL},
        {"policy", &o->ignored, NULL},
        {"case-sensitive", NULL, &o->case_sensitive},
        {"not-issued-before", &o->not_issued_before, NULL},
        {"note", &o->note, NULL},
        {"create-account", NULL, &o->create_account},
        {"any", NULL, &o->any},
        CLI_OPTIONS_END,
    };
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 0, 0, "")) != CLI_CONTINUE)
        return rc;
    if ((rc = collect_repeated(ctx, argc, argv, "--san", o->san, sizeof(o->san))) != CLI_CONTINUE ||
        (rc = collect_repeated(ctx, argc, argv, "--eku", o->eku, sizeof(o->eku))) != CLI_CONTINUE ||
        (rc = collect_repeated(ctx, argc, argv, "--policy", o->policy, sizeof(o->policy))) !=
            CLI_CONTINUE)
        return rc;
    return CLI_CONTINUE;
}

static int run_rule_add(cli_ctx *ctx, int argc, char **argv)
{
    rule_add_options *o = calloc(1, sizeof(*o));
    cs_rule_spec spec;
    int64_t id = 0;
    int rc;

    if (o == NULL)
        return cli_fail(ctx, "out of memory");
    rc = parse_rule_add(ctx, argc, argv, o);
    if (rc == CLI_CONTINUE)
        rc = fill_rule_spec(ctx, o, &spec);
    if (rc == CLI_CONTINUE) {
        cs_db *db = cli_begin_write(ctx);

        if (db == NULL) {
            free(o);
            return CLI_FAIL;
        }
        cs_status st = cs_rule_add(db, &spec, o->create_account, &id);
        if (st == CS_NOTFOUND && spec.action == CS_RULE_ALLOW &&
            strstr(cs_db_errmsg(db), "no account") != NULL)
            cli_fail(ctx, "%s (use --create-account to create the account)", cs_db_errmsg(db));
        else if (st != CS_OK)
            cli_store_fail(ctx, db);
        rc = cli_end_write(ctx, db, st);
        if (rc == CLI_OK) {
            printf("rule %lld: %s", (long long)id, o->deny ? "deny" : "allow -> ");
            if (!o->deny)
                cli_put_text(stdout, o->account);
            putchar('\n');
        }
    }
    free(o);
    return rc;
}

/* ---- listing -------------------------------------------------------------- */

/* A list field on one line: entries separated by "; ". */
static void put_list_text(const char *label, const char *text)
{
    if (text == NULL || *text == '\0')
        return;
    printf(" %s=\"", label);
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *one = strndup(p, len);

        if (one != NULL)
            cli_put_text(stdout, one);
        free(one);
        if (nl == NULL)
            break;
        fputs("; ", stdout);
        p = nl + 1;
    }
    putchar('"');
}

static int print_rule_text(const cs_rule *r)
{
    const cs_rule_spec *s = &r->spec;

    printf("%lld %s", (long long)r->id, s->action == CS_RULE_DENY ? "deny" : "allow");
    if (s->action == CS_RULE_ALLOW) {
        printf(" account=");
        cli_put_text(stdout, s->account ? s->account : "?");
    }
    printf(" priority=%lld %s pin=%s", (long long)s->priority, r->enabled ? "enabled" : "disabled",
           s->pin_fp ? s->pin_fp : "?");
    put_list_text(s->subject_exact ? "subject-exact" : "subject", s->subject);
    put_list_text(s->issuer_exact ? "issuer-exact" : "issuer", s->issuer);
    put_list_text("san", s->san);
    put_list_text("eku", s->eku);
    put_list_text("policy", s->policy);
    if (s->case_sensitive)
        printf(" case-sensitive");
    if (s->not_issued_before_created)
        printf(" not-issued-before=created");
    if (s->note != NULL && *s->note != '\0') {
        printf(" note=\"");
        cli_put_text(stdout, s->note);
        putchar('"');
    }
    putchar('\n');
    return 0;
}

/* A list field as a JSON array of strings (empty when absent). */
static void put_list_json(const char *text)
{
    int first = 1;

    putchar('[');
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        char *one = strndup(p, nl ? (size_t)(nl - p) : strlen(p));

        if (!first)
            putchar(',');
        cli_put_json_string(stdout, one != NULL ? one : "");
        free(one);
        first = 0;
        p = nl ? nl + 1 : NULL;
    }
    putchar(']');
}

static int print_rule_json(const cs_rule *r)
{
    const cs_rule_spec *s = &r->spec;

    printf("{\"id\":%lld,\"action\":\"%s\",\"account\":", (long long)r->id,
           s->action == CS_RULE_DENY ? "deny" : "allow");
    cli_put_json_string(stdout, s->account);
    printf(",\"priority\":%lld,\"enabled\":%s,\"pin\":", (long long)s->priority,
           r->enabled ? "true" : "false");
    cli_put_json_string(stdout, s->pin_fp);
    printf(",\"subject\":");
    cli_put_json_string(stdout, s->subject);
    printf(",\"issuer\":");
    cli_put_json_string(stdout, s->issuer);
    printf(",\"subject_exact\":%s,\"issuer_exact\":%s", s->subject_exact ? "true" : "false",
           s->issuer_exact ? "true" : "false");
    printf(",\"san\":");
    put_list_json(s->san);
    printf(",\"eku\":");
    put_list_json(s->eku);
    printf(",\"policy\":");
    put_list_json(s->policy);
    printf(",\"case_sensitive\":%s,\"not_issued_before\":%s,\"strength\":\"weak\",\"note\":",
           s->case_sensitive ? "true" : "false",
           s->not_issued_before_created ? "\"created\"" : "null");
    cli_put_json_string(stdout, s->note);
    printf(",\"created\":");
    cli_put_json_time(stdout, r->created);
    putchar('}');
    return 0;
}

static int print_rule(const cs_rule *r, void *arg)
{
    return cli_listing_row(arg) ? print_rule_json(r) : print_rule_text(r);
}

static cs_status list_rules(cs_db *db, cli_listing *l, void *arg)
{
    (void)arg;
    return cs_rule_foreach(db, print_rule, l);
}

static int run_rule_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};

    return cli_run_listing(ctx, opts, argc, argv, &l, list_rules, NULL, NULL);
}

/* ---- rm / enable / disable ------------------------------------------------ */

typedef enum { RULE_REMOVE, RULE_DISABLE, RULE_ENABLE } rule_change;

static int parse_rule_id(const cli_ctx *ctx, const char *text, int64_t *id)
{
    if (*text == '\0' || strspn(text, "0123456789") != strlen(text) || strlen(text) > 18 ||
        (*id = strtoll(text, NULL, 10)) <= 0)
        return cli_usage_error(ctx, "'%s' is not a rule id", text);
    return CLI_CONTINUE;
}

static int change_rule(cli_ctx *ctx, int argc, char **argv, rule_change change)
{
    int force = 0;
    const cli_option opts[] = {{"force", NULL, &force}, CLI_OPTIONS_END};
    cli_positional pos;
    int64_t id = 0;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "ID")) != CLI_CONTINUE ||
        (rc = parse_rule_id(ctx, pos.args[0], &id)) != CLI_CONTINUE)
        return rc;
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    char source[CS_SOURCE_MAX];
    cs_status st = cli_owner_check(ctx, db, cs_rule_source(db, id, source), source, force);
    if (st == CS_OK) {
        st = change == RULE_REMOVE ? cs_rule_remove(db, id)
                                   : cs_rule_set_enabled(db, id, change == RULE_ENABLE);
        if (st != CS_OK)
            cli_store_fail(ctx, db);
    }
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        printf("%s rule %lld\n",
               change == RULE_REMOVE   ? "removed"
               : change == RULE_ENABLE ? "enabled"
                                       : "disabled",
               (long long)id);
    return rc;
}

static int run_rule_rm(cli_ctx *ctx, int argc, char **argv)
{
    return change_rule(ctx, argc, argv, RULE_REMOVE);
}

static int run_rule_enable(cli_ctx *ctx, int argc, char **argv)
{
    return change_rule(ctx, argc, argv, RULE_ENABLE);
}

static int run_rule_disable(cli_ctx *ctx, int argc, char **argv)
{
    return change_rule(ctx, argc, argv, RULE_DISABLE);
}

const cli_command cli_rule_subcommands[] = {
    {"add", "add a many-to-one rule", run_rule_add,
     "Usage: certstore rule add --pin FP (--account NAME | --deny) [--priority N]\n"
     "                          [--subject DN | --subject-exact DN]\n"
     "                          [--issuer DN | --issuer-exact DN] [--san TYPE:PATTERN]...\n"
     "                          [--eku OID]... [--policy OID]... [--case-sensitive]\n"
     "                          [--not-issued-before created] [--note TEXT]\n"
     "                          [--create-account] [--any]\n"
     "\n"
     "Map every certificate issued by the pinned CA FP that meets all the\n"
     "conditions to an account, or reject it (--deny). Rules are tried after\n"
     "one-to-one mappings, lowest priority first (then lowest id); the first\n"
     "rule that matches decides. Rules are weak mappings (KB5014754): servers\n"
     "with require_strong = yes refuse them (weak-mapping-refused).\n"
     "\n"
     "  --pin FP            the issuing CA (must be pinned; a unique prefix of\n"
     "                      its fingerprint will do)\n"
     "  --account NAME      accept as this account\n"
     "  --deny              reject (reason denied-by-rule)\n"
     "  --priority N        0..1000000, default 100\n"
     "  --subject DN        e.g. 'O=Acme,CN=gw-*': every ATTR=PATTERN must hold\n"
     "                      (CN O OU L ST C emailAddress serialNumber UID DC);\n"
     "                      RFC 4514 escapes; '*' and '?' are globs, '\\*' literal.\n"
     "                      An allow rule also needs every value of an attribute\n"
     "                      it names to match one of its patterns (CN=gw-* does\n"
     "                      not admit a subject that also has CN=admin); a deny\n"
     "                      rule matches when any value does\n"
     "  --subject-exact DN  the whole subject: the same attributes, RDNs and\n"
     "                      order as 'openssl x509 -nameopt RFC2253' prints,\n"
     "                      nothing extra (each value may still be a glob)\n"
     "  --issuer DN, --issuer-exact DN\n"
     "                      the same, on the certificate's issuer name\n"
     "  --san TYPE:PATTERN  DNS, email, URI, UPN (globs) or IP (exact); repeatable;\n"
     "                      some entry of that type must match. DNS is caseless\n"
     "                      without a trailing dot; IP ::ffff:a.b.c.d is a.b.c.d\n"
     "  --eku OID           e.g. clientAuth or 1.3.6.1.5.5.7.3.2; repeatable\n"
     "  --policy OID        certificate policy OID; repeatable. For --deny, a\n"
     "                      certificate without EKU or with anyExtendedKeyUsage\n"
     "                      has every EKU, and anyPolicy is every policy\n"
     "  --case-sensitive    compare code points exactly: no case folding and no\n"
     "                      normalisation (default: NFC and full Unicode case\n"
     "                      folding); DNS names stay caseless\n"
     "  --not-issued-before created\n"
     "                      reject certificates whose notBefore is earlier than\n"
     "                      this rule (reason issued-before-mapping)\n"
     "  --note TEXT         free text kept with the rule\n"
     "  --create-account    create the account if it does not exist\n"
     "  --any               an allow rule without any condition: it admits every\n"
     "                      certificate of the CA (refused without --any)\n"
     "\n"
     "Values are matched as parsed UTF-8 strings, never as a printed DN;\n"
     "'?' is one code point. A value certstore cannot read (invalid UTF-8, a\n"
     "NUL, T61String beyond ASCII, a duplicated or undecodable extension)\n"
     "never lets an allow rule match and always lets a deny rule match.\n"},
    {"ls", "list rules in evaluation order", run_rule_ls,
     "Usage: certstore rule ls [--json]\n\nList rules in evaluation order.\n"},
    {"rm", "remove a rule", run_rule_rm,
     "Usage: certstore rule rm ID [--force]\n\nRemove a rule.\n\n"
     "  --force   change it even when a directory sync owns it (the next sync puts\n"
     "            it back)\n"},
    {"enable", "enable a rule", run_rule_enable,
     "Usage: certstore rule enable ID [--force]\n\nEnable a rule.\n\n"
     "  --force   change it even when a directory sync owns it (the next sync puts\n"
     "            it back)\n"},
    {"disable", "disable a rule", run_rule_disable,
     "Usage: certstore rule disable ID [--force]\n\nDisable a rule: it is skipped.\n\n"
     "  --force   change it even when a directory sync owns it (the next sync puts\n"
     "            it back)\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_rule(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_rule = {
    "rule",
    "many-to-one rules: issuer pin + subject/SAN patterns -> account or deny",
    run_rule,
    "Usage: certstore rule add|ls|rm|enable|disable ...\n"
    "\n"
    "Many-to-one rules, like IIS's: every certificate of one pinned issuer\n"
    "that meets the conditions maps to one account, or is denied.\n"
    "\n"
    "  add      add a rule\n"
    "  ls       list rules in evaluation order\n"
    "  rm       remove a rule\n"
    "  enable   enable a rule\n"
    "  disable  disable a rule\n"
    "\n"
    "Run 'certstore rule SUBCOMMAND --help' for its options.\n",
};

static int run_rule(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_rule, cli_rule_subcommands, argc, argv);
}
