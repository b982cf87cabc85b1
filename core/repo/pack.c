/* Pack assembly and parsing (format in pack.h and docs/FORMAT.md). */
#include "repo/pack.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "repo/keys2.h"
#include "util/log.h"

void packer_init(struct packer *p) {
  memset(p, 0, sizeof(*p));
}

/* The pack buffer is its own page-aligned mapping: its memory goes back to
 * the system as soon as the pack is stored, pages are only resident once
 * written, and a sink may hand it to the kernel for direct I/O (O_DIRECT
 * needs aligned buffers). */
static size_t page_round(size_t n) {
  long ps = sysconf(_SC_PAGESIZE);
  size_t page = ps > 0 ? (size_t)ps : 4096;
  return (n + page - 1) / page * page;
}

static void set_capacity(struct packer *p, size_t cap) {
  cap = page_round(cap);
  void *nb = p->buf ? mremap(p->buf, p->cap, cap, MREMAP_MAYMOVE)
                    : mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (nb == MAP_FAILED)
    die_oom();
#ifdef MADV_HUGEPAGE
  /* Every byte of a pack buffer is written once: with transparent huge
   * pages the kernel maps it in 2 MiB steps instead of taking a fault per
   * 4 KiB page (a 1 GiB first backup took ~125,000 faults for its packs,
   * ~5 % of its CPU time). Advice only: where THP is off it changes nothing. */
  if (!p->buf)
    (void)madvise(nb, cap, MADV_HUGEPAGE);
#endif
  p->buf = nb;
  p->cap = cap;
}

static void reserve(struct packer *p, size_t more);

int packer_init_key(struct packer *p, const struct repo *r) {
  if (r->format < 2)
    return 0;
  unsigned char sealed[KEYS2_SEALED_DK_LEN];
  if (p->len != 0 || keys2_dk_new(r, p->dk, sealed) != 0)
    return -1;
  reserve(p, sizeof(sealed));
  memcpy(p->buf, sealed, sizeof(sealed));
  p->len = sizeof(sealed);
  p->keyed = 1;
  return 0;
}

int packer_init_key_tenant(struct packer *p, const struct repo *r, const struct repo_tenant *t) {
  if (!t)
    return packer_init_key(p, r);
  unsigned char sealed[KEYS2_SEALED_DK_LEN];
  if (r->format < 2 || p->len != 0 || keys2_dk_new_tenant(r, t, p->dk, sealed) != 0)
    return -1;
  reserve(p, sizeof(sealed));
  memcpy(p->buf, sealed, sizeof(sealed));
  p->len = sizeof(sealed);
  p->keyed = 1;
  return 0;
}

const unsigned char *packer_key(const struct packer *p, const struct repo *r) {
  return r->format >= 2 ? p->dk : r->enc_key;
}

void packer_free(struct packer *p) {
  if (p->buf)
    munmap(p->buf, p->cap);
  free(p->entries);
  OPENSSL_cleanse(p->dk, sizeof(p->dk));
  memset(p, 0, sizeof(*p));
}

static void reserve(struct packer *p, size_t more) {
  if (p->len + more <= p->cap)
    return;
  size_t cap = p->cap ? p->cap : 1024 * 1024;
  while (cap < p->len + more)
    cap = cap < 8u * 1024 * 1024 ? cap * 2
                                 : p->len + more + 1024 * 1024; /* large: grow by what is needed */
  set_capacity(p, cap);
}

void packer_reserve(struct packer *p, size_t bytes) {
  if (bytes > p->cap)
    set_capacity(p, bytes);
}

unsigned char *packer_reserve_blob(struct packer *p, const unsigned char id[32], uint8_t type,
                                   size_t sealed_len, uint32_t raw_length) {
  if (p->len + sealed_len > p->cap)
    return NULL;
  if (p->n == p->cap_entries) {
    p->cap_entries = p->cap_entries ? p->cap_entries * 2 : 64;
    p->entries = xrealloc(p->entries, p->cap_entries * sizeof(*p->entries));
  }
  struct pack_entry *e = &p->entries[p->n++];
  e->type = type;
  memcpy(e->id, id, 32);
  e->offset = (uint32_t)p->len;
  e->length = (uint32_t)sealed_len;
  e->raw_length = raw_length;
  unsigned char *slot = p->buf + p->len;
  p->len += sealed_len;
  return slot;
}

