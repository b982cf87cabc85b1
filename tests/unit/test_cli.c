/* The command table (core/cli/table.c) and its parser (core/cli/args.c):
 * each command takes exactly the options it declares, values are checked
 * before anything runs, and docs/CLI.md's synopsis is what the table
 * prints (`engine help --markdown`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/commands.h"
#include "util/log.h"

/* argv from "engine" and a NULL-terminated list of words */
static int make_argv(char **argv, va_list ap) {
  int argc = 0;
  argv[argc++] = "engine";
  for (char *w; (w = va_arg(ap, char *)) != NULL && argc < 31;)
    argv[argc++] = w;
  argv[argc] = NULL;
  return argc;
}

/* Parses the words after "engine" (NULL-terminated). Returns the status;
 * *err (malloc'd or NULL) holds the message. */
static int parse(struct cli_invocation *inv, char **err, ...) {
  char *argv[32];
  va_list ap;
  va_start(ap, err);
  int argc = make_argv(argv, ap);
  va_end(ap);
  return cli_parse(argc, argv, inv, err);
}

/* Expects a usage error whose message contains `want`. */
static void refused(const char *want, ...) {
  char *argv[32];
  va_list ap;
  va_start(ap, want);
  int argc = make_argv(argv, ap);
  va_end(ap);
  struct cli_invocation inv;
  char *err = NULL;
  int rc = cli_parse(argc, argv, &inv, &err);
  if (rc != EXIT_USAGE || !err || !strstr(err, want))
    fail_msg("'%s ...': expected a usage error containing \"%s\", got status %d: %s", argv[1], want,
             rc, err ? err : "(no message)");
  free(err);
  cli_invocation_free(&inv);
}

static void test_options_land_in_fields(void **state) {
  (void)state;
  struct cli_invocation inv;
  char *err = NULL;
  assert_int_equal(parse(&inv, &err, "-v", "restore", "p.yml", "latest", "--target=/t", "-y",
                         "--only", "files/a/*", "--lock-wait", "5m", "--plugin-dir", "/pd", "-v",
                         NULL),
                   0);
  assert_null(err);
  assert_int_equal(inv.todo, CLI_TODO_RUN);
  assert_string_equal(inv.cmd->name, "restore");
  assert_int_equal(inv.a.n_pos, 2);
  assert_string_equal(inv.a.pos[0], "p.yml");
  assert_string_equal(inv.a.pos[1], "latest");
  assert_string_equal(inv.a.target, "/t");
  assert_int_equal(inv.a.n_only, 1);
  assert_string_equal(inv.a.only[0], "files/a/*");
  assert_int_equal(inv.a.yes, 1);
  assert_int_equal(inv.a.lock_wait_ms, 5 * 60 * 1000);
  assert_int_equal(inv.g.verbose, 2); /* global options before and after the command */
  assert_int_equal(inv.g.n_plugin_dirs, 1);
  assert_string_equal(inv.g.plugin_dirs[0], "/pd");
  cli_invocation_free(&inv);

  assert_int_equal(parse(&inv, &err, "prune", "p.yml", "--forget-unreadable", "aa,bb",
                         "--forget-unreadable", "cc", "--repack-threshold", "0.25", "--", "-x",
                         NULL),
                   EXIT_USAGE); /* "-x" after "--" is a second argument: prune takes one */
  free(err);
  err = NULL;
  cli_invocation_free(&inv);
  assert_int_equal(parse(&inv, &err, "forget", "p.yml", "--forget-unreadable", "aa,bb",
                         "--forget-unreadable", "cc", "--prune", "--repack-threshold", "0.25", "--",
                         "-x", NULL),
                   0);
  assert_int_equal(inv.a.n_forget_unreadable, 2);
  assert_string_equal(inv.a.forget_unreadable[0], "aa,bb");
  assert_string_equal(inv.a.forget_unreadable[1], "cc");
  assert_true(inv.a.repack_fraction == 0.25);
  assert_int_equal(inv.a.n_pos, 2);
  assert_string_equal(inv.a.pos[1], "-x");
  cli_invocation_free(&inv);

  assert_int_equal(parse(&inv, &err, "run", "p.yml", "--time", "2026-01-31T03:00:00Z", NULL), 0);
  assert_int_equal(inv.a.time_s, 1769828400);
  cli_invocation_free(&inv);

  /* run takes --only several times */
  assert_int_equal(parse(&inv, &err, "run", "p.yml", "--only", "t/a", "--only", "files",
                         "--metrics-file", "/m.prom", NULL),
                   0);
  assert_int_equal(inv.a.n_only, 2);
  assert_string_equal(inv.a.only[1], "files");
  assert_string_equal(inv.a.metrics_file, "/m.prom");
  cli_invocation_free(&inv);

  assert_int_equal(parse(&inv, &err, "key", "remove", "p.yml", "abcd1234", NULL), 0);
  assert_int_equal(inv.a.n_pos, 3);
  cli_invocation_free(&inv);
  assert_int_equal(
      parse(&inv, &err, "repair", "snapshots", "p.yml", "a", "b", "c", "--read-data", NULL), 0);
  assert_int_equal(inv.a.read_data, 1);
  cli_invocation_free(&inv);
}

