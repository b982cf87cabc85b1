/* Key objects (docs/FORMAT.md §5): the input is the text of a keys/ object.
 * It is opened with repo_key_object_open, the function repo_open uses for
 * each key, with the passphrase "fuzz passphrase":
 *
 * - in a repository without encryption (kdf "none": the master key inside
 *   is parsed), and through a whole repo_open of a repository whose only
 *   key is the input (config and key listing, every key tried);
 * - in an aes-256-gcm repository (the plugin's source is compiled in), with
 *   scrypt's N capped at 1024 here so the fuzzer stays fast (repo_open
 *   allows up to REPO_KDF_MAX_N), under its own name (keys/<sha256>) and
 *   under a name it does not match (damage rather than a wrong passphrase).
 *
 * Each is also checked without the passphrase (repo_key_object_check, what
 * open does with the keys after the one that opened).
 *
 * Checked beyond "no crash": every refusal says why, a key that opens or is
 * intact passes the check, and an encrypted repository opens only with a
 * key derived from the passphrase (kdf scrypt), never with a master key
 * stored in the clear. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "util/log.h"

#define PASS "fuzz passphrase"
#define FUZZ_MAX_N 1024

const struct engine_plugin *engine_plugin_query(uint32_t host_abi_major);

static struct repo *plain, *aes;
static struct repo_sink *open_sink; /* config of FUZZ_REPO_ID + the input as its key */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_quiet();
  plain = fuzz_repo_new(NULL, NULL);
  aes = fuzz_repo_new(engine_plugin_query(ENGINE_ABI_MAJOR), PASS);
  /* the unencrypted repository's config, with the id seeds name */
  void *buf;
  size_t len;
  char *err = NULL;
  if (repo_get(plain, "config", 0, 0, &buf, &len, &err) != 0)
    fuzz_fail(__FILE__, __LINE__, "repo_get", "%s", err);
  json_error_t je;
  json_t *cfg = json_loadb(buf, len, 0, &je);
  free(buf);
  json_object_set_new(cfg, "id", json_string(FUZZ_REPO_ID));
  char *text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(cfg);
  open_sink = fuzz_sink_new();
  memsink_put(memsink_of_sink(open_sink), "config", text, strlen(text));
  free(text);
  return 0;
}

/* The object's kdf.algorithm, or "" when it has none. */
static int kdf_is(const uint8_t *data, size_t size, const char *want) {
  json_error_t je;
  json_t *k = json_loadb((const char *)data, size, 0, &je);
  const char *kdf = json_string_value(json_object_get(json_object_get(k, "kdf"), "algorithm"));
  int is = kdf && strcmp(kdf, want) == 0;
  json_decref(k);
  return is;
}

static int open_one(struct repo *r, const char *name, int own_name, const uint8_t *data,
                    size_t size) {
  char *err = NULL;
  int rc =
      repo_key_object_open(r, name, (const char *)data, size, PASS, strlen(PASS), FUZZ_MAX_N, &err);
  FUZZ_CHECK(rc == 0 || rc == 1 || rc == -1, "rc %d", rc);
  FUZZ_CHECK(rc != -1 || err, "a key refused without a reason");
  FUZZ_CHECK(rc == -1 || !err, "a reason given for a key that is not refused");
  FUZZ_CHECK(strcmp(r->id, FUZZ_REPO_ID) == 0, "the repository id changed");
  if (rc == 0 && r->crypto)
    FUZZ_CHECK(kdf_is(data, size, "scrypt"),
               "an encrypted repository opened with a key not derived from the passphrase");
  if (rc == 1)
    FUZZ_CHECK(r->crypto, "a wrong passphrase in a repository without encryption");
  free(err);
  err = NULL;
  /* what opens (or is intact) under its own name passes the check without
   * a passphrase (which cannot tell a renamed object from a changed one) */
  int crc = repo_key_object_check(r, name, (const char *)data, size, &err);
  FUZZ_CHECK(crc == 0 || crc == -1, "check rc %d", crc);
  FUZZ_CHECK(crc == 0 || err, "a key refused by the check without a reason");
  if ((rc == 0 || rc == 1) && own_name)
    FUZZ_CHECK(crc == 0, "a key that %s is refused by the check: %s",
               rc == 0 ? "opens" : "is intact", err);
  free(err);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char hex[65], name[80];
  sha256_hex(data, size, hex);
  snprintf(name, sizeof(name), "keys/%s", hex);

  open_one(plain, name, 1, data, size);
  open_one(aes, name, 1, data, size);
  open_one(aes, "keys/0000000000000000000000000000000000000000000000000000000000000000", 0, data,
           size);

  /* the whole open of an unencrypted repository holding this key */
  struct memsink *ms = memsink_of_sink(open_sink);
  memsink_put(ms, name, data, size);
  struct repo_open_opts o;
  memset(&o, 0, sizeof(o));
  o.sinks = open_sink;
  o.n_sinks = 1;
  struct repo *r = NULL;
  char *err = NULL;
  if (repo_open(&o, &r, &err) == 0) {
    FUZZ_CHECK(kdf_is(data, size, "none"), "opened with a key whose kdf is not none");
    repo_close(r);
  } else {
    FUZZ_CHECK(err != NULL, "repo_open failed without a reason");
  }
  free(err);
  memsink_clear(ms, "keys/");
  return 0;
}