void packer_add(struct packer *p, const unsigned char id[32], uint8_t type, const void *sealed,
                size_t sealed_len, uint32_t raw_length) {
  reserve(p, sealed_len);
  memcpy(packer_reserve_blob(p, id, type, sealed_len, raw_length), sealed, sealed_len);
}

int packer_finish(struct packer *p, const struct repo *r, unsigned char pack_id[32]) {
  size_t hl = 8 + p->n * PACK_ENTRY_SIZE;
  unsigned char *h = xmalloc(hl);
  memcpy(h, PACK_HEADER_MAGIC, 4);
  le32_put(h + 4, (uint32_t)p->n);
  for (size_t i = 0; i < p->n; i++) {
    unsigned char *e = h + 8 + i * PACK_ENTRY_SIZE;
    e[0] = p->entries[i].type;
    memcpy(e + 1, p->entries[i].id, 32);
    le32_put(e + 33, p->entries[i].offset);
    le32_put(e + 37, p->entries[i].length);
    le32_put(e + 41, p->entries[i].raw_length);
  }
  size_t sl = repo_sealed_len(r, hl);
  reserve(p, sl + 8);
  int v2 = r->format >= 2;
  if ((v2 && !p->keyed) ||
      (v2 ? repo_seal_key(r->crypto, p->dk, "packheader", 10, h, hl, p->buf + p->len)
          : repo_seal(r, "packheader", 10, h, hl, p->buf + p->len)) != 0) {
    free(h);
    return -1;
  }
  free(h);
  p->len += sl;
  le32_put(p->buf + p->len, (uint32_t)sl);
  memcpy(p->buf + p->len + 4, v2 ? PACK_MAGIC_V2 : PACK_MAGIC, 4);
  p->len += 8;
  SHA256(p->buf, p->len, pack_id);
  return 0;
}

int pack_parse_tail(const struct repo *r, const unsigned char *dk, const void *tail,
                    size_t tail_len, uint64_t pack_len, struct pack_entry **entries, size_t *n,
                    char **err) {
  const unsigned char *b = tail;
  int v2 = r->format >= 2;
  /* a format-2 repository keeps its format-1 packs only if it was
   * converted; this engine makes none, so each format has its own magic */
  if (tail_len < 8 || pack_len < tail_len ||
      memcmp(b + tail_len - 4, v2 ? PACK_MAGIC_V2 : PACK_MAGIC, 4) != 0) {
    *err = xasprintf("not a pack of format %d (trailer magic missing)", v2 ? 2 : 1);
    return -1;
  }
  if (v2 && !dk) {
    *err = xstrdup("no data key to open the pack header with");
    return -1;
  }
  uint32_t sl = le32_get(b + tail_len - 8);
  if (sl > pack_len - 8) {
    *err = xstrdup("pack header length is out of range");
    return -1;
  }
  if (sl > tail_len - 8) {
    *err = xasprintf("pack header needs %u bytes before the trailer, %zu given", sl, tail_len - 8);
    return -1;
  }
  const unsigned char *sh = b + tail_len - 8 - sl;
  unsigned char *h = xmalloc(sl ? sl : 1);
  size_t hl;
  if ((v2 ? repo_unseal_key(r->crypto, dk, "packheader", 10, sh, sl, h, &hl)
          : repo_unseal(r, "packheader", 10, sh, sl, h, &hl)) != 0) {
    free(h);
    *err = xstrdup("pack header authentication failed");
    return -1;
  }
  if (hl < 8 || memcmp(h, PACK_HEADER_MAGIC, 4) != 0 ||
      (hl - 8) / PACK_ENTRY_SIZE != le32_get(h + 4) || (hl - 8) % PACK_ENTRY_SIZE != 0) {
    free(h);
    *err = xstrdup("pack header is malformed");
    return -1;
  }
  size_t cnt = le32_get(h + 4);
  uint64_t data_end = pack_len - 8 - sl, data_start = v2 ? KEYS2_SEALED_DK_LEN : 0;
  struct pack_entry *es = xcalloc(cnt ? cnt : 1, sizeof(*es));
  for (size_t i = 0; i < cnt; i++) {
    const unsigned char *e = h + 8 + i * PACK_ENTRY_SIZE;
    es[i].type = e[0];
    memcpy(es[i].id, e + 1, 32);
    es[i].offset = le32_get(e + 33);
    es[i].length = le32_get(e + 37);
    es[i].raw_length = le32_get(e + 41);
    if ((uint64_t)es[i].offset + es[i].length > data_end || es[i].offset < data_start ||
        es[i].type > BLOB_TREE) {
      free(h);
      free(es);
      *err = xasprintf("pack header entry %zu is invalid (type or place)", i);
      return -1;
    }
  }
  free(h);
  *entries = es;
  *n = cnt;
  return 0;
}

