/* The command line against the command table (cli/table.c): parsing argv,
 * and the help and synopsis printed from the same table. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/schema.h"
#include "util/log.h"

#define HELP_WIDTH 100 /* help and synopsis lines are wrapped at this column */

static const char *const global_synopsis = "engine [--plugin-dir DIR]... [-v|-q] COMMAND [ARGS]";

/* ---- parsing --------------------------------------------------------------- */

/* An option as given on the command line, before the action is known. */
struct given {
  enum cli_opt opt;
  const char *value; /* NULL for a flag */
};

static char *usage_text(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "WHAT: message\n(see 'engine help CMD')", as cli_usage_error prints it;
 * what is a command, or a command and its action ("key list": CMD is its
 * first word), or NULL. */
static char *usage_text(const char *what, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    die_oom();
  va_end(ap);
  int cmd_len = what ? (int)strcspn(what, " ") : 0;
  char *out = xasprintf("%s%s%s\n(see 'engine help%s%.*s')", what ? what : "", what ? ": " : "",
                        msg, what ? " " : "", cmd_len, what ? what : "");
  free(msg);
  return out;
}

static const struct cli_use *find_use(const struct cli_command *c, enum cli_opt opt) {
  for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++)
    if (u->opt == opt)
      return u;
  return NULL;
}

/* Does the space-separated list `actions` (NULL: all) hold `name`? */
static int action_in(const char *actions, const char *name) {
  if (!actions || !name)
    return 1;
  size_t n = strlen(name);
  for (const char *p = actions; *p;) {
    size_t l = strcspn(p, " ");
    if (l == n && strncmp(p, name, n) == 0)
      return 1;
    p += l;
    p += *p == ' ';
  }
  return 0;
}

/* --name, --name=value, -x; returns the option or OPT_NONE */
static enum cli_opt lookup_option(const char *tok, const char **inline_value) {
  *inline_value = NULL;
  if (tok[1] != '-') {
    for (int i = 1; i < OPT__COUNT; i++)
      if (cli_options[i].short_name && tok[1] == cli_options[i].short_name && tok[2] == '\0')
        return (enum cli_opt)i;
    return OPT_NONE;
  }
  const char *name = tok + 2, *eq = strchr(name, '=');
  size_t n = eq ? (size_t)(eq - name) : strlen(name);
  for (int i = 1; i < OPT__COUNT; i++) {
    if (strlen(cli_options[i].name) == n && strncmp(cli_options[i].name, name, n) == 0) {
      *inline_value = eq ? eq + 1 : NULL;
      return (enum cli_opt)i;
    }
  }
  return OPT_NONE;
}

/* "unknown option '--x'", with the closest option the command takes */
static char *unknown_option(const struct cli_command *c, const char *tok) {
  const char *names[OPT__COUNT + 1];
  size_t n = 0;
  for (const struct cli_use *u = c ? c->options : NULL; u && u->opt != OPT_NONE; u++)
    names[n++] = cli_options[u->opt].name;
  size_t l = strcspn(tok, "=");
  char *word = xasprintf("%.*s", (int)l, tok + strspn(tok, "-"));
  const char *near = cfg_closest(word, names, n);
  free(word);
  if (near)
    return usage_text(c ? c->name : NULL, "unknown option '%s'; did you mean '--%s'?", tok, near);
  return usage_text(c ? c->name : NULL, "unknown option '%s'", tok);
}

/* Global options, before or after the command. Returns 1 when tok was one
 * (i advanced past its value), 0 when not, -1 with *err. */
static int global_option(int argc, char **argv, int *i, struct cli_invocation *inv,
                         const char **dirs, char **err) {
  const char *o = argv[*i];
  struct cli_globals *g = &inv->g;
  if (strcmp(o, "--plugin-dir") == 0) {
    if (*i + 1 >= argc) {
      *err = usage_text(inv->cmd ? inv->cmd->name : NULL, "option '%s' needs a value", o);
      return -1;
    }
    dirs[g->n_plugin_dirs++] = argv[++*i];
  } else if (strncmp(o, "--plugin-dir=", 13) == 0) {
    dirs[g->n_plugin_dirs++] = o + 13;
  } else if (strcmp(o, "-v") == 0 || strcmp(o, "--verbose") == 0) {
    g->verbose++;
  } else if (strcmp(o, "-q") == 0 || strcmp(o, "--quiet") == 0) {
    g->quiet = 1;
  } else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
    inv->todo = CLI_TODO_HELP;
  } else {
    return 0;
  }
  return 1;
}

