# SPDX-License-Identifier: Apache-2.0
# bash completion for certstore(1)
#
# Everything comes from the installed binary's own --help, so a command or
# option added to the CLI completes with no change here: commands from the
# "Commands:" list, a group's subcommands from its "certstore GROUP SUB"
# usage lines, options from the --help text of the command being typed, and
# the values of "--opt a|b|c" from the usage line. Fingerprints and account
# names are read from the database (`pin ls --json`, `account ls --json`)
# with the --db the command line gives.

# _certstore_help WORDS...: the help text, cached per command line prefix.
_certstore_help()
{
    local key="$_certstore_bin $*"
    if [[ ${_certstore_help_key-} != "$key" ]]; then
        _certstore_help_text=$(command "$_certstore_bin" "$@" --help 2>/dev/null)
        _certstore_help_key=$key
    fi
    printf '%s\n' "$_certstore_help_text"
}

_certstore_commands()
{
    _certstore_help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'
}

# A group's subcommands, from the list the man page is made from too.
_certstore_subcommands()
{
    command "$_certstore_bin" --commands 2>/dev/null | sed -n "s/^$1 \([a-z][a-z-]*\)\$/\1/p"
}

_certstore_options()
{
    _certstore_help "$@" | grep -o -- '--[a-z][a-z-]*' | sort -u
}

# Values spelled in the usage as "--opt a|b|c" (or listed for --kind).
_certstore_option_values()
{
    local opt=$1
    shift
    case $opt in
    --kind) echo "cert issuer-serial ski spki" ;;
    *) _certstore_help "$@" | grep -o -- "$opt [a-z|-]*|[a-z|-]*" | head -n 1 |
        cut -d' ' -f2 | tr '|' ' ' ;;
    esac
}

_certstore_db_json()
{
    command "$_certstore_bin" "${_certstore_db_args[@]}" "$@" --json 2>/dev/null
}

_certstore_fingerprints()
{
    _certstore_db_json pin ls | grep -o '"fingerprint":"[0-9a-f]*"' | cut -d'"' -f4
}

# Account names that need no quoting on a command line.
_certstore_accounts()
{
    _certstore_db_json account ls | grep -o '"name":"[A-Za-z0-9._@+=:,/-]*"' | cut -d'"' -f4
}

# Offer the words of $1 that start with the current word.
_certstore_reply()
{
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
}

_certstore()
{
    local cur prev words cword
    _init_completion -n =: 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    }
    _certstore_bin=${words[0]}
    _certstore_db_args=()

    # Global options, then the command and, for a group, its subcommand.
    local i=1 cmd="" sub=""
    while ((i < cword)); do
        case ${words[i]} in
        --db) _certstore_db_args=(--db "${words[i + 1]}"); ((i += 2)); continue ;;
        --db=*) _certstore_db_args=("${words[i]}") ;;
        -*) ;;
        *)
            if [[ -z $cmd ]]; then
                cmd=${words[i]}
            elif [[ -z $sub ]] && _certstore_subcommands "$cmd" | grep -qx -- "${words[i]}"; then
                sub=${words[i]}
            fi
            ;;
        esac
        ((i++))
    done

    if [[ $prev == --db ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
    fi
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _certstore_reply "--db --allow-unsafe-dir --wait --help --version --commands"
        else
            _certstore_reply "$(_certstore_commands)"
        fi
        return
    fi

    local subs
    subs=$(_certstore_subcommands "$cmd")
    if [[ -n $subs && -z $sub ]]; then
        _certstore_reply "$subs --help"
        return
    fi
    local path=("$cmd")
    [[ -n $sub ]] && path+=("$sub")

    case $prev in
    --account)
        _certstore_reply "$(_certstore_accounts)"
        return
        ;;
    --pin)
        _certstore_reply "$(_certstore_fingerprints)"
        return
        ;;
    --kind | --format)
        _certstore_reply "$(_certstore_option_values "$prev" "${path[@]}")"
        return
        ;;
    --note | --since | --at | --not-before | --not-after | --url | --timeout | --max-size)
        return # free text, a time, a URL or a number
        ;;
    esac

    if [[ $cur == -* ]]; then
        _certstore_reply "$(_certstore_options "${path[@]}") --db --help"
        return
    fi
    case "$cmd $sub" in
    "pin rm" | "pin disable" | "pin enable" | "crl rm")
        _certstore_reply "$(_certstore_fingerprints)"
        ;;
    "account disable" | "account enable" | "account rm")
        _certstore_reply "$(_certstore_accounts)"
        ;;
    *)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur") # certificate files, CSV, chains
        compopt -o filenames 2>/dev/null
        ;;
    esac
}
complete -F _certstore certstore
