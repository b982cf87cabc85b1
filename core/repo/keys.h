/* Key objects (keys/, docs/FORMAT.md §5): each wraps the repository's master
 * keys under a key derived from one passphrase, so adding, removing or
 * changing a passphrase never rewrites data. keys.c builds, parses and
 * checks them; no other module reads their fields. */
#ifndef CORE_REPO_KEYS_H
#define CORE_REPO_KEYS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "repo/objects.h"

/* Wrap the open repository's master key under a new passphrase and return
 * the keys/ object text (malloc'd). */
int repo_key_make(const struct repo *r, const char *pass, size_t pass_len, char **text_out,
                  char **err);
/* Unwrap one key object: text is the content of keys/NAME (name is
 * "keys/<id>"), which is untrusted input. 0: opened, r's master keys and
 * chunker seed are now the object's; 1: intact, but the passphrase does not
 * open it; -1: damaged or unusable with this pipeline (*err, malloc'd, names
 * the object and says why). scrypt's N must be at most max_n
 * (REPO_KDF_MAX_N when a repository is opened). */
#define REPO_KDF_MAX_N (1u << 22)
int repo_key_object_open(struct repo *r, const char *name, const char *text, size_t len,
                         const char *pass, size_t pass_len, uint64_t max_n, char **err);
/* Check a key object without a passphrase (no key derivation, r unchanged):
 * 0 when it is sound as far as that can tell (fields, base64, scrypt
 * parameters, its bytes match its name; with kdf none, the master key
 * inside), -1 with *err when it is damaged or unusable with this pipeline. */
int repo_key_object_check(struct repo *r, const char *name, const char *text, size_t len,
                          char **err);
/* Open the repository's master keys with the passphrase: try every key
 * object until one opens (r->key_id names it). Damaged ones are skipped and
 * named in a warning when another opens; when none opens, *err says "wrong
 * passphrase" only if every key object was intact, else names each damaged
 * one. */
int repo_keys_open(struct repo *r, const char *pass, size_t pass_len, char **err);
/* Store a new key object; id_out gets its id. */
int repo_key_add(struct repo *r, const char *pass, size_t pass_len, char id_out[65], char **err);
/* Array of {"id","created","user","host","current"} */
int repo_key_list(struct repo *r, json_t **out, char **err);
/* Remove a key by id or unique prefix; refuses the last key and, unless
 * allow_current (passwd), the key that opened the repository. */
int repo_key_remove(struct repo *r, const char *id_prefix, int allow_current, char **err);

/* scrypt(pass, salt, N, r, p) into kek[kek_len]; -1 for parameters that are
 * invalid or need more than 256 MiB. */
int repo_derive_kek(const char *pass, size_t pass_len, const unsigned char *salt, size_t salt_len,
                    uint64_t N, uint64_t rr, uint64_t p, unsigned char *kek, size_t kek_len);

#endif
