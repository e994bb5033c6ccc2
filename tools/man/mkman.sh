#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Generate certstore(1) from the built CLI's own help, so the page and
# `certstore ... --help` cannot drift: the usage strings in tools/cmd_*.c
# are the only source of every command's and option's description.
#
#   mkman.sh CERTSTORE_BIN TEMPLATE VERSION DATE OUTPUT
#
# TEMPLATE (certstore.1.in) holds the fixed sections; a line that is exactly
# @COMMANDS@ is replaced by one subsection per command and subcommand, each
# holding that command's --help verbatim. The list comes from
# `certstore --commands`, which walks the same command and subcommand
# tables that run them: a new command or subcommand appears here with no
# change to this script.
set -eu

if [ $# -ne 5 ]; then
    echo "usage: mkman.sh CERTSTORE_BIN TEMPLATE VERSION DATE OUTPUT" >&2
    exit 2
fi
bin=$1 template=$2 version=$3 date=$4 output=$5

# Help text as preformatted roff: escape backslashes, minus signs, and
# protect lines that would start with a control character.
roff_verbatim() {
    sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\([.']\)/\\\\\&\1/"
}

# "pin", "pin add", ...: one command or subcommand per line.
commands() {
    "$bin" --commands
}

# .SS heading and the help of one command (words as arguments).
help_section() {
    help=$("$bin" "$@" --help) # a command whose help fails fails the build
    printf '.SS "certstore %s"\n' "$*"
    printf '.nf\n'
    printf '%s\n' "$help" | roff_verbatim
    printf '.fi\n'
}

emit_commands() {
    cmds=$(commands)
    [ -n "$cmds" ] || { echo "mkman.sh: no commands in '$bin --commands'" >&2; exit 1; }
    printf '%s\n' "$cmds" | while IFS= read -r words; do
        # shellcheck disable=SC2086 # "map add" is two words
        help_section $words
    done
}

emit_overview() {
    help=$("$bin" --help)
    printf '.PP\n.nf\n'
    printf '%s\n' "$help" | roff_verbatim
    printf '.fi\n'
}

# Fail if the binary cannot even show its help: an empty page is worse
# than a failed build.
"$bin" --help >/dev/null

generate() {
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
        @COMMANDS@) emit_commands ;;
        @OVERVIEW@) emit_overview ;;
        *)
            printf '%s\n' "$line" | sed -e "s/@VERSION@/$version/g" -e "s/@DATE@/$date/g"
            ;;
        esac
    done <"$template"
}

# Written aside and renamed, so a failure never leaves a partial page that
# make would take as up to date.
generate >"$output.tmp"
mv -f "$output.tmp" "$output"