/* "restore", "key add and key passwd", "run, check and prune": what takes opt */
static char *takers(enum cli_opt opt, size_t *count) {
  const char *names[64];
  char *owned[64];
  size_t n = 0, n_owned = 0;
  for (const struct cli_command *c = cli_commands; c->name && n < 60; c++) {
    const struct cli_use *u = find_use(c, opt);
    if (!u)
      continue;
    if (!u->actions || !c->actions) {
      names[n++] = c->name;
      continue;
    }
    for (const struct cli_action *x = c->actions; x->name && n < 60; x++)
      if (action_in(u->actions, x->name))
        names[n++] = owned[n_owned++] = xasprintf("%s %s", c->name, x->name);
  }
  *count = n;
  char *out = n > 1 ? cfg_join(names, n - 1, ", ") : xstrdup("");
  char *all = n > 1 ? xasprintf("%s and %s", out, names[n - 1]) : xstrdup(n ? names[0] : "none");
  free(out);
  for (size_t k = 0; k < n_owned; k++)
    free(owned[k]);
  return all;
}

static char *not_taken(const struct cli_command *c, const struct cli_action *act,
                       enum cli_opt opt) {
  size_t n;
  char *who = takers(opt, &n);
  char *what = xasprintf("%s%s%s", c->name, act ? " " : "", act ? act->name : "");
  char *e = n == 0   ? usage_text(what, "--%s is not an option of %s", cli_options[opt].name, what)
            : n <= 4 ? usage_text(what, "--%s is not an option of %s (%s %s it)",
                                  cli_options[opt].name, what, who, n > 1 ? "take" : "takes")
                     : usage_text(what, "--%s is not an option of %s (other commands take it)",
                                  cli_options[opt].name, what);
  free(what);
  free(who);
  return e;
}

/* Stores a value into the field the table names; runs its check. */
static char *store(const struct cli_command *c, const struct given *gv, struct cli_args *a) {
  const struct cli_option *o = &cli_options[gv->opt];
  char *base = (char *)a;
  switch (o->kind) {
  case CLI_FLAG:
    *(int *)(base + o->field) = 1;
    return NULL;
  case CLI_VALUE:
    *(const char **)(base + o->field) = gv->value;
    break;
  case CLI_LIST: {
    const char **v = *(const char ***)(base + o->field);
    size_t *n = (size_t *)(base + o->count);
    v[(*n)++] = gv->value;
    break;
  }
  }
  const char *expected = o->check ? o->check(gv->value, a) : NULL;
  return expected ? usage_text(c->name, "--%s '%s': %s", o->name, gv->value, expected) : NULL;
}

static char *wrong_number(const struct cli_command *c, const struct cli_action *act) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    die_oom();
  if (act) {
    fprintf(f, "%s %s: wrong number of arguments\nusage: ", c->name, act->name);
    /* the synopsis of that action alone */
    struct cli_action one[2];
    memset(one, 0, sizeof(one));
    one[0] = *act;
    struct cli_command only = *c;
    only.actions = one;
    cli_print_synopsis(f, &only, 7);
  } else {
    fprintf(f, "%s: wrong number of arguments\nusage: ", c->name);
    cli_print_synopsis(f, c, 7);
  }
  fclose(f);
  if (len && buf[len - 1] == '\n')
    buf[len - 1] = '\0';
  return buf;
}

/* The action named by the first argument (commands with actions). */
static char *find_action(const struct cli_command *c, const struct cli_args *a,
                         const struct cli_action **out) {
  *out = NULL;
  if (!c->actions)
    return NULL;
  if (a->n_pos == 0)
    return wrong_number(c, NULL);
  for (const struct cli_action *x = c->actions; x->name; x++)
    if (strcmp(x->name, a->pos[0]) == 0) {
      *out = x;
      return NULL;
    }
  const char *names[16];
  size_t n = 0;
  for (const struct cli_action *x = c->actions; x->name && n < 16; x++)
    names[n++] = x->name;
  char *list = cfg_join(names, n, ", ");
  char *last = strrchr(list, ',');
  char *shown = last ? xasprintf("%.*s or%s", (int)(last - list), list, last + 1) : xstrdup(list);
  char *e = usage_text(c->name, "unknown action '%s' (expected %s)", a->pos[0], shown);
  free(shown);
  free(list);
  return e;
}