static void test_refusals(void **state) {
  (void)state;
  /* an option of another command, naming the command and who takes it */
  refused("snapshots: --target is not an option of snapshots (restore takes it)", "snapshots", "p",
          "--target", "x", NULL);
  refused("validate: --lock-wait is not an option of validate (other commands take it)", "validate",
          "p", "--lock-wait", "1m", NULL);
  refused("check: --yes is not an option of check (restore and key shred take it)", "check", "p",
          "-y", NULL);
  /* an option of another action */
  refused("key list: --new-passphrase is not an option of key list (key add and key passwd take "
          "it)\n(see 'engine help key')",
          "key", "list", "p", "--new-passphrase", "env:X", NULL);
  refused("key add: --json is not an option of key add", "key", "add", "p", "--json", NULL);
  refused("repair index: --read-data is not an option of repair index (check and repair snapshots "
          "take it)",
          "repair", "index", "p", "--read-data", NULL);
  /* options that only make sense with another one */
  refused("--repack-threshold only works with --prune", "forget", "p", "--repack-threshold", "0.5",
          NULL);
  refused("--unit-dir only works with --install", "schedule", "p", "--unit-dir", "/u", NULL);
  refused("--json only works with --dry-run", "restore", "p", "latest", "--json", NULL);
  refused("--to SINK is required", "sync", "p", "--from", "a", NULL);
  refused("--allow-untested only works with --restore-test", "check", "p", "--allow-untested",
          NULL);
  refused("--restore-token-file only works with --allow-restore", "serve", "--restore-token-file",
          "/t", NULL);
  /* a repeatable option a command takes once */
  refused("option --only given more than once", "restore", "p", "latest", "--only", "a", "--only",
          "b", NULL);
  /* values, checked before the command runs */
  refused("--progress 'sometimes': expected auto, always or never", "run", "p", "--progress",
          "sometimes", NULL);
  refused("--lock-wait '3x': expected a duration", "prune", "p", "--lock-wait", "3x", NULL);
  refused("--time 'yesterday': expected an ISO 8601 time", "run", "p", "--time", "yesterday", NULL);
  refused("--repack-threshold '1.5': expected a fraction between 0 and 1", "prune", "p",
          "--repack-threshold", "1.5", NULL);
  refused("--repack-threshold 'x': expected a fraction", "prune", "p", "--repack-threshold", "x",
          NULL);
  /* spelling */
  refused("unknown option '--dryrun'; did you mean '--dry-run'?", "run", "p", "--dryrun", NULL);
  refused("unknown option '--frobnicate'", "run", "p", "--frobnicate", NULL);
  refused("option '--json' takes no value", "run", "p", "--json=yes", NULL);
  refused("option '--target' needs a value", "restore", "p", "latest", "--target", NULL);
  refused("option --target given more than once", "restore", "p", "latest", "--target", "a",
          "--target", "b", NULL);
  refused("option '--json' goes after the command", "--json", "run", "p", NULL);
  /* commands, actions, arguments */
  refused("unknown command 'frob'", "frob", NULL);
  refused("unknown command 'frob'", "help", "frob", NULL);
  refused("unknown action 'fix' (expected index or snapshots)", "repair", "fix", "p", NULL);
  refused("unknown action 'frob' (expected add, list, remove, passwd, rotate or shred)", "key",
          "frob", "p", NULL);
  refused("run: wrong number of arguments\nusage: engine run PIPELINE", "run", NULL);
  refused("show: wrong number of arguments", "show", "p", NULL);
  refused("key remove: wrong number of arguments\nusage: engine key remove PIPELINE KEY-ID", "key",
          "remove", "p", NULL);
  refused("repair index: wrong number of arguments", "repair", "index", "p", "s1", NULL);
  refused("serve: wrong number of arguments", "serve", "extra", NULL);
}

static void test_help_and_version(void **state) {
  (void)state;
  struct cli_invocation inv;
  char *err = NULL;
  assert_int_equal(parse(&inv, &err, "help", "restore", NULL), 0);
  assert_int_equal(inv.todo, CLI_TODO_HELP);
  assert_string_equal(inv.cmd->name, "restore");
  cli_invocation_free(&inv);
  assert_int_equal(parse(&inv, &err, "restore", "--help", "--bogus", NULL), 0);
  assert_int_equal(inv.todo, CLI_TODO_HELP);
  assert_string_equal(inv.cmd->name, "restore");
  cli_invocation_free(&inv);
  assert_int_equal(parse(&inv, &err, "help", "--markdown", NULL), 0);
  assert_int_equal(inv.todo, CLI_TODO_MARKDOWN);
  cli_invocation_free(&inv);
  assert_int_equal(parse(&inv, &err, "--version", NULL), 0);
  assert_int_equal(inv.todo, CLI_TODO_VERSION);
  cli_invocation_free(&inv);
  assert_int_equal(parse(&inv, &err, "-q", NULL), 0);
  assert_int_equal(inv.todo, CLI_TODO_USAGE);
  cli_invocation_free(&inv);
}

