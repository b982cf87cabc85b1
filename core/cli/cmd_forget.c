/* engine forget | prune */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_common.h"
#include "cli/dispatch.h"
#include "pipeline/prune.h"
#include "util/log.h"
#include "util/progress.h"

/* --forget-unreadable ID[,ID...] (repeatable) as a JSON array of ids */
static json_t *forget_unreadable_ids(const struct cli_args *a) {
  json_t *ids = json_array();
  for (size_t i = 0; i < a->n_forget_unreadable; i++) {
    char *copy = xstrdup(a->forget_unreadable[i]), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
      json_array_append_new(ids, json_string(t));
    free(copy);
  }
  return ids;
}

static int do_prune(const struct cli_globals *g, const struct cli_args *a, struct cli_ctx *c,
                    json_t *forget_unreadable, json_t *out) {
  /* --repack-threshold was checked by the parser */
  struct prune_opts po = {a->dry_run, a->repack_threshold ? a->repack_fraction : 0.5, g->quiet,
                          forget_unreadable, 0};
  struct prune_result r;
  char *err = NULL;
  if (prune_run(c->repo, &po, &r, &err) != 0)
    return cli_fail(err);
  json_t *pj = json_pack(
      "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "dry_run", a->dry_run, "packs_before",
      (json_int_t)r.packs_before, "packs_deleted", (json_int_t)r.packs_deleted, "packs_repacked",
      (json_int_t)r.packs_repacked, "packs_written", (json_int_t)r.packs_written, "bytes_before",
      (json_int_t)r.bytes_before, "bytes_after", (json_int_t)r.bytes_after, "blobs_used",
      (json_int_t)r.blobs_used, "blobs_dropped", (json_int_t)r.blobs_dropped);
  cli_note_detail("prune", json_incref(pj));
  if (out) {
    json_object_set(out, "prune", pj);
  } else if (!g->quiet) {
    char b1[32], b2[32];
    printf("%s%llu of %llu pack(s) deleted, %llu repacked into %llu new pack(s); %s -> %s\n",
           a->dry_run ? "would prune: " : "pruned: ", (unsigned long long)r.packs_deleted,
           (unsigned long long)r.packs_before, (unsigned long long)r.packs_repacked,
           (unsigned long long)r.packs_written, format_bytes(r.bytes_before, b1, sizeof(b1)),
           format_bytes(r.bytes_after, b2, sizeof(b2)));
  }
  json_decref(pj);
  return EXIT_OK;
}

int cmd_forget(const struct cli_globals *g, const struct cli_args *a) {
  if (a->n_pos > 1 && a->n_forget_unreadable) {
    return cli_usage_error("forget", "name snapshots either as arguments (readable ones) or with "
                                     "--forget-unreadable (unreadable ones), not both in one run");
  }
  struct cli_ctx c;
  /* forget reads manifests only; with --prune the blobs too */
  int rc = a->dry_run ? cli_open_existing(g, a->pos[0], &c, 0, 0)
                      : cli_open_locked(g, a, &c, 0, 2, a->prune);
  if (rc)
    return rc;
  char *ierr = NULL;
  if (a->dry_run && a->prune && cli_load_index(&c, &ierr) != 0) {
    cli_close(&c);
    return cli_fail(ierr);
  }
  json_t *report, *named = forget_unreadable_ids(a);
  char *err = NULL;
  /* snapshots named on the command line are removed whatever the policy */
  int frc = a->n_pos > 1 ? forget_ids(c.repo, a->pos + 1, a->n_pos - 1, a->dry_run, &report, &err)
                         : forget_run(c.repo, &c.p->retention, c.p->name, NULL, a->dry_run, named,
                                      &report, &err);
  if (frc != 0) {
    json_decref(named);
    cli_close(&c);
    return cli_fail(err);
  }
  if (!a->json && !g->quiet) {
    size_t i;
    json_t *gr;
    json_array_foreach(json_object_get(report, "groups"), i, gr) {
      printf("host %s, pipeline %s:\n", json_string_value(json_object_get(gr, "hostname")),
             json_string_value(json_object_get(gr, "pipeline")));
      size_t k;
      json_t *s;
      json_array_foreach(json_object_get(gr, "keep"), k, s) {
        printf("  keep   %.8s  %s  ", json_string_value(json_object_get(s, "id")),
               json_string_value(json_object_get(s, "time")));
        size_t x;
        json_t *why;
        json_array_foreach(json_object_get(s, "reasons"), x, why)
            printf("%s%s", x ? ", " : "", json_string_value(why));
        printf("\n");
      }
      json_array_foreach(json_object_get(gr, "remove"), k, s)
          printf("  remove %.8s  %s\n", json_string_value(json_object_get(s, "id")),
                 json_string_value(json_object_get(s, "time")));
    }
    long long would = 0;
    json_array_foreach(json_object_get(report, "groups"), i, gr) would +=
        (long long)json_array_size(json_object_get(gr, "remove"));
    json_array_foreach(json_object_get(report, "forgotten"), i, gr) {
      printf("%s %.8s  %s\n", a->dry_run ? "would remove" : "remove",
             json_string_value(json_object_get(gr, "id")),
             json_string_value(json_object_get(gr, "time")));
      would++;
    }
    json_array_foreach(json_object_get(report, "unreadable_forgotten"), i, gr) {
      printf("%s unreadable snapshot %s\n", a->dry_run ? "would remove" : "removed",
             json_string_value(gr));
      would++;
    }
    printf("%s %lld snapshot(s)\n", a->dry_run ? "would remove" : "removed", would);
  }
  cli_note_detail("report", json_incref(report));
  /* the unreadable snapshots forget removed are gone; a dry run still has them */
  if (a->prune)
    rc = do_prune(g, a, &c, a->dry_run ? named : NULL, a->json ? report : NULL);
  json_decref(named);
  if (a->json)
    cli_print_json(report);
  json_decref(report);
  cli_close(&c);
  return rc;
}

int cmd_prune(const struct cli_globals *g, const struct cli_args *a) {
  struct cli_ctx c;
  int rc = cli_open_locked(g, a, &c, 0, 2, 1);
  if (rc)
    return rc;
  json_t *out = a->json ? json_object() : NULL, *named = forget_unreadable_ids(a);
  rc = do_prune(g, a, &c, named, out);
  json_decref(named);
  if (out && rc == EXIT_OK)
    cli_print_json(json_object_get(out, "prune"));
  json_decref(out);
  cli_close(&c);
  return rc;
}
