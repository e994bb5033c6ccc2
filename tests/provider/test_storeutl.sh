#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The certstore: URI scheme seen from the openssl command line: storeutl
# lists exactly the pins in force, -CAstore verifies against them, and bad
# URIs or an unusable database fail with a clear message and a non-zero exit.
#
# Environment (set by ctest): CERTSTORE_BIN, MKPKI_BIN, CERTSTORE_MODULE_DIR.
# TAP-style output; exit status non-zero when any check failed.
set -u

: "${CERTSTORE_BIN:?CERTSTORE_BIN must name the certstore CLI}"
: "${MKPKI_BIN:?MKPKI_BIN must name mkpki}"
: "${CERTSTORE_MODULE_DIR:?CERTSTORE_MODULE_DIR must name the provider build dir}"

MODULE="$CERTSTORE_MODULE_DIR/certstore.so"
[ -f "$MODULE" ] || { echo "Bail out! provider module $MODULE not built"; exit 1; }
# The openssl binary is not instrumented, so it cannot load a sanitized
# module: this test belongs to the uninstrumented ("external") run.
if grep -Eqa '__asan_init|__ubsan_handle|__tsan_init' "$MODULE"; then
    echo "1..0 # SKIP $MODULE is sanitizer-instrumented; openssl cannot load it"
    exit 77
fi

WORK=$(mktemp -d /tmp/certstore-storeutl-XXXXXX) || exit 1
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

FAILS=0
N=0
ok() { N=$((N + 1)); printf 'ok %d - %s\n' "$N" "$1"; }
not_ok() { N=$((N + 1)); printf 'not ok %d - %s\n' "$N" "$1"; FAILS=$((FAILS + 1)); }
diag_file() { sed 's/^/#   /' "$1"; }

# check DESC CMD...: the command must succeed.
check() {
    local desc=$1
    shift
    if "$@" >"$WORK/out" 2>"$WORK/err"; then
        ok "$desc"
    else
        not_ok "$desc"
        diag_file "$WORK/out"
        diag_file "$WORK/err"
    fi
}

# check_fails DESC PATTERN CMD...: the command must fail and say PATTERN on stderr.
check_fails() {
    local desc=$1 pattern=$2
    shift 2
    if "$@" >"$WORK/out" 2>"$WORK/err"; then
        not_ok "$desc (exit 0)"
        diag_file "$WORK/out"
    elif ! grep -q -- "$pattern" "$WORK/err"; then
        not_ok "$desc (no \"$pattern\" on stderr)"
        diag_file "$WORK/err"
    else
        ok "$desc"
    fi
}