/* The key of a format-2 pack from the sealed data key it starts with. */
static int head_key(const struct repo *r, const void *head, size_t len, unsigned char dk[32],
                    char **err) {
  const struct repo_tenant *t = NULL;
  int o = len >= KEYS2_SEALED_DK_LEN ? keys2_head_open(r, head, dk, &t) : -1;
  if (o == -3)
    *err = xasprintf("it holds data of tenant '%s', whose key was shredded on %s", t->name,
                     t->shredded);
  else if (o == -2)
    *err = xstrdup(r->write_only
                       ? "its data key is sealed to the repository's public key: a write-only "
                         "host cannot open it"
                       : "its data key is sealed to a key pair the keyring does not hold");
  else if (o != 0)
    *err = xstrdup("its data key does not authenticate (damaged)");
  return o == 0 ? 0 : -1;
}

int pack_parse(const struct repo *r, const void *pack, size_t len, struct pack_entry **entries,
               size_t *n, unsigned char *dk, char **err) {
  unsigned char k[32];
  if (r->format >= 2 && head_key(r, pack, len, k, err) != 0)
    return -1;
  if (dk)
    memcpy(dk, r->format >= 2 ? k : r->enc_key, 32);
  int rc = pack_parse_tail(r, r->format >= 2 ? k : NULL, pack, len, len, entries, n, err);
  OPENSSL_cleanse(k, sizeof(k));
  return rc;
}

int pack_read_header(struct repo *r, const char *name, uint64_t pack_len,
                     struct pack_entry **entries, size_t *n, unsigned char *dk, char **err) {
  if (pack_len < 8) {
    *err = xasprintf("pack %s is too short (%llu bytes)", name, (unsigned long long)pack_len);
    return -1;
  }
  unsigned char k[32];
  if (r->format >= 2) {
    void *head = NULL;
    size_t got = 0;
    char *e = NULL;
    if (repo_get(r, name, 0, KEYS2_SEALED_DK_LEN, &head, &got, err) != 0)
      return -1;
    int hk = head_key(r, head, got, k, &e);
    free(head);
    if (hk != 0) {
      *err = xasprintf("pack %s: %s", name, e);
      free(e);
      return -1;
    }
  }
  if (dk)
    memcpy(dk, r->format >= 2 ? k : r->enc_key, 32);
  /* one ranged read usually holds the whole header: 45 bytes an entry, a
   * few hundred entries; a second read when it does not */
  uint64_t want = pack_len < 64 * 1024 ? pack_len : 64 * 1024;
  for (int attempt = 0; attempt < 2; attempt++) {
    void *buf;
    size_t got;
    if (repo_get(r, name, pack_len - want, want, &buf, &got, err) != 0)
      return -1;
    if (got != want) {
      free(buf);
      *err = xasprintf("pack %s: short read of its header", name);
      return -1;
    }
    uint32_t sl = le32_get((unsigned char *)buf + got - 8);
    if (attempt == 0 && (uint64_t)sl + 8 > want && (uint64_t)sl + 8 <= pack_len &&
        memcmp((unsigned char *)buf + got - 4, r->format >= 2 ? PACK_MAGIC_V2 : PACK_MAGIC, 4) ==
            0) {
      free(buf);
      want = (uint64_t)sl + 8;
      continue;
    }
    char *e = NULL;
    int rc = pack_parse_tail(r, r->format >= 2 ? k : NULL, buf, got, pack_len, entries, n, &e);
    free(buf);
    if (rc != 0) {
      *err = xasprintf("pack %s: %s", name, e);
      free(e);
    }
    return rc;
  }
  *err = xasprintf("pack %s: its header could not be read", name);
  return -1;
}

void pack_object_name(const unsigned char pack_id[32], char name[80]) {
  char hex[65];
  hex_encode(pack_id, 32, hex);
  snprintf(name, 80, "data/%.2s/%s", hex, hex);
}
