-- SPDX-License-Identifier: Apache-2.0
-- certstore for HAProxy (lua-load): the sample fetches
--   lua.certstore_account    the account; empty unless certstore accepts the client
--   lua.certstore_decision   "accept" or the reason token; empty without a certificate
--   lua.certstore_mapping    the mapping or rule that decided ("cert:12", "rule:7")
-- decided once per client connection by certstore's own policy on the
-- client's certificate, in the database the certstore provider of this
-- process uses (certstore_haproxy, a C module over libcertstore):
--
--   global
--       lua-load /usr/share/haproxy/certstore.lua
--   frontend fe
--       http-request set-header X-Certstore-Account %[lua.certstore_account]
--       tcp-request content set-var(sess.account) lua.certstore_account   (TCP mode)

local certstore = require("certstore_haproxy")

local VAR_DONE = "sess.certstore_decided"

-- The connection's decision, taken at its first use and kept for the connection.
local function decision(txn)
    if txn:get_var(VAR_DONE) == nil then
        local der = txn.f:ssl_c_der()
        -- The chain's verification result: any error is chain-invalid, as in the provider.
        local account, reason, mapping = certstore.decide(der or "", txn.f:ssl_c_verify())
        txn:set_var("sess.certstore_account", account or "")
        txn:set_var("sess.certstore_decision", reason or "")
        txn:set_var("sess.certstore_mapping", mapping or "")
        txn:set_var(VAR_DONE, "1")
    end
    return txn:get_var("sess.certstore_account"), txn:get_var("sess.certstore_decision"),
        txn:get_var("sess.certstore_mapping")
end

core.register_fetches("certstore_account", function(txn)
    local account = decision(txn)
    return account or ""
end)

core.register_fetches("certstore_decision", function(txn)
    local _, reason = decision(txn)
    return reason or ""
end)

core.register_fetches("certstore_mapping", function(txn)
    local _, _, mapping = decision(txn)
    return mapping or ""
end)
