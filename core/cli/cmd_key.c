/* engine key add|list|remove|passwd */
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/dispatch.h"
#include "pipeline/rewrite.h"
#include "repo/index.h"
#include "repo/keys2.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/secret.h"

/* Read a line from the terminal without echo. */
static char *ask_hidden(const char *prompt) {
  FILE *tty = fopen("/dev/tty", "r+");
  if (!tty)
    return NULL;
  struct termios old, noecho;
  int fd = fileno(tty);
  tcgetattr(fd, &old);
  noecho = old;
  noecho.c_lflag &= ~(tcflag_t)ECHO;
  tcsetattr(fd, TCSAFLUSH, &noecho);
  fputs(prompt, tty);
  fflush(tty);
  char buf[1024];
  char *got = fgets(buf, sizeof(buf), tty);
  tcsetattr(fd, TCSAFLUSH, &old);
  fputc('\n', tty);
  fclose(tty);
  if (!got)
    return NULL;
  buf[strcspn(buf, "\r\n")] = '\0';
  char *out = xstrdup(buf);
  memset(buf, 0, sizeof(buf));
  return out;
}

/* Create PATH with a random key (0600, never overwriting) if missing. */
static int ensure_key_file(const char *path, char **err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      return 0;
    *err = xasprintf("unable to create key file '%s': %s", path, strerror(errno));
    return -1;
  }
  unsigned char raw[32];
  char hex[65];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    close(fd);
    unlink(path);
    *err = xstrdup("the system random number generator failed");
    return -1;
  }
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  hex[64] = '\n';
  int ok = write(fd, hex, 65) == 65 && fsync(fd) == 0;
  close(fd);
  memset(raw, 0, sizeof(raw));
  memset(hex, 0, sizeof(hex));
  if (!ok) {
    unlink(path);
    *err = xasprintf("unable to write key file '%s': %s", path, strerror(errno));
    return -1;
  }
  fprintf(stderr, "engine: created key file %s (mode 0600); keep a copy somewhere safe\n", path);
  return 0;
}

static int new_secret(const struct cli_args *a, char **out, size_t *len, char **err) {
  if (a->new_passphrase && a->new_key_file) {
    *err = xstrdup("give either --new-passphrase or --new-key-file, not both");
    return -1;
  }
  if (a->new_key_file) {
    if (ensure_key_file(a->new_key_file, err) != 0)
      return -1;
    char *ref = xasprintf("file:%s", a->new_key_file);
    int rc = secret_resolve(ref, out, len, err);
    free(ref);
    return rc;
  }
  if (a->new_passphrase)
    return secret_resolve(a->new_passphrase, out, len, err);
  if (!isatty(STDIN_FILENO)) {
    *err = xstrdup(
        "no new passphrase: give --new-passphrase env:NAME|file:PATH or --new-key-file PATH");
    return -1;
  }
  char *p1 = ask_hidden("new passphrase: ");
  char *p2 = p1 ? ask_hidden("repeat the new passphrase: ") : NULL;
  if (!p1 || !p2 || strcmp(p1, p2) != 0 || !*p1) {
    *err = xstrdup(p1 && p2 && *p1 ? "the passphrases do not match" : "no passphrase entered");
    if (p1)
      secret_wipe_free(p1, strlen(p1));
    if (p2)
      secret_wipe_free(p2, strlen(p2));
    return -1;
  }
  secret_wipe_free(p2, strlen(p2));
  *out = p1;
  *len = strlen(p1);
  return 0;
}

/* key add --write-only --out FILE: the writer credential, 0600, never
 * overwriting. */
static int write_credential(struct cli_ctx *c, const struct cli_args *a, int quiet) {
  char *text = NULL, *err = NULL;
  if (keys2_writer_credential(c->repo, c->p->name, &text, &err) != 0)
    return cli_fail(err);
  int fd = open(a->out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    secret_wipe_free(text, strlen(text));
    return cli_fail(
        xasprintf("unable to create the writer credential '%s': %s%s", a->out, strerror(e),
                  e == EEXIST ? " (it is never overwritten: choose another name)" : ""));
  }
  size_t n = strlen(text);
  int ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
  int e = errno;
  close(fd);
  secret_wipe_free(text, n);
  if (!ok) {
    unlink(a->out);
    return cli_fail(
        xasprintf("unable to write the writer credential '%s': %s", a->out, strerror(e)));
  }
  char id[17];
  hex_encode(c->repo->kps[c->repo->cur_kp].id, 8, id);
  cli_note_detail("writer_credential", json_string(id));
  if (!quiet)
    printf("wrote writer credential %s (mode 0600) for public key %s; on the backup host use it "
           "as stages.encrypt: {mode: write-only, key_file: %s}. It can add backups but never "
           "read them; it holds no private key\n",
           a->out, id, a->out);
  return EXIT_OK;
}

