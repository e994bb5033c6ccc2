/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore pin: the NTAuth-like list of issuing CAs whose clients may be
 * accepted at all.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "cli.h"

#define PIN_USAGE                                                                                  \
    "Usage: certstore pin add CA.pem [--note TEXT]\n"                                              \
    "       certstore pin rm FINGERPRINT [--force]\n"                                              \
    "       certstore pin disable FINGERPRINT [--force]\n"                                         \
    "       certstore pin enable FINGERPRINT [--force]\n"                                          \
    "       certstore pin ls [--json]\n"                                                           \
    "       certstore pin revocation FINGERPRINT off|soft|hard|default [--grace DURATION]\n"

/* basicConstraints CA:TRUE exactly; keyUsage or v1 heuristics do not count. */
static int has_ca_basic_constraints(X509 *cert)
{
    uint32_t flags = X509_get_extension_flags(cert);
    return (flags & EXFLAG_BCONS) != 0 && (flags & EXFLAG_CA) != 0;
}

static cs_status add_pin(const cli_ctx *ctx, cs_db *db, X509 *ca, const char *note,
                         char fp[CS_FP_HEX_LEN + 1])
{
    cs_status st = cs_pin_add(db, ca, note, fp);
    if (st == CS_EXISTS) {
        cs_fp_of_cert(ca, fp);
        cli_fail(ctx, "already pinned: %s", fp);
    } else if (st != CS_OK) {
        cli_store_fail(ctx, db);
    }
    return st;
}

static int run_pin_add(cli_ctx *ctx, int argc, char **argv)
{
    const char *note = NULL;
    const cli_option opts[] = {{"note", &note, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE || (rc = cli_expect_args(ctx, &pos, 1, 1, "CA.pem")) != CLI_CONTINUE)
        return rc;

    const char *path = pos.args[0];
    X509 *ca = cli_read_one_cert(ctx, path);
    if (ca == NULL)
        return CLI_FAIL;
    if (!has_ca_basic_constraints(ca)) {
        X509_free(ca);
        return cli_fail(ctx, "%s: not a CA certificate (no basicConstraints CA:TRUE)", path);
    }
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL) {
        X509_free(ca);
        return CLI_FAIL;
    }
    char fp[CS_FP_HEX_LEN + 1] = "";
    cs_status st = add_pin(ctx, db, ca, note != NULL ? note : "", fp);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK) {
        char *subject = cli_subject_text(ca);
        printf("pinned %s ", fp);
        cli_put_text(stdout, subject != NULL ? subject : "?");
        putchar('\n');
        OPENSSL_free(subject);
        fflush(stdout);
        if ((X509_get_extension_flags(ca) & EXFLAG_SS) != 0)
            fprintf(stderr,
                    "certstore: note: %s is a self-signed root: pinning it admits the "
                    "client certificates it issues directly, not those of the "
                    "intermediate CAs under it (pin each of those)\n",
                    path);
    }
    X509_free(ca);
    return rc;
}

/* pin rm / disable / enable share everything but the store call. */
static int run_pin_change(cli_ctx *ctx, int argc, char **argv)
{
    cli_change change = cli_change_named(argv[0]);
    int force = 0;
    const cli_option opts[] = {{"force", NULL, &force}, CLI_OPTIONS_END};
    cli_positional pos;
    int rc = cli_parse(ctx, opts, argc, argv, &pos);
    if (rc != CLI_CONTINUE ||
        (rc = cli_expect_args(ctx, &pos, 1, 1, "FINGERPRINT")) != CLI_CONTINUE)
        return rc;
    char fp[CS_FP_HEX_LEN + 1];
    if ((rc = cli_pin_fp(ctx, "FINGERPRINT", pos.args[0], fp)) != CLI_CONTINUE)
        return rc;

    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    char source[CS_SOURCE_MAX];
    cs_status st = cli_owner_check(ctx, db, cs_pin_source(db, fp, source), source, force);
    if (st == CS_OK) {
        st = change == CLI_REMOVE ? cs_pin_remove(db, fp)
                                  : cs_pin_set_enabled(db, fp, change == CLI_ENABLE);
        if (st == CS_NOTFOUND)
            cli_fail(ctx, "no pin with fingerprint %s", fp);
        else if (st != CS_OK)
            cli_store_fail(ctx, db);
    }
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK)
        printf("%s pin %s\n", cli_change_done(change), fp);
    return rc;
}