/* The table is consistent: every option is taken by some command, has a
 * unique name, a value name when it takes a value and help wherever it is
 * taken; `needs` and `actions` name what exists. */
static void test_table_consistent(void **state) {
  (void)state;
  int used[OPT__COUNT] = {0};
  for (int i = 1; i < OPT__COUNT; i++) {
    const struct cli_option *o = &cli_options[i];
    assert_non_null(o->name);
    assert_int_equal(o->kind == CLI_FLAG, o->value == NULL);
    for (int j = 1; j < i; j++) {
      assert_string_not_equal(o->name, cli_options[j].name);
      if (o->short_name)
        assert_int_not_equal(o->short_name, cli_options[j].short_name);
    }
  }
  for (const struct cli_command *c = cli_commands; c->name; c++) {
    assert_non_null(c->help);
    assert_non_null(c->run);
    assert_true(c->actions != NULL || c->args != NULL);
    for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
      used[u->opt]++;
      if (!u->help || !*u->help)
        fail_msg("%s --%s has no help", c->name, cli_options[u->opt].name);
      for (const struct cli_use *v = c->options; v < u; v++)
        if (v->opt == u->opt)
          fail_msg("%s lists --%s twice", c->name, cli_options[u->opt].name);
      if (u->needs != OPT_NONE) {
        int found = 0;
        for (const struct cli_use *v = c->options; v->opt != OPT_NONE; v++)
          found |= v->opt == u->needs;
        if (!found)
          fail_msg("%s --%s needs an option %s does not take", c->name, cli_options[u->opt].name,
                   c->name);
      }
      if (u->actions) {
        assert_non_null(c->actions);
        char *copy = strdup(u->actions), *save = NULL;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
          int found = 0;
          for (const struct cli_action *x = c->actions; x->name; x++)
            found |= strcmp(x->name, w) == 0;
          if (!found)
            fail_msg("%s --%s names an unknown action '%s'", c->name, cli_options[u->opt].name, w);
        }
        free(copy);
      }
    }
  }
  for (int i = 1; i < OPT__COUNT; i++)
    if (!used[i])
      fail_msg("--%s is declared but no command takes it", cli_options[i].name);
}

/* `engine help CMD` names every option the command takes. */
static void test_help_lists_every_option(void **state) {
  (void)state;
  for (const struct cli_command *c = cli_commands; c->name; c++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    cli_print_help(f, c);
    fclose(f);
    char *usage = xasprintf("usage: engine %s", c->name);
    assert_non_null(strstr(buf, usage));
    free(usage);
    for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
      char *opt = xasprintf("\n  --%s", cli_options[u->opt].name);
      char *opt_short =
          xasprintf("\n  -%c, --%s", cli_options[u->opt].short_name, cli_options[u->opt].name);
      if (!strstr(buf, opt) && !strstr(buf, opt_short))
        fail_msg("engine help %s does not describe --%s:\n%s", c->name, cli_options[u->opt].name,
                 buf);
      free(opt);
      free(opt_short);
    }
    for (char *line = buf; *line;) {
      size_t l = strcspn(line, "\n");
      if (l > 100)
        fail_msg("engine help %s: a line of %zu characters:\n%.*s", c->name, l, (int)l, line);
      line += l + (line[l] == '\n');
    }
    free(buf);
  }
}

/* docs/CLI.md's synopsis (its first code block) is what the table prints:
 * regenerate it with `engine help --markdown`. */
static void test_docs_synopsis_matches_table(void **state) {
  (void)state;
  char path[4096];
  snprintf(path, sizeof(path), "%s/docs/CLI.md", ENGINE_SOURCE_DIR);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *doc = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 > cap)
      doc = xrealloc(doc, cap = cap * 2 + 8192);
    size_t n = fread(doc + len, 1, cap - len - 1, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  doc[len] = '\0';
  char *start = strstr(doc, "\n```\n");
  assert_non_null(start);
  start++;
  char *end = strstr(start + 4, "\n```\n");
  assert_non_null(end);
  end[5] = '\0'; /* keep the closing fence and its newline */

  char *buf = NULL;
  size_t blen = 0;
  FILE *m = open_memstream(&buf, &blen);
  assert_non_null(m);
  cli_print_markdown(m);
  fclose(m);
  if (strcmp(start, buf) != 0)
    fail_msg("docs/CLI.md's synopsis differs from the command table; replace its first code block "
             "with the output of 'engine help --markdown'.\n--- docs/CLI.md\n%s--- the table\n%s",
             start, buf);
  free(buf);
  free(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_land_in_fields),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_table_consistent),
      cmocka_unit_test(test_help_lists_every_option),
      cmocka_unit_test(test_docs_synopsis_matches_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
