#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Many-to-one rules enforced by the provider under an unmodified
# `openssl s_server`: a rule accepts, a deny rule beats a later allow, a
# rule added while the server runs is in force at the next handshake, and
# require_strong refuses rule acceptances (enforce) or logs would-reject
# (audit) while one-to-one mappings still pass.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init rules

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
fp=$(openssl x509 -in "$pki/ca-a.pem" -outform DER | sha256sum | cut -d' ' -f1)

# start_server NAME [openssl.cnf line...]: s_server with its own config and log.
start_server() {
    log=$work/$1.log
    tp_openssl_cnf "$work/$1.cnf" "${@:2}"
    tp_start_s_server "$work/$1.cnf"
}

# ---- enforce: rules decide ---------------------------------------------------
start_server enforce
expect_rejected alice "no rule yet"
expect_log 'result=reject reason=no-mapping account="" subject="CN=alice,O=certstore tests'

# Added while the server runs: in force at the next handshake.
cs rule add --pin "$fp" --account partners --create-account --subject 'O=certstore tests,CN=*'
expect_accepted alice "allow rule"
expect_log 'result=accept reason=none account="partners" subject="CN=alice,O=certstore tests'
expect_log 'detail="rule 1"'
expect_accepted bob "allow rule"

# A deny with a lower priority number is tried first and beats the allow.
cs rule add --pin "$fp" --deny --priority 10 --subject 'CN=bob'
expect_rejected bob "deny rule"
expect_log 'result=reject reason=denied-by-rule account="" subject="CN=bob,O=certstore tests'
expect_accepted alice "deny is for bob only"

# A one-to-one mapping decides before any rule, the deny included.
cs map add "$pki/bob.pem" --account bob --create-account
expect_accepted bob "one-to-one mapping before rules"
expect_log 'result=accept reason=none account="bob" subject="CN=bob,O=certstore tests'

# DN injection: a subject pattern never matches across attributes.
cs rule disable 1
expect_rejected alice "allow rule disabled"
cs rule add --pin "$fp" --account partners --subject 'CN=certstore tests'
expect_rejected alice "O value does not satisfy CN"
cs rule enable 1
tp_stop_s_server

# ---- enforce + require_strong ---------------------------------------------------
start_server strong 'require_strong = yes'
expect_rejected alice "weak under require_strong"
expect_log 'result=reject reason=weak-mapping-refused account="" subject="CN=alice,O=certstore tests'
expect_log 'detail="rule 1 maps it to account partners"'
expect_accepted bob "strong mapping under require_strong"
tp_stop_s_server

# ---- audit + require_strong: Windows' compatibility mode ---------------------------
start_server audit 'mode = audit' 'require_strong = yes'
expect_accepted alice "audit lets it through"
expect_log 'result=would-reject reason=weak-mapping-refused account="" subject="CN=alice,O=certstore tests'
expect_log 'mode=audit'
tp_stop_s_server

# ---- a typo in require_strong denies everyone -------------------------------------
start_server typo 'require_strong = maybe'
expect_rejected bob "config error"
expect_log 'reason=config-error'
tp_stop_s_server

tp_finish "rules under s_server"
