/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the rule matcher (store/dn_match.c) with certificates of any
 * encoding: the input is one DER certificate, matched against a fixed set
 * of conditions, each as an allow and as a deny rule, caselessly and
 * case-sensitively.
 *
 * The matcher's promises are checked: a valid rule never reads as
 * unreadable (-1), and an allow rule never matches where the deny rule
 * with the same conditions does not (an unreadable value counts for deny
 * and against allow; an allow must account for every value of a named
 * attribute, a deny for one).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "cs_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define require(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #condition);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define PIN "0000000000000000000000000000000000000000000000000000000000000000"

typedef struct {
    const char *subject, *issuer, *san, *eku, *policy;
    int exact;
} condition;

static const condition conditions[] = {
    {.subject = "CN=*"},
    {.subject = "CN=*test*"},
    {.subject = "O=certstore tests,CN=alice"},
    {.subject = "CN=alice,O=certstore tests", .exact = 1},
    {.subject = "CN=*,O=*", .exact = 1},
    {.subject = "OU=Sales,OU=*,DC=*"},
    {.subject = "CN=gw+O=Acme"},
    {.subject = "E=*@*,serialNumber=?*,UID=*,L=*,ST=*,C=??"},
    {.issuer = "CN=Partner CA A"},
    {.issuer = "CN=*,O=*", .exact = 1},
    {.san = "DNS:*.test"},
    {.san = "DNS:localhost."},
    {.san = "email:*@*"},
    {.san = "URI:https://*"},
    {.san = "IP:10.9.9.9"},
    {.san = "IP:::ffff:127.0.0.1"},
    {.san = "IP:2001:db8::7"},
    {.san = "UPN:*@admin.corp"},
    {.san = "DNS:*\nUPN:*"},
    {.eku = "clientAuth"},
    {.eku = "serverAuth\n1.3.6.1.5.5.7.3.2"},
    {.policy = "1.3.6.1.4.1.99999.1.2"},
    {.policy = "anyPolicy"},
    {.subject = "CN=*", .san = "DNS:*", .eku = "clientAuth", .policy = "anyPolicy"},
};

static int matches(const condition *c, X509 *leaf, cs_rule_action action, int case_sensitive)
{
    cs_rule_spec spec = {.action = action,
                         .account = action == CS_RULE_ALLOW ? "fuzz" : NULL,
                         .pin_fp = PIN,
                         .priority = CS_RULE_PRIORITY_DEFAULT,
                         .subject = c->subject,
                         .issuer = c->issuer,
                         .san = c->san,
                         .eku = c->eku,
                         .policy = c->policy,
                         .case_sensitive = case_sensitive,
                         .subject_exact = c->exact && c->subject != NULL,
                         .issuer_exact = c->exact && c->issuer != NULL};
    char msg[256];
    int m;

    require(cs_rule_check(&spec, msg, sizeof(msg)) == CS_OK);
    m = cs_rule_matches(&spec, leaf);
    require(m == 0 || m == 1);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    X509 *leaf = d2i_X509(NULL, &p, (long)size);

    if (leaf != NULL) {
        for (size_t i = 0; i < sizeof(conditions) / sizeof(conditions[0]); i++) {
            for (int cs = 0; cs <= 1; cs++) {
                int allow = matches(&conditions[i], leaf, CS_RULE_ALLOW, cs);
                int deny = matches(&conditions[i], leaf, CS_RULE_DENY, cs);

                require(!allow || deny);
            }
        }
    }
    X509_free(leaf);
    ERR_clear_error();
    return 0;
}
