# SPDX-License-Identifier: Apache-2.0
# The openssl.cnf every shell test gives a program through OPENSSL_CONF to
# load the certstore provider (sourced by tests/provider/common.sh and
# tests/servers/common.sh).

# cs_provider_cnf FILE MODULE DB LOG [LINE...]: the default provider and
# certstore, activated; MODULE is the module's path ("" loads it by name
# from libcrypto's modules directory); each LINE is added to certstore's
# section (e.g. 'mode = audit').
cs_provider_cnf() {
    local file=$1 module=$2 db=$3 log=$4
    shift 4
    {
        printf '%s\n' 'openssl_conf = openssl_init' '' '[openssl_init]' \
            'providers = provider_sect' '' '[provider_sect]' 'default = default_sect' \
            'certstore = certstore_sect' '' '[default_sect]' 'activate = 1' '' \
            '[certstore_sect]'
        [ -z "$module" ] || printf 'module = %s\n' "$module"
        printf '%s\n' 'activate = 1' "db = $db" "log = $log"
        [ $# -eq 0 ] || printf '%s\n' "$@"
    } >"$file"
}
