#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The generated man pages cannot drift from the CLI: certstore(1) must hold
# every command's and subcommand's --help exactly, one subsection each, and
# certstore-provider(7) must document every openssl.cnf key of the example
# configuration and every reason token the CLI names. Both must render
# without warnings from groff.
#
#   test_manpage.sh CERTSTORE_BIN MAN_BUILD_DIR SOURCE_DIR
set -uo pipefail

bin=${1:?usage: test_manpage.sh CERTSTORE_BIN MAN_BUILD_DIR SOURCE_DIR}
mandir=${2:?}
src=${3:?}
page1=$mandir/certstore.1
page7=$mandir/certstore-provider.7

WORK=$(mktemp -d /tmp/certstore-man-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

fails=0
n=0
diag() { printf '# %s\n' "$*"; }
check() {
    local desc=$1
    shift
    n=$((n + 1))
    if "$@"; then
        printf 'ok %d - %s\n' "$n" "$desc"
        return 0
    fi
    printf 'not ok %d - %s\n' "$n" "$desc"
    fails=$((fails + 1))
    return 1
}

# Commands as the overview lists them.
commands() {
    "$bin" --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'
}
# A group's subcommands as its help names them: in "certstore GROUP SUB"
# usage lines, in "add|ls|rm" alternatives, or in an indented list.
subcommands() {
    "$bin" "$1" --help >"$WORK/group-help" || return 0
    {
        sed -n "s/^\(Usage:\)\{0,1\} *certstore $1 \([a-z][a-z-]*\)\( .*\)\{0,1\}\$/\2/p" \
            "$WORK/group-help"
        sed -n "s/^Usage: certstore $1 \([a-z|-]*|[a-z|-]*\) .*/\1/p" "$WORK/group-help" | tr '|' '\n'
        if grep -q SUBCOMMAND "$WORK/group-help"; then
            sed -n 's/^  \([a-z][a-z-]*\)  \{1,\}[a-z].*/\1/p' "$WORK/group-help"
        fi
    } | awk '!seen[$0]++'
}
# What mkman.sh makes the page from: "pin", "pin add", ...
listed() {
    "$bin" --commands
}

# The body of subsection "certstore WORDS" with the roff escapes undone.
page_section() {
    awk -v want=".SS \"certstore $*\"" '
        $0 == want { on = 1; next }
        on && /^\.(SS|SH)/ { exit }
        on && !/^\.(nf|fi)$/ { print }' "$page1" |
        sed -e 's/^\\&//' -e 's/\\-/-/g' -e 's/\\e/\\/g'
}

section_matches_help() {
    "$bin" "$@" --help >"$WORK/help" || { diag "certstore $* --help failed"; return 1; }
    page_section "$@" >"$WORK/section"
    if ! diff -u "$WORK/help" "$WORK/section" >"$WORK/diff"; then
        diag "certstore $*: page differs from --help:"
        sed 's/^/#   /' "$WORK/diff" | head -n 20
        return 1
    fi
}

every_command_documented() {
    local words ok=0 expected=0 found
    listed >"$WORK/listed" || { diag "certstore --commands failed"; return 1; }
    [ -s "$WORK/listed" ] || { diag "certstore --commands lists nothing"; return 1; }
    while IFS= read -r words; do
        expected=$((expected + 1))
        # shellcheck disable=SC2086 # "map add" is two words
        section_matches_help $words || ok=1
    done <"$WORK/listed"
    found=$(grep -c '^\.SS "certstore ' "$page1")
    [ "$found" -eq "$expected" ] || { diag "$found subsections, $expected commands"; ok=1; }
    return $ok
}

# Whatever the overview and the groups' help name is in the list and the
# page: a subcommand documented only in its group's help is a gap.
every_named_command_listed() {
    local cmd sub ok=0
    listed >"$WORK/listed" || { diag "certstore --commands failed"; return 1; }
    for cmd in $(commands); do
        grep -qxF "$cmd" "$WORK/listed" || { diag "$cmd not in --commands"; ok=1; }
        for sub in $(subcommands "$cmd"); do
            grep -qxF "$cmd $sub" "$WORK/listed" || { diag "$cmd $sub not in --commands"; ok=1; }
            grep -qxF ".SS \"certstore $cmd $sub\"" "$page1" ||
                { diag "certstore $cmd $sub has no subsection"; ok=1; }
        done
    done
    return $ok
}

overview_in_page() {
    "$bin" --help | sed -e 's/-/\\-/g' >"$WORK/overview"
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        grep -qxF -- "$line" "$page1" || { diag "overview line missing: $line"; return 1; }
    done <"$WORK/overview"
}

version_in_pages() {
    local version
    version=$("$bin" --version | awk '{print $2}')
    grep -q "^\.TH CERTSTORE 1 .*\"certstore $version\"" "$page1" &&
        grep -q "^\.TH CERTSTORE\\\\-PROVIDER 7 .*\"certstore $version\"" "$page7"
}

renders_cleanly() {
    command -v groff >/dev/null || { diag "groff not installed"; return 1; }
    local page out ok=0
    for page in "$page1" "$page7"; do
        out=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
        [ -z "$out" ] || { diag "$page: $out"; ok=1; }
    done
    return $ok
}

# Keys of [certstore_sect] in openssl.cnf.example, commented out or not.
config_keys() {
    awk '/^\[certstore_sect\]/ { on = 1; next } on && /^\[/ { exit }
         on { sub(/^# ?/, ""); if (match($0, /^[a-z_]+ = /)) print substr($0, 1, RLENGTH - 3) }' \
        "$src/openssl.cnf.example" | sort -u
}

provider_page_documents_keys() {
    local key ok=0
    [ -n "$(config_keys)" ] || { diag "no keys found in openssl.cnf.example"; return 1; }
    for key in $(config_keys); do
        grep -q "^\.BI\{0,1\}R\{0,1\} $key\( \|$\)" "$page7" ||
            { diag "key $key not documented"; ok=1; }
    done
    return $ok
}

# Reason tokens as certstore check --help lists them.
reason_tokens() {
    "$bin" check --help | awk '/REASON is one of/ { on = 1; sub(/.*one of/, ""); }
                               on { print } on && /\.$/ { exit }' |
        tr ',. ' '\n' | grep -E '^[a-z]+(-[a-z]+)+$'
}

provider_page_documents_reasons() {
    local token ok=0
    [ -n "$(reason_tokens)" ] || { diag "no reason tokens in certstore check --help"; return 1; }
    for token in $(reason_tokens) config-error; do
        grep -q "^\.BR\{0,1\} ${token//-/\\\\-}\( \|$\)" "$page7" ||
            { diag "reason $token not documented"; ok=1; }
    done
    return $ok
}

check "certstore(1) holds every command's --help verbatim" every_command_documented
check "every subcommand a group's help names is listed and documented" every_named_command_listed
check "certstore(1) holds the overview" overview_in_page
check "both pages carry the CLI's version" version_in_pages
check "both pages render without groff warnings" renders_cleanly
check "certstore-provider(7) documents every openssl.cnf key" provider_page_documents_keys
check "certstore-provider(7) documents every reason token" provider_page_documents_reasons

echo "1..$n"
[ "$fails" -eq 0 ]
