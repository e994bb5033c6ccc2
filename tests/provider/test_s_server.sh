#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The provider under an unmodified `openssl s_server`, configured through
# OPENSSL_CONF only: accept, each rejection, a live removal, and sessions
# (TLS 1.2 and 1.3) that try to resume after the removal.
#
# Needs CERTSTORE_BIN, MKPKI_BIN and CERTSTORE_MODULE_DIR (set by ctest).
set -euo pipefail

. "$(dirname "$0")/common.sh"
tp_init sserver

"$MKPKI_BIN" "$pki" >/dev/null
cs init
cs pin add "$pki/ca-a.pem"
cs map add "$pki/alice.pem" --account alice --create-account
tp_openssl_cnf "$work/openssl.cnf"
tp_start_s_server "$work/openssl.cnf"

# Accepted, with sessions saved for the resumption checks below.
expect_accepted alice "mapped" -tls1_2 -sess_out "$work/sess12"
grep -q 'Verify return code: 0 (ok)' "$work/out" || fail "alice: server chain not verified"
expect_accepted alice "mapped" -tls1_3 -sess_out "$work/sess13"
expect_log 'result=accept reason=none account="alice" subject="CN=alice'
expect_log 'peer=127.0.0.1:'

# Resumption works while nothing narrowed.
client alice "$work/out" -tls1_2 -sess_in "$work/sess12"
reused "$work/out" && data_flowed "$work/out" || fail "TLS 1.2 session did not resume"
client alice "$work/out" -tls1_3 -sess_in "$work/sess13"
reused "$work/out" && data_flowed "$work/out" || fail "TLS 1.3 session did not resume"

expect_rejected carol "issuer not pinned"
expect_log 'result=reject reason=issuer-not-pinned account="" subject="CN=carol'
expect_rejected bob "no mapping"
expect_log 'result=reject reason=no-mapping account="" subject="CN=bob'
expect_rejected direct "issued by the root itself, no pinned CA"
expect_rejected mallory "issued by a CA with ca-a's name, not pinned"

# Live removal: the next connection, and every saved session, is refused.
cs map rm "$pki/alice.pem"
expect_rejected alice "mapping removed"
expect_log 'result=reject reason=no-mapping account="" subject="CN=alice'
client alice "$work/out" -tls1_2 -sess_in "$work/sess12"
! reused "$work/out" || fail "TLS 1.2 session resumed after the mapping was removed"
! data_flowed "$work/out" || fail "TLS 1.2 resumption after removal was accepted"
client alice "$work/out" -tls1_3 -sess_in "$work/sess13"
! reused "$work/out" || fail "TLS 1.3 session resumed after the mapping was removed"
! data_flowed "$work/out" || fail "TLS 1.3 resumption after removal was accepted"

[ "$(grep -c 'result=reject' "$log")" -ge 7 ] || { cat "$log" >&2; fail "missing reject lines"; }
kill -0 "$server_pid" 2>/dev/null || fail "s_server died"

tp_finish "s_server"