# Bounded, so a hung openssl cannot hang the suite.
ossl() { OPENSSL_CONF="$WORK/openssl.cnf" timeout 30 openssl "$@"; }
cs() { timeout 30 "$CERTSTORE_BIN" --db "$DB" "$@"; }
fp_of() { openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/.*=//; s/://g' | tr A-F a-f; }

PKI="$WORK/pki"
DB="$WORK/db/certstore.db"
mkdir -p "$PKI" "$WORK/db" || exit 1
"$MKPKI_BIN" "$PKI" >"$WORK/mkpki.log" 2>&1 || { echo "Bail out! mkpki failed"; diag_file "$WORK/mkpki.log"; exit 1; }

FP_A=$(fp_of "$PKI/ca-a.pem")
FP_B=$(fp_of "$PKI/ca-b.pem")

if ! { cs init && cs pin add "$PKI/ca-a.pem" && cs pin add "$PKI/ca-b.pem" &&
       cs pin disable "$FP_B"; } >"$WORK/setup.log" 2>&1; then
    echo "Bail out! could not prepare the database"
    diag_file "$WORK/setup.log"
    exit 1
fi

# shellcheck source=../common/openssl_cnf.sh
. "$(dirname "$0")/../common/openssl_cnf.sh"
cs_provider_cnf "$WORK/openssl.cnf" "$MODULE" "$DB" stderr "mode = off"
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect

[provider_sect]
default = default_sect
certstore = certstore_sect

[default_sect]
activate = 1

[certstore_sect]
module = $MODULE
activate = 1
db = $DB
mode = off
log = stderr
EOF

# ---- listing ---------------------------------------------------------------

# The pins served, as "fingerprint" lines, one per certificate.
served_fps() {
    ossl storeutl -certs "$1" >"$WORK/served.pem" 2>"$WORK/err" || return 1
    openssl crl2pkcs7 -nocrl -certfile "$WORK/served.pem" |
        openssl pkcs7 -print_certs 2>/dev/null >"$WORK/split.pem"
    awk '/BEGIN CERT/{n++} {print > ("'"$WORK"'/one-" n ".pem")}' "$WORK/split.pem"
    local f
    for f in "$WORK"/one-*.pem; do
        [ -e "$f" ] || continue
        grep -q "BEGIN CERT" "$f" && fp_of "$f"
    done
    rm -f "$WORK"/one-*.pem
}

# expect_served DESC URI FP...: exactly these pins, in any order.
expect_served() {
    local desc=$1 uri=$2
    shift 2
    local got want
    got=$(served_fps "$uri" | sort)
    want=$(printf '%s\n' "$@" | sort)
    if [ "$got" = "$want" ]; then
        ok "$desc"
    else
        not_ok "$desc"
        printf '#   want: %s\n#   got:  %s\n' "$want" "$got"
        diag_file "$WORK/err"
    fi
}

expect_served "storeutl lists exactly the enabled pin (ca-a), not the disabled one" \
    "certstore:$DB" "$FP_A"
expect_served "certstore:///path is the same store" "certstore://$DB" "$FP_A"
expect_served "?fp= selects one pin" "certstore:$DB?fp=$FP_A" "$FP_A"
expect_served "?fp= accepts upper case with colons" \
    "certstore:$DB?fp=$(echo "$FP_A" | tr a-f A-F | sed 's/../&:/g; s/:$//')" "$FP_A"

SUBJECT_A=$(openssl x509 -noout -subject -nameopt RFC2253 -in "$PKI/ca-a.pem" | sed 's/^subject=//')
check "storeutl -noout -text runs" ossl storeutl -noout -text "certstore:$DB"
if [ "$(grep -c '^ *Subject:' "$WORK/out")" = 1 ] &&
   [ "$(grep -c '^[0-9]*: Certificate' "$WORK/out")" = 1 ]; then
    ok "storeutl -text shows one certificate ($SUBJECT_A)"
else
    not_ok "storeutl -text shows one certificate"
    diag_file "$WORK/out"
fi

# storeutl -subject wants the /type=value/... form that -nameopt compat prints.
subject_of() { openssl x509 -noout -subject -nameopt compat -in "$1" | sed 's/^subject=//'; }
# expect_subject_hits DESC CERT.pem COUNT: a search by CERT's subject finds COUNT pins.
expect_subject_hits() {
    local desc=$1 cert=$2 want=$3 got
    if ossl storeutl -certs -subject "$(subject_of "$cert")" "certstore:$DB" >"$WORK/out" 2>"$WORK/err"; then
        got=$(grep -c "BEGIN CERTIFICATE" "$WORK/out")
        if [ "$got" = "$want" ]; then ok "$desc"; return; fi
        printf '#   want %s certificate(s), got %s\n' "$want" "$got"
    fi
    not_ok "$desc"
    diag_file "$WORK/out"
    diag_file "$WORK/err"
}
expect_subject_hits "storeutl -subject finds the pinned ca-a by name" "$PKI/ca-a.pem" 1
expect_subject_hits "storeutl -subject of the root finds nothing" "$PKI/root.pem" 0
expect_subject_hits "storeutl -subject of the disabled ca-b finds nothing" "$PKI/ca-b.pem" 0

check_fails "?fp= of a disabled pin is refused" "no pin in force" \
    ossl storeutl -certs "certstore:$DB?fp=$FP_B"

# ---- -CAstore ----------------------------------------------------------------

check "verify alice with -CAfile root.pem -CAstore certstore: (full chain)" \
    ossl verify -CAfile "$PKI/root.pem" -CAstore "certstore:$DB" "$PKI/alice.pem"
check "verify alice with only -CAstore certstore: and -partial_chain (pinned ca-a is the anchor)" \
    ossl verify -no-CAfile -no-CApath -CAstore "certstore:$DB" -partial_chain "$PKI/alice.pem"
check_fails "verify alice without the store fails (so the store is what made it pass)" \
    "unable to get local issuer certificate" \
    ossl verify -no-CAfile -no-CApath -no-CAstore -partial_chain "$PKI/alice.pem"
check_fails "verify carol (issuer ca-b disabled) fails with only -CAstore" \
    "unable to get local issuer certificate" \
    ossl verify -no-CAfile -no-CApath -CAstore "certstore:$DB" -partial_chain "$PKI/carol.pem"
check_fails "verify mallory (twin CA, same DN as ca-a) fails with only -CAstore" \
    "error" \
    ossl verify -no-CAfile -no-CApath -CAstore "certstore:$DB" -partial_chain "$PKI/mallory.pem"

# Each open reads a fresh snapshot: enabling ca-b is seen by the next command.
if cs pin enable "$FP_B" >"$WORK/setup.log" 2>&1; then
    check "after 'pin enable' of ca-b, carol verifies through -CAstore" \
        ossl verify -no-CAfile -no-CApath -CAstore "certstore:$DB" -partial_chain "$PKI/carol.pem"
    expect_served "after 'pin enable', storeutl lists ca-a and ca-b" "certstore:$DB" "$FP_A" "$FP_B"
else
    not_ok "pin enable ca-b"
    diag_file "$WORK/setup.log"
fi

# ---- failures ----------------------------------------------------------------

for uri in "certstore:relative/certstore.db" \
           "certstore://somehost$DB" \
           "certstore:$DB?mode=rw" \
           "certstore:$DB?fp=$FP_A&fp=$FP_A" \
           "certstore:$DB?fp=abcd" \
           "certstore:$DB#frag" \
           "certstore:$DB%zz" \
           "certstore:$DB%00" \
           "certstore:/with space/db" \
           "certstore:"; do
    check_fails "bad URI refused: $uri" "bad URI" ossl storeutl -certs "$uri"
done

check_fails "missing database fails and names the file" "$WORK/nonexistent.db" \
    ossl storeutl -certs "certstore:$WORK/nonexistent.db"
head -c 4096 /dev/urandom >"$WORK/garbage.db"
check_fails "a file that is not a database fails" "$WORK/garbage.db" \
    ossl storeutl -certs "certstore:$WORK/garbage.db"
check_fails "verify through a missing database fails" "error" \
    ossl verify -no-CAfile -no-CApath -CAstore "certstore:$WORK/nonexistent.db" -partial_chain \
    "$PKI/alice.pem"

echo "1..$N"
[ "$FAILS" -eq 0 ] || { echo "# $FAILS check(s) failed"; exit 1; }
exit 0
