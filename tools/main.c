/* SPDX-License-Identifier: Apache-2.0 */
/*
 * certstore: the admin CLI for the certstore pin store and account mappings.
 *
 *   certstore [--db PATH] [--help] [--version] COMMAND ...
 *
 * main() only resolves the database path, records the command line for the
 * change log and dispatches through the command table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "cli.h"

extern const cli_command cli_cmd_doctor;   /* tools/cmd_doctor.c */
extern const cli_command cli_cmd_rule;     /* tools/cmd_rule.c */
extern const cli_command cli_cmd_expiring; /* tools/cmd_expiring.c */
extern const cli_command cli_cmd_crl;      /* tools/cmd_crl.c */
extern const cli_command cli_cmd_sync;     /* tools/cmd_sync.c */

static const cli_command *const commands[] = {
    &cli_cmd_init,   &cli_cmd_pin,      &cli_cmd_account, &cli_cmd_map,   &cli_cmd_check,
    &cli_cmd_import, &cli_cmd_export,   &cli_cmd_log,     &cli_cmd_stats, &cli_cmd_doctor,
    &cli_cmd_rule,   &cli_cmd_expiring, &cli_cmd_crl,     &cli_cmd_sync,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_overview(FILE *out)
{
    fputs(
        "Usage: certstore [--db PATH] [--allow-unsafe-dir] [--wait SECONDS] [--help] [--version]\n"
        "                 COMMAND [ARGS...]\n"
        "\n"
        "Administer the certstore pin store (issuing CAs that may vouch for\n"
        "clients) and the mappings from client certificates to accounts.\n"
        "\n"
        "Commands:\n",
        out);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\n"
          "Options:\n"
          "  --db PATH   database file (default: $CERTSTORE_DB, else " CERTSTORE_DEFAULT_DB ")\n"
          "  --allow-unsafe-dir\n"
          "              write even where the database's directory (or one above it)\n"
          "              is writable by others or owned by another user; also\n"
          "              CERTSTORE_ALLOW_UNSAFE_DIR=1. Links are never followed.\n"
          "  --wait SECONDS\n"
          "              how long a command waits for a lock another writer holds\n"
          "              (an import, say) before it gives up, naming the holder;\n"
          "              0 to 3600, default 2, or CERTSTORE_WAIT. Like --db, it may\n"
          "              also follow the command.\n"
          "  --help      show this help, or a command's help after the command\n"
          "  --version   show the version\n"
          "  --commands  list every command and subcommand, one per line\n"
          "\n"
          "Exit status: 0 success (check: accepted), 1 failure (check: rejected),\n"
          "2 usage error. Run 'certstore COMMAND --help' for a command's options.\n",
          out);
}

/* what, then the offending word in quotes when there is one. */
static int top_usage_error(const char *what, const char *word)
{
    if (word != NULL)
        fprintf(stderr, "certstore: %s '%s'\n", what, word);
    else
        fprintf(stderr, "certstore: %s\n", what);
    fputs("Try 'certstore --help'.\n", stderr);
    return CLI_USAGE;
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

/* Characters that need no shell quoting in the recorded command line. */
static int is_shell_safe(const char *s)
{
    if (*s == '\0')
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     "@%+=:,./_-") == strlen(s);
}

/*
 * The command line as the operator typed it, shell-quoted where needed so
 * the change log shows exactly which arguments were given.
 */
static char *join_command_line(int argc, char **argv)
{
    size_t len = sizeof("certstore");
    for (int i = 0; i < argc; i++)
        len += 3 + 4 * strlen(argv[i]);
    char *line = malloc(len);
    if (line == NULL)
        return NULL;
    char *p = line;
    p += sprintf(p, "certstore");
    for (int i = 0; i < argc; i++) {
        *p++ = ' ';
        if (is_shell_safe(argv[i])) {
            p = stpcpy(p, argv[i]);
            continue;
        }
        *p++ = '\'';
        for (const char *s = argv[i]; *s != '\0'; s++) {
            if (*s == '\'')
                p = stpcpy(p, "'\\''");
            else
                *p++ = *s;
        }
        *p++ = '\'';
    }
    *p = '\0';
    return line;
}

