/* Shared by keys2.c (the key hierarchy) and tenants.c (per-tenant keys);
 * private to core/repo. */
#ifndef CORE_REPO_KEYS2_INT_H
#define CORE_REPO_KEYS2_INT_H

#include <jansson.h>
#include <stddef.h>

#include "repo/objects.h"

/* A base64 field of a keyring object (secrets: the text is wiped). */
void k2_b64_set(json_t *o, const char *field, const unsigned char *b, size_t n);
int k2_b64_get(json_t *o, const char *field, unsigned char *out, size_t n);
/* The keyring's "tenants" array: written, and merged from an opened
 * keyring (the union of every keyring's; a destroyed key stays destroyed). */
json_t *k2_tenants_json_save(const struct repo *r);
int k2_tenants_merge(struct repo *r, json_t *tn, const char *name, char **err);
void k2_tenants_clear(struct repo *r);
/* Keyring objects a newer keyring supersedes (deleted once it is stored). */
void k2_olds_add(struct repo *r, const char *name);
void k2_olds_clear(struct repo *r);
/* A new key for each live tenant (key rotate). */
int k2_tenants_rotate(struct repo *r, char **err);
/* key rotate --rewrite: successors of the live tenant keys (the replaced
 * ids appended to retire), and destroying the replaced ones at the end. */
int k2_tenants_rewrite(struct repo *r, json_t *retire, char **err);
void k2_tenants_retire(struct repo *r);
/* A tenant pack's data key from its first KEYS2_SEALED_DK_LEN bytes. */
int k2_tenant_dk_open(const struct repo *r, const struct repo_tenant *t,
                      const unsigned char *sealed, unsigned char dk[32]);

#endif
