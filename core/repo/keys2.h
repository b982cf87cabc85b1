/* Format 2's key hierarchy (docs/FORMAT.md §3.6, docs/SECURITY.md):
 *
 *   passphrase -scrypt-> KEK -> master secret (keys/<id>)
 *   master secret -HKDF-> keyring key -> keyring/<id>: the X25519 key pairs
 *       (one per rotation), the id key, the index key, the chunker seed
 *   each pack: a random data key, sealed to the current public key
 *   snapshots, audits, runs, verify: sealed to the current public key
 *   index objects, locks: sealed with the index key
 *
 * A writer credential (engine key add --write-only) holds the public key,
 * the id key, the index key and the chunker seed: enough to deduplicate
 * against the whole repository and add to it, never to read it back.
 * X25519, HKDF-SHA-256 and AES-256-GCM come from libcrypto. */
#ifndef CORE_REPO_KEYS2_H
#define CORE_REPO_KEYS2_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/objects.h"

#define KEYS2_SEALED_DK_LEN (REPO_SEALPUB_OVERHEAD + REPO_KEY_LEN)

/* HKDF-SHA-256 (RFC 5869) into out[out_len]; 0 or -1. */
int k2_hkdf(const unsigned char *ikm, size_t ikm_len, const unsigned char *salt, size_t salt_len,
            const char *info, unsigned char *out, size_t out_len);

/* Seal to the current public key: key id (8) || ephemeral public key (32)
 * || nonce (12) || AES-256-GCM ciphertext || tag (16), n +
 * REPO_SEALPUB_OVERHEAD bytes into out. */
int repo_seal_pub(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                  void *out);
/* Open with the private key the sealed bytes name. 0: out (n -
 * REPO_SEALPUB_OVERHEAD bytes); -1: authentication failed; -2: this host
 * holds no private key for it (write-only, or a key pair it does not have). */
int repo_unseal_pub(const struct repo *r, const void *aad, size_t aad_len, const void *in, size_t n,
                    void *out, size_t *out_len);

/* A new repository of format 2 (repo.c's init): fresh master secret, id
 * key, index key, chunker seed and key pair in r. */
int keys2_init(struct repo *r, char **err);
/* The key object's plaintext (the master secret) and opening it. */
json_t *keys2_master_json(const struct repo *r);
int keys2_master_take(struct repo *r, json_t *m, const char *name, int check_only, char **err);
/* Write r's keyring as a new keyring/ object (generation r->keyring_generation). */
int keys2_keyring_save(struct repo *r, char **err);
/* Load the newest keyring object that opens with r->master_secret. */
int keys2_keyring_load(struct repo *r, char **err);
/* key rotate: a new key pair, current from now on; the old ones stay for
 * reading. Writes the new keyring, then deletes the older keyring objects. */
int keys2_rotate(struct repo *r, char new_id[17], char **err);
/* key rotate --rewrite (docs/FORMAT.md §3.6). begin: a new master secret,
 * key pair, index key and a successor for every tenant key, in a keyring
 * recording the rewrite (what to retire, the old index keys, the objects
 * superseded), a key object opening it with pass, then the old key objects
 * (*removed_keys: those of other passphrases) and keyrings deleted; when a
 * rewrite is in progress (r->rewrite) only that deletion. kid_retired: is
 * the key id one the rewrite retires? finish (every object moved): the
 * retired keys leave the keyring, the older keyrings go. */
int keys2_rewrite_begin(struct repo *r, const char *pass, size_t pass_len, json_t **removed_keys,
                        char **err);
int keys2_kid_retired(const struct repo *r, const unsigned char kid[8]);
int keys2_rewrite_finish(struct repo *r, char **err);
/* Keyring summary for key list: [{"id","created","current","private"}]. */
json_t *keys2_keypairs_json(const struct repo *r);

/* Writer credentials: the file's text, and opening a repository with one
 * (r->write_only set; text is untrusted input). */