/* Checks the options given against what the command (and action) takes,
 * and stores them. */
static char *apply_options(const struct cli_command *c, const struct cli_action *act,
                           const struct given *gv, size_t n_given, struct cli_args *a) {
  int seen[OPT__COUNT] = {0};
  for (size_t k = 0; k < n_given; k++) {
    const struct cli_use *u = find_use(c, gv[k].opt);
    const char *name = cli_options[gv[k].opt].name;
    if (!u || !action_in(u->actions, act ? act->name : NULL))
      return not_taken(c, act, gv[k].opt);
    if (seen[gv[k].opt]++ && (cli_options[gv[k].opt].kind != CLI_LIST || (u->flags & CLI_ONCE)))
      return usage_text(c->name, "option --%s given more than once", name);
    char *e = store(c, &gv[k], a);
    if (e)
      return e;
  }
  for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
    const struct cli_option *o = &cli_options[u->opt];
    if (seen[u->opt] && u->needs != OPT_NONE && !seen[u->needs])
      return usage_text(c->name, "--%s only works with --%s", o->name, cli_options[u->needs].name);
    if (!seen[u->opt] && (u->flags & CLI_REQUIRED) && action_in(u->actions, act ? act->name : NULL))
      return usage_text(c->name, "--%s %s is required", o->name, o->value);
  }
  return NULL;
}

/* The arguments after the command: options (checked against the table)
 * and positional arguments. */
static int parse_command_args(int argc, char **argv, int i, struct cli_invocation *inv,
                              const char **dirs, char **err) {
  const struct cli_command *c = inv->cmd;
  struct cli_args *a = &inv->a;
  struct given *gv = xcalloc((size_t)argc, sizeof(*gv));
  size_t n_given = 0;
  int only_pos = 0;
  for (; i < argc && !*err; i++) {
    const char *o = argv[i];
    if (only_pos || o[0] != '-' || o[1] == '\0') {
      a->pos[a->n_pos++] = o;
      continue;
    }
    if (strcmp(o, "--") == 0) {
      only_pos = 1;
      continue;
    }
    int r = global_option(argc, argv, &i, inv, dirs, err);
    if (r < 0 || inv->todo == CLI_TODO_HELP)
      break;
    if (r > 0)
      continue;
    const char *val;
    enum cli_opt id = lookup_option(o, &val);
    if (id == OPT_NONE) {
      *err = unknown_option(c, o);
    } else if (cli_options[id].kind == CLI_FLAG && val) {
      *err = usage_text(c->name, "option '--%s' takes no value", cli_options[id].name);
    } else if (cli_options[id].kind != CLI_FLAG && !val && i + 1 >= argc) {
      *err = usage_text(c->name, "option '%s' needs a value", o);
    } else {
      const char *v = cli_options[id].kind == CLI_FLAG ? NULL : val ? val : argv[++i];
      gv[n_given++] = (struct given){id, v};
    }
  }
  if (*err || inv->todo == CLI_TODO_HELP) {
    free(gv);
    return *err ? EXIT_USAGE : 0;
  }
  const struct cli_action *act;
  *err = find_action(c, a, &act);
  if (!*err)
    *err = apply_options(c, act, gv, n_given, a);
  free(gv);
  if (*err)
    return EXIT_USAGE;
  int n = (int)a->n_pos - (act != NULL), min = act ? act->min_pos : c->min_pos,
      max = act ? act->max_pos : c->max_pos;
  if (n < min || (max != CLI_MANY && n > max)) {
    *err = wrong_number(c, act);
    return EXIT_USAGE;
  }
  return 0;
}

