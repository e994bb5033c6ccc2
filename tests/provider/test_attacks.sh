#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hostile strings through the certstore CLI, the way an operator or a
# partner-supplied import file would bring them in: account names and notes
# shaped like SQL, shell and log injection (quotes, newlines, escape
# sequences, NUL, 64 KiB, invalid UTF-8). Each must be refused or stored
# verbatim, and printed safely: one line per row in text output (control
# bytes and invalid UTF-8 escaped), valid JSON that decodes to the stored
# value, never run by a shell, never breaking the change log, and skipped by
# the map exports where a map file could not hold it.
#
# The handshake side (the account handed to the server, the decision log
# line) is in check_attacks.c.
#
# Needs CERTSTORE_BIN and MKPKI_BIN (set by ctest). python3, when present,
# also parses every JSON output strictly.
set -euo pipefail

: "${CERTSTORE_BIN:?}" "${MKPKI_BIN:?}"

work=$(mktemp -d /tmp/certstore-attacks-XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

pki=$work/pki db=$work/certstore.db
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
cs() { "$CERTSTORE_BIN" --db "$db" "$@"; }

# Run the CLI; keep stdout in $work/out, stderr in $work/err, status in $rc.
run() {
    rc=0
    cs "$@" >"$work/out" 2>"$work/err" || rc=$?
}
expect_status() { # WANT WHAT
    [ "$rc" -eq "$1" ] || fail "$2: exit $rc, want $1 ($(head -c 300 "$work/err"))"
}
out_has() { # NEEDLE WHAT
    grep -qF -- "$1" "$work/out" || fail "$2: output lacks '$1': $(head -c 600 "$work/out")"
}
# How many bytes of FILE are the given octal byte values (tr syntax: '\\000\\033').
count_bytes() { LC_ALL=C tr -dc "$2" <"$1" | wc -c; }
out_lacks_byte() { # OCTAL WHAT
    [ "$(count_bytes "$work/out" "\\$1")" -eq 0 ] || fail "$2: raw byte \\$1 in the output"
}
stat_is() { # FIELD VALUE
    cs stats >"$work/stats"
    grep -qx "$1: $2.*" "$work/stats" || fail "stats: want '$1: $2', got: $(tr '\n' ' ' <"$work/stats")"
}

# The arguments, sorted by byte value, each followed by \001 (see sorted_names).
sorted_lines() { printf '%s\n' "$@" | LC_ALL=C sort | tr '\n' '\001'; }

have_python=0
command -v python3 >/dev/null && have_python=1
# json_value FILE PYTHON-EXPR-ON-doc EXPECTED: the decoded value must be exactly EXPECTED.
json_value() {
    [ "$have_python" -eq 1 ] || return 0
    python3 - "$1" "$2" "$3" <<'EOF' || fail "JSON check '$2' on $1"
import json, sys
path, expr, want = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(path, "rb").read().decode("utf-8")  # output must be valid UTF-8
text = raw.strip()
doc = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines()]
def sorted_names(names):
    return "".join(n + "\x01" for n in sorted(names))
got = eval(expr, {"doc": doc, "sorted_names": sorted_names})
if not isinstance(got, str):
    got = str(got)
want = want.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
if got != want:
    sys.exit("got %r, want %r" % (got, want))
EOF
}

"$MKPKI_BIN" "$pki" >/dev/null
cs init >/dev/null
cs pin add "$pki/ca-a.pem" >/dev/null

# ---- names that must be stored verbatim --------------------------------------
canary=$work/pwned
sql="'; DROP TABLE mappings; --"
shell="\$(touch $canary) \`touch $canary\` \"q\" \\ %s%n"
bidi=$'M\xc3\xbcller \xe2\x80\xae evil'

run map add "$pki/alice.pem" --account "$sql" --create-account --note "$shell"
expect_status 0 "map to an SQL-shaped account"
run map add "$pki/bob.pem" --account "$shell" --create-account --note "$sql"
expect_status 0 "map to a shell-shaped account"
run account add "$bidi"
expect_status 0 "account with a bidi override"
stat_is mappings 2
stat_is accounts 3

run account ls
expect_status 0 "account ls"
[ "$(wc -l <"$work/out")" -eq 3 ] || fail "account ls: not one line per account"
out_has "$sql" "account ls"
out_has "\$(touch $canary)" "account ls"
run account ls --json
expect_status 0 "account ls --json"
json_value "$work/out" 'sorted_names(a["name"] for a in doc)' "$(sorted_lines "$sql" "$shell" "$bidi")"
run map ls --json
expect_status 0 "map ls --json"
# shellcheck disable=SC2016 # Python text, matching a literal "$(touch"
json_value "$work/out" '[m["note"] for m in doc if m["account"].startswith("$(touch")][0]' "$sql"
# shellcheck disable=SC2016
json_value "$work/out" '[m["account"] for m in doc if m["note"].startswith("$(touch")][0]' "$sql"

# check: the decision names the account, as stored.
run check "$pki/alice-chain.pem" --ca "$pki/roots.pem"
expect_status 0 "check alice"
out_has "account=" "check alice"
out_has "DROP TABLE mappings" "check alice"

# Exports: CSV and JSON lines carry it; map files must skip what they cannot hold.
run export --format csv
expect_status 0 "export csv"
cp "$work/out" "$work/export.csv"
run export --format json
expect_status 0 "export json"
json_value "$work/out" 'sorted_names(m["account"] for m in doc)' "$(sorted_lines "$sql" "$shell")"
for format in haproxy-map nginx-map; do
    run export --format "$format"
    expect_status 0 "export $format"
    if grep -qF -e "DROP TABLE" -e "touch" "$work/out"; then
        fail "export $format: wrote an account name a map file cannot hold"
    fi
    grep -q "[1-9][0-9]* certificates whose account name is unsafe in a map file" "$work/err" ||
        fail "export $format: left-out names not reported"
