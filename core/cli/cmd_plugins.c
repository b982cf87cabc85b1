/* engine plugins */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dispatch.h"
#include "util/log.h"

static const char *opt_type_name(enum engine_opt_type t) {
  switch (t) {
  case ENGINE_OPT_STRING:
    return "string";
  case ENGINE_OPT_INT:
    return "integer";
  case ENGINE_OPT_BOOL:
    return "boolean";
  case ENGINE_OPT_SIZE:
    return "size";
  case ENGINE_OPT_DURATION:
    return "duration";
  case ENGINE_OPT_STRING_LIST:
    return "list of strings";
  case ENGINE_OPT_SECRET:
    return "secret reference";
  case ENGINE_OPT_ENUM:
    return "one of";
  }
  return "?";
}

int cmd_plugins(const struct cli_globals *g, const struct cli_args *a) {
  struct plugin_registry *reg;
  if (cli_registry(g, &reg) != 0)
    return cli_fail(xstrdup("unable to scan the plugin search path"));
  if (a->json) {
    json_t *arr = json_array();
    for (size_t i = 0; i < reg->n_entries; i++) {
      struct plugin_entry *e = &reg->entries[i];
      const struct engine_plugin *p = e->plugin;
      json_t *o =
          json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}", "path", e->path, "name",
                    p ? p->name : NULL, "kind", p ? plugin_kind_name(p->kind) : NULL, "version",
                    p ? p->version : NULL, "license", p ? p->license : NULL, "description",
                    p ? p->description : NULL, "error", e->error, "shadowed", e->shadowed);
      if (p) {
        json_t *opts = json_array();
        for (const struct engine_option *op = p->options; op && op->name; op++)
          json_array_append_new(opts,
                                json_pack("{s:s, s:s, s:b, s:s?, s:s?, s:s?}", "name", op->name,
                                          "type", opt_type_name(op->type), "required", op->required,
                                          "default", op->default_value, "values", op->enum_values,
                                          "description", op->description));
        json_object_set_new(o, "options", opts);
        json_object_set_new(o, "abi", json_sprintf("%u.%u", p->abi_major, p->abi_minor));
      }
      json_array_append_new(arr, o);
    }
    cli_print_json(arr);
    json_decref(arr);
  } else {
    printf("plugin search path:\n");
    for (size_t i = 0; i < reg->n_dirs; i++)
      printf("  %s\n", reg->dirs[i]);
    printf("\n");
    for (size_t i = 0; i < reg->n_entries; i++) {
      struct plugin_entry *e = &reg->entries[i];
      const struct engine_plugin *p = e->plugin;
      if (!p) {
        printf("REFUSED %s\n  %s\n\n", e->path, e->error ? e->error : "");
        continue;
      }
      printf("%-7s %-16s %-8s %s%s\n  %s\n", plugin_kind_name(p->kind), p->name, p->version,
             e->path, e->shadowed ? " (shadowed by an earlier plugin of the same name)" : "",
             p->description);
      for (const struct engine_option *op = p->options; op && op->name; op++)
        printf("    %-18s %s%s%s%s%s%s — %s\n", op->name, opt_type_name(op->type),
               op->enum_values ? " " : "", op->enum_values ? op->enum_values : "",
               op->required ? ", required" : "", op->default_value ? ", default " : "",
               op->default_value ? op->default_value : "", op->description ? op->description : "");
      printf("\n");
    }
  }
  registry_free(reg);
  return EXIT_OK;
}
