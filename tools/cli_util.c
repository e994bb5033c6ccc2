/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Messages, option parsing and subcommand dispatch shared by all commands.
 *
 * A small parser of our own rather than getopt_long: options may follow
 * positional arguments ("map add CERT.pem --account NAME"), and every
 * usage error must be one line naming the command, which getopt's own
 * messages do not do.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

__attribute__((format(printf, 3, 0))) static void vmessage(const cli_ctx *ctx, const char *kind,
                                                           const char *fmt, va_list ap)
{
    fprintf(stderr, "certstore: %s: %s", ctx->name, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_fail(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(ctx, "", fmt, ap);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(ctx, "", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'certstore %s --help'.\n", ctx->name);
    return CLI_USAGE;
}

void cli_warn(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(ctx, "warning: ", fmt, ap);
    va_end(ap);
}

static const cli_option *find_option(const cli_option *opts, const char *name, size_t len)
{
    for (; opts->name != NULL; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

/* --db is global but also accepted after the command, where users type it. */
static int parse_db_option(cli_ctx *ctx, const char *value)
{
    if (*value == '\0')
        return cli_usage_error(ctx, "empty database path");
    ctx->db_path = value;
    return CLI_CONTINUE;
}

/* One "--name", "--name=value" or "--name value" at argv[*i]. */
static int parse_one_option(cli_ctx *ctx, const cli_option *opts, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    const cli_option *opt = find_option(opts, name, name_len);
    int is_db = opt == NULL && name_len == 2 && strncmp(name, "db", 2) == 0;

    if (opt == NULL && name_len == 16 && strncmp(name, "allow-unsafe-dir", 16) == 0) {
        if (eq != NULL)
            return cli_usage_error(ctx, "option '--allow-unsafe-dir' takes no value");
        ctx->allow_unsafe_dir = 1;
        return CLI_CONTINUE;
    }
    int is_wait = opt == NULL && name_len == 4 && strncmp(name, "wait", 4) == 0;
    if (opt == NULL && !is_db && !is_wait)
        return cli_usage_error(ctx, "unknown option '%.*s'", (int)(name_len + 2), arg);
    if (opt != NULL && opt->flag != NULL) {
        if (eq != NULL)
            return cli_usage_error(ctx, "option '--%s' takes no value", opt->name);
        *opt->flag = 1;
        return CLI_CONTINUE;
    }
    const char *value = eq != NULL ? eq + 1 : NULL;
    if (value == NULL) {
        if (*i + 1 >= argc)
            return cli_usage_error(ctx, "missing value for --%.*s", (int)name_len, name);
        value = argv[++*i];
    }
    if (is_db)
        return parse_db_option(ctx, value);
    if (is_wait)
        return cli_wait_option(ctx, "--wait", value);
    *opt->value = value;
    return CLI_CONTINUE;
}

int cli_parse(cli_ctx *ctx, const cli_option *opts, int argc, char **argv, cli_positional *pos)
{
    int only_positional = 0;
    pos->count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_positional && strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (!only_positional && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)) {
            fputs(ctx->usage, stdout);
            return CLI_OK;
        }
        if (!only_positional && strncmp(arg, "--", 2) == 0) {
            int rc = parse_one_option(ctx, opts, argc, argv, &i);
            if (rc != CLI_CONTINUE)
                return rc;
            continue;
        }
        /* "-" alone is a positional (stdin); other single-dash words are not options we know. */
        if (!only_positional && arg[0] == '-' && arg[1] != '\0')
            return cli_usage_error(ctx, "unknown option '%s'", arg);
        if (pos->count == CLI_MAX_POSITIONAL)
            return cli_usage_error(ctx, "too many arguments");
        pos->args[pos->count++] = argv[i];
    }
    return CLI_CONTINUE;
}

int cli_expect_args(const cli_ctx *ctx, const cli_positional *pos, int min, int max,
                    const char *missing_name)
{
    if (pos->count < min)
        return cli_usage_error(ctx, "missing %s", missing_name);
    if (pos->count > max)
        return cli_usage_error(ctx, "unexpected argument '%s'", pos->args[max]);
    return CLI_CONTINUE;
}

static const cli_command *find_sub(const cli_command *subs, const char *name)
{
    for (; subs->name != NULL; subs++)
        if (strcmp(subs->name, name) == 0)
            return subs;
    return NULL;
}

int cli_dispatch(cli_ctx *ctx, const cli_command *group, const cli_command *subs, int argc,
                 char **argv)
{
    if (argc < 2)
        return cli_usage_error(ctx, "missing subcommand");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(group->usage, stdout);
        return CLI_OK;
    }
    const cli_command *sub = find_sub(subs, argv[1]);
    if (sub == NULL) {
        if (argv[1][0] == '-')
            return cli_usage_error(ctx, "unknown option '%s'", argv[1]);
        return cli_usage_error(ctx, "unknown subcommand '%s'", argv[1]);
    }
    /* Lives until the process ends: messages of the subcommand use it. */
    static char name[64];
    snprintf(name, sizeof(name), "%s %s", group->name, sub->name);
    ctx->name = name;
    ctx->usage = sub->usage;
    return sub->run(ctx, argc - 1, argv + 1);
}

int cli_parse_time_option(const cli_ctx *ctx, const char *option, const char *text, int64_t *out)
{
    if (!cs_time_parse(text, out)) {
        cli_usage_error(ctx, "%s: '%s' is not a date (YYYY-MM-DD) or RFC 3339 time", option, text);
        return 0;
    }
    return 1;
}

cli_change cli_change_named(const char *subcommand)
{
    if (strcmp(subcommand, "enable") == 0)
        return CLI_ENABLE;
    return strcmp(subcommand, "disable") == 0 ? CLI_DISABLE : CLI_REMOVE;
}

const char *cli_change_done(cli_change change)
{
    return change == CLI_REMOVE ? "removed" : change == CLI_ENABLE ? "enabled" : "disabled";
}

/* --wait SECONDS (and CERTSTORE_WAIT): how long a write waits for another writer. */
int cli_wait_parse(const char *value, int *ms)
{
    char *end = NULL;
    errno = 0;
    double seconds = strtod(value, &end);
    if (*value == '\0' || *end != '\0' || errno != 0 || !(seconds >= 0) ||
        seconds > CLI_WAIT_MAX_SECONDS)
        return 0;
    *ms = (int)(seconds * 1000.0 + 0.5);
    return 1;
}

int cli_wait_option(cli_ctx *ctx, const char *what, const char *value)
{
    if (!cli_wait_parse(value, &ctx->wait_ms))
        return cli_usage_error(ctx, "%s: '%s' is not a number of seconds from 0 to %d", what, value,
                               CLI_WAIT_MAX_SECONDS);
    return CLI_CONTINUE;
}