done

# The CSV export reads back into a fresh store as the same names.
db2=$work/second.db
"$CERTSTORE_BIN" --db "$db2" init >/dev/null
"$CERTSTORE_BIN" --db "$db2" import --create-accounts "$work/export.csv" >/dev/null 2>&1 ||
    fail "the CSV export does not import back"
"$CERTSTORE_BIN" --db "$db2" account ls --json >"$work/out"
json_value "$work/out" 'sorted_names(a["name"] for a in doc)' "$(sorted_lines "$sql" "$shell")"

# ---- notes with line breaks, escapes and invalid UTF-8 ------------------------
note=$'first\nresult=accept account="root"\r\x1b[2J\x07 \xff\xfe end'
run account add noted --note "$note"
expect_status 0 "account with a hostile note"
run account ls
[ "$(wc -l <"$work/out")" -eq 4 ] || fail "account ls: a note broke a line"
out_has 'first\x0aresult=accept' "account ls (newline escaped)"
out_has '\x1b[2J' "account ls (escape sequence escaped)"
out_has '\xff\xfe end' "account ls (invalid UTF-8 escaped)"
for byte in 015 033 007 377; do out_lacks_byte "$byte" "account ls"; done
run account ls --json
out_has '\n' "account ls --json (newline escaped)"
out_has '\u001b[2J' "account ls --json (escape sequence escaped)"
for byte in 015 033 007 377; do out_lacks_byte "$byte" "account ls --json"; done
json_value "$work/out" '[a["note"] for a in doc if a["name"] == "noted"][0]' "$note"

# The change log records the command lines as typed: still one line each.
run log
expect_status 0 "log"
changes=$(cs log --json | grep -c '"command"')
[ "$(wc -l <"$work/out")" -eq "$changes" ] || fail "log: not one line per change"
for byte in 015 033 007 377; do out_lacks_byte "$byte" "log"; done
out_has 'first\x0aresult=accept' "log (newline in the command line escaped)"
run log --json
json_value "$work/out" '[c["command"] for c in doc if "noted" in c["command"]][0].split("--note ")[1]' \
    "'$note'"

# ---- what must be refused, leaving the store as it was ------------------------
stat_is accounts 4
refuse_account() { # NAME WHAT
    run account add "$1"
    [ "$rc" -ne 0 ] || fail "account add accepted $2"
    grep -q "invalid account name" "$work/err" || fail "$2: no reason given"
}
refuse_account $'two\nlines' "a newline"
refuse_account $'cr\rname' "a carriage return"
refuse_account $'esc\x1b[31m' "an escape sequence"
refuse_account $'bad\xff\xfeutf8' "invalid UTF-8"
refuse_account $'\xc0\xaf' "an overlong encoding"
refuse_account "$(head -c 65536 /dev/zero | tr '\0' a)" "a 64 KiB name"
run account add long-note --note "$(head -c 65536 /dev/zero | tr '\0' n)"
[ "$rc" -ne 0 ] || fail "account add accepted a 64 KiB note"
grep -q "note longer than" "$work/err" || fail "64 KiB note: no reason given"
run map add "$pki/carol.pem" --account $'x\ny' --create-account
[ "$rc" -ne 0 ] || fail "map add accepted an account name with a newline"
stat_is accounts 4
stat_is mappings 2

# NUL: as a JSON escape and as a raw byte in CSV; control characters as JSON escapes.
key=$(openssl x509 -in "$pki/carol.pem" -outform DER | sha256sum | cut -c1-64)
printf '{"kind":"cert","key":"%s","account":"car\\u0000ol"}\n' "$key" >"$work/nul.jsonl"
printf 'kind,key,account\ncert,%s,car\000ol\n' "$key" >"$work/nul.csv"
printf '{"kind":"cert","key":"%s","account":"car\\nol"}\n' "$key" >"$work/newline.jsonl"
printf '{"kind":"cert","key":"%s","account":"ok","note":"%s"}\n' "$key" \
    "$(head -c 65536 /dev/zero | tr '\0' n)" >"$work/long.jsonl"
printf 'kind,key,account\ncert,%s,\377\376\n' "$key" >"$work/badutf8.csv"
for input in nul.jsonl nul.csv newline.jsonl long.jsonl badutf8.csv; do
    run import "$work/$input"
    expect_status 1 "import $input"
    grep -q "nothing imported" "$work/err" || fail "import $input: no reason given"
    [ "$(wc -l <"$work/err")" -eq 1 ] || fail "import $input: message is not one line"
    # The input is quoted back: no NUL, control byte or invalid UTF-8 raw in it.
    [ "$(count_bytes "$work/err" '\000-\011\013-\037\177\200-\377')" -eq 0 ] ||
        fail "import $input: raw control or non-ASCII bytes in the message: $(od -c "$work/err" | head -5)"
done
stat_is accounts 4
stat_is mappings 2

# ---- nothing was ever run by a shell -------------------------------------------
[ ! -e "$canary" ] || fail "a shell ran a stored string"
run stats
expect_status 0 "stats after everything"

if [ "$have_python" -eq 0 ]; then
    echo "note: python3 not found; JSON outputs checked by content only"
fi
if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "hostile strings: all refused or stored and printed safely"