/* Shredding and rewriting delete key material: on every sink, or the old
 * keys survive on the one that was left out. */
static int all_sinks_up(struct cli_ctx *c, const char *what) {
  const char *name = json_string_value(json_array_get(c->skipped_sinks, 0));
  for (size_t i = 0; !name && i < c->repo->n_sinks; i++)
    if (c->repo->sinks[i].failed) /* failed during the command: deletes skipped it */
      name = repo_sink_name(&c->repo->sinks[i]);
  if (!name)
    return 1;
  cli_fail(xasprintf("%s: optional sink '%s' could not be reached or failed, and the old keys "
                     "would survive there; run it again when every sink of the pipeline answers",
                     what, name));
  return 0;
}

/* key rotate --rewrite (pipeline/rewrite.h), under the exclusive lock. */
static int rotate_rewrite(struct cli_ctx *c, int quiet) {
  const struct pipeline *p = c->p;
  char *ref = p->encrypt_passphrase_ref ? xstrdup(p->encrypt_passphrase_ref)
                                        : xasprintf("file:%s", p->encrypt_key_file);
  char *secret = NULL, *err = NULL;
  size_t len = 0;
  int rc = secret_resolve(ref, &secret, &len, &err);
  free(ref);
  if (rc != 0) {
    char *m = xasprintf("%s: stages.encrypt: %s", p->path, err);
    free(err);
    return cli_fail(m);
  }
  struct rewrite_result res = {0};
  /* prune's step reads the snapshots' trees through the index */
  if (index_load(c->repo, &err) != 0 || rewrite_run(c->repo, secret, len, &res, &err) != 0) {
    secret_wipe_free(secret, len);
    json_decref(res.removed_keys);
    char *m = xasprintf("key rotate --rewrite: %s; run it again to go on (the repository stays "
                        "readable with the passphrase meanwhile)",
                        err);
    free(err);
    return cli_fail(m);
  }
  secret_wipe_free(secret, len);
  if (!all_sinks_up(c, "key rotate --rewrite")) {
    json_decref(res.removed_keys);
    return EXIT_ERROR;
  }
  cli_note_detail("rewritten_objects", json_integer((json_int_t)res.objects_resealed));
  if (!quiet) {
    char b1[32], b2[32];
    printf("rewritten%s in %.1f s: %llu pack(s) sealed again (%s -> %s), %llu snapshot(s) and "
           "record(s) sealed again (snapshot ids changed); the old keys are retired: no earlier "
           "passphrase, key file, key pair or writer credential opens anything now. Make writer "
           "credentials again\n",
           res.resumed ? " (resumed)" : "", res.seconds, (unsigned long long)res.packs_deleted,
           format_bytes(res.bytes_before, b1, sizeof(b1)),
           format_bytes(res.bytes_after, b2, sizeof(b2)), (unsigned long long)res.objects_resealed);
    size_t i;
    json_t *k;
    json_array_foreach(res.removed_keys, i, k)
        printf("removed key %.8s (another passphrase): add it again with 'engine key add'\n",
               json_string_value(k));
  }
  json_decref(res.removed_keys);
  return EXIT_OK;
}

static int rotate(struct cli_ctx *c, const struct cli_args *a, int quiet) {
  char *err = NULL, id[17];
  if (c->repo->format < 2)
    return cli_fail(xstrdup("key rotate needs a repository of format 2 (this one is format 1, "
                            "whose single master key cannot be rotated without rewriting every "
                            "object)"));
  /* one rotation at a time: each deletes the keyrings it replaces */
  if (cli_lock(c, 1, a->lock_wait ? a->lock_wait_ms : 0, 0, &err) != 0 ||
      keys2_keyring_load(c->repo, &err) != 0) /* as it is under the lock */
    return cli_fail(err);
  if (a->rewrite)
    return all_sinks_up(c, "key rotate --rewrite") ? rotate_rewrite(c, quiet) : EXIT_ERROR;
  if (c->repo->rewrite)
    return cli_fail(xstrdup("a key rotate --rewrite was interrupted: run 'engine key rotate "
                            "PIPELINE --rewrite' again to finish it first"));
  char old[17];
  hex_encode(c->repo->kps[c->repo->cur_kp].id, 8, old);
  if (keys2_rotate(c->repo, id, &err) != 0)
    return cli_fail(err);
  cli_note_detail("key_pair", json_string(id));
  if (!quiet)
    printf("rotated: new data is sealed to key pair %s from now on; %s and older stay for "
           "reading (%zu key pairs). Make writer credentials again ('engine key add PIPELINE "
           "--write-only --out FILE') so that write-only hosts seal to the new key\n",
           id, old, c->repo->n_kps);
  return EXIT_OK;
}

