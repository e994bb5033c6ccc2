#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The HAProxy map recipe, end to end: `certstore export --format
# haproxy-map` feeds HAProxy's map() so the backend receives the account of
# the client certificate in X-Certstore-Account, while the provider (loaded
# through OPENSSL_CONF) still decides who gets in. HAProxy runs as in
# test_haproxy.sh: master-worker, nbthread 2, user haproxy, chroot.

. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/haproxy_common.sh"

cs_require_server haproxy
cs_setup haproxy-map
cs_make_pki
cs_db_standard
cs_cli map add "$PKI/bob.pem" --account bob || exit 1
cs_db_grant haproxy
cs_log_grant haproxy
cs_write_openssl_cnf "$WORK/openssl.cnf"
cs_haproxy_chroot

MAP=$WORK/accounts.map
if ! "$CERTSTORE_BIN" --db "$CS_DB" export --format haproxy-map >"$MAP" 2>"$WORK/out/export.err"; then
    cs_diag_file "$WORK/out/export.err"
    echo "Bail out! certstore export --format haproxy-map failed" >&2
    exit 1
fi
chmod 0644 "$MAP"

PORT=$(cs_free_port) || exit 1
BACKEND_PORT=$(cs_free_port) || exit 1
URL=https://localhost:$PORT/

# The recipe: set (never append) the header, so a client cannot forge it.
# The application shows the account it received.
cs_haproxy_config \
    "http-request set-header X-Certstore-Account %[ssl_c_der,digest(sha256),hex,lower,map($MAP)]" \
    'account=%[req.hdr(x-certstore-account)]\n'
cs_haproxy_start

fp_of() { openssl x509 -in "$PKI/$1.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1; }

check_map_lists_certificates() {
    local name
    for name in alice bob; do
        if ! grep -Eq "^$(fp_of "$name")[[:space:]]+$name\$" "$MAP"; then
            cs_diag "exported map has no line '<sha256 of $name.pem> $name':"
            cs_diag_file "$MAP" 10
            return 1
        fi
    done
}

check_backend_sees_account() {
    cs_expect_curl_accept "$URL" alice '^account=alice$' alice &&
        cs_expect_curl_accept "$URL" bob '^account=bob$' bob
}

check_forged_header_replaced() {
    cs_expect_curl_accept "$URL" alice '^account=alice$' alice \
        -H 'X-Certstore-Account: admin'
}

check_provider_still_decides() {
    cs_cli map rm "$PKI/bob.pem" &&
        cs_expect_curl_reject "$URL" bob no-mapping &&
        cs_expect_curl_reject "$URL" carol issuer-not-pinned
}

cs_check 1 "export --format haproxy-map lists each certificate's account" \
    check_map_lists_certificates
cs_check 2 "the backend receives the client's account in X-Certstore-Account" \
    check_backend_sees_account
cs_check 3 "a client-sent X-Certstore-Account is replaced" check_forged_header_replaced
cs_check 4 "a stale map cannot let in a client the store rejects" check_provider_still_decides
[ "$CS_FAILS" -eq 0 ] || cs_diag_file "$WORK/log/haproxy.log" 40
cs_finish