static int print_pin(const cs_pin *pin, void *arg)
{
    if (cli_listing_row(arg)) {
        printf("{\"id\":%lld,\"fingerprint\":\"%s\",\"subject\":", (long long)pin->id, pin->fp);
        cli_put_json_string(stdout, pin->subject);
        printf(",\"not_after\":");
        cli_put_json_time(stdout, pin->not_after);
        printf(",\"enabled\":%s,\"note\":", pin->enabled ? "true" : "false");
        cli_put_json_string(stdout, pin->note != NULL ? pin->note : "");
        printf(",\"created\":");
        cli_put_json_time(stdout, pin->created);
        printf(",\"source\":");
        cli_put_json_string(stdout, pin->source);
        putchar('}');
        return 0;
    }
    printf("%s %-8s not-after=", pin->fp, pin->enabled ? "enabled" : "disabled");
    cli_put_text_time(stdout, pin->not_after);
    printf(" subject=");
    cli_put_text(stdout, pin->subject);
    if (pin->note != NULL && *pin->note != '\0') {
        printf(" note=");
        cli_put_text(stdout, pin->note);
    }
    if (pin->source != NULL) {
        printf(" source=");
        cli_put_text(stdout, pin->source);
    }
    putchar('\n');
    return 0;
}

static cs_status list_pins(cs_db *db, cli_listing *l, void *arg)
{
    (void)arg;
    return cs_pin_foreach(db, print_pin, l);
}

static int run_pin_ls(cli_ctx *ctx, int argc, char **argv)
{
    cli_listing l = {0};
    const cli_option opts[] = {{"json", NULL, &l.json}, CLI_OPTIONS_END};

    return cli_run_listing(ctx, opts, argc, argv, &l, list_pins, NULL, NULL);
}

/* N followed by s, m, h or d; 0 if not that or beyond ten years. */
static int parse_duration(const char *text, int64_t *seconds)
{
    char *end = NULL;
    long long n;
    int64_t unit;

    if (text == NULL || *text < '0' || *text > '9')
        return 0;
    errno = 0;
    n = strtoll(text, &end, 10);
    if (errno != 0 || end == NULL || end[0] == '\0' || end[1] != '\0')
        return 0;
    switch (*end) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        return 0;
    }
    if (n < 0 || n > 3650LL * 86400 / unit)
        return 0;
    *seconds = n * unit;
    return 1;
}

static int run_pin_revocation(cli_ctx *ctx, int argc, char **argv)
{
    const char *grace_text = NULL;
    const cli_option opts[] = {{"grace", &grace_text, NULL}, CLI_OPTIONS_END};
    cli_positional pos;
    cs_revocation_policy policy = CS_REVOCATION_DEFAULT;
    int64_t grace = CS_TIME_NONE;
    char fp[CS_FP_HEX_LEN + 1];
    int rc = cli_parse(ctx, opts, argc, argv, &pos);

    if (rc != CLI_CONTINUE ||
        (rc = cli_expect_args(ctx, &pos, 2, 2, pos.count == 0 ? "FINGERPRINT" : "POLICY")) !=
            CLI_CONTINUE)
        return rc;
    if (!cs_fp_normalise(pos.args[0], fp))
        return cli_usage_error(ctx, "'%s' is not a SHA-256 fingerprint (64 hex digits)",
                               pos.args[0]);
    if (strcmp(pos.args[1], "default") != 0 && !cs_revocation_policy_parse(pos.args[1], &policy))
        return cli_usage_error(ctx, "'%s' is not a revocation policy (off, soft, hard, default)",
                               pos.args[1]);
    if (grace_text != NULL && !parse_duration(grace_text, &grace))
        return cli_usage_error(ctx,
                               "--grace: '%s' is not a duration (N followed by s, m, h or d; "
                               "at most 3650d)",
                               grace_text);
    cs_db *db = cli_begin_write(ctx);
    if (db == NULL)
        return CLI_FAIL;
    cs_status st = cs_pin_set_revocation(db, fp, policy, grace);
    if (st == CS_NOTFOUND)
        cli_fail(ctx, "no pin with fingerprint %s", fp);
    else if (st != CS_OK)
        cli_store_fail(ctx, db);
    rc = cli_end_write(ctx, db, st);
    if (rc == CLI_OK) {
        printf("pin %s revocation=%s grace=", fp, cs_revocation_policy_name(policy));
        if (grace == CS_TIME_NONE)
            printf("default\n");
        else
            printf("%llds\n", (long long)grace);
    }
    return rc;
}