int cli_parse(int argc, char **argv, struct cli_invocation *inv, char **err) {
  memset(inv, 0, sizeof(*inv));
  *err = NULL;
  const char **dirs = xcalloc((size_t)argc + 1, sizeof(char *));
  inv->g.plugin_dirs = dirs;
  inv->a.pos = xcalloc((size_t)argc + 1, sizeof(char *));
  for (int k = 1; k < OPT__COUNT; k++)
    if (cli_options[k].kind == CLI_LIST)
      *(const char ***)((char *)&inv->a + cli_options[k].field) =
          xcalloc((size_t)argc + 1, sizeof(char *));
  int i = 1;
  for (; i < argc; i++) { /* global options before the command */
    const char *o = argv[i];
    if (strcmp(o, "--version") == 0 || strcmp(o, "version") == 0) {
      inv->todo = CLI_TODO_VERSION;
      return 0;
    }
    int r = global_option(argc, argv, &i, inv, dirs, err);
    if (r < 0)
      return EXIT_USAGE;
    if (inv->todo == CLI_TODO_HELP)
      return 0;
    if (r == 0 && o[0] == '-' && o[1] != '\0') {
      const char *val;
      *err = lookup_option(o, &val) != OPT_NONE
                 ? usage_text(NULL, "option '%s' goes after the command", o)
                 : unknown_option(NULL, o);
      return EXIT_USAGE;
    }
    if (r == 0)
      break;
  }
  if (i >= argc) {
    inv->todo = CLI_TODO_USAGE;
    return 0;
  }
  const char *name = argv[i++];
  if (strcmp(name, "help") == 0) {
    inv->todo = CLI_TODO_HELP;
    if (i < argc && strcmp(argv[i], "--markdown") == 0) {
      inv->todo = CLI_TODO_MARKDOWN;
    } else if (i < argc) {
      inv->cmd = cli_find_command(argv[i]);
      if (!inv->cmd)
        *err = usage_text(NULL, "unknown command '%s'", argv[i]);
    }
    if (!*err && i + 1 < argc)
      *err = usage_text(NULL, "help takes one command (or --markdown)");
    return *err ? EXIT_USAGE : 0;
  }
  inv->cmd = cli_find_command(name);
  if (!inv->cmd) {
    *err = usage_text(NULL, "unknown command '%s'", name);
    return EXIT_USAGE;
  }
  inv->todo = CLI_TODO_RUN;
  return parse_command_args(argc, argv, i, inv, dirs, err);
}

void cli_invocation_free(struct cli_invocation *inv) {
  free(inv->g.plugin_dirs);
  free(inv->a.pos);
  for (int k = 1; k < OPT__COUNT; k++)
    if (cli_options[k].kind == CLI_LIST)
      free(*(const char ***)((char *)&inv->a + cli_options[k].field));
  memset(inv, 0, sizeof(*inv));
}

/* ---- help --------------------------------------------------------------------- */

/* Prints one word (or an unbreakable token) at column *col, after a blank
 * when *col is past the line's start, or on a new line indented by `indent`
 * when it would pass HELP_WIDTH. */
static void put_word(FILE *f, const char *w, size_t l, int *col, int indent, int *fresh) {
  if (!*fresh && *col + 1 + (int)l > HELP_WIDTH) {
    fprintf(f, "\n%*s", indent, "");
    *col = indent;
    *fresh = 1;
  }
  if (!*fresh) {
    fputc(' ', f);
    (*col)++;
  }
  fwrite(w, 1, l, f);
  *col += (int)l;
  *fresh = 0;
}

/* Prints the words of text wrapped at HELP_WIDTH, starting at column col
 * (fresh: nothing printed on this line yet but the indentation);
 * continuation lines start at `indent`. Returns the column reached. */
static int wrap(FILE *f, const char *text, int col, int indent, int fresh) {
  for (const char *p = text + strspn(text, " "); *p; p += strspn(p, " ")) {
    size_t l = strcspn(p, " ");
    put_word(f, p, l, &col, indent, &fresh);
    p += l;
  }
  return col;
}

/* "[--name VALUE]", "--name VALUE" (required) or "[--name VALUE]..." (repeatable) */
static char *option_synopsis(const struct cli_use *u) {
  const struct cli_option *o = &cli_options[u->opt];
  int req = (u->flags & CLI_REQUIRED) != 0;
  return xasprintf("%s--%s%s%s%s%s", req ? "" : "[", o->name, o->value ? " " : "",
                   o->value ? o->value : "", req ? "" : "]",
                   o->kind == CLI_LIST && !(u->flags & CLI_ONCE) ? "..." : "");
}