int keys2_writer_credential(const struct repo *r, const char *pipeline, char **text, char **err);
int keys2_writer_open(struct repo *r, const char *text, size_t len, const char *where, char **err);

/* Pack data keys. new: a random key and its sealed form (to the current
 * public key, AAD "packkey"); open: from that sealed form (-2: this host
 * holds no private key for it); repo_pack_key: the data key of pack
 * pack_id, from the sealed key it starts with (cached; thread-safe once
 * keys2_dk_cache_init ran). */
int keys2_dk_new(const struct repo *r, unsigned char dk[32],
                 unsigned char sealed[KEYS2_SEALED_DK_LEN]);
int keys2_dk_open(const struct repo *r, const unsigned char *sealed, unsigned char dk[32]);
void keys2_dk_cache_init(struct repo *r);
int repo_pack_key(struct repo *r, const unsigned char pack_id[32], unsigned char dk[32],
                  char **err);
/* The same, also giving the tenant whose key wrapped it (NULL: the
 * repository's key pair); repo_tenant_idk(r, tenant) then checks its
 * blobs' ids. A pack of a shredded tenant fails with a message saying so. */
int repo_pack_key_t(struct repo *r, const unsigned char pack_id[32], unsigned char dk[32],
                    const struct repo_tenant **tenant, char **err);
const unsigned char *repo_tenant_idk(const struct repo *r, const struct repo_tenant *t);
/* Open a pack's first KEYS2_SEALED_DK_LEN bytes: 0; -1 damaged; -2 no
 * private key for it here; -3 its tenant was shredded (*tenant says
 * which). keys2_head_problem: the sentence for a failure (-4: too short). */
int keys2_head_open(const struct repo *r, const unsigned char *head, unsigned char dk[32],
                    const struct repo_tenant **tenant);
char *keys2_head_problem(const struct repo *r, const char *pack, int rc,
                         const struct repo_tenant *t);
void keys2_free(struct repo *r);

/* Per-tenant keys (stages.encrypt.per_tenant; docs/FORMAT.md §3.6). Each
 * tenant key (32 random bytes in the keyring, under a random 8-byte id)
 * derives the tenant's chunk-id key and the key that wraps its packs'
 * data keys; a pack holds one tenant's blobs only. */
/* The tenant's newest live key, else a shredded entry of that name, else
 * NULL. */
struct repo_tenant *keys2_tenant_find(const struct repo *r, const char *name);
struct repo_tenant *keys2_tenant_by_kid(const struct repo *r, const unsigned char *kid);
/* find, or make a new tenant key (backup's source thread); unless store
 * is 0 (a dry run) it is marked for keys2_tenants_flush. NULL with *err. */
struct repo_tenant *keys2_tenant_get(struct repo *r, const char *name, int store, char **err);
/* The tenant key an item of a tree is under (its "tenant_key"), or NULL
 * (none, or one the keyring does not know). */
const struct repo_tenant *keys2_item_tenant(const struct repo *r, json_t *item);
/* Store one new keyring holding every tenant key added since the last
 * (one write for all the tenants a backup found meanwhile); called before a
 * pack of a new tenant is stored and before the snapshot. */
int keys2_tenants_flush(struct repo *r, char **err);
/* Destroy every key of the tenant: a new keyring without them, then every
 * other keyring object deleted. -1 with *err when one could not be
 * deleted (the key may survive there: run it again). */
int keys2_tenant_shred(struct repo *r, const char *name, char **err);
/* [{"name","id","created"[,"shredded"]}] for key list / snapshots. */
json_t *keys2_tenants_json(const struct repo *r);
/* The entry that replaced t in key rotate --rewrite, or NULL. */
const struct repo_tenant *keys2_tenant_successor(const struct repo *r, const struct repo_tenant *t);
/* A new pack data key wrapped with the tenant's key. */
int keys2_dk_new_tenant(const struct repo *r, const struct repo_tenant *t, unsigned char dk[32],
                        unsigned char sealed[KEYS2_SEALED_DK_LEN]);

#endif