static const char *default_db_path(void)
{
    const char *env = getenv("CERTSTORE_DB");
    return env != NULL && *env != '\0' ? env : CERTSTORE_DEFAULT_DB;
}

/* The groups' subcommand tables, the ones cli_dispatch runs. */
static const struct {
    const cli_command *group;
    const cli_command *subs;
} groups[] = {
    {&cli_cmd_pin, cli_pin_subcommands},
    {&cli_cmd_account, cli_account_subcommands},
    {&cli_cmd_map, cli_map_subcommands},
    {&cli_cmd_rule, cli_rule_subcommands},
    {&cli_cmd_crl, cli_crl_subcommands},
};

/* Every command and subcommand, one per line: the man page is made from this list. */
static void print_commands(FILE *out)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(out, "%s\n", commands[i]->name);
        for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++)
            for (const cli_command *sub = groups[g].subs;
                 groups[g].group == commands[i] && sub->name != NULL; sub++)
                fprintf(out, "%s %s\n", commands[i]->name, sub->name);
    }
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {.db_path = default_db_path(), .name = "certstore", .wait_ms = -1};
    const char *unsafe_env = getenv("CERTSTORE_ALLOW_UNSAFE_DIR");
    const char *wait_env = getenv("CERTSTORE_WAIT");

    if (wait_env != NULL && *wait_env != '\0' && !cli_wait_parse(wait_env, &ctx.wait_ms))
        return top_usage_error("CERTSTORE_WAIT is not a number of seconds from 0 to 3600:",
                               wait_env);

    ctx.allow_unsafe_dir =
        unsafe_env != NULL && *unsafe_env != '\0' && strcmp(unsafe_env, "0") != 0;
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_overview(stdout);
            return CLI_OK;
        } else if (strcmp(arg, "--commands") == 0) {
            print_commands(stdout);
            return CLI_OK;
        } else if (strcmp(arg, "--version") == 0) {
            printf("certstore %s\n", CERTSTORE_VERSION);
            return CLI_OK;
        } else if (strcmp(arg, "--db") == 0) {
            if (i + 1 >= argc)
                return top_usage_error("missing value for", arg);
            ctx.db_path = argv[++i];
        } else if (strncmp(arg, "--db=", 5) == 0) {
            ctx.db_path = arg + 5;
        } else if (strcmp(arg, "--allow-unsafe-dir") == 0) {
            ctx.allow_unsafe_dir = 1;
        } else if (strcmp(arg, "--wait") == 0 || strncmp(arg, "--wait=", 7) == 0) {
            if (arg[6] == '\0' && i + 1 >= argc)
                return top_usage_error("missing value for", arg);
            const char *value = arg[6] == '=' ? arg + 7 : argv[++i];
            if (!cli_wait_parse(value, &ctx.wait_ms))
                return top_usage_error("--wait is not a number of seconds from 0 to 3600:", value);
        } else {
            return top_usage_error("unknown option", arg);
        }
    }
    if (i >= argc)
        return top_usage_error("missing COMMAND", NULL);
    if (*ctx.db_path == '\0')
        return top_usage_error("empty database path", NULL);

    const cli_command *cmd = find_command(argv[i]);
    if (cmd == NULL)
        return top_usage_error("unknown command", argv[i]);

    char *command_line = join_command_line(argc - 1, argv + 1);
    if (command_line == NULL) {
        fputs("certstore: out of memory\n", stderr);
        return CLI_FAIL;
    }
    ctx.command_line = command_line;
    ctx.name = cmd->name;
    ctx.usage = cmd->usage;
    int status = cmd->run(&ctx, argc - i, argv + i);
    free(command_line);
    ERR_clear_error();
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("certstore: error writing standard output\n", stderr);
        return CLI_FAIL;
    }
    return status;
}