/* key shred --tenant NAME: under the exclusive lock (no backup is adding
 * a tenant key meanwhile), with the keyring read again under it. */
static int shred(struct cli_ctx *c, const struct cli_args *a, int quiet) {
  char *err = NULL;
  if (!a->tenant || !a->tenant[0])
    return cli_usage_error("key shred", "--tenant NAME is required: the tenant to shred");
  if (c->repo->format < 2 || c->repo->write_only)
    return cli_fail(xstrdup("key shred needs a format-2 repository opened with a passphrase "
                            "(per-tenant keys exist only there)"));
  if (!keys2_tenant_find(c->repo, a->tenant)) {
    json_t *ts = keys2_tenants_json(c->repo);
    char *names = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(ts, i, t) {
      const char *n = json_string_value(json_object_get(t, "name"));
      char *x = names ? xasprintf("%s, %s", names, n) : xstrdup(n);
      free(names);
      names = x;
    }
    json_decref(ts);
    err = xasprintf("the repository has no tenant '%s' (tenants: %s)", a->tenant,
                    names ? names : "none");
    free(names);
    return cli_fail(err);
  }
  if (!a->yes) {
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO))
      return cli_usage_error("key shred",
                             "shredding cannot be undone: give --yes to confirm (no terminal "
                             "to ask on)");
    fprintf(stderr,
            "Shredding destroys every key of tenant '%s': its data in every snapshot becomes "
            "unreadable forever. Type the tenant's name to confirm: ",
            a->tenant);
    char line[256];
    if (!fgets(line, sizeof(line), stdin))
      line[0] = '\0';
    line[strcspn(line, "\n")] = '\0';
    if (strcmp(line, a->tenant) != 0)
      return cli_fail(xstrdup("not confirmed: nothing was shredded"));
  }
  if (!all_sinks_up(c, "key shred"))
    return EXIT_ERROR;
  if (cli_lock(c, 1, a->lock_wait ? a->lock_wait_ms : 0, 0, &err) != 0 ||
      keys2_keyring_load(c->repo, &err) != 0)
    return cli_fail(err);
  if (keys2_tenant_shred(c->repo, a->tenant, &err) != 0)
    return cli_fail(err);
  if (!all_sinks_up(c, "key shred"))
    return EXIT_ERROR;
  cli_note_detail("tenant", json_string(a->tenant));
  if (!quiet)
    printf("shredded tenant '%s': its keys are gone from the keyring; restores of its items "
           "fail from now on. Run 'engine prune %s' to remove its packs\n",
           a->tenant, c->p->name);
  return EXIT_OK;
}