const cli_command cli_pin_subcommands[] = {
    {"add", "pin an issuing CA", run_pin_add,
     "Usage: certstore pin add CA.pem [--note TEXT]\n"
     "\n"
     "Pin an issuing CA certificate (PEM or DER). Clients whose verified chain\n"
     "has this CA as the leaf's issuer may be accepted. The certificate must\n"
     "have basicConstraints CA:TRUE.\n"
     "\n"
     "  --note TEXT   free text kept with the pin\n"},
    {"rm", "remove a pin", run_pin_change,
     "Usage: certstore pin rm FINGERPRINT [--force]\n"
     "\n"
     "Remove the pin with this SHA-256 fingerprint (hex, any case, colons allowed)\n"
     "or a unique prefix of it (at least 4 hex digits; an ambiguous one is\n"
     "refused, listing the candidates).\n"
     "\n"
     "  --force   change it even when a directory sync owns it (the next sync\n"
     "            puts it back)\n"},
    {"disable", "disable a pin, keeping it", run_pin_change,
     "Usage: certstore pin disable FINGERPRINT [--force]\n"
     "\n"
     "Disable the pin: its clients are rejected with pin-disabled. FINGERPRINT\n"
     "may be a unique prefix (see 'pin rm').\n"
     "\n"
     "  --force   change it even when a directory sync owns it (the next sync\n"
     "            puts it back)\n"},
    {"enable", "enable a disabled pin", run_pin_change,
     "Usage: certstore pin enable FINGERPRINT [--force]\n"
     "\n"
     "Enable a disabled pin again. FINGERPRINT may be a unique prefix (see\n"
     "'pin rm').\n"
     "\n"
     "  --force   change it even when a directory sync owns it (the next sync\n"
     "            puts it back)\n"},
    {"ls", "list pins", run_pin_ls,
     "Usage: certstore pin ls [--json]\n"
     "\n"
     "List the pinned CAs. One that 'certstore sync' made shows\n"
     "source=sync:BASE-DN (JSON: \"source\", null when pinned locally).\n"
     "\n"
     "  --json   one JSON array of objects\n"},
    {"revocation", "set a pin's revocation policy", run_pin_revocation,
     "Usage: certstore pin revocation FINGERPRINT off|soft|hard|default [--grace DURATION]\n"
     "\n"
     "Set how the pin's CRL (certstore crl) is enforced. A listed serial is\n"
     "rejected with revoked under soft and hard, whatever the CRL's age.\n"
     "  off      the CRL is not consulted\n"
     "  soft     enforce the CRL; past its nextUpdate plus the grace, accept but\n"
     "           log revocation=stale, and doctor and expiring fail\n"
     "  hard     reject with revocation-unknown when there is no CRL current\n"
     "           within the grace\n"
     "  default  soft once the pin has a CRL, off before\n"
     "\n"
     "  --grace DURATION   time after nextUpdate a CRL still counts as current:\n"
     "                     N followed by s, m, h or d (default 7d)\n"
     "\n"
     "Any change makes sessions decide again at their next resumption.\n"},
    {NULL, NULL, NULL, NULL},
};

static int run_pin(cli_ctx *ctx, int argc, char **argv);

const cli_command cli_cmd_pin = {
    "pin",
    "manage pinned issuing CAs (add, rm, disable, enable, ls, revocation)",
    run_pin,
    PIN_USAGE "\n"
              "Manage the pinned issuing CAs. A client chain is accepted only when the\n"
              "leaf's issuer, as OpenSSL verified it, is pinned by SHA-256 fingerprint.\n"
              "Run 'certstore pin SUBCOMMAND --help' for details.\n",
};

static int run_pin(cli_ctx *ctx, int argc, char **argv)
{
    return cli_dispatch(ctx, &cli_cmd_pin, cli_pin_subcommands, argc, argv);
}