static void synopsis_line(FILE *f, const struct cli_command *c, const struct cli_action *act,
                          int indent) {
  char *lead = xasprintf("engine %s%s%s", c->name, act ? " " : "", act ? act->name : "");
  fputs(lead, f);
  int col = indent + (int)strlen(lead), cont = col + 1, fresh = 0;
  free(lead);
  const char *args = act ? act->args : c->args;
  if (args && *args)
    col = wrap(f, args, col, cont, 0);
  for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
    if (!action_in(u->actions, act ? act->name : NULL))
      continue;
    char *s = option_synopsis(u);
    put_word(f, s, strlen(s), &col, cont, &fresh);
    free(s);
  }
  fputc('\n', f);
}

void cli_print_synopsis(FILE *f, const struct cli_command *c, int indent) {
  if (!c->actions) {
    synopsis_line(f, c, NULL, indent);
    return;
  }
  for (const struct cli_action *x = c->actions; x->name; x++) {
    if (x != c->actions)
      fprintf(f, "%*s", indent, "");
    synopsis_line(f, c, x, indent);
  }
}

void cli_print_usage(FILE *f) {
  fprintf(f, "usage: %s\n\ncommands:\n", global_synopsis);
  for (const struct cli_command *c = cli_commands; c->name; c++) {
    fputs("  ", f);
    cli_print_synopsis(f, c, 2);
  }
  fprintf(f, "  engine help COMMAND\n  engine --version\n\n"
             "global options (before or after the command):\n"
             "  --plugin-dir DIR  look for plugins in DIR first (repeatable)\n"
             "  -v, --verbose     log more (twice: debug)\n"
             "  -q, --quiet       print only warnings and errors\n\n"
             "exit status: 0 ok, 1 error, 2 usage, 3 partial, 130 interrupted\n");
}

#define LEFT_MAX 20 /* a longer left column gets a line of its own */

/* "  left   help text, wrapped", the help starting at column `at` */
static void help_row(FILE *f, const char *left, const char *help, int at) {
  fprintf(f, "  %s", left);
  int l = 2 + (int)strlen(left);
  if (l + 2 > at)
    fprintf(f, "\n%*s", at, "");
  else
    fprintf(f, "%*s", at - l, "");
  wrap(f, help, at, at, 1);
  fputc('\n', f);
}

static char *option_left(const struct cli_option *o) {
  const char *v = o->value ? o->value : "", *sp = o->value ? " " : "";
  if (o->short_name)
    return xasprintf("-%c, --%s%s%s", o->short_name, o->name, sp, v);
  return xasprintf("--%s%s%s", o->name, sp, v);
}

void cli_print_help(FILE *f, const struct cli_command *c) {
  fputs("usage: ", f);
  cli_print_synopsis(f, c, 7);
  fputc('\n', f);
  wrap(f, c->help, 0, 0, 1);
  fputc('\n', f);
  int width = 0; /* of the left column */
  for (const struct cli_action *x = c->actions; x && x->name; x++)
    width = (int)strlen(x->name) > width ? (int)strlen(x->name) : width;
  for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
    char *left = option_left(&cli_options[u->opt]);
    int l = (int)strlen(left);
    if (l <= LEFT_MAX && l > width)
      width = l;
    free(left);
  }
  int at = 2 + width + 2;
  for (const struct cli_action *x = c->actions; x && x->name; x++)
    help_row(f, x->name, x->help, at);
  for (const struct cli_use *u = c->options; u->opt != OPT_NONE; u++) {
    char *left = option_left(&cli_options[u->opt]);
    help_row(f, left, u->help, at);
    free(left);
  }
  if (c->footer) {
    wrap(f, c->footer, 0, 0, 1);
    fputc('\n', f);
  }
}

void cli_print_markdown(FILE *f) {
  fprintf(f, "```\n%s\n", global_synopsis);
  for (const struct cli_command *c = cli_commands; c->name; c++)
    cli_print_synopsis(f, c, 0);
  fprintf(f, "engine help COMMAND\nengine --version\n```\n");
}
