#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# certstore.lua under mode = audit, on a frontend that lets chain errors
# through (verify optional crt-ignore-err all ca-ignore-err all, the usual
# way to answer them with an error page): the provider lets every client
# in and logs would-reject, so lua.certstore_account must speak only for
# a certificate the provider would have accepted. An expired certificate
# and one without clientAuth, each mapped: no account, chain-invalid; with
# require_strong = yes, a rule's acceptance: no account,
# weak-mapping-refused.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/haproxy_common.sh"

cs_require_server haproxy
[ -n "${CERTSTORE_HAPROXY_LUA:-}" ] && [ -f "$CERTSTORE_HAPROXY_LUA" ] &&
    [ -n "${CERTSTORE_LUA_CPATH:-}" ] ||
    cs_skip "certstore_haproxy.so not built (install liblua5.3-dev)"
cs_setup haproxy-lua-audit
cs_make_pki
cs_db_standard
cs_cli map add "$PKI/expired.pem" --account expired --create-account &&
    cs_cli map add "$PKI/noclient.pem" --account noclient --create-account &&
    cs_cli pin add "$PKI/ca-b.pem" &&
    CA_B=$(awk '/^pinned/ {print $2}' "$WORK/out/cli.txt") &&
    cs_cli rule add --pin "$CA_B" --subject CN=carol --account partner --create-account || {
    echo "Bail out! could not build the test database" >&2
    exit 1
}
cs_db_grant haproxy
cs_log_grant haproxy
cs_write_openssl_cnf "$WORK/openssl.cnf" audit
# Rules (a weak way in) refused: the provider's option, so the fetches' too.
echo "require_strong = yes" >>"$WORK/openssl.cnf"
cs_haproxy_chroot

PORT=$(cs_free_port) && BACKEND_PORT=$(cs_free_port) || exit 1
URL=https://localhost:$PORT/
cs_haproxy_config \
    "http-request set-header X-Certstore-Account %[lua.certstore_account]
    http-request set-header X-Certstore-Decision %[lua.certstore_decision]" \
    "app account=[%[req.hdr(x-certstore-account)]] decision=[%[req.hdr(x-certstore-decision)]]\n"
sed -i -e "s|^    log stdout format raw local0 info|&\n    lua-load $CERTSTORE_HAPROXY_LUA|" \
    -e "s|roots.pem verify required|roots.pem verify optional crt-ignore-err all ca-ignore-err all|" \
    "$WORK/haproxy.cfg"
export LUA_CPATH_5_3="$CERTSTORE_LUA_CPATH/?.so;;"
cs_haproxy_start

esc() { printf '%s' "$1" | sed 's/[][]/\\&/g'; }

# app_sees NAME ACCOUNT DECISION LOG_ERE [curl ARGS...]: served, the
# application saw ACCOUNT and DECISION, and the provider logged LOG_ERE.
app_sees() {
    local name=$1 account=$2 decision=$3 result=$4 mark
    shift 4
    mark=$(cs_log_mark)
    if ! cs_curl "$URL" "$name" "$@" ||
        ! cs_out_has "$(esc "app account=[$account] decision=[$decision]")"; then
        cs_diag "curl as $name: exit $CS_CURL_RC, expected account=[$account] decision=[$decision]"
        cs_diag_file "$CS_OUT.err" 5
        cs_diag_file "$CS_OUT" 10
        return 1
    fi
    cs_log_wait "$mark" "$result"
}

cs_check 1 "audit: an accepted certificate's account reaches the application" \
    app_sees alice alice accept 'result=accept'
cs_check 2 "audit: an expired, mapped certificate gets no account" \
    app_sees expired "" chain-invalid 'result=would-reject'
cs_check 3 "audit: a mapped certificate without clientAuth gets no account" \
    app_sees noclient "" chain-invalid 'result=would-reject'
cs_check 4 "audit: a client cannot inject the header" \
    app_sees expired "" chain-invalid 'result=would-reject' -H "X-Certstore-Account: alice"
cs_check 5 "require_strong: a rule's account is refused as the provider refuses it" \
    app_sees carol "" weak-mapping-refused 'result=would-reject.*reason=weak-mapping-refused'

if [ "$CS_FAILS" -ne 0 ]; then
    cs_diag_file "$WORK/log/haproxy.log" 40
    cs_diag_file "$CS_LOG" 40
fi
cs_finish