int cmd_key(const struct cli_globals *g, const struct cli_args *a) {
  const char *sub = a->pos[0];
  int is_add = strcmp(sub, "add") == 0, is_list = strcmp(sub, "list") == 0;
  int is_remove = strcmp(sub, "remove") == 0, is_passwd = strcmp(sub, "passwd") == 0;
  /* the parser checked the action, its arguments and its options */
  if (a->write_only && !a->out)
    return cli_usage_error("key add", "--write-only needs --out FILE: where to write the writer "
                                      "credential");
  struct cli_ctx c;
  char *err = NULL;
  if (cli_load_pipeline(g, a->pos[1], &c, &err) != 0 || cli_open(&c, 0, 0, 0, &err) != 0) {
    cli_close(&c);
    return cli_fail(err);
  }
  if (!c.repo->crypto && (is_add || is_passwd)) {
    cli_close(&c);
    return cli_fail(xstrdup(
        "the repository is not encrypted (encryption none): keys have no passphrase to change"));
  }
  int rc = EXIT_OK;
  if (is_add && a->write_only) {
    rc = write_credential(&c, a, g->quiet);
    cli_close(&c);
    return rc;
  }
  if (strcmp(sub, "rotate") == 0) {
    rc = rotate(&c, a, g->quiet);
    cli_close(&c);
    return rc;
  }
  if (strcmp(sub, "shred") == 0) {
    rc = shred(&c, a, g->quiet);
    cli_close(&c);
    return rc;
  }
  if (is_list) {
    json_t *keys;
    if (repo_key_list(c.repo, &keys, &err) != 0) {
      cli_close(&c);
      return cli_fail(err);
    }
    if (a->json && c.repo->format >= 2) {
      json_t *o = json_pack("{s:O, s:o, s:o, s:I}", "keys", keys, "keypairs",
                            keys2_keypairs_json(c.repo), "tenants", keys2_tenants_json(c.repo),
                            "keyring_generation", (json_int_t)c.repo->keyring_generation);
      cli_print_json(o);
      json_decref(o);
    } else if (a->json) {
      cli_print_json(keys);
    } else {
      printf("  %-10s %-20s %-12s %s\n", "ID", "CREATED", "USER", "HOST");
      size_t i;
      json_t *k;
      json_array_foreach(keys, i, k) printf("%c %-10.8s %-20s %-12s %s\n",
                                            json_is_true(json_object_get(k, "current")) ? '*' : ' ',
                                            json_string_value(json_object_get(k, "id")),
                                            json_string_value(json_object_get(k, "created")),
                                            json_string_value(json_object_get(k, "user")),
                                            json_string_value(json_object_get(k, "host")));
      if (c.repo->format >= 2) {
        json_t *kp = keys2_keypairs_json(c.repo);
        printf("key pairs (format 2; * marks the one new data is sealed to):\n");
        json_array_foreach(kp, i, k)
            printf("%c %-16s %s\n", json_is_true(json_object_get(k, "current")) ? '*' : ' ',
                   json_string_value(json_object_get(k, "id")),
                   json_string_value(json_object_get(k, "created")));
        json_decref(kp);
        json_t *tn = keys2_tenants_json(c.repo);
        if (json_array_size(tn) > 0)
          printf("tenant keys (per_tenant):\n");
        json_array_foreach(tn, i, k) {
          const char *sh = json_string_value(json_object_get(k, "shredded"));
          const char *rt = json_string_value(json_object_get(k, "retired"));
          printf("  %-16s %-24s %s%s%s\n", json_string_value(json_object_get(k, "id")),
                 json_string_value(json_object_get(k, "name")),
                 json_string_value(json_object_get(k, "created")),
                 sh   ? "  SHREDDED "
                 : rt ? "  retired "
                      : "",
                 sh   ? sh
                 : rt ? rt
                      : "");
        }
        json_decref(tn);
      }
    }
    json_decref(keys);
  } else if (is_remove) {
    cli_note_detail("key", json_string(a->pos[2]));
    if (repo_key_remove(c.repo, a->pos[2], 0, &err) != 0)
      rc = cli_fail(err);
    else if (!g->quiet)
      printf("removed key %s\n", a->pos[2]);
  } else {
    char *secret = NULL;
    size_t len = 0;
    char id[65];
    if (new_secret(a, &secret, &len, &err) != 0) {
      rc = cli_fail(err);
    } else {
      int r = repo_key_add(c.repo, secret, len, id, &err);
      secret_wipe_free(secret, len);
      if (r == 0)
        cli_note_detail("key_added", json_string(id));
      if (r == 0 && !is_add)
        cli_note_detail("key_removed", json_string(c.repo->key_id));
      if (r != 0) {
        rc = cli_fail(err);
      } else if (is_add) {
        if (!g->quiet)
          printf("added key %.8s\n", id);
      } else {
        char old[65];
        snprintf(old, sizeof(old), "%s", c.repo->key_id);
        if (repo_key_remove(c.repo, old, 1, &err) != 0) {
          log_error("the new key %.8s was added but the old key %.8s could not be "
                    "removed: %s",
                    id, old, err);
          free(err);
          rc = EXIT_ERROR;
        } else if (!g->quiet) {
          printf("changed: added key %.8s, removed key %.8s; update stages.encrypt in %s to the "
                 "new passphrase\n",
                 id, old, a->pos[1]);
        }
      }
    }
  }
  cli_close(&c);
  return rc;
}
